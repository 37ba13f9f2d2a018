"""Depthwise-separable atrous convolution with BatchNorm after each step (Xception, DeepLab v3+)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.nn.conv import Conv2D, ConvFactory, PaddingLike
from jaxseg.nn.conv_bn import Activation, BatchNorm, ConvBN, NormFactory


class SeparableConvBN(nn.Module):
    """Depthwise atrous conv -> BN -> act -> pointwise 1x1 conv -> BN -> act.

    The BN (and optional activation) between the depthwise and pointwise steps is what the
    aligned Xception of DeepLab v3+ adds to the original Xception. With `activation=None` both
    activations are dropped: DeepLab's Xception blocks then apply ReLU *before* the separable
    conv instead (their `activation_fn_in_separable_conv=False`).

    Submodules: `depthwise` and `pointwise` (`ConvBN` each, i.e. `depthwise/conv/kernel` of
    shape `[k, k, 1, C]`, `pointwise/conv/kernel` of shape `[1, 1, C, features]`).

    Attributes:
      features: output channels.
      kernel_size, stride, rate, padding: of the depthwise conv (as `Conv2D`).
      activation: after each BN, or None.
      norm, conv, dtype, param_dtype: as `ConvBN`.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    rate: int = 1
    padding: PaddingLike = "SAME"
    activation: Activation = nn.relu
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """`[B, H, W, C]` -> `[B, H', W', features]`."""
        common = dict(
            activation=self.activation,
            norm=self.norm,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        y = ConvBN(
            x.shape[-1],
            kernel_size=self.kernel_size,
            stride=self.stride,
            rate=self.rate,
            padding=self.padding,
            feature_group_count=x.shape[-1],
            name="depthwise",
            **common,
        )(x, train)
        return ConvBN(self.features, kernel_size=1, name="pointwise", **common)(y, train)
