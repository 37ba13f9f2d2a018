"""TFDS builder ``segmentation_folder``: a user's folder of images and masks (``folder:DIR``).

:mod:`jaxseg.data.builders.folder_layout` describes the folder (images/, masks/, classes.txt or
classes.csv, train.txt/val.txt) and finds the pairs. The builder reads each pair once on the host
(masks by Pillow, never by TensorFlow: a palette PNG decoded by TF gives grey levels, not class
indices), maps the masks to training labels (``uint8``, 255 = ignore) and stores the examples in
the TFDS data folder; training then streams them like VOC.

Features: ``image`` (the file's own JPEG/PNG bytes, other formats and EXIF-rotated photos
re-encoded as PNG; ``uint8 [H, W, 3]``), ``label`` (PNG ``uint8 [H, W, 1]``, classes
``0..num_classes-1``, 255 = ignore), ``file_name`` (the stem). Splits ``train``, ``validation``.
The class names, count and palette are stored in the dataset's metadata.

Each folder and option set is its own builder config, named after the folder and a digest of
its files (:func:`~jaxseg.data.builders.folder_layout.fingerprint`): the first run builds it,
later runs reuse it, and a run after the folder changed builds it again.

    builder, info = load("folder:data/my_set")      # builds once, then reuses
"""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxseg import images, viz
from jaxseg.data import label_tables as lt
from jaxseg.data.builders import example_io, folder_layout, readers
from jaxseg.data.builders.folder_layout import FolderSpec, Layout, is_folder_spec, parse_spec
from jaxseg.data.datasets import DatasetInfo
from jaxseg.data.errors import DataError

__all__ = ["DataError", "SegmentationFolder", "configure", "is_folder_spec", "load", "parse_spec"]

NAME = "segmentation_folder"
_INDEX_MODES = ("P", "L", "1", "I", "I;16")


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
    """One folder with its options (see :class:`~jaxseg.data.builders.folder_layout.FolderSpec`)."""

    root: str = ""
    reduce_zero_label: bool = False
    min_image_size: int = 16

    @property
    def spec(self) -> FolderSpec:
        return FolderSpec(Path(self.root), self.reduce_zero_label, self.min_image_size)


def read_image(path: Path, min_size: int) -> tuple[bytes, tuple[int, int]]:
    """Bytes to store for an image file and its ``(height, width)`` as displayed.

    JPEG and PNG RGB files are stored unchanged; other formats, modes and photos with an EXIF
    rotation are decoded, turned upright (masks are drawn on the upright photo) and stored as PNG.
    """
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            orientation = images.exif_orientation(image)
            if image.format in ("JPEG", "PNG") and image.mode == "RGB" and orientation == 1:
                width, height = image.size
            else:
                upright = images.upright(image).convert("RGB")
                width, height = upright.size
                buffer = io.BytesIO()
                upright.save(buffer, format="PNG", compress_level=3)
                data = buffer.getvalue()
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot decode image ({err}); replace or remove it.") from err
    if min(height, width) < min_size:
        raise DataError(
            f"{path}: {height}x{width} (HxW) is smaller than min_image_size={min_size}; remove "
            f"it, or lower the limit: folder:DIR,min_image_size=N (0 turns the check off)."
        )
    return data, (height, width)


def _index_mask(image: Image.Image, path: Path) -> np.ndarray:
    if image.mode not in _INDEX_MODES:
        raise DataError(
            f"{path}: mask has mode {image.mode!r}, a colour image. Index masks are palette or "
            "greyscale PNGs whose values are classes; for colour masks write classes.csv "
            "(name,r,g,b per class) next to images/ and masks/."
        )
    mask = np.asarray(image)
    if mask.dtype != np.uint8 and (mask.min() < 0 or mask.max() > 255):
        raise DataError(f"{path}: mask values {mask.min()}..{mask.max()} are not in 0..255")
    return mask.astype(np.uint8)


