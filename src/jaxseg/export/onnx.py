"""ONNX through jax2onnx (the `onnx` extra): the serving graph with a dynamic or fixed batch.

The conversion itself (jax2onnx, the Clip fusion, the full `onnx.checker` check) and the
onnxruntime session are `jaxseg.runtimes.onnx`, which `Segmenter(runtime="onnxruntime")`
uses too; this module gives them the serving graph's names and shapes.
"""

from __future__ import annotations

import numpy as np

from jaxseg.export.errors import ConversionError
from jaxseg.export.graph import INPUT_NAME, OUTPUT_NAMES, ServingGraph
from jaxseg.runtimes import errors as runtime_errors
from jaxseg.runtimes import onnx as onnx_runtime

DEFAULT_OPSET = onnx_runtime.DEFAULT_OPSET
BATCH_DIM = "batch"
EXTRA = onnx_runtime.EXTRA
PACKAGES = onnx_runtime.PACKAGES
runtime_version = onnx_runtime.runtime_version


def convert(graph: ServingGraph, batch: int | None, opset: int = DEFAULT_OPSET) -> bytes:
    """The serving graph as a checked ONNX model (serialised bytes).

    Args:
      graph: from `jaxseg.export.graph.serving_graph`.
      batch: a fixed batch size, or None for a dynamic one (dimension "batch").
      opset: the ONNX opset (default `DEFAULT_OPSET`).

    Raises:
      ConversionError: jax2onnx lacks an operation of the network (named), or the result
        fails `onnx.checker` with full checks.
    """
    size = BATCH_DIM if batch is None else batch
    shapes = {
        "logits": (size, graph.height, graph.width, graph.num_classes),
        "labels": (size, graph.height, graph.width),
    }
    try:
        return onnx_runtime.convert(
            graph.closed(),
            [graph.input_spec(size)],
            model_name=graph.model_name,
            input_names=[INPUT_NAME],
            output_names=OUTPUT_NAMES,
            output_shapes=shapes,
            opset=opset,
        )
    except runtime_errors.ConversionError as e:
        hint = "; export another format (stablehlo, savedmodel or tflite)" if e.refused else ""
        raise ConversionError(f"{e}{hint}") from e


def run(model: bytes | str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(logits, labels)` of an ONNX export in onnxruntime on CPU.

    Args:
      model: the file's bytes or its path.
      images: uint8 `[N, H, W, 3]`.
    """
    logits, labels = onnx_runtime.session(model).run(list(OUTPUT_NAMES), {INPUT_NAME: images})
    return logits, labels
