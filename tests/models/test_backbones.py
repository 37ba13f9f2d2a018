"""Backbones: parameter counts against torchvision's published numbers, feature-map strides,
the atrous identity (output stride 8 sampled every 4th pixel == output stride 32), and
TF-slim's stride-to-rate rule."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.backbones import (
    VGG16,
    MobileNetV2,
    ResNet,
    ResNet50,
    ResNet101,
    Xception65,
    atrous_schedule,
)

# torchvision's published totals minus the ImageNet classifier (and, for MobileNetV2, the final
# 1x1 conv to 1280 channels + its BN, which DeepLab's trunk omits).
PUBLISHED_PARAMS = [
    (ResNet50(), 25_557_032 - (2048 * 1000 + 1000)),
    (ResNet101(), 44_549_160 - (2048 * 1000 + 1000)),
    (VGG16(include_fc=True), 138_357_544 - (4096 * 1000 + 1000)),
    (VGG16(), 138_357_544 - (4096 * 1000 + 1000) - (25088 * 4096 + 4096) - (4096 * 4096 + 4096)),
    (MobileNetV2(), 3_504_872 - (1280 * 1000 + 1000) - 320 * 1280 - 2 * 1280),
]


@pytest.mark.parametrize("backbone, published", PUBLISHED_PARAMS, ids=lambda v: type(v).__name__)
def test_parameter_count_matches_torchvision(helpers, backbone, published):
    variables = helpers.abstract_variables(backbone, (1, 64, 64, 3))
    assert helpers.count_params(variables["params"]) == published


def _features(backbone, shape=(1, 97, 129, 3)):
    x = jnp.zeros(shape)
    return jax.eval_shape(lambda: backbone.init_with_output(jax.random.key(0), x)[0])


def _ceil(size, stride):
    return -(-size // stride)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("cls", [ResNet101, Xception65, MobileNetV2], ids=lambda c: c.__name__)
def test_feature_strides(cls, output_stride):
    features = _features(cls(output_stride=output_stride))
    assert features["out"].shape[1:3] == (_ceil(97, output_stride), _ceil(129, output_stride))
    assert features["stride4"].shape[1:3] == (25, 33)
    for stride in (4, 8, 16, 32):
        key = f"stride{stride}"
        assert (key in features) == (stride <= output_stride)
        if key in features:
            assert features[key].shape[1:3] == (_ceil(97, stride), _ceil(129, stride))


def test_named_feature_channels():
    assert _features(ResNet50(output_stride=16))["stride4"].shape[-1] == 256
    assert _features(Xception65())["stride4"].shape[-1] == 256  # DeepLab v3+'s end point
    assert _features(Xception65())["out"].shape[-1] == 2048
    assert _features(MobileNetV2())["stride4"].shape[-1] == 24
    vgg = _features(VGG16(include_fc=True))
    assert vgg["pool3"].shape == (1, 13, 17, 256)
    assert vgg["pool4"].shape == (1, 7, 9, 512)
    assert vgg["fc7"].shape == (1, 4, 5, 4096)
    deeplab = _features(VGG16(output_stride=8))
    assert deeplab["pool5"].shape == (1, 13, 17, 512)


def test_atrous_schedule_follows_tf_slim():
    # ResNet-like strides after a stride-4 stem: stop at 16, the last stride becomes rate 2.
    assert atrous_schedule([1, 2, 2, 2], 16, initial_stride=4) == [(1, 1), (2, 1), (2, 1), (1, 1)]
    assert atrous_schedule([1, 2, 2, 2, 1], 8, initial_stride=4) == [
        (1, 1),
        (2, 1),
        (1, 1),
        (1, 2),
        (1, 4),
    ]
    with pytest.raises(ValueError, match="not reachable"):
        atrous_schedule([2, 2], 32, initial_stride=1)


@pytest.mark.parametrize(
    "backbone",
    [
        functools.partial(ResNet, stage_sizes=(1, 1, 2, 2), base_width=4, multi_grid=(1, 2)),
        functools.partial(
            ResNet, stage_sizes=(1, 1, 2, 2), base_width=4, multi_grid=(1, 2), stride_in_1x1=True
        ),
    ],
    ids=["stride_in_3x3", "stride_in_1x1"],
)
def test_atrous_identity(helpers, backbone):
    """Removing strides and dilating later convs computes the same function, densely.

    With symmetric ("FIXED") padding the identity is exact everywhere, borders included:
    out_os8[4 i] == out_os32[i]. It checks which convs get which rate.
    """
    shape = (1, 64, 64, 3)
    variables = helpers.random_variables(backbone(output_stride=32), shape)
    images = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)

    def run(images):
        dense = backbone(output_stride=8).apply(variables, images)["out"]
        coarse = backbone(output_stride=32).apply(variables, images)["out"]
        return dense, coarse

    dense, coarse = jax.jit(run)(images)
    assert dense.shape == (1, 8, 8, 128) and coarse.shape == (1, 2, 2, 128)
    np.testing.assert_allclose(dense[:, ::4, ::4], coarse, rtol=1e-4, atol=1e-4)


def test_bad_output_stride():
    with pytest.raises(ValueError, match="ResNet101: output_stride must be one of"):
        _features(ResNet101(output_stride=4))
    with pytest.raises(ValueError, match="VGG16: output_stride"):
        _features(VGG16(output_stride=16))
