"""Training-step throughput, memory and FLOPs utilisation: model x resolution x batch x dtype.

    python benchmarks/train_step.py --model DeepLabV3Plus --backbone resnet50 \
        --resolution 256 --batch 4 --dtype float32
    python benchmarks/train_step.py --model DeepLabV3 --backbone resnet101 --output-stride 8 \
        --atrous-rates 12 24 36 --resolution 513 --batch 8 --dtype bfloat16   # GPU
    python benchmarks/train_step.py --smoke                                    # CI

What is timed: the real `jaxseg.train.steps.train_step` (see `_step.py`), compiled once, then
--iters calls after --warmup, each waiting for the step's outputs (`block_until_ready`).

Columns:
- step ms: median (and min-max) wall time of one step; images/s = batch / median.
- XLA GFLOP/img: `compiled.cost_analysis()["flops"]` of the whole step (forward, backward,
  optimizer update) per image: what the compiled program executes.
- model GFLOP/img: 3 x the analytic conv+matmul FLOPs of one forward pass (`flops.py`): the
  model FLOPs that MFU is quoted against.
- MFU: model FLOPs per second over the device's peak (`_common.PEAK_TFLOPS`, per chip, dense,
  for the compute dtype). On CPU there is no data-sheet peak: MFU is against a measured f32/bf16
  GEMM on this machine ("vs GEMM") unless --peak-tflops is given.
- memory: XLA's compile-time estimate (arguments + outputs + temporaries) on every backend;
  the allocator's peak (`device.memory_stats()["peak_bytes_in_use"]`) where it exists (GPU,
  TPU; 'n/a' on CPU); and the process's peak host RSS (CPU: includes the Python runtime).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402
import _step  # noqa: E402
import flops as flop_count  # noqa: E402

HEADER = [
    "model",
    "res",
    "batch",
    "dtype",
    "step ms",
    "min-max ms",
    "img/s",
    "compile s",
    "XLA GFLOP/img",
    "model GFLOP/img",
    "TFLOP/s",
    "peak TFLOP/s",
    "MFU",
    "XLA mem MiB",
    "dev peak MiB",
    "host RSS MiB",
    "load 1/5/15",
]


def gemm_tflops(dtype: str, n: int = 1024, iters: int = 10) -> float:
    """Achieved TFLOP/s of an n x n matmul on the default device (CPU's practical peak)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    matmul = jax.jit(lambda a: a @ a)
    call = lambda: jax.block_until_ready(matmul(a))
    times = common.time_call(call, warmup=2, iters=iters)
    return 2 * n**3 / min(times) / 1e12  # min: the machine's capability, not its load


def peak_for(dtype: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "given"
    device = jax.devices()[0]
    peak = common.peak_tflops(device.device_kind, dtype)
    if peak is not None:
        return peak, "data sheet"
    if device.platform == "cpu":
        return gemm_tflops(dtype), "vs GEMM"
    return None, "unknown device"


def bench_one(args, resolution: int, batch: int, dtype: str, gemm_cache: dict) -> list[str]:
    model = _step.build_model(args, dtype)
    fwd = _step.forward_flops_per_image(model, resolution)
    model_flops = flop_count.TRAIN_FLOPS_PER_FORWARD * fwd["total"]
    data = _step.fake_batch(batch, resolution, args.num_classes)
    step = _step.compile_train_step(model, data, devices=args.devices)
    xla_flops = common.compiled_flops(step.compiled)
    xla_mem = common.compiled_memory_mib(step.compiled)

    times = common.time_call(step.run, args.warmup, args.iters)
    median_s = common.median_ms(times) / 1e3
    achieved = model_flops * batch / median_s / 1e12
    if dtype not in gemm_cache:
        gemm_cache[dtype] = peak_for(dtype, args.peak_tflops)
    peak, source = gemm_cache[dtype]
    # Peak is per chip: the step ran on `devices` chips.
    mfu = None if peak is None else achieved / (peak * args.devices)
    dev_peak = common.device_peak_mib(jax.devices()[0])
    row = [
        _step.model_label(args),
        resolution,
        batch,
        dtype,
        f"{median_s * 1e3:.1f}",
        common.spread_ms(times),
        f"{batch / median_s:.2f}",
        f"{step.compile_s:.1f}",
        common.fmt(None if xla_flops is None else xla_flops / batch / 1e9),
        f"{model_flops / 1e9:.1f}",
        f"{achieved:.3f}",
        f"{common.fmt(peak, '.3g')} ({source})",
        "n/a" if mfu is None else f"{100 * mfu:.1f}%",
        common.fmt(xla_mem, ".0f"),
        common.fmt(dev_peak, ".0f"),
        f"{common.host_peak_rss_mib():.0f}",
        common.load_average(),
    ]
    del step
    return row


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    _step.add_model_args(p)
    p.add_argument("--resolution", type=int, nargs="+", default=[256])
    p.add_argument("--batch", type=int, nargs="+", default=[4])
    p.add_argument("--dtype", nargs="+", default=["float32"], choices=list(_step.DTYPES))
    p.add_argument("--devices", type=int, default=1, help="data-parallel devices (global batch)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=None, help="override the peak per chip")
    p.add_argument("--smoke", action="store_true", help="32x32, batch 1, 1 iteration (CI)")
    args = p.parse_args(argv)
    if args.smoke:
        args.resolution, args.batch, args.dtype = [32], [1], ["float32"]
        args.warmup, args.iters = 0, 1
        args.peak_tflops = args.peak_tflops or 1.0  # skip the GEMM probe
    return args


def main(argv=None):
    args = parse_args(argv)
    common.print_context()
    print(
        f"step: jaxseg.train.steps.train_step (SGD momentum 0.9, CE ignore 255), "
        f"{args.devices} device(s); median of {args.iters} after {args.warmup} warm-up",
        flush=True,
    )
    rows, gemm_cache = [], {}
    for res, batch, dtype in itertools.product(args.resolution, args.batch, args.dtype):
        rows.append(bench_one(args, res, batch, dtype, gemm_cache))
        print(" | ".join(map(str, rows[-1])), flush=True)
    print()
    common.print_table(HEADER, rows)


if __name__ == "__main__":
    main()
