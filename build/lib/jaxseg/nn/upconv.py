"""U-Net's 2x2 stride-2 up-convolution, computed as a 1x1 conv and depth-to-space."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from einops import rearrange

from jaxseg.nn.conv import Initializer
from jaxseg.ops import depth_to_space


class UpConv2x2(nn.Module):
    """Transposed conv with a 2x2 kernel and stride 2: `[B, H, W, C]` -> `[B, 2H, 2W, features]`.

    The windows of a stride-2 2x2 transposed conv do not overlap, so each output 2x2 patch is
    `x[i, j] @ kernel[dy, dx]`: one 1x1 conv to `4 * features` channels then depth-to-space,
    which XLA runs as a plain matmul (fast everywhere, unlike generic transposed convs). The
    parameter is the usual `[2, 2, C, features]` kernel (HWIO, as `jaxseg.ops.conv_transpose2d`
    with padding 'VALID' takes it) plus a `[features]` bias.

    Attributes:
      features: output channels.
      dtype, param_dtype: compute and parameter dtypes.
    """

    features: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Initializer = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (2, 2, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        # depth_to_space reads channel (dy * 2 + dx) * features + o as pixel (dy, dx), channel o.
        matrix = rearrange(jnp.asarray(kernel, self.dtype), "dy dx c o -> c (dy dx o)")
        y = jnp.einsum("bhwc,cn->bhwn", jnp.asarray(x, self.dtype), matrix)
        y = depth_to_space(y, 2)
        return y + jnp.asarray(bias, self.dtype)
