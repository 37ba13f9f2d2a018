"""Every model's output shape at odd sizes, parameter counts against published numbers, and
errors for bad input. All through `jax.eval_shape`: tracing only, nothing compiled or run."""

import functools

import jax
import jax.numpy as jnp
import pytest

from jaxseg.backbones import MobileNetV2, ResNet
from jaxseg.models import (
    DeepLabV1,
    DeepLabV2,
    DeepLabV3,
    DeepLabV3Plus,
    FCN8s,
    FCN16s,
    FCN32s,
    SegNet,
    UNet,
)

TINY_RESNET = functools.partial(ResNet, stage_sizes=(1, 1, 1, 3), base_width=8)
SIZES = [(97, 129), (65, 65)]

MODELS = {
    "fcn32s": FCN32s(),
    "fcn16s": FCN16s(),
    "fcn8s": FCN8s(),
    "fcn8s_faithful": FCN8s(faithful_padding=True),
    "segnet": SegNet(num_classes=11),
    "unet_same": UNet(padding="SAME"),
    "deeplab_v1": DeepLabV1(),
    "deeplab_v2": DeepLabV2(),
    "deeplab_v3_os8": DeepLabV3(output_stride=8),
    "deeplab_v3_os16": DeepLabV3(),
    "deeplab_v3plus_xception": DeepLabV3Plus(),
    "deeplab_v3plus_r101": DeepLabV3Plus(
        backbone="resnet101", separable=False, multi_grid=(1, 2, 4)
    ),
    "deeplab_v3plus_mobilenet_os8": DeepLabV3Plus(
        backbone="mobilenetv2", separable=False, output_stride=8
    ),
}


def _output(model, shape):
    def forward():
        x = jnp.zeros(shape, jnp.float32)
        return model.init_with_output(jax.random.key(0), x)[0]

    return jax.eval_shape(forward)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(MODELS))
def test_logits_at_input_resolution(name, size):
    out = _output(MODELS[name], (2, *size, 3))
    num_classes = MODELS[name].num_classes
    assert out.shape == (2, *size, num_classes)
    assert out.dtype == jnp.float32


def test_unet_valid_paper_sizes():
    assert _output(UNet(), (1, 572, 572, 3)).shape == (1, 388, 388, 2)


def test_bfloat16_compute_gives_float32_logits(helpers):
    model = DeepLabV3(backbone=TINY_RESNET, dtype=jnp.bfloat16)
    variables = helpers.abstract_variables(model, (1, 65, 65, 3))
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    assert _output(model, (1, 65, 65, 3)).dtype == jnp.float32


# Published counts: FCN paper Table 1 (134M), SegNet paper (29.5M; 29.4M as usually quoted),
# U-Net 31.0M (2 classes), DeepLab v1 paper (LargeFOV 20.5M). DeepLab v3 R101: torchvision's
# deeplabv3_resnet101 (60,996,202) minus its aux head (2,365,205) and the extra 3x3 conv of its
# head (590,336) that the TF reference does not have = 58,040,661. DeepLab v3+ R101 ~59M.
PUBLISHED = [
    (FCN8s(num_classes=21), 134.0e6, 0.005),
    (FCN32s(num_classes=21), 134.0e6, 0.005),
    (SegNet(num_classes=11), 29.4e6, 0.005),
    (UNet(num_classes=2), 31.0e6, 0.005),
    (DeepLabV1(num_classes=21), 20.5e6, 0.005),
    (DeepLabV3(num_classes=21), 58_040_661, 1e-9),
    (DeepLabV3Plus(num_classes=21, backbone="resnet101", separable=False), 59.0e6, 0.01),
]


@pytest.mark.parametrize("model, published, rel", PUBLISHED, ids=lambda v: type(v).__name__)
def test_parameter_count_matches_published(helpers, model, published, rel):
    variables = helpers.abstract_variables(model, (1, 196, 196, 3))  # >= U-Net's minimum
    assert helpers.count_params(variables["params"]) == pytest.approx(published, rel=rel)


@pytest.mark.parametrize(
    "model, shape, match",
    [
        (DeepLabV3(backbone=TINY_RESNET), (1, 65, 65, 4), "3 \\(RGB\\) channels"),
        (DeepLabV3(backbone=TINY_RESNET), (65, 65, 3), "must be \\[B, H, W, 3\\]"),
        (DeepLabV3(backbone=TINY_RESNET), (1, 31, 65, 3), "smaller than the minimum 32x32"),
        (FCN32s(), (1, 16, 16, 3), "FCN32s: input 16x16 is smaller"),
        (UNet(), (1, 187, 187, 3), "smaller than the minimum 188x188"),
        (UNet(padding="SAME", depth=4), (1, 15, 40, 3), "minimum 16x16"),
        (DeepLabV3(backbone=TINY_RESNET, output_stride=4), (1, 65, 65, 3), "output_stride"),
        (DeepLabV2(backbone=TINY_RESNET, output_stride=32), (1, 65, 65, 3), "output_stride"),
        (DeepLabV3(backbone="resnet18"), (1, 65, 65, 3), "unknown backbone 'resnet18'"),
        (
            DeepLabV3(backbone=MobileNetV2, multi_grid=(1, 2, 4)),
            (1, 65, 65, 3),
            "MobileNetV2 has no multi-grid",
        ),
        (DeepLabV3(backbone=TINY_RESNET, multi_grid=(1, 2)), (1, 65, 65, 3), "multi_grid"),
    ],
)
def test_bad_input_raises_naming_the_cause(model, shape, match):
    with pytest.raises(ValueError, match=match):
        _output(model, shape)
