"""dense_crf rejects malformed input with a ValueError that names the problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.crf import CRFParams, dense_crf, dense_crf_batch

LOGITS = np.zeros((6, 8, 3), np.float32)
IMAGE = np.zeros((6, 8, 3), np.uint8)


@pytest.mark.parametrize(
    "logits, image, message",
    [
        (LOGITS, np.zeros((6, 9, 3), np.uint8), "same"),
        (LOGITS, np.zeros((6, 8), np.uint8), "image must be"),
        (LOGITS, np.zeros((6, 8, 4), np.uint8), "image must be"),
        (LOGITS[0], IMAGE, "logits must be"),
        (LOGITS.astype(np.int32), IMAGE, "floating"),
        (LOGITS, IMAGE.astype(np.int32), "uint8 or float"),
        (LOGITS, IMAGE.astype(bool), "uint8 or float"),
        (np.where(np.arange(3) == 1, np.nan, LOGITS), IMAGE, "NaN"),
        (LOGITS, np.full((6, 8, 3), 300.0, np.float32), r"\[0, 255\]"),
        (LOGITS, np.full((6, 8, 3), np.nan, np.float32), r"\[0, 255\]"),
    ],
    ids=[
        "size mismatch",
        "image rank",
        "image channels",
        "logits rank",
        "integer logits",
        "int32 image",
        "bool image",
        "nan logits",
        "image out of range",
        "nan image",
    ],
)
def test_bad_arrays(logits, image, message):
    with pytest.raises(ValueError, match=message):
        dense_crf(logits, image)


@pytest.mark.parametrize(
    "params",
    [
        dict(theta_alpha=0.0),
        dict(theta_beta=-1.0),
        dict(theta_gamma=float("nan")),
        dict(theta_alpha=float("inf")),
        dict(w_bilateral=-1.0),
        dict(w_gaussian=float("nan")),
        dict(num_iterations=-1),
        dict(num_iterations=2.5),
        dict(num_iterations=True),
        dict(theta_beta=np.ones(2)),
    ],
)
def test_bad_parameters_name_the_argument(params):
    (name,) = params
    with pytest.raises(ValueError, match=name):
        dense_crf(LOGITS, IMAGE, **params)
    with pytest.raises(ValueError, match=name):
        CRFParams(**params)


def test_batch_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        dense_crf_batch(LOGITS, IMAGE)


def test_float_image_in_unit_range_warns():
    with pytest.warns(UserWarning, match="0, 255"):
        dense_crf(LOGITS, np.full((6, 8, 3), 0.5, np.float32), w_bilateral=0, w_gaussian=0)


def test_traced_parameters_are_rejected():
    with pytest.raises(ValueError, match="theta_alpha"):
        jax.jit(lambda t: dense_crf(LOGITS, IMAGE, theta_alpha=t))(1.0)


def test_value_checks_also_run_on_device_arrays():
    with pytest.raises(ValueError, match="NaN"):
        dense_crf(jnp.full((6, 8, 3), jnp.nan), IMAGE)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        dense_crf(LOGITS, jnp.full((6, 8, 3), -1.0))
