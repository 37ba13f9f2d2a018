"""Forward+backward timings of the segmentation ops, each implementation side by side.

    python benchmarks/ops.py                      # all sections, default shapes
    python benchmarks/ops.py --sections atrous --size 65 --rates 1 6 12 18
    python benchmarks/ops.py --smoke              # tiny shapes, one iteration (CI)

Sections:
- atrous: 3x3 atrous conv, dense (C -> O) and depthwise (C groups), at each rate, and a 1x1
  conv ("pointwise"), for every `impl` of `jaxseg.ops.atrous_conv2d` and for "cpu",
  `jaxseg.ops.cpu.atrous_conv2d` (tap and region forms); "vs r1" is the time over
  the undilated conv of the same shape and impl (the issue's target: <= 1.3x). The forward
  pass's compiled HLO is grepped for weight-gradient convolutions (cuDNN's
  `convBackwardFilter`), XLA GPU's slow path for dilated convs. Dense dilated convs also run
  as one GEMM over the padded im2col (what the CPU form did before its per-region GEMMs).
- transpose: `conv_transpose2d` ("xla": `lax.conv_transpose`) and its CPU form
  `jaxseg.ops.cpu.conv_transpose2d` ("phase": each of the s*s
  output phases a small undilated conv, all in one conv + depth-to-space) against a conv over
  the zero-dilated input, a 1x1 conv + depth_to_space (k2 s2) and, for the fixed bilinear
  kernel, a depthwise form.
- unpool: `max_unpool` (one-hot select) against a scatter (`.at[].set`) version, and the HLO
  of each is checked for scatter.
- pool: ResNet's overlapping 3x3/2 max pool, flax's `reduce_window` against `ops.max_pool2d`.
- resize: `resize_bilinear` in both conventions against `jax.image.resize`.

Every alternative is checked against ours (max |diff| column) so a faster one is a drop-in.
Times are medians of --iters calls after --warmup, each ending in `block_until_ready`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import jax
import jax.numpy as jnp
from einops import rearrange
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402

from jaxseg import ops  # noqa: E402
from jaxseg.ops import cpu as cpu_ops  # noqa: E402

_DIMS = ("NHWC", "HWIO", "NHWC")
HEADER = [
    "section",
    "op",
    "impl",
    "shape",
    "median ms",
    "min-max ms",
    "vs base",
    "max |diff|",
    "HLO",
]

# Opcodes / custom-call targets worth seeing in compiled HLO. On GPU a forward conv should be
# `__cudnn$convForward`; `convBackwardFilter` in a forward pass is XLA's slow dilated-conv path.
HLO_NAMES = (
    "convolution(",
    "custom-call(",
    "convBackwardFilter",
    "cudnn-conv-bw-filter",
    "scatter(",
    "gather(",
    "dot(",
)


def _hlo_summary(compiled) -> str:
    counts = common.hlo_op_counts(compiled.as_text(), HLO_NAMES)
    shown = {k.rstrip("("): v for k, v in counts.items() if v}
    return " ".join(f"{k}:{v}" for k, v in shown.items()) or "-"


def _rand(key: int, shape, dtype) -> jax.Array:
    return jax.random.normal(jax.random.key(key), shape, jnp.float32).astype(dtype)


def _fwd_bwd(fn, *args, diff_args: int | None = None):
    """jit(args -> (y, grads)): forward plus the backward pass a training step runs.

    Gradients are taken w.r.t. the first `diff_args` arguments (all by default); the rest are
    inputs that are not trained (a fixed kernel) but still passed as arguments, so XLA cannot
    constant-fold them into the program.
    """
    n = len(args) if diff_args is None else diff_args

    def run(*a):
        y, vjp = jax.vjp(lambda *d: fn(*d, *a[n:]), *a[:n])
        return y, vjp(jnp.ones_like(y))  # ones: every output contributes, like a loss would

    return jax.jit(run), args


def _measure(fn, args, warmup: int, iters: int) -> tuple[list[float], object]:
    out = jax.block_until_ready(fn(*args))  # compile outside the timing
    times = common.time_call(lambda: jax.block_until_ready(fn(*args)), warmup, iters)
    return times, out


def _max_diff(a, b) -> float:
    return float(jnp.max(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))))


# ---------------------------------------------------------------------------------------------
# atrous


def _atrous_variants(groups: int, rate: int, impls):
    """(label, fn(x, kernel)) for each `impl` of `jaxseg.ops.atrous_conv2d`, and for a dense
    dilated conv the one-GEMM padded im2col."""
    conv = functools.partial(ops.atrous_conv2d, rate=rate, feature_group_count=groups)
    cpu_conv = functools.partial(cpu_ops.atrous_conv2d, rate=rate, feature_group_count=groups)
    variants = [
        (impl, cpu_conv if impl == "cpu" else functools.partial(conv, impl=impl)) for impl in impls
    ]
    if groups == 1 and rate > 1:
        variants.append(("alt: one padded im2col GEMM", functools.partial(im2col_conv, rate=rate)))
    return variants


def im2col_conv(x, kernel, rate: int):
    """SAME dilated conv (odd kernel) as one GEMM over all taps of the zero-padded input."""
    k, pad = kernel.shape[0], rate * (kernel.shape[0] - 1) // 2
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    h, w = x.shape[1:3]
    taps = [(i * rate, j * rate) for i in range(k) for j in range(k)]
    cols = jnp.concatenate([padded[:, i : i + h, j : j + w] for i, j in taps], axis=-1)
    return jnp.einsum("bhwk,ko->bhwo", cols, kernel.reshape(-1, kernel.shape[-1]).astype(x.dtype))


def bench_atrous(args, rows):
    dtype = jnp.dtype(args.dtype)
    b, s, c = args.batch, args.size, args.channels
    for kind in args.atrous_kinds:
        channels = args.dw_channels if kind == "depthwise" else c
        groups = channels if kind == "depthwise" else 1
        out_channels = channels if kind == "depthwise" else (args.out_channels or channels)
        k = 1 if kind == "pointwise" else 3
        x = _rand(0, (b, s, s, channels), dtype)
        kernel = _rand(1, (k, k, channels // groups, out_channels), jnp.float32) * 0.05
        base_ms: dict[str, float] = {}
        for rate in [1] if kind == "pointwise" else args.rates:
            ref = None
            for impl, conv in _atrous_variants(groups, rate, args.impls):
                fwd = jax.jit(conv).lower(x, kernel).compile()
                step, call_args = _fwd_bwd(conv, x, kernel)
                times, (y, _) = _measure(step, call_args, args.warmup, args.iters)
                ms = common.median_ms(times)
                if rate == 1:
                    base_ms[impl] = ms
                ref = y if ref is None else ref
                rows.append(
                    [
                        "atrous",
                        f"{kind} {k}x{k} r{rate}",
                        impl,
                        f"{b}x{s}x{s}x{channels}->{out_channels}",
                        f"{ms:.2f}",
                        common.spread_ms(times),
                        f"{ms / base_ms[impl]:.2f}x r1" if impl in base_ms else "",
                        f"{_max_diff(y, ref):.1e}",
                        "fwd " + _hlo_summary(fwd),
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)


# ---------------------------------------------------------------------------------------------
# transposed convolution


def _same_transpose_pads(k: int, s: int) -> tuple[int, int]:
    # Padding of the zero-dilated input that makes a SAME transposed conv (output = input * s),
    # the transpose of a forward SAME conv; the same rule as `jaxseg.ops.conv_transpose2d`.
    before = max(k - s, 0) // 2
    return k - 1 - before, s - 1 + before


def direct_conv_transpose(x, kernel, stride: int):
    """Conv over the zero-dilated input with the spatially flipped kernel, no I/O swap."""
    pads = [_same_transpose_pads(k, stride) for k in kernel.shape[:2]]
    return lax.conv_general_dilated(
        x,
        kernel[::-1, ::-1].astype(x.dtype),
        window_strides=(1, 1),
        padding=pads,
        lhs_dilation=(stride, stride),
        dimension_numbers=_DIMS,
    )


def depthwise_conv_transpose(x, kernel_dw, stride: int):
    """Grouped transposed conv for a diagonal kernel; `kernel_dw` is `[k, k, 1, C]`."""
    pads = [_same_transpose_pads(k, stride) for k in kernel_dw.shape[:2]]
    return lax.conv_general_dilated(
        x,
        kernel_dw[::-1, ::-1].astype(x.dtype),
        window_strides=(1, 1),
        padding=pads,
        lhs_dilation=(stride, stride),
        dimension_numbers=_DIMS,
        feature_group_count=x.shape[-1],
    )


def pointwise_depth_to_space(x, kernel):
    """k2 s2 up-conv as a 1x1 conv to 4*O channels + depth_to_space (no overlap, no zeros)."""
    k = kernel.shape[0]
    w = rearrange(kernel.astype(x.dtype), "dy dx i o -> i (dy dx o)")
    return ops.depth_to_space(jnp.einsum("bhwi,io->bhwo", x, w), k)


def _bench_variants(section, op_name, shape, variants, call_args, args, rows, diff_args=None):
    base = None
    ref = None
    for name, fn in variants:
        compiled = jax.jit(fn).lower(*call_args).compile()
        step, a = _fwd_bwd(fn, *call_args, diff_args=diff_args)
        times, (y, _) = _measure(step, a, args.warmup, args.iters)
        ms = common.median_ms(times)
        base = ms if base is None else base
        ref = y if ref is None else ref
        rows.append(
            [
                section,
                op_name,
                name,
                shape,
                f"{ms:.2f}",
                common.spread_ms(times),
                f"{ms / base:.2f}x",
                f"{_max_diff(y, ref):.1e}",
                "fwd " + _hlo_summary(compiled),
            ]
        )
        print(" | ".join(rows[-1]), flush=True)


def _transpose_impls():
    return [
        ("conv_transpose2d impl=xla", lambda x, k: ops.conv_transpose2d(x, k, 2)),
        ("conv_transpose2d impl=phase (ops.cpu)", lambda x, k: cpu_ops.conv_transpose2d(x, k, 2)),
    ]


def bench_transpose(args, rows):
    dtype = jnp.dtype(args.dtype)
    b, s = args.batch, args.up_size
    # U-Net style learned k2 s2 up-conv, C -> C/2.
    cin, cout = args.up_channels, args.up_channels // 2
    x = _rand(2, (b, s, s, cin), dtype)
    kernel = _rand(3, (2, 2, cin, cout), jnp.float32) * 0.05
    _bench_variants(
        "transpose",
        f"k2s2 {cin}->{cout}",
        f"{b}x{s}x{s}x{cin}",
        [
            *_transpose_impls(),
            ("lax dilated-input", lambda x, k: direct_conv_transpose(x, k, 2)),
            ("1x1+depth_to_space", pointwise_depth_to_space),
        ],
        (x, kernel),
        args,
        rows,
    )
    # Learned k4 s2 (FCN's 2x score upsampling, bilinear-initialised but trained).
    c = args.classes
    x = _rand(4, (b, s, s, c), dtype)
    kernel = _rand(7, (4, 4, c, c), jnp.float32) * 0.05
    _bench_variants(
        "transpose",
        f"k4s2 {c}->{c} learned",
        f"{b}x{s}x{s}x{c}",
        [
            *_transpose_impls(),
            ("lax dilated-input", lambda x, k: direct_conv_transpose(x, k, 2)),
        ],
        (x, kernel),
        args,
        rows,
    )
    # Fixed bilinear k4 s2 (FCN's final upsampling): not trained, and the diagonal kernel makes
    # the dense C x C conv mostly zeros. Kernels are arguments (not constants XLA could fold).
    dense = ops.bilinear_kernel(4, c)
    diag = jnp.tile(ops.bilinear_kernel(4, 1), (1, 1, 1, c))  # [4, 4, 1, C]
    _bench_variants(
        "transpose",
        f"k4s2 {c}->{c} fixed bilinear",
        f"{b}x{s}x{s}x{c}",
        [
            *((name, lambda x, k, kd, f=f: f(x, k)) for name, f in _transpose_impls()),
            ("depthwise dilated-input", lambda x, k, kd: depthwise_conv_transpose(x, kd, 2)),
            (
                "resize_bilinear (not equal at borders)",
                lambda x, k, kd: ops.resize_bilinear(x, (2 * s, 2 * s)),
            ),
        ],
        (x, dense, diag),
        args,
        rows,
        diff_args=1,
    )


# ---------------------------------------------------------------------------------------------
# unpooling


def scatter_unpool(pooled, argmax, window: int = 2):
    """The textbook unpooling: scatter each value to its argmax position (for comparison)."""
    b, h, w, c = pooled.shape
    dy, dx = argmax // window, argmax % window
    rows = jnp.arange(h)[None, :, None, None] * window + dy
    cols = jnp.arange(w)[None, None, :, None] * window + dx
    bi = jnp.broadcast_to(jnp.arange(b)[:, None, None, None], pooled.shape)
    ci = jnp.broadcast_to(jnp.arange(c)[None, None, None, :], pooled.shape)
    out = jnp.zeros((b, h * window, w * window, c), pooled.dtype)
    return out.at[bi, rows, cols, ci].set(pooled)


def bench_unpool(args, rows):
    dtype = jnp.dtype(args.dtype)
    b, s, c = args.batch, args.pool_size, args.pool_channels
    x = _rand(5, (b, s, s, c), dtype)
    pooled, argmax = ops.max_pool_with_argmax(x, 2)
    _bench_variants(
        "unpool",
        "max_unpool 2x2",
        f"{b}x{s // 2}x{s // 2}x{c}",
        [
            ("ours (one-hot select)", lambda p: ops.max_unpool(p, argmax, 2)),
            ("scatter .at[].set", lambda p: scatter_unpool(p, argmax, 2)),
        ],
        (pooled,),
        args,
        rows,
    )
    # The pooling side too: SegNet runs it 5 times per forward pass.
    _bench_variants(
        "unpool",
        "max_pool_with_argmax 2x2",
        f"{b}x{s}x{s}x{c}",
        [
            ("ours (window reshape)", lambda x: ops.max_pool_with_argmax(x, 2)[0]),
            (
                "lax.reduce_window max (no argmax)",
                lambda x: lax.reduce_window(
                    x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
                ),
            ),
        ],
        (x,),
        args,
        rows,
    )


def bench_pool(args, rows):
    """ResNet's stem pool (3x3, stride 2, pad 1) runs at the largest feature map of the net."""
    import flax.linen as nn  # noqa: PLC0415

    dtype = jnp.dtype(args.dtype)
    b, s, c = args.batch, args.stem_size, 64
    x = jax.nn.relu(_rand(8, (b, s, s, c), dtype))
    _bench_variants(
        "pool",
        "max pool 3x3/2 (ResNet stem)",
        f"{b}x{s}x{s}x{c}",
        [
            (
                "flax nn.max_pool (reduce_window)",
                lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))),
            ),
            (
                "ours: `max_pool2d` (running max of strided views)",
                lambda x: ops.max_pool2d(x, 3, 2, ((1, 1), (1, 1))),
            ),
        ],
        (x,),
        args,
        rows,
    )


