"""atrous_conv2d / separable_atrous_conv2d against TensorFlow's own convolutions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from jaxseg.ops import atrous_conv2d, separable_atrous_conv2d

IMPLS = ("xla", "space_to_batch")
TOL = {"rtol": 1e-4, "atol": 1e-4}


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("rate", [1, 2, 3, 6])
def test_matches_tf_atrous_conv2d(rate, padding, impl):
    # Odd, non-square and not divisible by the rate: exercises the phase padding and cropping.
    x, k = _rand((2, 15, 14, 3), 0), _rand((3, 3, 3, 4), 1)
    want = tf.nn.atrous_conv2d(x, k, rate=rate, padding=padding).numpy()
    got = atrous_conv2d(jnp.asarray(x), jnp.asarray(k), rate=rate, padding=padding, impl=impl)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("impl", IMPLS)
def test_non_square_kernel_and_rates(impl):
    x, k = _rand((1, 13, 11, 2), 2), _rand((3, 2, 2, 3), 3)
    want = tf.nn.conv2d(x, k, strides=1, padding="SAME", dilations=(3, 2)).numpy()
    got = atrous_conv2d(x, k, rate=(3, 2), impl=impl)
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rate", [2, 3])
def test_depthwise_matches_tf(rate, impl):
    channels, multiplier = 3, 2
    x, k = _rand((2, 11, 9, channels), 4), _rand((3, 3, channels, multiplier), 5)
    want = tf.nn.depthwise_conv2d(
        x, k, strides=(1, 1, 1, 1), padding="SAME", dilations=(rate, rate)
    ).numpy()
    # TF's [kh, kw, C, M] has output channel c * M + m, the same order as grouped HWIO.
    ours = k.reshape(3, 3, 1, channels * multiplier)
    got = atrous_conv2d(x, ours, rate=rate, feature_group_count=channels, impl=impl)
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("stride", [2, 3])
def test_stride_matches_tf_conv2d(stride, padding, impl):
    x, k = _rand((1, 13, 10, 2), 6), _rand((3, 3, 2, 3), 7)
    want = tf.nn.conv2d(x, k, strides=stride, padding=padding).numpy()
    got = atrous_conv2d(x, k, stride=stride, padding=padding, impl=impl)
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("impl", IMPLS)
def test_explicit_padding_matches_tf(impl):
    x, k = _rand((1, 9, 10, 2), 8), _rand((3, 3, 2, 2), 9)
    pads = ((1, 3), (2, 0))
    want = tf.nn.conv2d(
        x, k, strides=1, padding=[[0, 0], *map(list, pads), [0, 0]], dilations=2
    ).numpy()
    got = atrous_conv2d(x, k, rate=2, padding=pads, impl=impl)
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("groups", [1, 4])
def test_gradients_of_both_impls_agree_with_tf(groups):
    x, k = _rand((1, 11, 9, 4), 10), _rand((3, 3, 4 // groups, 4), 11)
    cotangent = _rand((1, 11, 9, 4), 12)

    xt, kt = tf.constant(x), tf.constant(k)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        if groups == 1:
            y = tf.nn.atrous_conv2d(xt, kt, rate=3, padding="SAME")
        else:  # grouped == depthwise with multiplier 1 here
            y = tf.nn.depthwise_conv2d(
                xt, tf.reshape(kt, (3, 3, 4, 1)), (1, 1, 1, 1), "SAME", dilations=(3, 3)
            )
        loss = tf.reduce_sum(y * cotangent)
    want_dx, want_dk = (g.numpy() for g in tape.gradient(loss, [xt, kt]))

    for impl in IMPLS:
        conv = functools.partial(atrous_conv2d, rate=3, feature_group_count=groups, impl=impl)
        dx, dk = jax.grad(lambda a, b, c=conv: jnp.sum(c(a, b) * cotangent), (0, 1))(x, k)
        np.testing.assert_allclose(dx, want_dx, **TOL, err_msg=impl)
        np.testing.assert_allclose(dk, want_dk, **TOL, err_msg=impl)


def test_jit_and_dtype_kept():
    x = jnp.asarray(_rand((1, 8, 8, 2), 13), jnp.bfloat16)
    k = jnp.asarray(_rand((3, 3, 2, 2), 14))  # float32 params with bf16 activations
    conv = jax.jit(atrous_conv2d, static_argnames=("rate", "padding", "impl"))
    for impl in IMPLS:
        y = conv(x, k, rate=2, impl=impl)
        assert y.dtype == jnp.bfloat16 and y.shape == (1, 8, 8, 2)
    y32 = atrous_conv2d(x.astype(jnp.float32), k.astype(jnp.bfloat16).astype(jnp.float32), rate=2)
    np.testing.assert_allclose(y.astype(jnp.float32), y32, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("rate", [1, 2])
def test_separable_matches_tf(rate):
    channels, multiplier, out = 3, 2, 5
    x = _rand((2, 9, 11, channels), 15)
    dw, pw = _rand((3, 3, channels, multiplier), 16), _rand((1, 1, channels * multiplier, out), 17)
    want = tf.nn.separable_conv2d(
        x, dw, pw, strides=(1, 1, 1, 1), padding="SAME", dilations=(rate, rate)
    ).numpy()
    for impl in IMPLS:
        got = separable_atrous_conv2d(
            x, dw.reshape(3, 3, 1, channels * multiplier), pw, rate=rate, impl=impl
        )
        np.testing.assert_allclose(got, want, **TOL, err_msg=impl)


def test_separable_stride_matches_tf():
    x, dw, pw = _rand((1, 9, 9, 2), 18), _rand((3, 3, 2, 1), 19), _rand((1, 1, 2, 3), 20)
    want = tf.nn.separable_conv2d(x, dw, pw, strides=(1, 2, 2, 1), padding="SAME").numpy()
    got = separable_atrous_conv2d(x, dw.reshape(3, 3, 1, 2), pw, stride=2)
    np.testing.assert_allclose(got, want, **TOL)


X = np.zeros((1, 8, 8, 4), np.float32)
K = np.zeros((3, 3, 4, 2), np.float32)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"x": X[0]}, "x"),
        ({"x": X.astype(np.int32)}, "x"),
        ({"kernel": K[0]}, "kernel"),
        ({"kernel": np.zeros((3, 3, 3, 2), np.float32)}, "kernel"),
        ({"rate": 0}, "rate"),
        ({"rate": -2}, "rate"),
        ({"rate": 1.5}, "rate"),
        ({"stride": 0}, "stride"),
        ({"rate": 2, "stride": 2}, "stride"),
        ({"padding": "FULL"}, "padding"),
        ({"padding": ((1, -1), (0, 0))}, "padding"),
        ({"feature_group_count": 3}, "feature_group_count"),
        ({"feature_group_count": 0}, "feature_group_count"),
        ({"impl": "cudnn"}, "impl"),
        ({"rate": 6, "padding": "VALID"}, "kernel size"),
    ],
)
def test_bad_input_raises(kwargs, name):
    args = {"x": X, "kernel": K, **kwargs}
    with pytest.raises(ValueError, match=name):
        atrous_conv2d(**args)


@pytest.mark.parametrize(
    "dw, pw",
    [
        (np.zeros((3, 3, 4, 1), np.float32), np.zeros((1, 1, 4, 2), np.float32)),
        (np.zeros((3, 3, 1, 6), np.float32), np.zeros((1, 1, 6, 2), np.float32)),
        (np.zeros((3, 3, 1, 8), np.float32), np.zeros((1, 1, 4, 2), np.float32)),
    ],
)
def test_separable_bad_kernels_raise(dw, pw):
    with pytest.raises(ValueError, match="wise_kernel"):
        separable_atrous_conv2d(X, dw, pw)
