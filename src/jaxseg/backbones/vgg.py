"""VGG16 (Simonyan & Zisserman 2015) as used by FCN, SegNet and DeepLab v1."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones.atrous_schedule import check_output_stride
from jaxseg.nn import BatchNorm, Conv2D, ConvBN, ConvFactory
from jaxseg.nn.conv_bn import NormFactory
from jaxseg.ops import max_pool2d, max_pool_with_argmax
from jaxseg.ops.pooling import ceil_mode_pads

# Output channels of the convs of each of the five blocks (13 convs).
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Module):
    """VGG16 feature extractor: convs `conv{block}_{i}` (Caffe names), pools `pool1`..`pool5`.

    Two layouts:
    - `output_stride=32`: 2x2/2 max pools in ceil mode (odd sides keep their last pixel, as
      Caffe), so pool `b` is `[B, ceil(H / 2^b), ceil(W / 2^b), C]`.
    - `output_stride=8`: DeepLab v1: 3x3 max pools with padding 1, stride 2 for pool1..3 and
      stride 1 for pool4/pool5, conv5 at atrous rate 2 (same weights, denser output).

    With `include_fc`, fc6 (7x7 conv, 4096) and fc7 (1x1 conv, 4096) follow pool5 with ReLU and
    dropout: ImageNet VGG16's fully connected layers as convolutions (FCN). With `batch_norm`
    every conv is conv + BN + ReLU (SegNet's encoder, torchvision's `vgg16_bn`).

    Returns a dict of feature maps: `conv1`..`conv5` (last conv of each block, before its
    pool), `pool1`..`pool5`, `pool{b}_argmax` when `keep_pool_argmax`, `fc7` with
    `include_fc`, `stride{s}` (the deepest map at stride s) and `out` (fc7 or pool5).

    Attributes:
      batch_norm: conv + BN + ReLU instead of conv(+bias) + ReLU.
      output_stride: 32 (classic) or 8 (DeepLab v1).
      include_fc: add fc6/fc7.
      fc_features: channels of fc6/fc7 (4096).
      fc6_padding: 'SAME' keeps the map size; 'VALID' is the classifier's own (FCN's reference
        with its 100-pixel input pad).
      dropout_rate: after fc6 and fc7 (rng "dropout").
      keep_pool_argmax: pool with `jaxseg.ops.max_pool_with_argmax` and return the in-window
        argmax of each pool (SegNet); only with `output_stride=32`.
      ceil_mode: with `output_stride=8`, the 3x3 / 2 pools round their output size up as
        Caffe does (`jaxseg.ops.pooling.ceil_mode_pads`: 64 -> 33 rather than 32), for
        DeepLab's released Caffe models; the default pools `(H - 1) // 2 + 1`.
      norm, conv, dtype, param_dtype: BN factory, conv module factory (see
        `jaxseg.nn.conv_layers`), dtypes.
    """

    batch_norm: bool = False
    output_stride: int = 32
    include_fc: bool = False
    fc_features: int = 4096
    fc6_padding: str = "SAME"
    dropout_rate: float = 0.5
    keep_pool_argmax: bool = False
    ceil_mode: bool = False
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _conv(self, features: int, name: str, rate: int = 1) -> nn.Module:
        common = dict(rate=rate, dtype=self.dtype, param_dtype=self.param_dtype)
        if self.batch_norm:
            return ConvBN(features, 3, norm=self.norm, conv=self.conv, name=name, **common)
        return self.conv(features, kernel_size=3, name=name, **common)

    def _pool(self, x: jax.Array, block: int) -> tuple[jax.Array, jax.Array | None]:
        if self.output_stride == 8:
            stride = 2 if block <= 3 else 1
            pad = ((1, 1), (1, 1))
            if self.ceil_mode:
                pad = tuple(ceil_mode_pads(n, 3, stride, 1) for n in x.shape[1:3])
            return max_pool2d(x, 3, stride, pad), None
        if self.keep_pool_argmax:
            return max_pool_with_argmax(x, 2)
        return max_pool2d(x, 2, 2, "SAME"), None

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """`images` `[B, H, W, C]` -> feature maps (see class docstring)."""
        check_output_stride(self.output_stride, (8, 32), "VGG16")
        if self.keep_pool_argmax and self.output_stride != 32:
            raise ValueError("VGG16: keep_pool_argmax needs output_stride=32 (2x2 pools)")
        x = jnp.asarray(images, self.dtype)
        features: dict[str, jax.Array] = {}
        stride = 1
        for block, widths in enumerate(VGG16_BLOCKS, start=1):
            rate = 2 if self.output_stride == 8 and block == 5 else 1
            for i, width in enumerate(widths, start=1):
                conv = self._conv(width, f"conv{block}_{i}", rate)
                x = conv(x, train) if self.batch_norm else nn.relu(conv(x))
            features[f"conv{block}"] = x
            x, argmax = self._pool(x, block)
            features[f"pool{block}"] = x
            if argmax is not None:
                features[f"pool{block}_argmax"] = argmax
            stride = min(stride * 2, self.output_stride)
            features[f"stride{stride}"] = x
        if self.include_fc:
            common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
            x = self.conv(self.fc_features, 7, padding=self.fc6_padding, name="fc6", **common)(x)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
            x = self.conv(self.fc_features, 1, name="fc7", **common)(x)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
            features["fc7"] = x
            features[f"stride{stride}"] = x
        features["out"] = x
        return features
