"""Segmentation models: `model.apply(variables, images [B, H, W, 3], train=...)` -> float32
logits `[B, H, W, num_classes]` (UNet VALID: smaller, see `unet_valid_output_size`).

BatchNorm statistics live in the `batch_stats` collection (pass `mutable=["batch_stats"]` when
training); dropout draws from the rng named "dropout". `dtype` sets the compute dtype (e.g.
`jnp.bfloat16`), `param_dtype` the stored one. Each model checks its input (rank, 3 channels,
`min_input_size`) and raises a ValueError naming the problem.
"""

from jaxseg.models.deeplab_v1 import DeepLabV1
from jaxseg.models.deeplab_v2 import DeepLabV2
from jaxseg.models.deeplab_v3 import DeepLabV3
from jaxseg.models.deeplab_v3plus import DeepLabV3Plus
from jaxseg.models.fcn import FCN8s, FCN16s, FCN32s
from jaxseg.models.patch_classifier import FullyConvolutionalPatchClassifier, PatchClassifier
from jaxseg.models.segnet import SegNet
from jaxseg.models.unet import UNet, unet_valid_input_size, unet_valid_output_size

__all__ = [
    "FCN8s",
    "FCN16s",
    "FCN32s",
    "DeepLabV1",
    "DeepLabV2",
    "DeepLabV3",
    "DeepLabV3Plus",
    "FullyConvolutionalPatchClassifier",
    "PatchClassifier",
    "SegNet",
    "UNet",
    "unet_valid_input_size",
    "unet_valid_output_size",
]
