"""atrous_conv2d drops taps that only read padding: same values and gradients, smaller conv."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxseg.ops import atrous_conv2d, cpu

TOL = {"rtol": 1e-4, "atol": 1e-4}
DIMS = ("NHWC", "HWIO", "NHWC")


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _same_pads(size, k_eff):
    total = k_eff - 1
    return total // 2, total - total // 2


def _reference(x, k, rate, pads, groups=1):
    """The full dilated conv straight from lax, every tap computed."""
    return lax.conv_general_dilated(
        x, k, (1, 1), pads, rhs_dilation=rate, dimension_numbers=DIMS, feature_group_count=groups
    )


def _conv_kernel_shapes(fn, *args):
    jaxpr = jax.make_jaxpr(fn)(*args)
    return [
        tuple(e.invars[1].aval.shape)
        for e in jaxpr.jaxpr.eqns
        if e.primitive.name == "conv_general_dilated"
    ]


@pytest.mark.parametrize("impl", ["xla", "space_to_batch", "cpu"])
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize(
    "size, rate",
    [((6, 6), (6, 6)), ((6, 6), (7, 7)), ((5, 9), (6, 6)), ((9, 5), (3, 5)), ((8, 8), (4, 4))],
)
def test_same_padding_values_and_gradients(size, rate, groups, impl):
    x = _rand((2, *size, 4), 0)
    k = _rand((3, 3, 4 // groups, 4), 1)
    cot = _rand((2, *size, 4), 2)
    pads = tuple(_same_pads(n, 2 * r + 1) for n, r in zip(size, rate, strict=True))

    def loss(conv, a, b):
        return jnp.sum(conv(a, b) * cot)

    if impl == "cpu":
        ours = functools.partial(cpu.atrous_conv2d, rate=rate, feature_group_count=groups)
    else:
        ours = functools.partial(atrous_conv2d, rate=rate, feature_group_count=groups, impl=impl)
    ref = functools.partial(_reference, rate=rate, pads=pads, groups=groups)
    np.testing.assert_allclose(ours(x, k), ref(x, k), **TOL)
    got = jax.grad(functools.partial(loss, ours), (0, 1))(x, k)
    want = jax.grad(functools.partial(loss, ref), (0, 1))(x, k)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, **TOL)


def test_explicit_and_asymmetric_padding():
    x, k = _rand((1, 5, 7, 2), 3), _rand((3, 3, 2, 3), 4)
    for pads in [((6, 6), (1, 9)), ((0, 12), (6, 0)), ((7, 7), (7, 7))]:
        got = atrous_conv2d(x, k, rate=6, padding=pads)
        np.testing.assert_allclose(got, _reference(x, k, (6, 6), pads), **TOL, err_msg=str(pads))


def test_rate_at_least_the_map_size_becomes_a_1x1_conv():
    # DeepLab v3+ ASPP at a 256 crop, output stride 16: rate 18 on a 16x16 map.
    x, k = jnp.zeros((1, 16, 16, 8)), jnp.zeros((3, 3, 8, 4))
    assert _conv_kernel_shapes(lambda a, b: atrous_conv2d(a, b, rate=18), x, k) == [(1, 1, 8, 4)]
    # Only along the short axis: 16 x 40 keeps the three taps along the width.
    x = jnp.zeros((1, 16, 40, 8))
    assert _conv_kernel_shapes(lambda a, b: atrous_conv2d(a, b, rate=18), x, k) == [(1, 3, 8, 4)]
    # Rates below the size keep the whole kernel.
    assert _conv_kernel_shapes(lambda a, b: atrous_conv2d(a, b, rate=12), x, k) == [(3, 3, 8, 4)]


def test_valid_padding_and_strides_untouched():
    x, k = _rand((1, 13, 13, 2), 5), _rand((3, 3, 2, 2), 6)
    got = atrous_conv2d(x, k, rate=6, padding="VALID")
    np.testing.assert_allclose(got, _reference(x, k, (6, 6), "VALID"), **TOL)
    strided = lambda a, b: atrous_conv2d(a, b, stride=2)
    assert _conv_kernel_shapes(strided, x, k) == [(3, 3, 2, 2)]
