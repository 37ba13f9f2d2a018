"""ONNX through jax2onnx, run by onnxruntime on CPU (the `onnx` extra).

jax2onnx traces a JAX function and emits one ONNX node (or a few) per JAX primitive, the
variables as initialisers. Its files carry shape annotations of intermediate tensors that go
stale where it transposes NHWC data for ONNX's NCHW convolutions, so `onnx.checker`'s full
check fails on them and onnxruntime warns about each; `convert` drops them and lets ONNX's
own shape inference annotate the graph again, then runs the full check.

Used by `jaxseg-export --format onnx` (`jaxseg.export.onnx`) and by
`Segmenter(runtime="onnxruntime")` (`jaxseg.runtimes.network`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxseg.runtimes.errors import ConversionError

# Opset 18 (ONNX 1.13, 2022): onnxruntime >= 1.14, OpenVINO and TensorRT 8.6+ run it; jax2onnx
# writes reductions in their opset-18 form (axes as an input), so older opsets fail the check.
DEFAULT_OPSET = 18
EXTRA = "onnx"
PACKAGES = ("jax2onnx", "onnx", "onnxruntime")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence onnx_ir's per-tensor serialisation notices while converting."""
    logger = logging.getLogger("onnx_ir")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _load_plugins() -> None:
    """Registers jax2onnx's converters for JAX and Flax only.

    On its first conversion jax2onnx imports every module of its plugin tree, including its
    Equinox examples, which compile some 70 functions at import time (about 30 s on two
    cores). The JAX and Flax plugins are all the networks here need. This reaches into
    jax2onnx's plugin loader; where that differs (another version), its own loading runs.
    """
    try:
        from jax2onnx.plugins import plugin_system
    except ImportError:
        return
    loader = getattr(plugin_system, "_import_tree", None)
    if loader is None or getattr(plugin_system, "_already_imported_plugins", None) is not False:
        return
    root = Path(plugin_system.__file__).parent
    for tree in ("jax", "flax"):
        loader(root / tree, f"jax2onnx.plugins.{tree}")
    plugin_system._already_imported_plugins = True


def _unsupported(error: BaseException) -> str | None:
    match = re.search(r"primitive '([^']+)'", str(error))
    return match.group(1) if match else None


def _scalar(initializers: dict, name: str) -> np.ndarray | None:
    value = initializers.get(name)
    return value if value is not None and value.size == 1 else None


def fuse_clips(model: Any) -> int:
    """Rewrites `Min(Max(x, lo), hi)` with scalar constants into `Clip(x, lo, hi)`, in place.

    jax2onnx writes ReLU6 (MobileNetV2) as Max then Min; onnxruntime fuses a Clip into the
    convolution before it but not that pair, and keeps converting layouts around each (2x
    slower on CPU at 513x513). Same values: Clip is min(max(x, lo), hi) for lo <= hi.

    Returns:
      The number of pairs replaced.
    """
    from onnx import helper, numpy_helper

    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    users: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    replaced, drop = {}, set()
    for node in model.graph.node:
        if node.op_type != "Max" or len(node.input) != 2 or node.output[0] in outputs:
            continue
        low = _scalar(initializers, node.input[1])
        after = users.get(node.output[0], [])
        if low is None or len(after) != 1 or after[0].op_type != "Min":
            continue
        second = after[0]
        if len(second.input) != 2 or second.input[0] != node.output[0]:
            continue
        high = _scalar(initializers, second.input[1])
        if (
            high is None
            or high.dtype != low.dtype
            or not float(low.ravel()[0]) <= float(high.ravel()[0])
        ):
            continue
        clip = helper.make_node(
            "Clip",
            [node.input[0], node.input[1], second.input[1]],
            list(second.output),
            name=f"{node.name}_clip",
        )
        replaced[id(node)] = clip
        drop.add(id(second))
    if replaced:
        nodes = [replaced.get(id(n), n) for n in model.graph.node if id(n) not in drop]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return len(replaced)


def _declare_outputs(model: Any, shapes: Mapping[str, Sequence[int | str]]) -> None:
    """Sets the declared shape of each named graph output (a str is a symbolic dimension)."""
    for output in model.graph.output:
        if output.name not in shapes:
            continue
        shape = output.type.tensor_type.shape
        del shape.dim[:]
        for size in shapes[output.name]:
            dim = shape.dim.add()
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = int(size)


def convert(
    fn: Callable,
    inputs: Sequence[jax.ShapeDtypeStruct],
    *,
    model_name: str,
    input_names: Sequence[str],
    output_names: Sequence[str],
    output_shapes: Mapping[str, Sequence[int | str]],
    opset: int = DEFAULT_OPSET,
) -> bytes:
    """`fn(*inputs)` as a checked ONNX model (serialised bytes).

    Args:
      fn: a JAX function of the inputs alone (variables closed over become initialisers).
      inputs: their shapes and dtypes; a symbolic dimension (`jax.export.symbolic_shape`)
        stays dynamic in the file.
      model_name: the graph's name (and the messages').
      input_names, output_names: the graph's input and output names, in order.
      output_shapes: the declared shape of each output (a str: a symbolic dimension).
      opset: the ONNX opset (default `DEFAULT_OPSET`).

    Raises:
      ConversionError: jax2onnx lacks an operation of the network (named; `refused`), or the
        result fails `onnx.checker` with full checks.
    """
    import onnx  # the `onnx` extra: only where a network is converted
    from jax2onnx import to_onnx

    try:
        with _quiet():
            _load_plugins()
            model = to_onnx(
                fn,
                inputs=list(inputs),
                model_name=model_name,
                opset=opset,
                input_names=list(input_names),
                output_names=list(output_names),
            )
    except NotImplementedError as e:
        primitive = _unsupported(e)
        what = f"the operation {primitive!r}" if primitive else f"an operation ({e})"
        raise ConversionError(
            f"ONNX cannot express {model_name}: jax2onnx has no conversion for {what}",
            refused=True,
        ) from e
    fuse_clips(model)
    # Stale NHWC annotations on transposed tensors: drop them all and infer them anew.
    del model.graph.value_info[:]
    _declare_outputs(model, output_shapes)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0][:300]
        raise ConversionError(f"the ONNX graph of {model_name} fails onnx.checker ({first})") from e
    return model.SerializeToString()


def session(model: bytes | str, threads: int | None = None) -> Any:
    """An onnxruntime `InferenceSession` of an ONNX model on CPU.

    Args:
      model: the file's bytes or its path.
      threads: intra-op threads; None: onnxruntime's default (the physical cores).
    """
    import onnxruntime  # the `onnx` extra

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def runtime_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"
