"""conv_layers: each form builds the same parameters and computes the reference's values."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models import FCN16s
from jaxseg.nn import ASPP, LAYER_FORMS, conv_layers


def _primitives(fn, *args):
    return {e.primitive.name for e in jax.make_jaxpr(fn)(*args).jaxpr.eqns}


def test_default_is_the_reference_form():
    # One readable default on every backend: a model built without factories uses the ops
    # of `jaxseg.ops`, whatever the backend the test runs on.
    assert ASPP().conv is conv_layers("reference").conv
    assert FCN16s().conv_transpose is conv_layers("reference").conv_transpose


@pytest.mark.parametrize("form", sorted(LAYER_FORMS))
def test_aspp_of_every_form_matches_the_reference(form):
    # Separable ASPP: 1x1, depthwise dilated (rate 6 on 8x8: mostly padding) and pointwise convs.
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 6)).astype(np.float32)
    reference = ASPP(8, atrous_rates=(2, 6), separable=True)
    variables = reference.init(jax.random.key(1), x)
    other = ASPP(8, atrous_rates=(2, 6), separable=True, conv=conv_layers(form).conv)
    assert jax.tree.structure(other.init(jax.random.key(1), x)) == jax.tree.structure(variables)
    np.testing.assert_allclose(
        other.apply(variables, x), reference.apply(variables, x), rtol=1e-4, atol=1e-4
    )


def test_cpu_form_rewrites_convs_and_transposed_convs():
    images = jnp.zeros((1, 32, 32, 3))
    layers = conv_layers("cpu")
    small = dict(num_classes=3, fc_features=8)
    reference, cpu = (
        FCN16s(**small),
        FCN16s(**small, conv=layers.conv, conv_transpose=layers.conv_transpose),
    )
    variables = jax.eval_shape(reference.init, jax.random.key(0), images)
    ref_prims = _primitives(lambda v: reference.apply(v, images), variables)
    cpu_prims = _primitives(lambda v: cpu.apply(v, images), variables)
    assert "conv_general_dilated" in ref_prims
    # The CPU form of the 1x1 score convs is a GEMM (dot_general) instead of a convolution.
    assert "dot_general" in cpu_prims and "dot_general" not in ref_prims


def test_unknown_form_names_the_value_and_choices():
    with pytest.raises(ValueError, match="'gpu'.*cpu.*reference"):
        conv_layers("gpu")


def test_fcn_with_cpu_forms_has_the_reference_values_and_gradients():
    # 1x1 score convs as GEMMs and the learned 2x upsampling by output phase.
    images = np.random.default_rng(2).normal(size=(1, 32, 32, 3)).astype(np.float32)
    small = dict(num_classes=3, fc_features=8, zero_init_scores=False)
    layers = conv_layers("cpu")
    reference = FCN16s(**small)
    cpu = FCN16s(**small, conv=layers.conv, conv_transpose=layers.conv_transpose)
    variables = reference.init(jax.random.key(0), images)

    def loss(model, params):
        return jnp.sum(model.apply({"params": params}, images) ** 2)

    want, want_grads = jax.value_and_grad(functools.partial(loss, reference))(variables["params"])
    got, got_grads = jax.value_and_grad(functools.partial(loss, cpu))(variables["params"])
    np.testing.assert_allclose(got, want, rtol=1e-4)
    for g, w in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * float(np.abs(w).max()))
