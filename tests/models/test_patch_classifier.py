"""A patch classifier and its convolutionalized version give the same score for every patch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models import PatchClassifier


def test_fully_convolutional_equals_sliding_window(helpers):
    model = PatchClassifier(
        num_classes=5, patch_size=32, conv_features=(8, 16), hidden_features=(32,)
    )
    variables = helpers.random_variables(model, (1, 32, 32, 3))
    image = jnp.asarray(np.random.default_rng(0).normal(size=(1, 52, 60, 3)), jnp.float32)
    stride, size = model.patch_stride, model.patch_size
    assert stride == 4

    fcn, fcn_params = model.to_fully_convolutional(variables["params"])
    dense = jax.jit(fcn.apply)({"params": fcn_params}, image)
    rows, cols = (52 - size) // stride + 1, (60 - size) // stride + 1
    assert dense.shape == (1, rows, cols, 5)

    patches = jnp.stack(
        [
            image[0, i * stride : i * stride + size, j * stride : j * stride + size]
            for i in range(rows)
            for j in range(cols)
        ]
    )
    per_patch = jax.jit(model.apply)(variables, patches)
    np.testing.assert_allclose(dense.reshape(-1, 5), per_patch, rtol=1e-5, atol=1e-5)


def test_patch_size_is_enforced(helpers):
    model = PatchClassifier(num_classes=5, patch_size=32)
    with pytest.raises(ValueError, match="patches must be 32x32"):
        helpers.abstract_variables(model, (1, 40, 32, 3))
