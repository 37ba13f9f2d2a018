"""TF-slim DeepLab checkpoints: conversion checked against TensorFlow's own ops.

`Official` composes the forward pass of the official DeepLab graphs from TensorFlow ops
(`tf.nn.conv2d` / `depthwise_conv2d` with TF-slim's padding, `tf.nn.batch_normalization` with
the checkpoint's epsilon, `tf.compat.v1.image.resize_bilinear(align_corners=True)`, the image
padded to the evaluation crop) and creates each variable, with the official name and random
values (random BN statistics included), the first time the structure asks for it. The
variables are then written as a TF checkpoint, converted by jaxseg and run through the zoo's
`Segmenter`; the logits must match TF's to a relative error of 1e-4.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import jax
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxseg.weights import tf_slim  # noqa: E402
from jaxseg.weights.tf_slim import DeepLabArch  # noqa: E402
from jaxseg.zoo import deeplab_models  # noqa: E402

DATA = Path(__file__).parent / "data" / "deeplab_tf"

# The official DeepLab configuration, written here from the authors' files (not read from
# jaxseg), that the `Official` graph below is built with:
# ASPP rates of the released v3+/v3 models (research/deeplab g3doc/model_zoo.md and
# local_test.sh: `--atrous_rates=6 --atrous_rates=12 --atrous_rates=18` with
# `--output_stride=16`; `12, 24, 36` when evaluating at `--output_stride=8`).
OFFICIAL_ATROUS_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
# Backbone name scopes of the official checkpoints (core/feature_extractor.py's name scopes;
# the variable lists in data/deeplab_tf/ start with them).
OFFICIAL_SCOPES = {
    "xception_41": "xception_41",
    "xception_65": "xception_65",
    "xception_71": "xception_71",
    "mobilenet_v2": "MobilenetV2",
    "resnet_v1_50_beta": "resnet_v1_50",
    "resnet_v1_101_beta": "resnet_v1_101",
}
# Head scopes of model.py: image pooling, 1x1 ASPP branch, separable atrous branches (Xception:
# `aspp{i}_depthwise` / `_pointwise`), projection, the decoder's 48-channel projection of the
# stride-4 features, and the classifier.
OFFICIAL_HEAD_SCOPES = (
    "image_pooling",
    "aspp0",
    "aspp1_depthwise",
    "aspp1_pointwise",
    "concat_projection",
    "decoder/feature_projection0",
    "logits/semantic",
)


def scale_dimension(dim: int, scale: float) -> int:
    """The official `scale_dimension`: output size of `dim` at `scale`."""
    return int((float(dim) - 1.0) * scale + 1.0)


def fixed_padding(x, kernel_size: int, rate: int = 1):
    k_eff = kernel_size + (kernel_size - 1) * (rate - 1)
    begin = (k_eff - 1) // 2
    end = k_eff - 1 - begin
    return tf.pad(x, [[0, 0], [begin, end], [begin, end], [0, 0]])


def resize(x, size):
    return tf.compat.v1.image.resize_bilinear(x, size, align_corners=True)


class Official:
    """Forward passes of the official DeepLab structure, creating variables on first use."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.variables: dict[str, np.ndarray] = {}

    def var(self, name: str, shape, kind: str) -> np.ndarray:
        if name not in self.variables:
            shape = tuple(int(s) for s in shape)
            if kind == "weights":
                fan_in = math.prod(shape[:-1]) if shape[-1] != 1 else math.prod(shape[:2])
                value = self.rng.normal(0, 1.0 / math.sqrt(fan_in), shape)
            elif kind == "gamma":
                value = self.rng.uniform(0.5, 1.5, shape)
            elif kind == "variance":
                value = self.rng.uniform(0.5, 2.0, shape)
            else:  # beta, moving_mean, biases
                value = self.rng.normal(0, 0.2, shape)
            self.variables[name] = value.astype(np.float32)
        assert self.variables[name].shape == tuple(shape), name
        return self.variables[name]

    def batch_norm(self, x, scope: str, eps: float):
        c = x.shape[-1]
        return tf.nn.batch_normalization(
            x,
            self.var(f"{scope}/BatchNorm/moving_mean", [c], "mean"),
            self.var(f"{scope}/BatchNorm/moving_variance", [c], "variance"),
            self.var(f"{scope}/BatchNorm/beta", [c], "beta"),
            self.var(f"{scope}/BatchNorm/gamma", [c], "gamma"),
            eps,
        )

    def conv(self, x, scope, depth, k=1, stride=1, rate=1, padding="SAME", eps=1e-5, act=None):
        """slim.conv2d + BatchNorm (+ act)."""
        w = self.var(f"{scope}/weights", [k, k, x.shape[-1], depth], "weights")
        y = tf.nn.conv2d(x, w, stride, padding, dilations=rate)
        y = self.batch_norm(y, scope, eps)
        return act(y) if act is not None else y

    def conv2d_same(self, x, scope, depth, k, stride, rate=1, eps=1e-3, act=tf.nn.relu):
        """resnet_utils.conv2d_same: SAME at stride 1, explicit padding + VALID when strided."""
        if stride == 1:
            return self.conv(x, scope, depth, k, 1, rate, "SAME", eps, act)
        return self.conv(fixed_padding(x, k, rate), scope, depth, k, stride, 1, "VALID", eps, act)

    def depthwise(self, x, scope, stride=1, rate=1, padding="SAME", eps=1e-3, act=None):
        w = self.var(f"{scope}/depthwise_weights", [3, 3, x.shape[-1], 1], "weights")
        y = tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], padding, dilations=[rate, rate])
        y = self.batch_norm(y, scope, eps)
        return act(y) if act is not None else y

    def separable_same(self, x, scope, depth, stride=1, rate=1, eps=1e-3, act=None):
        """xception.separable_conv2d_same (split depthwise / pointwise, explicit padding)."""
        if stride == 1:
            y = self.depthwise(x, f"{scope}_depthwise", 1, rate, "SAME", eps, act)
        else:
            x = fixed_padding(x, 3, rate)
            y = self.depthwise(x, f"{scope}_depthwise", stride, 1, "VALID", eps, act)
        return self.conv(y, f"{scope}_pointwise", depth, 1, eps=eps, act=act)

    # -- backbones ---------------------------------------------------------------------------

    def xception_module(self, x, scope, depths, skip, stride, rate, act_inside, end_points):
        residual = x
        for i in range(3):
            if not act_inside:
                residual = tf.nn.relu(residual)
            residual = self.separable_same(
                residual,
                f"{scope}/separable_conv{i + 1}",
                depths[i],
                stride=stride if i == 2 else 1,
                rate=rate,
                act=tf.nn.relu if act_inside else None,
            )
            end_points[f"{scope}/separable_conv{i + 1}_pointwise"] = residual
        if skip == "conv":
            shortcut = self.conv(x, f"{scope}/shortcut", depths[-1], 1, stride, eps=1e-3)
            return residual + shortcut
        return residual + x if skip == "sum" else residual

    def xception(self, x, name, entry, middle_units, output_stride):
        end_points = {}
        x = self.conv2d_same(x, f"{name}/entry_flow/conv1_1", 32, 3, 2)
        x = self.conv2d_same(x, f"{name}/entry_flow/conv1_2", 64, 3, 1)
        blocks = [
            (f"entry_flow/block{i + 1}", 1, d, "conv", s, False) for i, (d, s) in enumerate(entry)
        ]
        blocks += [("middle_flow/block1", middle_units, 728, "sum", 1, False)]
        blocks += [("exit_flow/block1", 1, (728, 1024, 1024), "conv", 2, False)]
        blocks += [("exit_flow/block2", 1, (1536, 1536, 2048), "none", 1, True)]
        target, current, rate = output_stride // 2, 1, 1  # the root strides by 2
        for block, units, depth, skip, stride, act_inside in blocks:
            depths = depth if isinstance(depth, tuple) else (depth,) * 3
            for u in range(units):
                scope = f"{name}/{block}/unit_{u + 1}/xception_module"
                if current == target:
                    x = self.xception_module(
                        x, scope, depths, skip, 1, rate, act_inside, end_points
                    )
                    rate *= stride
                else:
                    x = self.xception_module(
                        x, scope, depths, skip, stride, 1, act_inside, end_points
                    )
                    current *= stride
        return x, end_points

    def mobilenet_v2(self, x, output_stride, eps=1e-3):
        """mobilenet_base with V2_DEF up to layer_18 (TF "SAME" padding, ReLU6)."""
        relu6 = tf.nn.relu6
        current, rate = 1, 1

        def schedule(stride):
            nonlocal current, rate
            if current == output_stride:
                layer = (1, rate)
                rate *= stride
                return layer
            current *= stride
            return (stride, 1)

        stride, r = schedule(2)
        w = self.var("MobilenetV2/Conv/weights", [3, 3, 3, 32], "weights")
        x = relu6(self.batch_norm(tf.nn.conv2d(x, w, stride, "SAME"), "MobilenetV2/Conv", eps))
        spec = [(1, 16, 1)] + [(6, c, s) for c, n, s0 in
                [(24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)]
                for s in [s0] + [1] * (n - 1)]  # fmt: skip
        for i, (t, depth, s) in enumerate(spec):
            scope = "MobilenetV2/expanded_conv" + (f"_{i}" if i else "")
            stride, r = schedule(s)
            y = x
            if t > 1:
                y = self.conv(y, f"{scope}/expand", x.shape[-1] * t, eps=eps, act=relu6)
            y = self.depthwise(y, f"{scope}/depthwise", stride, r, "SAME", eps, relu6)
            y = self.conv(y, f"{scope}/project", depth, eps=eps)
            x = y + x if stride == 1 and depth == x.shape[-1] else y
        return x

    def bottleneck(self, x, scope, depth, stride, rate, end_points, eps=1e-5):
        """resnet_v1_beta.bottleneck: stride in the 3x3, subsampled identity or projection."""
        if depth == x.shape[-1]:
            shortcut = x if stride == 1 else tf.nn.max_pool2d(x, 1, stride, "VALID")
        else:
            shortcut = self.conv(x, f"{scope}/shortcut", depth, 1, stride, eps=eps)
        y = self.conv(x, f"{scope}/conv1", depth // 4, eps=eps, act=tf.nn.relu)
        y = self.conv2d_same(y, f"{scope}/conv2", depth // 4, 3, stride, rate, eps=eps)
        y = self.conv(y, f"{scope}/conv3", depth, eps=eps)
        end_points[f"{scope}/conv3"] = y
        return tf.nn.relu(shortcut + y)

    def resnet_v1_beta(self, x, name, stage_sizes, output_stride, eps=1e-5):
        """resnet_v1_beta with root_block_fn_for_beta_variant; strides at each block's end."""
        end_points = {}
        x = self.conv2d_same(x, f"{name}/conv1_1", 64, 3, 2, eps=eps)
        x = self.conv2d_same(x, f"{name}/conv1_2", 64, 3, 1, eps=eps)
        x = self.conv2d_same(x, f"{name}/conv1_3", 128, 3, 1, eps=eps)
        x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        target, current, rate = output_stride // 4, 1, 1
        for s, units in enumerate(stage_sizes):
            for b in range(units):
                stride = 2 if (b == units - 1 and s < 3) else 1
                scope = f"{name}/block{s + 1}/unit_{b + 1}/bottleneck_v1"
                depth = 256 * 2**s
                if current == target:
                    x = self.bottleneck(x, scope, depth, 1, rate, end_points, eps)
                    rate *= stride
                else:
                    x = self.bottleneck(x, scope, depth, stride, 1, end_points, eps)
                    current *= stride
        return x, end_points

    # -- head ----------------------------------------------------------------------------------

    def head(self, features, end_point, crop, output_stride, rates, num_classes, separable):
        pool = [scale_dimension(c, 1.0 / output_stride) for c in crop]
        pooled = tf.nn.avg_pool2d(features, pool, 1, "VALID")
        pooled = self.conv(pooled, "image_pooling", 256, act=tf.nn.relu)
        branches = [resize(pooled, pool), self.conv(features, "aspp0", 256, act=tf.nn.relu)]
        for i, rate in enumerate(rates, 1):
            if separable:
                y = self.depthwise(
                    features, f"aspp{i}_depthwise", 1, rate, eps=1e-5, act=tf.nn.relu
                )
                y = self.conv(y, f"aspp{i}_pointwise", 256, act=tf.nn.relu)
            else:
                y = self.conv(features, f"aspp{i}", 256, 3, rate=rate, act=tf.nn.relu)
            branches.append(y)
        x = self.conv(tf.concat(branches, 3), "concat_projection", 256, act=tf.nn.relu)
        if end_point is not None:
            size = [scale_dimension(c, 1.0 / 4) for c in crop]
            low = self.conv(end_point, "decoder/feature_projection0", 48, act=tf.nn.relu)
            x = tf.concat([resize(x, size), resize(low, size)], 3)
            for i in (0, 1):
                scope = f"decoder/decoder_conv{i}"
                x = self.depthwise(x, f"{scope}_depthwise", eps=1e-5, act=tf.nn.relu)
                x = self.conv(x, f"{scope}_pointwise", 256, act=tf.nn.relu)
        w = self.var("logits/semantic/weights", [1, 1, 256, num_classes], "weights")
        b = self.var("logits/semantic/biases", [num_classes], "biases")
        return tf.nn.conv2d(x, w, 1, "SAME") + b


@dataclasses.dataclass(frozen=True)
class Case:
    """One test network: `arch` is jaxseg's description (under test); the other fields are the
    official graph's configuration, stated here: the backbone scope, and whether the model has
    atrous ASPP branches, separable convs and the decoder (the Xception releases are trained
    with `--aspp_with_separable_conv --decoder_use_separable_conv --decoder_output_stride=4`;
    the MobileNetV2 releases with image pooling + 1x1 only and no decoder)."""

    arch: DeepLabArch
    scope: str
    aspp: bool = True
    separable: bool = True
    decoder: bool = True
    entry: tuple = ((128, 2), (256, 2), (728, 2))
    end_block: int = 2


def official_network(official: Official, case: Case, x, crop, output_stride):
    """Logits of the official graph at their own resolution for a normalised canvas `x`."""
    end = None
    if case.scope.startswith("xception"):
        features, points = official.xception(
            x, case.scope, case.entry, case.arch.middle_flow_units, output_stride
        )
        key = f"entry_flow/block{case.end_block}/unit_1/xception_module/separable_conv2_pointwise"
        end = points[f"{case.scope}/{key}"] if case.decoder else None
    else:
        features = official.mobilenet_v2(x, output_stride)
    rates = OFFICIAL_ATROUS_RATES[output_stride] if case.aspp else ()
    return official.head(
        features, end, crop, output_stride, rates, case.arch.num_classes, case.separable
    )


def official_logits(official: Official, case: Case, image: np.ndarray, crop, output_stride):
    """The official evaluation of one uint8 image: normalise, pad to `crop`, run, crop back."""
    x = (2.0 / 255.0) * tf.constant(image[None], tf.float32) - 1.0
    h, w = image.shape[:2]
    x = tf.pad(x, [[0, 0], [0, crop[0] - h], [0, crop[1] - w], [0, 0]])  # mean pixel -> 0
    logits = resize(official_network(official, case, x, crop, output_stride), crop)
    return logits.numpy()[0, :h, :w]


def official_multiscale(official, case, image, crop, output_stride, scales, flip):
    """predict_labels_multi_scale: per scale (and mirrored) softmax, averaged."""
    h, w = image.shape[:2]
    canvas = np.full((1, *crop, 3), 127.5, np.float32)
    canvas[0, :h, :w] = image
    stride = 4 if case.decoder else output_stride
    probabilities = []
    for scale in scales:
        size = [scale_dimension(c, scale) for c in crop]
        logits_size = [scale_dimension(c, max(1.0, scale) / stride) for c in crop]
        for mirrored in (False, True) if flip else (False,):
            x = resize(tf.constant(canvas), size)
            x = tf.reverse(x, [2]) if mirrored else x
            logits = official_network(official, case, (2.0 / 255.0) * x - 1.0, size, output_stride)
            logits = resize(logits, logits_size)
            logits = tf.reverse(logits, [2]) if mirrored else logits
            probabilities.append(tf.nn.softmax(resize(logits, crop)))
    return tf.reduce_mean(tf.stack(probabilities), 0).numpy()[0, :h, :w]


def write_checkpoint(variables: dict[str, np.ndarray], prefix: Path) -> str:
    """A TF checkpoint holding `variables` under their names (tf.raw_ops.SaveV2)."""
    names = sorted(variables)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(variables[n]) for n in names],
    )
    return str(prefix)


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


