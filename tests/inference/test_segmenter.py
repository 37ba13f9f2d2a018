"""`Segmenter` against numpy: padding to the evaluation canvas, batching, EXIF orientation."""

import io

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import jaxseg
from jaxseg.segmenter import Segmenter


class PooledScores(nn.Module):
    """Per-pixel 1x1 scores plus a global-mean term: padding changes every output pixel."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, x, train=False):
        local = nn.Conv(self.num_classes, (1, 1))(x)
        pooled = nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))
        return local + pooled[:, None, None, :]


def _numpy_reference(params, image, canvas, pad, mean, std):
    """The same network written in numpy on an explicitly padded canvas."""
    h, w = image.shape[:2]
    padded = np.empty((*canvas, 3), np.float64)
    padded[:] = pad
    padded[:h, :w] = image
    x = (padded - mean) / std
    conv, dense = params["Conv_0"], params["Dense_0"]
    local = x @ np.asarray(conv["kernel"])[0, 0] + np.asarray(conv["bias"])
    pooled = x.mean(axis=(0, 1)) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
    return (local + pooled)[:h, :w]


@pytest.fixture(scope="module")
def setup():
    model = PooledScores()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    mean, std = np.array([120.0, 110.0, 100.0]), np.array([60.0, 50.0, 40.0])
    return model, variables, mean, std


def _segmenter(setup, **kwargs):
    model, variables, mean, std = setup
    return Segmenter(
        model,
        variables,
        normalize=lambda x: (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32),
        class_names=("a", "b", "c"),
        **kwargs,
    )


def test_pads_to_crop_with_pad_pixel_and_crops_back(setup):
    _, variables, mean, std = setup
    image = np.random.default_rng(0).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    seg = _segmenter(setup, crop_size=(24, 40), pad_pixel=(1.0, 2.0, 3.0))
    want = _numpy_reference(variables["params"], image, (24, 40), (1, 2, 3), mean, std)
    got = seg.logits(image)
    assert got.shape == (13, 21, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(seg(image), np.argmax(want, -1))
    # An image larger than the crop goes to the bucket instead (here a multiple of 16).
    big = np.random.default_rng(1).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    seg16 = _segmenter(setup, crop_size=(24, 40), bucket=16)
    want = _numpy_reference(variables["params"], big, (32, 32), (0, 0, 0), mean, std)
    np.testing.assert_allclose(seg16.logits(big), want, rtol=1e-4, atol=1e-4)


def test_batch_list_and_pil_inputs(setup):
    rng = np.random.default_rng(2)
    seg = _segmenter(setup, bucket=None)
    batch = rng.integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    logits = seg.logits(batch)
    assert logits.shape == (2, 9, 11, 3)
    for i in range(2):
        np.testing.assert_allclose(logits[i], seg.logits(batch[i]), rtol=1e-5, atol=1e-5)
    labels = seg([batch[0], Image.fromarray(batch[1])])
    assert isinstance(labels, list) and [lb.shape for lb in labels] == [(9, 11), (9, 11)]
    assert labels[0].dtype == np.int32
    np.testing.assert_array_equal(labels[1], np.argmax(logits[1], -1))
    assert seg.num_classes == 3 and seg.palette.shape[1] == 3


def test_pil_image_is_read_in_displayed_orientation(setup):
    stored = np.random.default_rng(3).integers(0, 256, (10, 16, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": displayed image is 16 x 10
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="PNG", exif=exif)
    buffer.seek(0)
    seg = _segmenter(setup, bucket=None)
    labels = seg(Image.open(buffer))
    assert labels.shape == (16, 10)
    np.testing.assert_array_equal(labels, seg(np.rot90(stored, k=-1)))


def test_bad_inputs_name_the_problem(setup):
    seg = _segmenter(setup)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        seg(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="scales"):
        _segmenter(setup, scales=(0.0,))
    with pytest.raises(ValueError, match="crop_size"):
        _segmenter(setup, crop_size=(0, 5))


def test_top_level_name():
    assert jaxseg.Segmenter is Segmenter


def test_sixteen_bit_pil_image_is_scaled_not_clipped(setup):
    """A 16-bit grey PIL image is rescaled by its maximum into 0..255 (as files are read),
    not clipped at 255 by PIL's RGB conversion."""
    grey = np.random.default_rng(4).integers(0, 4000, (9, 11), dtype=np.uint16)
    grey[0, 0] = 4000
    seg = _segmenter(setup, bucket=None)
    scaled = np.round(grey / 4000.0 * 255).astype(np.uint8)
    want = seg.logits(np.repeat(scaled[..., None], 3, axis=-1))
    np.testing.assert_allclose(seg.logits(Image.fromarray(grey)), want, rtol=1e-5, atol=1e-5)
