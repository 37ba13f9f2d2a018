"""The pre-FCN baseline: classify each pixel from the patch around it, then convolutionalize.

`PatchClassifier` is a small CNN with fully connected layers that labels the centre pixel of
a `patch_size` x `patch_size` patch. Run on every patch of an image it repeats almost all of
its work between neighbouring patches. `to_fully_convolutional` turns its dense layers into
convolutions (`jaxseg.ops.fc_to_conv`): the first dense layer becomes a VALID conv with the
size of the last feature map, the others 1x1 convs, so one pass over an image gives the score
of every patch on a grid with the network's total pooling stride (FCN, Section 3.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.models._common import check_images, to_float32_logits
from jaxseg.nn import Conv2D, ConvFactory
from jaxseg.ops import fc_to_conv, max_pool2d


class _PatchClassifierBase(nn.Module):
    num_classes: int = 21
    patch_size: int = 32
    conv_features: Sequence[int] = (32, 64)
    hidden_features: Sequence[int] = (256,)
    dropout_rate: float = 0.5
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def patch_stride(self) -> int:
        """Distance in pixels between neighbouring patches the fully convolutional net scores."""
        return 2 ** len(self.conv_features)

    @property
    def feature_size(self) -> int:
        """Side of the last feature map of one patch (what the first dense layer reads)."""
        size = self.patch_size
        for _ in self.conv_features:
            size = (size - 2) // 2  # VALID 3x3 conv, then 2x2 floor pooling
        return size

    def _trunk(self, x: jax.Array) -> jax.Array:
        """VALID 3x3 conv + ReLU + 2x2 max pool per entry of `conv_features`."""
        if self.feature_size < 1:
            raise ValueError(
                f"{type(self).__name__}: patch_size={self.patch_size} is too small for "
                f"{len(self.conv_features)} conv+pool levels"
            )
        x = jnp.asarray(x, self.dtype)
        for i, features in enumerate(self.conv_features):
            x = self.conv(
                features,
                kernel_size=3,
                padding="VALID",
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"conv{i + 1}",
            )(x)
            x = max_pool2d(nn.relu(x), 2)
        return x


class PatchClassifier(_PatchClassifierBase):
    """Small CNN + fully connected layers scoring the centre pixel of a patch.

    `__call__(patches [B, P, P, 3], train)` -> float32 scores `[B, num_classes]` for the pixel
    at `(P // 2, P // 2)` of each patch (P = `patch_size`, exactly).

    Parameters: `conv1`.. (3x3 VALID), `fc1`.. (`nn.Dense`, hidden), `classifier` (`nn.Dense`).

    Attributes:
      num_classes: output classes.
      patch_size: P (e.g. 32 or 65).
      conv_features: channels of the conv + pool levels (their count sets the patch stride).
      hidden_features: widths of the hidden fully connected layers.
      dropout_rate: after each hidden layer (rng "dropout").
      conv: conv module factory (`jaxseg.nn.conv_layers`).
      dtype, param_dtype: compute and parameter dtypes.
    """

    @nn.compact
    def __call__(self, patches: jax.Array, train: bool = False) -> jax.Array:
        check_images(patches, self.patch_size, "PatchClassifier")
        if patches.shape[1:3] != (self.patch_size, self.patch_size):
            raise ValueError(
                f"PatchClassifier: patches must be {self.patch_size}x{self.patch_size}, got "
                f"{patches.shape[1]}x{patches.shape[2]}; use to_fully_convolutional() for images"
            )
        x = self._trunk(patches)
        x = x.reshape(x.shape[0], -1)  # row-major (h, w, c): the order fc_to_conv assumes
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        for i, width in enumerate(self.hidden_features):
            x = nn.relu(nn.Dense(width, name=f"fc{i + 1}", **dense)(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return to_float32_logits(nn.Dense(self.num_classes, name="classifier", **dense)(x))

    def to_fully_convolutional(
        self, params: dict
    ) -> tuple[FullyConvolutionalPatchClassifier, dict]:
        """The same classifier as a fully convolutional net, and its params.

        Args:
          params: this model's `variables["params"]`.

        Returns:
          `(model, params)`: `model.apply({"params": params}, images [B, H, W, 3])` gives
          `[B, (H - P) // s + 1, (W - P) // s + 1, num_classes]` with s = `patch_stride`;
          entry `[i, j]` is this model's score of the patch at `(s * i, s * j)`, i.e. of
          pixel `(s * i + P // 2, s * j + P // 2)`.
        """
        model = FullyConvolutionalPatchClassifier(
            num_classes=self.num_classes,
            patch_size=self.patch_size,
            conv_features=self.conv_features,
            hidden_features=self.hidden_features,
            dropout_rate=self.dropout_rate,
            conv=self.conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            parent=None,  # a standalone model, not a submodule of this one
        )
        converted = {f"conv{i + 1}": params[f"conv{i + 1}"] for i in range(len(self.conv_features))}
        dense_names = [f"fc{i + 1}" for i in range(len(self.hidden_features))] + ["classifier"]
        for i, name in enumerate(dense_names):
            # Only the first dense layer sees a spatial map; the later ones see 1x1 "maps".
            size = self.feature_size if i == 0 else 1
            converted[name] = {
                "kernel": fc_to_conv(params[name]["kernel"], (size, size)),
                "bias": params[name]["bias"],
            }
        return model, converted


class FullyConvolutionalPatchClassifier(_PatchClassifierBase):
    """`PatchClassifier` with its dense layers as convolutions; see `to_fully_convolutional`.

    `__call__(images [B, H, W, 3], train)` -> float32 `[B, (H - P) // s + 1, (W - P) // s + 1,
    num_classes]`, H, W >= P (`patch_size`).
    """

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, self.patch_size, "FullyConvolutionalPatchClassifier")
        x = self._trunk(images)
        conv = dict(padding="VALID", dtype=self.dtype, param_dtype=self.param_dtype)
        for i, width in enumerate(self.hidden_features):
            size = self.feature_size if i == 0 else 1
            x = nn.relu(self.conv(width, kernel_size=size, name=f"fc{i + 1}", **conv)(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        size = self.feature_size if not self.hidden_features else 1
        logits = self.conv(self.num_classes, kernel_size=size, name="classifier", **conv)(x)
        return to_float32_logits(logits)
