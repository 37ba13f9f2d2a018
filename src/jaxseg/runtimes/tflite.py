"""TFLite through the route LiteRT documents for JAX models, run by LiteRT's interpreter
(the `tflite` extra).

JAX -> `jax2tf` -> TensorFlow SavedModel -> `tf.lite.TFLiteConverter.from_saved_model`, at a
FIXED batch size: converted from a symbolic batch, the file keeps shape computations and
broadcasts the converter cannot fold (BatchNorm stays unfolded) and runs many times slower.
Only TFLite's builtin operators are allowed (no TensorFlow "flex" ops, which LiteRT's
interpreter lacks), so a file that converts runs on any LiteRT.

Used by `jaxseg-export --format tflite` (`jaxseg.export.tflite`) and by
`Segmenter(runtime="litert")` (`jaxseg.runtimes.network`).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from jaxseg import tf_quiet
from jaxseg.runtimes.errors import ConversionError
from jaxseg.runtimes.tf_module import save_module

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


def convert(
    module: Any,
    model_name: str,
    representative: Callable[[], Iterable[list[np.ndarray]]] | None = None,
) -> bytes:
    """A `jaxseg.runtimes.tf_module.jax_module` (fixed input shape) as a TFLite flatbuffer.

    Args:
      module: the TensorFlow module; its `serve` becomes the `serving_default` signature.
      model_name: for the messages.
      representative: calibration batches for int8 post-training quantisation (each a list
        of one input array), or None for a float32 file.

    Raises:
      ConversionError: the converter refused the network; the message names the operations
        it could not express where it said which (`refused`).
    """
    tf = tf_quiet.tensorflow()

    with tempfile.TemporaryDirectory(prefix="jaxseg_tflite_") as folder:
        save_module(module, folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if representative is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
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
                f"TFLite cannot express {model_name}: the converter refused {what}", refused=True
            ) from e


class Runner:
    """A LiteRT interpreter of a TFLite file with one input: `runner(x)` -> its outputs.

    Feeds `x` (`[N, ...]`, any N) in chunks of the file's fixed batch size and returns the
    outputs named `output_names`, in that order, concatenated over the chunks.
    """

    def __init__(
        self,
        model: bytes | str,
        input_name: str,
        output_names: Sequence[str],
        num_threads: int | None = None,
    ):
        from ai_edge_litert.interpreter import Interpreter  # the `tflite` extra

        source = (
            {"model_content": bytes(model)}
            if isinstance(model, bytes | bytearray)
            else {"model_path": str(model)}
        )
        with tf_quiet.quiet_native_output(_NOTICES):
            self.interpreter = Interpreter(**source, num_threads=num_threads)
            self.signature = self.interpreter.get_signature_runner("serving_default")
        self.input_name = input_name
        self.output_names = tuple(output_names)
        self.batch = int(self.signature.get_input_details()[input_name]["shape"][0])
        self._started = False  # LiteRT prints its XNNPACK notice on the first invocation

    def _invoke(self, chunk: np.ndarray) -> dict:
        if self._started:
            return self.signature(**{self.input_name: chunk})
        with tf_quiet.quiet_native_output(_NOTICES):
            result = self.signature(**{self.input_name: chunk})
        self._started = True
        return result

    def __call__(self, inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        outputs = {name: [] for name in self.output_names}
        for start in range(0, len(inputs), self.batch):
            chunk = inputs[start : start + self.batch]
            used = len(chunk)
            if used < self.batch:  # fill the fixed batch, then drop the filler's outputs
                filler = np.zeros((self.batch - used, *chunk.shape[1:]), chunk.dtype)
                chunk = np.concatenate([chunk, filler])
            result = self._invoke(np.ascontiguousarray(chunk))
            for name in self.output_names:
                outputs[name].append(np.asarray(result[name])[:used])
        return tuple(np.concatenate(outputs[name]) for name in self.output_names)


def runtime_version() -> str:
    from importlib.metadata import version

    return f"ai-edge-litert {version('ai-edge-litert')}"