# ---------------------------------------------------------------------------------------------
# resize


def bench_resize(args, rows):
    dtype = jnp.dtype(args.dtype)
    b, s, c, out = args.batch, args.resize_in, args.classes, args.resize_out
    x = _rand(6, (b, s, s, c), dtype)
    size = (out, out)
    _bench_variants(
        "resize",
        f"bilinear {s}->{out}",
        f"{b}x{s}x{s}x{c}",
        [
            ("ours half-pixel", lambda x: ops.resize_bilinear(x, size)),
            (
                "jax.image.resize",
                lambda x: jax.image.resize(x, (b, out, out, c), "bilinear"),
            ),
        ],
        (x,),
        args,
        rows,
    )
    _bench_variants(
        "resize",
        f"bilinear {s}->{out}",
        f"{b}x{s}x{s}x{c}",
        [("ours align_corners", lambda x: ops.resize_bilinear(x, size, align_corners=True))],
        (x,),
        args,
        rows,
    )


SECTIONS = {
    "atrous": bench_atrous,
    "transpose": bench_transpose,
    "unpool": bench_unpool,
    "pool": bench_pool,
    "resize": bench_resize,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=33, help="atrous input side (33: ASPP at OS16)")
    p.add_argument("--channels", type=int, default=256, help="dense atrous input channels")
    p.add_argument("--out-channels", type=int, default=None, help="dense; default = --channels")
    p.add_argument("--dw-channels", type=int, default=728, help="depthwise channels (Xception)")
    p.add_argument("--rates", type=int, nargs="+", default=[1, 2, 4, 6, 12, 18, 24, 36])
    p.add_argument(
        "--impls",
        nargs="+",
        default=["xla", "space_to_batch", "cpu"],
        help="atrous_conv2d impls, and 'cpu' for jaxseg.ops.cpu.atrous_conv2d",
    )
    p.add_argument(
        "--atrous-kinds",
        nargs="+",
        default=["dense", "depthwise", "pointwise"],
        choices=["dense", "depthwise", "pointwise"],
    )
    p.add_argument("--up-size", type=int, default=64, help="transposed conv input side")
    p.add_argument("--up-channels", type=int, default=128)
    p.add_argument("--classes", type=int, default=21)
    p.add_argument("--pool-size", type=int, default=128)
    p.add_argument("--pool-channels", type=int, default=64)
    p.add_argument("--stem-size", type=int, default=128, help="ResNet stem pool input side")
    p.add_argument("--resize-in", type=int, default=65)
    p.add_argument("--resize-out", type=int, default=513)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="tiny shapes, 1 iteration (CI)")
    args = p.parse_args(argv)
    if args.smoke:
        args.batch, args.size, args.channels, args.dw_channels = 1, 16, 8, 8
        args.rates = [r for r in args.rates if r <= 2] or [1]
        args.up_size, args.up_channels, args.classes = 8, 8, 3
        args.pool_size, args.pool_channels, args.stem_size = 16, 4, 16
        args.resize_in, args.resize_out = 9, 33
        args.warmup, args.iters = 0, 1
    if 1 not in args.rates:
        args.rates = [1, *args.rates]  # the baseline every rate is compared with
    return args


