"""Small Flax modules built on `jaxseg.ops`: convs, BN units, ASPP, decoders."""

from jaxseg.nn.aspp import ASPP, ASPPL
from jaxseg.nn.conv import Conv2D, ConvFactory, fixed_padding
from jaxseg.nn.conv_bn import BatchNorm, ConvBN
from jaxseg.nn.decoder import DeepLabV3PlusDecoder
from jaxseg.nn.layers import LAYER_FORMS, ConvLayers, conv_layers
from jaxseg.nn.separable import SeparableConvBN
from jaxseg.nn.upconv import UpConv2x2

__all__ = [
    "ASPP",
    "ASPPL",
    "BatchNorm",
    "Conv2D",
    "ConvBN",
    "ConvFactory",
    "ConvLayers",
    "DeepLabV3PlusDecoder",
    "LAYER_FORMS",
    "SeparableConvBN",
    "UpConv2x2",
    "conv_layers",
    "fixed_padding",
]
