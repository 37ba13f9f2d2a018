"""SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017): unpooling with the encoder's indices."""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones import VGG16
from jaxseg.backbones.vgg import VGG16_BLOCKS
from jaxseg.models._common import check_images, to_float32_logits
from jaxseg.nn import BatchNorm, Conv2D, ConvBN, ConvFactory
from jaxseg.nn.conv_bn import NormFactory
from jaxseg.ops import max_pool_with_argmax, max_unpool


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
      norm, conv, dtype, param_dtype: BN factory, conv module factory (see
        `jaxseg.nn.conv_layers`), dtypes.
    """

    min_input_size: ClassVar[int] = 32

    num_classes: int = 11
    classifier_kernel_size: int = 1
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, self.min_input_size, "SegNet")
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        features = VGG16(
            batch_norm=True,
            keep_pool_argmax=True,
            norm=self.norm,
            conv=self.conv,
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
                    width, 3, norm=self.norm, conv=self.conv, name=f"conv{block}_{i}_d", **common
                )
                x = conv(x, train)
        logits = self.conv(
            self.num_classes, kernel_size=self.classifier_kernel_size, name="classifier", **common
        )(x)
        return to_float32_logits(logits)


def lrn_across_channels(
    x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> jax.Array:
    """Caffe's `LRN` (ACROSS_CHANNELS): `x / (k + alpha / size * sum of x^2 over the size
    channels centred on each channel, zeros past the edges) ** beta`. `[B, H, W, C]` in/out."""
    squares = jnp.pad(jnp.square(x), ((0, 0), (0, 0), (0, 0), ((size - 1) // 2, size // 2)))
    window = sum(squares[..., i : i + x.shape[-1]] for i in range(size))
    return x / (k + alpha / size * window) ** beta


class SegNetBasic(nn.Module):
    """SegNet-Basic (the paper's small SegNet, SegNet tutorial): `depth` encoder stages of a
    7x7 conv + BN + ReLU and a 2x2 max pool keeping its indices; a mirrored decoder of
    unpooling with those indices and a 7x7 conv + BN (no ReLU, as released); a 1x1
    classifier. The input first goes through a local response normalisation. 1.42M
    parameters for 11 classes.

    `__call__(images [B, H, W, 3], train)` -> float32 logits `[B, H, W, num_classes]`,
    H, W >= 2**depth. Submodules: `conv1`..`conv{depth}`, `conv_decode{depth}`..
    `conv_decode1` (`ConvBN`), `classifier`.

    Attributes:
      num_classes: 11 for CamVid.
      features: channels of every conv (64).
      depth: encoder stages (4).
      kernel_size: of the encoder and decoder convs (7).
      lrn: the input's local response normalisation (size 5, alpha 1e-4, beta 0.75).
      decoder_relu: a ReLU after each decoder BN (the release has none).
      norm, conv, dtype, param_dtype: BN factory, conv module factory (see
        `jaxseg.nn.conv_layers`), dtypes.
    """

    num_classes: int = 11
    features: int = 64
    depth: int = 4
    kernel_size: int = 7
    lrn: bool = True
    decoder_relu: bool = False
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, 2**self.depth, "SegNetBasic")
        common = dict(
            kernel_size=self.kernel_size,
            norm=self.norm,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        x = jnp.asarray(images, self.dtype)
        if self.lrn:
            x = lrn_across_channels(x)
        stack = []
        for i in range(1, self.depth + 1):
            x = ConvBN(self.features, name=f"conv{i}", **common)(x, train)
            size = x.shape[1:3]
            x, argmax = max_pool_with_argmax(x, 2)
            stack.append((argmax, size))
        activation = nn.relu if self.decoder_relu else None
        for i in range(self.depth, 0, -1):
            argmax, size = stack[i - 1]
            x = max_unpool(x, argmax, 2, output_size=size)
            x = ConvBN(self.features, activation=activation, name=f"conv_decode{i}", **common)(
                x, train
            )
        logits = self.conv(
            self.num_classes,
            kernel_size=1,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="classifier",
        )(x)
        return to_float32_logits(logits)