def read_mask(path: Path, layout: Layout) -> tuple[np.ndarray, list[int] | None]:
    """Training labels ``uint8 [H, W]`` (255 = ignore) of a mask file, and its PNG palette
    (flat RGB list) when it is a palette image."""
    try:
        with Image.open(path) as image:
            image.load()
            palette = image.getpalette() if image.mode == "P" else None
            if layout.colours is not None:
                mask = layout.colours.lookup(np.asarray(image.convert("RGB")), path)
            else:
                mask = _index_mask(image, path)
    except (OSError, SyntaxError) as err:
        raise DataError(f"{path}: cannot decode mask ({err}); replace or remove it.") from err
    if layout.spec.reduce_zero_label:
        mask = np.where((mask == 0) | (mask == 255), 255, mask - 1).astype(np.uint8)
    names = _trained_names(layout)
    limit = len(names) if names is not None else lt.IGNORE_LABEL
    values = np.unique(mask)
    bad = values[(values >= limit) & (values != lt.IGNORE_LABEL)]
    if bad.size:
        source = "classes.csv" if layout.colours is not None else "classes.txt"
        shift = " (after reduce_zero_label: value - 1)" if layout.spec.reduce_zero_label else ""
        raise DataError(
            f"{path}: mask values{shift} {bad.tolist()[:8]} are not classes: {source} names "
            f"{limit} (0..{limit - 1}), 255 = ignore. Add the missing names to {source}."
        )
    return mask, palette


def _trained_names(layout: Layout) -> tuple[str, ...] | None:
    if layout.class_names is None:
        return None
    return layout.class_names[1:] if layout.spec.reduce_zero_label else layout.class_names


def _palette(layout: Layout, num_classes: int, mask_palette: list[int] | None) -> np.ndarray:
    """Class colours: classes.csv's, else the masks' own PNG palette, else VOC's colour map."""
    if layout.colours is not None:
        colours = layout.colours.colours
        return colours[1:] if layout.spec.reduce_zero_label else colours
    if mask_palette is not None:
        table = np.asarray(mask_palette, np.uint8).reshape(-1, 3)
        shift = 1 if layout.spec.reduce_zero_label else 0
        if len(table) >= num_classes + shift:
            return table[shift : num_classes + shift]
    return viz.voc_palette(num_classes)


