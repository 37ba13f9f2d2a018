"""conv_transpose2d (reference and CPU phase form) against tf.nn.conv2d_transpose and the textbook
identity; bilinear_kernel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from numpy.lib.stride_tricks import sliding_window_view

from jaxseg.ops import bilinear_kernel, conv_transpose2d, cpu

TOL = {"rtol": 1e-4, "atol": 1e-4}


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _tf_output_size(n, k, s, padding):
    return n * s if padding == "SAME" else (n - 1) * s + k


IMPLS = {"xla": conv_transpose2d, "phase": cpu.conv_transpose2d}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("k, s", [(4, 2), (3, 2), (2, 2), (1, 2), (5, 3), (16, 8), (7, 2), (3, 1)])
def test_matches_tf_conv2d_transpose(k, s, padding, impl):
    x, kernel = _rand((2, 5, 4, 3), k), _rand((k, k, 3, 2), s)
    out = [2, *(_tf_output_size(n, k, s, padding) for n in (5, 4)), 2]
    # TF's filter is [h, w, out, in]; ours is HWIO with I = input channels.
    want = tf.nn.conv2d_transpose(x, kernel.transpose(0, 1, 3, 2), out, s, padding).numpy()
    got = IMPLS[impl](x, kernel, s, padding)
    assert got.shape == tuple(out)
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("impl", IMPLS)
def test_non_square_stride_and_kernel_match_tf(impl):
    x, kernel = _rand((1, 4, 5, 2), 0), _rand((4, 3, 2, 3), 1)
    want = tf.nn.conv2d_transpose(x, kernel.transpose(0, 1, 3, 2), [1, 8, 15, 3], (2, 3)).numpy()
    np.testing.assert_allclose(IMPLS[impl](x, kernel, (2, 3)), want, **TOL)


def _textbook_conv_transpose(x, kernel, s):
    """Zero-dilate x by s, pad by k - 1, correlate with the spatially flipped kernel."""
    b, h, w, c = x.shape
    k = kernel.shape[0]
    dilated = np.zeros((b, (h - 1) * s + 1, (w - 1) * s + 1, c), x.dtype)
    dilated[:, ::s, ::s] = x
    padded = np.pad(dilated, ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0)))
    windows = sliding_window_view(padded, (k, k), axis=(1, 2))  # [b, H', W', c, k, k]
    return np.einsum("bhwcij,ijco->bhwo", windows, kernel[::-1, ::-1])


@pytest.mark.parametrize("k, s", [(4, 2), (3, 3), (2, 3)])
def test_equals_conv_over_zero_dilated_input_with_flipped_kernel(k, s):
    x, kernel = _rand((1, 4, 3, 2), 2), _rand((k, k, 2, 3), 3)
    want = _textbook_conv_transpose(x, kernel, s)
    got = conv_transpose2d(x, kernel, s, padding="VALID")
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("s", [2, 8])
def test_bilinear_upsampling_keeps_constant_image_constant(s):
    x = np.full((1, 5, 6, 2), 3.5, np.float32)
    y = np.asarray(conv_transpose2d(x, bilinear_kernel(2 * s, 2), s))
    assert y.shape == (1, 5 * s, 6 * s, 2)
    # Away from the border every output pixel gets two taps that sum to one; at the border
    # only one stamp reaches it, so it is darker.
    np.testing.assert_allclose(y[:, s:-s, s:-s], 3.5, rtol=1e-6)
    assert y[0, 0, 0, 0] < 3.5


def test_bilinear_upsampling_of_a_ramp_is_linear_inside():
    ramp = np.arange(6, dtype=np.float32)[None, :, None, None] * np.ones((1, 6, 4, 1), np.float32)
    y = np.asarray(conv_transpose2d(ramp, bilinear_kernel(4, 1), 2))[0, 2:-2, 2, 0]
    np.testing.assert_allclose(np.diff(y), 0.5, rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradient_matches_tf(impl):
    x, kernel = _rand((1, 3, 4, 2), 4), _rand((4, 4, 2, 3), 5)
    cot = _rand((1, 6, 8, 3), 6)
    xt, kt = tf.constant(x), tf.constant(kernel.transpose(0, 1, 3, 2))
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        loss = tf.reduce_sum(tf.nn.conv2d_transpose(xt, kt, [1, 6, 8, 3], 2) * cot)
    want_dx, want_dk = (g.numpy() for g in tape.gradient(loss, [xt, kt]))

    def loss_fn(a, b):
        return jnp.sum(IMPLS[impl](a, b, 2) * cot)

    dx, dk = jax.grad(loss_fn, (0, 1))(x, kernel)
    np.testing.assert_allclose(dx, want_dx, **TOL)
    np.testing.assert_allclose(dk, want_dk.transpose(0, 1, 3, 2), **TOL)


def test_jit_and_dtype_kept():
    up = jax.jit(conv_transpose2d, static_argnames=("stride", "padding"))
    y = up(jnp.ones((1, 3, 3, 2), jnp.bfloat16), bilinear_kernel(4, 2), stride=2)
    assert y.dtype == jnp.bfloat16 and y.shape == (1, 6, 6, 2)


def test_bilinear_kernel_values():
    # k=4: factor 2, centre 1.5 -> taps 1 - |i - 1.5| / 2 = [.25, .75, .75, .25].
    k4 = np.array([0.25, 0.75, 0.75, 0.25])
    # k=3: factor 2, centre 1 -> taps [.5, 1, .5].
    k3 = np.array([0.5, 1.0, 0.5])
    for size, taps in ((4, k4), (3, k3)):
        w = np.asarray(bilinear_kernel(size, 3))
        assert w.shape == (size, size, 3, 3) and w.dtype == np.float32
        for c in range(3):
            np.testing.assert_allclose(w[:, :, c, c], np.outer(taps, taps))
        off_diagonal = w * (1 - np.eye(3))
        assert not off_diagonal.any()
    assert bilinear_kernel(2, 1, dtype=jnp.bfloat16).dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "x, kernel, stride, padding, name",
    [
        (np.zeros((3, 3, 2), np.float32), np.zeros((4, 4, 2, 2), np.float32), 2, "SAME", "x"),
        (np.zeros((1, 3, 3, 2), np.int32), np.zeros((4, 4, 2, 2), np.float32), 2, "SAME", "x"),
        (
            np.zeros((1, 3, 3, 2), np.float32),
            np.zeros((4, 4, 3, 2), np.float32),
            2,
            "SAME",
            "kernel",
        ),
        (np.zeros((1, 3, 3, 2), np.float32), np.zeros((4, 4, 2), np.float32), 2, "SAME", "kernel"),
        (
            np.zeros((1, 3, 3, 2), np.float32),
            np.zeros((4, 4, 2, 2), np.float32),
            0,
            "SAME",
            "stride",
        ),
        (
            np.zeros((1, 3, 3, 2), np.float32),
            np.zeros((4, 4, 2, 2), np.float32),
            2,
            "FULL",
            "padding",
        ),
    ],
)
def test_bad_input_raises(x, kernel, stride, padding, name):
    with pytest.raises(ValueError, match=name):
        conv_transpose2d(x, kernel, stride, padding)


@pytest.mark.parametrize("impl", IMPLS)
def test_phase_form_checks_like_the_reference(impl):
    with pytest.raises(ValueError, match="padding"):
        IMPLS[impl](np.zeros((1, 3, 3, 2), np.float32), np.zeros((4, 4, 2, 2)), 2, "FULL")


@pytest.mark.parametrize("args, name", [((0, 2), "kernel_size"), ((4, -1), "channels")])
def test_bilinear_kernel_bad_input_raises(args, name):
    with pytest.raises(ValueError, match=name):
        bilinear_kernel(*args)


def test_stride_equal_to_kernel_is_a_matmul_per_pixel():
    # Non-overlapping stamps: out[2i + a, 2j + b] = x[i, j] @ kernel[a, b] (numpy only).
    x, kernel = _rand((1, 3, 4, 2), 7), _rand((2, 2, 2, 3), 8)
    want = np.einsum("nhwi,abio->nhawbo", x, kernel).reshape(1, 6, 8, 3)
    np.testing.assert_allclose(conv_transpose2d(x, kernel, 2), want, **TOL)
