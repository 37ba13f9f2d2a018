"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), unpadded as published or SAME-padded."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.models._common import check_images, to_float32_logits
from jaxseg.nn import BatchNorm, Conv2D, ConvBN, ConvFactory, UpConv2x2
from jaxseg.nn.conv_bn import NormFactory
from jaxseg.ops import crop_like, max_pool2d

# Two unpadded 3x3 convs lose 2 pixels each.
_DOUBLE_CONV_LOSS = 4


def unet_valid_output_size(input_size: int, depth: int = 4) -> int:
    """Output side of an unpadded U-Net for an input side (572 -> 388 at depth 4).

    Each level loses 4 pixels to its two convs, pooling halves (floor), each up-conv doubles.
    Returns a value <= 0 when the input is too small to reach the bottom.
    """
    size = input_size
    for _ in range(depth):
        size = (size - _DOUBLE_CONV_LOSS) // 2
        if size <= 0:
            return size
    size -= _DOUBLE_CONV_LOSS
    for _ in range(depth):
        if size <= 0:
            return size
        size = 2 * size - _DOUBLE_CONV_LOSS
    return size


def unet_valid_input_size(output_size: int, depth: int = 4) -> int:
    """Smallest "tileable" input side whose unpadded U-Net output is at least `output_size`.

    The returned input pools evenly at every level (no pixel dropped), which the paper asks
    for, so the output is centred on it: overlap-tile inference feeds tiles of this size with
    a `(input - output) / 2` mirrored border (92 pixels at depth 4). 388 -> 572.
    """
    scale = 2**depth
    loss = _DOUBLE_CONV_LOSS * (scale - 1)
    # Output = scale * bottom - loss for the bottom map's side after its two convs.
    bottom = max(1, math.ceil((max(output_size, 1) + loss) / scale))
    while scale * bottom - loss < 1:
        bottom += 1
    return scale * (bottom + _DOUBLE_CONV_LOSS) + loss


class _DoubleConv(nn.Module):
    features: int
    padding: str
    batch_norm: bool
    norm: NormFactory
    conv: ConvFactory
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        common = dict(
            kernel_size=3,
            padding=self.padding,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        for i in (1, 2):
            if self.batch_norm:
                x = ConvBN(
                    self.features, norm=self.norm, conv=self.conv, name=f"conv{i}", **common
                )(x, train)
            else:
                x = nn.relu(self.conv(self.features, name=f"conv{i}", **common)(x))
        return x


class UNet(nn.Module):
    """U-Net: `depth` levels of two 3x3 convs + 2x2 max pool, a bottom, mirrored up-path.

    Up level l: 2x2 stride-2 up-conv halving channels (`UpConv2x2`), concatenate with the
    encoder map of that level, two 3x3 convs. A 1x1 conv gives the classes.

    - `padding="VALID"` (the paper): the encoder map is centre-cropped to the up-conv output
      before concatenating, and the output is smaller than the input:
      `unet_valid_output_size(H, depth)` (572 -> 388). Pools are floor-mode; choose tile sizes
      from `unet_valid_input_size` so every pooled map is even and crops stay centred.
      Minimum input: `unet_valid_input_size(1, depth)` (188 at depth 4).
    - `padding="SAME"`: output `[B, H, W, num_classes]`; ceil-mode pools, and the up-conv output
      (which may be one pixel larger than the encoder map for odd sizes) is cropped at the
      top-left, where both grids start. Minimum input: `2**depth`.

    Parameters: `down1`..`down{depth}`, `bottom`, `up{depth}`..`up1` (`conv1`, `conv2`),
    `upconv{depth}`..`upconv1`, `classifier`. 31.0M for 2 classes at depth 4, width 64.

    Attributes:
      num_classes: output channels (2 in the paper).
      depth: number of poolings (4).
      base_features: channels of the first level (64), doubled per level.
      padding: 'VALID' or 'SAME'.
      batch_norm: conv + BN + ReLU (not in the paper, common today).
      dropout_rate: dropout at the end of the contracting path (the paper's "drop-out layers
        at the end of the contracting path"), rng "dropout".
      norm, conv, dtype, param_dtype: BN factory, conv module factory (see
        `jaxseg.nn.conv_layers`), dtypes.
    """

    num_classes: int = 2
    depth: int = 4
    base_features: int = 64
    padding: str = "VALID"
    batch_norm: bool = False
    dropout_rate: float = 0.5
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def min_input_size(self) -> int:
        if self.padding.upper() == "VALID":
            return unet_valid_input_size(1, self.depth)
        return 2**self.depth

    def output_size(self, input_size: int) -> int:
        """Output side for an input side (equal for SAME)."""
        if self.padding.upper() == "VALID":
            return unet_valid_output_size(input_size, self.depth)
        return input_size

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """`[B, H, W, 3]` -> float32 `[B, h, w, num_classes]` (h = H for SAME, see above)."""
        padding = self.padding.upper()
        if padding not in ("VALID", "SAME"):
            raise ValueError(f"UNet: padding must be 'VALID' or 'SAME', got {self.padding!r}")
        check_images(images, self.min_input_size, f"UNet(padding={padding!r}, depth={self.depth})")
        block = dict(
            padding=padding,
            batch_norm=self.batch_norm,
            norm=self.norm,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        x = jnp.asarray(images, self.dtype)
        skips = []
        for level in range(self.depth):
            x = _DoubleConv(self.base_features * 2**level, name=f"down{level + 1}", **block)(
                x, train
            )
            skips.append(x)
            x = max_pool2d(x, 2, 2, padding)
        x = _DoubleConv(self.base_features * 2**self.depth, name="bottom", **block)(x, train)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        for level in reversed(range(self.depth)):
            features = self.base_features * 2**level
            x = UpConv2x2(
                features, dtype=self.dtype, param_dtype=self.param_dtype, name=f"upconv{level + 1}"
            )(x)
            skip = skips[level]
            if padding == "VALID":
                skip = crop_like(skip, x)
            else:
                x = crop_like(x, skip, offset=0)
            x = jnp.concatenate([skip, x], axis=-1)
            x = _DoubleConv(features, name=f"up{level + 1}", **block)(x, train)
        logits = self.conv(
            self.num_classes,
            kernel_size=1,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="classifier",
        )(x)
        return to_float32_logits(logits)
