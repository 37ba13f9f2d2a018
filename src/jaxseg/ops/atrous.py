"""Atrous (dilated) convolution, plain and depthwise-separable.

Two equal formulations, the same on every backend (``impl``, default ``"xla"``):

- ``impl="xla"``: one `lax.conv_general_dilated` with `rhs_dilation=(rate, rate)`.
- ``impl="space_to_batch"``: what TensorFlow's `tf.nn.atrous_conv2d` does: pad, fold the
  `rate x rate` pixel phases into the batch, run an undilated VALID conv, unfold. Each phase
  sees every `rate`-th pixel, so an undilated kernel over it is the dilated kernel over the image.
  Kept because XLA's GPU backend can hit slow paths for dilated convolutions (dilated depthwise
  kernels get padded to dense ones).

Both first drop the taps that only ever read SAME padding (rate >= feature-map size), an
exact rewrite that matters at small training crops (see `_drop_dead_taps`).

Forms that are faster on one backend only (the CPU tap and region convolutions) live in
`jaxseg.ops.cpu` and are chosen where a model is composed (`jaxseg.nn.conv_layers`).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from einops import rearrange
from jax import lax

from jaxseg.ops._checks import (
    Padding,
    check_floating,
    check_rank,
    padding_arg,
    positive_int,
    positive_pair,
    same_pads,
)

_DIMS = ("NHWC", "HWIO", "NHWC")
Impl = Literal["xla", "space_to_batch"]
IMPLS = ("xla", "space_to_batch")


def _check_conv_args(x, kernel, feature_group_count: int) -> int:
    check_rank(x, 4, "x", "[B, H, W, C]")
    check_rank(kernel, 4, "kernel", "[kh, kw, C / feature_group_count, O] (HWIO)")
    check_floating(x, "x")
    check_floating(kernel, "kernel")
    groups = positive_int(feature_group_count, "feature_group_count")
    channels = x.shape[-1]
    if channels % groups:
        raise ValueError(
            f"x channels ({channels}) must be divisible by feature_group_count={groups}"
        )
    if kernel.shape[2] * groups != channels:
        raise ValueError(
            f"kernel input channels ({kernel.shape[2]}) x feature_group_count ({groups}) must "
            f"equal x channels ({channels})"
        )
    if kernel.shape[3] % groups:
        raise ValueError(
            f"kernel output channels ({kernel.shape[3]}) must be divisible by "
            f"feature_group_count={groups}"
        )
    return groups


def atrous_conv2d(
    x: jax.Array,
    kernel: jax.Array,
    rate: int | tuple[int, int] = 1,
    stride: int | tuple[int, int] = 1,
    padding: Padding = "SAME",
    feature_group_count: int = 1,
    impl: Impl = "xla",
    precision: lax.PrecisionLike = None,
) -> jax.Array:
    """Atrous convolution: a `kh x kw` kernel with `rate - 1` holes between its taps.

    The effective kernel size is `k + (k - 1) * (rate - 1)`; SAME padding keeps `H x W` (at
    stride 1). Padding follows TensorFlow: SAME puts the odd pixel after (bottom/right).

    Args:
      x: `[B, H, W, C]` floating activations.
      kernel: `[kh, kw, C / feature_group_count, O]` (HWIO). Cast to `x.dtype`, so bf16
        activations with float32 params compute in bf16.
      rate: dilation, an int or `(rate_h, rate_w)`, >= 1.
      stride: an int or pair, >= 1. Striding together with `rate > 1` is rejected (as in
        TensorFlow and Keras): it skips the very pixels the holes were meant to reach.
      padding: 'SAME', 'VALID', or `((top, bottom), (left, right))`.
      feature_group_count: `C` for a depthwise conv (kernel `[kh, kw, 1, C * M]`).
      impl: 'xla' or 'space_to_batch' (same result, see module docstring).
      precision: passed to `lax.conv_general_dilated`.

    Returns:
      `[B, H', W', O]` in `x.dtype`; `H' = ceil(H / stride)` for SAME,
      `H - k_eff + 1` for VALID (stride 1).
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    kernel, rates, strides, pads, groups = conv_plan(
        x, kernel, rate, stride, padding, feature_group_count
    )
    if impl == "space_to_batch" and max(rates) > 1:
        return _space_to_batch_conv(x, kernel, rates, pads, groups, precision)
    return xla_conv(x, kernel, rates, strides, pads, groups, precision)