# jaxseg's side: the zoo's own architecture data where a release uses it (the test's sizes:
# classes, middle-flow depth); the official side: the literal configuration of `Case`.
XCEPTION65 = Case(
    DeepLabArch(**{**deeplab_models.XCEPTION65, "num_classes": 5, "middle_flow_units": 2}),
    scope=OFFICIAL_SCOPES["xception_65"],
)
XCEPTION71 = Case(
    DeepLabArch("xception_71", num_classes=4, middle_flow_units=1),
    scope=OFFICIAL_SCOPES["xception_71"],
    entry=((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)),
    end_block=3,
)
MOBILENETV2 = Case(
    DeepLabArch(**{**deeplab_models.MOBILENETV2, "num_classes": 6}),
    scope=OFFICIAL_SCOPES["mobilenet_v2"],
    aspp=False,
    separable=False,
    decoder=False,
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Each case's official variables (created by one TF pass) written once as a checkpoint."""
    root = tmp_path_factory.mktemp("tf_slim")
    out = {}
    image = np.zeros((33, 33, 3), np.uint8)
    for name, case in {"x65": XCEPTION65, "x71": XCEPTION71, "mnv2": MOBILENETV2}.items():
        official = Official(seed=len(out))
        official_logits(official, case, image, (33, 33), 16)
        variables = dict(official.variables)
        # Training-only variables a released checkpoint may hold: ignored by rule.
        variables["global_step"] = np.array(30000, np.int64)
        first = sorted(official.variables)[0]
        variables[f"{first}/Momentum"] = np.zeros_like(official.variables[first])
        variables[f"{first}/ExponentialMovingAverage"] = official.variables[first]
        out[name] = (case, official, write_checkpoint(variables, root / name / "model.ckpt"))
    return out


@pytest.mark.parametrize(
    "name, output_stride, image_size, crop",
    [
        ("x65", 16, (50, 61), (65, 65)),
        ("x65", 8, (41, 30), (49, 49)),
        ("x71", 16, (40, 45), (65, 65)),
        ("mnv2", 16, (50, 61), (65, 65)),
        ("mnv2", 8, (64, 48), (64, 64)),  # even canvas: TF "SAME" pads after
    ],
)
def test_whole_network_matches_official_graph(checkpoints, name, output_stride, image_size, crop):
    case, official, prefix = checkpoints[name]
    imported = tf_slim.convert_checkpoint(prefix, case.arch, output_stride)
    assert imported.missing == ()
    assert set(imported.unexpected) == {
        "global_step",
        *(k for k in tf_slim.read_checkpoint(prefix) if "/Momentum" in k or "Exponential" in k),
    }
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (*image_size, 3), dtype=np.uint8)
    reference = official_logits(official, case, image, crop, output_stride)
    release = deeplab_models.Release(case.arch, labels=None, eval_crop=crop)
    names = [f"class{i}" for i in range(case.arch.num_classes)]
    segmenter = deeplab_models.build_segmenter(
        release, imported.variables, output_stride, class_names=names
    )
    ours = segmenter.logits(image)
    assert ours.shape == (*image_size, case.arch.num_classes)
    assert relative_error(ours, reference) <= 1e-4


