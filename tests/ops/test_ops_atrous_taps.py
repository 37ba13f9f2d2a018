"""atrous_conv2d(impl="taps") (CPU's "auto") equals the plain XLA convolution, gradients too."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxseg.ops import atrous_conv2d
from jaxseg.ops._tap_conv import IM2COL_MIN_CHANNELS

TOL = {"rtol": 1e-4, "atol": 1e-4}
DIMS = ("NHWC", "HWIO", "NHWC")


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _primitives(fn, *args):
    return [e.primitive.name for e in jax.make_jaxpr(fn)(*args).jaxpr.eqns]


CASES = [
    # kernel hw, rate, stride, padding, groups (C = 4; groups 4 = depthwise)
    ((1, 1), 1, 1, "SAME", 1),
    ((1, 1), 1, 2, "SAME", 1),
    ((1, 1), 1, 1, ((1, 0), (2, 1)), 1),
    ((3, 3), 2, 1, "SAME", 1),
    ((3, 3), (3, 2), 1, "SAME", 1),
    ((3, 3), 3, 1, "VALID", 1),
    ((3, 3), 2, 1, ((1, 3), (2, 0)), 1),
    ((3, 2), 3, 1, "SAME", 1),
    ((3, 3), 1, 1, "SAME", 1),
    ((3, 3), 1, 2, "SAME", 1),
    ((3, 3), 9, 1, "SAME", 1),  # rate >= size: dead taps dropped, then a 1x1 matmul
    ((3, 3), 1, 1, "SAME", 4),
    ((3, 3), 2, 1, "SAME", 4),
    ((3, 3), 1, 2, "SAME", 4),
    ((3, 3), 1, (2, 1), ((0, 1), (1, 1)), 4),
    ((5, 5), 2, 1, "SAME", 4),
    ((3, 3), 2, 1, "VALID", 4),
]


@pytest.mark.parametrize("channels", [4, IM2COL_MIN_CHANNELS])
@pytest.mark.parametrize("kernel_hw, rate, stride, padding, groups", CASES)
def test_taps_match_lax_conv(kernel_hw, rate, stride, padding, groups, channels):
    if channels > 4 and (groups > 1 or kernel_hw == (1, 1)):
        pytest.skip("the channel threshold only matters for dense dilated convs")
    groups = channels if groups > 1 else 1
    x = _rand((2, 9, 8, channels), 0)
    k = _rand((*kernel_hw, channels // groups, 6 if groups == 1 else channels), 1) / channels
    rates = (rate, rate) if isinstance(rate, int) else rate
    strides = (stride, stride) if isinstance(stride, int) else stride

    def reference(a, b):
        return lax.conv_general_dilated(
            a,
            b,
            strides,
            padding,
            rhs_dilation=rates,
            dimension_numbers=DIMS,
            feature_group_count=groups,
        )

    ours = functools.partial(
        atrous_conv2d, rate=rate, stride=stride, padding=padding, feature_group_count=groups
    )
    want = reference(x, k)
    got = ours(x, k, impl="taps")
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL)
    cot = _rand(want.shape, 2)
    got_grads = jax.grad(lambda a, b: jnp.sum(ours(a, b, impl="taps") * cot), (0, 1))(x, k)
    want_grads = jax.grad(lambda a, b: jnp.sum(reference(a, b) * cot), (0, 1))(x, k)
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, **TOL)


def test_taps_rewrites_only_where_measured_faster():
    def prims(x_shape, k_shape, **kw):
        fn = lambda a, b: atrous_conv2d(a, b, impl="taps", **kw)
        return _primitives(fn, jnp.zeros(x_shape), jnp.zeros(k_shape))

    assert "conv_general_dilated" not in prims((1, 8, 8, 4), (1, 1, 4, 2))
    assert "conv_general_dilated" not in prims((1, 8, 8, 4), (3, 3, 1, 4), feature_group_count=4)
    wide = IM2COL_MIN_CHANNELS
    assert "conv_general_dilated" not in prims((1, 8, 8, wide), (3, 3, wide, 2), rate=2)
    # Few channels (dilated) and undilated dense 3x3: XLA's conv measured faster.
    assert "conv_general_dilated" in prims((1, 8, 8, 4), (3, 3, 4, 2), rate=2)
    assert "conv_general_dilated" in prims((1, 8, 8, wide), (3, 3, wide, 2))


def test_auto_is_taps_on_cpu_and_keeps_dtype():
    x = jnp.asarray(_rand((1, 8, 8, 4), 3), jnp.bfloat16)
    k = jnp.asarray(_rand((1, 1, 4, 2), 4))
    prims = _primitives(lambda a, b: atrous_conv2d(a, b, impl="auto"), x, k)
    assert ("conv_general_dilated" not in prims) == (jax.default_backend() == "cpu")
    assert atrous_conv2d(x, k, impl="auto").dtype == jnp.bfloat16
    dw = jnp.asarray(_rand((3, 3, 1, 4), 5))
    assert atrous_conv2d(x, dw, feature_group_count=4, impl="taps").dtype == jnp.bfloat16
