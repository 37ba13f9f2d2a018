"""Pretrained backbone weights from Keras applications and torchvision state dicts.

imported = from_keras("resnet50_notop.h5", "resnet50")   # or from_torch(".safetensors")
model = DeepLabV3(backbone=functools.partial(ResNet50, **imported.backbone_kwargs))
variables = load_backbone(model.init(rng, images), imported)
"""

from jaxseg.weights.convert import ImportedWeights
from jaxseg.weights.keras import from_keras
from jaxseg.weights.load import load_backbone, load_pretrained
from jaxseg.weights.torch import from_torch

__all__ = ["ImportedWeights", "from_keras", "from_torch", "load_backbone", "load_pretrained"]
