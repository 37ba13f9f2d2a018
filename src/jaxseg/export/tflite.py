"""TFLite through the route LiteRT documents for JAX models (the `tflite` extra).

JAX -> `jax2tf` -> TensorFlow SavedModel -> `tf.lite.TFLiteConverter`, at a fixed batch size
with builtin operators only (`jaxseg.runtimes.tflite`, which `Segmenter(runtime="litert")`
uses too; its docstring says why).

Optional int8 post-training quantisation calibrates activation ranges on real images
(`representative_dataset`); inputs stay uint8 and outputs float32/int32 as in the float file.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from jaxseg.export.errors import ConversionError
from jaxseg.export.graph import INPUT_NAME, OUTPUT_NAMES, ServingGraph
from jaxseg.runtimes import errors as runtime_errors
from jaxseg.runtimes import tflite as tflite_runtime

EXTRA = tflite_runtime.EXTRA
PACKAGES = tflite_runtime.PACKAGES
runtime_version = tflite_runtime.runtime_version


def _representative(images: np.ndarray, batch: int) -> Iterator[list[np.ndarray]]:
    """Calibration batches of exactly `batch` images (the last one filled by repetition)."""
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, images[: batch - len(chunk)]])
        yield [chunk]


def convert(graph: ServingGraph, batch: int, calibration: np.ndarray | None = None) -> bytes:
    """The serving graph as a TFLite flatbuffer at a fixed batch size.

    Args:
      graph: from `jaxseg.export.graph.serving_graph`.
      batch: the batch size (fixed).
      calibration: uint8 `[M, H, W, 3]` images for int8 post-training quantisation, or None
        for a float32 file.

    Raises:
      ConversionError: the converter refused the network; the message names the operations
        it could not express where it said which.
    """
    from jaxseg.export.savedmodel import serving_module

    representative = None
    if calibration is not None:
        representative = lambda: _representative(calibration, batch)  # noqa: E731
    try:
        return tflite_runtime.convert(
            serving_module(graph, batch), graph.model_name, representative
        )
    except runtime_errors.ConversionError as e:
        hint = "; export another format (onnx, stablehlo or savedmodel)" if e.refused else ""
        raise ConversionError(f"{e}{hint}") from e


class Runner(tflite_runtime.Runner):
    """A LiteRT interpreter of a TFLite export: `runner(images)` -> `(logits, labels)`.

    Feeds `images` (uint8 `[N, H, W, 3]`, any N) in chunks of the file's fixed batch size.
    """

    def __init__(self, model: bytes | str, num_threads: int | None = None):
        super().__init__(model, INPUT_NAME, OUTPUT_NAMES, num_threads)


def run(model: bytes | str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(logits, labels)` of a TFLite export in LiteRT's interpreter (see `Runner`)."""
    logits, labels = Runner(model)(images)
    return logits, labels
