"""Released segmentation models, loaded exactly: `jaxseg.zoo.load(name)` -> a `Segmenter`.

    from jaxseg import zoo
    seg = zoo.load("xception65_coco_voc_trainaug")   # downloads once into the cache
    labels = seg(image)                               # uint8 [H, W, 3] -> int32 [H, W]

`jaxseg-zoo list` prints the table. Each release format registers its entries in
`jaxseg.zoo.registry` from its own module; importing the module is what adds them. Nothing
here needs TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

# Importing a release module (caffe_models, deeplab_models) registers its entries in `ENTRIES`.
from jaxseg.zoo import caffe_models, deeplab_models, download, evaluate, training
from jaxseg.zoo.download import cache_dir
from jaxseg.zoo.loading import fetch, load
from jaxseg.zoo.registry import ENTRIES, Published, ZooEntry, entry, local_file


def backbone_weights(name: str, checkpoint: str | Path | None = None):
    """The backbone variables of a DeepLab release (ImageNet backbones included).

    Returns a `jaxseg.weights.ImportedWeights` for `DeepLabArch.backbone_factory()` of the
    entry (pass it to `jaxseg.weights.load_backbone`).
    """
    return training.backbone_weights(name, checkpoint)


__all__ = [
    "ENTRIES",
    "Published",
    "ZooEntry",
    "backbone_weights",
    "caffe_models",
    "cache_dir",
    "deeplab_models",
    "download",
    "entry",
    "evaluate",
    "fetch",
    "load",
    "local_file",
    "training",
]
