"""Flax building blocks against textbook definitions computed in numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.nn import ASPP, ASPPL, Conv2D, SeparableConvBN, UpConv2x2, fixed_padding


def test_upconv2x2_stamps_kernel_per_pixel():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
    module = UpConv2x2(6)
    variables = module.init(jax.random.key(0), x)
    kernel = np.asarray(variables["params"]["kernel"])
    bias = rng.normal(size=6).astype(np.float32)
    variables = {"params": {"kernel": kernel, "bias": bias}}
    # Transposed conv, stride 2, 2x2 kernel: output (2i + dy, 2j + dx) = x[i, j] @ K[dy, dx] + b.
    expected = np.zeros((2, 6, 10, 6), np.float32)
    for dy in range(2):
        for dx in range(2):
            expected[:, dy::2, dx::2] = np.einsum("bhwc,co->bhwo", x, kernel[dy, dx]) + bias
    np.testing.assert_allclose(module.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_fixed_padding_is_pytorch_style():
    assert fixed_padding(7) == ((3, 3), (3, 3))
    assert fixed_padding(3, rate=2) == ((2, 2), (2, 2))
    assert fixed_padding(2) == ((0, 1), (0, 1))


def test_fixed_padding_stride_2_output_size():
    x = jnp.zeros((1, 64, 65, 3))
    conv = Conv2D(4, kernel_size=7, stride=2, padding="FIXED")
    out = jax.eval_shape(lambda: conv.init_with_output(jax.random.key(0), x)[0])
    assert out.shape == (1, 32, 33, 4)  # floor((n + 6 - 7) / 2) + 1, as torch/Keras


def test_separable_conv_parameter_shapes():
    x = jnp.zeros((1, 9, 9, 5))
    shapes = jax.eval_shape(SeparableConvBN(7, rate=2).init, jax.random.key(0), x)
    params = shapes["params"]
    assert params["depthwise"]["conv"]["kernel"].shape == (3, 3, 1, 5)
    assert params["pointwise"]["conv"]["kernel"].shape == (1, 1, 5, 7)
    assert set(shapes["batch_stats"]) == {"depthwise", "pointwise"}


def test_aspp_branches_and_image_pooling():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 6, 7, 8)), jnp.float32)
    aspp = ASPP(4, atrous_rates=(1, 2), dropout_rate=0.0)

    def run(x):
        capture = lambda mdl, _: mdl.name == "image_pooling"
        return aspp.init_with_output(jax.random.key(0), x, capture_intermediates=capture)

    y, variables = jax.jit(run)(x)
    assert set(variables["params"]) == {"conv1x1", "atrous1", "atrous2", "image_pooling", "project"}
    assert y.shape == (2, 6, 7, 4)
    # The image-level branch sees a global average: one value per image and channel.
    pooled = variables["intermediates"]["image_pooling"]["__call__"][0]
    assert pooled.shape == (2, 1, 1, 4)


def test_aspp_l_sums_branch_logits():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1, 8, 8, 3)), jnp.float32)
    aspp = ASPPL(5, atrous_rates=(1, 3))

    @jax.jit
    def run(x):
        total, variables = aspp.init_with_output(jax.random.key(0), x)
        branches = [
            Conv2D(5, kernel_size=3, rate=rate).apply({"params": variables["params"][name]}, x)
            for name, rate in (("branch1", 1), ("branch2", 3))
        ]
        return total, branches[0] + branches[1]

    total, expected = run(x)
    np.testing.assert_allclose(total, expected, rtol=1e-5, atol=1e-5)
