"""The computation every export format carries: uint8 RGB images -> `logits` and `labels`.

    graph = serving_graph(segmenter, height, width)
    logits, labels = graph.apply(graph.variables, images)   # images: uint8 [N, H, W, 3]

- input `images`: uint8 RGB `[N, height, width, 3]` (0..255, no normalisation: the model's own
  preprocessing, `Segmenter.normalize`, is part of the graph);
- output `logits`: float32 `[N, height, width, C]`, the network's eval-mode scores;
- output `labels`: int32 `[N, height, width]`, their argmax (the first maximum on ties).

The network is rebuilt with the reference convolutions (`jaxseg.nn.conv_layers("reference")`,
`jaxseg.runtimes.with_reference_convs`, as `Segmenter(runtime=...)` converts it too):
the CPU forms compute the same values with the same variables, but their 1x1-as-matmul and
tap decompositions are harder for converters to map onto their own conv ops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxseg.export.errors import ExportError
from jaxseg.runtimes.network import with_reference_convs

INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "labels")


@dataclasses.dataclass(frozen=True)
class ServingGraph:
    """`apply(variables, images uint8 [N, H, W, 3]) -> (logits [N, H, W, C], labels [N, H, W])`.

    Attributes:
      apply: the jit-able function (see the module docstring).
      variables: the model's variables, the first argument of `apply`.
      height, width: the export size.
      num_classes: C.
      model_name: the network's class name (for messages and the JSON).
      original: `apply` with the network's convs as the segmenter built them (the CPU forms,
        say): what exports are checked against.
    """

    apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
    variables: Any
    height: int
    width: int
    num_classes: int
    model_name: str
    original: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]] | None = None

    def closed(self) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
        """`images -> (logits, labels)` with the variables as constants (ONNX initialisers)."""
        variables = self.variables
        return lambda images: self.apply(variables, images)

    def input_spec(self, batch: int | str) -> jax.ShapeDtypeStruct:
        """uint8 `[batch, H, W, 3]`; a str batch is a symbolic dimension of that name."""
        if isinstance(batch, str):
            shape = jax.export.symbolic_shape(f"{batch}, {self.height}, {self.width}, 3")
        else:
            shape = (batch, self.height, self.width, 3)
        return jax.ShapeDtypeStruct(shape, jnp.uint8)


def serving_graph(segmenter: Any, height: int, width: int) -> ServingGraph:
    """The export computation of a `jaxseg.Segmenter` at a fixed image size.

    Args:
      segmenter: supplies `model`, `variables`, `normalize` and `class_names`.
      height, width: the export size (the network runs on exactly this canvas).

    Raises:
      ExportError: the model refuses this size, or its logits are not of the input size
        (e.g. a bare VALID U-Net) or not one score per class name.
    """
    normalize = segmenter.normalize
    model_name = type(segmenter.model).__name__

    def computation(model):
        def apply(variables, images):
            x = normalize(images.astype(jnp.float32))
            logits = model.apply(variables, x, train=False).astype(jnp.float32)
            return logits, jnp.argmax(logits, axis=-1).astype(jnp.int32)

        return apply

    apply = computation(with_reference_convs(segmenter.model))

    spec = jax.ShapeDtypeStruct((1, height, width, 3), jnp.uint8)
    try:
        logits, _ = jax.eval_shape(apply, segmenter.variables, spec)
    except ValueError as e:  # the models name their size limits (`min_input_size`)
        raise ExportError(f"--size {height}x{width}: {model_name}: {e}") from None
    if tuple(logits.shape[1:3]) != (height, width):
        raise ExportError(
            f"{model_name} returns logits of {logits.shape[1]}x{logits.shape[2]} for an input "
            f"of {height}x{width}; export needs logits at the input size (wrap an unpadded "
            "U-Net in overlap-tile, as experiments/unet_valid_pets.py does)"
        )
    num_classes = int(logits.shape[-1])
    if num_classes != len(segmenter.class_names):
        raise ExportError(
            f"{model_name} outputs {num_classes} class scores but the model names "
            f"{len(segmenter.class_names)} classes"
        )
    return ServingGraph(
        apply,
        segmenter.variables,
        height,
        width,
        num_classes,
        model_name,
        original=computation(segmenter.model),
    )
