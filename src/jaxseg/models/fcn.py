"""Fully convolutional networks FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell, 2015).

VGG16 with fc6/fc7 as 7x7 / 1x1 convs, a 1x1 `score_fr`, and upsampling by transposed convs
initialised to bilinear interpolation (`jaxseg.ops.bilinear_kernel`): learnable 2x steps that
fuse zero-initialised scores of pool4 (16s) and pool3 (8s) by sum, and a final fixed bilinear
upsampling (x32, x16, x8), as in the reference Caffe nets.

Padding. The reference pads the input by 100 pixels (conv1_1 `pad: 100`), runs fc6 VALID and
crops every fused/upsampled map at fixed offsets (32s: 19; 16s: pool4 5, final 27; 8s: pool4
5, pool3 9, final 31), spending compute on the border. The default here instead keeps every map
aligned with the input: SAME convs, ceil-mode pools (pool b is `ceil(H / 2^b)`), fc6 SAME, and
each full transposed-conv output `(n - 1) s + 2s` cropped at offset `s / 2`. That crop makes
the bilinear kernel interpolate between cell centres exactly like half-pixel bilinear resizing
(`jax.image.resize`). `faithful_padding=True` restores the reference layout.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones import VGG16
from jaxseg.models._common import check_images, to_float32_logits
from jaxseg.nn import Conv2D, ConvFactory
from jaxseg.nn.layers import ConvTransposeFn
from jaxseg.ops import bilinear_kernel, conv_transpose2d, crop_like, resize_bilinear

FAITHFUL_INPUT_PAD = 100
# Crop offsets of the reference prototxts (valid with the 100-pixel pad only).
FAITHFUL_OFFSETS = {"pool4": 5, "pool3": 9, "final": {32: 19, 16: 27, 8: 31}}


class FCN(nn.Module):
    """Shared body of FCN-32s/16s/8s; use those subclasses.

    `__call__(images [B, H, W, 3], train)` -> float32 logits `[B, H, W, num_classes]`,
    H, W >= 32 (`min_input_size`; smaller inputs would be one padded stride-32 cell).

    Parameters: `backbone` (VGG16 convs + `fc6`, `fc7`), `score_fr`, `score_pool4` (16s, 8s),
    `score_pool3` (8s), `upscore2`, `upscore_pool4` (8s) `[4, 4, C, C]`, and `upscore` when
    `learnable_final_upsampling`.

    Attributes:
      num_classes: output channels (21 for VOC).
      faithful_padding: the reference's 100-pixel pad + VALID fc6 + fixed crop offsets.
      learnable_final_upsampling: make the last x32/x16/x8 upsampling a learned (bilinear-
        initialised) parameter; the reference keeps it fixed.
      zero_init_scores: zero-initialise `score_fr` as the paper does (score_pool3/4 always
        start at zero so a new skip starts as the coarser net). With a random backbone and a
        zero `score_fr` the backbone gets no gradient until `score_fr` has moved (one step).
      fc_features: channels of fc6/fc7 (4096, VGG16's; smaller only for cheap tests).
      dropout_rate: after fc6 and fc7 (rng "dropout").
      conv: conv module factory (`jaxseg.nn.conv_layers`).
      conv_transpose: the transposed conv of the 2x and final upsamplings, a function with
        `jaxseg.ops.conv_transpose2d`'s signature (`jaxseg.nn.conv_layers`).
      dtype, param_dtype: compute and parameter dtypes.
    """

    # Pool layers whose scores are fused, coarse to fine (each adds one 2x learned step).
    skips: ClassVar[tuple[str, ...]] = ()
    min_input_size: ClassVar[int] = 32

    num_classes: int = 21
    faithful_padding: bool = False
    learnable_final_upsampling: bool = False
    zero_init_scores: bool = True
    fc_features: int = 4096
    dropout_rate: float = 0.5
    conv: ConvFactory = Conv2D
    conv_transpose: ConvTransposeFn = conv_transpose2d
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _score(self, x: jax.Array, name: str, zero: bool) -> jax.Array:
        init = nn.initializers.zeros if zero else nn.initializers.normal(0.01)
        return self.conv(
            self.num_classes,
            kernel_size=1,
            kernel_init=init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )(x)

    def _upsample(self, x: jax.Array, factor: int, name: str | None) -> jax.Array:
        """Transposed conv, kernel 2 * factor, stride factor, full ('VALID') output."""
        size = 2 * factor
        if name is None:
            kernel = bilinear_kernel(size, self.num_classes, self.dtype)
        else:
            kernel = self.param(
                name,
                lambda _, shape, dtype: bilinear_kernel(shape[0], shape[2], dtype),
                (size, size, self.num_classes, self.num_classes),
                self.param_dtype,
            )
        return self.conv_transpose(x, kernel, factor, padding="VALID")

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, self.min_input_size, type(self).__name__)
        x = jnp.asarray(images, self.dtype)
        if self.faithful_padding:
            # conv1_1 pads by 1 itself (SAME): 99 + 1 = the reference's pad 100.
            pad = FAITHFUL_INPUT_PAD - 1
            x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        features = VGG16(
            include_fc=True,
            fc6_padding="VALID" if self.faithful_padding else "SAME",
            fc_features=self.fc_features,
            dropout_rate=self.dropout_rate,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="backbone",
        )(x, train)
        score = self._score(features["fc7"], "score_fr", self.zero_init_scores)
        stride = 32
        for i, pool in enumerate(self.skips):
            up = self._upsample(score, 2, "upscore2" if i == 0 else f"upscore_{self.skips[i - 1]}")
            skip = self._score(features[pool], f"score_{pool}", zero=True)
            if self.faithful_padding:
                skip = crop_like(skip, up, offset=FAITHFUL_OFFSETS[pool])
            else:
                up = crop_like(up, skip, offset=1)
            score = up + skip
            stride //= 2
        name = "upscore" if self.learnable_final_upsampling else None
        up = self._upsample(score, stride, name)
        offset = FAITHFUL_OFFSETS["final"][stride] if self.faithful_padding else stride // 2
        return to_float32_logits(crop_like(up, images, offset=offset))


class FCN32s(FCN):
    """FCN-32s: score_fr upsampled x32 (see `FCN` for arguments); 134.3M params for 21 classes."""

    skips: ClassVar[tuple[str, ...]] = ()


class FCN16s(FCN):
    """FCN-16s: 2x upsampled score_fr + score_pool4, upsampled x16 (see `FCN`)."""

    skips: ClassVar[tuple[str, ...]] = ("pool4",)


class FCN8s(FCN):
    """FCN-8s: FCN-16s' fusion upsampled 2x + score_pool3, upsampled x8 (see `FCN`)."""

    skips: ClassVar[tuple[str, ...]] = ("pool4", "pool3")


class VGG16Classifier(nn.Module):
    """The ImageNet VGG16 classifier applied fully convolutionally (FCN, section 3.1).

    fc6 is a 7x7 VALID conv, fc7 and `fc8` 1x1 convs, so each 224 x 224 window (stride 32)
    gets the classifier's scores; the score map is resized bilinearly to the input. At
    224 x 224 the map is one cell: the classifier's output for the image.

    `__call__(images [B, H, W, 3], train)` -> float32 `[B, H, W, num_classes]`, H, W >= 224.

    Attributes:
      num_classes: 1000 for ImageNet.
      fc_features: channels of fc6/fc7 (4096).
      fc6_padding: 'VALID' (the classifier's windows); 'SAME' keeps one score per 32 pixels
        and accepts inputs from 32 pixels.
      dropout_rate, conv, dtype, param_dtype: as `FCN`.
    """

    min_input_size: ClassVar[int] = 224

    num_classes: int = 1000
    fc_features: int = 4096
    fc6_padding: str = "VALID"
    dropout_rate: float = 0.5
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        min_size = self.min_input_size if self.fc6_padding == "VALID" else 32
        check_images(images, min_size, "VGG16Classifier")
        features = VGG16(
            include_fc=True,
            fc6_padding=self.fc6_padding,
            fc_features=self.fc_features,
            dropout_rate=self.dropout_rate,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="backbone",
        )(images, train)
        scores = self.conv(
            self.num_classes,
            kernel_size=1,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="fc8",
        )(features["fc7"])
        return resize_bilinear(to_float32_logits(scores), images.shape[1:3])
