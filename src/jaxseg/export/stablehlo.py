"""Serialised StableHLO (`jax.export`): one file holding the computation and its weights.

The variables are embedded as constants, so the file is the whole model; `load_stablehlo`
reloads it in any JAX of a compatible serialisation version, without Flax or jaxseg's model
code. Height and width are fixed at export time (resizes inside the networks build their
interpolation matrices from static sizes); the batch may be symbolic.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg import files
from jaxseg.export.errors import ExportFileError
from jaxseg.export.graph import ServingGraph
from jaxseg.inference import predict_logits


def _input_spec(height: int, width: int, batch: str | int) -> jax.ShapeDtypeStruct:
    """`[batch, height, width, 3]` float32, `batch` symbolic when it is a name."""
    if isinstance(batch, str):
        shape = jax.export.symbolic_shape(f"{batch}, {height}, {width}, 3")
    else:
        shape = (batch, height, width, 3)
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def export_stablehlo(
    model: nn.Module,
    variables: Any,
    path: str | os.PathLike,
    *,
    height: int,
    width: int,
    batch: str | int = "b",
    platforms: Sequence[str] | None = None,
) -> jax.export.Exported:
    """Serialise `images [batch, height, width, 3] float32 -> logits` to a StableHLO file.

    The function is the model's `apply(variables, images, train=False)` on already normalised
    images (as `Segmenter.normalize` returns them); `jaxseg-export --format stablehlo` writes
    the uint8-in, logits-and-labels-out graph of `jaxseg.export.graph` instead.

    Args:
      model: Flax module with `apply(variables, images, train=False) -> [B, H, W, C]`.
      variables: its variables (`params`, `batch_stats`, ...), embedded as constants.
      path: output file (written atomically).
      height, width: fixed image size of the export.
      batch: a name (e.g. "b") for any batch size, or an int for a fixed one.
      platforms: e.g. `("cpu", "cuda")`; default: the platform JAX runs on now.

    Returns:
      The `jax.export.Exported` that was written.
    """
    logits = functools.partial(predict_logits, model.apply)
    exported = jax.export.export(
        jax.jit(lambda images: logits(variables, images)), platforms=platforms
    )(_input_spec(height, width, batch))
    with files.atomic_write(Path(path)) as f:
        f.write(exported.serialize())
    return exported


def serialize_serving(
    graph: ServingGraph, batch: int | None, platforms: Sequence[str] | None = None
) -> bytes:
    """The serving graph (uint8 images -> logits, labels) as StableHLO bytes.

    Args:
      graph: from `jaxseg.export.graph.serving_graph`.
      batch: a fixed batch size, or None for any (a symbolic dimension "batch").
      platforms: e.g. `("cpu", "cuda")`; default: the platform JAX runs on now.
    """
    spec = graph.input_spec("batch" if batch is None else batch)
    exported = jax.export.export(jax.jit(graph.closed()), platforms=platforms)(spec)
    return bytes(exported.serialize())


def load_stablehlo(path: str | os.PathLike) -> Callable[[jax.Array], Any]:
    """Reload a StableHLO export: a jitted function of the exported input.

    `export_stablehlo`'s files map `images [b, H, W, 3] float32 -> logits [b, H, W, C]`;
    `jaxseg-export`'s map uint8 images to `(logits, labels)`. The underlying
    `jax.export.Exported` (input shapes, platforms) is the `.exported` attribute.

    Raises:
      ExportFileError: the file is missing, unreadable, truncated or not an export.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ExportFileError(f"cannot read the StableHLO export {path}: {e.strerror}") from e
    try:
        exported = jax.export.deserialize(bytearray(data))
    except Exception as e:  # flatbuffers/struct/ValueError for truncated or foreign bytes
        raise ExportFileError(
            f"{path} ({len(data)} bytes) is not a complete StableHLO export written by "
            f"jaxseg.export.export_stablehlo ({type(e).__name__}): it may be truncated or another "
            "kind of file; export the model again."
        ) from e
    call = jax.jit(exported.call)
    call.exported = exported
    return call
