"""Exported runtimes: a JAX network converted to ONNX or TFLite and run by onnxruntime or
LiteRT on CPU.

- `network`: `ExportedNetwork`, the network call `Segmenter(runtime=...)` makes in those
  runtimes, converted per input size on first use; `RUNTIMES` and `check_runtime`;
- `onnx`: jax2onnx conversion and onnxruntime sessions (the `onnx` extra);
- `tflite`: jax2tf -> TFLiteConverter conversion and LiteRT's interpreter (the `tflite` extra);
- `tf_module`: a JAX function as a TensorFlow module (also `jaxseg-export --format
  savedmodel`'s).

`jaxseg.export` writes files with the same converters. The heavy packages are imported only
inside the functions that convert or run.
"""

from jaxseg.runtimes.errors import ConversionError, MissingPackageError
from jaxseg.runtimes.network import RUNTIMES, ExportedNetwork, check_runtime, with_reference_convs

__all__ = [
    "RUNTIMES",
    "ConversionError",
    "ExportedNetwork",
    "MissingPackageError",
    "check_runtime",
    "with_reference_convs",
]
