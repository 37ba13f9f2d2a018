"""DeepLab v3 (Chen et al., 2017): atrous backbone + ASPP with image pooling."""

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
from jaxseg.nn import ASPP, BatchNorm, Conv2D
from jaxseg.nn.conv_bn import NormFactory
from jaxseg.ops import resize_bilinear


class DeepLabV3(nn.Module):
    """Backbone `out` -> ASPP (1x1, three 3x3 atrous, image pooling; 256 ch, BN) -> 1x1 classes.

    Logits are bilinearly upsampled to the input size (labels are never downsampled).

    `__call__(images [B, H, W, 3], train)` -> float32 logits `[B, H, W, num_classes]`,
    H, W >= 32 (`min_input_size`).

    Attributes:
      num_classes: 21 for VOC.
      backbone: 'resnet101' (paper), 'resnet50', 'xception65', 'mobilenetv2', or a module
        factory (class or functools.partial) taking `output_stride`, `multi_grid`, `norm`,
        `conv_impl`, `dtype`, `param_dtype` keywords and returning a dict with `out`.
      output_stride: 16 (training in the paper), 8 (evaluation) or 32.
      atrous_rates: ASPP rates; None gives (6, 12, 18) at stride 16, doubled at 8, halved at 32.
      multi_grid: rate multipliers of the last stage's units; None gives the paper's (1, 2, 4)
        for ResNets and the backbone's default otherwise (MobileNetV2 has none).
      aspp_features: 256.
      separable_aspp: depthwise-separable ASPP convs (as DeepLab v3+ with Xception).
      dropout_rate: after the ASPP projection (0.1, the TF reference), rng "dropout".
      align_corners: convention of the final bilinear upsampling.
      norm, conv_impl, dtype, param_dtype: BN factory, `atrous_conv2d` impl, dtypes.
    """

    min_input_size: ClassVar[int] = 32

    num_classes: int = 21
    backbone: BackboneLike = "resnet101"
    output_stride: int = 16
    atrous_rates: Sequence[int] | None = None
    multi_grid: Sequence[int] | None = None
    aspp_features: int = 256
    separable_aspp: bool = False
    dropout_rate: float = 0.1
    align_corners: bool = False
    norm: NormFactory = BatchNorm
    conv_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, self.min_input_size, type(self).__name__)
        check_output_stride(self.output_stride, (8, 16, 32), type(self).__name__)
        common = dict(
            norm=self.norm, impl=self.conv_impl, dtype=self.dtype, param_dtype=self.param_dtype
        )
        features = build_backbone(
            self.backbone,
            multi_grid=self.multi_grid,
            deeplab_multi_grid=True,
            output_stride=self.output_stride,
            norm=self.norm,
            conv_impl=self.conv_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )(images, train)
        rates = self.atrous_rates or scaled_rates((6, 12, 18), 16, self.output_stride)
        x = ASPP(
            self.aspp_features,
            atrous_rates=tuple(rates),
            separable=self.separable_aspp,
            dropout_rate=self.dropout_rate,
            name="aspp",
            **common,
        )(features["out"], train)
        logits = Conv2D(
            self.num_classes,
            kernel_size=1,
            impl=self.conv_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="classifier",
        )(x)
        logits = to_float32_logits(logits)
        return resize_bilinear(logits, images.shape[1:3], align_corners=self.align_corners)
