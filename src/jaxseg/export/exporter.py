"""`export_segmenter`: one `Segmenter` -> one checked export file plus its JSON.

The steps, each of which may refuse before anything is written:
1. the format's packages are importable (else: which `pip install 'jaxseg[...]'`);
2. the output and its JSON can be written (absent, or `overwrite`);
3. the serving graph at the export size (`jaxseg.export.graph`): the model accepts the size;
4. conversion (the converter may refuse an operation: it is named);
5. the written bytes run in the format's own runtime (onnxruntime, LiteRT, JAX, TensorFlow)
   on a probe batch and must reproduce jaxseg's logits (int8 files: label agreement on the
   calibration images is reported instead);
6. model and JSON are renamed into place together.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxseg import tf_quiet
from jaxseg.export import metadata
from jaxseg.export import onnx as onnx_format
from jaxseg.export import tflite as tflite_format
from jaxseg.export.errors import ConversionError, ExportError, MissingExtraError
from jaxseg.export.graph import ServingGraph, serving_graph
from jaxseg.export.staging import Staging, check_target

FORMATS = ("onnx", "tflite", "stablehlo", "savedmodel")
# (extra, import names) each format needs beyond the base install.
REQUIREMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "onnx": (onnx_format.EXTRA, onnx_format.PACKAGES),
    "tflite": (tflite_format.EXTRA, tflite_format.PACKAGES),
    "savedmodel": (tflite_format.EXTRA, ("tensorflow",)),
    "stablehlo": ("", ()),
}
# A float export whose logits differ from jaxseg's by more than this (relative to the largest
# |logit|) computes something else: refused. Converters reorder float sums, ~1e-6 is usual.
MAX_RELATIVE_ERROR = 1e-3
PROBE_SEED = 0


def check_format(fmt: str) -> None:
    """Raises `ExportError` for an unknown format, `MissingExtraError` for missing packages."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    extra, packages = REQUIREMENTS[fmt]
    for package in packages:
        try:
            if package == "tensorflow":
                tf_quiet.tensorflow()  # without its start-up notices, off accelerators
            else:
                importlib.import_module(package)
        except ImportError:
            raise MissingExtraError(fmt, extra, package) from None


def resolve_batch(fmt: str, batch: int | str | None) -> int | None:
    """The batch size to export: an int, or None for a dynamic batch.

    `batch` None means the format's default: dynamic, except TFLite (1).
    """
    if batch is None:
        return 1 if fmt == "tflite" else None
    if batch == "dynamic":
        if fmt == "tflite":
            raise ExportError(
                "--batch dynamic: TFLite files are converted at a fixed batch (a symbolic "
                "batch leaves them unoptimised); give --batch N"
            )
        return None
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise ExportError(f"--batch must be a positive int or 'dynamic', got {batch!r}")
    return int(batch)


def check_outputs(fmt: str, output: str | os.PathLike, overwrite: bool) -> Path:
    """Raises `ExportError` unless the export and its JSON can be written; returns the path."""
    output = Path(output)
    check_target(output, folder=fmt == "savedmodel", overwrite=overwrite)
    check_target(metadata.json_path(output), folder=False, overwrite=overwrite, option="JSON")
    return output


def _probe(graph: ServingGraph, batch: int | None) -> np.ndarray:
    """Deterministic uint8 noise images; two for a dynamic batch (to exercise it)."""
    count = 2 if batch is None else batch
    rng = np.random.default_rng(PROBE_SEED)
    return rng.integers(0, 256, (count, graph.height, graph.width, 3), dtype=np.uint8)


