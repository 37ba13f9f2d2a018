"""DeepLab v3+ (Chen et al., ECCV 2018): the v3 encoder plus a light decoder at stride 4."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.models._common import BackboneLike, scaled_rates, to_float32_logits
from jaxseg.models.deeplab_encoder import aspp, backbone_module, check_inputs, classify
from jaxseg.nn import BatchNorm, Conv2D, ConvFactory, DeepLabV3PlusDecoder
from jaxseg.nn.conv_bn import NormFactory
from jaxseg.ops import resize_bilinear


class DeepLabV3Plus(nn.Module):
    """v3 encoder (backbone + ASPP) -> decoder with the backbone's `stride4` map -> classes.

    Decoder: upsample the ASPP output to stride 4, concatenate the 48-channel projection of
    `stride4`, two 3x3 convs of 256 (depthwise-separable unless `separable=False`), 1x1 to
    classes, bilinear upsampling to the input size. 59.3M parameters with ResNet-101,
    `separable=False` and 21 classes.

    `__call__(images [B, H, W, 3], train)` -> float32 logits `[B, H, W, num_classes]`,
    H, W >= 32 (`min_input_size`).

    Attributes:
      num_classes: 21 for VOC.
      backbone: 'xception65', 'resnet101', 'resnet50', 'mobilenetv2', or a module factory
        returning a dict with `out` and `stride4` (see `DeepLabV3`).
      output_stride: 16 (paper), 8 or 32.
      atrous_rates: ASPP rates; None gives (6, 12, 18) at stride 16, doubled at 8.
      multi_grid: rate multipliers of the backbone's last units; None (the paper's Xception
        setting) for the backbone's own, (1, 2, 4) for DeepLab v3's ResNet setting.
      separable: depthwise-separable ASPP and decoder convs (True: the paper's Xception
        model; its ResNet-101 comparison uses plain convs, `separable=False`).
      aspp_features, decoder_features, low_level_features: 256, 256, 48.
      dropout_rate: after the ASPP projection (rng "dropout").
      align_corners: convention of both bilinear upsamplings.
      norm, conv, dtype, param_dtype: BN factory, conv module factory (see
        `jaxseg.nn.conv_layers`), dtypes.
      upsample_logits: False returns the logits at the resolution they are computed at
        (stride 4 for v3+, `output_stride` for v3), as DeepLab's official multi-scale
        evaluation resizes them itself.
      backbone_norm: BN factory of the backbone alone (None: `norm`); the released DeepLab
        checkpoints use epsilon 1e-3 in Xception and MobileNetV2 and 1e-5 in the head.
    """

    min_input_size: ClassVar[int] = 32

    num_classes: int = 21
    backbone: BackboneLike = "xception65"
    output_stride: int = 16
    atrous_rates: Sequence[int] | None = None
    multi_grid: Sequence[int] | None = None
    separable: bool = True
    aspp_features: int = 256
    decoder_features: int = 256
    low_level_features: int = 48
    dropout_rate: float = 0.1
    align_corners: bool = False
    upsample_logits: bool = True
    norm: NormFactory = BatchNorm
    backbone_norm: NormFactory | None = None
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_inputs(self, images, (8, 16, 32))
        features = backbone_module(self, self.multi_grid)(images, train)
        rates = self.atrous_rates
        if rates is None:
            rates = scaled_rates((6, 12, 18), 16, self.output_stride)
        x = aspp(self, features["out"], rates, self.separable, train)
        x = DeepLabV3PlusDecoder(
            self.decoder_features,
            low_level_features=self.low_level_features,
            separable=self.separable,
            align_corners=self.align_corners,
            norm=self.norm,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="decoder",
        )(x, features["stride4"], train)
        logits = to_float32_logits(classify(self, x))
        if not self.upsample_logits:
            return logits
        return resize_bilinear(logits, images.shape[1:3], align_corners=self.align_corners)
