"""tf.data transforms against numpy references and coordinate-encoded images."""

import numpy as np
import pytest
import tensorflow as tf

from jaxseg.data.pipeline import transforms

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def np_bilinear(image, out_h, out_w):
    """Half-pixel-centre bilinear resize with edge clamping, in float32 like TF's kernel."""

    def taps(out, n):
        pos = (np.arange(out, dtype=np.float32) + np.float32(0.5)) * (
            np.float32(n) / np.float32(out)
        )
        pos = pos - np.float32(0.5)
        lo = np.clip(np.floor(pos).astype(int), 0, n - 1)
        hi = np.clip(np.ceil(pos).astype(int), 0, n - 1)
        return lo, hi, (pos - np.floor(pos)).astype(np.float32)

    image = image.astype(np.float32)
    y0, y1, wy = taps(out_h, image.shape[0])
    x0, x1, wx = taps(out_w, image.shape[1])
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * wx[None, :, None]
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * wx[None, :, None]
    return top + (bottom - top) * wy[:, None, None]


def np_nearest(label, out_h, out_w):
    """Nearest neighbour with half-pixel centres: source = floor((i + 0.5) * in / out)."""

    def index(out, n):
        pos = (np.arange(out, dtype=np.float32) + np.float32(0.5)) * (
            np.float32(n) / np.float32(out)
        )
        return np.minimum(np.floor(pos).astype(int), n - 1)

    return label[index(out_h, label.shape[0])][:, index(out_w, label.shape[1])]


