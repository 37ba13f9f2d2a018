"""jaxseg.losses against TensorFlow's cross entropy, numpy formulas and hand-computed maps."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from scipy import ndimage

from jaxseg import losses

tf.config.set_visible_devices([], "GPU")


def _random_batch(seed, shape=(2, 5, 4), num_classes=6, ignore_fraction=0.25):
    rng = np.random.default_rng(seed)
    logits = (3.0 * rng.standard_normal((*shape, num_classes))).astype(np.float32)
    labels = rng.integers(0, num_classes, shape).astype(np.int32)
    labels[rng.random(shape) < ignore_fraction] = 255
    return logits, labels


def _np_pixel_ce(logits, labels):
    """-log softmax(logits)[label] per pixel, float64; 0 where the label is not a class."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    log_probs = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    out = np.zeros(labels.shape)
    for idx in np.ndindex(labels.shape):
        if 0 <= labels[idx] < logits.shape[-1]:
            out[idx] = -log_probs[idx][labels[idx]]
    return out


# -- softmax_cross_entropy ------------------------------------------------------------------


def test_cross_entropy_matches_tf_mean_over_valid_pixels():
    logits, labels = _random_batch(0)
    keep = labels != 255
    expected = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels[keep], logits=logits[keep])
    ).numpy()
    loss = jax.jit(losses.softmax_cross_entropy)(logits, labels)
    assert loss.dtype == jnp.float32 and loss.shape == ()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_cross_entropy_with_class_and_pixel_weights_matches_numpy():
    logits, labels = _random_batch(1)
    rng = np.random.default_rng(1)
    class_weights = rng.uniform(0.1, 3.0, 6).astype(np.float32)
    pixel_weights = rng.uniform(0.0, 2.0, labels.shape).astype(np.float32)
    valid = labels != 255
    per_pixel = _np_pixel_ce(logits, labels)
    w = np.where(valid, class_weights[np.where(valid, labels, 0)], 0.0) * pixel_weights
    # DeepLab convention: divide by the number of valid pixels, not by the sum of weights.
    expected = np.sum(w * per_pixel) / valid.sum()
    loss = jax.jit(losses.softmax_cross_entropy)(
        logits, labels, class_weights=class_weights, pixel_weights=pixel_weights
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    only_class = jax.jit(losses.softmax_cross_entropy)(logits, labels, class_weights=class_weights)
    w_class = np.where(valid, class_weights[np.where(valid, labels, 0)], 0.0)
    np.testing.assert_allclose(only_class, np.sum(w_class * per_pixel) / valid.sum(), rtol=1e-5)


def _np_top_k_loss(logits, labels, top_k_percent):
    """Sort every pixel of the batch by loss (ignored last), keep k, mean over kept valid."""
    per_pixel = _np_pixel_ce(logits, labels).ravel()
    valid = (labels != 255).ravel()
    k = max(1, math.floor(top_k_percent * labels.size + 1e-6))
    order = sorted(range(labels.size), key=lambda i: (valid[i], per_pixel[i]), reverse=True)
    kept = [i for i in order[:k] if valid[i]]
    return sum(per_pixel[i] for i in kept) / len(kept), kept


@pytest.mark.parametrize("top_k_percent", [0.05, 0.25, 0.5, 0.9])
def test_top_k_matches_numpy_sort(top_k_percent):
    # 40% ignored, so 0.9 keeps every valid pixel (k > num_valid)
    logits, labels = _random_batch(2, shape=(2, 6, 5), ignore_fraction=0.4)
    expected, _ = _np_top_k_loss(logits, labels, top_k_percent)
    loss_fn = jax.jit(functools.partial(losses.softmax_cross_entropy, top_k_percent=top_k_percent))
    np.testing.assert_allclose(loss_fn(logits, labels), expected, rtol=1e-5)


def test_top_k_gradient_flows_only_to_kept_pixels():
    logits, labels = _random_batch(3, shape=(2, 6, 5))
    _, kept = _np_top_k_loss(logits, labels, 0.2)
    grad_fn = jax.jit(jax.grad(functools.partial(losses.softmax_cross_entropy, top_k_percent=0.2)))
    grad = grad_fn(logits, labels)
    # d(mean CE)/d logits = (softmax - one_hot) / num_kept at kept pixels, 0 elsewhere
    flat_logits = logits.reshape(-1, 6).astype(np.float64)
    probs = np.exp(flat_logits - flat_logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    expected = np.zeros_like(flat_logits)
    for i in kept:
        expected[i] = probs[i] - np.eye(6)[labels.ravel()[i]]
    expected /= len(kept)
    np.testing.assert_allclose(grad.reshape(-1, 6), expected, atol=1e-6)


def test_top_k_with_tied_losses_equals_exact_top_k():
    labels = np.zeros((1, 4, 5), np.int32)
    labels[0, 0] = 255  # 15 valid pixels, all with loss log(4) at zero logits
    logits = np.zeros((1, 4, 5, 4), np.float32)
    loss_fn = functools.partial(losses.softmax_cross_entropy, top_k_percent=0.5)
    loss, grad = jax.jit(jax.value_and_grad(loss_fn))(logits, labels)
    np.testing.assert_allclose(loss, np.log(4.0), rtol=1e-6)
    # k = 10 of 15 tied pixels: the gradient is shared equally, 1/15 per valid pixel.
    expected = np.where((labels != 255)[..., None], (0.25 - np.eye(4)[0]) / 15, 0.0)
    np.testing.assert_allclose(grad, expected, atol=1e-7)


def test_bf16_logits_give_float32_loss():
    logits, labels = _random_batch(4)
    logits_bf16 = jnp.asarray(logits, jnp.bfloat16)
    loss = jax.jit(losses.softmax_cross_entropy)(logits_bf16, labels)
    assert loss.dtype == jnp.float32
    rounded = np.asarray(logits_bf16.astype(jnp.float32))
    keep = labels != 255
    expected = np.mean(_np_pixel_ce(rounded, labels)[keep])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    grad = jax.jit(jax.grad(lambda x: losses.softmax_cross_entropy(x, labels)))(logits_bf16)
    assert grad.dtype == jnp.bfloat16
    assert jax.jit(losses.dice_loss)(logits_bf16, labels).dtype == jnp.float32


def test_mask_and_out_of_range_labels_are_excluded():
    logits, labels = _random_batch(5, shape=(3, 4, 4))
    labels[0, 0, 0] = 6  # not a class (C = 6) and not ignore: treated as ignored
    labels[0, 0, 1] = -3
    mask = np.array([True, False, True])
    keep = (labels != 255) & (labels < 6) & (labels >= 0) & mask[:, None, None]
    expected = np.mean(_np_pixel_ce(logits, labels)[keep])
    loss = jax.jit(losses.softmax_cross_entropy)(logits, labels, mask=mask)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_all_ignored_gives_zero_loss_and_finite_gradients():
    logits = np.full((1, 2, 2, 3), np.nan, np.float32)  # garbage in padding must not leak
    labels = np.full((1, 2, 2), 255, np.int32)
    for top_k in (1.0, 0.5):
        loss_fn = functools.partial(losses.softmax_cross_entropy, top_k_percent=top_k)
        loss, grad = jax.jit(jax.value_and_grad(loss_fn))(np.zeros_like(logits), labels)
        assert loss == 0.0 and np.all(grad == 0.0)
    assert jax.jit(losses.softmax_cross_entropy)(logits, labels) == 0.0


def test_gradients_finite_for_large_logits():
    logits, labels = _random_batch(6)
    logits = 1e4 * logits
    for fn in (
        losses.softmax_cross_entropy,
        functools.partial(losses.softmax_cross_entropy, top_k_percent=0.3),
        losses.dice_loss,
    ):
        grad = jax.jit(jax.grad(fn))(logits, labels)
        assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("top_k_percent", [1.0, 0.3])
def test_cross_entropy_under_jit_on_batch_sharded_over_eight_devices(top_k_percent):
    logits, labels = _random_batch(9, shape=(8, 4, 3))
    expected = (
        np.mean(_np_pixel_ce(logits, labels)[labels != 255])
        if top_k_percent == 1.0
        else _np_top_k_loss(logits, labels, top_k_percent)[0]
    )
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))
    loss_fn = functools.partial(losses.softmax_cross_entropy, top_k_percent=top_k_percent)
    loss = jax.jit(loss_fn)(jax.device_put(logits, sharding), jax.device_put(labels, sharding))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


