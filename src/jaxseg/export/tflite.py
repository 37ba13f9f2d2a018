"""TFLite through the route LiteRT documents for JAX models (the `tflite` extra).

JAX -> `jax2tf` -> TensorFlow SavedModel -> `tf.lite.TFLiteConverter.from_saved_model`, at a
FIXED batch size: converted from a symbolic batch, the file keeps shape computations and
broadcasts the converter cannot fold (BatchNorm stays unfolded) and runs many times slower.
Only TFLite's builtin operators are allowed (no TensorFlow "flex" ops, which LiteRT's
interpreter lacks), so a file that converts runs on any LiteRT.

Optional int8 post-training quantisation calibrates activation ranges on real images
(`representative_dataset`); inputs stay uint8 and outputs float32/int32 as in the float file.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator

import numpy as np

from jaxseg import tf_quiet
from jaxseg.export.errors import ConversionError
from jaxseg.export.graph import INPUT_NAME, OUTPUT_NAMES, ServingGraph

EXTRA = "tflite"
PACKAGES = ("tensorflow", "ai_edge_litert")

# Informational lines of the converter and of LiteRT's interpreter, on every use.
_NOTICES = (
    "Created TensorFlow Lite XNNPACK delegate",
    "fully_quantize:",
    "All log messages before absl::InitializeLog() is called",
)
# MLIR op names in converter errors, e.g. 'stablehlo.reduce_window' or 'tf.XlaCallModule'.
_OP_NAME = re.compile(r"'((?:stablehlo|chlo|mhlo|tf|tfl|vhlo)\.[A-Za-z_][\w.]*)'")


def _failed_ops(message: str) -> list[str]:
    names = [n for n in _OP_NAME.findall(message) if n not in ("tf.XlaCallModule",)]
    return sorted(set(names))


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
    tf = tf_quiet.tensorflow()

    from jaxseg.export.savedmodel import save_module, serving_module

    with tempfile.TemporaryDirectory(prefix="jaxseg_tflite_") as folder:
        save_module(serving_module(graph, batch), folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if calibration is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: _representative(calibration, batch)
        try:
            with tf_quiet.quiet_native_output(_NOTICES):
                return bytes(converter.convert())
        except Exception as e:  # ConverterError and friends carry the MLIR diagnostics
            message = str(e)
            ops = _failed_ops(message)
            if ops:
                what = f"the operation(s) {', '.join(ops)}"
            else:
                what = "an operation (" + (message.strip().splitlines() or ["?"])[0][:300] + ")"
            raise ConversionError(
                f"TFLite cannot express {graph.model_name}: the converter refused {what}; "
                "export another format (onnx, stablehlo or savedmodel)"
            ) from e


class Runner:
    """A LiteRT interpreter of a TFLite export: `runner(images)` -> `(logits, labels)`.

    Feeds `images` (uint8 `[N, H, W, 3]`, any N) in chunks of the file's fixed batch size.
    """

    def __init__(self, model: bytes | str, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        source = (
            {"model_content": bytes(model)}
            if isinstance(model, bytes | bytearray)
            else {"model_path": str(model)}
        )
        with tf_quiet.quiet_native_output(_NOTICES):
            self.interpreter = Interpreter(**source, num_threads=num_threads)
            self.signature = self.interpreter.get_signature_runner("serving_default")
        self.batch = int(self.signature.get_input_details()[INPUT_NAME]["shape"][0])
        self._started = False  # LiteRT prints its XNNPACK notice on the first invocation

    def _invoke(self, chunk: np.ndarray) -> dict:
        if self._started:
            return self.signature(**{INPUT_NAME: chunk})
        with tf_quiet.quiet_native_output(_NOTICES):
            result = self.signature(**{INPUT_NAME: chunk})
        self._started = True
        return result

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = {name: [] for name in OUTPUT_NAMES}
        for start in range(0, len(images), self.batch):
            chunk = images[start : start + self.batch]
            used = len(chunk)
            if used < self.batch:  # fill the fixed batch, then drop the filler's outputs
                filler = np.zeros((self.batch - used, *chunk.shape[1:]), chunk.dtype)
                chunk = np.concatenate([chunk, filler])
            result = self._invoke(np.ascontiguousarray(chunk))
            for name in OUTPUT_NAMES:
                outputs[name].append(np.asarray(result[name])[:used])
        logits, labels = (np.concatenate(outputs[name]) for name in OUTPUT_NAMES)
        return logits, labels


def run(model: bytes | str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(logits, labels)` of a TFLite export in LiteRT's interpreter (see `Runner`)."""
    return Runner(model)(images)


def runtime_version() -> str:
    from importlib.metadata import version

    return f"ai-edge-litert {version('ai-edge-litert')}"
