"""Shared pieces of the export tests: tiny networks of every family, seeded weights, tolerances
(loaded once by conftest.py and the test files).

Conversion time grows with the bytes of weights, so the VGG16-based families (FCN, SegNet,
DeepLab v1) are built with narrow blocks: the same layers and operations (pools, unpooling,
transposed convolutions, crops) with 4-8 channels instead of 64-512.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Narrow VGG16 blocks (VGG16's are 64, 128, 256, 512, 512 channels).
TINY_VGG_BLOCKS = ((4, 4), (8, 8), (8, 8, 8), (8, 8, 8), (8, 8, 8))
SIZE = 33  # odd: exercises ceil-mode pools, crops and odd-size unpooling
NUM_CLASSES = 3
CLASS_NAMES = ("background", "cat", "dog")


def rescale(images):
    """A preprocessing unlike the identity, as experiments normalise: [0, 255] -> [-1, 1]."""
    return images * (2.0 / 255.0) - 1.0


def random_variables(model, shape, seed: int = 0):
    """Seeded He-scaled kernels and random BN statistics for `model` at input `shape`, from
    `jax.eval_shape(model.init)` (no compiled init)."""
    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape, jnp.float32))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = str(path[-1].key)
        if name == "var":
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32))
        if name == "mean":
            return jnp.asarray(rng.normal(0, 0.1, leaf.shape).astype(np.float32))
        fan_in = int(np.prod(leaf.shape[:-1])) if leaf.ndim > 1 else 1
        scale = np.sqrt(2.0 / max(fan_in, 1)) if leaf.ndim > 1 else 0.1
        values = rng.standard_normal(leaf.shape).astype(np.float32) * np.float32(scale)
        return jnp.asarray(values + 1.0 if name == "scale" else values)

    return jax.tree_util.tree_map_with_path(fill, abstract)


def families():
    """name -> model factory: every family, in the configurations the releases use."""
    from jaxseg.backbones.resnet import ResNet
    from jaxseg.models import (
        DeepLabV1,
        DeepLabV2,
        DeepLabV3,
        DeepLabV3Plus,
        FCN8s,
        SegNet,
        UNet,
    )
    from jaxseg.models.segnet import SegNetBasic
    from jaxseg.nn import conv_layers

    tiny_resnet = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1), base_width=4)
    cpu = conv_layers("cpu")
    n = NUM_CLASSES
    return {
        # FCN's Caffe release: 100-pixel pad, VALID fc6, crops, learned final deconvolution;
        # built with the CPU conv forms (taps, phase transposed convs) to check the swap back.
        "fcn8s": lambda: FCN8s(
            num_classes=n,
            fc_features=8,
            faithful_padding=True,
            learnable_final_upsampling=True,
            zero_init_scores=False,
            conv=cpu.conv,
            conv_transpose=cpu.conv_transpose,
        ),
        "segnet": lambda: SegNet(num_classes=n, classifier_kernel_size=3),
        "segnet_basic": lambda: SegNetBasic(num_classes=n, features=4, depth=2),
        "unet": lambda: UNet(num_classes=n, depth=2, base_features=4, padding="SAME",
                             batch_norm=True),
        # DeepLab v1's Caffe release: ceil-mode pools, 3x3 average pool5, Caffe's Interp.
        "deeplab_v1": lambda: DeepLabV1(
            num_classes=n, fc_features=8, ceil_mode=True, pool5_avg=True, caffe_interp=True
        ),
        "deeplab_v2": lambda: DeepLabV2(
            num_classes=n, backbone=tiny_resnet, multi_scale_inputs=(0.75,), caffe_interp=True
        ),
        "deeplab_v3": lambda: DeepLabV3(
            num_classes=n, backbone=tiny_resnet, multi_grid=(1,), aspp_features=8,
            conv=cpu.conv,
        ),
        "deeplab_v3plus": lambda: DeepLabV3Plus(
            num_classes=n, backbone=tiny_resnet, multi_grid=(1,), aspp_features=8,
            decoder_features=8, low_level_features=4, align_corners=True,
        ),
    }  # fmt: skip


FAMILIES = tuple(families())


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|."""
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def assert_matches(logits, labels, reference_logits, rtol: float = 1e-4, margin: float = 1e-3):
    """Logits within `rtol` (relative to the reference's largest |logit|); labels equal to the
    reference's argmax on every pixel whose top two reference logits differ by > `margin`."""
    assert logits.shape == reference_logits.shape and logits.dtype == np.float32
    assert labels.shape == reference_logits.shape[:-1] and labels.dtype == np.int32
    assert relative_error(logits, reference_logits) <= rtol
    top2 = np.sort(reference_logits, axis=-1)[..., -2:]
    decided = top2[..., 1] - top2[..., 0] > margin
    assert decided.mean() > 0.9
    np.testing.assert_array_equal(labels[decided], np.argmax(reference_logits, -1)[decided])
