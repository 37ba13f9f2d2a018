"""Max pooling (plain, and remembering where each max came from) and SegNet's max unpooling.

Built from window reshapes (einops) and one-hot masks, never scatter: scatter is slow on GPU,
while a compare-and-select over a `[..., wh * ww]` window axis is a cheap elementwise op.

Conventions:
- `argmax` is the flat index *inside the window*, `dy * ww + dx`, int32 in `[0, wh * ww)`
  (not TensorFlow's flat index into the whole image; it needs no batch/channel bookkeeping).
- Ties go to the first maximum in row-major window order, as in `tf.nn.max_pool_with_argmax`.
- Odd sizes: the input is padded at the bottom/right with the lowest value of its dtype (-inf
  for floats) up to a multiple of the window, so a 45-pixel side pools to 23 (for window 2 this
  is TF's SAME pooling; for larger windows TF would centre the padding instead). Pass the
  original size as `output_size` to `max_unpool` to crop the padding back off.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange

from jaxseg.ops._checks import (
    Padding,
    check_rank,
    padding_arg,
    positive_pair,
    same_pads,
    size_pair,
)


def _lowest(dtype) -> np.ndarray:
    # A NumPy constant, not a jnp array: under an exporter's tracing (jax2onnx) a jnp array
    # becomes a traced operand, which its pad conversion rejects with a symbolic batch.
    if jnp.issubdtype(dtype, jnp.floating):
        return np.array(-np.inf, dtype)
    if jnp.issubdtype(dtype, jnp.integer):
        return np.array(jnp.iinfo(dtype).min, dtype)
    raise ValueError(f"x must be a floating or integer array, got dtype {dtype}")


def max_pool2d(
    x: jax.Array,
    window: int | tuple[int, int],
    strides: int | tuple[int, int] | None = None,
    padding: Padding = "VALID",
) -> jax.Array:
    """Max pooling, possibly overlapping, as a running max over the window's strided views.

    Same values as `lax.reduce_window(max)` (TF's `max_pool2d`; padding reads -inf) and the
    same gradient: the first maximum of each window in row-major order receives it. The
    backward pass is elementwise selects, where `reduce_window`'s gradient is a
    `select_and_scatter` that XLA's CPU backend runs slower (ResNet's 3x3/2 stem pool:
    benchmarks/RESULTS.md).

    Args:
      x: `[B, H, W, C]` floating or integer.
      window: an int or `(wh, ww)`.
      strides: an int or `(sh, sw)`; defaults to `window`.
      padding: 'SAME', 'VALID' or `((top, bottom), (left, right))`.

    Returns:
      `[B, H', W', C]` in `x.dtype`, H' as `lax.reduce_window` computes it.
    """
    check_rank(x, 4, "x", "[B, H, W, C]")
    wh, ww = positive_pair(window, "window")
    sh, sw = positive_pair((wh, ww) if strides is None else strides, "strides")
    padding = padding_arg(padding)
    if padding == "VALID":
        padding = ((0, 0), (0, 0))
    elif padding == "SAME":
        padding = (same_pads(x.shape[1], wh, sh), same_pads(x.shape[2], ww, sw))
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=_lowest(x.dtype))
    out_h, out_w = (x.shape[1] - wh) // sh + 1, (x.shape[2] - ww) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"window {(wh, ww)} is larger than the padded input {x.shape[1:3]}")
    pooled = None
    for i in range(wh):
        for j in range(ww):
            view = x[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw]
            # Strictly greater: an earlier tap keeps ties, and `where` sends the gradient to
            # the kept input only (jnp.maximum would split it between tied inputs).
            pooled = view if pooled is None else jnp.where(view > pooled, view, pooled)
    return pooled


def max_pool_with_argmax(
    x: jax.Array, window: int | tuple[int, int] = 2
) -> tuple[jax.Array, jax.Array]:
    """Non-overlapping max pooling (stride = window) returning the in-window argmax.

    Gradients reach exactly the argmax position of each window.

    Args:
      x: `[B, H, W, C]` floating or integer.
      window: an int or `(wh, ww)`, also the stride.

    Returns:
      `(pooled, argmax)`: `pooled` `[B, ceil(H / wh), ceil(W / ww), C]` in `x.dtype` and
      `argmax` of the same shape, int32 in `[0, wh * ww)` (see module docstring).
    """
    check_rank(x, 4, "x", "[B, H, W, C]")
    wh, ww = positive_pair(window, "window")
    low = _lowest(x.dtype)
    pad_h, pad_w = -x.shape[1] % wh, -x.shape[2] % ww
    if pad_h or pad_w:
        x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=low)
    windows = rearrange(x, "b (h wh) (w ww) c -> b h w c (wh ww)", wh=wh, ww=ww)
    argmax = jnp.argmax(windows, axis=-1).astype(jnp.int32)  # first max wins ties
    # Selecting through the one-hot (rather than jnp.max) routes the gradient to the argmax
    # only, and `where` avoids 0 * -inf = nan from the padding.
    hit = argmax[..., None] == jnp.arange(wh * ww, dtype=jnp.int32)
    pooled = jnp.where(hit, windows, jnp.zeros((), x.dtype)).sum(axis=-1, dtype=x.dtype)
    return pooled, argmax


def max_unpool(
    pooled: jax.Array,
    argmax: jax.Array,
    window: int | tuple[int, int] = 2,
    output_size: tuple[int, int] | None = None,
) -> jax.Array:
    """SegNet's unpooling: each value goes back to its argmax position, zeros elsewhere.

    Args:
      pooled: `[B, h, w, C]` values to place (e.g. decoder features of the pooled shape).
      argmax: `[B, h, w, C]` int in-window indices from `max_pool_with_argmax`.
      window: the window used for pooling.
      output_size: `(H, W)` of the tensor that was pooled, for odd sizes; it must satisfy
        `ceil(H / wh) == h`. Default `(h * wh, w * ww)`.

    Returns:
      `[B, H, W, C]` in `pooled.dtype`; gradients flow to `pooled` only.
    """
    check_rank(pooled, 4, "pooled", "[B, h, w, C]")
    check_rank(argmax, 4, "argmax", "[B, h, w, C]")
    if pooled.shape != argmax.shape:
        raise ValueError(f"argmax shape {argmax.shape} must equal pooled shape {pooled.shape}")
    if not jnp.issubdtype(argmax.dtype, jnp.integer):
        raise ValueError(f"argmax must be an integer array, got dtype {argmax.dtype}")
    wh, ww = positive_pair(window, "window")
    h, w = pooled.shape[1] * wh, pooled.shape[2] * ww
    if output_size is not None:
        out_h, out_w = size_pair(output_size, "output_size")
        if -(-out_h // wh) != pooled.shape[1] or -(-out_w // ww) != pooled.shape[2]:
            raise ValueError(
                f"output_size {output_size} does not pool to {pooled.shape[1:3]} with "
                f"window {(wh, ww)}"
            )
        h, w = out_h, out_w
    hit = argmax[..., None] == jnp.arange(wh * ww, dtype=argmax.dtype)
    windows = jnp.where(hit, pooled[..., None], jnp.zeros((), pooled.dtype))
    y = rearrange(windows, "b h w c (wh ww) -> b (h wh) (w ww) c", wh=wh, ww=ww)
    return y[:, :h, :w, :]


def ceil_mode_pads(size: int, window: int, stride: int, pad: int) -> tuple[int, int]:
    """`(before, after)` padding that makes a VALID pool give Caffe's ceil-mode output size.

    Caffe (and OpenCV's Caffe importer) pool to `ceil((size + 2 pad - window) / stride) + 1`
    windows, minus one if the last window would start inside the bottom/right padding; the
    extra windows read past the input. Padding the far side by the difference (with -inf for
    max pooling) reproduces that: e.g. 3x3 / 2 / pad 1 on 64 pixels gives 33, not 32.
    """
    out = -(-(size + 2 * pad - window) // stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    after = (out - 1) * stride + window - size - pad
    return pad, max(after, 0)


def avg_pool2d_count_pad(x: jax.Array, window: int, stride: int = 1, pad: int = 0) -> jax.Array:
    """Average pooling over zero-padded windows, divided by the full window area.

    Caffe's AVE pooling divides by the window clipped to the padded input, so padded pixels
    count (DeepLab v1's 3x3 / 1 / pad 1 `pool5a`: every output is its 3x3 sum over 9).

    Args:
      x: `[B, H, W, C]` floating.
      window, stride, pad: square window, stride and symmetric zero padding.

    Returns:
      `[B, H', W', C]`, H' = `(H + 2 pad - window) // stride + 1`.
    """
    check_rank(x, 4, "x", "[B, H, W, C]")
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    # A NumPy zero (as in `_lowest`): JAX recognises the constant and emits a windowed sum.
    summed = jax.lax.reduce_window(
        x, np.zeros((), x.dtype), jax.lax.add, (1, window, window, 1), (1, stride, stride, 1),
        "VALID",
    )  # fmt: skip
    return summed / jnp.asarray(window * window, x.dtype)
