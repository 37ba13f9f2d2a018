"""Layout changes between space and channels, written as einops patterns.

The channel order matches TensorFlow's `tf.nn.space_to_depth` / `depth_to_space` (DCR): output
channel `(dy * block + dx) * C + c` holds input pixel `(block * h + dy, block * w + dx)`, channel c.
"""

from __future__ import annotations

import jax
from einops import rearrange

from jaxseg.ops._checks import check_rank, positive_int


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
    """Moves each `block x block` patch into channels.

    Args:
      x: `[B, H, W, C]`, H and W divisible by `block`.
      block: patch size, >= 1.

    Returns:
      `[B, H / block, W / block, block * block * C]`, same dtype.
    """
    check_rank(x, 4, "x", "[B, H, W, C]")
    block = positive_int(block, "block")
    _, h, w, _ = x.shape
    if h % block or w % block:
        raise ValueError(f"x spatial size {(h, w)} must be divisible by block={block}")
    return rearrange(x, "b (h bh) (w bw) c -> b h w (bh bw c)", bh=block, bw=block)


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
    """Inverse of `space_to_depth`: spreads channel groups over `block x block` patches.

    A stride-2 2x2 up-convolution is exactly a 1x1 conv to `4 * C` channels followed by
    `depth_to_space(., 2)`, which XLA runs as a plain matmul.

    Args:
      x: `[B, H, W, block * block * C]`.
      block: patch size, >= 1.

    Returns:
      `[B, H * block, W * block, C]`, same dtype.
    """
    check_rank(x, 4, "x", "[B, H, W, C]")
    block = positive_int(block, "block")
    if x.shape[-1] % (block * block):
        raise ValueError(f"x channels ({x.shape[-1]}) must be divisible by block**2={block**2}")
    return rearrange(x, "b h w (bh bw c) -> b (h bh) (w bw) c", bh=block, bw=block)
