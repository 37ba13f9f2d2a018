"""with_conv_layers / fast_forms_for_backend: every model family, rebuilt with the CPU conv
forms, runs those forms in every convolution and gives the reference-built model's logits.

The reference is the same network built with the reference ops (`lax.conv_general_dilated`,
`lax.conv_transpose`), which TensorFlow checks in tests/ops. Each model is compiled once, both
forms in one program, at a tiny size with reduced widths where the family allows it.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.backbones import MobileNetV2, ResNet, Xception65
from jaxseg.inference_forms import (
    CPU_COMPILER_OPTIONS,
    compiler_options_for_backend,
    fast_forms_for_backend,
    weights_as_constants,
)
from jaxseg.models import (
    DeepLabV1,
    DeepLabV2,
    DeepLabV3,
    DeepLabV3Plus,
    FCN8s,
    FullyConvolutionalPatchClassifier,
    PatchClassifier,
    SegNet,
    UNet,
)
from jaxseg.models.deeplab_v2 import DeepLabV2VGG16
from jaxseg.models.segnet import SegNetBasic
from jaxseg.nn import Conv2D, conv_layers
from jaxseg.nn.backend_forms import with_conv_layers
from jaxseg.ops import cpu as cpu_ops

TINY_RESNET = functools.partial(ResNet, stage_sizes=(1, 1, 1, 2), base_width=8)

# (model, input shape). VGG-based families keep VGG16's widths (fixed by the architecture).
CASES = {
    "fcn8s": (FCN8s(num_classes=5, fc_features=16, zero_init_scores=False), (1, 40, 44, 3)),
    "segnet": (SegNet(num_classes=5), (1, 32, 48, 3)),
    "segnet_basic": (SegNetBasic(num_classes=5, features=8), (1, 32, 48, 3)),
    "unet": (UNet(num_classes=3, base_features=8, depth=2, batch_norm=True), (1, 52, 48, 3)),
    "deeplab_v1": (DeepLabV1(num_classes=5, fc_features=16), (1, 41, 41, 3)),
    "deeplab_v2_resnet": (DeepLabV2(num_classes=5, backbone=TINY_RESNET), (1, 49, 41, 3)),
    "deeplab_v2_vgg16": (DeepLabV2VGG16(num_classes=5, fc_features=16), (1, 41, 41, 3)),
    "deeplab_v3_resnet_os8": (
        DeepLabV3(
            num_classes=5,
            backbone=TINY_RESNET,
            output_stride=8,
            multi_grid=(1, 2),
            aspp_features=8,
        ),
        (1, 65, 57, 3),
    ),
    "deeplab_v3plus_xception": (
        DeepLabV3Plus(
            num_classes=5,
            backbone=functools.partial(Xception65, middle_flow_units=1),
            aspp_features=8,
            decoder_features=8,
        ),
        (1, 49, 49, 3),
    ),
    "deeplab_v3plus_mobilenet": (
        DeepLabV3Plus(
            num_classes=5,
            backbone=functools.partial(MobileNetV2, width_multiplier=0.25),
            output_stride=8,
            separable=False,
            multi_grid=None,
            aspp_features=8,
            decoder_features=8,
        ),
        (1, 41, 41, 3),
    ),
    "patch_classifier": (PatchClassifier(num_classes=4, patch_size=16), (2, 16, 16, 3)),
    "patch_classifier_fully_conv": (
        FullyConvolutionalPatchClassifier(num_classes=4, patch_size=16),
        (1, 40, 36, 3),
    ),
}


def _random_variables(model, images):
    """Seeded random variables of the model's shapes: kernels He-scaled, BN statistics and
    affine away from identity so that every term of the inference BN shows up."""
    abstract = jax.eval_shape(model.init, jax.random.key(0), images)
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = str(path[-1].key)
        if name == "var":
            return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), jnp.float32)
        scale = np.sqrt(2.0 / max(1, int(np.prod(leaf.shape[:-1])))) if leaf.ndim > 1 else 0.1
        values = rng.standard_normal(leaf.shape) * scale + (1.0 if name == "scale" else 0.0)
        return jnp.asarray(values, jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, abstract)


def _conv_ops_called(model, variables, images) -> set:
    """The `op` of every `Conv2D` the model calls (traced, not compiled)."""
    ops = set()

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, Conv2D) and context.method_name == "__call__":
            ops.add(context.module.op)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
    return ops


@pytest.mark.parametrize("name", list(CASES))
def test_converted_model_runs_cpu_forms_with_reference_logits(name):
    reference, shape = CASES[name]
    images = jnp.asarray(np.random.default_rng(1).normal(size=shape), jnp.float32)
    variables = _random_variables(reference, images)
    converted, same_variables = fast_forms_for_backend(reference, variables, backend="cpu")
    assert same_variables is variables
    assert type(converted) is type(reference)

    # Every convolution of the converted model is the CPU form (a model the walk missed would
    # still give the reference's logits, so this is checked on its own).
    assert _conv_ops_called(converted, variables, images) == {cpu_ops.atrous_conv2d}
    if hasattr(reference, "conv_transpose"):
        assert converted.conv_transpose is cpu_ops.conv_transpose2d

    both = jax.jit(
        lambda v, x: (reference.apply(v, x, train=False), converted.apply(v, x, train=False))
    )
    expected, got = (np.asarray(a, np.float64) for a in both(variables, images))
    assert np.isfinite(expected).all() and np.abs(expected).max() > 0
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale)


def test_other_backends_keep_the_model():
    model = DeepLabV3(backbone=TINY_RESNET)
    variables = {"params": {}}
    assert fast_forms_for_backend(model, variables, backend="gpu") == (model, variables)


def test_backbone_partials_and_other_keywords_are_kept():
    # A backbone factory with its own conv keyword, and a conv partial with extra keywords.
    custom_conv = functools.partial(Conv2D, kernel_init=nn.initializers.zeros)
    model = DeepLabV3(
        backbone=functools.partial(ResNet, stage_sizes=(1, 1, 1, 1), conv=Conv2D),
        conv=custom_conv,
    )
    converted = with_conv_layers(model, conv_layers("cpu"))
    assert converted.conv.keywords == {
        "kernel_init": custom_conv.keywords["kernel_init"],
        "op": cpu_ops.atrous_conv2d,
    }
    assert converted.backbone.keywords["conv"].keywords == {"op": cpu_ops.atrous_conv2d}
    assert converted.backbone.keywords["stage_sizes"] == (1, 1, 1, 1)
    # Back to the reference forms: the reference op, the same class.
    back = with_conv_layers(converted, conv_layers("reference"))
    assert back.conv.keywords["op"] is Conv2D.op
    assert model.conv is custom_conv  # the input model is not modified


def test_user_conv_modules_are_left_alone():
    class MyConv(nn.Module):
        features: int

    model = DeepLabV3(backbone=TINY_RESNET, conv=MyConv)
    assert with_conv_layers(model, conv_layers("cpu")).conv is MyConv


def test_cpu_compiler_options_keep_the_logits():
    model, shape = CASES["deeplab_v3_resnet_os8"]
    images = jnp.asarray(np.random.default_rng(2).normal(size=shape), jnp.float32)
    variables = _random_variables(model, images)
    options = compiler_options_for_backend("cpu")
    assert options in ({}, CPU_COMPILER_OPTIONS)  # {} only where this jaxlib lacks them
    assert compiler_options_for_backend("gpu") == {}
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    expected = np.asarray(apply(variables, images))
    compiled = apply.lower(variables, images).compile(compiler_options=options)
    if options:  # the YNNPACK library fusions are off
        assert "__ynn_fusion" not in compiled.as_text()
    got = np.asarray(compiled(variables, images))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_segmenter_compiles_the_weights_in_on_cpu_with_the_reference_logits():
    """On a CPU the Segmenter's program closes over its variables (compile-time constants);
    its logits stay those of the reference-built network applied with the variables as an
    argument and XLA's default options (a depthwise-separable model: where constants pay)."""
    from jaxseg import inference  # noqa: PLC0415
    from jaxseg.segmenter import Segmenter  # noqa: PLC0415

    assert weights_as_constants("cpu") and not weights_as_constants("gpu")
    model, shape = CASES["deeplab_v3plus_xception"]
    images = np.random.default_rng(3).uniform(0, 255, shape).astype(np.float32)
    variables = _random_variables(model, jnp.asarray(images))
    normalize = lambda x: x / 127.5 - 1  # noqa: E731
    seg = Segmenter(
        model, variables, normalize=normalize, class_names="abcde", crop_size=shape[1:3]
    )
    lowered = seg._network.lower(jnp.asarray(images))
    assert len(jax.tree.leaves(lowered.args_info)) == 1  # the images only: weights are constants
    got = seg.logits(images)
    apply = jax.jit(lambda v, x: inference.predict_logits(model.apply, v, normalize(x)))
    expected = np.asarray(apply(variables, jnp.asarray(images)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_segmenter_runs_the_cpu_forms():
    from jaxseg.segmenter import Segmenter  # noqa: PLC0415

    model = DeepLabV3(num_classes=3, backbone=TINY_RESNET, multi_grid=(1, 2))
    seg = Segmenter(model, {"params": {}}, normalize=lambda x: x, class_names=["a", "b", "c"])
    assert seg.model.conv.keywords["op"] is cpu_ops.atrous_conv2d
