"""Transposed ("up-") convolution and FCN's bilinear upsampling kernel.

Our kernel is HWIO with I = the channels of the (low-resolution) input: each input pixel
`x[i, j]` stamps `x[i, j] @ kernel` onto the output at `(stride * i, stride * j)` (before
padding is cropped). TensorFlow's `tf.nn.conv2d_transpose` filter is `[h, w, out, in]`, i.e.
`ours.transpose(0, 1, 3, 2)`; with that the two agree exactly.

`conv_transpose2d` is one `lax.conv_transpose`, i.e. a conv over the zero-dilated input;
XLA's GPU backend lowers it to cuDNN's fast backward-data kernel. The phase form, faster on
CPU, is `jaxseg.ops.cpu.conv_transpose2d` (chosen where a model is composed).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxseg.ops._checks import check_floating, check_rank, positive_int, positive_pair


def _transpose_pads(size: int, k: int, stride: int, padding: str) -> tuple[int, int]:
    # Padding of the zero-dilated input, as in the textbook form "dilate by stride, pad, conv
    # with the flipped kernel". k - 1 on both sides is the full stamp, (size - 1) * s + k long.
    if padding == "VALID":
        return k - 1, k - 1
    # SAME is the transpose of a forward SAME conv from size * s pixels down to size: that conv
    # pads `before` pixels at the top/left, so the transpose drops them (and keeps size * s).
    before = max(k - stride, 0) // 2
    return k - 1 - before, stride - 1 + before


def conv_transpose2d(
    x: jax.Array,
    kernel: jax.Array,
    stride: int | tuple[int, int],
    padding: Literal["SAME", "VALID"] = "SAME",
    precision: lax.PrecisionLike = None,
) -> jax.Array:
    """Transposed convolution, equal to `tf.nn.conv2d_transpose` (see module docstring).

    Args:
      x: `[B, H, W, I]` floating activations.
      kernel: `[kh, kw, I, O]` (HWIO, I = input channels). Cast to `x.dtype`.
      stride: upsampling factor, an int or `(s_h, s_w)`.
      padding: 'SAME' gives `[B, H * s, W * s, O]`; 'VALID' gives the full stamp
        `[B, (H - 1) * s + kh, (W - 1) * s + kw, O]` (FCN: VALID then crop).
      precision: passed to the convolution.

    Returns:
      `[B, H_out, W_out, O]` in `x.dtype`.
    """
    strides, padding = check_transpose_args(x, kernel, stride, padding)
    pads = [
        _transpose_pads(n, k, s, padding)
        for n, k, s in zip(x.shape[1:3], kernel.shape[:2], strides, strict=True)
    ]
    # transpose_kernel=True flips the taps and swaps I/O of a TF-layout kernel: the exact
    # "gradient of a forward conv" pattern that XLA's GPU backend lowers to a fast kernel.
    return lax.conv_transpose(
        x,
        jnp.swapaxes(kernel.astype(x.dtype), 2, 3),
        strides=strides,
        padding=pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        transpose_kernel=True,
        precision=precision,
    )


def check_transpose_args(x, kernel, stride, padding) -> tuple[tuple[int, int], str]:
    """Checks `conv_transpose2d`'s arguments; returns `(strides, "SAME" | "VALID")`."""
    check_rank(x, 4, "x", "[B, H, W, I]")
    check_rank(kernel, 4, "kernel", "[kh, kw, I, O] (HWIO)")
    check_floating(x, "x")
    check_floating(kernel, "kernel")
    strides = positive_pair(stride, "stride")
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    if kernel.shape[2] != x.shape[-1]:
        raise ValueError(
            f"kernel input channels ({kernel.shape[2]}) must equal x channels ({x.shape[-1]}); "
            "our kernel is HWIO with I = input channels (TF's conv2d_transpose filter is "
            "[h, w, out, in])"
        )
    return strides, padding.upper()


def bilinear_kernel(kernel_size: int, channels: int, dtype=jnp.float32) -> jax.Array:
    """FCN's bilinear upsampling initialiser for `conv_transpose2d`.

    `factor = (k + 1) // 2`, `center = factor - 1` (k odd) or `factor - 0.5` (k even),
    `w[i, j] = (1 - |i - center| / factor) * (1 - |j - center| / factor)`, placed on the
    channel diagonal so channel c only feeds channel c. With `k = 2 * s` (k4 s2, k16 s8, ...)
    and stride s it interpolates bilinearly.

    Args:
      kernel_size: k, >= 1.
      channels: C, >= 1.
      dtype: output dtype.

    Returns:
      `[k, k, C, C]` (HWIO).
    """
    k = positive_int(kernel_size, "kernel_size")
    c = positive_int(channels, "channels")
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    taps = 1 - np.abs(np.arange(k) - center) / factor
    weights = np.outer(taps, taps)[:, :, None, None] * np.eye(c)
    return jnp.asarray(weights, dtype=dtype)
