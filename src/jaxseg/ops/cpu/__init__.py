"""CPU-specific forms of the convolutions in `jaxseg.ops`: same arguments, same results.

XLA's CPU backend is slow for some convolutions and above all for their gradients; these
rewrites compute the same values with the operations it runs fast (measurements:
benchmarks/RESULTS.md). They are alternatives, never chosen by `jaxseg.ops` itself: a model
gets them through its conv factories (`jaxseg.nn.conv_layers("cpu")`), and they are tested
against the reference ops and TensorFlow like the reference ops themselves.

- `atrous_conv2d`: 1x1 convs as GEMMs, depthwise convs as per-tap multiply-adds, dilated
  convs whose taps mostly read padding as one GEMM per region of in-bounds taps
  (`jaxseg.ops.cpu.taps`); every other conv is the reference XLA convolution.
- `conv_transpose2d`: one undilated conv per output phase (`jaxseg.ops.cpu.phase`).
"""

from __future__ import annotations

import jax
from jax import lax

from jaxseg.ops._checks import Padding
from jaxseg.ops.atrous import conv_plan, xla_conv
from jaxseg.ops.cpu.phase import conv_transpose2d
from jaxseg.ops.cpu.taps import tap_conv, use_tap_conv

__all__ = ["atrous_conv2d", "conv_transpose2d"]


def atrous_conv2d(
    x: jax.Array,
    kernel: jax.Array,
    rate: int | tuple[int, int] = 1,
    stride: int | tuple[int, int] = 1,
    padding: Padding = "SAME",
    feature_group_count: int = 1,
    precision: lax.PrecisionLike = None,
) -> jax.Array:
    """`jaxseg.ops.atrous_conv2d` in the tap form where that is faster on CPU; same result.

    Args:
      x: `[B, H, W, C]` floating activations.
      kernel: `[kh, kw, C / feature_group_count, O]` (HWIO), cast to `x.dtype`.
      rate, stride, padding, feature_group_count, precision: as `jaxseg.ops.atrous_conv2d`.

    Returns:
      `[B, H', W', O]` in `x.dtype`, the shape `jaxseg.ops.atrous_conv2d` gives.
    """
    kernel, rates, strides, pads, groups = conv_plan(
        x, kernel, rate, stride, padding, feature_group_count
    )
    if use_tap_conv(x.shape, kernel.shape, groups, rates, strides, pads):
        return tap_conv(x, kernel, rates, strides, pads, groups, precision)
    return xla_conv(x, kernel, rates, strides, pads, groups, precision)