def _zeros_from_list(path: Path, keep=lambda name: True) -> dict[str, np.ndarray]:
    """`name<TAB>[shape]` lines -> zero-cost arrays of those shapes (variance 1 for BN)."""
    arrays = {}
    for line in path.read_text().splitlines():
        name, shape = line.split("\t")
        if keep(name):
            dims = tuple(int(d) for d in shape.strip("[]").split(","))
            arrays[name] = np.broadcast_to(np.float32(1.0), dims)
    return arrays


@pytest.mark.parametrize(
    "listing, arch, keep",
    [
        ("xception65_v3plus.txt", DeepLabArch("xception_65", num_classes=21), None),
        (
            "mobilenetv2_v3.txt",
            DeepLabArch("mobilenet_v2", atrous_rates=(), decoder=False, separable=False),
            None,
        ),
        (
            "resnet101beta_v3plus.txt",
            DeepLabArch("resnet_v1_101_beta", backbone_epsilon=1e-5),
            None,
        ),
        (
            "resnet101beta_v3plus.txt",
            DeepLabArch("resnet_v1_101_beta", num_classes=None, backbone_epsilon=1e-5),
            "resnet_v1_101/",
        ),
        (
            "xception65_v3plus.txt",
            DeepLabArch("xception_65", num_classes=None),
            "xception_65/",
        ),
    ],
)
def test_official_variable_lists_map_completely(listing, arch, keep):
    """Every variable of the official graphs (name and shape) fills exactly one model variable."""
    arrays = _zeros_from_list(
        DATA / listing, (lambda n: n.startswith(keep)) if keep else (lambda n: True)
    )
    imported = tf_slim.convert_arrays(arrays, arch, listing)
    assert imported.missing == () and imported.unexpected == ()