def summarize_atrous(rows) -> None:
    """Fastest implementation per rate, the 1.3x-of-undilated target, and the HLO check."""
    atrous = [r for r in rows if r[0] == "atrous"]
    if not atrous:
        return
    by_op: dict[str, list] = {}
    for r in atrous:
        by_op.setdefault(r[1], []).append(r)
    print("\natrous: fastest per op (ours = jaxseg impls; alt = benchmark-only formulations)")
    for op, group in by_op.items():
        best = min(group, key=lambda r: float(r[4]))
        ours = min((r for r in group if not r[2].startswith("alt")), key=lambda r: float(r[4]))
        print(f"  {op}: fastest {best[2]} {best[4]} ms; best jaxseg impl {ours[2]} {ours[4]} ms")
    for impl in dict.fromkeys(r[2] for r in atrous):
        for kind in ("dense 3x3", "depthwise 3x3"):
            ratios = [
                float(r[6].split("x")[0])
                for r in atrous
                if r[2] == impl and r[1].startswith(kind) and r[6]
            ]
            if ratios:
                verdict = "meets" if max(ratios) <= 1.3 else "misses"
                print(
                    f"  target <= 1.3x of r1: {kind} {impl}: worst {max(ratios):.2f}x ({verdict})"
                )
    slow = [r for r in atrous if "convBackwardFilter" in r[8] or "cudnn-conv-bw-filter" in r[8]]
    where = ", ".join(f"{r[1]} {r[2]}" for r in slow) or "none"
    print(f"  forward passes with a weight-gradient conv (XLA GPU slow path): {where}")


def main(argv=None):
    args = parse_args(argv)
    common.print_context()
    print(f"dtype: {args.dtype}; fwd+bwd medians of {args.iters} after {args.warmup} warm-up")
    rows: list[list[str]] = []
    for name in args.sections:
        SECTIONS[name](args, rows)
    print()
    common.print_table(HEADER, rows)
    summarize_atrous(rows)
    print(f"load average at end (1/5/15 min): {common.load_average()}")


if __name__ == "__main__":
    main()
