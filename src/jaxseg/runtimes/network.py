"""A network call run by an exported runtime: converted per input shape on first use.

    network = ExportedNetwork(fn, variables, "litert", name="DeepLabV3")
    logits = network(images)      # float32 [B, h, w, 3] -> float32 [B, h', w', C] (NumPy)

`fn(variables, images)` is the JAX function `Segmenter` compiles (raw RGB in, normalisation
inside, logits out). On the first call with an image size `(h, w)` it is converted for that
size and the result loaded into the runtime; later calls of that size reuse it:

- "onnxruntime": jax2onnx with a dynamic batch, the variables as initialisers, run by
  onnxruntime's CPU provider on every core (`jaxseg.runtimes.onnx`);
- "litert": jax2tf -> TFLiteConverter at batch 1 (builtin ops, float32), run by LiteRT's
  interpreter with XNNPACK on every core; batches are fed one image at a time
  (`jaxseg.runtimes.tflite`).

The input is float32 (not the uint8 of `jaxseg-export` files): a padded canvas holds
non-integer pad pixels (127.5 for DeepLab) and scaled views hold resized values.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.nn.backend_forms import with_conv_layers
from jaxseg.nn.layers import conv_layers
from jaxseg.runtimes import onnx as onnx_runtime
from jaxseg.runtimes import tflite as tflite_runtime
from jaxseg.runtimes.errors import ConversionError, MissingPackageError

RUNTIMES = ("jax", "onnxruntime", "litert")
# (extra, import names) each exported runtime needs beyond the base install.
REQUIREMENTS = {
    "onnxruntime": (onnx_runtime.EXTRA, onnx_runtime.PACKAGES),
    "litert": (tflite_runtime.EXTRA, tflite_runtime.PACKAGES),
}
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


def check_runtime(runtime: str) -> str:
    """`runtime` if it is one of `RUNTIMES` and its packages are installed.

    Raises:
      ValueError naming the value and the choices; `MissingPackageError` naming the package
      and the pip extra that brings it.
    """
    if runtime not in RUNTIMES:
        choices = ", ".join(repr(r) for r in RUNTIMES)
        raise ValueError(f"runtime must be one of {choices}, got {runtime!r}")
    extra, packages = REQUIREMENTS.get(runtime, ("", ()))
    for package in packages:
        if importlib.util.find_spec(package) is None:
            raise MissingPackageError(f"runtime={runtime!r}", extra, package)
    return runtime


def with_reference_convs(module: nn.Module) -> nn.Module:
    """`module` with every conv factory (in its fields and its submodules', e.g. a wrapped
    U-Net) in the reference forms; the parameter tree does not change.

    The CPU forms compute the same values with the same variables, but their 1x1-as-matmul
    and tap decompositions are harder for converters to map onto their own conv ops.
    """
    return with_conv_layers(module, conv_layers("reference"))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ExportedNetwork:
    """`network(images float32 [B, h, w, 3]) -> float32 logits [B, h', w', C]` in `runtime`.

    Attributes:
      runtime: "onnxruntime" or "litert".
      first_use_seconds: `{(h, w): seconds}`, the conversion plus the runtime's loading of
        each size converted so far (what a first call of that size costs on top of running).
    """

    def __init__(
        self,
        fn: Callable[[Any, jax.Array], jax.Array],
        variables: Any,
        runtime: str,
        *,
        name: str,
    ):
        if runtime not in REQUIREMENTS:
            raise ValueError(f"ExportedNetwork runs 'onnxruntime' or 'litert', got {runtime!r}")
        self.fn = fn
        self.variables = variables
        self.runtime = runtime
        self.name = name
        self.first_use_seconds: dict[tuple[int, int], float] = {}
        self._loaded: dict[tuple[int, int], Callable[[np.ndarray], np.ndarray]] = {}

    def __call__(self, images: Any) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{self.name}: images must be [B, h, w, 3], got {images.shape}")
        size = (int(images.shape[1]), int(images.shape[2]))
        run = self._loaded.get(size)
        if run is None:
            start = time.perf_counter()
            run = self._load(*size)
            self.first_use_seconds[size] = time.perf_counter() - start
            self._loaded[size] = run
        return run(np.ascontiguousarray(images))

    def _load(self, height: int, width: int) -> Callable[[np.ndarray], np.ndarray]:
        try:
            if self.runtime == "onnxruntime":
                return self._load_onnx(height, width)
            return self._load_litert(height, width)
        except ConversionError as e:
            hint = "; use runtime='jax' (the default)" if e.refused else ""
            raise ConversionError(f"runtime={self.runtime!r}: {e}{hint}", refused=e.refused) from e

    def _load_onnx(self, height: int, width: int) -> Callable[[np.ndarray], np.ndarray]:
        fn, variables = self.fn, self.variables
        shape = jax.export.symbolic_shape(f"batch, {height}, {width}, 3")
        probe = jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
        out = jax.eval_shape(fn, variables, probe)
        data = onnx_runtime.convert(
            lambda images: fn(variables, images),
            [jax.ShapeDtypeStruct(shape, jnp.float32)],
            model_name=self.name,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            output_shapes={OUTPUT_NAME: ("batch", *out.shape[1:])},
        )
        session = onnx_runtime.session(data, threads=_cores())
        return lambda images: session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]

    def _load_litert(self, height: int, width: int) -> Callable[[np.ndarray], np.ndarray]:
        # TensorFlow (jax2tf, the converter): loaded only when a LiteRT model is converted.
        from jaxseg import tf_quiet
        from jaxseg.runtimes.tf_module import jax_module

        tf = tf_quiet.tensorflow()
        spec = tf.TensorSpec([1, height, width, 3], tf.float32, name=INPUT_NAME)
        module = jax_module(self.fn, self.variables, spec, (OUTPUT_NAME,), None, ("cpu",))
        data = tflite_runtime.convert(module, self.name)
        runner = tflite_runtime.Runner(data, INPUT_NAME, (OUTPUT_NAME,), num_threads=_cores())
        return lambda images: runner(images)[0]
