"""A classifier's fully connected layer as a convolution (FCN's "convolutionalization")."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxseg.ops._checks import check_rank, size_pair


def fc_to_conv(dense_kernel: jax.Array, input_hw: tuple[int, int]) -> jax.Array:
    """Reshapes a dense kernel that read a flattened NHWC map into an equivalent conv kernel.

    A dense layer on `features.reshape(B, h * w * c)` (row-major h, w, c, as Flax/Keras flatten
    NHWC) equals a VALID conv with the returned kernel on the `[B, h, w, c]` map; on a larger
    map the conv slides the classifier, e.g. VGG16 fc6 on 12x12 gives 6x6 scores.
    (Caffe/PyTorch flatten NCHW, i.e. c, h, w order: transpose those kernels first.)

    Args:
      dense_kernel: `[h * w * c, n]`.
      input_hw: `(h, w)` of the map the dense layer was trained on (7x7 for VGG16 fc6).

    Returns:
      `[h, w, c, n]` (HWIO), same dtype.
    """
    check_rank(dense_kernel, 2, "dense_kernel", "[h * w * c, n]")
    h, w = size_pair(input_hw, "input_hw")
    features, n = dense_kernel.shape
    if features % (h * w):
        raise ValueError(
            f"dense_kernel input size ({features}) must be divisible by h * w = {h * w} "
            f"(input_hw={input_hw})"
        )
    return jnp.reshape(dense_kernel, (h, w, features // (h * w), n))
