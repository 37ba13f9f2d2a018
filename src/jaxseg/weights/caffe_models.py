"""Caffe releases (FCN, DeepLab v1/v2, SegNet, VGG16) onto jaxseg's models.

Each `*_spec` lists, by the release's layer names, which blobs become which parameters
(`jaxseg.weights.convert`: every blob is used or reported, every shape checked against the
model). `convert_caffemodel(path, model, spec)` reads the file and returns the model's
variables. Layouts:

- Convolution weights `[out, in, kh, kw]` -> HWIO `[kh, kw, in, out]`; biases `[out]` (old
  files: `(1, 1, 1, out)`).
- Deconvolution weights `[in, out, kh, kw]` -> our transposed-conv kernel `[kh, kw, in, out]`
  (`jaxseg.ops.conv_transpose2d` stamps input pixel `(i, j)` at `(s i, s j)` without flipping
  the kernel, as Caffe's col2im does).
- InnerProduct `[out, C * h * w]` (VGG16's fc6/fc7) -> a `[h, w, C, out]` conv kernel.
- BatchNorm `(mean, var, factor)` + Scale `(gamma, beta)` -> BatchNorm with the stored
  statistics divided by `factor` (Caffe's moving-average normaliser); caffe-segnet's inference
  `BN` `(scale, shift)` -> a BatchNorm computing `scale * x + shift`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import numpy as np

from jaxseg.backbones.vgg import VGG16_BLOCKS
from jaxseg.models._common import resolve_backbone
from jaxseg.weights.caffe import flat_blobs, read_caffemodel
from jaxseg.weights.convert import Entry, Spec, convert

# Target BatchNorm epsilon of jaxseg's BN (`jaxseg.nn.conv_bn.BatchNorm`).
TARGET_BN_EPSILON = 1e-5


def _vector(array: np.ndarray, what: str) -> np.ndarray:
    if array.size != max(array.shape, default=1) and array.ndim > 1:
        raise ValueError(f"{what}: expected a vector, got a blob of shape {array.shape}")
    return np.asarray(array, np.float32).reshape(-1)


def conv_kernel(weights: np.ndarray, kernel_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Caffe `[O, I, kh, kw]` (or InnerProduct `[O, I * kh * kw]`) -> HWIO `[kh, kw, I, O]`."""
    weights = np.asarray(weights, np.float32)
    if weights.ndim == 2 and kernel_hw is not None:
        out = weights.shape[0]
        weights = weights.reshape(out, -1, *kernel_hw)
    elif weights.ndim == 4 and weights.shape[:2] == (1, 1) and kernel_hw is not None:
        # Old files store InnerProduct weights as (1, 1, O, I * kh * kw).
        weights = weights.reshape(weights.shape[2], -1, *kernel_hw)
    if weights.ndim != 4:
        raise ValueError(f"expected a 4-D convolution blob, got shape {weights.shape}")
    return weights.transpose(2, 3, 1, 0)


def deconv_kernel(weights: np.ndarray) -> np.ndarray:
    """Caffe Deconvolution `[I, O, kh, kw]` -> `conv_transpose2d` kernel `[kh, kw, I, O]`."""
    return np.asarray(weights, np.float32).transpose(2, 3, 0, 1)


def _conv(found: dict, kernel_hw: tuple[int, int] | None = None) -> dict:
    params = {"kernel": conv_kernel(found["weights"], kernel_hw)}
    if "bias" in found:
        params["bias"] = _vector(found["bias"], "bias")
    return {"params": params}


def conv_entry(
    layer: str,
    target: tuple[str, ...],
    bias: bool = True,
    kernel_hw: tuple[int, int] | None = None,
) -> Entry:
    """A Caffe Convolution/InnerProduct layer `layer` -> a `Conv2D` at `target`."""
    keys = {"weights": f"{layer}/0"}
    if bias:
        keys["bias"] = f"{layer}/1"
    return Entry(layer, keys, target, functools.partial(_conv, kernel_hw=kernel_hw))


def deconv_entry(layer: str, param: str) -> Entry:
    """A bias-free Caffe Deconvolution -> the raw transposed-conv kernel parameter `param`."""
    return Entry(
        layer,
        {"weights": f"{layer}/0"},
        (),
        lambda found: {"params": {param: deconv_kernel(found["weights"])}},
    )


