"""Convolutions written over their kernel taps: XLA CPU's fast forms of three conv kinds.

Each tap `(i, j)` of a kernel reads a shifted (and strided) view of the padded input, so a conv
is a sum over taps. On CPU, XLA's convolution emitter, and above all the weight gradients it
builds from convolutions with batch and space moved into the feature dimensions, is slow for:

- 1x1 convs: one tap, i.e. a plain `[B*H*W, C] @ [C, O]` GEMM;
- dilated convs whose rate is large for the map, so that most taps read padding for most
  outputs: XLA computes over the padded input, its time growing with the rate. Here the output
  is cut into the (at most 3x3) regions over which the same taps are in bounds, and each region
  is one im2col GEMM of only those taps: only the useful FLOPs (`_region_conv`);
- depthwise convs: a multiply-add per tap, elementwise. Where padding grows the map little
  (stride 1, padded area at most `PAD_ONCE_MAX_GROWTH` times the map) the forward pass pads
  the input once and slices the taps from it, about 4x faster than zero-filling each tap's
  view; the gradient stays that of the per-view form, which is the faster one backwards.

Other dense convs stay XLA convolutions: undilated ones, and dilated ones whose im2col would
be mostly in bounds. The measurements behind each choice and the thresholds below are in
benchmarks/RESULTS.md ("CPU conv forms").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

# The region split is used where at most this share of the (output, tap) pairs read real
# pixels, or a little more where every region is wide (benchmarks/RESULTS.md, "CPU conv forms").
REGION_MAX_LIVE_FRACTION = 0.5
REGION_WIDE_MAX_LIVE_FRACTION, REGION_WIDE_MIN_BAND = 0.6, 8
# A stride-1 depthwise conv pads its input once (forward) where the padded map is at most this
# many times the map: measured 1.6-4x faster forward up to 3.1x (33x33 at rate 12), 0.43x at
# 4.4x (33x33 at rate 18) (benchmarks/RESULTS.md, "Depthwise convs: pad once").
PAD_ONCE_MAX_GROWTH = 3.2


def use_tap_conv(x_shape, kernel_shape, groups: int, rates, strides, pads) -> bool:
    """Whether the tap form is the faster one on CPU for this conv (see module docstring)."""
    kh, kw, _, out = kernel_shape
    channels = x_shape[-1]
    if groups == channels and out == channels and groups > 1:  # depthwise, multiplier 1
        return True
    if groups != 1:
        return False
    if (kh, kw) == (1, 1):  # strided too: a strided view, then the GEMM
        return True
    if max(rates) == 1 or max(strides) > 1:
        return False
    live, thinnest = _region_stats(x_shape, kernel_shape, rates, pads)
    return live <= REGION_MAX_LIVE_FRACTION or (
        live <= REGION_WIDE_MAX_LIVE_FRACTION and thinnest >= REGION_WIDE_MIN_BAND
    )


def tap_conv(x, kernel, rates, strides, pads, groups: int, precision=None) -> jax.Array:
    """Conv of `[B, H, W, C]` by an HWIO `kernel` as a sum over its taps.

    Args:
      x: `[B, H, W, C]`.
      kernel: `[kh, kw, C / groups, O]` in `x.dtype`; groups is 1 or C (depthwise, O = C).
      rates, strides: `(h, w)` pairs; a dense kernel wider than 1x1 needs stride 1 (as
        `use_tap_conv` ensures).
      pads: `((top, bottom), (left, right))`, each >= 0.
      precision: passed to the matmuls.

    Returns:
      `[B, H', W', O]`, the shape `lax.conv_general_dilated` gives.
    """
    kh, kw = kernel.shape[:2]
    (rh, rw), (sh, sw) = rates, strides
    (top, bottom), (left, right) = pads
    height, width = x.shape[1:3]
    out_h = (height + top + bottom - (kh - 1) * rh - 1) // sh + 1
    out_w = (width + left + right - (kw - 1) * rw - 1) // sw + 1

    def view(i, j):
        # Tap (i, j) reads x at rows i*rh - top + sh*t, t < out_h (likewise columns). Only the
        # in-bounds part is sliced and the rest zero-filled, instead of padding x once: at a
        # large rate the padded input is many times the map, and so is its gradient.
        return _shifted_view(x, (i * rh - top, j * rw - left), (out_h, out_w), (sh, sw))

    if groups > 1:  # depthwise: a per-channel multiply-add for each tap
        padded = (height + top + bottom) * (width + left + right)
        if (sh, sw) == (1, 1) and padded <= PAD_ONCE_MAX_GROWTH * height * width:
            return _depthwise_pad_once(x, kernel, tuple(rates), tuple(map(tuple, pads)))
        return _depthwise_views(x, kernel, rates, strides, pads)
    if (kh, kw) == (1, 1):
        return _im2col_gemm([view(0, 0)], [kernel[0, 0]], precision)
    return _region_conv(x, kernel, rates, pads, precision)


def _depthwise_views(x, kernel, rates, strides, pads) -> jax.Array:
    """Depthwise conv as a sum over taps of zero-filled shifted views (`_shifted_view`)."""
    kh, kw = kernel.shape[:2]
    (rh, rw), ((top, _), (left, _)) = rates, pads
    counts = tuple(
        (size + lo + hi - (k - 1) * rate - 1) // step + 1
        for size, (lo, hi), k, rate, step in zip(
            x.shape[1:3], pads, (kh, kw), rates, strides, strict=True
        )
    )
    return sum(
        _shifted_view(x, (i * rh - top, j * rw - left), counts, strides) * kernel[i, j, 0]
        for i in range(kh)
        for j in range(kw)
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise_pad_once(x, kernel, rates, pads) -> jax.Array:
    """Stride-1 depthwise conv: x padded once, each tap a slice of it. Its gradient is the
    per-view form's (`_depthwise_views`), which is faster backwards (the padded input's
    gradient would be a padded map to crop)."""
    (rh, rw), ((top, bottom), (left, right)) = rates, pads
    kh, kw = kernel.shape[:2]
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out_h = padded.shape[1] - (kh - 1) * rh
    out_w = padded.shape[2] - (kw - 1) * rw
    return sum(
        lax.slice_in_dim(
            lax.slice_in_dim(padded, i * rh, i * rh + out_h, axis=1), j * rw, j * rw + out_w, axis=2
        )
        * kernel[i, j, 0]
        for i in range(kh)
        for j in range(kw)
    )


def _depthwise_pad_once_fwd(x, kernel, rates, pads):
    return _depthwise_pad_once(x, kernel, rates, pads), (x, kernel)


def _depthwise_pad_once_bwd(rates, pads, residuals, grad):
    x, kernel = residuals
    _, pullback = jax.vjp(lambda a, b: _depthwise_views(a, b, rates, (1, 1), pads), x, kernel)
    return pullback(grad)


_depthwise_pad_once.defvjp(_depthwise_pad_once_fwd, _depthwise_pad_once_bwd)


def _im2col_gemm(views, weights, precision) -> jax.Array:
    """sum_t views[t] @ weights[t] as one GEMM: `[B, h, w, C]` views, `[C, O]` weights."""
    cols = views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)
    return jnp.einsum("bhwk,ko->bhwo", cols, jnp.concatenate(weights), precision=precision)


def _axis_bands(size: int, pad_lo: int, k: int, rate: int, out: int):
    """Stride 1 along one axis: `[(start, stop, live_taps)]`, a partition of the outputs
    `[0, out)` into bands over which the same taps read only real pixels (tap `i` reads input
    `y + i * rate - pad_lo` for output `y`)."""
    live = [_in_bounds(i * rate - pad_lo, out, 1, size) for i in range(k)]
    cuts = sorted({0, out, *(edge for lo_hi in live for edge in lo_hi)})
    return [
        (a, b, [i for i, (lo, hi) in enumerate(live) if lo <= a and b <= hi])
        for a, b in zip(cuts, cuts[1:], strict=False)
        if a < b
    ]


def _out_size(size: int, pads: tuple[int, int], k: int, rate: int) -> int:
    return size + pads[0] + pads[1] - (k - 1) * rate


def _region_stats(x_shape, kernel_shape, rates, pads) -> tuple[float, int]:
    """Stride 1: the share of (output pixel, tap) pairs that read real pixels, not padding, and
    the thinnest band of `_region_conv`'s regions (pixels across)."""
    fraction, thinnest = 1.0, max(x_shape[1:3])
    for size, k, rate, pad in zip(x_shape[1:3], kernel_shape[:2], rates, pads, strict=True):
        out = _out_size(size, pad, k, rate)
        bands = _axis_bands(size, pad[0], k, rate, out)
        fraction *= sum((b - a) * len(taps) for a, b, taps in bands) / (out * k)
        thinnest = min(thinnest, *(b - a for a, b, _ in bands))
    return fraction, thinnest


