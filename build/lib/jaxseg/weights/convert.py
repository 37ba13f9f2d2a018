"""The conversion engine shared by the Keras and PyTorch importers.

A *spec* lists, for one architecture, which source layer becomes which backbone submodule and
how (`Entry`). `convert` walks it over a flat `{source key: array}` dict, records what it
uses, and builds the backbone's `{"params", "batch_stats"}` tree, checking every array's shape
against the backbone module itself (`jax.eval_shape` of its init: no compute).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Arrays = Mapping[str, np.ndarray]
TargetPath = tuple[str, ...]
# A converter gets the entry's source arrays by role ("kernel", "gamma", ...) and returns
# {"params": {...}, "batch_stats": {...}} subtrees for the entry's target path.
Converter = Callable[[dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class Entry:
    """Source arrays (role -> source key) -> one backbone submodule.

    Attributes:
      name: the source layer, for messages.
      keys: role -> full source key, or a tuple of alternatives (first present wins; e.g.
        Keras 2 `depthwise_kernel` vs Keras 3 `kernel`).
      target: path of the submodule in the backbone's variables.
      convert: see `Converter`.
      optional_roles: roles that may be absent (a conv's bias).
      optional: the whole entry may be absent (VGG's fc layers in "notop" files).
    """

    name: str
    keys: Mapping[str, str | tuple[str, ...]]
    target: TargetPath
    convert: Converter
    optional_roles: frozenset[str] = frozenset()
    optional: bool = False


@dataclasses.dataclass(frozen=True)
class Spec:
    """How to import one architecture from one source format."""

    name: str
    entries: tuple[Entry, ...]
    reference: Callable[[], nn.Module]  # the backbone whose shapes the result must match
    is_ignorable: Callable[[str], bool] = lambda key: False  # classifier heads, counters
    backbone_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    input_mode: str = ""


@dataclasses.dataclass(frozen=True)
class ImportedWeights:
    """A converted backbone and what did not map.

    Attributes:
      variables: `{"params": ..., "batch_stats": ...}` for the backbone module (pass it to
        `load_backbone`).
      missing: source keys the architecture needs that the source lacks.
      unexpected: source keys the architecture does not use (classifier heads included).
      backbone_kwargs: constructor arguments the backbone needs for these weights to mean
        what they meant (e.g. `{"stride_in_1x1": True}` for Keras ResNets).
      input_mode: the preprocessing the weights were trained with, in
        `keras.applications` terms: 'caffe' (BGR, ImageNet mean subtracted, no scaling),
        'torch' (RGB in [0, 1], ImageNet mean/std) or 'tf' (RGB scaled to [-1, 1]).
    """

    variables: dict[str, dict]
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    backbone_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    input_mode: str = ""


def _flatten(tree: Mapping, prefix: TargetPath = ()) -> dict[TargetPath, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def _set(tree: dict, path: TargetPath, value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _first(key: str | tuple[str, ...]) -> str:
    return key if isinstance(key, str) else key[0]


def _first_present(arrays: Arrays, key: str | tuple[str, ...]) -> str | None:
    for candidate in (key,) if isinstance(key, str) else key:
        if candidate in arrays:
            return candidate
    return None


# Spec name -> reference shapes; tracing ResNet-101 once per process is enough.
_SHAPES_CACHE: dict[str, dict] = {}


def reference_shapes(module: nn.Module) -> dict[str, dict[TargetPath, tuple[int, ...]]]:
    """Shapes of the module's variables by collection and path, without computing anything."""
    variables = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    return {col: {p: v.shape for p, v in _flatten(tree).items()} for col, tree in variables.items()}


def convert(arrays: Arrays, spec: Spec, what: str, strict: bool = True) -> ImportedWeights:
    """Runs `spec` over `arrays` (flat source dict); `what` names the source in errors."""
    used: set[str] = set()
    missing: list[str] = []
    converted: list[tuple[Entry, dict]] = []
    found_any = False
    for entry in spec.entries:
        chosen = {role: _first_present(arrays, key) for role, key in entry.keys.items()}
        found = {role: np.asarray(arrays[key]) for role, key in chosen.items() if key is not None}
        found_any = found_any or bool(found)
        if not found and entry.optional:
            continue
        absent = [
            _first(key)
            for role, key in entry.keys.items()
            if role not in found and role not in entry.optional_roles
        ]
        # Keys of a known layer are never "unexpected", even when the layer is incomplete.
        used.update(chosen[role] for role in found)
        if absent:
            missing.extend(absent)
            continue
        converted.append((entry, entry.convert(found)))
    if not found_any:
        sample = ", ".join(sorted(arrays)[:8])
        raise ValueError(
            f"{what} does not look like {spec.name}: none of its layers were found "
            f"(e.g. {_first(next(iter(spec.entries[0].keys.values())))!r}); the source has keys "
            "like: "
            f"{sample}"
        )
    unexpected = sorted(key for key in arrays if key not in used)
    foreign = [key for key in unexpected if not spec.is_ignorable(key)]
    if strict and (missing or foreign):
        raise ValueError(
            f"{what} does not match {spec.name}: missing {missing or 'nothing'}; unexpected "
            f"{foreign[:20] or 'nothing'}{' ...' if len(foreign) > 20 else ''} "
            "(a different architecture or depth?)"
        )

    if spec.name not in _SHAPES_CACHE:
        _SHAPES_CACHE[spec.name] = reference_shapes(spec.reference())
    expected = _SHAPES_CACHE[spec.name]
    variables: dict[str, dict] = {}
    mismatches = []
    for entry, collections in converted:
        for collection, subtree in collections.items():
            for path, value in _flatten(subtree, entry.target).items():
                want = expected.get(collection, {}).get(path)
                if want is None:
                    raise ValueError(f"internal: {spec.name} spec targets unknown {path}")
                if tuple(value.shape) != tuple(want):
                    mismatches.append(
                        f"{entry.name} -> {'/'.join(path)}: got {value.shape}, expected {want}"
                    )
                _set(variables.setdefault(collection, {}), path, value)
    if mismatches:
        raise ValueError(
            f"{what}: shapes do not match {spec.name} (a different architecture or width?):\n  "
            + "\n  ".join(mismatches)
        )
    return ImportedWeights(
        variables=variables,
        missing=tuple(missing),
        unexpected=tuple(unexpected),
        backbone_kwargs=dict(spec.backbone_kwargs),
        input_mode=spec.input_mode,
    )


def batch_norm(
    scale: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    source_epsilon: float,
    target_epsilon: float,
    conv_bias: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """A BN layer for a bias-free conv, folding the conv's bias and the epsilon difference.

    BN(x + b) with statistics (mean, var) equals BN(x) with mean - b; and
    var + eps_source under a `target_epsilon` BN is var + eps_source - eps_target. Both are
    exact in inference; in training the batch statistics cancel a bias anyway.
    """
    mean = mean - conv_bias if conv_bias is not None else mean
    var = var + (source_epsilon - target_epsilon)
    if np.any(var + target_epsilon <= 0):
        raise ValueError("batch norm variance + epsilon must be positive after conversion")
    return {
        "params": {"scale": scale, "bias": bias},
        "batch_stats": {"mean": mean, "var": var},
    }