def _batchnorm_scale(found: dict, epsilon: float) -> dict:
    factor = float(_vector(found["factor"], "BatchNorm factor")[0])
    scale = 1.0 / factor if factor != 0 else 0.0  # Caffe's own rule for a zero factor
    mean = _vector(found["mean"], "BatchNorm mean") * scale
    var = _vector(found["var"], "BatchNorm variance") * scale + (epsilon - TARGET_BN_EPSILON)
    out = {
        "params": {
            "scale": _vector(found["gamma"], "Scale gamma"),
            "bias": _vector(found["beta"], "Scale beta"),
        },
        "batch_stats": {"mean": mean, "var": var},
    }
    return {"params": {"bn": out["params"]}, "batch_stats": {"bn": out["batch_stats"]}}


def conv_bn_scale_entries(
    conv: str, bn: str, scale: str, target: tuple[str, ...], epsilon: float = 1e-5
) -> tuple[Entry, Entry]:
    """Bias-free Convolution + BatchNorm + Scale (Caffe ResNet) -> a `ConvBN` at `target`."""
    return (
        Entry(conv, {"weights": f"{conv}/0"}, (*target, "conv"), _conv),
        Entry(
            bn,
            {
                "mean": f"{bn}/0",
                "var": f"{bn}/1",
                "factor": f"{bn}/2",
                "gamma": f"{scale}/0",
                "beta": f"{scale}/1",
            },
            target,
            functools.partial(_batchnorm_scale, epsilon=epsilon),
        ),
    )


def _conv_segnet_bn(found: dict) -> dict:
    # conv(x) + b, then scale * (.) + shift == BN(conv(x)) with mean -b/1, var 1 - eps:
    # (y - mean) / sqrt(var + eps) * scale + bias with mean = 0, var = 1 - eps.
    scale = _vector(found["scale"], "BN scale")
    shift = _vector(found["shift"], "BN shift")
    bias = _vector(found["bias"], "conv bias")
    return {
        "params": {
            "conv": {"kernel": conv_kernel(found["weights"])},
            "bn": {"scale": scale, "bias": shift + scale * bias},
        },
        "batch_stats": {
            "bn": {
                "mean": np.zeros_like(scale),
                "var": np.full_like(scale, 1.0 - TARGET_BN_EPSILON),
            }
        },
    }


def conv_segnet_bn_entry(conv: str, bn: str, target: tuple[str, ...]) -> Entry:
    """caffe-segnet Convolution (with bias) + inference `BN` (scale, shift) -> a `ConvBN`."""
    keys = {"weights": f"{conv}/0", "bias": f"{conv}/1", "scale": f"{bn}/0", "shift": f"{bn}/1"}
    return Entry(conv, keys, target, _conv_segnet_bn)


def vgg16_entries(prefix: tuple[str, ...], blocks=VGG16_BLOCKS) -> list[Entry]:
    """`conv{b}_{i}` -> `prefix/conv{b}_{i}` for VGG16's 13 convolutions (with biases)."""
    return [
        conv_entry(f"conv{b}_{i}", (*prefix, f"conv{b}_{i}"))
        for b, widths in enumerate(blocks, start=1)
        for i in range(1, len(widths) + 1)
    ]


def _shape_key(model: nn.Module) -> str:
    # The conversion engine caches the model's parameter shapes by spec name: the name must
    # change with every attribute that changes a shape.
    names = [f.name for f in dataclasses.fields(model) if f.name not in ("parent", "name")]
    return ", ".join(f"{k}={getattr(model, k)!r}" for k in names)


def make_spec(
    release: str,
    model: nn.Module,
    entries: list[Entry],
    is_ignorable: Callable[[str], bool] = lambda key: False,
) -> Spec:
    """A `Spec` whose shapes are checked against `model` itself."""
    return Spec(
        name=f"{release} [{type(model).__name__}({_shape_key(model)})]",
        entries=tuple(entries),
        reference=lambda: model,
        is_ignorable=is_ignorable,
    )


# ---- FCN -----------------------------------------------------------------------------------

# Caffe name of the final, fixed bilinear deconvolution per output stride.
FCN_FINAL_DECONV = {32: "upscore", 16: "upscore16", 8: "upscore8"}


def _scaled_score(found: dict) -> dict:
    out = _conv(found)
    if "scale" in found:
        # score(scale * pool) == score with its input channels scaled: fold the fixed Scale.
        scale = _vector(found["scale"], "Scale")
        out["params"]["kernel"] = out["params"]["kernel"] * scale[None, None, :, None]
    return out