def _region_conv(x, kernel, rates, pads, precision) -> jax.Array:
    """Stride-1 conv as one im2col GEMM per region of the output with the same in-bounds taps.

    Each region reads only in-bounds slices (no padding, no zero columns), so the FLOPs are the
    useful ones; a 3x3 kernel with SAME padding makes at most 3x3 regions (edge, middle and edge
    bands per axis).
    """
    kh, kw, _, out_channels = kernel.shape
    (rh, rw), ((top, _), (left, _)) = rates, pads
    batch, height, width, _ = x.shape
    row_bands = _axis_bands(height, top, kh, rh, _out_size(height, pads[0], kh, rh))
    col_bands = _axis_bands(width, left, kw, rw, _out_size(width, pads[1], kw, rw))
    rows = []
    for r0, r1, row_taps in row_bands:
        pieces = []
        for c0, c1, col_taps in col_bands:
            taps = [(i, j) for i in row_taps for j in col_taps]
            if not taps:  # only padding: zeros
                pieces.append(jnp.zeros((batch, r1 - r0, c1 - c0, out_channels), x.dtype))
                continue
            views = [
                x[:, r0 + i * rh - top : r1 + i * rh - top, c0 + j * rw - left : c1 + j * rw - left]
                for i, j in taps
            ]
            pieces.append(_im2col_gemm(views, [kernel[i, j] for i, j in taps], precision))
        rows.append(jnp.concatenate(pieces, axis=2))
    return jnp.concatenate(rows, axis=1)