def test_official_constants_agree_with_the_official_listings_and_the_zoo(checkpoints):
    """The stated head scopes are those of a released checkpoint's variable list (and of the
    graph the tests build); the zoo's release data uses the official rates."""
    listed = {
        line.split("\t")[0].split("/BatchNorm")[0].rsplit("/", 1)[0]
        for line in (DATA / "xception65_v3plus.txt").read_text().splitlines()
    }
    _, official, _ = checkpoints["x65"]
    built = {name.split("/BatchNorm")[0].rsplit("/", 1)[0] for name in official.variables}
    for scope in OFFICIAL_HEAD_SCOPES:
        assert scope in listed and scope in built, scope
    assert any(n.startswith(OFFICIAL_SCOPES["xception_65"] + "/") for n in listed)
    assert deeplab_models.XCEPTION65["atrous_rates"] == OFFICIAL_ATROUS_RATES[16]
    assert deeplab_models.MOBILENETV2["atrous_rates"] == ()
    for backbone, scope in OFFICIAL_SCOPES.items():
        assert DeepLabArch(backbone, num_classes=None).scope == scope


def test_classifier_head_of_imagenet_checkpoints_is_ignored_by_rule():
    arch = DeepLabArch("xception_65", num_classes=None)
    arrays = _zeros_from_list(
        DATA / "xception65_v3plus.txt", lambda n: n.startswith("xception_65/")
    )
    arrays["xception_65/logits/weights"] = np.zeros((1, 1, 2048, 1001), np.float32)
    imported = tf_slim.convert_arrays(arrays, arch, "imagenet")
    assert imported.unexpected == ("xception_65/logits/weights",)


