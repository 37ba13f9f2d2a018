"""DeepLab v3 ResNet-50 (OS8, 513x513)'s convolutions one by one on a CPU: XLA against oneDNN.

    python benchmarks/cpu_convs.py --iters 7
    python benchmarks/cpu_convs.py --smoke

Each conv shape of the network (forward, batch 1, followed by a ReLU as in the network) runs
as:
- "xla": `jaxseg.ops.atrous_conv2d` (one XLA convolution; a 1x1 conv is rewritten by XLA into
  a GEMM), compiled with XLA's default CPU options (in jax 0.10 convolutions and GEMMs go to
  YNNPACK library fusions);
- "xla no-ynn": the same program compiled with `xla_cpu_experimental_ynn_fusion_type=""`
  (XLA's own Eigen kernels; what `jaxseg.inference_forms` sets on a CPU);
- "cpu form": `jaxseg.ops.cpu.atrous_conv2d` (1x1 as GEMM, region split for mostly-padding
  dilated convs), compiled as "xla no-ynn" (what `Segmenter` runs on a CPU);
- "torch": `torch.nn.Conv2d` in channels_last, `inference_mode` (oneDNN), one thread per core
  (needs torch).

The calls alternate in every round, so load changes hit every variant; times are medians.
"max rel diff" is each JAX variant's largest difference from "xla", over the largest |value|.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402

from jaxseg import ops  # noqa: E402
from jaxseg.inference_forms import CPU_COMPILER_OPTIONS  # noqa: E402
from jaxseg.ops import cpu as cpu_ops  # noqa: E402

# (map side, in channels, out channels, kernel, rate, how many in the network)
SHAPES = (
    (257, 3, 64, 7, 1, 1),  # stem (stride 2 on 513; here stride 1 on the stride-2 grid)
    (129, 64, 64, 3, 1, 3),  # stage 1 3x3
    (129, 256, 64, 1, 1, 3),  # stage 1 1x1 reduce
    (65, 128, 128, 3, 1, 3),  # stage 2 3x3
    (65, 512, 128, 1, 1, 3),
    (65, 256, 256, 3, 2, 6),  # stage 3 (dilated, OS8)
    (65, 1024, 256, 1, 1, 5),
    (65, 256, 1024, 1, 1, 6),
    (65, 512, 512, 3, 4, 1),  # stage 4, multi-grid 1/2/4 x rate 4
    (65, 512, 512, 3, 8, 1),
    (65, 512, 512, 3, 16, 1),
    (65, 1024, 2048, 1, 1, 1),  # stage 4 shortcut
    (65, 2048, 512, 1, 1, 2),
    (65, 512, 2048, 1, 1, 3),
    (65, 2048, 256, 3, 12, 1),  # ASPP
    (65, 2048, 256, 3, 24, 1),
    (65, 2048, 256, 3, 36, 1),
    (65, 2048, 256, 1, 1, 1),
)
HEADER = [
    "map x C -> O",
    "k",
    "rate",
    "n",
    "GFLOP",
    "xla ms",
    "xla no-ynn ms",
    "cpu form ms",
    "torch ms",
    "torch / best ours",
    "max rel diff",
]


def _jax_variants(kernel_size: int, rate: int):
    conv = functools.partial(ops.atrous_conv2d, rate=rate)
    cpu = functools.partial(cpu_ops.atrous_conv2d, rate=rate)
    return {
        "xla": (conv, {}),
        "xla no-ynn": (conv, CPU_COMPILER_OPTIONS),
        "cpu form": (cpu, CPU_COMPILER_OPTIONS),
    }


def _torch_conv(size, channels, out, k, rate):
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    layer = torch.nn.Conv2d(channels, out, k, padding=rate * (k - 1) // 2, dilation=rate)
    layer = layer.eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, channels, size, size).contiguous(memory_format=torch.channels_last)

    def call():
        with torch.inference_mode():
            torch.relu(layer(x))

    return call


def _run(compiled, x, w):
    return jax.block_until_ready(compiled(x, w))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--iters", type=int, default=5, help="rounds; the first is not timed")
    p.add_argument("--smoke", action="store_true", help="two small shapes, 2 rounds (CI)")
    args = p.parse_args(argv)
    common.print_context(["torch"])
    shapes = SHAPES
    if args.smoke:
        shapes, args.iters = ((17, 8, 8, 3, 2, 1), (17, 16, 8, 1, 1, 1)), 2
    rows, totals = [], {}
    for size, channels, out, k, rate, count in shapes:
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((1, size, size, channels), np.float32))
        w = jnp.asarray(rng.standard_normal((k, k, channels, out), np.float32) * 0.05)
        calls, outputs = {}, {}
        for name, (fn, options) in _jax_variants(k, rate).items():
            compiled = (
                jax.jit(lambda x, w, fn=fn: jax.nn.relu(fn(x, w)))
                .lower(x, w)
                .compile(compiler_options=options)
            )
            outputs[name] = np.asarray(compiled(x, w))
            calls[name] = functools.partial(_run, compiled, x, w)
        torch_call = _torch_conv(size, channels, out, k, rate)
        if torch_call is not None:
            calls["torch"] = torch_call
        times = {name: [] for name in calls}
        for round_ in range(args.iters):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                if round_:
                    times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        for name, ms in med.items():
            totals[name] = totals.get(name, 0.0) + ms * count
        scale = np.abs(outputs["xla"]).max()
        diff = max(np.abs(o - outputs["xla"]).max() for o in outputs.values()) / scale
        best = min(med[n] for n in ("xla", "xla no-ynn", "cpu form"))
        rows.append(
            [
                f"{size}x{size}x{channels} -> {out}",
                k,
                rate,
                count,
                f"{2 * size * size * channels * out * k * k / 1e9:.2f}",
                f"{med['xla']:.1f}",
                f"{med['xla no-ynn']:.1f}",
                f"{med['cpu form']:.1f}",
                f"{med['torch']:.1f}" if "torch" in med else "n/a",
                f"{med['torch'] / best:.2f}x" if "torch" in med else "n/a",
                f"{diff:.1e}",
            ]
        )
        print(" | ".join(str(c) for c in rows[-1]), flush=True)
    print()
    common.print_table(HEADER, rows)
    print("\nweighted by the count n in the network (ms):")
    common.print_table(list(totals), [[f"{v:.0f}" for v in totals.values()]])
    print(f"load average at end (1/5/15 min): {common.load_average()}")


if __name__ == "__main__":
    main()
