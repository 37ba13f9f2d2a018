"""Evaluation pictures (`jaxseg.figures`) checked by counting pixels against numpy formulas."""

import math

import numpy as np

from jaxseg import figures, metrics, viz

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


def test_with_legend_shows_a_swatch_of_each_present_class_under_the_picture():
    rng = np.random.default_rng(1)
    picture = rng.integers(0, 256, (20, 50, 3)).astype(np.uint8)
    label = np.zeros((20, 50), np.int32)
    label[2:8, 3:9] = 2
    label[10, 10] = 255
    out = figures.with_legend(picture, label, PALETTE, NAMES, min_width=200)
    assert out.dtype == np.uint8 and out.shape[1] == 200 and out.shape[0] > 20
    np.testing.assert_array_equal(out[:20, :50], picture)
    assert (out[:20, 50:] == 255).all()  # a narrow picture is padded with white
    key = out[20:]
    for k in range(4):  # classes 0 and 2 are present: one 13x13 swatch each, the rest none
        assert _count(key, PALETTE[k]) == (SWATCH_FILL if k in (0, 2) else 0), NAMES[k]
    assert _count(key, viz.IGNORE_COLOR) == SWATCH_FILL
    # a picture wider than min_width keeps its width
    wide = figures.with_legend(picture, label[:, :1] * 0, PALETTE, NAMES, min_width=10)
    assert wide.shape[1] == 50 and _count(wide[20:], PALETTE[0]) == SWATCH_FILL


def test_picture_names_follow_the_source_images_else_the_index():
    names = np.array([b"2007_000032.jpg", b"site_a/scene_001", b"", b"x.png", b"x.JPG"], object)
    assert figures.picture_names(names, [0, 1, 2, 3, 4]) == [
        "2007_000032",
        "site_a_scene_001",
        "2",
        "x",
        "x_4",  # the same stem twice: the second gets its index
    ]
    assert figures.picture_names(None, [3, 5]) == ["3", "5"]
    assert figures.picture_names(["scene.v2"], [0]) == ["scene.v2"]  # not an image extension
    # a photo named like a score figure cannot be overwritten by it
    assert figures.picture_names([b"class_iou.png"], [0]) == ["class_iou_0"]
    cm = np.array([[5, 1, 0], [2, 7, 0], [0, 0, 0]], np.int64)
    summary = {**metrics.summarize(cm, NAMES[:2], out_of_range=True), "confusion_matrix": cm}
    assert set(figures.score_figures(summary, PALETTE)) == set(figures.SCORE_FIGURES)
