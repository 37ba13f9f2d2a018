"""`jaxseg-zoo evaluate NAME` with a Caffe release and the published dense CRF:
both published numbers printed, each beside its measured value (a small DeepLab v2 VGG16
caffemodel written by the test, on a tiny generated VOC-layout dataset)."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

NAME = "deeplabv2_vgg16_voc12"


def _release(tmp_path, caffe_proto) -> Path:
    """A DeepLab v2 VGG16 release zip (fc6/fc7 4 channels wide, 21 classes) in the cache."""
    p = caffe_proto.Prototxt((1, 3, 40, 40), seed=3)
    widths = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
    x = "data"
    for b, block in enumerate(widths, start=1):
        for i, width in enumerate(block, start=1):
            x = p.conv(f"conv{b}_{i}", x, width, 3, pad=1)
    for i in range(1, 5):
        y = p.conv(f"fc6_{i}", x, 4, 3)
        y = p.conv(f"fc7_{i}", y, 4, 1)
        p.conv(f"fc8_voc12_{i}", y, 21, 1)
    model_file = tmp_path / "train2_iter_20000.caffemodel"
    caffe_proto.write_caffemodel(model_file, p.blobs)
    return model_file


def test_eval_of_a_caffe_release_with_the_published_crf(tmp_path, caffe_proto, monkeypatch):
    from jaxseg import zoo
    from jaxseg.data import demo, get_dataset_info
    from jaxseg.experiment import zoo_runs
    from jaxseg.zoo import caffe_models, registry

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    model_file = _release(tmp_path, caffe_proto)

    def load(path, output_stride=None, crop_size=None):  # a 65 x 65 canvas: CPU-sized
        return caffe_models.build_deeplab_v2_vgg16(
            path, output_stride=output_stride, crop_size=65, fc_features=4
        )

    entry = dataclasses.replace(registry.ENTRIES[NAME], load=load)
    monkeypatch.setitem(registry.ENTRIES, NAME, entry)
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    with zipfile.ZipFile(downloads / entry.filename, "w") as archive:
        archive.write(model_file, "prototxt_and_model/train2_iter_20000.caffemodel")

    data_dir = tmp_path / "data"
    builder = demo.prepare_demo(data_dir, num_train=2, num_val=2, image_size=(48, 64))
    info = get_dataset_info("voc_segmentation/2012")
    outputs = {
        crf: zoo_runs.evaluate_release(NAME, builder, info, "validation", crf=crf)
        for crf in (False, True)
    }
    plain, with_crf = (outputs[c]["results"] for c in (False, True))
    assert [r["published"] for r in with_crf] == [68.96, 71.57]
    assert plain[1]["measured"] is None and with_crf[1]["measured"] is not None
    # The plain number: the zoo Segmenter's labels on the dataset's images, scored by numpy.
    import tensorflow_datasets as tfds

    seg = zoo.load(NAME)
    confusion = np.zeros((21, 21), np.int64)
    for example in tfds.as_numpy(builder.as_dataset(split="validation")):
        label = example["label"][..., 0].astype(np.int64)
        keep = label != 255
        np.add.at(confusion, (label[keep], seg(example["image"])[keep]), 1)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    expected = 100 * np.mean(np.diag(confusion)[union > 0] / union[union > 0])
    assert plain[0]["measured"] == pytest.approx(expected, abs=1e-6)
    assert with_crf[0]["measured"] == pytest.approx(expected, abs=1e-6)
