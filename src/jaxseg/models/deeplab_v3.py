"""DeepLab v3 (Chen et al., 2017): atrous backbone + ASPP with image pooling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.models._common import BackboneLike, scaled_rates, to_float32_logits
from jaxseg.models.deeplab_encoder import aspp, backbone_module, check_inputs, classify
from jaxseg.nn import BatchNorm, Conv2D, ConvFactory
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
        `conv`, `dtype`, `param_dtype` keywords and returning a dict with `out`.
      output_stride: 16 (training in the paper), 8 (evaluation) or 32.
      atrous_rates: ASPP rates; None gives (6, 12, 18) at stride 16, doubled at 8, halved at 32;
        () keeps only the 1x1 and image-pooling branches (the released MobileNetV2 models).
      multi_grid: rate multipliers of the last stage's units: the paper's (1, 2, 4) (ResNet's
        block4); None for the backbone's own (all ones; MobileNetV2 accepts only None).
      aspp_features: 256.
      separable_aspp: depthwise-separable ASPP convs (False in the paper; the released
        Xception models use them).
      dropout_rate: after the ASPP projection (0.1, the TF reference), rng "dropout".
      align_corners: convention of the final bilinear upsampling.
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
    backbone: BackboneLike = "resnet101"
    output_stride: int = 16
    atrous_rates: Sequence[int] | None = None
    multi_grid: Sequence[int] | None = (1, 2, 4)
    aspp_features: int = 256
    separable_aspp: bool = False
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
        x = aspp(self, features["out"], rates, self.separable_aspp, train)
        logits = to_float32_logits(classify(self, x))
        if not self.upsample_logits:
            return logits
        return resize_bilinear(logits, images.shape[1:3], align_corners=self.align_corners)
