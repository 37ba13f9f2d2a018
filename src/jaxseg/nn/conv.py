"""A Flax convolution on `jaxseg.ops.atrous_conv2d`, with the padding conventions backbones need."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.ops import atrous_conv2d

Initializer = Callable[..., jax.Array]
# A module factory with `Conv2D`'s fields (the class, or a functools.partial of it).
ConvFactory = Callable[..., nn.Module]
# "FIXED" pads `k_eff - 1` split (before = half rounded down) whatever the input size: the
# convention of PyTorch (`padding=k // 2`), Keras' `ZeroPadding2D` + VALID and TF-slim's
# `fixed_padding`. TensorFlow's "SAME" instead depends on the input size and stride, and puts
# the odd pixel after, so a stride-2 layer sees a shifted grid; ported weights need "FIXED".
PaddingLike = str | Sequence[tuple[int, int]]


def fixed_padding(kernel_size: int, rate: int = 1) -> tuple[tuple[int, int], tuple[int, int]]:
    """Input-size-independent padding of an effective `k + (k - 1)(rate - 1)` kernel.

    Returns:
      `((top, bottom), (left, right))` with `top = (k_eff - 1) // 2`, `bottom = k_eff - 1 - top`.
    """
    k_eff = kernel_size + (kernel_size - 1) * (rate - 1)
    before = (k_eff - 1) // 2
    pair = (before, k_eff - 1 - before)
    return pair, pair


class Conv2D(nn.Module):
    """Square-kernel (atrous) convolution, NHWC in and out, HWIO kernel named `kernel`.

    Attributes:
      features: output channels O.
      kernel_size: k (square).
      stride: an int >= 1 (must be 1 when `rate > 1`).
      rate: atrous rate (dilation) >= 1.
      padding: 'SAME' (TensorFlow), 'VALID', 'FIXED' (PyTorch/Keras-port, see module comment)
        or explicit `((top, bottom), (left, right))`.
      feature_group_count: C for a depthwise conv (kernel `[k, k, 1, O]`, O a multiple of C).
      use_bias: add a learned bias (off before a BatchNorm, which cancels it).
      op: the convolution, `jaxseg.ops.atrous_conv2d` (the reference) or a function with its
        signature and result, e.g. `jaxseg.ops.cpu.atrous_conv2d`; bind it with
        `functools.partial(Conv2D, op=...)` (see `jaxseg.nn.conv_layers`).
      dtype: compute dtype (input and kernel are cast to it), e.g. `jnp.bfloat16`.
      param_dtype: dtype of the stored kernel and bias.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    rate: int = 1
    padding: PaddingLike = "SAME"
    feature_group_count: int = 1
    use_bias: bool = True
    op: Callable[..., jax.Array] = atrous_conv2d
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Initializer = nn.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """`[B, H, W, C]` -> `[B, H', W', features]` in `dtype`."""
        in_features = x.shape[-1]
        if in_features % self.feature_group_count:
            raise ValueError(
                f"{self.name}: input channels ({in_features}) must be divisible by "
                f"feature_group_count={self.feature_group_count}"
            )
        kernel_shape = (
            self.kernel_size,
            self.kernel_size,
            in_features // self.feature_group_count,
            self.features,
        )
        kernel = self.param("kernel", self.kernel_init, kernel_shape, self.param_dtype)
        padding = self.padding
        if isinstance(padding, str) and padding.upper() == "FIXED":
            padding = fixed_padding(self.kernel_size, self.rate)
        y = self.op(
            jnp.asarray(x, self.dtype),
            kernel,
            rate=self.rate,
            stride=self.stride,
            padding=padding,
            feature_group_count=self.feature_group_count,
        )
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            y = y + jnp.asarray(bias, self.dtype)
        return y
