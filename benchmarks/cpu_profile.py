"""Where the time of one DeepLab call goes on a CPU, op by op: XLA's thunks against torch's ops.

    python benchmarks/cpu_profile.py --task inference --resolution 513 --batch 1
    python benchmarks/cpu_profile.py --task inference --forms segmenter   # what Segmenter runs
    python benchmarks/cpu_profile.py --task train --resolution 256 --batch 4 --layers cpu
    python benchmarks/cpu_profile.py --smoke

Ours: `DeepLabV3(backbone=--backbone, output_stride=8)` with default arguments, compiled as
`--forms` says ("reference": the network as built, default XLA options; "segmenter": the
forms and compile options `jaxseg.inference_forms` gives a CPU, what `Segmenter` runs), one
call traced with `jax.profiler`; each XLA thunk (a fused kernel, a convolution, a GEMM) is
named by the HLO instruction's `op_name` (the Flax module path and the jax primitive) and
sorted into kinds: dense/dilated/1x1/depthwise convs (by the conv's window in the HLO),
elementwise fusions (BatchNorm, ReLU, residual adds), slices and concatenations, pooling,
resizes, the rest. Thunks run on two threads at once, so the sum can exceed the wall time.
Without YNNPACK (`--forms segmenter`) XLA's Eigen convolutions and GEMMs run asynchronously on
its thread pool and their time is mostly not inside any thunk event: such a trace attributes
the elementwise, slice and concatenate thunks only (the script says so when the thunks cover
less than 80% of the wall time); `benchmarks/cpu_convs.py` times those convolutions one by one.

Peer (`--torch`, needs torch + torchvision): torchvision `deeplabv3_<backbone>` (float32,
channels_last, eager) under `torch.profiler`, self CPU time per aten op.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402
import _step  # noqa: E402


def hlo_instructions(hlo_text: str) -> dict[str, tuple[str, str, str]]:
    """`{instruction name: (shape, opcode, op_name)}` for every instruction of the HLO text."""
    out = {}
    for line in hlo_text.split("\n"):
        match = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\(", line)
        if match:
            op_name = re.search(r'op_name="([^"]*)"', line)
            window = re.search(r"window=\{([^}]*)\}", line)
            text = op_name.group(1) if op_name else ""
            if window:
                text += f" [{window.group(1)}]"
            out[match.group(1)] = (match.group(2), match.group(3), text)
    return out


def fused_windows(hlo_text: str) -> dict[str, str]:
    """`{fusion instruction: "window=..."}` of fusions that wrap a convolution (YNNPACK)."""
    computations = {}
    for match in re.finditer(r"\n%([\w.\-]+) [^\n]*\{\n(.*?)\n\}", hlo_text, re.S):
        window = re.search(r"convolution\(.*?window=\{([^}]*)\}", match.group(2))
        if window:
            computations[match.group(1)] = window.group(1)
    out = {}
    for match in re.finditer(r"%([\w.\-]+) = [^\n]*calls=%([\w.\-]+)", hlo_text):
        if match.group(2) in computations:
            out[match.group(1)] = computations[match.group(2)]
    return out


def kind_of(name: str, opcode: str, op_name: str, window: str | None) -> str:
    """A coarse kind for a thunk, from its HLO opcode, op_name and conv window."""
    path = op_name.lower()
    if "resize" in path:
        return "resize (bilinear)"
    if window is not None or opcode == "convolution":
        window = window or ""
        if "feature_group" in path or "depthwise" in path:
            return "conv depthwise"
        if "rhs_dilate" in window:
            return "conv 3x3 dilated (XLA conv)"
        if "size=1x1" in window:
            return "conv 1x1 (XLA conv)"
        return "conv dense (XLA conv)"
    if "dot_general" in path or opcode == "dot" or name.startswith(("ynn_fusion", "xnn_fusion")):
        # A library fusion without a conv window is a GEMM, with the adds fused into it that
        # XLA put there (e.g. a weight gradient summed over the region/tap GEMMs).
        return "GEMM (1x1 convs, region/tap convs)"
    if "reduce_window" in path or "max_pool" in path or "reduce-window" in name:
        return "pooling"
    if opcode in ("slice",) or "/slice" in path or "slice_fusion" in name:
        return "slices (tap/region views)"
    if "concatenate" in path or opcode == "concatenate":
        return "concatenate"
    if opcode == "fusion":
        return "elementwise fusions (BN, ReLU, adds)"
    return f"other ({opcode})"


def xla_profile(call, hlo: str) -> tuple[float, list[tuple]]:
    """Wall seconds of one traced `call()` (which blocks until done) of the compiled program
    whose HLO text is `hlo`, and `[(thunk ns, name, shape, kind, op_name)]`."""
    call()
    instructions, windows = hlo_instructions(hlo), fused_windows(hlo)
    folder = tempfile.mkdtemp(prefix="jaxseg_profile_")
    jax.profiler.start_trace(folder)
    start = time.perf_counter()
    call()
    wall = time.perf_counter() - start
    jax.profiler.stop_trace()
    path = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)[0]
    profile = jax.profiler.ProfileData.from_file(path)
    totals: collections.Counter = collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in instructions:
                    totals[event.name] += event.duration_ns
    rows = []
    for name, ns in totals.items():
        shape, opcode, op_name = instructions[name]
        if opcode in ("parameter", "constant", "tuple", "get-tuple-element", "bitcast"):
            continue
        kind = kind_of(name, opcode, op_name, windows.get(name))
        rows.append((ns, name, shape, kind, op_name))
    return wall, sorted(rows, reverse=True)


def torch_profile(args) -> tuple[float, list[tuple]]:
    import torch  # noqa: PLC0415
    import torchvision  # noqa: PLC0415
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415

    torch.set_num_threads(os.cpu_count() or 1)
    build = getattr(torchvision.models.segmentation, f"deeplabv3_{args.backbone}")
    model = build(weights=None, weights_backbone=None, num_classes=21)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution)
    x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 21, (args.batch, args.resolution, args.resolution))

    def call():
        if args.task == "inference":
            with torch.inference_mode():
                model.eval()(x)["out"]
        else:
            model.train()
            loss = torch.nn.functional.cross_entropy(model(x)["out"], labels)
            loss.backward()

    call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        call()
        wall = time.perf_counter() - start
    rows = [
        (event.self_cpu_time_total * 1e3, event.key, event.count)
        for event in prof.key_averages()
        if event.self_cpu_time_total > 0
    ]
    return wall, sorted(rows, reverse=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="inference", choices=["inference", "train"])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--resolution", type=int, default=513)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument(
        "--forms", default="reference", choices=["reference", "segmenter"], help="see docstring"
    )
    p.add_argument("--layers", default="reference", choices=["reference", "cpu"], help="train")
    p.add_argument("--top", type=int, default=25, help="thunks listed one by one")
    p.add_argument("--torch", action="store_true", help="profile torchvision too")
    p.add_argument("--smoke", action="store_true", help="tiny model, 65x65 (CI)")
    args = p.parse_args(argv)
    common.print_context(["torch", "torchvision"])

    from jaxseg.inference_forms import (  # noqa: PLC0415
        compiler_options_for_backend,
        fast_forms_for_backend,
    )

    ns = argparse.Namespace(
        model="DeepLabV3",
        backbone=args.backbone,
        output_stride=8,
        atrous_rates=None,
        num_classes=21,
        layers=args.layers,
        model_arg=[],
    )
    if args.smoke:
        from jaxseg.backbones import ResNet  # noqa: PLC0415

        ns.backbone = lambda **kw: ResNet(stage_sizes=(1, 1, 1, 3), base_width=8, **kw)
        args.resolution, args.batch, args.top, args.torch = 65, 1, 5, False
    model = _step.build_model(ns, "float32")
    data = _step.fake_batch(args.batch, args.resolution, 21)
    images = jnp.asarray(data["image"])
    options: dict = {}
    if args.task == "inference":
        variables = jax.jit(lambda x: model.init(jax.random.key(0), x))(images[:1, :65, :65])
        if args.forms == "segmenter":
            model, variables = fast_forms_for_backend(model, variables)
            options = compiler_options_for_backend()

        def fn(v, x):
            return model.apply(v, x, train=False)

        compiled = jax.jit(fn).lower(variables, images).compile(compiler_options=options)
        wall, rows = xla_profile(
            lambda: jax.block_until_ready(compiled(variables, images)), compiled.as_text()
        )
    else:
        step = _step.compile_train_step(model, {k: data[k] for k in ("image", "label")})
        wall, rows = xla_profile(step.run, step.compiled.as_text())
    total = sum(r[0] for r in rows)
    print(f"\nours: {args.task}, forms {args.forms}, layers {args.layers}, options {options}")
    print(f"wall {wall * 1e3:.0f} ms; thunk time {total / 1e6:.0f} ms (two threads)")
    if total < 0.8 * wall * 1e9:
        print("(thunks cover < 80% of the wall time: asynchronous Eigen convolutions and GEMMs")
        print(" are not attributed; see the module docstring and benchmarks/cpu_convs.py)")
    print()
    by_kind: collections.Counter = collections.Counter()
    for ns_, *_, kind, _ in ((r[0], r[1], r[2], r[3], r[4]) for r in rows):
        by_kind[kind] += ns_
    common.print_table(
        ["kind", "thunk ms", "share"],
        [[k, f"{v / 1e6:.1f}", f"{100 * v / total:.1f}%"] for k, v in by_kind.most_common()],
    )
    print()
    common.print_table(
        ["thunk ms", "share", "kind", "shape", "op (module path / primitive)"],
        [
            [f"{r[0] / 1e6:.1f}", f"{100 * r[0] / total:.1f}%", r[3], r[2], r[4][-110:]]
            for r in rows[: args.top]
        ],
    )
    if args.torch:
        wall, trows = torch_profile(args)
        ttotal = sum(r[0] for r in trows)
        print(f"\ntorchvision deeplabv3_{args.backbone}: wall {wall * 1e3:.0f} ms (profiled)\n")
        common.print_table(
            ["aten op", "calls", "self CPU ms", "share"],
            [
                [r[1], r[2], f"{r[0] / 1e6:.1f}", f"{100 * r[0] / ttotal:.1f}%"]
                for r in trows[: args.top]
            ],
        )
    print(f"load average at end (1/5/15 min): {common.load_average()}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
