"""DeepLab v1 LargeFOV (Chen et al., ICLR 2015): atrous VGG16 at output stride 8."""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones import VGG16
from jaxseg.models._common import check_images, to_float32_logits
from jaxseg.nn import Conv2D
from jaxseg.ops import resize_bilinear


class DeepLabV1(nn.Module):
    """VGG16 in the DeepLab layout (pool4/pool5 stride 1, conv5 at rate 2) + LargeFOV head.

    Head: `fc6` 3x3 conv at rate 12 with 1024 channels, `fc7` 1x1 1024 (ReLU + dropout 0.5
    each), `fc8` 1x1 to classes, then bilinear upsampling x8 to the input size. 20.5M
    parameters for 21 classes, as the paper reports. The dense CRF is post-processing
    (`jaxseg.crf`), not part of the module.

    `__call__(images [B, H, W, 3], train)` -> float32 logits `[B, H, W, num_classes]`,
    H, W >= 32 (`min_input_size`).

    Attributes:
      num_classes: 21 for VOC.
      fc_features: channels of fc6/fc7 (1024 in LargeFOV).
      fc6_rate: atrous rate of fc6 (12 in LargeFOV).
      dropout_rate: after fc6 and fc7 (rng "dropout").
      align_corners: convention of the final bilinear upsampling (see `resize_bilinear`).
      conv_impl, dtype, param_dtype: `atrous_conv2d` impl, compute and parameter dtypes.
    """

    min_input_size: ClassVar[int] = 32

    num_classes: int = 21
    fc_features: int = 1024
    fc6_rate: int = 12
    dropout_rate: float = 0.5
    align_corners: bool = False
    conv_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, self.min_input_size, "DeepLabV1")
        common = dict(impl=self.conv_impl, dtype=self.dtype, param_dtype=self.param_dtype)
        x = VGG16(
            output_stride=8,
            name="backbone",
            conv_impl=self.conv_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )(images, train)["out"]
        x = Conv2D(self.fc_features, kernel_size=3, rate=self.fc6_rate, name="fc6", **common)(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        x = Conv2D(self.fc_features, kernel_size=1, name="fc7", **common)(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        logits = Conv2D(
            self.num_classes,
            kernel_size=1,
            kernel_init=nn.initializers.normal(0.01),
            name="fc8",
            **common,
        )(x)
        logits = to_float32_logits(logits)
        return resize_bilinear(logits, images.shape[1:3], align_corners=self.align_corners)
