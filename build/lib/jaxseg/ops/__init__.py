"""Pure array ops for segmentation: NHWC activations, HWIO kernels, no Flax.

Every function is jit-able and differentiable (where that makes sense) and checks its
arguments' static shapes and dtypes at trace time, raising `ValueError` naming the argument.
"""

from jaxseg.ops.atrous import atrous_conv2d, separable_atrous_conv2d
from jaxseg.ops.crop import center_crop, crop_like
from jaxseg.ops.fc import fc_to_conv
from jaxseg.ops.layout import depth_to_space, space_to_depth
from jaxseg.ops.pooling import max_pool2d, max_pool_with_argmax, max_unpool
from jaxseg.ops.resize import bilinear_resize_matrix, resize_bilinear, resize_nearest
from jaxseg.ops.transpose import bilinear_kernel, conv_transpose2d

__all__ = [
    "atrous_conv2d",
    "bilinear_kernel",
    "bilinear_resize_matrix",
    "center_crop",
    "conv_transpose2d",
    "crop_like",
    "depth_to_space",
    "fc_to_conv",
    "max_pool2d",
    "max_pool_with_argmax",
    "max_unpool",
    "resize_bilinear",
    "resize_nearest",
    "separable_atrous_conv2d",
    "space_to_depth",
]
