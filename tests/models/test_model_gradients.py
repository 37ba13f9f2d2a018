"""One train-mode forward + backward per model family at an odd size: right shape, finite
logits, and a non-zero gradient for every parameter.

Compiling a gradient is the cost on CPU, so each family runs once, with the full architecture
where it is cheap and reduced widths/depths (same code paths) where it is not; full-size
shapes and parameter counts are covered by test_model_shapes.py without compiling. The
depthwise/separable path is exercised by Xception; MobileNetV2 is checked against Keras.
"""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.backbones import ResNet, Xception65
from jaxseg.models import DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus, FCN8s, SegNet, UNet

TINY_RESNET = functools.partial(ResNet, stage_sizes=(1, 1, 1, 3), base_width=8)

CASES = {
    # Full VGG16 with narrow fc6/fc7; all FCN pieces (both skips, learned + fixed upsampling).
    "fcn8s": (FCN8s(fc_features=64, zero_init_scores=False), (1, 65, 65, 3)),
    "segnet": (SegNet(num_classes=11), (1, 65, 97, 3)),
    "unet_valid": (UNet(base_features=8, depth=2), (2, 65, 97, 3)),
    "unet_same": (UNet(base_features=8, padding="SAME", batch_norm=True), (2, 97, 129, 3)),
    "deeplab_v1": (DeepLabV1(fc_features=64), (1, 65, 65, 3)),
    "deeplab_v2": (DeepLabV2(backbone=TINY_RESNET), (2, 97, 129, 3)),
    "deeplab_v3": (DeepLabV3(backbone=TINY_RESNET, output_stride=8), (2, 65, 65, 3)),
    "deeplab_v3plus_xception": (
        DeepLabV3Plus(backbone=functools.partial(Xception65, middle_flow_units=1)),
        (2, 65, 65, 3),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_forward_backward(helpers, name):
    model, shape = CASES[name]
    variables = helpers.random_variables(model, shape)
    images = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    full_width_vgg = isinstance(model, FCN8s | SegNet | DeepLabV1)
    logits, grads = helpers.loss_and_grads(model, variables, images, not full_width_vgg)
    out_hw = shape[1:3]
    if isinstance(model, UNet):
        out_hw = tuple(model.output_size(s) for s in shape[1:3])
    assert logits.shape == (shape[0], *out_hw, model.num_classes)
    assert logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    assert helpers.zero_grad_paths(grads) == []
