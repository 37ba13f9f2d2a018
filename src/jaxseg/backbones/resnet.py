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

from jaxseg.backbones.atrous_schedule import atrous_schedule, check_output_stride
from jaxseg.nn import BatchNorm, Conv2D, ConvBN, ConvFactory
from jaxseg.nn.conv_bn import NormFactory
from jaxseg.ops import max_pool2d
from jaxseg.ops.pooling import ceil_mode_pads


class Bottleneck(nn.Module):
    """1x1 (width) -> 3x3 (width, atrous) -> 1x1 (4 x width), plus the identity or a projection.

    Submodules: `conv1`, `conv2`, `conv3` and, when `projection`, `shortcut` (1x1 ConvBN).

    Attributes:
      width: bottleneck channels; the block outputs `4 * width`.
      stride: 1 or 2.
      rate: atrous rate of the 3x3 conv.
      stride_in_1x1: stride the first 1x1 (Keras/Caffe) instead of the 3x3.
      projection: 1x1 conv + BN shortcut (first block of a stage) instead of the identity
        (subsampled by `stride`, TF-slim's `subsample`, when strided).
      with_branch: also return the residual branch before the addition (`conv3` after its
        BN), the decoder end point of the official DeepLab ResNet-v1-beta.
    """

    width: int
    stride: int = 1
    rate: int = 1
    stride_in_1x1: bool = False
    projection: bool = False
    with_branch: bool = False
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool = False
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """`[B, H, W, C]` -> `[B, H / stride, W / stride, 4 * width]` (ceil); with
        `with_branch` a pair (output, residual branch of the same shape)."""
        conv = functools.partial(
            ConvBN,
            padding="FIXED",
            norm=self.norm,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        stride_1x1, stride_3x3 = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
        y = conv(self.width, kernel_size=1, stride=stride_1x1, name="conv1")(x, train)
        y = conv(self.width, kernel_size=3, stride=stride_3x3, rate=self.rate, name="conv2")(
            y, train
        )
        y = conv(4 * self.width, kernel_size=1, activation=None, name="conv3")(y, train)
        shortcut = x[:, :: self.stride, :: self.stride]
        if self.projection:
            shortcut = conv(
                4 * self.width, kernel_size=1, stride=self.stride, activation=None, name="shortcut"
            )(x, train)
        out = nn.relu(y + shortcut)
        return (out, y) if self.with_branch else out


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
      stem: '7x7' (`conv1`, 7x7/2, then a 3x3/2 max pool padded by 1) or 'beta' (TF-slim's
        ResNet-v1-beta of DeepLab: `conv1_1` 3x3/2, `conv1_2` 3x3, `conv1_3` 3x3 with
        `2 * base_width` channels, then a 3x3/2 max pool with TensorFlow "SAME" padding).
      stride_at_end: TF-slim's layout (DeepLab's `resnet_v1_*_beta`): stages 1-3 stride their
        LAST block (identity shortcut subsampled), stage 4 none; the first block of every
        stage projects. Strides beyond `output_stride` become rates block by block
        (`atrous_schedule`). `stride4` is then the residual branch (`conv3` + BN, before the
        addition) of stage 1's second block, the official decoder end point.
      stem_pool_ceil_mode: round the 3x3 / 2 stem pool's output size up as Caffe does
        (`jaxseg.ops.pooling.ceil_mode_pads`; DeepLab v2's released ResNet-101), instead of
        `(H - 1) // 2 + 1` (the '7x7' stem only).
      norm, conv, dtype, param_dtype: BN factory, conv module factory (see
        `jaxseg.nn.conv_layers`), dtypes.
    """

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    output_stride: int = 32
    multi_grid: Sequence[int] | None = None
    stride_in_1x1: bool = False
    base_width: int = 64
    stem: str = "7x7"
    stride_at_end: bool = False
    stem_pool_ceil_mode: bool = False
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
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
            norm=self.norm, conv=self.conv, dtype=self.dtype, param_dtype=self.param_dtype
        )
        stem = functools.partial(
            ConvBN,
            padding="FIXED",
            norm=self.norm,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        x = jnp.asarray(images, self.dtype)
        if self.stem == "7x7":
            x = stem(self.base_width, kernel_size=7, stride=2, name="conv1")(x, train)
            # After the ReLU every value is >= 0, so this -inf padding equals Keras' zero padding.
            pool_pads = ((1, 1), (1, 1))
            if self.stem_pool_ceil_mode:
                pool_pads = tuple(ceil_mode_pads(n, 3, 2, 1) for n in x.shape[1:3])
            x = max_pool2d(x, 3, 2, pool_pads)
        elif self.stem == "beta":
            x = stem(self.base_width, kernel_size=3, stride=2, name="conv1_1")(x, train)
            x = stem(self.base_width, kernel_size=3, name="conv1_2")(x, train)
            x = stem(2 * self.base_width, kernel_size=3, name="conv1_3")(x, train)
            x = max_pool2d(x, 3, 2, "SAME")
        else:
            raise ValueError(f"{name}: stem must be '7x7' or 'beta', got {self.stem!r}")
        features = {"stem": x, "stride4": x}
        if self.stride_at_end:
            return self._slim_stages(x, features, multi_grid, common, train)
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

    def _slim_stages(self, x, features, multi_grid, common, train):
        """The `stride_at_end` stages (see class docstring)."""
        units = [
            (s, b, 2 if (b == n - 1 and s < 3) else 1)
            for s, n in enumerate(self.stage_sizes)
            for b in range(n)
        ]
        plan = atrous_schedule([u[2] for u in units], self.output_stride, initial_stride=4)
        stride = 4
        for (s, b, _), (unit_stride, rate) in zip(units, plan, strict=True):
            branch_point = s == 0 and b == 1
            x = Bottleneck(
                self.base_width * 2**s,
                stride=unit_stride,
                rate=rate * (multi_grid[b] if s == 3 else 1),
                projection=b == 0,
                with_branch=branch_point,
                name=f"stage{s + 1}_block{b + 1}",
                **common,
            )(x, train)
            if branch_point:
                x, branch = x
            stride *= unit_stride
            if b == self.stage_sizes[s] - 1:
                features[f"stage{s + 1}"] = x
            features[f"stride{stride}"] = x
            if branch_point:
                features["stride4"] = branch
        features["out"] = x
        return features


class ResNet50(ResNet):
    """ResNet-50: `ResNet` with `stage_sizes=(3, 4, 6, 3)` (23.5M parameters without fc)."""

    stage_sizes: Sequence[int] = (3, 4, 6, 3)


class ResNet101(ResNet):
    """ResNet-101: `ResNet` with `stage_sizes=(3, 4, 23, 3)` (42.5M parameters without fc)."""

    stage_sizes: Sequence[int] = (3, 4, 23, 3)
