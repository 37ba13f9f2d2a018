"""Evaluation pictures (`jaxseg.figures`) checked by counting pixels against numpy formulas."""

import math

import numpy as np

from jaxseg import figures, viz

# Saturated, non-grey colours: text is drawn in greys, so no glyph pixel can take one of them.
PALETTE = np.array([[0, 90, 0], [220, 20, 60], [0, 128, 255], [255, 200, 0]], np.uint8)
NAMES = ("background", "circle", "square", "triangle")
SWATCH_FILL = 13 * 13  # legend swatch: 15x15 rectangle with a 1-pixel outline


def _count(figure, colour):
    return int(np.all(figure == np.asarray(colour, np.uint8), axis=-1).sum())


def test_titled_panels_enlarge_the_maps_and_list_only_present_classes():
    image = np.full((30, 40, 3), 128, np.uint8)
    label = np.zeros((30, 40), np.int32)
    label[5:15, 5:20] = 1
    label[0, :] = 255
    prediction = label.copy()
    prediction[5:10, 5:20] = 2
    figure = figures.titled_panels(image, label, prediction, PALETTE, NAMES)
    factor = math.ceil(240 / 30)
    assert figure.dtype == np.uint8 and figure.shape[0] > 30 * factor
    for k in range(4):
        pixels = int((label == k).sum() + (prediction == k).sum())
        expected = factor**2 * pixels + (SWATCH_FILL if pixels else 0)
        assert _count(figure, PALETTE[k]) == expected, NAMES[k]
    ignored = 2 * factor**2 * int((label == 255).sum())
    assert _count(figure, viz.IGNORE_COLOR) == ignored + SWATCH_FILL


def test_object_overlay_tints_only_objects():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    label = rng.integers(0, 4, (12, 16))
    label[0, 0] = 255
    out = figures.object_overlay(image, label, PALETTE, alpha=0.55)
    tinted = np.clip(np.round(0.45 * image + 0.55 * PALETTE[np.minimum(label, 3)]), 0, 255)
    plain = (label == 0) | (label == 255)
    np.testing.assert_array_equal(out[plain], image[plain])
    np.testing.assert_array_equal(out[~plain], tinted[~plain].astype(np.uint8))


def _heat(value):
    # Documented scale: white at 0 to (8, 48, 107) at 1, linear.
    return tuple(round(255 + value * (c - 255)) for c in (8, 48, 107))


def test_confusion_figure_is_row_normalised():
    cm = np.array([[30, 10, 0], [0, 40, 0], [0, 0, 0]])  # jaxseg layout: [C + 1, C + 1]
    figure = figures.confusion_figure(cm, ["a", "b"])
    cell_area = int(np.sum(np.all(figure == _heat(1.0), axis=-1)))  # row b: 100%
    assert cell_area > 100
    for rate in (0.75, 0.25):  # row a: 30 / 40 and 10 / 40
        assert _count(figure, _heat(rate)) > cell_area // 2, rate
    assert _count(figure, _heat(30 / 80)) == 0  # not normalised by the total


def test_iou_bars_are_proportional_and_absent_classes_have_none():
    figure = figures.iou_bar_chart([1.0, 0.5, float("nan"), 0.25], NAMES, PALETTE)

    def columns(k):
        return int(np.any(np.all(figure == PALETTE[k], axis=-1), axis=0).sum())

    full, half, quarter = columns(0), columns(1), columns(3)
    assert full > 300
    assert abs(2 * half - full) <= 3 and abs(4 * quarter - full) <= 4
    assert columns(2) == 0
