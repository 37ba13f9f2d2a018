"""Backbones: Flax modules mapping images `[B, H, W, 3]` to a dict of named feature maps.

Every backbone returns `stride{s}` keys (the deepest map at stride s, e.g. `stride4` for the
DeepLab v3+ decoder) and `out`, plus its own named stages.
"""

from jaxseg.backbones.atrous_schedule import atrous_schedule, check_output_stride
from jaxseg.backbones.mobilenet import InvertedResidual, MobileNetV2
from jaxseg.backbones.resnet import Bottleneck, ResNet, ResNet50, ResNet101
from jaxseg.backbones.vgg import VGG16
from jaxseg.backbones.xception import Xception41, Xception65, Xception71, XceptionBlock

# The one name table of the backbones that take `output_stride` (DeepLab v2-v3+): configs
# (`model.backbone`), models (`backbone="resnet101"`) and the TF-slim converter (DeepLab's
# `model_variant`s map onto these names) all resolve names here, so a new backbone is added in
# this table only. (FCN, SegNet and DeepLab v1 are VGG16 by definition.)
BACKBONES = {
    "resnet50": ResNet50,
    "resnet101": ResNet101,
    "xception41": Xception41,
    "xception65": Xception65,
    "xception71": Xception71,
    "mobilenetv2": MobileNetV2,
}

__all__ = [
    "BACKBONES",
    "VGG16",
    "Bottleneck",
    "InvertedResidual",
    "MobileNetV2",
    "ResNet",
    "ResNet50",
    "ResNet101",
    "Xception41",
    "Xception65",
    "Xception71",
    "XceptionBlock",
    "atrous_schedule",
    "check_output_stride",
]
