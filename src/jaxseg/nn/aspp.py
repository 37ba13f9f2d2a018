"""Atrous spatial pyramid pooling: DeepLab v3's ASPP and DeepLab v2's ASPP-L."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.nn.conv import Conv2D, ConvFactory
from jaxseg.nn.conv_bn import BatchNorm, ConvBN, NormFactory
from jaxseg.nn.separable import SeparableConvBN


class ASPP(nn.Module):
    """DeepLab v3 ASPP: 1x1 conv, 3x3 atrous convs and image pooling, concatenated, projected.

    Every branch is conv + BN + ReLU with `features` channels; the image pooling branch is a
    global average, 1x1 conv + BN + ReLU, broadcast back to `H x W` (upsampling a 1x1 map,
    bilinearly or not, is a broadcast). Concatenation -> 1x1 conv + BN + ReLU -> dropout
    (0.1, the TF reference's keep_prob 0.9).

    Submodules: `conv1x1`, `atrous1`..`atrousN`, `image_pooling`, `project`.

    Attributes:
      features: channels of each branch and of the output (256 in the paper).
      atrous_rates: rates of the 3x3 branches, (6, 12, 18) at output stride 16.
      image_pooling: include the image-level branch (DeepLab v3).
      separable: depthwise-separable 3x3 branches (DeepLab v3+ with Xception).
      dropout_rate: after the projection; the rng is named "dropout".
      norm, conv, dtype, param_dtype: as `ConvBN`.
    """

    features: int = 256
    atrous_rates: Sequence[int] = (6, 12, 18)
    image_pooling: bool = True
    separable: bool = False
    dropout_rate: float = 0.1
    norm: NormFactory = BatchNorm
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """`[B, H, W, C]` -> `[B, H, W, features]`."""
        common = dict(
            norm=self.norm, conv=self.conv, dtype=self.dtype, param_dtype=self.param_dtype
        )
        branches = [ConvBN(self.features, kernel_size=1, name="conv1x1", **common)(x, train)]
        for i, rate in enumerate(self.atrous_rates):
            branch = SeparableConvBN if self.separable else ConvBN
            conv = branch(self.features, kernel_size=3, rate=rate, name=f"atrous{i + 1}", **common)
            branches.append(conv(x, train))
        if self.image_pooling:
            pooled = jnp.mean(x, axis=(1, 2), keepdims=True, dtype=jnp.float32).astype(x.dtype)
            pooled = ConvBN(self.features, kernel_size=1, name="image_pooling", **common)(
                pooled, train
            )
            branches.append(jnp.broadcast_to(pooled, (*x.shape[:3], self.features)))
        y = jnp.concatenate(branches, axis=-1)
        y = ConvBN(self.features, kernel_size=1, name="project", **common)(y, train)
        return nn.Dropout(self.dropout_rate, deterministic=not train)(y)


class ASPPL(nn.Module):
    """DeepLab v2 ASPP-L: parallel 3x3 atrous convs straight to class scores, summed.

    Submodules: `branch1`..`branchN` (`Conv2D` with bias, 3x3, `num_classes` outputs).

    Attributes:
      num_classes: output channels of each branch.
      atrous_rates: (6, 12, 18, 24) in the paper (ASPP-L).
      conv: the conv module factory (`Conv2D` or one from `jaxseg.nn.conv_layers`).
      dtype, param_dtype: as `Conv2D`.
    """

    num_classes: int
    atrous_rates: Sequence[int] = (6, 12, 18, 24)
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """`[B, H, W, C]` -> `[B, H, W, num_classes]`."""
        logits = [
            self.conv(
                self.num_classes,
                kernel_size=3,
                rate=rate,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                # The Caffe reference initialises these classifiers with N(0, 0.01).
                kernel_init=nn.initializers.normal(0.01),
                name=f"branch{i + 1}",
            )(x)
            for i, rate in enumerate(self.atrous_rates)
        ]
        return sum(logits[1:], logits[0])
