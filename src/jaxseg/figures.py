"""Evaluation pictures drawn with Pillow alone: titled panels with a class legend, overlays that
tint only the objects, a row-normalised confusion matrix and a per-class IoU bar chart.

Every function returns ``uint8 [H, W, 3]`` (what TensorBoard and ``viz.save_image`` take).
Colours of classes come from the dataset's palette; ignored pixels (255) are drawn in
``viz.IGNORE_COLOR`` and named "ignored" in legends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxseg import viz

WHITE = (255, 255, 255)
INK = (20, 20, 20)
GRID = (200, 200, 200)
_PAD = 8


# Names of `score_figures`' pictures, which share `predictions/step_<N>/` with the panels.
SCORE_FIGURES = ("confusion_matrix", "class_iou")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def picture_names(names: Sequence[bytes | str] | None, indices: Sequence[int]) -> list[str]:
    """File-name stems for the pictures of examples ``indices`` of a batch.

    Args:
      names: the batch's ``name`` entry (``[b]`` bytes or str, "" when unknown), or None.
      indices: the examples drawn.

    Returns:
      One stem per index: the image's own name with an image-file extension dropped and
      folders joined by "_" (``"2007_000032.jpg"`` -> ``"2007_000032"``, ``"a/b"`` -> ``"a_b"``),
      or the index itself where the dataset has no name; a repeated name, or one of the score
      figures' names written next to the panels, gets "_<index>".
    """
    stems, used = [], set(SCORE_FIGURES)
    for i in indices:
        name = names[i] if names is not None else ""
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        if name.lower().endswith(_IMAGE_SUFFIXES):
            name = name.rsplit(".", 1)[0]
        stem = name.replace("/", "_").replace("\\", "_").strip() or str(int(i))
        if stem in used:
            stem = f"{stem}_{int(i)}"
        used.add(stem)
        stems.append(stem)
    return stems


def _font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError):
        return ImageFont.load_default()


def _text_box(text: str, font) -> tuple[int, int]:
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(
        (0, 0), text, font=font
    )
    return right - left, bottom - top


def _upscale(array: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor (labels stay exact)."""
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1) if factor > 1 else array


def legend(
    classes: Sequence[int],
    class_names: Sequence[str],
    palette: np.ndarray,
    width: int,
    *,
    show_ignored: bool = False,
    ignore_color: Sequence[int] = viz.IGNORE_COLOR,
) -> np.ndarray:
    """Colour swatch + name for each class in ``classes``, in rows that fit ``width`` pixels.

    Returns:
      ``uint8 [h, width, 3]`` on white.
    """
    font = _font()
    entries = [(tuple(int(c) for c in palette[k]), str(class_names[k])) for k in classes]
    if show_ignored:
        entries.append((tuple(int(c) for c in ignore_color), "ignored"))
    swatch = 14
    line = max([swatch] + [_text_box(name, font)[1] for _, name in entries]) + 6
    rows, x, row = [[]], _PAD, 0
    for colour, name in entries:
        item = swatch + 4 + _text_box(name, font)[0] + 14
        if x + item > width - _PAD and rows[row]:
            rows.append([])
            row, x = row + 1, _PAD
        rows[row].append((x, colour, name))
        x += item
    figure = Image.new("RGB", (width, len(rows) * line + _PAD), WHITE)
    draw = ImageDraw.Draw(figure)
    for r, items in enumerate(rows):
        y = _PAD // 2 + r * line
        for x, colour, name in items:
            draw.rectangle([x, y, x + swatch, y + swatch], fill=colour, outline=INK)
            draw.text((x + swatch + 4, y), name, fill=INK, font=font)
    return np.asarray(figure)