def conv_plan(x, kernel, rate, stride, padding: Padding, feature_group_count: int):
    """Checks `atrous_conv2d`'s arguments and resolves its geometry (shared by `jaxseg.ops.cpu`).

    Returns:
      `(kernel, rates, strides, pads, groups)`: the kernel cast to `x.dtype` with its dead taps
      dropped (see `_drop_dead_taps`), `(h, w)` rates and strides, explicit
      `((top, bottom), (left, right))` pads and the group count.
    """
    groups = _check_conv_args(x, kernel, feature_group_count)
    rates = positive_pair(rate, "rate")
    strides = positive_pair(stride, "stride")
    pad = padding_arg(padding)
    if max(rates) > 1 and max(strides) > 1:
        raise ValueError(f"stride must be 1 when rate > 1, got rate={rate!r}, stride={stride!r}")

    k_eff = [(k - 1) * r + 1 for k, r in zip(kernel.shape[:2], rates, strict=True)]
    if pad == "SAME":
        pads = tuple(
            same_pads(n, k, s) for n, k, s in zip(x.shape[1:3], k_eff, strides, strict=True)
        )
    elif pad == "VALID":
        pads = ((0, 0), (0, 0))
    else:
        pads = pad
    for axis, (n, (lo, hi), k) in enumerate(zip(x.shape[1:3], pads, k_eff, strict=True)):
        if n + lo + hi < k:
            raise ValueError(
                f"x spatial size {x.shape[1:3]} with padding {pads} is smaller than the "
                f"effective kernel size {tuple(k_eff)} along axis {axis + 1}"
            )

    kernel = kernel.astype(x.dtype)
    if max(strides) == 1 and max(rates) > 1:
        kernel, rates, pads = _drop_dead_taps(kernel, rates, pads, x.shape[1:3])
    return kernel, rates, strides, pads, groups


def xla_conv(x, kernel, rates, strides, pads, groups: int, precision=None) -> jax.Array:
    """One `lax.conv_general_dilated` in NHWC/HWIO with explicit pads (a resolved `conv_plan`)."""
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=pads,
        rhs_dilation=rates,
        dimension_numbers=_DIMS,
        feature_group_count=groups,
        precision=precision,
    )


