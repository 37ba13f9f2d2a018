"""DeepLab v3+ decoder: refine the encoder output with projected stride-4 features."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.nn.conv import Conv2D, ConvFactory
from jaxseg.nn.conv_bn import BatchNorm, ConvBN, NormFactory
from jaxseg.nn.separable import SeparableConvBN
from jaxseg.ops import resize_bilinear


class DeepLabV3PlusDecoder(nn.Module):
    """Upsample the encoder output to the low-level map, concat its 48-channel projection, 2 convs.

    Submodules: `low_level_project` (1x1 ConvBN), `conv1`, `conv2` (3x3, ConvBN or
    SeparableConvBN).

    Attributes:
      features: channels of the two 3x3 convs (256).
      low_level_features: channels of the low-level projection (48; fewer channels keep the
        low-level map from outweighing the encoder's semantic features).
      separable: depthwise-separable 3x3 convs (the Xception setting of the paper).
      align_corners: bilinear convention of the upsampling (see `jaxseg.ops.resize_bilinear`).
      norm, conv, dtype, param_dtype: as `ConvBN`.
    """

    features: int = 256
    low_level_features: int = 48
    separable: bool = False
    align_corners: bool = False
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, encoder_out: jax.Array, low_level: jax.Array, train: bool = False
    ) -> jax.Array:
        """Encoder `[B, h, w, C]` and low-level `[B, H4, W4, C_low]` -> `[B, H4, W4, features]`."""
        common = dict(
            norm=self.norm, conv=self.conv, dtype=self.dtype, param_dtype=self.param_dtype
        )
        low = ConvBN(self.low_level_features, kernel_size=1, name="low_level_project", **common)(
            low_level, train
        )
        up = resize_bilinear(encoder_out, low.shape[1:3], align_corners=self.align_corners)
        y = jnp.concatenate([up.astype(low.dtype), low], axis=-1)
        conv = SeparableConvBN if self.separable else ConvBN
        for i in range(2):
            y = conv(self.features, kernel_size=3, name=f"conv{i + 1}", **common)(y, train)
        return y
