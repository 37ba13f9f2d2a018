"""Tiny Flax models with known symmetries, shared by the inference tests."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest


class PointwiseNet(nn.Module):
    """One 1x1 conv: every output pixel depends on its own input pixel only, so predictions do
    not depend on where a window or a pad falls."""

    num_classes: int = 5

    @nn.compact
    def __call__(self, images, train: bool = False):
        return nn.Conv(self.num_classes, (1, 1))(images)


class MirrorConv(nn.Module):
    """3x3 SAME conv whose kernel is symmetric left-right: commutes with horizontal flips."""

    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel", nn.initializers.normal(0.3), (3, 3, x.shape[-1], self.features)
        )
        kernel = (kernel + kernel[:, ::-1]) / 2
        bias = self.param("bias", nn.initializers.normal(0.1), (self.features,))
        return (
            jax.lax.conv_general_dilated(
                x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            + bias
        )


class MirrorNet(nn.Module):
    """Two mirror-symmetric 3x3 convs: a 5x5 receptive field, equivariant to left-right flips."""

    num_classes: int = 4

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = nn.relu(MirrorConv(6)(images / 255.0))
        return MirrorConv(self.num_classes)(x)


def _weights(*shapes):
    # Drawn with NumPy rather than `model.init`: compiling Flax init's RNG graph on CPU costs
    # seconds, and the tests only need fixed weights of the right shapes.
    rng = np.random.default_rng(0)
    return [jnp.asarray(rng.normal(0, 0.5, shape), jnp.float32) for shape in shapes]


@pytest.fixture(scope="module")
def pointwise():
    """(model, variables) of PointwiseNet."""
    kernel, bias = _weights((1, 1, 3, 5), (5,))
    return PointwiseNet(), {"params": {"Conv_0": {"kernel": kernel, "bias": bias}}}


@pytest.fixture(scope="module")
def mirror():
    """(model, variables) of MirrorNet."""
    k0, b0, k1, b1 = _weights((3, 3, 3, 6), (6,), (3, 3, 6, 4), (4,))
    params = {
        "MirrorConv_0": {"kernel": k0, "bias": b0},
        "MirrorConv_1": {"kernel": k1, "bias": b1},
    }
    return MirrorNet(), {"params": params}
