"""Exports reload and reproduce the Flax model's own logits (a different code path)."""

import os

import numpy as np
import pytest

from jaxseg import export


@pytest.fixture(scope="module")
def batches():
    rng = np.random.default_rng(3)
    return [rng.uniform(0, 255, (n, 12, 10, 3)).astype(np.float32) for n in (1, 3)]


def test_stablehlo_round_trip_any_batch(mirror, batches, tmp_path):
    model, variables = mirror
    path = tmp_path / "model.bin"
    export.export_stablehlo(model, variables, path, height=12, width=10)
    assert os.listdir(tmp_path) == ["model.bin"]
    predict = export.load_stablehlo(path)
    for images in batches:
        expected = model.apply(variables, images, train=False)
        np.testing.assert_allclose(predict(images), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="shape"):
        predict(np.zeros((1, 11, 10, 3), np.float32))


def test_saved_model_round_trip_any_batch(mirror, batches, tmp_path):
    model, variables = mirror
    path = tmp_path / "saved_model"
    export.export_saved_model(model, variables, path, height=12, width=10)
    assert sorted(os.listdir(tmp_path)) == ["saved_model"]
    assert (path / "saved_model.pb").exists()
    predict = export.load_saved_model(path)
    for images in batches:
        expected = model.apply(variables, images, train=False)
        np.testing.assert_allclose(predict(images).numpy(), expected, rtol=1e-5, atol=1e-5)
