"""Convolution + BatchNorm (+ activation), the unit every backbone and head is built from."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.nn.conv import Conv2D, ConvFactory, PaddingLike

# momentum 0.9 is PyTorch's 0.1 (Flax counts the other way); the DeepLab TF reference uses
# 0.9997 with much longer schedules: bind it with functools.partial where an experiment wants it.
# Under jit on a batch sharded over devices the statistics are global, i.e. synchronised BN.
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)
NormFactory = Callable[..., nn.Module]
Activation = Callable[[jax.Array], jax.Array] | None


class ConvBN(nn.Module):
    """`Conv2D` (no bias) -> BatchNorm -> activation; submodules named `conv` and `bn`.

    Attributes:
      features, kernel_size, stride, rate, padding, feature_group_count: as `Conv2D`.
      conv: the conv module factory (`Conv2D`, or one from `jaxseg.nn.conv_layers`).
      activation: applied last (`nn.relu` by default, None for none).
      norm: BatchNorm factory, e.g. `functools.partial(nn.BatchNorm, momentum=0.9997)`.
      bn_scale_init: e.g. zeros for the last BN of a residual branch.
      dtype, param_dtype: compute and parameter dtypes.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    rate: int = 1
    padding: PaddingLike = "SAME"
    feature_group_count: int = 1
    activation: Activation = nn.relu
    norm: NormFactory = BatchNorm
    bn_scale_init: Callable[..., jax.Array] = nn.initializers.ones
    conv: ConvFactory = Conv2D
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """`[B, H, W, C]` -> `[B, H', W', features]`; BN uses batch statistics when `train`."""
        y = self.conv(
            self.features,
            kernel_size=self.kernel_size,
            stride=self.stride,
            rate=self.rate,
            padding=self.padding,
            feature_group_count=self.feature_group_count,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv",
        )(x)
        y = self.norm(
            use_running_average=not train,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            scale_init=self.bn_scale_init,
            name="bn",
        )(y)
        return y if self.activation is None else self.activation(y)
