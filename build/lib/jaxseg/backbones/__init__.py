"""Backbones: Flax modules mapping images `[B, H, W, 3]` to a dict of named feature maps.

Every backbone returns `stride{s}` keys (the deepest map at stride s, e.g. `stride4` for the
DeepLab v3+ decoder) and `out`, plus its own named stages.
"""

from jaxseg.backbones.atrous_schedule import atrous_schedule, check_output_stride
from jaxseg.backbones.mobilenet import InvertedResidual, MobileNetV2
from jaxseg.backbones.resnet import Bottleneck, ResNet, ResNet50, ResNet101
from jaxseg.backbones.vgg import VGG16
from jaxseg.backbones.xception import Xception65, XceptionBlock

__all__ = [
    "VGG16",
    "Bottleneck",
    "InvertedResidual",
    "MobileNetV2",
    "ResNet",
    "ResNet50",
    "ResNet101",
    "Xception65",
    "XceptionBlock",
    "atrous_schedule",
    "check_output_stride",
]