def _reference(graph: ServingGraph, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """jaxseg's own `(logits, labels)`: the model as the segmenter built it, run by JAX, one
    image at a time."""
    apply = jax.jit(graph.original or graph.apply)
    outputs = [apply(graph.variables, images[i : i + 1]) for i in range(len(images))]
    return (np.concatenate([np.asarray(o[k]) for o in outputs]) for k in (0, 1))


def compare(
    logits: np.ndarray, labels: np.ndarray, reference: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """`max_relative_logits_error` (max |difference| / max |reference logit|) and
    `label_agreement` (share of equal labels) of outputs against the reference's."""
    ref_logits, ref_labels = reference
    scale = max(float(np.max(np.abs(ref_logits))), 1e-12)
    return {
        "max_relative_logits_error": float(np.max(np.abs(logits - ref_logits)) / scale),
        "label_agreement": float(np.mean(labels == ref_labels)),
    }


def _run_written(fmt: str, path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The written export run by its own runtime."""
    if fmt == "onnx":
        return onnx_format.run(str(path), images)
    if fmt == "tflite":
        return tflite_format.run(str(path), images)
    if fmt == "stablehlo":
        from jaxseg.export.stablehlo import load_stablehlo

        logits, labels = load_stablehlo(path)(images)
        return np.asarray(logits), np.asarray(labels)
    tf = tf_quiet.tensorflow()

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    result = serve(images=tf.constant(images))
    return result["logits"].numpy(), result["labels"].numpy()


def _runtime(fmt: str) -> str:
    if fmt == "onnx":
        return onnx_format.runtime_version()
    if fmt == "tflite":
        return tflite_format.runtime_version()
    if fmt == "stablehlo":
        return f"jax {jax.__version__}"
    tf = tf_quiet.tensorflow()

    return f"tensorflow {tf.__version__}"


def _write(fmt, graph, batch, stage: Staging, output: Path, opset, calibration) -> Path:
    """Converts and writes the export to a temporary beside `output`; returns that path.

    Raises:
      ConversionError: also where JAX cannot lower an operation for serialisation (StableHLO,
        and the SavedModel that SavedModel and TFLite exports go through).
    """
    try:
        return _convert_and_write(fmt, graph, batch, stage, output, opset, calibration)
    except NotImplementedError as e:  # e.g. "MLIR translation rule for primitive 'x' not found"
        match = re.search(r"primitive '([^']+)'", str(e))
        what = f"the operation {match.group(1)!r}" if match else f"an operation ({e})"
        raise ConversionError(
            f"{fmt} cannot express {graph.model_name}: JAX cannot serialise {what}"
        ) from e


def _convert_and_write(fmt, graph, batch, stage, output, opset, calibration) -> Path:
    if fmt == "savedmodel":
        from jaxseg.export.savedmodel import serving_module
        from jaxseg.runtimes.tf_module import save_module

        tmp = stage.folder(output)
        save_module(serving_module(graph, batch), tmp)
        return tmp
    if fmt == "onnx":
        data = onnx_format.convert(graph, batch, opset)
    elif fmt == "tflite":
        data = tflite_format.convert(graph, batch, calibration)
    else:
        from jaxseg.export.stablehlo import serialize_serving

        data = serialize_serving(graph, batch)
    tmp = stage.file(output)
    tmp.write_bytes(data)
    return tmp


def export_segmenter(
    segmenter: Any,
    output: str | os.PathLike,
    *,
    format: str,
    size: int | Sequence[int],
    batch: int | str | None = None,
    overwrite: bool = False,
    source: Mapping[str, Any] | None = None,
    opset: int = onnx_format.DEFAULT_OPSET,
    calibration: np.ndarray | None = None,
) -> dict[str, Any]:
    """Export `segmenter` as a uint8-in, logits-and-labels-out file, with a JSON beside it.

    Args:
      segmenter: a `jaxseg.Segmenter` (from `experiment.load_segmenter`, `zoo.load`, ...).
      output: the file (a folder for "savedmodel"); the JSON is `<output>.json`.
      format: "onnx", "tflite", "stablehlo" or "savedmodel".
      size: the export size, an int or `(height, width)`.
      batch: a positive int, "dynamic", or None for the format's default (dynamic; TFLite 1).
      overwrite: replace an existing output and JSON (else they are refused, untouched).
      source: where the model came from, recorded in the JSON.
      opset: ONNX opset.
      calibration: TFLite only: uint8 `[M, height, width, 3]` images for int8 post-training
        quantisation (see `load_calibration`); the JSON records the share of their labels that
        agree with the float model's.

    Returns:
      The JSON's content (see `jaxseg.export.metadata`).

    Raises:
      ExportError: a bad option or size, a missing extra, an output that exists (nothing
        written). ConversionError (an ExportError): the converter refused an operation, or
        the file did not reproduce jaxseg's logits (nothing written).
    """
    check_format(format)
    batch = resolve_batch(format, batch)
    if calibration is not None and format != "tflite":
        raise ExportError("int8 quantisation (--int8 --calibration) is for --format tflite")
    height, width = parse_size(size)
    if calibration is not None:
        calibration = np.asarray(calibration)
        if calibration.dtype != np.uint8 or calibration.shape[1:] != (height, width, 3):
            raise ExportError(
                f"calibration images must be uint8 [M, {height}, {width}, 3] (the export size), "
                f"got {calibration.dtype} {list(calibration.shape)}; see load_calibration"
            )
        if len(calibration) == 0:
            raise ExportError("calibration needs at least one image")
    output = check_outputs(format, output, overwrite)
    graph = serving_graph(segmenter, height, width)
    extra: dict[str, Any] = {}
    if format == "onnx":
        extra["opset"] = int(opset)
    if format == "tflite":
        extra["int8"] = calibration is not None
    with Staging() as stage:
        tmp = _write(format, graph, batch, stage, output, opset, calibration)
        if calibration is not None:
            agreement = compare(
                *_run_written(format, tmp, calibration), _reference(graph, calibration)
            )
            extra["calibration"] = {
                "images": len(calibration),
                "label_agreement": agreement["label_agreement"],
            }
        images = _probe(graph, batch)
        check = compare(*_run_written(format, tmp, images), _reference(graph, images))
        if calibration is None and check["max_relative_logits_error"] > MAX_RELATIVE_ERROR:
            raise ConversionError(
                f"the {format} file of {graph.model_name} computes logits differing from "
                f"jaxseg's by {check['max_relative_logits_error']:.2g} of their range "
                f"(more than {MAX_RELATIVE_ERROR:g}); nothing was written"
            )
        extra["check"] = {"runtime": _runtime(format), "images": len(images), **check}
        meta = metadata.describe(
            fmt=format,
            output=output,
            graph=graph,
            segmenter=segmenter,
            batch=batch,
            source=source or {"kind": "python"},
            extra=extra,
        )
        stage.file(metadata.json_path(output)).write_text(metadata.dumps(meta))
        stage.commit()
    return meta


def parse_size(size: int | str | Sequence[int]) -> tuple[int, int]:
    """`513`, `"513"`, `"257x513"` or `(257, 513)` -> `(height, width)`.

    Raises:
      ExportError: not one or two positive ints.
    """
    if isinstance(size, str):
        parts = size.lower().replace("x", ",").split(",")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ExportError(f"--size {size!r}: expected N or HxW, e.g. 513 or 257x513") from None
    elif isinstance(size, int | np.integer):
        values = [int(size)]
    else:
        values = [int(s) for s in size]
    if len(values) not in (1, 2) or min(values) < 1:
        raise ExportError(f"--size {size!r}: expected N or HxW with positive sizes")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def load_calibration(folder: str | os.PathLike, height: int, width: int) -> np.ndarray:
    """The images directly inside `folder`, resized (bilinear) to the export size.

    Returns:
      uint8 `[M, height, width, 3]`.

    Raises:
      ExportError: not a folder, or no image in it.
    """
    from PIL import Image

    from jaxseg.images import NotAnImageError, read_rgb

    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"--calibration {folder} is not a folder of images")
    images = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            image = read_rgb(path)
        except NotAnImageError:
            continue
        resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
        images.append(np.asarray(resized, np.uint8))
    if not images:
        raise ExportError(f"--calibration {folder} holds no image PIL can read")
    return np.stack(images)
