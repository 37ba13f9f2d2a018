"""resize_bilinear / resize_nearest against TensorFlow's resize ops and jax.image.resize."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from jaxseg.ops import resize_bilinear, resize_nearest

TOL = {"rtol": 1e-5, "atol": 1e-5}
SIZES = [
    ((9, 9), (33, 33)),  # DeepLab-style 2^k + 1 upsampling
    ((5, 7), (12, 10)),  # non-integer factors, different per axis
    ((13, 11), (4, 6)),  # downsampling
    ((6, 4), (1, 3)),  # a single output row
]


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("in_hw, out_hw", SIZES)
def test_align_corners_matches_tf1(in_hw, out_hw):
    x = _rand((2, *in_hw, 3), 0)
    want = tf.compat.v1.image.resize_bilinear(x, out_hw, align_corners=True).numpy()
    got = resize_bilinear(x, out_hw, align_corners=True)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("in_hw, out_hw", SIZES)
def test_half_pixel_matches_tf2_and_tf1(in_hw, out_hw):
    x = _rand((2, *in_hw, 3), 1)
    got = resize_bilinear(x, out_hw)
    want = tf.image.resize(x, out_hw, method="bilinear", antialias=False).numpy()
    np.testing.assert_allclose(got, want, **TOL)
    want_v1 = tf.compat.v1.image.resize_bilinear(x, out_hw, half_pixel_centers=True).numpy()
    np.testing.assert_allclose(got, want_v1, **TOL)


def test_half_pixel_upsampling_matches_jax_image_resize():
    x = _rand((1, 5, 7, 2), 2)
    want = jax.image.resize(x, (1, 11, 16, 2), "bilinear")
    np.testing.assert_allclose(resize_bilinear(x, (11, 16)), want, **TOL)


def test_align_corners_keeps_corners_and_rank3():
    x = _rand((2, 5, 6), 3)  # [B, H, W] without channels
    y = resize_bilinear(x, (17, 21), align_corners=True)
    assert y.shape == (2, 17, 21)
    np.testing.assert_allclose(
        y[:, [0, 0, -1, -1], [0, -1, 0, -1]], x[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    )


def test_bf16_kept_and_gradient_matches_tf():
    x = _rand((1, 4, 5, 2), 4)
    y = jax.jit(resize_bilinear, static_argnames=("size", "align_corners"))(
        jnp.asarray(x, jnp.bfloat16), size=(9, 9), align_corners=True
    )
    assert y.dtype == jnp.bfloat16

    cot = _rand((1, 9, 9, 2), 5)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(tf.compat.v1.image.resize_bilinear(xt, (9, 9), True) * cot)
    want = tape.gradient(loss, xt).numpy()
    got = jax.grad(lambda v: jnp.sum(resize_bilinear(v, (9, 9), align_corners=True) * cot))(x)
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize(
    "in_hw, out_hw", [((13, 11), (5, 4)), ((5, 7), (12, 21)), ((10, 6), (6, 4)), ((2, 3), (3, 2))]
)
def test_nearest_matches_tf_image_resize(in_hw, out_hw):
    labels = np.random.default_rng(6).integers(0, 21, (2, *in_hw, 1)).astype(np.uint8)
    labels[0, 0, 0, 0] = 255  # the ignore label survives unchanged
    want = tf.image.resize(labels, out_hw, method="nearest").numpy()
    got = resize_nearest(labels, out_hw)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        resize_nearest(labels[..., 0].astype(np.int32), out_hw), want[..., 0].astype(np.int32)
    )
    np.testing.assert_array_equal(got, jax.image.resize(labels, got.shape, "nearest"))


@pytest.mark.parametrize(
    "fn, x, size, name",
    [
        (resize_bilinear, np.zeros((1, 4, 4, 1), np.int32), (8, 8), "x"),
        (resize_bilinear, np.zeros((4, 4), np.float32), (8, 8), "x"),
        (resize_bilinear, np.zeros((1, 4, 4, 1), np.float32), (0, 8), "size"),
        (resize_bilinear, np.zeros((1, 4, 4, 1), np.float32), (8,), "size"),
        (resize_nearest, np.zeros((4, 4), np.int32), (8, 8), "labels"),
        (resize_nearest, np.zeros((1, 4, 4), np.int32), (8, -1), "size"),
    ],
)
def test_bad_input_raises(fn, x, size, name):
    with pytest.raises(ValueError, match=name):
        fn(x, size)
