"""Palettes, colour masks, overlays and atomic image writes.

Everything here is NumPy on the host: pictures are for people and files, not for the
accelerator. Label maps are integer class indices `[H, W]` with 255 = ignore (as in the data
pipeline); images are uint8 RGB `[H, W, 3]`.

This module is the home of the dataset palettes: other modules (dataset metadata, training
logs) should import them from here, so that every colour has one definition.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

IGNORE_LABEL = 255
# VOC paints "void" (label 255, object boundaries) in this colour: it is what the bit-interleaved
# VOC colormap gives index 255, so VOC's own palette PNGs and ours agree for every index.
IGNORE_COLOR = (224, 224, 192)


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """PASCAL VOC colormap: bits of the class index interleaved into R, G, B. -> uint8 [N, 3].

    Bit k of the index (k = 0, 1, 2 for R, G, B, repeating) sets bit `7 - k // 3` of that colour
    channel, so 0 -> black, 1 -> (128, 0, 0), 2 -> (0, 128, 0), 3 -> (128, 128, 0), ...
    """
    indices = np.arange(num_colors)
    palette = np.zeros((num_colors, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            index_bit = (indices >> (3 * bit + channel)) & 1
            palette[:, channel] |= index_bit << (7 - bit)
    return palette.astype(np.uint8)


# Cityscapes, the 19 evaluation classes in train-id order (road, sidewalk, building, wall, fence,
# pole, traffic light, traffic sign, vegetation, terrain, sky, person, rider, car, truck, bus,
# train, motorcycle, bicycle), in the official benchmark colours.
CITYSCAPES_PALETTE = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ],
    dtype=np.uint8,
)

# CamVid as SegNet benchmarks it, 11 classes in SegNet's order (sky, building, pole, road,
# pavement, tree, sign/symbol, fence, car, pedestrian, bicyclist) in SegNet's colours; SegNet's
# 12th "unlabelled" class is the ignore label here.
CAMVID_PALETTE = np.array(
    [
        (128, 128, 128),
        (128, 0, 0),
        (192, 192, 128),
        (128, 64, 128),
        (60, 40, 222),
        (128, 128, 0),
        (192, 128, 128),
        (64, 64, 128),
        (64, 0, 128),
        (64, 64, 0),
        (0, 128, 192),
    ],
    dtype=np.uint8,
)

_PALETTES = {
    "voc": lambda: voc_palette(21),
    "cityscapes": lambda: CITYSCAPES_PALETTE,
    "camvid": lambda: CAMVID_PALETTE,
}
_ALIASES = {
    "pascal_voc": "voc",
    "voc2012": "voc",
    "voc_segmentation": "voc",
    "voc_aug": "voc",
    "sbd": "voc",
}


def palette_for(name: str) -> np.ndarray:
    """Palette of a dataset by name: uint8 [N, 3] for its N classes.

    Names: 'voc' (also 'voc_segmentation', TFDS configs such as 'voc_segmentation/2012_aug'),
    'cityscapes', 'camvid'; case-insensitive. Raises KeyError for other names;
    `voc_palette(256)` is a good generic fallback (distinct colours for every index).
    """
    key = name.split("/")[0].split(":")[0].lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _PALETTES:
        raise KeyError(f"no palette for dataset {name!r}; known: {sorted(_PALETTES)}")
    return np.array(_PALETTES[key](), dtype=np.uint8)


def _as_palette(palette: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3 or len(palette) > 256:
        raise ValueError(f"palette must be [N <= 256, 3], got {palette.shape}")
    return palette.astype(np.uint8)


def colorize(
    label: np.ndarray,
    palette: np.ndarray,
    *,
    ignore_label: int = IGNORE_LABEL,
    ignore_color: Sequence[int] = IGNORE_COLOR,
) -> np.ndarray:
    """Colour a label map: label int [H, W] -> uint8 [H, W, 3].

    Class k gets `palette[k]`; `ignore_label` gets `ignore_color`. A label that is neither a
    palette index nor the ignore label raises ValueError (it means the palette does not belong
    to this dataset).
    """
    palette = _as_palette(palette)
    label = np.asarray(label)
    ignored = label == ignore_label
    bad = ~ignored & ((label < 0) | (label >= len(palette)))
    if bad.any():
        raise ValueError(
            f"labels {np.unique(label[bad])[:8].tolist()} are outside the palette "
            f"(size {len(palette)}) and are not the ignore label {ignore_label}"
        )
    lut = np.concatenate([palette, np.asarray([ignore_color], dtype=np.uint8)])
    return lut[np.where(ignored, len(palette), label)]


def overlay(
    image: np.ndarray,
    label: np.ndarray,
    palette: np.ndarray,
    alpha: float = 0.5,
    *,
    ignore_label: int = IGNORE_LABEL,
) -> np.ndarray:
    """Blend class colours over an image: uint8 [H, W, 3], int [H, W] -> uint8 [H, W, 3].

    Each labelled pixel becomes `round((1 - alpha) * image + alpha * palette[label])`; ignored
    pixels show the image unchanged, so "unknown" never looks like a class.
    """
    image = np.asarray(image)
    label = np.asarray(label)
    if image.shape[:2] != label.shape or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image [H, W, 3] and label [H, W] disagree: {image.shape}, {label.shape}")
    colors = colorize(label, palette, ignore_label=ignore_label).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
    blended = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return np.where((label == ignore_label)[..., None], image.astype(np.uint8), blended)


def side_by_side(
    image: np.ndarray,
    ground_truth: np.ndarray | None,
    prediction: np.ndarray,
    palette: np.ndarray,
    *,
    gap: int = 4,
    gap_color: Sequence[int] = (255, 255, 255),
    ignore_label: int = IGNORE_LABEL,
) -> np.ndarray:
    """Figure `image | ground truth | prediction` -> uint8 [H, 3 W + 2 gap, 3].

    Label maps are colourised with `palette`; with `ground_truth=None` the figure is
    `image | prediction` ([H, 2 W + gap, 3]), for images without labels.
    """
    image = np.asarray(image, dtype=np.uint8)
    panels = [image]
    for label in (ground_truth, prediction):
        if label is None:
            continue
        if np.shape(label) != image.shape[:2]:
            raise ValueError(f"label {np.shape(label)} does not match image {image.shape[:2]}")
        panels.append(colorize(label, palette, ignore_label=ignore_label))
    spacer = np.empty((image.shape[0], gap, 3), dtype=np.uint8)
    spacer[:] = np.asarray(gap_color, dtype=np.uint8)
    pieces = [panels[0]]
    for panel in panels[1:]:
        pieces += [spacer, panel]
    return np.concatenate(pieces, axis=1)


def save_image(path: str | os.PathLike, image: Image.Image | np.ndarray, **save_kwargs) -> None:
    """Write an image atomically: a temp file in the same folder, then `os.replace`.

    A crash or error mid-write leaves no partial file at `path`; the format follows the suffix
    of `path` (`save_kwargs` go to `PIL.Image.save`, e.g. `quality=90` for JPEG).
    """
    path = Path(path)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise ValueError(f"unknown image suffix {path.suffix!r} in {path}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format=image_format, **save_kwargs)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_index_png(
    path: str | os.PathLike,
    label: np.ndarray,
    palette: np.ndarray,
    *,
    ignore_color: Sequence[int] = IGNORE_COLOR,
) -> None:
    """Save a label map int [H, W] as a palette ('P' mode) PNG, atomically.

    Pixel values are the class indices (what VOC's `SegmentationClass` PNGs hold, so the file
    reads back as labels with `np.asarray(Image.open(path))`) and viewers show the palette
    colours. Unused palette entries are black; entry 255 is `ignore_color`.
    """
    label = np.asarray(label)
    if label.ndim != 2 or label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"label must be [H, W] with values in 0..255, got {label.shape}")
    palette = _as_palette(palette)
    full = np.zeros((256, 3), dtype=np.uint8)
    full[: len(palette)] = palette
    full[IGNORE_LABEL] = np.asarray(ignore_color, dtype=np.uint8)
    # An 'L' image takes a palette in place and becomes 'P' without remapping its values.
    image = Image.fromarray(label.astype(np.uint8))
    image.putpalette(full.reshape(-1).tolist())
    save_image(path, image)
