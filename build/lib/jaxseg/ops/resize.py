"""Resizing: bilinear for features and logits (both conventions), nearest for label maps.

Bilinear resizing is separable, so it is two einsums with small `[out, in]` interpolation
matrices built in numpy at trace time (sizes are static). That is exact, fast on accelerators,
differentiable, and needs no gather.

Conventions:
- `align_corners=False`: half-pixel centres, `src = (dst + 0.5) * in / out - 0.5` clamped to
  `[0, in - 1]`, no antialiasing. Equal to TF2 `tf.image.resize(method="bilinear")` and TF1
  `resize_bilinear(half_pixel_centers=True)`; equal to `jax.image.resize` when upsampling
  (`jax.image.resize` antialiases when downsampling, this does not).
- `align_corners=True`: corner pixels coincide, `src = dst * (in - 1) / (out - 1)`; equal to TF1
  `tf.compat.v1.image.resize_bilinear(align_corners=True)` (DeepLab's reference, 513 = 32k + 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxseg.ops._checks import check_floating, check_rank, size_pair


def bilinear_resize_matrix(in_size: int, out_size: int, align_corners: bool = False) -> np.ndarray:
    """Bilinear interpolation along one axis as a matrix: `[out_size, in_size]` float32.

    `y = M @ x` resizes `x` along that axis exactly as `resize_bilinear` does: half-pixel centres
    (`src = (dst + 0.5) * in / out - 0.5`, clamped; TF2) or, with `align_corners`, corner pixels
    aligned (`src = dst * (in - 1) / (out - 1)`; TF1 DeepLab). Each row sums to 1. Public so
    callers can fuse resizing with padding or flipping into one matmul (see `jaxseg.inference`).
    """
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * scale
    else:
        src = (dst + 0.5) * (in_size / out_size) - 0.5
    src = np.clip(src, 0, in_size - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    rows = np.arange(out_size)
    matrix = np.zeros((out_size, in_size), np.float64)
    np.add.at(matrix, (rows, lo), 1 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix.astype(np.float32)


def resize_bilinear(x: jax.Array, size: tuple[int, int], align_corners: bool = False) -> jax.Array:
    """Bilinear resize of the two spatial axes (see module docstring for the conventions).

    Computed in float32 at HIGHEST precision whatever the input dtype (bf16 logits get exact
    weights), then cast back.

    Args:
      x: `[B, H, W, C]` (or `[B, H, W]`) floating.
      size: `(H_out, W_out)`.
      align_corners: False for half-pixel centres (TF2), True for TF1 align_corners.

    Returns:
      `[B, H_out, W_out, C]` (or `[B, H_out, W_out]`) in `x.dtype`.
    """
    check_rank(x, (3, 4), "x", "[B, H, W, C] or [B, H, W]")
    check_floating(x, "x")
    out_h, out_w = size_pair(size)
    in_h, in_w = x.shape[1:3]
    if (in_h, in_w) == (out_h, out_w):
        return x
    rows = jnp.asarray(bilinear_resize_matrix(in_h, out_h, align_corners))
    cols = jnp.asarray(bilinear_resize_matrix(in_w, out_w, align_corners))
    y = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    hi = lax.Precision.HIGHEST
    y = jnp.einsum("oh,bhw...->bow...", rows, y, precision=hi)
    y = jnp.einsum("pw,bow...->bop...", cols, y, precision=hi)
    return y.astype(x.dtype)


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    # TF computes the scale and the source coordinate in float32; doing the same keeps the
    # rare exact-integer boundaries identical to tf.image.resize.
    scale = np.float32(in_size) / np.float32(out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale
    return np.minimum(np.floor(src).astype(np.int64), in_size - 1)


def resize_nearest(labels: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Nearest-neighbour resize for label maps; values and dtype are kept (255 stays 255).

    Convention of TF2 `tf.image.resize(method="nearest")` (half-pixel centres):
    `src = min(floor((dst + 0.5) * in / out), in - 1)`; also what `jax.image.resize` does.

    Args:
      labels: `[B, H, W]` or `[B, H, W, C]`, any dtype.
      size: `(H_out, W_out)`.

    Returns:
      `[B, H_out, W_out]` or `[B, H_out, W_out, C]` in `labels.dtype`.
    """
    check_rank(labels, (3, 4), "labels", "[B, H, W] or [B, H, W, C]")
    out_h, out_w = size_pair(size)
    in_h, in_w = labels.shape[1:3]
    if (in_h, in_w) == (out_h, out_w):
        return labels
    y = jnp.take(labels, jnp.asarray(_nearest_index(in_h, out_h)), axis=1)
    return jnp.take(y, jnp.asarray(_nearest_index(in_w, out_w)), axis=2)
