"""Released segmentation models, loaded exactly: `jaxseg.zoo.load(name)` -> a `Segmenter`.

    from jaxseg import zoo
    seg = zoo.load("xception65_coco_voc_trainaug")   # downloads once into the cache
    labels = seg(image)                               # uint8 [H, W, 3] -> int32 [H, W]

`python -m jaxseg.zoo list` prints the table. Each release format registers its entries in
`jaxseg.zoo.registry` from its own module; importing the module is what adds them.
"""

from __future__ import annotations

from pathlib import Path

# Importing a release module (caffe_models, deeplab_models) registers its entries in `ENTRIES`.
from jaxseg.zoo import caffe_models, deeplab_models, download, protocol, training
from jaxseg.zoo.download import cache_dir
from jaxseg.zoo.registry import ENTRIES, Published, ZooEntry, entry, local_file


def fetch(name: str) -> Path:
    """The cached download of entry `name`, downloading it first if needed."""
    item = entry(name)
    return download.download(item.urls, cache_dir() / "downloads" / item.filename, item.size)


def load(
    name: str,
    checkpoint: str | Path | None = None,
    output_stride: int | None = None,
    crop_size: int | tuple[int, int] | None = None,
):
    """A `Segmenter` running the released model `name` as its authors evaluated it.

    Args:
      name: a zoo entry (`python -m jaxseg.zoo list`).
      checkpoint: a local copy instead of the download: for the DeepLab releases the
        checkpoint prefix (`.../model.ckpt`), the extracted folder or the `.tar.gz`.
      output_stride: overrides the entry's evaluation output stride (8 or 16 for DeepLab).
      crop_size: overrides the entry's evaluation canvas (513 for VOC).

    Without `checkpoint` the release is downloaded into the cache (`$JAXSEG_CACHE`, else
    `~/.cache/jaxseg`) once, and converted once.
    """
    item = entry(name)
    path = local_file(checkpoint) if checkpoint is not None else fetch(name)
    return item.load(path, output_stride=output_stride, crop_size=crop_size)


def backbone_weights(name: str, checkpoint: str | Path | None = None):
    """The backbone variables of a DeepLab release (ImageNet backbones included).

    Returns a `jaxseg.weights.ImportedWeights` for `DeepLabArch.backbone_factory()` of the
    entry (pass it to `jaxseg.weights.load_backbone`).
    """
    if name not in deeplab_models.RELEASES:
        raise KeyError(
            f"{name!r} is not a DeepLab TF-slim release; known: "
            f"{', '.join(sorted(deeplab_models.RELEASES))}"
        )
    path = local_file(checkpoint) if checkpoint is not None else fetch(name)
    return deeplab_models.load_backbone_weights(deeplab_models.RELEASES[name], path)


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
    "fetch",
    "load",
    "protocol",
    "training",
]
