"""jaxseg.ops.cpu.atrous_conv2d (the tap and region forms) equals the plain XLA convolution,
gradients too; the reference atrous_conv2d is one XLA convolution on every backend."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxseg.ops import atrous_conv2d, cpu
from jaxseg.ops.cpu.taps import REGION_MAX_LIVE_FRACTION, _region_stats

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


@pytest.mark.parametrize("kernel_hw, rate, stride, padding, groups", CASES)
def test_taps_match_lax_conv(kernel_hw, rate, stride, padding, groups):
    channels = 4
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
        cpu.atrous_conv2d, rate=rate, stride=stride, padding=padding, feature_group_count=groups
    )
    want = reference(x, k)
    got = ours(x, k)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL)
    cot = _rand(want.shape, 2)
    got_grads = jax.grad(lambda a, b: jnp.sum(ours(a, b) * cot), (0, 1))(x, k)
    want_grads = jax.grad(lambda a, b: jnp.sum(reference(a, b) * cot), (0, 1))(x, k)
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, **TOL)


def test_taps_rewrites_only_where_measured_faster():
    def prims(x_shape, k_shape, **kw):
        fn = lambda a, b: cpu.atrous_conv2d(a, b, **kw)
        return _primitives(fn, jnp.zeros(x_shape), jnp.zeros(k_shape))

    assert "conv_general_dilated" not in prims((1, 8, 8, 4), (1, 1, 4, 2))
    assert "conv_general_dilated" not in prims((1, 8, 8, 4), (3, 3, 1, 4), feature_group_count=4)
    # Rate 5 on 8x8: a third of the (output, tap) pairs in bounds, so one GEMM per region.
    assert "conv_general_dilated" not in prims((1, 8, 8, 4), (3, 3, 4, 2), rate=5)
    # Rate 24 on 65x65: 57% in bounds, bands of 17-24 pixels: regions. Rate 6 on 16x16: 56%
    # in bounds but bands of 4-6 pixels; rate 2 on 8x8 (69% in bounds); undilated: XLA.
    assert "conv_general_dilated" not in prims((1, 65, 65, 4), (3, 3, 4, 2), rate=24)
    assert "conv_general_dilated" in prims((1, 16, 16, 4), (3, 3, 4, 2), rate=6)
    assert "conv_general_dilated" in prims((1, 8, 8, 4), (3, 3, 4, 2), rate=2)
    assert "conv_general_dilated" in prims((1, 8, 8, 4), (3, 3, 4, 2))


def test_reference_is_one_conv_everywhere_and_cpu_form_keeps_dtype():
    x = jnp.asarray(_rand((1, 8, 8, 4), 3), jnp.bfloat16)
    k = jnp.asarray(_rand((1, 1, 4, 2), 4))
    assert "conv_general_dilated" in _primitives(lambda a, b: atrous_conv2d(a, b), x, k)
    assert "conv_general_dilated" not in _primitives(lambda a, b: cpu.atrous_conv2d(a, b), x, k)
    assert cpu.atrous_conv2d(x, k).dtype == jnp.bfloat16
    dw = jnp.asarray(_rand((3, 3, 1, 4), 5))
    assert cpu.atrous_conv2d(x, dw, feature_group_count=4).dtype == jnp.bfloat16


def _numpy_live_fraction(x_hw, kernel_hw, rates, pads):
    """Share of (output pixel, tap) pairs whose read lands inside the map, by brute force."""
    padded = np.zeros([n + lo + hi for n, (lo, hi) in zip(x_hw, pads, strict=True)], bool)
    (top, _), (left, _) = pads
    padded[top : top + x_hw[0], left : left + x_hw[1]] = True
    out = [p - (k - 1) * r for p, k, r in zip(padded.shape, kernel_hw, rates, strict=True)]
    reads = [
        padded[i * rates[0] : i * rates[0] + out[0], j * rates[1] : j * rates[1] + out[1]]
        for i in range(kernel_hw[0])
        for j in range(kernel_hw[1])
    ]
    return np.mean(reads)


REGION_CASES = [
    # x hw, kernel hw, rates, pads: each with at most half of the im2col in bounds
    ((16, 16), (3, 3), (12, 12), ((12, 12), (12, 12))),  # ASPP rate 12 at OS16, 256 crop
    ((9, 8), (3, 3), (5, 5), ((5, 5), (5, 5))),
    ((9, 8), (3, 3), (6, 4), ((6, 6), (4, 4))),
    ((9, 7), (3, 2), (5, 6), ((3, 7), (6, 0))),  # asymmetric pads, non-square kernel
    ((7, 9), (3, 3), (2, 5), ((4, 0), (5, 5))),  # some regions with a single tap
]


@pytest.mark.parametrize("x_hw, kernel_hw, rates, pads", REGION_CASES)
def test_mostly_padding_dilated_convs_go_by_region_and_match_lax_conv(x_hw, kernel_hw, rates, pads):
    channels = 16
    x = _rand((2, *x_hw, channels), 0)
    k = _rand((*kernel_hw, channels, 5), 1) / channels
    live, _ = _region_stats(x.shape, k.shape, rates, pads)
    assert live == pytest.approx(_numpy_live_fraction(x_hw, kernel_hw, rates, pads))
    assert live <= REGION_MAX_LIVE_FRACTION  # so these exercise the region split

    def reference(a, b):
        return lax.conv_general_dilated(
            a, b, (1, 1), pads, rhs_dilation=rates, dimension_numbers=DIMS
        )

    def ours(a, b):
        return cpu.atrous_conv2d(a, b, rate=rates, padding=pads)

    want = reference(x, k)
    got = ours(x, k)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL)
    cot = _rand(want.shape, 2)
    got_grads = jax.grad(lambda a, b: jnp.sum(ours(a, b) * cot), (0, 1))(x, k)
    want_grads = jax.grad(lambda a, b: jnp.sum(reference(a, b) * cot), (0, 1))(x, k)
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, **TOL)


def test_live_fraction_of_deeplab_aspp_at_a_16x16_map():
    # Rate 12 on 16 rows: rows 0-3 read taps {centre, below}, 4-11 the centre only, 12-15
    # {above, centre}: (4*2 + 8*1 + 4*2) / (16*3) = 1/2 per axis. Rate 6: (6*2+4*3+6*2)/48.
    # The thinnest bands: 4 rows at rate 12, 4 (rows 6-9) at rate 6.
    assert _region_stats((4, 16, 16, 8), (3, 3, 8, 8), (12, 12), ((12, 12),) * 2) == (0.25, 4)
    assert _region_stats((4, 16, 16, 8), (3, 3, 8, 8), (6, 6), ((6, 6),) * 2) == (0.75**2, 4)


def test_depthwise_pads_once_where_padding_grows_the_map_little():
    """Stride-1 depthwise convs whose padded map is at most 3.2x the map pad once (forward);
    at 33x33 and rate 18 (4.4x) and with stride 2 the taps stay zero-filled views."""
    def form(shape, rate, stride):
        x, k = jnp.zeros(shape), jnp.zeros((3, 3, 1, shape[-1]))
        names = _primitives(
            lambda a, b: cpu.atrous_conv2d(
                a, b, rate=rate, stride=stride, feature_group_count=shape[-1]
            ),
            x,
            k,
        )
        return "custom_vjp_call" in names or "custom_vjp_call_jaxpr" in names

    assert form((1, 33, 33, 8), 1, 1) and form((1, 33, 33, 8), 12, 1)  # 1.13x, 3.1x
    assert not form((1, 33, 33, 8), 18, 1) and not form((1, 33, 33, 8), 1, 2)


@pytest.mark.parametrize("rate", [1, 2, 6])
def test_cpu_form_matches_tf(rate):
    import tensorflow as tf

    x = _rand((2, 15, 14, 4), 20)
    k = _rand((3, 3, 4, 5), 21)
    want = tf.nn.atrous_conv2d(x, k, rate=rate, padding="SAME").numpy()
    np.testing.assert_allclose(cpu.atrous_conv2d(x, k, rate=rate), want, **TOL)
    dw = _rand((3, 3, 4, 1), 22)
    want = tf.nn.depthwise_conv2d(x, dw, (1, 1, 1, 1), "SAME", dilations=(rate, rate)).numpy()
    got = cpu.atrous_conv2d(x, dw.reshape(3, 3, 1, 4), rate=rate, feature_group_count=4)
    np.testing.assert_allclose(got, want, **TOL)
    pw = _rand((1, 1, 4, 3), 23)
    want = tf.nn.conv2d(x, pw, 1, "SAME").numpy()
    np.testing.assert_allclose(cpu.atrous_conv2d(x, pw), want, **TOL)
