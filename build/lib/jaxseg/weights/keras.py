"""Import Keras application weights (VGG16, ResNet50/101, MobileNetV2) into our backbones.

Sources: a Keras model object, or a legacy-format `.h5` file (what `keras.applications`
downloads, e.g. `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`, and what
`model.save("x.h5")` writes), read with h5py without building any Keras model. Keras 3
`.weights.h5` files name weights by object path instead of layer name: load those into the
Keras model first and pass the model.

Keras conventions handled here: kernels are already HWIO; ResNet convs carry a bias before
their BatchNorm, folded into the BN mean; Keras BN epsilons (1.001e-5 ResNet, 1e-3
MobileNetV2) are folded into the variance so a standard-epsilon BN computes the same; dense
fc1/fc2 of VGG16 become the 7x7 fc6 / 1x1 fc7 convs (`jaxseg.ops.fc_to_conv`).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from jaxseg.backbones import VGG16, MobileNetV2, ResNet50, ResNet101
from jaxseg.backbones.mobilenet import MOBILENET_V2_STAGES
from jaxseg.backbones.vgg import VGG16_BLOCKS
from jaxseg.ops import fc_to_conv
from jaxseg.weights.convert import Entry, ImportedWeights, Spec, batch_norm, convert

_CONV_BN_ROLES = ("kernel", "conv_bias", "gamma", "beta", "moving_mean", "moving_variance")


def read_keras(source: Any) -> dict[str, np.ndarray]:
    """Flat `{"layer/weight": array}` from a Keras model or a legacy `.h5` file."""
    if isinstance(source, str | os.PathLike):
        return _read_h5(os.fspath(source))
    if not hasattr(source, "layers"):
        raise ValueError(f"source must be a .h5 path or a Keras model, got {type(source)}")
    arrays = {}
    for layer in source.layers:
        for weight in layer.weights:
            arrays[f"{layer.name}/{_basename(weight.name)}"] = np.asarray(weight.numpy())
    return arrays


def _basename(name: str) -> str:
    # Keras 2 names weights "layer/kernel:0", Keras 3 "kernel".
    return name.split("/")[-1].split(":")[0]


def _read_h5(path: str) -> dict[str, np.ndarray]:
    import h5py

    if not os.path.exists(path):
        raise FileNotFoundError(path)
    with h5py.File(path, "r") as file:
        root = file["model_weights"] if "model_weights" in file else file
        if "layer_names" not in root.attrs:
            raise ValueError(
                f"{path} is not a legacy Keras .h5 weight file (no 'layer_names'); for a Keras 3 "
                ".weights.h5 file build the Keras model, call load_weights(path) and pass the model"
            )
        arrays = {}
        for layer in root.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else str(layer)
            group = root[layer]
            for weight in group.attrs.get("weight_names", []):
                weight = weight.decode() if isinstance(weight, bytes) else str(weight)
                arrays[f"{layer}/{_basename(weight)}"] = np.asarray(group[weight])
        return arrays


def _conv_bias(found: dict) -> dict:
    return {"params": {"kernel": found["kernel"], "bias": found["bias"]}}


def _conv_bn(found: dict, source_epsilon: float, target_epsilon: float, depthwise: bool = False):
    kernel = found["kernel"]
    if depthwise:  # Keras [k, k, C, 1] -> ours [k, k, 1, C] (channel multiplier 1)
        kernel = kernel.reshape(kernel.shape[0], kernel.shape[1], 1, -1)
    bn = batch_norm(
        found["gamma"],
        found["beta"],
        found["moving_mean"],
        found["moving_variance"],
        source_epsilon,
        target_epsilon,
        conv_bias=found.get("conv_bias"),
    )
    return {
        "params": {"conv": {"kernel": kernel}, "bn": bn["params"]},
        "batch_stats": {"bn": bn["batch_stats"]},
    }


def _dense_as_conv(found: dict, input_hw: tuple[int, int]) -> dict:
    return {"params": {"kernel": fc_to_conv(found["kernel"], input_hw), "bias": found["bias"]}}


def _conv_bn_entry(conv: str, bn: str, target, convert_fn, depthwise: bool = False) -> Entry:
    # Keras 2 names a depthwise kernel "depthwise_kernel", Keras 3 "kernel".
    kernel = (f"{conv}/depthwise_kernel", f"{conv}/kernel") if depthwise else f"{conv}/kernel"
    keys = {
        "kernel": kernel,
        "conv_bias": f"{conv}/bias",
        "gamma": f"{bn}/gamma",
        "beta": f"{bn}/beta",
        "moving_mean": f"{bn}/moving_mean",
        "moving_variance": f"{bn}/moving_variance",
    }
    return Entry(conv, keys, target, convert_fn, optional_roles=frozenset({"conv_bias"}))


def _vgg16_spec(target_epsilon: float) -> Spec:
    del target_epsilon
    entries = [
        Entry(
            f"block{b}_conv{i}",
            {"kernel": f"block{b}_conv{i}/kernel", "bias": f"block{b}_conv{i}/bias"},
            (f"conv{b}_{i}",),
            _conv_bias,
        )
        for b, widths in enumerate(VGG16_BLOCKS, start=1)
        for i in range(1, len(widths) + 1)
    ]
    for source, target, hw in (("fc1", "fc6", (7, 7)), ("fc2", "fc7", (1, 1))):
        entries.append(
            Entry(
                source,
                {"kernel": f"{source}/kernel", "bias": f"{source}/bias"},
                (target,),
                functools.partial(_dense_as_conv, input_hw=hw),
                optional=True,
            )
        )
    return Spec(
        "Keras VGG16",
        tuple(entries),
        reference=lambda: VGG16(include_fc=True),
        is_ignorable=lambda key: key.startswith("predictions/"),
        input_mode="caffe",
    )


def _resnet_spec(stage_sizes, reference, name: str, target_epsilon: float) -> Spec:
    convert_fn = functools.partial(_conv_bn, source_epsilon=1.001e-5, target_epsilon=target_epsilon)
    entries = [_conv_bn_entry("conv1_conv", "conv1_bn", ("conv1",), convert_fn)]
    for s, blocks in enumerate(stage_sizes, start=1):
        for b in range(1, blocks + 1):
            layer = f"conv{s + 1}_block{b}"
            for j, target in ((1, "conv1"), (2, "conv2"), (3, "conv3"), (0, "shortcut")):
                if j == 0 and b != 1:
                    continue
                entries.append(
                    _conv_bn_entry(
                        f"{layer}_{j}_conv",
                        f"{layer}_{j}_bn",
                        (f"stage{s}_block{b}", target),
                        convert_fn,
                    )
                )
    return Spec(
        f"Keras {name}",
        tuple(entries),
        reference=reference,
        is_ignorable=lambda key: key.startswith("predictions/"),
        backbone_kwargs={"stride_in_1x1": True},
        input_mode="caffe",
    )


def _mobilenet_v2_spec(target_epsilon: float) -> Spec:
    convert_fn = functools.partial(_conv_bn, source_epsilon=1e-3, target_epsilon=target_epsilon)
    depthwise_fn = functools.partial(convert_fn, depthwise=True)
    entries = [_conv_bn_entry("Conv1", "bn_Conv1", ("stem",), convert_fn)]
    num_blocks = sum(stage[2] for stage in MOBILENET_V2_STAGES)
    for k in range(num_blocks):  # Keras: "expanded_conv" then "block_1".."block_16"
        prefix = "expanded_conv" if k == 0 else f"block_{k}"
        target = f"block{k + 1}"
        if k > 0:
            entries.append(
                _conv_bn_entry(
                    f"{prefix}_expand", f"{prefix}_expand_BN", (target, "expand"), convert_fn
                )
            )
        entries.append(
            _conv_bn_entry(
                f"{prefix}_depthwise",
                f"{prefix}_depthwise_BN",
                (target, "depthwise"),
                depthwise_fn,
                depthwise=True,
            )
        )
        entries.append(
            _conv_bn_entry(
                f"{prefix}_project", f"{prefix}_project_BN", (target, "project"), convert_fn
            )
        )
    # Our trunk stops before the 1x1 conv to 1280 channels (Conv_1), as DeepLab does.
    head = ("Conv_1/", "Conv_1_bn/", "predictions/")
    return Spec(
        "Keras MobileNetV2",
        tuple(entries),
        reference=MobileNetV2,
        is_ignorable=lambda key: key.startswith(head),
        input_mode="tf",
    )


_SPECS = {
    "vgg16": _vgg16_spec,
    "resnet50": functools.partial(_resnet_spec, (3, 4, 6, 3), ResNet50, "ResNet50"),
    "resnet101": functools.partial(_resnet_spec, (3, 4, 23, 3), ResNet101, "ResNet101"),
    "mobilenetv2": _mobilenet_v2_spec,
}

_XCEPTION_MESSAGE = (
    "Keras' Xception is the original ImageNet Xception (8 middle-flow units, max pooling in the "
    "entry/exit flows, no BN between depthwise and pointwise convs), not the aligned "
    "Xception-65 of DeepLab v3+ (16 middle units, strided separable convs): its weights do "
    "not map onto jaxseg.backbones.Xception65. Train Xception65 from scratch or convert "
    "DeepLab's TF checkpoints."
)


def from_keras(
    source: Any, model_name: str, strict: bool = True, target_epsilon: float = 1e-5
) -> ImportedWeights:
    """Converts Keras application weights to a jaxseg backbone's variables.

    Args:
      source: a legacy `.h5` path (with or without the classifier top) or a Keras model.
      model_name: 'vgg16' (-> `VGG16(include_fc=True)`; fc1/fc2 become fc6/fc7 when the file
        has them), 'resnet50', 'resnet101' (-> `ResNet50/101(stride_in_1x1=True)`: Keras
        strides the first 1x1 conv), 'mobilenetv2' (-> `MobileNetV2()`, alpha 1.0).
        'xception' raises: Keras' Xception is not the aligned Xception-65.
      strict: raise if layers are missing or the source has layers this architecture lacks
        (other than the ImageNet classifier); otherwise only report them.
      target_epsilon: the epsilon of the BatchNorm the weights will run in (ours: 1e-5).

    Returns:
      `ImportedWeights` (variables for the backbone, missing / unexpected keys by name, the
      backbone kwargs and input preprocessing the weights need). Shape mismatches raise.
    """
    key = model_name.lower().replace("-", "").replace("_", "")
    if key.startswith("xception"):
        raise ValueError(_XCEPTION_MESSAGE)
    if key not in _SPECS:
        raise ValueError(
            f"from_keras: unknown model_name {model_name!r}; use one of {sorted(_SPECS)}"
        )
    what = f"Keras source {source!r}" if isinstance(source, str | os.PathLike) else "Keras model"
    return convert(read_keras(source), _SPECS[key](target_epsilon=target_epsilon), what, strict)
