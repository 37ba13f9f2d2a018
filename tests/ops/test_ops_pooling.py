"""Max pooling against tf.nn.max_pool2d / max_pool_with_argmax; max_unpool against numpy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from jaxseg.ops import max_pool2d, max_pool_with_argmax, max_unpool


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _tf_pool(x, window, padding):
    pooled, flat = tf.nn.max_pool_with_argmax(
        x, window, window, padding, include_batch_in_index=True
    )
    # TF's index is ((b * H + y) * W + x) * C + c into the whole input; ours is the position
    # inside the window, dy * window + dx.
    _, height, width, channels = x.shape
    flat = flat.numpy()
    y, xx = (flat // (channels * width)) % height, (flat // channels) % width
    rows = np.arange(pooled.shape[1])[None, :, None, None] * window
    cols = np.arange(pooled.shape[2])[None, None, :, None] * window
    return pooled.numpy(), (y - rows) * window + (xx - cols)


@pytest.mark.parametrize(
    "shape, window, padding",
    [
        ((2, 8, 6, 3), 2, "VALID"),
        ((2, 7, 5, 3), 2, "SAME"),  # odd sizes: TF pads bottom/right for window 2, as we do
        ((1, 9, 6, 2), 3, "VALID"),
    ],
)
def test_matches_tf(shape, window, padding):
    x = _rand(shape, 0)
    want_pooled, want_argmax = _tf_pool(x, window, padding)
    pooled, argmax = max_pool_with_argmax(x, window)
    assert argmax.dtype == jnp.int32
    np.testing.assert_array_equal(pooled, want_pooled)
    np.testing.assert_array_equal(argmax, want_argmax)


def test_ties_go_to_first_max_like_tf():
    x = np.random.default_rng(1).integers(0, 2, (2, 6, 6, 3)).astype(np.float32)
    x[0, :2, :2, 0] = 5.0  # a window where every position ties
    _, want_argmax = _tf_pool(x, 2, "VALID")
    _, argmax = max_pool_with_argmax(x, 2)
    np.testing.assert_array_equal(argmax, want_argmax)
    assert argmax[0, 0, 0, 0] == 0


def _numpy_unpool(pooled, argmax, window, out_hw):
    b, h, w, c = pooled.shape
    out = np.zeros((b, h * window, w * window, c), pooled.dtype)
    for bi, i, j, ci in np.ndindex(b, h, w, c):
        dy, dx = divmod(int(argmax[bi, i, j, ci]), window)
        out[bi, i * window + dy, j * window + dx, ci] = pooled[bi, i, j, ci]
    return out[:, : out_hw[0], : out_hw[1]]


def _numpy_keep_window_max(x, window):
    """x where it is its window's first maximum, zero elsewhere (what unpool(pool(x)) is)."""
    out = np.zeros_like(x)
    b, h, w, c = x.shape
    for bi, i, j, ci in np.ndindex(b, -(-h // window), -(-w // window), c):
        win = x[bi, i * window : (i + 1) * window, j * window : (j + 1) * window, ci]
        dy, dx = np.unravel_index(np.argmax(win), win.shape)
        out[bi, i * window + dy, j * window + dx, ci] = win[dy, dx]
    return out


@pytest.mark.parametrize("shape, window", [((2, 6, 8, 2), 2), ((1, 7, 5, 3), 2), ((1, 8, 7, 2), 3)])
def test_unpool_puts_values_back_at_argmax(shape, window):
    x = _rand(shape, 2)
    pooled, argmax = max_pool_with_argmax(x, window)
    out = max_unpool(pooled, argmax, window, output_size=shape[1:3])
    assert out.shape == shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out, _numpy_keep_window_max(x, window))
    # Arbitrary decoder values (not the pooled ones) land at the remembered positions.
    values = _rand(pooled.shape, 3)
    np.testing.assert_array_equal(
        max_unpool(values, argmax, window, output_size=shape[1:3]),
        _numpy_unpool(values, np.asarray(argmax), window, shape[1:3]),
    )


def test_unpool_default_size_is_window_multiple():
    pooled, argmax = max_pool_with_argmax(_rand((1, 5, 5, 1), 4))
    assert max_unpool(pooled, argmax).shape == (1, 6, 6, 1)


def test_gradients_reach_argmax_positions():
    x = _rand((1, 7, 5, 2), 5)  # odd: the -inf padding must not leak NaNs into gradients
    cot = _rand((1, 4, 3, 2), 6)

    def pooled_loss(v):
        return jnp.sum(max_pool_with_argmax(v)[0] * cot)

    grad = np.asarray(jax.grad(pooled_loss)(x))
    _, argmax = max_pool_with_argmax(x)
    np.testing.assert_array_equal(grad, _numpy_unpool(cot, np.asarray(argmax), 2, (7, 5)))

    out_cot = _rand((1, 7, 5, 2), 7)
    grad_pooled = jax.grad(lambda p: jnp.sum(max_unpool(p, argmax, output_size=(7, 5)) * out_cot))
    got = np.asarray(grad_pooled(jnp.zeros((1, 4, 3, 2))))
    padded = np.pad(out_cot, ((0, 0), (0, 1), (0, 1), (0, 0)))
    a = np.asarray(argmax)
    want = np.zeros_like(got)
    for bi, i, j, ci in np.ndindex(*got.shape):
        dy, dx = divmod(int(a[bi, i, j, ci]), 2)
        want[bi, i, j, ci] = padded[bi, 2 * i + dy, 2 * j + dx, ci]
    np.testing.assert_array_equal(got, want)


def test_integer_input_and_jit():
    labels = np.random.default_rng(8).integers(0, 21, (1, 5, 7, 1)).astype(np.int32)
    pool = jax.jit(max_pool_with_argmax, static_argnames="window")
    pooled, argmax = pool(labels, window=2)
    assert pooled.dtype == jnp.int32 and pooled.shape == (1, 3, 4, 1)
    unpool = jax.jit(max_unpool, static_argnames=("window", "output_size"))
    np.testing.assert_array_equal(
        unpool(pooled, argmax, window=2, output_size=(5, 7)), _numpy_keep_window_max(labels, 2)
    )


def test_bad_input_raises():
    x = np.zeros((1, 4, 4, 2), np.float32)
    pooled, argmax = max_pool_with_argmax(x)
    with pytest.raises(ValueError, match="x"):
        max_pool_with_argmax(x[0])
    with pytest.raises(ValueError, match="x"):
        max_pool_with_argmax(x.astype(bool))
    with pytest.raises(ValueError, match="window"):
        max_pool_with_argmax(x, 0)
    with pytest.raises(ValueError, match="argmax"):
        max_unpool(pooled, argmax.astype(jnp.float32))
    with pytest.raises(ValueError, match="argmax"):
        max_unpool(pooled, argmax[:, :1])
    with pytest.raises(ValueError, match="pooled"):
        max_unpool(pooled[0], argmax)
    with pytest.raises(ValueError, match="output_size"):
        max_unpool(pooled, argmax, output_size=(7, 4))
    with pytest.raises(ValueError, match="output_size"):
        max_unpool(pooled, argmax, output_size=(4,))


@pytest.mark.parametrize(
    "shape, window, strides, padding",
    [
        ((2, 9, 7, 3), 3, 2, "SAME"),  # ResNet/DeepLab v1's overlapping pool
        ((2, 9, 7, 3), 3, 2, "VALID"),
        ((1, 8, 8, 2), 2, 2, "VALID"),  # VGG / U-Net
        ((1, 7, 5, 2), 2, 2, "SAME"),
        ((1, 10, 9, 2), (3, 2), (1, 2), "SAME"),
    ],
)
def test_max_pool2d_matches_tf_values_and_gradient(shape, window, strides, padding):
    # Integer-valued inputs make ties common, so the gradient test also checks who gets them.
    x = np.random.default_rng(2).integers(-2, 3, shape).astype(np.float32)
    cotangent = _rand(
        tf.nn.max_pool2d(x, window, strides, padding).shape, 3
    )  # a non-uniform upstream gradient
    x_tf = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tf)
        want = tf.nn.max_pool2d(x_tf, window, strides, padding)
        loss = tf.reduce_sum(want * cotangent)
    want_grad = tape.gradient(loss, x_tf).numpy()

    def f(x):
        return max_pool2d(x, window, strides, padding)

    got, vjp = jax.vjp(f, jnp.asarray(x))
    np.testing.assert_array_equal(got, want.numpy())
    np.testing.assert_allclose(vjp(jnp.asarray(cotangent))[0], want_grad, atol=1e-6)


def test_max_pool2d_explicit_padding_matches_reduce_window():
    # ResNet's stem: 3x3, stride 2, one pixel of -inf padding on every side.
    x = jnp.asarray(_rand((2, 10, 11, 4), 4))
    pads = ((1, 1), (1, 1))

    def reference(x):
        return jax.lax.reduce_window(
            x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), *pads, (0, 0))
        )

    got = max_pool2d(x, 3, 2, pads)
    np.testing.assert_array_equal(got, reference(x))
    cotangent = jnp.asarray(_rand(got.shape, 5))
    np.testing.assert_allclose(
        jax.vjp(lambda x: max_pool2d(x, 3, 2, pads), x)[1](cotangent)[0],
        jax.vjp(reference, x)[1](cotangent)[0],
        atol=1e-6,
    )


def test_max_pool2d_bad_arguments():
    x = jnp.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="window"):
        max_pool2d(x, 6)
    with pytest.raises(ValueError, match="padding"):
        max_pool2d(x, 2, padding="FULL")
    with pytest.raises(ValueError, match="x must have rank 4"):
        max_pool2d(jnp.zeros((4, 4)), 2)