def titled_panels(
    image: np.ndarray,
    label: np.ndarray | None,
    prediction: np.ndarray,
    palette: np.ndarray,
    class_names: Sequence[str],
    *,
    title: str = "",
    min_height: int = 240,
    ignore_label: int = viz.IGNORE_LABEL,
) -> np.ndarray:
    """``image | ground truth | prediction`` with a title over each panel and a legend of the
    classes present (in either map) below; panels are enlarged (nearest neighbour, integer
    factor) to at least ``min_height`` pixels.

    Args:
      image: ``uint8 [H, W, 3]``.
      label: ``int [H, W]`` ground truth (255 = ignored), or None for ``image | prediction``.
      prediction: ``int [H, W]``.
      title: a line above the panels (e.g. the image's name and step).

    Returns:
      ``uint8 [h, w, 3]``.
    """
    image = np.asarray(image, np.uint8)
    factor = max(1, math.ceil(min_height / image.shape[0]))
    panels = [("image", _upscale(image, factor))]
    maps = [("ground truth", label)] if label is not None else []
    maps.append(("prediction", prediction))
    present: set[int] = set()
    ignored = False
    for name, values in maps:
        values = np.asarray(values)
        colour = viz.colorize(values, palette, ignore_label=ignore_label)
        panels.append((name, _upscale(colour, factor)))
        present |= {int(v) for v in np.unique(values) if v != ignore_label}
        ignored |= bool((values == ignore_label).any())
    font = _font(16)
    title_height = _text_box("Ag", font)[1] + 10
    height, width = panels[0][1].shape[:2]
    total_width = len(panels) * width + (len(panels) + 1) * _PAD
    top = (title_height if title else 0) + _PAD
    canvas = Image.new("RGB", (total_width, top + title_height + height + _PAD), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((_PAD, _PAD // 2), title, fill=INK, font=font)
    for i, (name, panel) in enumerate(panels):
        x = _PAD + i * (width + _PAD)
        text_width = _text_box(name, font)[0]
        draw.text((x + (width - text_width) // 2, top), name, fill=INK, font=font)
        canvas.paste(Image.fromarray(panel), (x, top + title_height))
    key = legend(sorted(present), class_names, palette, total_width, show_ignored=ignored)
    return np.concatenate([np.asarray(canvas), key], axis=0)


def object_overlay(
    image: np.ndarray,
    label: np.ndarray,
    palette: np.ndarray,
    *,
    alpha: float = 0.55,
    background: int | None = 0,
    ignore_label: int = viz.IGNORE_LABEL,
) -> np.ndarray:
    """The photo with only the objects tinted: pixels of ``background`` (and ignored ones) keep
    the photo's own colours, every other class is blended with its palette colour.

    Args:
      image: ``uint8 [H, W, 3]``; label: ``int [H, W]``.
      background: the class left untinted (None: tint every class).

    Returns:
      ``uint8 [H, W, 3]``.
    """
    tinted = viz.overlay(image, label, palette, alpha=alpha, ignore_label=ignore_label)
    if background is None:
        return tinted
    keep = (np.asarray(label) == background)[..., None]
    return np.where(keep, np.asarray(image, np.uint8), tinted)


def with_legend(
    picture: np.ndarray,
    label: np.ndarray,
    palette: np.ndarray,
    class_names: Sequence[str],
    *,
    min_width: int = 320,
    ignore_label: int = viz.IGNORE_LABEL,
) -> np.ndarray:
    """``picture`` with a legend of the classes present in ``label`` below it.

    The legend is at least ``min_width`` pixels wide so that names stay readable under small
    images; a narrower picture is padded on the right with white.

    Args:
      picture: ``uint8 [H, W, 3]`` (e.g. an overlay); label: ``int [h, w]`` class map.
      class_names: names of the palette's classes.

    Returns:
      ``uint8 [H + legend height, max(W, min_width), 3]``.
    """
    picture = np.asarray(picture, np.uint8)
    values = np.unique(np.asarray(label))
    present = [int(v) for v in values if v != ignore_label]
    width = max(picture.shape[1], min_width)
    top = np.full((picture.shape[0], width, 3), 255, np.uint8)
    top[:, : picture.shape[1]] = picture
    key = legend(
        present, class_names, palette, width, show_ignored=bool((values == ignore_label).any())
    )
    return np.concatenate([top, key], axis=0)


def _heat(value: float) -> tuple[int, int, int]:
    """0 -> white, 1 -> dark blue (sequential, readable in grey)."""
    value = min(max(value, 0.0), 1.0)
    low, high = np.array([255, 255, 255], float), np.array([8, 48, 107], float)
    return tuple(int(round(c)) for c in low + value * (high - low))


def _vertical_text(text: str, font) -> Image.Image:
    width, height = _text_box(text, font)
    label = Image.new("RGB", (width + 4, height + 6), WHITE)
    ImageDraw.Draw(label).text((2, 0), text, fill=INK, font=font)
    return label.rotate(90, expand=True)


def confusion_figure(cm: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Row-normalised confusion matrix (row = ground truth, column = prediction; each row sums
    to 100%) with class names on both axes and percentages in the cells.

    Args:
      cm: ``int [C, C]`` or ``[C + 1, C + 1]`` (``jaxseg.metrics`` layout; the extra
        out-of-range row/column is dropped).
      class_names: C names.

    Returns:
      ``uint8 [h, w, 3]``.
    """
    names = [str(n) for n in class_names]
    count = len(names)
    cm = np.asarray(cm, np.float64)[:count, :count]
    totals = cm.sum(axis=1, keepdims=True)
    rates = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    font = _font(12)
    cell = int(min(48, max(14, 640 // max(count, 1))))
    left = max(_text_box(n, font)[0] for n in names) + 2 * _PAD
    columns = [_vertical_text(n, font) for n in names]
    head = max(c.height for c in columns) + _PAD
    title_font = _font(14)
    title = "confusion matrix: row = ground truth, column = prediction, % of the row"
    title_height = _text_box(title, title_font)[1] + 2 * _PAD
    width = max(left + count * cell + _PAD, _text_box(title, title_font)[0] + 2 * _PAD)
    figure = Image.new("RGB", (width, title_height + head + count * cell + _PAD), WHITE)
    draw = ImageDraw.Draw(figure)
    draw.text((_PAD, _PAD // 2), title, fill=INK, font=title_font)
    top = title_height + head
    for j, column in enumerate(columns):
        x = left + j * cell + (cell - column.width) // 2
        figure.paste(column, (x, title_height + head - _PAD // 2 - column.height))
    for i, name in enumerate(names):
        y = top + i * cell
        text_height = _text_box(name, font)[1]
        draw.text((_PAD, y + (cell - text_height) // 2), name, fill=INK, font=font)
        for j in range(count):
            x = left + j * cell
            value = rates[i, j]
            draw.rectangle([x, y, x + cell, y + cell], fill=_heat(value), outline=GRID)
            if cell >= 28 and totals[i, 0] > 0:
                text = f"{100 * value:.0f}"
                tw, th = _text_box(text, font)
                ink = WHITE if value > 0.5 else INK
                draw.text((x + (cell - tw) // 2, y + (cell - th) // 2), text, fill=ink, font=font)
    return np.asarray(figure)


def iou_bar_chart(
    iou: Sequence[float], class_names: Sequence[str], palette: np.ndarray, *, title: str = ""
) -> np.ndarray:
    """Horizontal bars of each class's IoU (0..100%) in its palette colour; NaN (class in
    neither labels nor predictions) is written "absent".

    Returns:
      ``uint8 [h, w, 3]``.
    """
    names = [str(n) for n in class_names]
    font = _font(13)
    row = max(18, _text_box("Ag", font)[1] + 8)
    left = max(_text_box(n, font)[0] for n in names) + 2 * _PAD
    bar_width, value_width = 360, _text_box("100.0", font)[0] + 2 * _PAD
    title = title or "IoU per class (%)"
    title_height = _text_box(title, font)[1] + 2 * _PAD
    figure = Image.new(
        "RGB",
        (left + bar_width + value_width, title_height + row * len(names) + 2 * _PAD),
        WHITE,
    )
    draw = ImageDraw.Draw(figure)
    draw.text((_PAD, _PAD // 2), title, fill=INK, font=font)
    for quarter in range(5):  # 0, 25, 50, 75, 100 % guides
        x = left + quarter * bar_width // 4
        draw.line([x, title_height, x, title_height + row * len(names)], fill=GRID)
    for i, (name, value) in enumerate(zip(names, iou, strict=True)):
        y = title_height + i * row
        draw.text((_PAD, y + 3), name, fill=INK, font=font)
        if value is None or np.isnan(value):
            draw.text((left + 4, y + 3), "absent", fill=(120, 120, 120), font=font)
            continue
        end = left + int(round(bar_width * min(max(float(value), 0.0), 1.0)))
        colour = tuple(int(c) for c in palette[i])
        draw.rectangle([left, y + 3, max(end, left + 1), y + row - 3], fill=colour, outline=INK)
        draw.text((left + bar_width + _PAD, y + 3), f"{100 * value:.1f}", fill=INK, font=font)
    return np.asarray(figure)


def score_figures(summary: dict, palette: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``{"confusion_matrix": ..., "class_iou": ...}`` figures of a ``jaxseg.metrics.summarize``
    result that also holds its ``confusion_matrix`` (as ``jaxseg.train.evaluate`` returns).

    Args:
      palette: class colours of the bars (default: VOC's colour map).
    """
    names = list(summary["iou"])
    palette = viz.voc_palette(len(names)) if palette is None else np.asarray(palette)
    return {
        "confusion_matrix": confusion_figure(summary["confusion_matrix"], names),
        "class_iou": iou_bar_chart([summary["iou"][n] for n in names], names, palette),
    }
