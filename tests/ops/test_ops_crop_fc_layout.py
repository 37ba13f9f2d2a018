"""center_crop / crop_like (numpy slicing), fc_to_conv (sliding a classifier), space<->depth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from jax import lax

from jaxseg.ops import center_crop, crop_like, depth_to_space, fc_to_conv, space_to_depth


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_center_crop_unet_sizes():
    x = _rand((2, 64, 64, 3), 0)
    np.testing.assert_array_equal(center_crop(x, (56, 56)), x[:, 4:60, 4:60])
    # Odd surplus: the extra pixel stays at the bottom/right.
    np.testing.assert_array_equal(center_crop(x, (61, 57)), x[:, 1:62, 3:60])
    labels = np.arange(2 * 7 * 7).reshape(2, 7, 7)
    np.testing.assert_array_equal(center_crop(labels, (7, 4)), labels[:, :, 1:5])


def test_crop_like_fcn_offsets_and_centre():
    x = _rand((1, 80, 90, 2), 1)
    ref = np.zeros((1, 40, 50, 5), np.float32)
    np.testing.assert_array_equal(crop_like(x, ref, 19), x[:, 19:59, 19:69])
    np.testing.assert_array_equal(crop_like(x, ref, (31, 27)), x[:, 31:71, 27:77])
    np.testing.assert_array_equal(crop_like(x, ref), x[:, 20:60, 20:70])
    y = jax.jit(crop_like, static_argnames="offset")(x, ref, offset=5)
    np.testing.assert_array_equal(y, x[:, 5:45, 5:55])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: center_crop(x, (9, 4)), "size"),
        (lambda x: center_crop(x, (0, 4)), "size"),
        (lambda x: center_crop(x[0, 0], (2, 2)), "x"),
        (lambda x: crop_like(x, np.zeros((1, 4, 4, 1)), 5), "offset"),
        (lambda x: crop_like(x, np.zeros((1, 4, 4, 1)), (-1, 0)), "offset"),
        (lambda x: crop_like(x, np.zeros((1, 4, 4, 1)), "center"), "offset"),
        (lambda x: crop_like(x, np.zeros((1, 9, 4, 1))), "reference"),
        (lambda x: crop_like(x, np.zeros((4, 4))), "reference"),
    ],
)
def test_crop_bad_input_raises(call, name):
    with pytest.raises(ValueError, match=name):
        call(np.zeros((1, 8, 8, 1), np.float32))


def _features(images):
    """A fixed 32x downsampling 'backbone': mean over each 32x32 block, [B, H/32, W/32, C]."""
    b, h, w, c = images.shape
    return images.reshape(b, h // 32, 32, w // 32, 32, c).mean(axis=(2, 4))


def test_fc_to_conv_equals_sliding_the_classifier():
    # A classifier trained on 224x224 (7x7x3 features -> 5 classes), applied to a 384x384 image:
    # the converted conv gives (12 - 7) + 1 = 6 outputs per axis, one per 224 window at stride 32.
    image = _rand((1, 384, 384, 3), 2)
    dense_kernel, bias = _rand((7 * 7 * 3, 5), 3), _rand((5,), 4)

    want = np.zeros((1, 6, 6, 5), np.float32)
    for i, j in np.ndindex(6, 6):
        window = image[:, 32 * i : 32 * i + 224, 32 * j : 32 * j + 224]
        want[:, i, j] = _features(window).reshape(1, -1) @ dense_kernel + bias

    kernel = fc_to_conv(jnp.asarray(dense_kernel), (7, 7))
    assert kernel.shape == (7, 7, 3, 5)
    got = (
        lax.conv_general_dilated(
            jnp.asarray(_features(image)),
            kernel,
            (1, 1),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=lax.Precision.HIGHEST,
        )
        + bias
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kernel, hw, name",
    [
        (np.zeros((147,), np.float32), (7, 7), "dense_kernel"),
        (np.zeros((100, 5), np.float32), (7, 7), "dense_kernel"),
        (np.zeros((147, 5), np.float32), (7, 0), "input_hw"),
    ],
)
def test_fc_to_conv_bad_input_raises(kernel, hw, name):
    with pytest.raises(ValueError, match=name):
        fc_to_conv(kernel, hw)


@pytest.mark.parametrize("block", [2, 3])
def test_space_depth_match_tf(block):
    x = _rand((2, 6, 12, 3), 5)
    packed = space_to_depth(x, block)
    np.testing.assert_array_equal(packed, tf.nn.space_to_depth(x, block).numpy())
    np.testing.assert_array_equal(
        depth_to_space(packed, block), tf.nn.depth_to_space(np.asarray(packed), block).numpy()
    )
    np.testing.assert_array_equal(depth_to_space(packed, block), x)


def test_space_depth_bad_input_raises():
    with pytest.raises(ValueError, match="block"):
        space_to_depth(np.zeros((1, 5, 4, 1)), 2)
    with pytest.raises(ValueError, match="block"):
        depth_to_space(np.zeros((1, 2, 2, 6)), 2)
    with pytest.raises(ValueError, match="block"):
        space_to_depth(np.zeros((1, 4, 4, 1)), 0)
    with pytest.raises(ValueError, match="x"):
        space_to_depth(np.zeros((4, 4, 1)), 2)
