"""DeepLab v2 (Chen et al., TPAMI 2017): atrous ResNet-101 at output stride 8 with ASPP-L."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones import check_output_stride
from jaxseg.models._common import (
    BackboneLike,
    build_backbone,
    check_images,
    scaled_rates,
    to_float32_logits,
)
from jaxseg.nn import ASPPL, BatchNorm
from jaxseg.nn.conv_bn import NormFactory
from jaxseg.ops import resize_bilinear


class DeepLabV2(nn.Module):
    """Backbone `out` -> ASPP-L (3x3 atrous class scores at rates 6, 12, 18, 24, summed) -> x8.

    The paper's Caffe ResNet-101 strides the first 1x1 conv of a block: for weights from it
    pass `backbone=functools.partial(ResNet101, stride_in_1x1=True)`. Multi-scale inputs
    (1, 0.75, 0.5 fused by max) and the dense CRF are inference-time (`jaxseg.inference`,
    `jaxseg.crf`).

    `__call__(images [B, H, W, 3], train)` -> float32 logits `[B, H, W, num_classes]`,
    H, W >= 32 (`min_input_size`).

    Attributes:
      num_classes: 21 for VOC.
      backbone: 'resnet101', 'resnet50', 'xception65', 'mobilenetv2', or a module factory
        (class or functools.partial) accepting `output_stride`, `dtype`, ... keywords.
      output_stride: 8 (paper) or 16.
      atrous_rates: ASPP-L rates; None gives (6, 12, 18, 24) at stride 8, halved at 16.
      align_corners: convention of the final bilinear upsampling.
      norm, conv_impl, dtype, param_dtype: BN factory, `atrous_conv2d` impl, dtypes.
    """

    min_input_size: ClassVar[int] = 32

    num_classes: int = 21
    backbone: BackboneLike = "resnet101"
    output_stride: int = 8
    atrous_rates: Sequence[int] | None = None
    align_corners: bool = False
    norm: NormFactory = BatchNorm
    conv_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, self.min_input_size, "DeepLabV2")
        check_output_stride(self.output_stride, (8, 16), "DeepLabV2")
        rates = self.atrous_rates or scaled_rates((6, 12, 18, 24), 8, self.output_stride)
        features = build_backbone(
            self.backbone,
            multi_grid=None,
            deeplab_multi_grid=False,
            output_stride=self.output_stride,
            norm=self.norm,
            conv_impl=self.conv_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )(images, train)
        logits = ASPPL(
            self.num_classes,
            atrous_rates=tuple(rates),
            impl=self.conv_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="aspp",
        )(features["out"])
        logits = to_float32_logits(logits)
        return resize_bilinear(logits, images.shape[1:3], align_corners=self.align_corners)
