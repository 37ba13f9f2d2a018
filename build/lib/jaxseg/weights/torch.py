"""Import torchvision VGG16 / VGG16-BN / ResNet-50/101 state dicts without PyTorch or pickle.

Sources: a `.safetensors` file (read with `safetensors.numpy`), a `.npz` of the state dict
(`np.savez(path, **{k: v.numpy() for k, v in state_dict.items()})`) or an in-memory dict of
arrays. Pickle-based `.pt`/`.pth`/`.bin` files are refused: unpickling runs arbitrary code.
Convert them once where PyTorch is installed:
`safetensors.torch.save_file(torch.load(path), "weights.safetensors")`.

Layout: conv weights OIHW -> HWIO; linear weights `[out, in]` -> `[in, out]`; VGG's classifier
read a flattened NCHW map, so fc6 is reshaped to `[4096, 512, 7, 7]` before becoming HWIO.
torchvision ResNets stride the 3x3 conv: our default `stride_in_1x1=False`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxseg.backbones import VGG16, ResNet50, ResNet101
from jaxseg.backbones.vgg import VGG16_BLOCKS
from jaxseg.weights.convert import Entry, ImportedWeights, Spec, batch_norm, convert

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".ckpt", ".tar")


def read_state_dict(source: Any) -> dict[str, np.ndarray]:
    """Flat `{key: array}` from a `.safetensors` / `.npz` path or a mapping of arrays."""
    if isinstance(source, Mapping):
        return {str(k): np.asarray(v) for k, v in source.items()}
    path = os.fspath(source)
    lower = path.lower()
    if lower.endswith(_PICKLE_SUFFIXES):
        raise ValueError(
            f"{path}: pickle-based checkpoints are not read (unpickling can run arbitrary code); "
            "convert it to .safetensors or .npz (see jaxseg.weights.torch)"
        )
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    if lower.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    if lower.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    raise ValueError(f"{path}: expected a .safetensors or .npz state dict")


def _hwio(weight: np.ndarray) -> np.ndarray:
    return np.transpose(weight, (2, 3, 1, 0))


def _conv_bias(found: dict) -> dict:
    return {"params": {"kernel": _hwio(found["weight"]), "bias": found["bias"]}}


def _conv_bn(found: dict, target_epsilon: float) -> dict:
    bn = batch_norm(
        found["bn_weight"],
        found["bn_bias"],
        found["running_mean"],
        found["running_var"],
        source_epsilon=1e-5,
        target_epsilon=target_epsilon,
        conv_bias=found.get("bias"),
    )
    return {
        "params": {"conv": {"kernel": _hwio(found["weight"])}, "bn": bn["params"]},
        "batch_stats": {"bn": bn["batch_stats"]},
    }


def _linear_as_conv(found: dict, input_chw: tuple[int, int, int]) -> dict:
    out_features = found["weight"].shape[0]
    weight = found["weight"].reshape(out_features, *input_chw)  # NCHW flatten order
    return {"params": {"kernel": _hwio(weight), "bias": found["bias"]}}


def _conv_bn_entry(conv: str, bn: str, target, convert_fn) -> Entry:
    keys = {
        "weight": f"{conv}.weight",
        "bias": f"{conv}.bias",
        "bn_weight": f"{bn}.weight",
        "bn_bias": f"{bn}.bias",
        "running_mean": f"{bn}.running_mean",
        "running_var": f"{bn}.running_var",
        "num_batches_tracked": f"{bn}.num_batches_tracked",
    }
    optional = frozenset({"bias", "num_batches_tracked"})
    return Entry(conv, keys, target, convert_fn, optional_roles=optional)


def _vgg16_spec(batch_norm_layers: bool, target_epsilon: float) -> Spec:
    entries, index = [], 0
    for b, widths in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, len(widths) + 1):
            conv, target = f"features.{index}", (f"conv{b}_{i}",)
            if batch_norm_layers:
                convert_fn = functools.partial(_conv_bn, target_epsilon=target_epsilon)
                entries.append(_conv_bn_entry(conv, f"features.{index + 1}", target, convert_fn))
                index += 3  # conv, bn, relu
            else:
                keys = {"weight": f"{conv}.weight", "bias": f"{conv}.bias"}
                entries.append(Entry(conv, keys, target, _conv_bias))
                index += 2  # conv, relu
        index += 1  # max pool
    for source, target, chw in (
        ("classifier.0", "fc6", (512, 7, 7)),
        ("classifier.3", "fc7", (4096, 1, 1)),
    ):
        keys = {"weight": f"{source}.weight", "bias": f"{source}.bias"}
        convert_fn = functools.partial(_linear_as_conv, input_chw=chw)
        entries.append(Entry(source, keys, (target,), convert_fn, optional=True))
    return Spec(
        "torchvision vgg16_bn" if batch_norm_layers else "torchvision vgg16",
        tuple(entries),
        reference=lambda: VGG16(batch_norm=batch_norm_layers, include_fc=True),
        is_ignorable=lambda key: key.startswith("classifier.6."),
        input_mode="torch",
    )


def _resnet_spec(stage_sizes, reference, name: str, target_epsilon: float) -> Spec:
    convert_fn = functools.partial(_conv_bn, target_epsilon=target_epsilon)
    entries = [_conv_bn_entry("conv1", "bn1", ("conv1",), convert_fn)]
    for s, blocks in enumerate(stage_sizes, start=1):
        for b in range(blocks):
            layer, target = f"layer{s}.{b}", f"stage{s}_block{b + 1}"
            for j in (1, 2, 3):
                entries.append(
                    _conv_bn_entry(
                        f"{layer}.conv{j}", f"{layer}.bn{j}", (target, f"conv{j}"), convert_fn
                    )
                )
            if b == 0:
                entries.append(
                    _conv_bn_entry(
                        f"{layer}.downsample.0",
                        f"{layer}.downsample.1",
                        (target, "shortcut"),
                        convert_fn,
                    )
                )
    return Spec(
        f"torchvision {name}",
        tuple(entries),
        reference=reference,
        is_ignorable=lambda key: key.startswith("fc."),
        backbone_kwargs={"stride_in_1x1": False},
        input_mode="torch",
    )


_SPECS = {
    "vgg16": functools.partial(_vgg16_spec, False),
    "vgg16bn": functools.partial(_vgg16_spec, True),
    "resnet50": functools.partial(_resnet_spec, (3, 4, 6, 3), ResNet50, "resnet50"),
    "resnet101": functools.partial(_resnet_spec, (3, 4, 23, 3), ResNet101, "resnet101"),
}


def from_torch(
    source: Any, model_name: str, strict: bool = True, target_epsilon: float = 1e-5
) -> ImportedWeights:
    """Converts a torchvision state dict to a jaxseg backbone's variables.

    Args:
      source: `.safetensors` or `.npz` path, or a mapping of numpy arrays, with torchvision's
        key names (`features.0.weight`, `layer1.0.conv1.weight`, ...).
      model_name: 'vgg16' / 'vgg16_bn' (-> `VGG16(batch_norm=..., include_fc=True)`;
        classifier.0/3 become fc6/fc7 when present; vgg16_bn's conv biases are folded into
        the BN means), 'resnet50', 'resnet101' (-> `ResNet50/101()`, stride on the 3x3).
      strict: raise if layers are missing or the source has layers this architecture lacks
        (other than the ImageNet classifier); otherwise only report them.
      target_epsilon: the epsilon of the BatchNorm the weights will run in (ours: 1e-5).

    Returns:
      `ImportedWeights` (see `from_keras`). Shape mismatches raise.
    """
    key = model_name.lower().replace("-", "").replace("_", "")
    if key not in _SPECS:
        raise ValueError(
            f"from_torch: unknown model_name {model_name!r}; use one of "
            "['resnet101', 'resnet50', 'vgg16', 'vgg16_bn']"
        )
    what = "state dict" if isinstance(source, Mapping) else f"state dict {os.fspath(source)!r}"
    arrays = read_state_dict(source)
    return convert(arrays, _SPECS[key](target_epsilon=target_epsilon), what, strict)