# -- dice_loss -------------------------------------------------------------------------------


def test_dice_matches_numpy_loops():
    logits, labels = _random_batch(7)
    num_classes = logits.shape[-1]
    x = logits.astype(np.float64)
    probs = np.exp(x - x.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    scores = []
    for c in range(num_classes):
        inter = p_sum = g_sum = 0.0
        for idx in np.ndindex(labels.shape):
            if labels[idx] == 255:
                continue
            g = float(labels[idx] == c)
            inter += probs[idx][c] * g
            p_sum += probs[idx][c]
            g_sum += g
        scores.append((2 * inter + 0.5) / (p_sum + g_sum + 0.5))
    expected = 1.0 - np.mean(scores)
    loss = jax.jit(functools.partial(losses.dice_loss, smooth=0.5))(logits, labels)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_dice_is_zero_for_perfect_prediction():
    labels = np.array([[[0, 1], [2, 255]]], np.int32)
    logits = 50.0 * np.eye(3, dtype=np.float32)[labels % 3]
    np.testing.assert_allclose(jax.jit(losses.dice_loss)(logits, labels), 0.0, atol=1e-6)


# -- unet_weight_map -------------------------------------------------------------------------


def _two_squares():
    labels = np.zeros((30, 40), np.int32)
    labels[10:20, 5:15] = 1  # square A: columns 5..14
    labels[10:20, 26:36] = 1  # square B: columns 26..35
    return labels


def test_unet_weight_map_between_two_squares_hand_computed():
    labels = _two_squares()
    w = losses.unet_weight_map(labels, w0=10.0, sigma=5.0)
    assert w.dtype == np.float32 and w.shape == labels.shape
    # 1200 pixels: 200 foreground, 1000 background, 2 classes -> w_c = 1200 / (2 * count)
    w_bg, w_fg = 1200 / (2 * 1000), 1200 / (2 * 200)
    # (15, 20): nearest pixels of A and B are (15, 14) and (15, 26): d1 = d2 = 6
    np.testing.assert_allclose(w[15, 20], w_bg + 10.0 * np.exp(-(12.0**2) / 50.0), rtol=1e-6)
    # (5, 20): nearest are the corners (10, 14) and (10, 26): d1 = d2 = sqrt(25 + 36)
    d = math.sqrt(61.0)
    np.testing.assert_allclose(w[5, 20], w_bg + 10.0 * np.exp(-((2 * d) ** 2) / 50.0), rtol=1e-6)
    # (15, 2): 3 from A, 24 from B
    np.testing.assert_allclose(w[15, 2], w_bg + 10.0 * np.exp(-(27.0**2) / 50.0), rtol=1e-6)
    # inside the objects: class term only
    np.testing.assert_allclose(w[labels == 1], w_fg)

    unbalanced = losses.unet_weight_map(labels, class_balance=False)
    np.testing.assert_allclose(unbalanced[15, 20], 1.0 + 10.0 * np.exp(-(12.0**2) / 50.0))
    np.testing.assert_allclose(unbalanced[12, 7], 1.0)


def test_unet_weight_map_matches_brute_force_distances():
    rng = np.random.default_rng(8)
    labels = np.zeros((2, 16, 18), np.int32)
    for b in range(2):
        for _ in range(4):
            r, c = rng.integers(0, 13), rng.integers(0, 15)
            labels[b, r : r + 3, c : c + 3] = rng.integers(1, 3)
    labels[1, 0, 0] = 255
    w = losses.unet_weight_map(labels, w0=7.0, sigma=3.0, class_balance=False)
    assert w.shape == labels.shape
    for b in range(2):
        # instance = 4-connected component of one class, as documented
        instances = []
        for c in (1, 2):
            comp, n = ndimage.label(labels[b] == c)
            instances += [np.argwhere(comp == i) for i in range(1, n + 1)]
        assert len(instances) >= 2
        for y, x in np.ndindex(labels[b].shape):
            if labels[b, y, x] == 255:
                assert w[b, y, x] == 0.0
                continue
            expected = 1.0
            if labels[b, y, x] == 0:
                dists = sorted(
                    min(math.hypot(y - py, x - px) for py, px in pts) for pts in instances
                )
                expected += 7.0 * math.exp(-((dists[0] + dists[1]) ** 2) / 18.0)
            assert w[b, y, x] == pytest.approx(expected, rel=1e-5), (b, y, x)


def test_unet_weight_map_single_object_has_no_border_term():
    labels = np.zeros((8, 8), np.int32)
    labels[2:4, 2:4] = 1
    w = losses.unet_weight_map(labels, class_balance=False)
    np.testing.assert_array_equal(w, np.ones_like(w))


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logits_shape", "labels", "kwargs", "match"),
    [
        ((2, 4, 4), np.zeros((2, 4), np.int32), {}, "logits"),
        ((2, 4, 4, 3), np.zeros((2, 4, 4, 1), np.int32), {}, "labels"),
        ((2, 4, 4, 3), np.zeros((2, 4, 4), np.float32), {}, "labels"),
        ((2, 4, 4, 3), np.zeros((2, 4, 5), np.int32), {}, "logits"),
        ((2, 4, 4, 3), np.zeros((2, 4, 4), np.int32), {"top_k_percent": 0.0}, "top_k_percent"),
        ((2, 4, 4, 3), np.zeros((2, 4, 4), np.int32), {"top_k_percent": 1.5}, "top_k_percent"),
        ((2, 4, 4, 3), np.zeros((2, 4, 4), np.int32), {"class_weights": np.ones(4)}, "class_w"),
        (
            (2, 4, 4, 3),
            np.zeros((2, 4, 4), np.int32),
            {"pixel_weights": np.ones((2, 4))},
            "pixel_weights",
        ),
        ((2, 4, 4, 3), np.zeros((2, 4, 4), np.int32), {"mask": np.ones(3, bool)}, "mask"),
    ],
)
def test_cross_entropy_bad_input(logits_shape, labels, kwargs, match):
    logits = np.zeros(logits_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        jax.jit(lambda x, y: losses.softmax_cross_entropy(x, y, **kwargs))(logits, labels)


def test_dice_and_weight_map_bad_input():
    with pytest.raises(ValueError, match="smooth"):
        losses.dice_loss(np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 2), np.int32), smooth=-1.0)
    with pytest.raises(ValueError, match="labels"):
        losses.dice_loss(np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="labels"):
        losses.unet_weight_map(np.zeros((2, 2, 2, 2), np.int32))
    with pytest.raises(ValueError, match="labels"):
        losses.unet_weight_map(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="sigma"):
        losses.unet_weight_map(np.zeros((4, 4), np.int32), sigma=0.0)
