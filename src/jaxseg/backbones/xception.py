"""Aligned Xception-41/65/71, the DeepLab v3+ backbones (Chen et al. 2018, after Chollet 2017).

Differences from Keras' (ImageNet) Xception, which is why its weights do not map: 16 middle
flow units instead of 8, strided separable convs instead of max pools, BN after every
depthwise conv, an extra separable conv per entry/exit block and different entry padding.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones.atrous_schedule import atrous_schedule, check_output_stride
from jaxseg.nn import BatchNorm, Conv2D, ConvBN, ConvFactory, SeparableConvBN
from jaxseg.nn.conv_bn import NormFactory


class XceptionBlock(nn.Module):
    """Three 3x3 separable convs (the last one strided) plus a shortcut.

    As in the DeepLab reference (`xception_module`): with `activation_in_separable=False`
    each separable conv is preceded by a ReLU and has none inside; with True it has ReLU after
    its depthwise and pointwise BNs (the exit flow's last block).

    Submodules: `separable_conv1..3` and, for `skip="conv"`, `shortcut` (1x1 conv + BN).

    Attributes:
      depths: output channels of the three separable convs.
      skip: 'conv' (1x1 projection), 'sum' (identity) or 'none'.
      stride: of the third separable conv and the shortcut.
      rate: atrous rate of the block; `unit_rates` multiply it per conv (multi-grid).
    """

    depths: Sequence[int]
    skip: str = "conv"
    stride: int = 1
    rate: int = 1
    unit_rates: Sequence[int] = (1, 1, 1)
    activation_in_separable: bool = False
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, list[jax.Array]]:
        """`[B, H, W, C]` -> (`[B, H / stride, W / stride, depths[-1]]`, the three conv outputs)."""
        common = dict(
            norm=self.norm, conv=self.conv, dtype=self.dtype, param_dtype=self.param_dtype
        )
        activation = nn.relu if self.activation_in_separable else None
        residual, intermediates = x, []
        for i, depth in enumerate(self.depths):
            if not self.activation_in_separable:
                residual = nn.relu(residual)
            residual = SeparableConvBN(
                depth,
                stride=self.stride if i == 2 else 1,
                rate=self.rate * self.unit_rates[i],
                padding="FIXED",
                activation=activation,
                name=f"separable_conv{i + 1}",
                **common,
            )(residual, train)
            intermediates.append(residual)
        if self.skip == "conv":
            shortcut = ConvBN(
                self.depths[-1],
                kernel_size=1,
                stride=self.stride,
                activation=None,
                name="shortcut",
                **common,
            )(x, train)
            return residual + shortcut, intermediates
        if self.skip == "sum":
            return residual + x, intermediates
        if self.skip == "none":
            return residual, intermediates
        raise ValueError(f"skip must be 'conv', 'sum' or 'none', got {self.skip!r}")


class Xception65(nn.Module):
    """Aligned Xception-65: entry flow (2 convs + 3 blocks), 16 middle units, exit flow.

    `entry_flow`, `middle_flow_units` and `low_level_block` give the other depths of the
    DeepLab release (`Xception41`, `Xception71`). Every conv pads like TF-slim's `fixed_padding`
    (the official code pads strided convs so; for stride 1 it equals "SAME").

    Strides beyond `output_stride` become atrous rates following the DeepLab reference (the
    unit that loses its stride keeps the rate so far; later units use the multiplied rate).
    `multi_grid` multiplies the rates of the three separable convs of the last exit block.

    Submodules: `entry_conv1`, `entry_conv2`, `entry_block1..E`, `middle_block1..N`,
    `exit_block1`, `exit_block2`.

    Returns a dict: `stride2` (entry convs), `stride4` (DeepLab v3+'s decoder end point: the
    second separable conv of entry block `low_level_block`, 256 channels), `stride8`,
    `stride16` (deepest map at each stride), `stride32` at output stride 32, and `out` (2048
    channels).

    Attributes:
      output_stride: 8, 16 or 32.
      multi_grid: three rate multipliers for the last block, or None for (1, 1, 1).
      middle_flow_units: 16 for Xception-65 and -71, 8 for Xception-41 (fewer also makes
        tests cheap).
      entry_flow: `(channels, stride)` of each entry-flow block (three equal separable convs
        and a 1x1 projection shortcut).
      low_level_block: the entry block (1-based) whose second separable conv is `stride4`.
      norm, conv, dtype, param_dtype: BN factory (the reference uses epsilon 1e-3),
        conv module factory (`jaxseg.nn.conv_layers`), dtypes.
    """

    output_stride: int = 32
    multi_grid: Sequence[int] | None = None
    middle_flow_units: int = 16
    entry_flow: Sequence[tuple[int, int]] = ((128, 2), (256, 2), (728, 2))
    low_level_block: int = 2
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """`images` `[B, H, W, C]` -> feature maps (see class docstring)."""
        check_output_stride(self.output_stride, (8, 16, 32), "Xception65")
        multi_grid = tuple(self.multi_grid or (1, 1, 1))
        if len(multi_grid) != 3:
            raise ValueError(f"Xception65: multi_grid needs 3 rates, got {multi_grid}")
        common = dict(
            norm=self.norm, conv=self.conv, dtype=self.dtype, param_dtype=self.param_dtype
        )
        conv = functools.partial(
            ConvBN,
            kernel_size=3,
            padding="FIXED",
            norm=self.norm,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        x = conv(32, stride=2, name="entry_conv1")(jnp.asarray(images, self.dtype), train)
        x = conv(64, name="entry_conv2")(x, train)
        features = {"stride2": x}
        # (name, depths, skip, stride, activation_in_separable)
        blocks = [
            *[
                (f"entry_block{i + 1}", (depth,) * 3, "conv", stride, False)
                for i, (depth, stride) in enumerate(self.entry_flow)
            ],
            *[
                (f"middle_block{i + 1}", (728, 728, 728), "sum", 1, False)
                for i in range(self.middle_flow_units)
            ],
            ("exit_block1", (728, 1024, 1024), "conv", 2, False),
            ("exit_block2", (1536, 1536, 2048), "none", 1, True),
        ]
        plan = atrous_schedule([b[3] for b in blocks], self.output_stride, initial_stride=2)
        current = 2
        for (name, depths, skip, _, act_inside), (stride, rate) in zip(blocks, plan, strict=True):
            x, intermediates = XceptionBlock(
                depths,
                skip=skip,
                stride=stride,
                rate=rate,
                unit_rates=multi_grid if name == "exit_block2" else (1, 1, 1),
                activation_in_separable=act_inside,
                name=name,
                **common,
            )(x, train)
            current *= stride
            features[f"stride{current}"] = x
            if name == f"entry_block{self.low_level_block}":
                features["stride4"] = intermediates[1]
        features["out"] = x
        return features


class Xception41(Xception65):
    """Aligned Xception-41: `Xception65` with 8 middle-flow units."""

    middle_flow_units: int = 8


class Xception71(Xception65):
    """Aligned Xception-71: five entry-flow blocks (strides 2, 1, 2, 1, 2), 16 middle units.

    Its `stride4` map is the second separable conv of entry block 3 (the official decoder end
    point).
    """

    entry_flow: Sequence[tuple[int, int]] = ((128, 2), (256, 1), (256, 2), (728, 1), (728, 2))
    low_level_block: int = 3