def _live_tap_range(size: int, pad: tuple[int, int], k: int, rate: int) -> tuple[int, int]:
    """`[first, last]` taps along one axis that read a real pixel for at least one output.

    At stride 1, tap `i` reads input `y + i * rate - lo` for outputs `y` in `[0, out)`; the
    taps reading only padding are a prefix and a suffix (the read position grows with `i`).
    """
    lo, hi = pad
    out = size + lo + hi - (k - 1) * rate
    live = [i for i in range(k) if out - 1 + i * rate - lo >= 0 and i * rate - lo < size]
    return (live[0], live[-1]) if live else (k // 2, k // 2)


def _drop_dead_taps(kernel, rates, pads, spatial):
    """Drops kernel taps that only ever multiply padding zeros (an exact rewrite).

    A rate-`r` tap lies `r` pixels from the centre; once `r` reaches the feature-map size it
    reads padding for every output pixel, so it adds exactly zero and gets exactly zero
    gradient. DeepLab's ASPP at small training crops is mostly such taps (rate 18 on a 16x16
    map at output stride 16 keeps only the centre: a 1x1 conv, 9x fewer FLOPs); XLA computes
    them all. Removing them keeps the output size: the padding shrinks with the kernel.
    """
    new_pads, new_rates, index = [], [], []
    for size, (lo, hi), k, r in zip(spatial, pads, kernel.shape[:2], rates, strict=True):
        first, last = _live_tap_range(size, (lo, hi), k, r)
        out = size + lo + hi - (k - 1) * r
        new_lo = lo - first * r
        new_hi = out - size - new_lo + (last - first) * r
        if new_lo < 0 or new_hi < 0:  # only cropping would express it: keep this axis whole
            first, last, new_lo, new_hi = 0, k - 1, lo, hi
        new_pads.append((new_lo, new_hi))
        new_rates.append(r if last > first else 1)  # one tap left: the rate is irrelevant
        index.append(slice(first, last + 1))
    return kernel[index[0], index[1]], tuple(new_rates), tuple(new_pads)


def _space_to_batch_conv(x, kernel, rates, pads, groups, precision) -> jax.Array:
    (rh, rw), ((top, bottom), (left, right)) = rates, pads
    height, width = x.shape[1] + top + bottom, x.shape[2] + left + right
    out_h = height - (kernel.shape[0] - 1) * rh
    out_w = width - (kernel.shape[1] - 1) * rw
    # Extra bottom/right zeros only make the phases equal-sized; the outputs they touch are
    # cropped off below, so they never change a kept value.
    x = jnp.pad(
        x,
        ((0, 0), (top, bottom + (-height) % rh), (left, right + (-width) % rw), (0, 0)),
    )
    phases = rearrange(x, "b (h rh) (w rw) c -> (rh rw b) h w c", rh=rh, rw=rw)
    y = lax.conv_general_dilated(
        phases,
        kernel,
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=_DIMS,
        feature_group_count=groups,
        precision=precision,
    )
    y = rearrange(y, "(rh rw b) h w c -> b (h rh) (w rw) c", rh=rh, rw=rw)
    return y[:, :out_h, :out_w, :]


def separable_atrous_conv2d(
    x: jax.Array,
    depthwise_kernel: jax.Array,
    pointwise_kernel: jax.Array,
    rate: int | tuple[int, int] = 1,
    stride: int | tuple[int, int] = 1,
    padding: Padding = "SAME",
    impl: Impl = "xla",
    precision: lax.PrecisionLike = None,
) -> jax.Array:
    """Depthwise atrous conv then pointwise 1x1 conv (Xception / DeepLab v3+), no bias.

    Channel order matches `tf.nn.separable_conv2d`: depthwise output channel `c * M + m` is
    multiplier `m` of input channel `c`, so TF's `[kh, kw, C, M]` filter reshapes to ours.

    Args:
      x: `[B, H, W, C]` floating activations.
      depthwise_kernel: `[kh, kw, 1, C * M]` (HWIO with feature_group_count=C).
      pointwise_kernel: `[1, 1, C * M, O]`.
      rate, stride, padding, impl, precision: as in `atrous_conv2d` (for the depthwise step).

    Returns:
      `[B, H', W', O]` in `x.dtype`, `H'` as in `atrous_conv2d`.
    """
    check_rank(x, 4, "x", "[B, H, W, C]")
    check_rank(depthwise_kernel, 4, "depthwise_kernel", "[kh, kw, 1, C * M]")
    check_rank(pointwise_kernel, 4, "pointwise_kernel", "[1, 1, C * M, O]")
    channels = x.shape[-1]
    if depthwise_kernel.shape[2] != 1 or depthwise_kernel.shape[3] % channels:
        raise ValueError(
            f"depthwise_kernel must be [kh, kw, 1, C * M] with C = {channels} (x channels), "
            f"got shape {depthwise_kernel.shape}"
        )
    if pointwise_kernel.shape[:3] != (1, 1, depthwise_kernel.shape[3]):
        raise ValueError(
            f"pointwise_kernel must be [1, 1, {depthwise_kernel.shape[3]}, O], "
            f"got shape {pointwise_kernel.shape}"
        )
    y = atrous_conv2d(
        x,
        depthwise_kernel,
        rate=rate,
        stride=stride,
        padding=padding,
        feature_group_count=channels,
        impl=impl,
        precision=precision,
    )
    return atrous_conv2d(y, pointwise_kernel, padding="VALID", precision=precision)
