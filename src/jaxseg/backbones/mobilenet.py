"""MobileNetV2 (Sandler et al. 2018): a light backbone for demos and fast tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones.atrous_schedule import atrous_schedule, check_output_stride
from jaxseg.nn import BatchNorm, Conv2D, ConvBN, ConvFactory
from jaxseg.nn.conv_bn import NormFactory

# (expansion t, channels c, repeats n, first stride s) of the paper's Table 2.
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never below 90% of `value` (reference rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6, atrous) -> 1x1 linear project (+ identity).

    Submodules: `expand` (absent when `expansion == 1`), `depthwise`, `project`.
    """

    features: int
    expansion: int
    stride: int = 1
    rate: int = 1
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """`[B, H, W, C]` -> `[B, ceil(H / stride), ceil(W / stride), features]`."""
        common = dict(
            norm=self.norm, conv=self.conv, dtype=self.dtype, param_dtype=self.param_dtype
        )
        hidden = x.shape[-1] * self.expansion
        y = x
        if self.expansion != 1:
            y = ConvBN(hidden, kernel_size=1, activation=nn.relu6, name="expand", **common)(
                y, train
            )
        y = ConvBN(
            hidden,
            kernel_size=3,
            stride=self.stride,
            rate=self.rate,
            feature_group_count=hidden,
            activation=nn.relu6,
            name="depthwise",
            **common,
        )(y, train)
        y = ConvBN(self.features, kernel_size=1, activation=None, name="project", **common)(
            y, train
        )
        if self.stride == 1 and x.shape[-1] == self.features:
            y = y + x
        return y


class MobileNetV2(nn.Module):
    """MobileNetV2 trunk without the final 1x1 (1280) conv and classifier (as DeepLab uses it).

    TensorFlow 'SAME' padding throughout (as Keras' MobileNetV2). Strides beyond
    `output_stride` become atrous rates by TF-slim's rule (see `atrous_schedule`).

    Submodules: `stem` (3x3/2 conv), `block1`..`block17` (`InvertedResidual`).

    Returns a dict: `stride2`, `stride4` (24 channels), `stride8`, `stride16`, `stride32`
    (as far as `output_stride` allows; the deepest map at each stride) and `out` (320 x width).

    Attributes:
      output_stride: 8, 16 or 32.
      multi_grid: must be None (accepted so that every DeepLab backbone takes the argument).
      width_multiplier: scales every layer's channels (1.0 is the paper's network).
      channel_divisor: scaled channel counts are rounded to multiples of this (8; the
        official DeepLab code uses 1 for depth multipliers other than 1.0).
      norm, conv, dtype, param_dtype: BN factory (the reference uses epsilon 1e-3),
        conv module factory (`jaxseg.nn.conv_layers`), dtypes.
    """

    output_stride: int = 32
    multi_grid: Sequence[int] | None = None
    width_multiplier: float = 1.0
    channel_divisor: int = 8
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """`images` `[B, H, W, C]` -> feature maps (see class docstring)."""
        check_output_stride(self.output_stride, (8, 16, 32), "MobileNetV2")
        if self.multi_grid is not None:
            raise ValueError(
                f"MobileNetV2 has no multi-grid; pass multi_grid=None, got {self.multi_grid}"
            )
        common = dict(
            norm=self.norm, conv=self.conv, dtype=self.dtype, param_dtype=self.param_dtype
        )
        x = ConvBN(
            make_divisible(32 * self.width_multiplier, self.channel_divisor),
            kernel_size=3,
            stride=2,
            activation=nn.relu6,
            norm=self.norm,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="stem",
        )(jnp.asarray(images, self.dtype), train)
        features = {"stride2": x}
        units = [
            (expansion, channels, stride if i == 0 else 1)
            for expansion, channels, repeats, stride in MOBILENET_V2_STAGES
            for i in range(repeats)
        ]
        plan = atrous_schedule([u[2] for u in units], self.output_stride, initial_stride=2)
        current = 2
        for index, ((expansion, channels, _), (stride, rate)) in enumerate(
            zip(units, plan, strict=True), start=1
        ):
            x = InvertedResidual(
                make_divisible(channels * self.width_multiplier, self.channel_divisor),
                expansion,
                stride=stride,
                rate=rate,
                name=f"block{index}",
                **common,
            )(x, train)
            current *= stride
            features[f"stride{current}"] = x
        features["out"] = x
        return features