def test_shape_mismatch_names_the_variable():
    arrays = _zeros_from_list(DATA / "mobilenetv2_v3.txt")
    arrays["aspp0/weights"] = np.zeros((1, 1, 320, 128), np.float32)
    arch = DeepLabArch("mobilenet_v2", atrous_rates=(), decoder=False, separable=False)
    with pytest.raises(ValueError, match="aspp0"):
        tf_slim.convert_arrays(arrays, arch, "mnv2")


def test_missing_and_unexpected_variables_are_refused_by_name():
    arrays = _zeros_from_list(DATA / "mobilenetv2_v3.txt")
    del arrays["MobilenetV2/expanded_conv_3/project/weights"]
    arrays["aspp1/weights"] = np.zeros((3, 3, 320, 256), np.float32)
    arch = DeepLabArch("mobilenet_v2", atrous_rates=(), decoder=False, separable=False)
    with pytest.raises(ValueError, match=r"expanded_conv_3/project/weights.*aspp1/weights"):
        tf_slim.convert_arrays(arrays, arch, "mnv2")


def test_foreign_checkpoint_is_refused_naming_the_file(tmp_path):
    prefix = write_checkpoint({"dense/kernel": np.zeros((3, 4), np.float32)}, tmp_path / "m.ckpt")
    arch = DeepLabArch("xception_65", num_classes=21)
    with pytest.raises(ValueError, match=r"m\.ckpt does not look like"):
        tf_slim.convert_checkpoint(prefix, arch)


