"""Whole-image, sliding-window and multi-scale/flip prediction against symmetry identities."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from jaxseg import inference, ops


def _jitted(model, variables):
    return jax.jit(functools.partial(model.apply, variables, train=False))


def _image(height, width, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (height, width, 3)).astype(np.float32)


def test_bucket_size():
    assert inference.bucket_size(33, None) == 33
    assert [inference.bucket_size(s, 32) for s in (1, 32, 33, 500)] == [32, 32, 64, 512]
    assert [inference.bucket_size(s, (513, 257)) for s in (100, 257, 300, 513)] == [
        257,
        257,
        513,
        513,
    ]
    assert inference.bucket_size(600, (513, 257)) == 1026


def test_bucket_padding_does_not_change_pointwise_logits(pointwise):
    model, variables = pointwise
    images = np.stack([_image(21, 45, 0), _image(21, 45, 1)])
    expected = model.apply(variables, images)
    got = inference.whole_image_logits(_jitted(model, variables), images, bucket=32, pad_value=7.0)
    assert got.shape == (2, 21, 45, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_padding_uses_pad_value_per_channel():
    seen = []

    def apply_fn(images):
        seen.append(np.asarray(images))
        return images

    image = np.full((1, 3, 2, 3), 9.0, np.float32)
    inference.whole_image_logits(apply_fn, image, bucket=4, pad_value=(1.0, 2.0, 3.0))
    padded = seen[0][0]
    assert padded.shape == (4, 4, 3)
    np.testing.assert_array_equal(padded[:3, :2], 9.0)
    np.testing.assert_array_equal(padded[3, 0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(padded[0, 3], [1.0, 2.0, 3.0])


def test_network_compiles_once_per_bucket(pointwise):
    model, variables = pointwise
    traces = []

    @jax.jit
    def apply_fn(images):
        traces.append(images.shape)  # runs only while tracing, i.e. once per compiled shape
        return model.apply(variables, images)

    for height, width in [(40, 50), (60, 33), (64, 64), (17, 3)]:
        out = inference.whole_image_logits(apply_fn, _image(height, width)[None], bucket=64)
        assert out.shape == (1, height, width, 5)
    assert traces == [(1, 64, 64, 3)]


def test_sliding_window_compiles_once_for_all_sizes(pointwise):
    model, variables = pointwise
    traces = []

    @jax.jit
    def apply_fn(images):
        traces.append(images.shape)
        return model.apply(variables, images)

    for height, width in [(30, 41), (16, 16), (9, 20)]:
        out = inference.sliding_window_logits(apply_fn, _image(height, width), 16, 8, batch_size=3)
        assert out.shape == (height, width, 5)
    assert traces == [(3, 16, 16, 3)]


def test_sliding_window_on_crop_sized_image_equals_whole_image(mirror):
    model, variables = mirror
    image = _image(24, 20)
    expected = model.apply(variables, image[None])[0]
    got = inference.sliding_window_logits(_jitted(model, variables), image, (24, 20), batch_size=2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("size", "crop", "stride"),
    [((37, 50), 16, 10), ((37, 50), (16, 24), (5, 24)), ((10, 7), 16, 8), ((33, 33), 11, 11)],
)
def test_overlap_averaging_equals_whole_image_for_pointwise_model(pointwise, size, crop, stride):
    model, variables = pointwise
    image = _image(*size)
    expected = model.apply(variables, image[None])[0]
    got = inference.sliding_window_logits(_jitted(model, variables), image, crop, stride)
    assert got.shape == (*size, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_overlap_counts_with_a_position_revealing_model():
    # The network answers 1 everywhere: any pixel missed or counted wrongly shows as != 1.
    ones = lambda images: jnp.ones(images.shape[:3] + (2,))
    got = inference.sliding_window_logits(ones, _image(29, 23), (8, 6), (3, 5), batch_size=5)
    np.testing.assert_array_equal(got, np.ones((29, 23, 2)))


def test_flip_tta_of_mirror_symmetric_model_equals_plain(mirror):
    model, variables = mirror
    apply_fn = _jitted(model, variables)
    image = _image(18, 26)
    plain = model.apply(variables, image[None])[0]
    # The flip identity would be broken by one-sided bucket padding, so no bucket here.
    logits = inference.multiscale_flip_logits(
        apply_fn, image, scales=(1.0,), flip=True, average="logits", bucket=None
    )
    np.testing.assert_allclose(logits, plain, rtol=1e-5, atol=1e-5)
    log_probs = inference.multiscale_flip_logits(
        apply_fn, image, scales=(1.0,), flip=True, bucket=None
    )
    np.testing.assert_allclose(log_probs, jax.nn.log_softmax(plain), rtol=1e-5, atol=1e-5)
    windowed = inference.multiscale_flip_logits(
        apply_fn, image, (1.0,), True, average="logits", sliding_window=((18, 26), None)
    )
    np.testing.assert_allclose(windowed, plain, rtol=1e-5, atol=1e-5)


def test_single_scale_without_flip_equals_plain(mirror):
    model, variables = mirror
    image = _image(30, 22)
    apply_fn = _jitted(model, variables)
    plain = inference.whole_image_logits(apply_fn, image[None], bucket=32)[0]
    got = inference.multiscale_flip_logits(apply_fn, image, (1.0,), False, average="logits")
    np.testing.assert_allclose(got, plain, rtol=1e-6, atol=1e-6)
    got = inference.multiscale_flip_logits(apply_fn, image, (1.0,), False)
    np.testing.assert_allclose(got, jax.nn.log_softmax(plain), rtol=1e-5, atol=1e-5)


def test_multiscale_matches_tensorflow_resizing(pointwise):
    # Reference: TF2 bilinear resizing (half-pixel centres, no antialias) around the same 1x1
    # conv, evaluated in numpy; scales 0.5 and 1.0, flip (a no-op for a 1x1 conv) included.
    model, variables = pointwise
    image = _image(20, 14) / 255.0
    kernel = np.asarray(variables["params"]["Conv_0"]["kernel"])[0, 0]
    bias = np.asarray(variables["params"]["Conv_0"]["bias"])

    def resize(x, size):
        return tf.image.resize(x, size, method="bilinear", antialias=False).numpy()

    def net(x):
        return x @ kernel + bias

    small = resize(image, (10, 7))
    per_scale = [resize(net(small), (20, 14)), net(image)]
    expected_logits = np.mean(per_scale, axis=0)
    probs = [np.exp(z) / np.exp(z).sum(-1, keepdims=True) for z in np.float64(per_scale)]
    expected_log_probs = np.log(np.mean(probs, axis=0))

    apply_fn = _jitted(model, variables)
    got = inference.multiscale_flip_logits(apply_fn, image, (0.5, 1.0), True, average="logits")
    np.testing.assert_allclose(got, expected_logits, rtol=1e-4, atol=1e-4)
    got = inference.multiscale_flip_logits(apply_fn, image, (0.5, 1.0), True)
    np.testing.assert_allclose(got, expected_log_probs, rtol=1e-4, atol=1e-4)


def test_crf_step_receives_uint8_image_and_returns_log_marginals(monkeypatch):
    calls = []

    def dense_crf(logits, image, **params):
        calls.append((np.asarray(logits), image, params))
        return np.full(logits.shape, 0.5, np.float32)

    monkeypatch.setattr(inference, "dense_crf", dense_crf)
    image = _image(6, 5)
    image[0, 0] = 300.0  # out-of-range values are clipped for the CRF's colour kernel
    apply_fn = lambda x: jnp.stack([x[..., 0], -x[..., 0]], axis=-1)
    got = inference.multiscale_flip_logits(
        apply_fn, image, (1.0,), False, bucket=None, crf={"num_iterations": 3}
    )
    ((logits, crf_image, params),) = calls
    assert params == {"num_iterations": 3}
    assert crf_image.dtype == np.uint8 and crf_image.shape == (6, 5, 3)
    assert crf_image[0, 0, 0] == 255
    np.testing.assert_array_equal(crf_image[1:], np.round(image[1:]).astype(np.uint8))
    assert logits.shape == (6, 5, 2)
    np.testing.assert_allclose(got, np.log(0.5), rtol=1e-6)


@pytest.mark.parametrize(("in_size", "out_size"), [(7, 13), (13, 7), (5, 5), (1, 4), (6, 1)])
def test_resize_matrix_matches_tensorflow(in_size, out_size):
    x = np.random.default_rng(0).normal(size=(1, in_size, 1, 2)).astype(np.float32)
    half_pixel = tf.image.resize(x, (out_size, 1), method="bilinear", antialias=False)
    got = np.einsum("oi,bijc->bojc", ops.bilinear_resize_matrix(in_size, out_size), x)
    np.testing.assert_allclose(got, half_pixel.numpy(), rtol=1e-5, atol=1e-6)
    corners = tf.compat.v1.image.resize_bilinear(x, (out_size, 1), align_corners=True)
    got = np.einsum("oi,bijc->bojc", ops.bilinear_resize_matrix(in_size, out_size, True), x)
    np.testing.assert_allclose(got, corners.numpy(), rtol=1e-5, atol=1e-6)


def test_tta_glue_compiles_once_per_bucket(pointwise):
    # Not only the network: resizing, flipping, padding and averaging run at bucket shapes, so
    # once warm, images of other sizes in the same buckets trigger no XLA compilation at all.
    model, variables = pointwise
    apply_fn = _jitted(model, variables)
    tta = dict(scales=(0.5, 1.0), flip=True, bucket=32)
    inference.multiscale_flip_logits(apply_fn, _image(40, 50), **tta)
    inference.sliding_window_logits(apply_fn, _image(61, 45), 16, 12)
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        tta_out = inference.multiscale_flip_logits(apply_fn, _image(37, 60), **tta)
        windowed = inference.sliding_window_logits(apply_fn, _image(50, 35), 16, 12)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert tta_out.shape == (37, 60, 5) and windowed.shape == (50, 35, 5)
    assert compiles == []


@pytest.mark.parametrize("align_corners", [False, True])
def test_resize_matrix_agrees_with_ops_resize(align_corners):
    # Inference resizes by matrices (to keep bucket shapes); they must stay the ops' convention.
    from jaxseg.ops import resize_bilinear

    x = np.random.default_rng(1).normal(size=(1, 9, 14, 3)).astype(np.float32)
    expected = resize_bilinear(jnp.asarray(x), (5, 23), align_corners=align_corners)
    rows = ops.bilinear_resize_matrix(9, 5, align_corners)
    cols = ops.bilinear_resize_matrix(14, 23, align_corners)
    got = np.einsum("oh,bhwc,pw->bopc", rows, x, cols)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_crf_without_iterations_is_log_softmax():
    # The real CRF: with 0 mean-field iterations its marginals are softmax(logits).
    logits = np.random.default_rng(2).normal(size=(6, 5, 3)).astype(np.float32)
    got = inference.crf_refine(logits, _image(6, 5), num_iterations=0)
    np.testing.assert_allclose(got, jax.nn.log_softmax(logits), rtol=1e-5, atol=1e-5)
