"""Palettes, colourising, overlays and palette PNGs against hand-computed values."""

import os

import numpy as np
import pytest
from PIL import Image

from jaxseg import viz


def test_voc_palette_known_colours():
    palette = viz.voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    first = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128)]
    assert [tuple(c) for c in palette[:6]] == first
    # 8 = 0b1000: bit 3 is the second bit of red, i.e. 64.
    assert tuple(palette[8]) == (64, 0, 0)
    assert tuple(palette[20]) == (0, 64, 128)  # tvmonitor, the last VOC class
    assert tuple(palette[255]) == (224, 224, 192) == viz.IGNORE_COLOR
    assert len({tuple(c) for c in palette}) == 256


def test_named_palettes():
    assert viz.palette_for("VOC").shape == (21, 3)
    assert viz.palette_for("voc_segmentation/2012_aug").shape == (21, 3)
    cityscapes = viz.palette_for("cityscapes")
    assert cityscapes.shape == (19, 3)
    assert tuple(cityscapes[0]) == (128, 64, 128)  # road
    assert tuple(cityscapes[13]) == (0, 0, 142)  # car
    camvid = viz.palette_for("camvid")
    assert camvid.shape == (11, 3)
    assert tuple(camvid[0]) == (128, 128, 128)  # sky
    assert tuple(camvid[3]) == (128, 64, 128)  # road
    for palette in (cityscapes, camvid):
        assert len({tuple(c) for c in palette}) == len(palette)
    with pytest.raises(KeyError, match="known"):
        viz.palette_for("coco")


def test_colorize_hand_computed():
    palette = np.array([(10, 20, 30), (40, 50, 60)], np.uint8)
    label = np.array([[0, 1], [255, 0]])
    expected = np.array([[(10, 20, 30), (40, 50, 60)], [(224, 224, 192), (10, 20, 30)]])
    np.testing.assert_array_equal(viz.colorize(label, palette), expected)
    white = viz.colorize(label, palette, ignore_color=(255, 255, 255))
    assert tuple(white[1, 0]) == (255, 255, 255)
    with pytest.raises(ValueError, match="outside the palette"):
        viz.colorize(np.array([[2]]), palette)


def test_overlay_hand_computed():
    image = np.array([[(100, 0, 200), (50, 50, 50)]], np.uint8)
    label = np.array([[1, 255]])
    palette = np.array([(0, 0, 0), (255, 255, 0)], np.uint8)
    got = viz.overlay(image, label, palette, alpha=0.25)
    # 0.75 * (100, 0, 200) + 0.25 * (255, 255, 0) = (138.75, 63.75, 150); ignore: unchanged.
    np.testing.assert_array_equal(got, [[(139, 64, 150), (50, 50, 50)]])
    assert got.dtype == np.uint8


def test_side_by_side_layout():
    image = np.full((3, 4, 3), 7, np.uint8)
    palette = viz.voc_palette(21)
    truth = np.ones((3, 4), int)
    prediction = np.full((3, 4), 2)
    figure = viz.side_by_side(image, truth, prediction, palette, gap=2)
    assert figure.shape == (3, 4 * 3 + 2 * 2, 3)
    np.testing.assert_array_equal(figure[:, :4], image)
    np.testing.assert_array_equal(figure[:, 4:6], 255)
    np.testing.assert_array_equal(figure[:, 6:10], np.broadcast_to([128, 0, 0], (3, 4, 3)))
    np.testing.assert_array_equal(figure[:, 12:], np.broadcast_to([0, 128, 0], (3, 4, 3)))
    assert viz.side_by_side(image, None, prediction, palette, gap=2).shape == (3, 10, 3)


def test_index_png_round_trip(tmp_path):
    label = np.array([[0, 1, 2], [20, 255, 3]])
    path = tmp_path / "pred.png"
    viz.save_index_png(path, label, viz.voc_palette(21))
    reread = Image.open(path)
    assert reread.mode == "P"
    np.testing.assert_array_equal(np.asarray(reread), label)
    colours = np.asarray(reread.convert("RGB"))
    assert tuple(colours[0, 1]) == (128, 0, 0)
    assert tuple(colours[1, 1]) == viz.IGNORE_COLOR
    assert os.listdir(tmp_path) == ["pred.png"]


def test_failed_write_leaves_nothing(tmp_path):
    class Exploding:
        def save(self, f, **kwargs):
            f.write(b"half an image")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        viz.save_image(tmp_path / "x.jpg", Exploding())
    assert os.listdir(tmp_path) == []
