"""Spatial crops: U-Net's centre crop of skip maps and FCN's offset crops (Caffe `Crop`)."""

from __future__ import annotations

import jax

from jaxseg.ops._checks import check_rank, size_pair


def _crop(x: jax.Array, top: int, left: int, height: int, width: int, what: str) -> jax.Array:
    in_h, in_w = x.shape[1:3]
    if top < 0 or left < 0 or top + height > in_h or left + width > in_w:
        raise ValueError(
            f"{what}: crop of {(height, width)} at offset {(top, left)} does not fit in x of "
            f"spatial size {(in_h, in_w)}"
        )
    return x[:, top : top + height, left : left + width]


def center_crop(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Centre crop of the spatial axes; an odd surplus leaves the extra pixel at the bottom/right.

    Args:
      x: `[B, H, W, ...]` (any trailing axes, e.g. channels).
      size: `(h, w)` with `h <= H`, `w <= W`.

    Returns:
      `[B, h, w, ...]`, offset `((H - h) // 2, (W - w) // 2)`.
    """
    check_rank(x, (3, 4), "x", "[B, H, W, C] or [B, H, W]")
    height, width = size_pair(size)
    in_h, in_w = x.shape[1:3]
    return _crop(x, (in_h - height) // 2, (in_w - width) // 2, height, width, "size")


def crop_like(
    x: jax.Array, reference: jax.Array, offset: int | tuple[int, int] | None = None
) -> jax.Array:
    """Crops `x` to the spatial size of `reference`.

    FCN with its 100-pixel input pad crops upsampled maps at fixed offsets (32s: 19; 16s: 5 and
    27; 8s: 5, 9 and 31); U-Net crops skip maps at the centre.

    Args:
      x: `[B, H, W, ...]`.
      reference: `[B, h, w, ...]`; only its static spatial shape is used.
      offset: None for a centre crop, an int for the same offset on both axes, or `(top, left)`.

    Returns:
      `[B, h, w, ...]` in `x.dtype`.
    """
    check_rank(x, (3, 4), "x", "[B, H, W, C] or [B, H, W]")
    check_rank(reference, (3, 4), "reference", "[B, h, w, C] or [B, h, w]")
    height, width = reference.shape[1:3]
    if offset is None:
        in_h, in_w = x.shape[1:3]
        return _crop(x, (in_h - height) // 2, (in_w - width) // 2, height, width, "reference")
    if isinstance(offset, int) and not isinstance(offset, bool):
        top = left = offset
    elif isinstance(offset, tuple | list) and len(offset) == 2:
        top, left = (int(o) for o in offset)
    else:
        raise ValueError(f"offset must be None, an int or (top, left), got {offset!r}")
    return _crop(x, top, left, height, width, "offset")
