"""XLA CPU compile options, thread settings and weights-as-constants for the inference program.

    python benchmarks/cpu_options.py --model r50 --resolution 513
    python benchmarks/cpu_options.py --model x65 --resolution 513 --variants segmenter constants
    python benchmarks/cpu_options.py --smoke

The program is the network `jaxseg.Segmenter` runs on a CPU: the model in
`jaxseg.inference_forms.fast_forms_for_backend`'s forms, `inference.predict_logits` of one
normalised `[1, R, R, 3]` canvas, float32 logits to the host. Models (random weights, 21
classes): `r50`, DeepLab v3 ResNet-50 OS8 built with default arguments (the issue's first
target, as `peers.py --peer torchvision --ours default`); `x65`, the released Xception-65
DeepLab v3+ architecture at OS16 (the zoo's `DeepLabArch`, as `peers.py --peer tf-deeplab`).

Each variant compiles the same program differently (`--variants`):
- segmenter: `compiler_options_for_backend()`, the variables as arguments (what ships);
- constants: the same options, the variables closed over (compile-time constants to XLA);
- eigen1: + `xla_cpu_multi_thread_eigen=false` (XLA's Eigen convolutions/GEMMs on one thread
  instead of the client's intra-op pool, one thread per core);
- sched-off / sched-on: + `xla_cpu_enable_concurrency_optimized_scheduler` false / true;
- onednn: + `xla_cpu_use_onednn=true` (oneDNN kernels where XLA supports them);
- xla-defaults: no options (YNNPACK library fusions on);
- constants-xla-defaults: the variables as constants, no options.

Variants are timed alternately, `--rounds` rounds of `--iters` calls, medians; each row gives
its compile time and its largest logits difference from the first variant's, relative to the
largest logit (the same computation up to float32 rounding when ~1e-6). XLA's intra-op thread
pool is sized once per process from the CPUs the process may use; to measure fewer threads run
the script under `taskset -c 0`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402

EXTRA_OPTIONS = {
    "segmenter": {},
    "constants": {},
    "eigen1": {"xla_cpu_multi_thread_eigen": False},
    "sched-off": {"xla_cpu_enable_concurrency_optimized_scheduler": False},
    "sched-on": {"xla_cpu_enable_concurrency_optimized_scheduler": True},
    "onednn": {"xla_cpu_use_onednn": True},
    "xla-defaults": None,  # no options at all
    "constants-xla-defaults": None,
}


def build(model_name: str, smoke: bool):
    """(model in the CPU forms, variables, label) with random weights."""
    from jaxseg.inference_forms import fast_forms_for_backend  # noqa: PLC0415

    if model_name == "r50":
        from jaxseg.backbones import ResNet  # noqa: PLC0415
        from jaxseg.models import DeepLabV3  # noqa: PLC0415

        if smoke:  # one block per stage, width 8: the same code path, compiled in seconds
            import functools  # noqa: PLC0415

            backbone = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1), base_width=8)
            model = DeepLabV3(num_classes=21, backbone=backbone, output_stride=8, multi_grid=(1,))
        else:
            model = DeepLabV3(num_classes=21, backbone="resnet50", output_stride=8)
        label = "DeepLab v3 ResNet-50 OS8 (default arguments)"
    else:
        from jaxseg.weights.tf_slim import DeepLabArch  # noqa: PLC0415
        from jaxseg.zoo import deeplab_models  # noqa: PLC0415

        units = 1 if smoke else 16
        arch = DeepLabArch(
            **{**deeplab_models.XCEPTION65, "num_classes": 21}, middle_flow_units=units
        )
        model = arch.model(16)
        label = f"DeepLab v3+ Xception-65 OS16 ({units} middle-flow units)"
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
        jnp.zeros((1, 65, 65, 3))
    )
    # Kernels ~ N(0, 1/fan_in) (the init zeroes some, e.g. the classifier) and BatchNorm
    # statistics away from 0/1, so that the logits and the BN arithmetic are not trivial.
    rng = np.random.default_rng(0)

    def kernel(a):
        if a.ndim < 2:
            return np.asarray(a)
        fan_in = int(np.prod(a.shape[:-1])) if a.shape[-2] > 1 else int(np.prod(a.shape[:-2]))
        return rng.normal(0, fan_in**-0.5, a.shape).astype(np.float32)

    params = jax.tree.map(kernel, variables["params"])
    stats = jax.tree.map(
        lambda a: rng.uniform(0.5, 1.5, a.shape).astype(np.float32), variables["batch_stats"]
    )
    variables = {"params": params, "batch_stats": stats}
    model, variables = fast_forms_for_backend(model, variables, "cpu")
    return model, variables, label


class Variant:
    def __init__(self, name: str, model, variables, canvas: np.ndarray):
        from jaxseg import inference  # noqa: PLC0415
        from jaxseg.inference_forms import compiler_options_for_backend  # noqa: PLC0415

        extra = EXTRA_OPTIONS[name]
        self.options = {} if extra is None else {**compiler_options_for_backend("cpu"), **extra}

        def network(v, x):
            return inference.predict_logits(model.apply, v, x / 127.5 - 1.0)

        self.canvas = jnp.asarray(canvas)
        start = time.perf_counter()
        if name.startswith("constants"):
            jitted = jax.jit(lambda x: network(variables, x), compiler_options=self.options)
            compiled = jitted.lower(self.canvas).compile()
            self.call = lambda: np.asarray(compiled(self.canvas))
        else:
            jitted = jax.jit(network, compiler_options=self.options)
            compiled = jitted.lower(variables, self.canvas).compile()
            self.call = lambda: np.asarray(compiled(variables, self.canvas))
        self.hlo = compiled.as_text()
        self.compile_s = time.perf_counter() - start
        self.output = self.call()
        self.name = name


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="r50", choices=["r50", "x65"])
    p.add_argument("--resolution", type=int, default=513)
    p.add_argument(
        "--variants",
        nargs="+",
        default=["segmenter", "constants", "eigen1"],
        choices=list(EXTRA_OPTIONS),
        help="the first is the baseline of the 'vs first' and 'max rel diff' columns",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument(
        "--profile",
        action="store_true",
        help="after timing, one traced call per variant: XLA thunk time by kind "
        "(cpu_profile.py's attribution; only YNNPACK/library kernels are attributed fully)",
    )
    p.add_argument("--top", type=int, default=12, help="--profile: thunks listed one by one")
    p.add_argument("--smoke", action="store_true", help="tiny models, 33x33, one call")
    args = p.parse_args(argv)
    if args.smoke:
        args.resolution, args.rounds, args.iters = 33, 1, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    common.print_context()
    model, variables, label = build(args.model, args.smoke)
    rng = np.random.default_rng(1)
    canvas = rng.uniform(0, 255, (1, args.resolution, args.resolution, 3)).astype(np.float32)
    variants = [Variant(name, model, variables, canvas) for name in args.variants]
    times: list[list[float]] = [[] for _ in variants]
    for r in range(args.rounds):
        for i, variant in enumerate(variants):
            times[i] += common.time_call(variant.call, 0, args.iters)
        print(f"round {r + 1}/{args.rounds} done, load {common.load_average()}", flush=True)
    first_ms = statistics.median(times[0]) * 1e3
    reference = variants[0].output
    scale = float(np.max(np.abs(reference))) or 1.0
    rows = []
    for variant, t in zip(variants, times, strict=True):
        ms = statistics.median(t) * 1e3
        diff = float(np.max(np.abs(variant.output - reference))) / scale
        options = variant.options or "{}"
        rows.append(
            [
                variant.name,
                options,
                f"{variant.compile_s:.1f}",
                f"{ms:.1f}",
                common.spread_ms(t),
                f"{first_ms / ms:.2f}x",
                f"{diff:.1e}",
            ]
        )
    print(f"\n{label}, {args.resolution}x{args.resolution}, batch 1, float32")
    header = ["variant", "compile options", "compile s", "call ms", "min-max ms", "vs first"]
    common.print_table([*header, "max rel diff"], rows)
    if args.profile:
        for variant in variants:
            print_profile(variant, args.top)
    print(f"load average at end (1/5/15 min): {common.load_average()}")


def print_profile(variant: Variant, top: int) -> None:
    """Thunk time of one traced call by kind, and the `top` largest thunks."""
    import collections  # noqa: PLC0415

    import cpu_profile  # noqa: PLC0415

    wall, rows = cpu_profile.xla_profile(variant.call, variant.hlo)
    total = sum(r[0] for r in rows) or 1
    print(f"\nprofile of {variant.name}: wall {wall * 1e3:.0f} ms, thunks {total / 1e6:.0f} ms")
    by_kind: collections.Counter = collections.Counter()
    for ns, _, _, kind, _ in rows:
        by_kind[kind] += ns
    common.print_table(
        ["kind", "thunk ms", "share"],
        [[k, f"{v / 1e6:.1f}", f"{100 * v / total:.1f}%"] for k, v in by_kind.most_common()],
    )
    common.print_table(
        ["thunk ms", "kind", "shape", "op (module path / primitive)"],
        [[f"{r[0] / 1e6:.1f}", r[3], r[2], r[4][-100:]] for r in rows[:top]],
    )


if __name__ == "__main__":
    main()