def random_pair(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(
        0, 21, (h, w), dtype=np.uint8
    )


@pytest.mark.parametrize(
    "shape,scale", [((37, 50), 0.5), ((37, 50), 1.25), ((20, 31), 2.0), ((9, 7), 1.75)]
)
def test_scale_bilinear_image_nearest_label(shape, scale):
    image, label = random_pair(np.random.default_rng(0), *shape)
    out_image, out_label = transforms.scale_image_and_label(image, label, tf.constant(scale))
    out_h, out_w = (int(np.floor(d * scale + 0.5)) for d in shape)  # round half up
    assert out_label.shape == (out_h, out_w) and out_label.dtype == tf.uint8
    np.testing.assert_allclose(out_image.numpy(), np_bilinear(image, out_h, out_w), atol=1e-3)
    np.testing.assert_array_equal(out_label.numpy(), np_nearest(label, out_h, out_w))


def numpy_train_transform(image, label, params, crop, mean, std):
    """flip -> scale -> pad (mean / 255, bottom-right) -> crop -> normalise, all in numpy."""
    if params["flip"]:
        image, label = image[:, ::-1], label[:, ::-1]
    hs, ws = params["scaled_height"], params["scaled_width"]
    image, label = np_bilinear(image, hs, ws), np_nearest(label, hs, ws)
    ph, pw = max(hs, crop[0]), max(ws, crop[1])
    padded_image = np.broadcast_to(mean, (ph, pw, 3)).copy()
    padded_image[:hs, :ws] = image
    padded_label = np.full((ph, pw), 255, np.uint8)
    padded_label[:hs, :ws] = label
    t, left = params["top"], params["left"]
    window = (slice(t, t + crop[0]), slice(left, left + crop[1]))
    return (padded_image[window] - mean) / std, padded_label[window]


@pytest.mark.parametrize("shape", [(40, 52), (23, 61)])
def test_train_transform_matches_numpy(shape):
    image, label = random_pair(np.random.default_rng(1), *shape)
    crop = (32, 36)
    seen_flips, seen_scales = set(), set()
    for position in range(12):
        seed = tf.constant([7, position], tf.int64)
        params = transforms.sample_crop_params(seed, shape[0], shape[1], crop)
        params = {k: v.numpy() for k, v in params.items()}
        out_image, out_label = transforms.train_transform(image, label, seed, crop, "imagenet")
        want_image, want_label = numpy_train_transform(
            image, label, params, crop, IMAGENET_MEAN, IMAGENET_STD
        )
        np.testing.assert_allclose(out_image.numpy(), want_image, atol=1e-4)
        np.testing.assert_array_equal(out_label.numpy(), want_label)
        seen_flips.add(bool(params["flip"]))
        seen_scales.add(int(params["scaled_height"]))
    assert seen_flips == {True, False} and len(seen_scales) >= 3


def test_crop_pad_flip_keep_image_and_label_aligned():
    # Pixel (y, x) carries its coordinates in R, G; the label is a function of them.
    h, w = 30, 45
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([y, x, np.full_like(y, 7)], -1).astype(np.uint8)
    label = ((3 * y + 5 * x) % 21).astype(np.uint8)
    crops, flips = set(), set()
    for position in range(16):
        out_image, out_label = transforms.train_transform(
            image, label, tf.constant([3, position], tf.int64), (40, 40), "none", scales=(1.0,)
        )
        out_image, out_label = out_image.numpy(), out_label.numpy()
        inside = out_image[..., 2] == 7  # padding is 0 (the "none" mean) in every channel
        assert (out_label[~inside] == 255).all() and (out_image[~inside] == 0).all()
        ys, xs = out_image[..., 0][inside].astype(int), out_image[..., 1][inside].astype(int)
        np.testing.assert_array_equal(out_label[inside], (3 * ys + 5 * xs) % 21)
        row = out_image[0, :, 1][inside[0]]
        flips.add(bool(row[0] > row[-1]))
        crops.add((int(out_image[0, :, 0][inside[0]][0]), int(xs.min())))
    assert flips == {True, False} and len(crops) > 4


def test_building_blocks_keep_alignment():
    h, w = 12, 9
    y, x = np.mgrid[0:h, 0:w]
    image = tf.constant(np.stack([y, x, x], -1), tf.float32)
    label = tf.constant((y * w + x) % 200, tf.uint8)
    padded_image, padded_label = transforms.pad_to_size(
        image, label, 16, 12, image_fill=(1.0, 2.0, 3.0)
    )
    assert padded_image.shape == (16, 12, 3)
    np.testing.assert_array_equal(
        padded_image[h:, :, :].numpy(), np.broadcast_to([1.0, 2.0, 3.0], (4, 12, 3))
    )
    np.testing.assert_array_equal(padded_label[:, w:].numpy(), 255)
    # (Random crops and flips keep alignment: test_crop_pad_flip_keep_image_and_label_aligned.)


def test_normalizations_against_constants():
    pixel = np.array([[[200, 100, 50]]], np.uint8)
    caffe = transforms.normalize(pixel, "caffe_bgr").numpy()[0, 0]
    np.testing.assert_allclose(caffe, [50 - 104.007, 100 - 116.669, 200 - 122.679], atol=1e-4)
    imagenet = transforms.normalize(pixel, "imagenet").numpy()[0, 0]
    np.testing.assert_allclose(imagenet, ([200, 100, 50] - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5)
    np.testing.assert_allclose(
        transforms.normalize(pixel, "inception").numpy()[0, 0],
        [200 / 127.5 - 1, 100 / 127.5 - 1, 50 / 127.5 - 1],
        atol=1e-6,
    )


def test_eval_transform_pads_without_resizing():
    image, label = random_pair(np.random.default_rng(3), 13, 17)
    out_image, out_label = transforms.eval_transform(image, label, (16, 32), "imagenet")
    np.testing.assert_allclose(
        out_image[:13, :17].numpy(), (image - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5
    )
    assert (out_image[13:].numpy() == 0).all() and (out_image[:, 17:].numpy() == 0).all()
    np.testing.assert_array_equal(out_label[:13, :17].numpy(), label)
    assert (out_label[13:].numpy() == 255).all() and (out_label[:, 17:].numpy() == 255).all()


def test_same_seed_same_output_other_position_differs():
    image, label = random_pair(np.random.default_rng(4), 30, 30)
    a = transforms.train_transform(image, label, tf.constant([1, 5], tf.int64), (24, 24))
    b = transforms.train_transform(image, label, tf.constant([1, 5], tf.int64), (24, 24))
    c = transforms.train_transform(image, label, tf.constant([1, 6], tf.int64), (24, 24))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())
