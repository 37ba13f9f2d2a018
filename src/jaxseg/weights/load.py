"""Merging converted backbone weights into a full model's variables."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from jaxseg.weights.convert import ImportedWeights
from jaxseg.weights.keras import from_keras
from jaxseg.weights.torch import from_torch

logger = logging.getLogger(__name__)


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def load_backbone(
    variables: Mapping[str, Any],
    weights: ImportedWeights | Mapping[str, Any],
    path: Sequence[str] = ("backbone",),
    strict: bool = False,
) -> dict[str, Any]:
    """Copies backbone weights into `variables` under `path`; the rest is left as initialised.

    Args:
      variables: the full model's variables, e.g. `model.init(...)` (`params`, `batch_stats`).
      weights: `from_keras(...)` / `from_torch(...)` output, or `{"params": ..., ...}`.
      path: where the backbone sits in each collection ("backbone" in every jaxseg model).
      strict: raise if the model's backbone has variables the weights lack, or the weights
        have variables the model lacks. Otherwise both are logged (e.g. VGG's fc6/fc7 when
        the model has no fc layers, or a "notop" file for FCN's fc6/fc7).

    Returns:
      New variables (plain nested dicts), each loaded leaf cast to the dtype it replaces.

    Raises:
      ValueError: a shape mismatch (listing every one), `path` not in the model, or with
        `strict`, missing / unexpected variables.
    """
    if isinstance(weights, ImportedWeights):
        weights = weights.variables
    path = tuple(path)
    result = {col: _flatten(tree) for col, tree in variables.items()}
    missing, unexpected, mismatched, loaded = [], [], [], 0
    for collection, tree in weights.items():
        target = result.get(collection, {})
        own = {p[len(path) :]: p for p in target if p[: len(path)] == path}
        if not own:
            raise ValueError(
                f"the model has no '{'/'.join(path)}' in its {collection!r} collection; "
                f"top-level entries: {sorted({p[0] for p in target})}"
            )
        source = _flatten(tree)
        for key, value in source.items():
            name = f"{collection}/{'/'.join(key)}"
            if key not in own:
                unexpected.append(name)
                continue
            current = target[own[key]]
            if tuple(jnp.shape(value)) != tuple(current.shape):
                mismatched.append(f"{name}: weights {jnp.shape(value)}, model {current.shape}")
                continue
            target[own[key]] = jnp.asarray(value, dtype=current.dtype)
            loaded += 1
        missing += [f"{collection}/{'/'.join(k)}" for k in own if k not in source]
    if mismatched:
        raise ValueError(
            "backbone weights do not fit the model (another architecture, width or number of "
            "classes?):\n  " + "\n  ".join(mismatched)
        )
    if strict and (missing or unexpected):
        raise ValueError(f"load_backbone: missing {missing}; unexpected {unexpected}")
    if missing:
        logger.warning("load_backbone: %d variables keep their init: %s", len(missing), missing)
    if unexpected:
        logger.warning("load_backbone: %d weights unused: %s", len(unexpected), unexpected)
    logger.info("load_backbone: loaded %d arrays into %s", loaded, "/".join(path))
    return {col: _unflatten(flat) for col, flat in result.items()}


def load_pretrained(
    variables: Mapping[str, Any],
    file: str | os.PathLike,
    model_name: str,
    path: Sequence[str] = ("backbone",),
    strict: bool = False,
) -> dict[str, Any]:
    """`--config.pretrained=PATH` in one call: convert by file type, then `load_backbone`.

    `.h5` -> `from_keras`; `.safetensors` / `.npz` -> `from_torch`. See those for
    `model_name` and for the backbone settings the weights need (`ImportedWeights`).
    """
    name = os.fspath(file).lower()
    if name.endswith((".h5", ".hdf5")):
        imported = from_keras(file, model_name)
    else:
        imported = from_torch(file, model_name)
    if imported.unexpected:
        logger.info("%s: unused source keys: %s", file, list(imported.unexpected))
    return load_backbone(variables, imported, path=path, strict=strict)
