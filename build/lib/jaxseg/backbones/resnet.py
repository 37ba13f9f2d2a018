"""ResNet v1 with bottleneck blocks (He et al. 2016), atrous for DeepLab.

Stride placement differs between ports of the same architecture: Keras applications and the
original Caffe model stride the first 1x1 conv of a downsampling block (`stride_in_1x1=True`);
torchvision ("ResNet v1.5") and TF-slim stride the 3x3 conv (the default here). The weights
have identical shapes, so use the placement the weights were trained with.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones.atrous_schedule import check_output_stride
from jaxseg.nn import BatchNorm, ConvBN
from jaxseg.nn.conv_bn import NormFactory
from jaxseg.ops import max_pool2d


class Bottleneck(nn.Module):
    """1x1 (width) -> 3x3 (width, atrous) -> 1x1 (4 x width), plus the identity or a projection.

    Submodules: `conv1`, `conv2`, `conv3` and, when `projection`, `shortcut` (1x1 ConvBN).

    Attributes:
      width: bottleneck channels; the block outputs `4 * width`.
      stride: 1 or 2.
      rate: atrous rate of the 3x3 conv.
      stride_in_1x1: stride the first 1x1 (Keras/Caffe) instead of the 3x3.
      projection: 1x1 conv + BN shortcut (first block of a stage) instead of the identity.
    """

    width: int
    stride: int = 1
    rate: int = 1
    stride_in_1x1: bool = False
    projection: bool = False
    norm: NormFactory = BatchNorm
    conv_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """`[B, H, W, C]` -> `[B, H / stride, W / stride, 4 * width]` (ceil)."""
        conv = functools.partial(
            ConvBN,
            padding="FIXED",
            norm=self.norm,
            impl=self.conv_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        stride_1x1, stride_3x3 = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
        y = conv(self.width, kernel_size=1, stride=stride_1x1, name="conv1")(x, train)
        y = conv(self.width, kernel_size=3, stride=stride_3x3, rate=self.rate, name="conv2")(
            y, train
        )
        y = conv(4 * self.width, kernel_size=1, activation=None, name="conv3")(y, train)
        shortcut = x
        if self.projection:
            shortcut = conv(
                4 * self.width, kernel_size=1, stride=self.stride, activation=None, name="shortcut"
            )(x, train)
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """ResNet v1 trunk: stem `conv1` (7x7/2) + 3x3/2 max pool, then four bottleneck stages.

    Blocks are named `stage{s}_block{b}` (s = 1..4 is torchvision's layer1..4, Keras'
    conv2..conv5). For `output_stride` 16 or 8 the stride of stage 4 (and 3) is removed and
    every conv after the removed stride runs at the rate it would have skipped (2, then 4):
    with the default stride placement the first block's 3x3 keeps the incoming rate (as
    torchvision's `replace_stride_with_dilation`), with `stride_in_1x1` it takes the new one.
    This keeps the atrous identity exact: the output at stride 8 sampled every 4th pixel is
    the stride-32 output. `multi_grid` multiplies the rates of the last stage's blocks
    (DeepLab v3): at output stride 16 with `stride_in_1x1`, `(1, 2, 4)` gives (2, 4, 8).

    Returns a dict: `stem` (stride 4), `stage1`..`stage4`, `stride{s}` (the deepest map at
    stride s: `stride4` is stage1 with 256 channels) and `out` (stage4, 2048 channels).
    Spatial sizes: `ceil(H / stride)`.

    Attributes:
      stage_sizes: blocks per stage, (3, 4, 6, 3) for ResNet-50, (3, 4, 23, 3) for ResNet-101.
      output_stride: 8, 16 or 32.
      multi_grid: one rate multiplier per block of stage 4, or None for all ones.
      stride_in_1x1: see module docstring.
      base_width: bottleneck width of stage 1 (64); stage s uses `base_width * 2**(s - 1)`.
      norm, conv_impl, dtype, param_dtype: BN factory, `atrous_conv2d` impl, dtypes.
    """

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    output_stride: int = 32
    multi_grid: Sequence[int] | None = None
    stride_in_1x1: bool = False
    base_width: int = 64
    norm: NormFactory = BatchNorm
    conv_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """`images` `[B, H, W, C]` -> feature maps (see class docstring)."""
        name = type(self).__name__
        check_output_stride(self.output_stride, (8, 16, 32), name)
        if len(self.stage_sizes) != 4:
            raise ValueError(f"{name}: stage_sizes must have 4 entries, got {self.stage_sizes}")
        multi_grid = tuple(self.multi_grid or (1,) * self.stage_sizes[-1])
        if len(multi_grid) != self.stage_sizes[-1]:
            raise ValueError(
                f"{name}: multi_grid needs one rate per block of the last stage "
                f"({self.stage_sizes[-1]}), got {multi_grid}"
            )
        common = dict(
            norm=self.norm, conv_impl=self.conv_impl, dtype=self.dtype, param_dtype=self.param_dtype
        )
        x = ConvBN(
            self.base_width,
            kernel_size=7,
            stride=2,
            padding="FIXED",
            norm=self.norm,
            impl=self.conv_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv1",
        )(jnp.asarray(images, self.dtype), train)
        # After the ReLU every value is >= 0, so this -inf padding equals Keras' zero padding.
        x = max_pool2d(x, 3, 2, ((1, 1), (1, 1)))
        features = {"stem": x, "stride4": x}
        stride, rate = 4, 1
        for s, num_blocks in enumerate(self.stage_sizes):
            stage_stride, incoming_rate = (1 if s == 0 else 2), rate
            if stride * stage_stride > self.output_stride:
                rate, stage_stride = rate * stage_stride, 1
            stride *= stage_stride
            grid = multi_grid if s == len(self.stage_sizes) - 1 else (1,) * num_blocks
            for b in range(num_blocks):
                # A conv runs at the rate of the strides before it; in a stage's first block
                # the 3x3 precedes the (removed) stride unless the 1x1 carries it.
                before_stride = b == 0 and not self.stride_in_1x1
                x = Bottleneck(
                    self.base_width * 2**s,
                    stride=stage_stride if b == 0 else 1,
                    rate=(incoming_rate if before_stride else rate) * grid[b],
                    stride_in_1x1=self.stride_in_1x1,
                    projection=b == 0,
                    name=f"stage{s + 1}_block{b + 1}",
                    **common,
                )(x, train)
            features[f"stage{s + 1}"] = x
            features[f"stride{stride}"] = x
        features["out"] = x
        return features


class ResNet50(ResNet):
    """ResNet-50: `ResNet` with `stage_sizes=(3, 4, 6, 3)` (23.5M parameters without fc)."""

    stage_sizes: Sequence[int] = (3, 4, 6, 3)


class ResNet101(ResNet):
    """ResNet-101: `ResNet` with `stage_sizes=(3, 4, 23, 3)` (42.5M parameters without fc)."""

    stage_sizes: Sequence[int] = (3, 4, 23, 3)