class SegmentationFolder(tfds.core.GeneratorBasedBuilder):
    """Images and masks of one folder (config made by :func:`load`, one per folder state)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "images/ + masks/ folders, index or colour masks."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="A folder of images and segmentation masks (jaxseg folder:DIR).",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local
        layout = folder_layout.scan(self.builder_config.spec)
        stems = list(layout.pairs)
        # Masks first (small once encoded): the class count of unnamed index masks and the
        # palette must be in the metadata before TFDS writes it.
        read = example_io.parallel_map(lambda s: read_mask(layout.pairs[s][1], layout), stems)
        masks, first_palette, top = {}, None, -1
        for stem, (mask, palette) in zip(stems, read, strict=True):
            masks[stem] = (readers.encode_png(mask), mask.shape)
            first_palette = first_palette if first_palette is not None else palette
            valid = mask[mask != lt.IGNORE_LABEL]
            top = max(top, int(valid.max()) if valid.size else -1)
        names = _trained_names(layout)
        if names is None:
            if top < 0:
                raise DataError(f"{layout.spec.root}: every mask pixel is ignored (255)")
            names = tuple(f"class_{k}" for k in range(top + 1))
        metadata = self.info.metadata
        metadata["class_names"] = list(names)
        metadata["palette"] = _palette(layout, len(names), first_palette).tolist()
        metadata["root"] = str(layout.spec.root)
        metadata["split_source"] = layout.split_source
        return {
            split: self._generate_examples(layout, split_stems, masks)
            for split, split_stems in layout.splits.items()
        }

    def _generate_examples(self, layout: Layout, stems: list[str], masks: dict):
        def build(stem: str):
            image_path, mask_path = layout.pairs[stem]
            image, image_hw = read_image(image_path, layout.spec.min_image_size)
            label, mask_hw = masks[stem]
            if tuple(mask_hw) != tuple(image_hw):
                raise DataError(
                    f"{mask_path}: mask is {mask_hw[0]}x{mask_hw[1]} (HxW) but its image "
                    f"{image_path} is {image_hw[0]}x{image_hw[1]} (upright); they must match."
                )
            return stem, {"image": image, "label": label, "file_name": stem}

        yield from example_io.parallel_map(build, stems)


def _config_name(spec: FolderSpec, digest: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", spec.root.name.lower()).strip("_")[:40] or "folder"
    return f"{base}_{digest[:12]}"


def dataset_info(builder: SegmentationFolder) -> DatasetInfo:
    """Classes, names and palette of a built folder dataset."""
    metadata = builder.info.metadata
    names = tuple(metadata["class_names"])
    return DatasetInfo(
        name=NAME,
        num_classes=len(names),
        class_names=names,
        palette=np.asarray(metadata["palette"], np.uint8).reshape(len(names), 3),
        label_table=lt.identity_table(len(names)),
        notes=f"{metadata['root']}; split {metadata['split_source']}.",
    )


_LOADED: dict[tuple[str, str | None], tuple[SegmentationFolder, DatasetInfo]] = {}


def load(dataset: str, data_dir: str | None = None) -> tuple[SegmentationFolder, DatasetInfo]:
    """The prepared builder and metadata of ``folder:DIR[,options]``, built on first use.

    Args:
      dataset: ``"folder:DIR"``, optionally ``,reduce_zero_label`` and ``,min_image_size=N``.
      data_dir: TFDS data folder for the built dataset (None: TFDS' default).

    Raises:
      DataError: a problem with the folder's files, naming the file.
    """
    spec = parse_spec(dataset)
    digest = folder_layout.fingerprint(spec)
    key = (digest, data_dir or None)
    if key not in _LOADED:
        config = FolderConfig(
            name=_config_name(spec, digest),
            description=f"{spec.root}",
            root=str(spec.root),
            reduce_zero_label=spec.reduce_zero_label,
            min_image_size=spec.min_image_size,
        )
        builder = SegmentationFolder(config=config, data_dir=data_dir or None)
        if not builder.is_prepared():
            print(f"Building {spec.root} into {builder.data_dir} (once per version of the folder)")
            builder.download_and_prepare()
        info = dataset_info(builder)
        splits = builder.info.splits
        print(
            f"{spec.root}: {splits['train'].num_examples} train / "
            f"{splits['validation'].num_examples} validation images, {info.num_classes} classes "
            f"({', '.join(info.class_names[:8])}{', ...' if info.num_classes > 8 else ''}); "
            f"split {builder.info.metadata['split_source']}",
            flush=True,
        )
        _LOADED[key] = (builder, info)
    return _LOADED[key]


def configure(config: Any, num_classes_given: bool) -> DatasetInfo:
    """Sets ``config.num_classes`` from the folder ``config.dataset`` names (built if needed).

    Args:
      config: an experiment config with ``dataset``, ``data_dir`` and ``num_classes``.
      num_classes_given: the command line set ``--config.num_classes``; it must then agree.

    Raises:
      DataError: the folder's files, a ``--config.num_classes`` the folder contradicts, or
        per-class ``config.class_weights`` of another length.
    """
    _, info = load(config.dataset, config.data_dir or None)
    if num_classes_given and config.num_classes != info.num_classes:
        raise DataError(
            f"--config.num_classes={config.num_classes} but {config.dataset} has "
            f"{info.num_classes} classes ({', '.join(info.class_names[:8])}"
            f"{', ...' if info.num_classes > 8 else ''}); leave --config.num_classes out, the "
            "folder sets it."
        )
    config.num_classes = info.num_classes
    weights = tuple(config.get("class_weights", ()) or ())
    if weights and len(weights) != info.num_classes:
        raise DataError(
            f"config.class_weights has {len(weights)} entries (the paper dataset's) but "
            f"{config.dataset} has {info.num_classes} classes: add --config.class_weights='()' "
            f"or give {info.num_classes} weights."
        )
    return info
