"""`jaxseg.zoo.evaluate`: scores of a zoo Segmenter against hand-counted confusion matrices."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxseg import zoo
from jaxseg.segmenter import Segmenter
from jaxseg.zoo.evaluate import evaluate, published_vs_measured
from jaxseg.zoo.registry import Published, ZooEntry


class _RedIsOne(nn.Module):
    """Class 1 where the red channel exceeds 127, else class 0 (a fixed 'network')."""

    @nn.compact
    def __call__(self, x, train=False):
        red = x[..., 0:1]
        return jnp.concatenate([127.5 - red, red - 127.5], axis=-1)


def _segmenter():
    return Segmenter(_RedIsOne(), {}, normalize=lambda x: x, class_names=("bg", "red"), bucket=None)


def test_evaluate_counts_pixels_and_reports():
    image = np.zeros((4, 5, 3), np.uint8)
    image[:2, :, 0] = 255  # top two rows predicted "red"
    labels = np.zeros((4, 5), np.int32)
    labels[:3] = 1  # three rows are red in truth
    labels[3, 0] = 255  # ignored
    results = evaluate(_segmenter(), [(image, labels)])
    cm = results["plain"]["confusion_matrix"]
    # rows = truth, columns = prediction: red predicted on 10 of 15 red pixels, 4 bg right.
    np.testing.assert_array_equal(cm[:2, :2], [[4, 0], [5, 10]])
    assert np.isclose(results["plain"]["miou"], (4 / 9 + 10 / 15) / 2)

    entry = ZooEntry(
        name="toy",
        architecture="",
        dataset="",
        num_classes=2,
        urls=(),
        filename="",
        size=None,
        published=(Published("mIoU", 60.0, "val"), Published("mIoU", 70.0, "val, dense CRF")),
        load=lambda *a, **k: None,
    )
    text = published_vs_measured(entry, results)
    assert "published mIoU 60.0 (val); measured 55.56" in text
    assert "published mIoU 70.0 (val, dense CRF); not measured" in text


def test_release_crf_settings_are_known_parameters():
    import inspect

    from jaxseg.crf import dense_crf

    names = set(inspect.signature(dense_crf).parameters)
    published = [entry.crf for entry in zoo.ENTRIES.values() if entry.crf is not None]
    assert len(published) == 3  # DeepLab v1 LargeFOV, v2 VGG16, v2 ResNet-101
    for params in published:
        assert set(params) <= names


def test_evaluate_with_crf_scores_the_same_pixels():
    image = np.zeros((6, 7, 3), np.uint8)
    image[:3, :, 0] = 255
    labels = (image[..., 0] > 0).astype(np.int32)
    results = evaluate(_segmenter(), [(image, labels)], crf=zoo.entry("deeplab_largefov_voc12").crf)
    assert results["crf"]["num_pixels"] == results["plain"]["num_pixels"] == 42
    assert results["plain"]["miou"] == 1.0
