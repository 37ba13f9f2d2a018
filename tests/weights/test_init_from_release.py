"""`--config.init_from=zoo:NAME` with a Caffe release: training starts from the caffemodel's
arrays (a small DeepLab v2 VGG16 caffemodel written by the test, compared blob by blob)."""

from __future__ import annotations

import dataclasses
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

NAME = "deeplabv2_vgg16_voc12"


@dataclasses.dataclass
class State:  # the two fields init_from_pretrained reads and replaces
    params: Any
    batch_stats: Any

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def test_a_caffe_release_initialises_training(tmp_path, caffe_proto, monkeypatch):
    from jaxseg import experiment, train
    from jaxseg.models.deeplab_v2 import DeepLabV2VGG16
    from jaxseg.zoo import caffe_models, registry

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    p = caffe_proto.Prototxt((1, 3, 40, 40), seed=5)
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

    def load(path, output_stride=None, crop_size=None):  # fc6/fc7 4 channels wide
        return caffe_models.build_deeplab_v2_vgg16(path, crop_size=65, fc_features=4)

    entry = dataclasses.replace(registry.ENTRIES[NAME], load=load)
    monkeypatch.setitem(registry.ENTRIES, NAME, entry)
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    with zipfile.ZipFile(downloads / entry.filename, "w") as archive:
        archive.write(model_file, f"prototxt_and_model/{caffe_models.DEEPLAB_V2_VGG16_MEMBER}")

    # The experiment's model with the release's switches (experiments/deeplabv2_voc.py's).
    model = DeepLabV2VGG16(num_classes=21, fc_features=4, ceil_mode=True, caffe_interp=True)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 65, 65, 3)))
    variables = jax.tree.map(lambda s: np.full(s.shape, 0.25, s.dtype), shapes)
    state = State(variables["params"], variables.get("batch_stats", {}))
    config = experiment.base_config()
    config.init_from = f"zoo:{NAME}"
    out = experiment.init_from_pretrained(config, state)

    blobs = {name: arrays for name, _, arrays in p.blobs}
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