def test_corrupt_checkpoint_is_refused_naming_the_file(tmp_path):
    prefix = write_checkpoint({"a/weights": np.ones((64, 64), np.float32)}, tmp_path / "m.ckpt")
    data = next(tmp_path.glob("m.ckpt.data-*"))
    data.write_bytes(data.read_bytes()[:100])  # truncated download
    with pytest.raises(ValueError, match=r"m\.ckpt: not a readable TF checkpoint"):
        tf_slim.read_checkpoint(prefix)
    (tmp_path / "junk.ckpt.index").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.ckpt: not a readable TF checkpoint"):
        tf_slim.read_checkpoint(tmp_path / "junk.ckpt")
    with pytest.raises(FileNotFoundError, match="nothere"):
        tf_slim.read_checkpoint(tmp_path / "nothere")


@pytest.mark.parametrize(
    "backbone, output_stride",
    [("resnet_v1_50_beta", 16), ("resnet_v1_50_beta", 8), ("xception_41", 16)],
)
def test_imagenet_backbone_matches_official(tmp_path, backbone, output_stride):
    """ImageNet checkpoints (classifier included): `out` and the decoder end point match."""
    official = Official(seed=3)
    scope = OFFICIAL_SCOPES[backbone]
    x = tf.constant(np.random.default_rng(5).uniform(-1, 1, (1, 49, 41, 3)), tf.float32)
    if backbone.startswith("resnet"):
        arch = DeepLabArch(
            backbone, num_classes=None, stage_sizes=(2, 2, 2, 2), backbone_epsilon=1e-5
        )
        out, points = official.resnet_v1_beta(x, scope, (2, 2, 2, 2), output_stride)
        end = points[f"{scope}/block1/unit_2/bottleneck_v1/conv3"]
        channels = 2048
    else:
        arch = DeepLabArch(backbone, num_classes=None, middle_flow_units=2)
        out, points = official.xception(x, scope, XCEPTION65.entry, 2, output_stride)
        end = points[f"{scope}/entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise"]
        channels = 2048
    variables = dict(official.variables)
    variables[f"{scope}/logits/weights"] = np.zeros((1, 1, channels, 1001), np.float32)
    variables[f"{scope}/logits/biases"] = np.zeros((1001,), np.float32)
    prefix = write_checkpoint(variables, tmp_path / "model.ckpt")
    imported = tf_slim.convert_checkpoint(prefix, arch, output_stride)
    assert imported.missing == ()
    assert set(imported.unexpected) == {
        f"{scope}/logits/weights",
        f"{scope}/logits/biases",
    }
    features = jax.jit(arch.model(output_stride).apply)(imported.variables, x.numpy())
    assert relative_error(np.asarray(features["out"]), out.numpy()) <= 1e-4
    assert relative_error(np.asarray(features["stride4"]), end.numpy()) <= 1e-4


def test_strided_xception_block_and_resize_match_tf_ops(tmp_path):
    """One layer at a time: a strided Xception module (explicit padding, ReLU before each
    separable conv, BN epsilon 1e-3), an atrous one, and the align_corners resize."""
    import jax.numpy as jnp

    from jaxseg.backbones import XceptionBlock
    from jaxseg.ops import resize_bilinear

    official = Official(seed=11)
    x = np.random.default_rng(2).normal(0, 1, (1, 12, 11, 16)).astype(np.float32)
    strided = official.xception_module(tf.constant(x), "m1", (8, 8, 24), "conv", 2, 1, False, {})
    atrous = official.xception_module(tf.constant(x), "m2", (8, 8, 16), "sum", 1, 2, True, {})
    arrays = official.variables
    norm = DeepLabArch("xception_65")._norm(1e-3)
    for scope, block, reference in [
        ("m1", XceptionBlock((8, 8, 24), "conv", stride=2, norm=norm), strided),
        (
            "m2",
            XceptionBlock((8, 8, 16), "sum", rate=2, activation_in_separable=True, norm=norm),
            atrous,
        ),
    ]:
        entries = []
        for j in (1, 2, 3):
            entries += tf_slim._separable(
                f"{scope}/separable_conv{j}", (f"separable_conv{j}",), 1e-3
            )
        if scope == "m1":
            entries.append(tf_slim._conv_bn(f"{scope}/shortcut", ("shortcut",), 1e-3))
        variables: dict = {}
        for entry in entries:  # the converters alone (the engine checks 3-channel inputs)
            found = {role: arrays[key] for role, key in entry.keys.items()}
            for collection, subtree in entry.convert(found).items():
                node = variables.setdefault(collection, {})
                for part in entry.target:
                    node = node.setdefault(part, {})
                node.update(subtree)
        ours, _ = jax.jit(block.apply)(variables, jnp.asarray(x))
        assert relative_error(np.asarray(ours), reference.numpy()) <= 1e-5
    small = np.random.default_rng(3).normal(0, 1, (1, 5, 7, 3)).astype(np.float32)
    ours = resize_bilinear(jnp.asarray(small), (17, 25), align_corners=True)
    assert relative_error(np.asarray(ours), resize(small, (17, 25)).numpy()) <= 1e-6