def _scaled_score_entry(pool: str) -> Entry:
    """`score_{pool}`, preceded in the at-once nets by a fixed `scale_{pool}` (0.01 for pool4,
    1e-4 for pool3), which is folded into the 1x1 kernel."""
    keys = {"weights": f"score_{pool}/0", "bias": f"score_{pool}/1", "scale": f"scale_{pool}/0"}
    return Entry(f"score_{pool}", keys, (f"score_{pool}",), _scaled_score, frozenset({"scale"}))


def fcn_spec(model: nn.Module) -> Spec:
    """FCN-32s/16s/8s (voc-fcn*s, heavy or at-once): the model needs
    `learnable_final_upsampling=True` so that the stored final deconvolution (bilinear in the
    release, any kernel in a file) is used. The at-once nets' fixed `scale_pool4`/`scale_pool3`
    are folded into `score_pool4`/`score_pool3`."""
    if not model.learnable_final_upsampling:
        raise ValueError(
            "FCN from Caffe: build the model with learnable_final_upsampling=True; the "
            "release stores its final deconvolution kernel"
        )
    skips = type(model).skips
    entries = vgg16_entries(("backbone",))
    entries += [
        conv_entry("fc6", ("backbone", "fc6"), kernel_hw=(7, 7)),
        conv_entry("fc7", ("backbone", "fc7"), kernel_hw=(1, 1)),
        conv_entry("score_fr", ("score_fr",)),
    ]
    for i, pool in enumerate(skips):
        entries.append(_scaled_score_entry(pool))
        name = "upscore2" if i == 0 else f"upscore_{skips[i - 1]}"
        entries.append(deconv_entry(name, name))
    stride = 32 // 2 ** len(skips)
    entries.append(deconv_entry(FCN_FINAL_DECONV[stride], "upscore"))
    return make_spec(f"Caffe FCN-{stride}s", model, entries)


# ---- reading ---------------------------------------------------------------------------------


