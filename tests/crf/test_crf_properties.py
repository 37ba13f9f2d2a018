"""Textbook properties of dense_crf, its batched and jitted forms, and the exact CRF."""

import dataclasses

import jax
import numpy as np
import pytest
from crf_inputs import degraded_logits, photo, segment_labels

from jaxseg.crf import (
    DEEPLAB_V1_LARGEFOV,
    DEEPLAB_V2_RESNET,
    CRFParams,
    dense_crf,
    dense_crf_batch,
    exact_dense_crf,
)

HEIGHT, WIDTH, CLASSES = 30, 40, 4


def _inputs(name="astronaut"):
    image = photo(name, HEIGHT, WIDTH)
    return degraded_logits(image, CLASSES, blur_sigma=3.0), image


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_output_is_a_distribution_per_pixel():
    logits, image = _inputs()
    q = dense_crf(logits, image)
    assert q.shape == logits.shape and q.dtype == np.float32
    np.testing.assert_allclose(np.asarray(q).sum(-1), 1.0, atol=1e-5)
    assert np.all(np.asarray(q) >= 0)


@pytest.mark.parametrize(
    "params",
    [dict(num_iterations=0), dict(w_bilateral=0.0, w_gaussian=0.0)],
    ids=["no iterations", "no pairwise terms"],
)
def test_without_inference_the_output_is_softmax(params):
    logits, image = _inputs()
    np.testing.assert_allclose(dense_crf(logits, image, **params), _softmax(logits), atol=1e-6)


def test_crf_recovers_the_segmentation_the_unaries_were_degraded_from():
    logits, image = _inputs("chelsea")
    clean = segment_labels(image, CLASSES)
    before = np.mean(logits.argmax(-1) == clean)
    after = np.mean(np.asarray(dense_crf(logits, image)).argmax(-1) == clean)
    assert after > before + 0.1


def test_float_image_equals_uint8_image():
    logits, image = _inputs()
    np.testing.assert_allclose(
        dense_crf(logits, image.astype(np.float32)), dense_crf(logits, image), atol=1e-6
    )


def test_jit_and_batch_forms_match_single_images():
    images = np.stack([photo(n, HEIGHT, WIDTH) for n in ("astronaut", "coffee", "chelsea")])
    logits = np.stack([degraded_logits(i, CLASSES, blur_sigma=3.0) for i in images])
    single = np.stack([np.asarray(dense_crf(x, i)) for x, i in zip(logits, images, strict=True)])

    np.testing.assert_allclose(dense_crf_batch(logits, images), single, atol=1e-5)
    # Under jit the lattice size cannot be read, so a run-time switch picks the capacity
    # (dense_crf_batch under jit maps the same function over the batch).
    jitted = jax.jit(lambda x, i: dense_crf(x, i))(logits[1], images[1])
    np.testing.assert_allclose(jitted, single[1], atol=1e-5)


def test_lattice_crf_is_close_to_the_exact_crf():
    """The lattice's kernel error (5-10%) changes few labels: 96-97% agree on tiny photos."""
    logits, image = _inputs()
    lattice = np.asarray(dense_crf(logits, image)).argmax(-1)
    exact = np.asarray(exact_dense_crf(logits, image)).argmax(-1)
    assert np.mean(lattice == exact) > 0.9


def test_presets():
    assert dataclasses.asdict(DEEPLAB_V2_RESNET) == dataclasses.asdict(CRFParams())
    assert (CRFParams().w_bilateral, CRFParams().theta_alpha, CRFParams().theta_beta) == (4, 67, 3)
    assert (CRFParams().w_gaussian, CRFParams().theta_gamma) == (3, 1)
    v1 = DEEPLAB_V1_LARGEFOV
    assert (v1.w_bilateral, v1.theta_alpha, v1.theta_beta, v1.w_gaussian, v1.theta_gamma) == (
        4,
        121,
        5,
        3,
        3,
    )
