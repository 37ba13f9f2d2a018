"""Released weights as the starting point of training (`init_from="zoo:NAME"`).

    model = zoo.training.model("xception65_coco_voc_trainaug", num_classes=5)
    variables = model.init(rng, images)
    variables = zoo.training.initial_variables("zoo:xception65_coco_voc_trainaug", variables)

`model` is the released architecture with its official switches (BN epsilons, padding,
align_corners, ASPP layout; for a Caffe release its pad, pooling and `Interp` rules);
`initial_variables` puts the released weights into a model's variables: a whole model's (the
classifier kept as initialised when the number of classes differs), or the backbone of an
ImageNet entry.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxseg import weights
from jaxseg.zoo import caffe_models, deeplab_models
from jaxseg.zoo.loading import fetch, load
from jaxseg.zoo.registry import entry, local_file

logger = logging.getLogger(__name__)
PREFIX = "zoo:"


def entry_name(spec: str) -> str:
    """`"zoo:NAME"` or `"NAME"` -> `NAME` (checked to be a zoo entry)."""
    name = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    try:
        entry(name)
    except KeyError as e:
        raise KeyError(f"init_from={spec!r}: {e.args[0]}") from None
    return name


def model(spec: str, output_stride: int | None = None, num_classes: int | None = None) -> nn.Module:
    """The released architecture of `spec`, optionally with another number of classes.

    A TF DeepLab release is built at `output_stride` (None: 16); an ImageNet backbone entry
    gets the DeepLab v3+ head of the paper. A Caffe release is its `CaffeArch` (the model class
    with the release's switches), at its one output stride.
    """
    name = entry_name(spec)
    caffe = caffe_models.RELEASES.get(name)
    if caffe is not None:
        if output_stride not in (None, caffe.output_stride):
            raise ValueError(
                f"{spec} runs at output stride {caffe.output_stride} only (its layout is fixed "
                f"by the Caffe release), got output_stride={output_stride}"
            )
        arch = caffe.arch if num_classes is None else caffe.arch.with_sizes(num_classes=num_classes)
        return arch.build()
    arch = deeplab_models.RELEASES[name].arch
    if num_classes is not None:
        arch = dataclasses.replace(arch, num_classes=num_classes)
    elif arch.num_classes is None:
        raise ValueError(f"{spec} is a backbone: pass num_classes to get a segmentation model")
    return arch.model(output_stride or 16)


def backbone_weights(name: str, checkpoint: str | Path | None = None):
    """The backbone variables of DeepLab release `name` (ImageNet backbones included), a
    `jaxseg.weights.ImportedWeights` for `DeepLabArch.backbone_factory()` of the entry."""
    if name not in deeplab_models.RELEASES:
        raise KeyError(
            f"{name!r} is not a DeepLab TF-slim release; known: "
            f"{', '.join(sorted(deeplab_models.RELEASES))}"
        )
    path = local_file(checkpoint) if checkpoint is not None else fetch(name)
    return deeplab_models.load_backbone_weights(deeplab_models.RELEASES[name], path)


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def initial_variables(
    spec: str, variables: Mapping[str, Any], checkpoint: str | Path | None = None
) -> dict[str, Any]:
    """`variables` with the released weights of `spec` ("zoo:NAME") put in.

    Args:
      spec: a zoo entry ("zoo:NAME"): a whole model (TF-slim or Caffe release) fills every
        variable; the ImageNet backbone entries of the TF-slim zoo fill `backbone` only.
      variables: the model's own variables (`{"params", "batch_stats"}`), e.g. from `init`.
      checkpoint: a local copy of the release instead of the cached download.

    Returns:
      New variables (nested dicts). For a whole-model release with another number of classes
      the classifier keeps its initial value (logged).

    Raises:
      ValueError naming the variables when the model is not the released architecture (a
      released variable absent from the model, or model variables the release does not have
      other than the classifier).
    """
    name = entry_name(spec)
    release = deeplab_models.RELEASES.get(name)
    if release is not None and release.arch.num_classes is None:
        return weights.load_backbone(variables, backbone_weights(name, checkpoint), strict=True)
    released = load(name, checkpoint).variables  # any whole-model release, TF-slim or Caffe
    flat_ours = {(col, *p): v for col, tree in variables.items() for p, v in _flatten(tree).items()}
    flat_released = {
        (col, *p): v for col, tree in released.items() for p, v in _flatten(tree).items()
    }
    extra = sorted("/".join(k) for k in flat_released if k not in flat_ours)
    absent = sorted("/".join(k) for k in flat_ours if k not in flat_released)
    if extra or absent:
        raise ValueError(
            f"init_from={spec}: the model is not the released architecture: released "
            f"variables not in the model {extra[:8] or 'none'}, model variables not released "
            f"{absent[:8] or 'none'}; build it with jaxseg.zoo.training.model({spec!r}, ...)"
        )
    mismatched = [
        f"{'/'.join(k)}: released {tuple(flat_released[k].shape)}, here {tuple(v.shape)}"
        for k, v in flat_ours.items()
        if tuple(flat_released[k].shape) != tuple(v.shape) and k[:2] != ("params", "classifier")
    ]
    if mismatched:
        raise ValueError(f"init_from={spec}: shapes differ: " + "; ".join(mismatched[:8]))
    out: dict[str, Any] = {}
    for key, value in flat_ours.items():
        new = flat_released[key]
        if tuple(new.shape) != tuple(value.shape):  # the classifier, another label set
            logger.info("%s: %s keeps its initial value (%s released, %s here)", spec,
                        "/".join(key), tuple(new.shape), tuple(value.shape))  # fmt: skip
            new = value
        node = out
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = jnp.asarray(new, dtype=value.dtype)
    return out
