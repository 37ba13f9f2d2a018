"""The official DeepLab graphs composed from TensorFlow's own ops: the reference that jaxseg's
TF-slim conversion is tested against (tests/weights/test_tf_slim.py) and the TensorFlow peer of
the Xception-65 DeepLab v3+ benchmark (benchmarks/peers.py --peer tf-deeplab).

`Official` builds the forward pass of research/deeplab's model.py structure (Xception, ResNet
v1 beta, MobileNetV2 backbones; ASPP with image pooling; the v3+ decoder) from `tf.nn.conv2d` /
`depthwise_conv2d` with TF-slim's padding, `tf.nn.batch_normalization` with the checkpoint's
epsilon and `tf.compat.v1.image.resize_bilinear(align_corners=True)`, and creates each variable
(official name, random values, random BN statistics) the first time the structure asks for it.
`write_checkpoint` saves the variables as a TF checkpoint in the official layout, which jaxseg
then converts. Nothing here imports jaxseg: the configuration is written from the authors' files.

It lives in benchmarks/ (a script folder that puts itself on `sys.path`) rather than in tests/
so the benchmark scripts never depend on the test tree; the tests load it by file path.

Shapes: images and feature maps are NHWC float32 `[1, H, W, C]`; `crop` is `(height, width)`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

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
    """One network: `arch` is jaxseg's description (`jaxseg.weights.tf_slim.DeepLabArch`, read
    here for `num_classes` and `middle_flow_units` only: the sizes); the other fields are the
    official graph's configuration, stated here: the backbone scope, and whether the model has
    atrous ASPP branches, separable convs and the decoder (the Xception releases are trained
    with `--aspp_with_separable_conv --decoder_use_separable_conv --decoder_output_stride=4`;
    the MobileNetV2 releases with image pooling + 1x1 only and no decoder)."""

    arch: Any
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


def evaluation_logits(official: Official, case: Case, image, crop, output_stride):
    """The official evaluation as TF ops: uint8 `[H, W, 3]` tensor -> logits `[H, W, C]`.

    Normalise to [-1, 1], pad bottom/right to `crop` (the mean pixel, 0 after normalisation),
    run the network, resize its logits to `crop` (align_corners) and crop back to `H x W`.
    Usable eagerly or inside `tf.function` (the benchmark's graph).
    """
    x = (2.0 / 255.0) * tf.cast(image[None], tf.float32) - 1.0
    h, w = image.shape[:2]
    x = tf.pad(x, [[0, 0], [0, crop[0] - h], [0, crop[1] - w], [0, 0]])
    logits = resize(official_network(official, case, x, crop, output_stride), crop)
    return logits[0, :h, :w]


def official_logits(official: Official, case: Case, image: np.ndarray, crop, output_stride):
    """`evaluation_logits` of one uint8 numpy image, run eagerly: float32 `[H, W, C]`."""
    return evaluation_logits(official, case, tf.constant(image), crop, output_stride).numpy()


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
