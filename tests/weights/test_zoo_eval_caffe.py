"""A Caffe release in the experiments' machinery, on a small DeepLab v2 VGG16 caffemodel written
by the test and put in the download cache as the release zip:

- `jaxseg-zoo evaluate NAME` with the published dense CRF: both published numbers printed,
  each beside its measured value (on a tiny generated VOC-layout dataset);
- `--config.init_from=zoo:NAME`: training starts from the caffemodel's arrays."""

from __future__ import annotations

import dataclasses
import zipfile
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")

NAME = "deeplabv2_vgg16_voc12"


@pytest.fixture
def cached_release(tmp_path, caffe_proto, monkeypatch) -> dict:
    """The release zip (fc6/fc7 4 channels wide, 21 classes) in a fresh download cache, its
    entry loading on a 65 x 65 canvas (CPU-sized); returns the caffemodel's blobs by layer."""
    from jaxseg.zoo import caffe_models, registry

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
    model_file = tmp_path / "model.caffemodel"
    caffe_proto.write_caffemodel(model_file, p.blobs)

    def load(path, output_stride=None, crop_size=None):
        small = caffe_models.RELEASES[NAME].with_sizes(fc_features=4)
        return caffe_models.load_release(small, path, output_stride, crop_size=65)

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    entry = dataclasses.replace(registry.ENTRIES[NAME], load=load)
    monkeypatch.setitem(registry.ENTRIES, NAME, entry)
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    with zipfile.ZipFile(downloads / entry.filename, "w") as archive:
        archive.write(model_file, f"prototxt_and_model/{caffe_models.RELEASES[NAME].member}")
    return {name: arrays for name, _, arrays in p.blobs}


def test_eval_of_a_caffe_release_with_the_published_crf(tmp_path, cached_release):
    from jaxseg import zoo
    from jaxseg.data import demo, get_dataset_info
    from jaxseg.experiment import zoo_runs

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


@dataclasses.dataclass
class State:  # the two fields init_from_pretrained reads and replaces
    params: Any
    batch_stats: Any

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def test_a_caffe_release_initialises_training(cached_release):
    import jax
    import jax.numpy as jnp

    from jaxseg import experiment, train
    from jaxseg.models.deeplab_v2 import DeepLabV2VGG16

    # The experiment's model with the release's switches (experiments/deeplabv2_voc.py's).
    model = DeepLabV2VGG16(num_classes=21, fc_features=4, ceil_mode=True, caffe_interp=True)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 65, 65, 3)))
    variables = jax.tree.map(lambda s: np.full(s.shape, 0.25, s.dtype), shapes)
    state = State(variables["params"], variables.get("batch_stats", {}))
    config = experiment.base_config()
    config.init_from = f"zoo:{NAME}"
    out = experiment.init_from_pretrained(config, state)

    blobs = cached_release
    oihw_to_hwio = (2, 3, 1, 0)  # Caffe stores convolution weights [out, in, h, w]
    weight, bias = blobs["conv1_1"]
    np.testing.assert_array_equal(
        out.params["backbone"]["conv1_1"]["kernel"], weight.transpose(oihw_to_hwio)
    )
    np.testing.assert_array_equal(out.params["backbone"]["conv1_1"]["bias"], bias)
    weight, bias = blobs["fc8_voc12_3"]
    np.testing.assert_array_equal(
        out.params["branch3"]["fc8"]["kernel"], weight.transpose(oihw_to_hwio)
    )
    np.testing.assert_array_equal(out.params["branch3"]["fc8"]["bias"], bias)

    wider = DeepLabV2VGG16(num_classes=21, fc_features=8, ceil_mode=True, caffe_interp=True)
    shapes = jax.eval_shape(wider.init, jax.random.key(0), jnp.zeros((1, 65, 65, 3)))
    other = State(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"]), {})
    with pytest.raises(train.ConfigError, match="shapes differ.*fc6"):
        experiment.init_from_pretrained(config, other)