# --- jaxseg.zoo.load on a release archive ------------------------------------------------------


@pytest.fixture(scope="module")
def mobilenet_release(tmp_path_factory):
    """A full-size MobileNetV2 VOC checkpoint with random weights, packed as the release is."""
    import tarfile

    root = tmp_path_factory.mktemp("release")
    official = Official(seed=21)
    case = dataclasses.replace(
        MOBILENETV2, arch=dataclasses.replace(MOBILENETV2.arch, num_classes=21)
    )
    official_logits(official, case, np.zeros((33, 33, 3), np.uint8), (33, 33), 16)
    folder = root / "deeplabv3_mnv2_pascal_train_aug"
    folder.mkdir()
    write_checkpoint(official.variables, folder / "model.ckpt-30000")
    (folder / "frozen_inference_graph.pb").write_bytes(b"graph")
    archive = root / "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return case, official, archive, folder


def test_zoo_load_runs_the_release_as_officially_evaluated(
    mobilenet_release, tmp_path, monkeypatch
):
    from jaxseg import zoo

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    case, official, archive, folder = mobilenet_release
    image = np.random.default_rng(9).integers(0, 256, (60, 47, 3), dtype=np.uint8)
    reference = official_logits(official, case, image, (65, 65), 16)
    seg = zoo.load("mobilenetv2_coco_voc_trainaug", checkpoint=archive, crop_size=65)
    assert seg.class_names[0] == "background" and len(seg.class_names) == 21
    logits = seg.logits(image)
    assert logits.shape == (60, 47, 21) and relative_error(logits, reference) <= 1e-4
    np.testing.assert_array_equal(seg(image), np.argmax(reference, -1))
    # Converted once: later loads read the cache, not the checkpoint.
    assert len(list((tmp_path / "cache" / "converted").glob("*.npz"))) == 1
    with monkeypatch.context() as patch:
        patch.setattr(tf_slim, "convert_checkpoint", lambda *a, **k: pytest.fail("converted again"))
        again = zoo.load("mobilenetv2_coco_voc_trainaug", checkpoint=archive, crop_size=65)
        np.testing.assert_array_equal(again.logits(image), logits)
    # The folder and the prefix work too; the backbone alone for training.
    assert zoo.load("mobilenetv2_coco_voc_trainaug", checkpoint=folder, crop_size=65)
    weights = zoo.backbone_weights(
        "mobilenetv2_coco_voc_trainaug", checkpoint=folder / "model.ckpt-30000"
    )
    np.testing.assert_array_equal(
        weights.variables["params"]["stem"]["conv"]["kernel"],
        official.variables["MobilenetV2/Conv/weights"],
    )


def test_zoo_load_downloads_from_the_entry_address(mobilenet_release, tmp_path, monkeypatch):
    """`zoo.load(name)` without a checkpoint: download (here from 127.0.0.1), extract, convert."""
    import http.server
    import threading

    from jaxseg import zoo
    from jaxseg.zoo import registry

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    _, _, archive, _ = mobilenet_release
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        name = "mobilenetv2_coco_voc_trainaug"
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{archive.name}"
        local = dataclasses.replace(
            registry.ENTRIES[name], urls=(url,), size=archive.stat().st_size
        )
        monkeypatch.setitem(registry.ENTRIES, name, local)
        seg = zoo.load(name, crop_size=65)
        assert seg.num_classes == 21
        assert (
            tmp_path / "cache" / "downloads" / archive.name
        ).read_bytes() == archive.read_bytes()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_zoo_load_of_a_backbone_entry_points_to_backbone_weights(mobilenet_release):
    from jaxseg import zoo

    _, _, _, folder = mobilenet_release
    with pytest.raises(ValueError, match="backbone_weights"):
        zoo.load("xception_65", checkpoint=folder)


