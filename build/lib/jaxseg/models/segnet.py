"""SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017): unpooling with the encoder's indices."""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones import VGG16
from jaxseg.backbones.vgg import VGG16_BLOCKS
from jaxseg.models._common import check_images, to_float32_logits
from jaxseg.nn import BatchNorm, Conv2D, ConvBN
from jaxseg.nn.conv_bn import NormFactory
from jaxseg.ops import max_unpool


class SegNet(nn.Module):
    """VGG16-BN encoder keeping each pool's argmax; a mirrored decoder unpools with them.

    Decoder block b (5 -> 1): `max_unpool` with pool b's argmax back to conv b's size, then as
    many 3x3 conv + BN + ReLU as the encoder block had, named `conv{b}_{i}_d` with i counting
    down (Caffe's `conv5_3_D` ...); the last conv of a block outputs the next block's width.
    Encoder block 1's mirror is one conv followed by the classifier (Caffe's `conv1_1_D`).
    No fully connected layers: 29.4M parameters for 11 classes (CamVid).

    `__call__(images [B, H, W, 3], train)` -> float32 logits `[B, H, W, num_classes]`,
    H, W >= 32 (`min_input_size`). Odd sizes work: pools are ceil-mode and unpooling crops back.

    Attributes:
      num_classes: output channels (11 for CamVid).
      classifier_kernel_size: 1 (a 1x1 classifier as usually described); the Caffe reference
        uses 3.
      norm, conv_impl, dtype, param_dtype: BN factory, `atrous_conv2d` impl, dtypes.
    """

    min_input_size: ClassVar[int] = 32

    num_classes: int = 11
    classifier_kernel_size: int = 1
    norm: NormFactory = BatchNorm
    conv_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, self.min_input_size, "SegNet")
        common = dict(impl=self.conv_impl, dtype=self.dtype, param_dtype=self.param_dtype)
        features = VGG16(
            batch_norm=True,
            keep_pool_argmax=True,
            norm=self.norm,
            conv_impl=self.conv_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="backbone",
        )(images, train)
        x = features["pool5"]
        for block in range(len(VGG16_BLOCKS), 0, -1):
            skip = features[f"conv{block}"]
            x = max_unpool(x, features[f"pool{block}_argmax"], 2, output_size=skip.shape[1:3])
            widths = list(VGG16_BLOCKS[block - 1])
            outputs = widths[1:] + ([VGG16_BLOCKS[block - 2][-1]] if block > 1 else [])
            for i, width in zip(range(len(widths), 0, -1), outputs, strict=False):
                conv = ConvBN(
                    width, kernel_size=3, norm=self.norm, name=f"conv{block}_{i}_d", **common
                )
                x = conv(x, train)
        logits = Conv2D(
            self.num_classes, kernel_size=self.classifier_kernel_size, name="classifier", **common
        )(x)
        return to_float32_logits(logits)
