"""DeepLab v1 LargeFOV (Chen et al., ICLR 2015): atrous VGG16 at output stride 8."""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones import VGG16
from jaxseg.models._common import check_images, to_float32_logits
from jaxseg.nn import Conv2D, ConvFactory
from jaxseg.ops import resize_bilinear
from jaxseg.ops.pooling import avg_pool2d_count_pad


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
      ceil_mode: Caffe's ceil-mode 3x3 / 2 pools (see `VGG16.ceil_mode`).
      pool5_avg: the released model's `pool5a`, a 3x3 / 1 / pad 1 average pool before fc6
        whose divisor counts padded pixels.
      caffe_interp: the final upsampling as Caffe's `Interp` with zoom factor 8: a
        corner-aligned bilinear resize to `(h - 1) * 8 + 1` (not `8 h`), cropped at the
        top-left to the input size (replaces `align_corners`). With ceil-mode pools that size
        is never smaller than the input; at 513 = 8 * 64 + 1 it is the input size.
      conv, dtype, param_dtype: conv module factory (`jaxseg.nn.conv_layers`), dtypes.
    """

    min_input_size: ClassVar[int] = 32

    num_classes: int = 21
    fc_features: int = 1024
    fc6_rate: int = 12
    dropout_rate: float = 0.5
    align_corners: bool = False
    ceil_mode: bool = False
    pool5_avg: bool = False
    caffe_interp: bool = False
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, self.min_input_size, "DeepLabV1")
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = VGG16(
            output_stride=8,
            ceil_mode=self.ceil_mode,
            name="backbone",
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )(images, train)["out"]
        if self.pool5_avg:
            x = avg_pool2d_count_pad(x, 3, 1, 1)
        x = self.conv(self.fc_features, kernel_size=3, rate=self.fc6_rate, name="fc6", **common)(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        x = self.conv(self.fc_features, kernel_size=1, name="fc7", **common)(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        logits = self.conv(
            self.num_classes,
            kernel_size=1,
            kernel_init=nn.initializers.normal(0.01),
            name="fc8",
            **common,
        )(x)
        logits = to_float32_logits(logits)
        if self.caffe_interp:
            return caffe_zoom(logits, 8, images.shape[1:3])
        return resize_bilinear(logits, images.shape[1:3], align_corners=self.align_corners)


def caffe_zoom(x: jax.Array, factor: int, size: tuple[int, int]) -> jax.Array:
    """Caffe `Interp` with `zoom_factor`, then a top-left crop to `size`.

    `[B, h, w, C]` -> corner-aligned bilinear `[B, (h - 1) f + 1, (w - 1) f + 1, C]` ->
    `[B, size[0], size[1], C]`.
    """
    zoomed = tuple((n - 1) * factor + 1 for n in x.shape[1:3])
    if zoomed[0] < size[0] or zoomed[1] < size[1]:
        raise ValueError(
            f"Caffe Interp zoom {factor} of {x.shape[1:3]} gives {zoomed}, smaller than the "
            f"input {tuple(size)}; build the model with ceil_mode=True"
        )
    return resize_bilinear(x, zoomed, align_corners=True)[:, : size[0], : size[1]]