def test_init_from_zoo_fills_a_model_with_another_label_set(
    mobilenet_release, tmp_path, monkeypatch
):
    import jax.numpy as jnp

    from jaxseg import zoo
    from jaxseg.models import DeepLabV3Plus

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    _, official, archive, _ = mobilenet_release
    spec = "zoo:mobilenetv2_coco_voc_trainaug"
    model = zoo.training.model(spec, num_classes=5)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 65, 65, 3)))
    variables = jax.tree.map(lambda s: np.full(s.shape, 0.25, s.dtype), shapes)
    out = zoo.training.initial_variables(spec, variables, checkpoint=archive)
    np.testing.assert_array_equal(
        out["params"]["backbone"]["stem"]["conv"]["kernel"],
        official.variables["MobilenetV2/Conv/weights"],
    )
    np.testing.assert_array_equal(
        out["batch_stats"]["aspp"]["conv1x1"]["bn"]["var"],
        official.variables["aspp0/BatchNorm/moving_variance"],
    )
    np.testing.assert_array_equal(  # 5 classes here, 21 released: kept as initialised
        out["params"]["classifier"]["kernel"], variables["params"]["classifier"]["kernel"]
    )
    other = DeepLabV3Plus(num_classes=21, backbone="mobilenetv2", separable=False)
    shapes = jax.eval_shape(other.init, jax.random.key(0), jnp.zeros((1, 65, 65, 3)))
    with pytest.raises(ValueError, match="not the released architecture.*decoder"):
        zoo.training.initial_variables(spec, shapes, checkpoint=archive)
    with pytest.raises(KeyError, match="no model 'nope' in the zoo"):
        zoo.training.model("zoo:nope")


def test_mobilenet_depth_multipliers_that_would_round_differently_are_refused():
    assert DeepLabArch("mobilenet_v2", depth_multiplier=0.5).depth_multiplier == 0.5
    with pytest.raises(ValueError, match="depth_multiplier=0.75"):
        DeepLabArch("mobilenet_v2", depth_multiplier=0.75)
    with pytest.raises(ValueError, match="unknown DeepLab model_variant 'xception_66'"):
        DeepLabArch("xception_66")


@pytest.mark.parametrize("name", ["x65", "mnv2"])
def test_multiscale_flip_protocol_matches_official(checkpoints, name):
    case, official, prefix = checkpoints[name]
    crop, scales = (65, 65), (0.5, 0.75, 1.25)
    imported = tf_slim.convert_checkpoint(prefix, case.arch, 16)
    release = deeplab_models.Release(case.arch, labels=None, eval_crop=crop)
    names = [f"class{i}" for i in range(case.arch.num_classes)]
    seg = deeplab_models.build_segmenter(release, imported.variables, 16, class_names=names)
    image = np.random.default_rng(4).integers(0, 256, (60, 45, 3), dtype=np.uint8)
    ours = np.exp(seg.replace(scales=scales, flip=True).logits(image))  # log-probabilities
    reference = official_multiscale(official, case, image, crop, 16, scales, flip=True)
    assert ours.shape == (60, 45, case.arch.num_classes)
    np.testing.assert_allclose(ours, reference, atol=2e-5)


def test_evaluate_published_scores_against_the_protocol(mobilenet_release, tmp_path, monkeypatch):
    from jaxseg.zoo.evaluate import evaluate_published

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    case, official, archive, _ = mobilenet_release
    rng = np.random.default_rng(12)
    images = [rng.integers(0, 256, (50, 40, 3), dtype=np.uint8) for _ in range(2)]
    labels = [np.argmax(official_logits(official, case, im, (65, 65), 16), -1) for im in images]
    labels[0][:5, :5] = 255  # ignored
    summary, published = evaluate_published(
        "mobilenetv2_coco_voc_trainaug", zip(images, labels, strict=True), 0, archive, crop_size=65
    )
    assert (published.value, published.eval_output_stride) == (75.32, 16)
    assert summary["pixel_accuracy"] == 1.0 and summary["num_pixels"] == 2 * 50 * 40 - 25
    wrong = [label.copy() for label in labels]
    wrong[1][10:20, 10:20] = (wrong[1][10:20, 10:20] + 1) % 21
    summary, _ = evaluate_published(
        "mobilenetv2_coco_voc_trainaug", zip(images, wrong, strict=True), 0, archive, crop_size=65
    )
    assert summary["pixel_accuracy"] == pytest.approx(1 - 100 / (2 * 50 * 40 - 25))


def test_zoo_predict_command_writes_label_pngs(mobilenet_release, tmp_path, monkeypatch, capsys):
    import shutil

    from PIL import Image

    from jaxseg.zoo_cli import main

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    case, official, archive, _ = mobilenet_release
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    shutil.copy(archive, downloads / archive.name)  # as if downloaded before: no network
    photos = tmp_path / "photos"
    photos.mkdir()
    image = np.random.default_rng(13).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    Image.fromarray(image).save(photos / "a.png")
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    args = ["predict", "mobilenetv2_coco_voc_trainaug", "--input", str(photos)]
    assert main([*args, "--output", str(out), "--crop-size", "65"]) == 0
    expected = np.argmax(official_logits(official, case, image, (65, 65), 16), -1)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), expected)
    assert (out / "a_overlay.jpg").exists() and "notes.txt" in capsys.readouterr().err
    assert main([*args, "--output", str(out), "--crop-size", "65"]) == 2  # never overwrites
    assert "already holds 2 file(s)" in capsys.readouterr().err