def convert_caffemodel(
    path: str | Path,
    spec: Spec,
    *,
    strict: bool = True,
    arrays: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Reads `path` and converts it by `spec`: the model's `{"params", "batch_stats"}`.

    Every blob must be used (or be ignorable by the spec) and every parameter of the model
    present with its shape; otherwise a ValueError names the file and what differs.
    """
    if arrays is None:
        arrays = flat_blobs(read_caffemodel(path))
    imported = convert(arrays, spec, f"Caffe model {path}", strict=strict)
    return imported.variables


# ---- DeepLab v1 / v2 (VGG16) -----------------------------------------------------------------


def deeplab_v1_spec(model: nn.Module, classifier: str = "fc8_voc12") -> Spec:
    """DeepLab v1 LargeFOV (deeplab-public, V1 file format): VGG16 convs, fc6 (3x3, rate 12),
    fc7, and the classifier `classifier` -> `fc8`."""
    entries = vgg16_entries(("backbone",))
    entries += [
        conv_entry("fc6", ("fc6",)),
        conv_entry("fc7", ("fc7",)),
        conv_entry(classifier, ("fc8",)),
    ]
    return make_spec("Caffe DeepLab v1 LargeFOV", model, entries)


def deeplab_v2_vgg_spec(model: nn.Module, classifier: str = "fc8_voc12") -> Spec:
    """DeepLab v2 VGG16 ASPP-L: VGG16 convs and per branch i `fc6_i`, `fc7_i`,
    `{classifier}_i` -> `branch{i}/fc6`, `fc7`, `fc8`."""
    entries = vgg16_entries(("backbone",))
    for i in range(1, len(model.atrous_rates) + 1):
        entries += [
            conv_entry(f"fc6_{i}", (f"branch{i}", "fc6")),
            conv_entry(f"fc7_{i}", (f"branch{i}", "fc7")),
            conv_entry(f"{classifier}_{i}", (f"branch{i}", "fc8")),
        ]
    return make_spec("Caffe DeepLab v2 VGG16 ASPP-L", model, entries)


# ---- DeepLab v2 ResNet-101 -----------------------------------------------------------------


def caffe_block_name(stage: int, block: int, numbered: bool) -> str:
    """MSRA ResNet block names: `res{stage}a`, then `b`, `c`, ... or `b1`, `b2`, ...

    `stage` is Caffe's (2..5), `block` 0-based; ResNet-101 numbers the blocks of res3 and res4.
    """
    if block == 0:
        return f"res{stage}a"
    return f"res{stage}b{block}" if numbered else f"res{stage}{chr(ord('a') + block)}"


def caffe_resnet_entries(
    prefix: tuple[str, ...], stage_sizes, numbered_stages=(3, 4), epsilon: float = 1e-5
) -> list[Entry]:
    """MSRA/DeepLab Caffe ResNet (conv + BatchNorm + Scale) -> `jaxseg.backbones.ResNet`."""
    entries = list(conv_bn_scale_entries("conv1", "bn_conv1", "scale_conv1", (*prefix, "conv1")))
    for s, blocks in enumerate(stage_sizes):
        stage = s + 2
        for b in range(blocks):
            block = caffe_block_name(stage, b, stage in numbered_stages)
            suffix = block[len("res") :]
            target = (*prefix, f"stage{s + 1}_block{b + 1}")
            branches = [("branch2a", "conv1"), ("branch2b", "conv2"), ("branch2c", "conv3")]
            if b == 0:
                branches.append(("branch1", "shortcut"))
            for branch, ours in branches:
                entries += conv_bn_scale_entries(
                    f"{block}_{branch}",
                    f"bn{suffix}_{branch}",
                    f"scale{suffix}_{branch}",
                    (*target, ours),
                    epsilon,
                )
    return entries


def deeplab_v2_resnet_spec(
    model: nn.Module, classifier: str = "fc1_voc12", numbered_stages=(3, 4)
) -> Spec:
    """DeepLab v2 ResNet ASPP-L: the Caffe ResNet (its depth read off `model.backbone`) and
    `{classifier}_c0..c3` -> `aspp/branch1..4`."""
    stage_sizes = tuple(resolve_backbone(model.backbone)().stage_sizes)
    entries = caffe_resnet_entries(("backbone",), stage_sizes, numbered_stages)
    rates = model.atrous_rates or (6, 12, 18, 24)
    entries += [
        conv_entry(f"{classifier}_c{i}", ("aspp", f"branch{i + 1}")) for i in range(len(rates))
    ]
    return make_spec("Caffe DeepLab v2 ResNet ASPP-L", model, entries)


def scale_copy_base(layer: str, tags: tuple[str, ...]) -> str | None:
    """The full-scale layer a per-scale copy stands for, or None if `layer` has no scale tag.

    The released DeepLab v2 prototxts tag a scale branch with an `_`-separated token placed
    where their naming puts it: at the end for the backbone (`conv1_res075`,
    `bn_conv1_res05`, `res2a_branch1_res075`) and before the branch index for the ASPP
    classifier (`fc1_voc12_res075_c0` for `fc1_voc12_c0`). The tag is removed wherever it is.
    `tags` may be spelled with or without the leading underscore (`"_res075"` or `"res075"`).
    """
    words = layer.split("_")
    wanted = {t.lstrip("_") for t in tags}
    found = [i for i, word in enumerate(words) if word in wanted]
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"layer {layer!r} carries more than one scale tag ({sorted(wanted)})")
    del words[found[0]]
    return "_".join(words)


def drop_scale_copies(
    arrays: Mapping[str, np.ndarray], tags: tuple[str, ...], what: str
) -> dict[str, np.ndarray]:
    """Removes the per-scale copies of shared weights (`conv1_res075/0` == `conv1/0`,
    `fc1_voc12_res05_c3/1` == `fc1_voc12_c3/1`).

    DeepLab v2's multi-scale nets share one set of weights between scale branches, and Caffe
    saves it once per branch layer. Each copy must equal the full-scale layer's blob exactly;
    a copy that differs, or that has no full-scale layer, is an error naming both layers.

    Args:
      arrays: flat `{"layer/index": blob}` (`jaxseg.weights.caffe.flat_blobs`).
      tags: the scale tags, e.g. `("_res075", "_res05")` (`scale_copy_base`).
      what: names the file in errors.

    Returns:
      `arrays` without the copies, in file order.
    """
    kept = {}
    for key, value in arrays.items():
        layer, _, index = key.rpartition("/")
        base = scale_copy_base(layer, tags)
        if base is None:
            kept[key] = value
            continue
        original_key = f"{base}/{index}"
        original = arrays.get(original_key)
        if original is None:
            raise ValueError(
                f"{what}: layer {layer!r} is a scale-branch copy of {base!r} (weights shared "
                f"between scales), but the file has no blob {original_key}"
            )
        if original.shape != value.shape or not np.array_equal(original, value):
            detail = (
                f"shape {value.shape} vs {original.shape}"
                if original.shape != value.shape
                else f"max difference {float(np.max(np.abs(value - original))):.3g}"
            )
            raise ValueError(
                f"{what}: {key} (layer {layer!r}) should be a copy of {original_key} (layer "
                f"{base!r}; the released nets share weights between scales) but differs: "
                f"{detail}"
            )
    return kept


# ---- SegNet --------------------------------------------------------------------------------

# SegNet's classifier layer is named differently in the tutorial prototxts and in some
# released files.
SEGNET_CLASSIFIERS = ("conv1_1_D", "conv_classifier", "dense_softmax_inner_prod")


def segnet_spec(model: nn.Module) -> Spec:
    """SegNet (VGG16 encoder-decoder, caffe-segnet): `conv{b}_{i}` + `conv{b}_{i}_bn` ->
    `backbone/conv{b}_{i}`, decoder `conv{b}_{i}_D` + `_bn` -> `conv{b}_{i}_d`, and the
    classifier (`conv1_1_D`, with bias, no BN) -> `classifier`."""
    entries = []
    for b, widths in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, len(widths) + 1):
            name = f"conv{b}_{i}"
            entries.append(conv_segnet_bn_entry(name, f"{name}_bn", ("backbone", name)))
            if (b, i) != (1, 1):
                dec = f"{name}_D"
                entries.append(conv_segnet_bn_entry(dec, f"{dec}_bn", (f"{name}_d",)))
    keys = {
        "weights": tuple(f"{n}/0" for n in SEGNET_CLASSIFIERS),
        "bias": tuple(f"{n}/1" for n in SEGNET_CLASSIFIERS),
    }
    entries.append(Entry("conv1_1_D", keys, ("classifier",), _conv))
    return make_spec("Caffe SegNet", model, entries)


def segnet_basic_spec(model: nn.Module) -> Spec:
    """SegNet-Basic: `conv{i}` / `conv_decode{i}` + `_bn` -> the same names, and the 1x1
    classifier (`conv_classifier`, or `dense_softmax_inner_prod` in some files)."""
    entries = []
    for i in range(1, model.depth + 1):
        for name in (f"conv{i}", f"conv_decode{i}"):
            entries.append(conv_segnet_bn_entry(name, f"{name}_bn", (name,)))
    names = SEGNET_CLASSIFIERS[1:]
    keys = {"weights": tuple(f"{n}/0" for n in names), "bias": tuple(f"{n}/1" for n in names)}
    entries.append(Entry("conv_classifier", keys, ("classifier",), _conv))
    return make_spec("Caffe SegNet-Basic", model, entries)


# ---- VGG16 (ImageNet) ----------------------------------------------------------------------


def vgg16_ilsvrc_spec(model: nn.Module, with_classifier: bool = True) -> Spec:
    """VGG_ILSVRC_16_layers: the 13 convs, InnerProduct fc6 `[4096, 512 * 7 * 7]` -> a 7x7
    conv, fc7 -> 1x1, and (`with_classifier`) fc8 -> `fc8`, for `VGG16Classifier`; without
    it fc8 is reported as unused (a backbone for FCN: `model` is then a `VGG16` with
    `include_fc=True` and its parameters are at the top level)."""
    prefix = ("backbone",) if with_classifier else ()
    entries = vgg16_entries(prefix)
    entries += [
        conv_entry("fc6", (*prefix, "fc6"), kernel_hw=(7, 7)),
        conv_entry("fc7", (*prefix, "fc7"), kernel_hw=(1, 1)),
    ]
    if with_classifier:
        entries.append(conv_entry("fc8", ("fc8",), kernel_hw=(1, 1)))
    ignorable = (lambda key: False) if with_classifier else (lambda key: key.startswith("fc8/"))
    spec = make_spec("Caffe VGG_ILSVRC_16_layers", model, entries, ignorable)
    # Parameter shapes do not depend on fc6's padding; SAME lets the shape check run small.
    return dataclasses.replace(spec, reference=lambda: model.clone(fc6_padding="SAME"))
