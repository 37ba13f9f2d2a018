"""DeepLab v2 (Chen et al., TPAMI 2017): atrous ResNet-101 at output stride 8 with ASPP-L."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones import VGG16
from jaxseg.models._common import (
    BackboneLike,
    check_images,
    scaled_rates,
    to_float32_logits,
)
from jaxseg.models.deeplab_encoder import backbone_module, check_inputs
from jaxseg.models.deeplab_v1 import caffe_zoom
from jaxseg.nn import ASPPL, BatchNorm, Conv2D, ConvFactory
from jaxseg.nn.conv_bn import NormFactory
from jaxseg.ops import resize_bilinear
from jaxseg.ops.pooling import avg_pool2d_count_pad


class DeepLabV2(nn.Module):
    """Backbone `out` -> ASPP-L (3x3 atrous class scores at rates 6, 12, 18, 24, summed) -> x8.

    The paper's Caffe ResNet-101 strides the first 1x1 conv of a block: for weights from it
    pass `backbone=functools.partial(ResNet101, stride_in_1x1=True)`. The dense CRF is
    post-processing (`jaxseg.crf`); the released model's multi-scale inputs are
    `multi_scale_inputs=(0.75, 0.5)`.

    `__call__(images [B, H, W, 3], train)` -> float32 logits `[B, H, W, num_classes]`,
    H, W >= 32 (`min_input_size`).

    Attributes:
      num_classes: 21 for VOC.
      backbone: 'resnet101', 'resnet50', 'xception65', 'mobilenetv2', or a module factory
        (class or functools.partial) accepting `output_stride`, `dtype`, ... keywords.
      output_stride: 8 (paper) or 16.
      atrous_rates: ASPP-L rates; None gives (6, 12, 18, 24) at stride 8, halved at 16.
      align_corners: convention of the final bilinear upsampling.
      multi_scale_inputs: extra input scales run through the same network (DeepLab v2's
        released ResNet-101: (0.75, 0.5)). Scale s resizes the input corner-aligned to
        `floor((H - 1) s) + 1` (Caffe's `Interp` shrink/zoom sizes: 513 -> 385, 257), its
        class scores are resized corner-aligned to those of the full-scale input, and all
        are fused by an element-wise max.
      caffe_interp: final upsampling as Caffe's `Interp` zoom 8 (see
        `jaxseg.models.deeplab_v1.caffe_zoom`) instead of `resize_bilinear`.
      norm, conv, dtype, param_dtype: BN factory, conv module factory (see
        `jaxseg.nn.conv_layers`), dtypes.
    """

    min_input_size: ClassVar[int] = 32

    num_classes: int = 21
    backbone: BackboneLike = "resnet101"
    output_stride: int = 8
    atrous_rates: Sequence[int] | None = None
    align_corners: bool = False
    multi_scale_inputs: Sequence[float] = ()
    caffe_interp: bool = False
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_inputs(self, images, (8, 16))
        rates = self.atrous_rates or scaled_rates((6, 12, 18, 24), 8, self.output_stride)
        backbone = backbone_module(self)
        aspp = ASPPL(
            self.num_classes,
            atrous_rates=tuple(rates),
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="aspp",
        )
        logits = to_float32_logits(aspp(backbone(images, train)["out"]))
        logits = fuse_scales(
            logits, images, self.multi_scale_inputs, lambda x: aspp(backbone(x, train)["out"])
        )
        if self.caffe_interp:
            return caffe_zoom(logits, 8, images.shape[1:3])
        return resize_bilinear(logits, images.shape[1:3], align_corners=self.align_corners)


def fuse_scales(
    logits: jax.Array, images: jax.Array, scales: Sequence[float], network
) -> jax.Array:
    """Max of `logits` and `network` run on `images` at each of `scales` (see DeepLabV2).

    `logits` `[B, h, w, C]` of the full-scale `images` `[B, H, W, 3]`; returns `[B, h, w, C]`.
    """
    height, width = images.shape[1:3]
    for scale in scales:
        size = (int((height - 1) * scale) + 1, int((width - 1) * scale) + 1)
        scaled = network(resize_bilinear(images, size, align_corners=True))
        scaled = resize_bilinear(to_float32_logits(scaled), logits.shape[1:3], align_corners=True)
        logits = jnp.maximum(logits, scaled)
    return logits


class LargeFOVBranch(nn.Module):
    """One DeepLab-LargeFOV head: `fc6` 3x3 atrous, `fc7` 1x1 (ReLU + dropout each), `fc8` 1x1.

    `[B, h, w, C]` -> `[B, h, w, num_classes]`.
    """

    num_classes: int
    rate: int
    features: int = 1024
    dropout_rate: float = 0.5
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = self.conv(self.features, kernel_size=3, rate=self.rate, name="fc6", **common)(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        x = self.conv(self.features, kernel_size=1, name="fc7", **common)(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        init = nn.initializers.normal(0.01)
        return self.conv(self.num_classes, 1, kernel_init=init, name="fc8", **common)(x)


class DeepLabV2VGG16(nn.Module):
    """DeepLab v2 with VGG16 (the paper's VGG16 ASPP-L): DeepLab's VGG16 (pool4/pool5 stride
    1, conv5 at rate 2), then one `LargeFOVBranch` per rate (6, 12, 18, 24; 1024 channels),
    class scores summed, upsampled x8. 37.9M parameters for 21 classes.

    `__call__(images [B, H, W, 3], train)` -> float32 logits `[B, H, W, num_classes]`.
    Submodules: `backbone` (VGG16), `branch1`..`branch4` (each `fc6`, `fc7`, `fc8`).

    Attributes:
      num_classes, fc_features, atrous_rates, dropout_rate: as above.
      ceil_mode, pool5_avg, caffe_interp: Caffe semantics as in `DeepLabV1`.
      align_corners: convention of the final upsampling without `caffe_interp`.
      conv, dtype, param_dtype: conv module factory (`jaxseg.nn.conv_layers`), dtypes.
    """

    min_input_size: ClassVar[int] = 32

    num_classes: int = 21
    fc_features: int = 1024
    atrous_rates: Sequence[int] = (6, 12, 18, 24)
    dropout_rate: float = 0.5
    ceil_mode: bool = False
    pool5_avg: bool = False
    caffe_interp: bool = False
    align_corners: bool = False
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, self.min_input_size, "DeepLabV2VGG16")
        x = VGG16(
            output_stride=8,
            ceil_mode=self.ceil_mode,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="backbone",
        )(images, train)["out"]
        if self.pool5_avg:
            x = avg_pool2d_count_pad(x, 3, 1, 1)
        branches = [
            LargeFOVBranch(
                self.num_classes,
                rate,
                self.fc_features,
                self.dropout_rate,
                self.conv,
                self.dtype,
                self.param_dtype,
                name=f"branch{i + 1}",
            )(x, train)
            for i, rate in enumerate(self.atrous_rates)
        ]
        logits = to_float32_logits(sum(branches[1:], branches[0]))
        if self.caffe_interp:
            return caffe_zoom(logits, 8, images.shape[1:3])
        return resize_bilinear(logits, images.shape[1:3], align_corners=self.align_corners)