def _in_bounds(start: int, count: int, step: int, size: int) -> tuple[int, int]:
    """Range [lo, hi) of t < count with 0 <= start + step*t < size (lo == hi if none)."""
    lo = min(max(0, -(start // step)), count)  # ceil(-start / step), clipped
    hi = max(min(count, (size - 1 - start) // step + 1), lo)
    return lo, hi


def _shifted_view(x, starts, counts, steps) -> jax.Array:
    """`[B, counts..., C]`: x at rows/columns start + step*t, zero where out of bounds."""
    (lo_h, hi_h), (lo_w, hi_w) = (
        _in_bounds(*args) for args in zip(starts, counts, steps, x.shape[1:3], strict=True)
    )
    if hi_h == lo_h or hi_w == lo_w:
        return jnp.zeros((x.shape[0], *counts, x.shape[3]), x.dtype)
    (start_h, start_w), (step_h, step_w) = starts, steps
    inside = lax.slice(
        x,
        (0, start_h + step_h * lo_h, start_w + step_w * lo_w, 0),
        (
            x.shape[0],
            start_h + step_h * (hi_h - 1) + 1,
            start_w + step_w * (hi_w - 1) + 1,
            x.shape[3],
        ),
        (1, step_h, step_w, 1),
    )
    pads = ((0, 0), (lo_h, counts[0] - hi_h), (lo_w, counts[1] - hi_w), (0, 0))
    return jnp.pad(inside, pads)
