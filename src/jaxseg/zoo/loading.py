"""Loading a released model: the entry's file (a local copy or the cached download) -> Segmenter."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxseg.segmenter import Segmenter
from jaxseg.zoo import download
from jaxseg.zoo.download import cache_dir
from jaxseg.zoo.registry import entry, local_file


def fetch(name: str) -> Path:
    """The cached download of entry `name`, downloading it first if needed."""
    item = entry(name)
    return download.download(item.urls, cache_dir() / "downloads" / item.filename, item.size)


def load(
    name: str,
    checkpoint: str | Path | None = None,
    output_stride: int | None = None,
    crop_size: int | tuple[int, int] | None = None,
    *,
    crf: bool | Mapping[str, float] = False,
    **options: Any,
) -> Segmenter:
    """A `Segmenter` running the released model `name` as its authors evaluated it.

    Args:
      name: a zoo entry (`jaxseg-zoo list`).
      checkpoint: a local copy instead of the download: for the DeepLab releases the
        checkpoint prefix (`.../model.ckpt`), the extracted folder or the `.tar.gz`.
      output_stride: overrides the entry's evaluation output stride (8 or 16 for DeepLab).
      crop_size: overrides the entry's evaluation canvas (513 for VOC).
      crf: refine with the dense CRF: True for the settings published with the release
        (`ZooEntry.crf`), or a dict of `jaxseg.crf.dense_crf` keyword arguments.
      **options: other `Segmenter` options: `scales`, `flip` (the TF DeepLab releases apply
        them by the official multi-scale protocol), `batch_size`, ...

    Without `checkpoint` the release is downloaded into the cache (`$JAXSEG_CACHE`, else
    `~/.cache/jaxseg`) once, and converted once.

    Raises:
      KeyError naming the known models; ValueError for `crf=True` on a release published
      without CRF settings.
    """
    item = entry(name)
    if crf is True:
        if item.crf is None:
            raise ValueError(
                f"{name} was not published with dense-CRF settings: pass the CRF parameters "
                "as a dict, or drop crf"
            )
        crf = item.crf
    path = local_file(checkpoint) if checkpoint is not None else fetch(name)
    segmenter = item.load(path, output_stride=output_stride, crop_size=crop_size)
    if crf:
        options["crf"] = crf
    return segmenter.replace(**options) if options else segmenter
