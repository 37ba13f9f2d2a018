"""Convolutions written over their kernel taps: XLA CPU's fast forms of three conv kinds.

Each tap `(i, j)` of a kernel reads a shifted (and strided) view of the padded input, so a conv
is a sum over taps. On CPU, XLA's convolution emitter, and above all the weight gradients it
builds from convolutions with batch and space moved into the feature dimensions, is slow for:

- 1x1 convs: one tap, i.e. a plain `[B*H*W, C] @ [C, O]` GEMM (1.9-3x faster fwd+bwd);
- dilated convs with many input channels: im2col, the taps' views concatenated along channels
  and one GEMM (DeepLab's ASPP, 2048 channels, rate 12: 1.7x faster); with 256 channels the
  XLA conv was as fast or faster, hence `IM2COL_MIN_CHANNELS`;
- depthwise convs: a multiply-add per tap, elementwise (4.5-11x faster; XLA's grouped conv and
  its gradients are the slowest ops of an Xception or MobileNet on CPU).

Undilated dense kxk convs stay XLA convolutions (faster there). Measurements: benchmarks/ops.py
and benchmarks/RESULTS.md (2 AMD EPYC cores, jaxlib 0.10.2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# Measured crossover for dilated dense convs (fwd+bwd): im2col won at 512 and 2048 input
# channels and lost at 256.
IM2COL_MIN_CHANNELS = 512


def use_tap_conv(kernel_shape, channels: int, groups: int, rates, strides) -> bool:
    """Whether the tap form is the faster one on CPU for this conv (see module docstring)."""
    kh, kw, _, out = kernel_shape
    if groups == channels and out == channels and groups > 1:  # depthwise, multiplier 1
        return True
    if groups != 1:
        return False
    if (kh, kw) == (1, 1):  # strided too: a strided view, then the GEMM
        return True
    return max(rates) > 1 and channels >= IM2COL_MIN_CHANNELS


def tap_conv(x, kernel, rates, strides, pads, groups: int, precision=None) -> jax.Array:
    """Conv of `[B, H, W, C]` by an HWIO `kernel` as a sum over its taps.

    Args:
      x: `[B, H, W, C]`.
      kernel: `[kh, kw, C / groups, O]` in `x.dtype`; groups is 1 or C (depthwise, O = C).
      rates, strides: `(h, w)` pairs (a stride with a rate > 1 is rejected upstream).
      pads: `((top, bottom), (left, right))`, each >= 0.
      precision: passed to the matmuls.

    Returns:
      `[B, H', W', O]`, the shape `lax.conv_general_dilated` gives.
    """
    kh, kw, _, out_channels = kernel.shape
    (rh, rw), (sh, sw) = rates, strides
    (top, bottom), (left, right) = pads
    batch, height, width, channels = x.shape
    out_h = (height + top + bottom - (kh - 1) * rh - 1) // sh + 1
    out_w = (width + left + right - (kw - 1) * rw - 1) // sw + 1

    def view(i, j):
        # Tap (i, j) reads x at rows i*rh - top + sh*t, t < out_h (likewise columns). Only the
        # in-bounds part is sliced and the rest zero-filled, instead of padding x once: at a
        # large rate the padded input is many times the map, and so is its gradient.
        return _shifted_view(x, (i * rh - top, j * rw - left), (out_h, out_w), (sh, sw))

    taps = [(i, j) for i in range(kh) for j in range(kw)]
    if groups > 1:  # depthwise: a per-channel multiply-add for each tap
        return sum(view(i, j) * kernel[i, j, 0] for i, j in taps)
    if len(taps) == 1:
        return jnp.einsum("bhwc,co->bhwo", view(0, 0), kernel[0, 0], precision=precision)
    cols = jnp.concatenate([view(i, j) for i, j in taps], axis=-1)  # index (i*kw + j)*C + c
    weights = kernel.reshape(kh * kw * channels, out_channels)
    return jnp.einsum("bhwk,ko->bhwo", cols, weights, precision=precision)


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
