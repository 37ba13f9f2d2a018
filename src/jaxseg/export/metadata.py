"""The JSON written beside every export: what the file computes and where it came from.

`<output>.json` (e.g. `deeplab.onnx.json`) holds:

- `format`, `file` (the export's name), `jaxseg_version`, `model` (the network's class);
- `input`: name "images", dtype uint8, shape `[batch, height, width, 3]` (batch null when
  dynamic), RGB 0..255 (the model's normalisation is inside the graph); `pad_pixel`, the RGB
  value the model was evaluated with around images smaller than its canvas;
- `outputs`: "logits" float32 `[batch, height, width, C]`, "labels" int32 `[batch, height,
  width]` (argmax of the logits);
- `size` `[height, width]`, `batch` (an int, or "dynamic");
- `class_names` and `palette` (`[[r, g, b], ...]`, one colour per class);
- `source`: `{"kind": "run", "workdir", "checkpoint", "step"}`, `{"kind": "zoo", "name",
  "checkpoint", "sha256"}` or what the Python caller passed;
- `opset` (ONNX), `int8` and `calibration` (TFLite), and `check`: the runtime that ran the
  written file, on how many images, its largest logit difference from jaxseg's relative to
  jaxseg's largest |logit|, and the share of labels that agree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import jaxseg
from jaxseg.export.graph import INPUT_NAME, ServingGraph


def json_path(output: str | Path) -> Path:
    """The JSON beside `output`: its name plus ".json"."""
    output = Path(output)
    return output.with_name(output.name + ".json")


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, or of a folder's files (names and contents, sorted), or of the
    files of a checkpoint prefix (`.../model.ckpt` -> `model.ckpt.index`, `.data-*`)."""
    path = Path(path)
    if path.is_file():
        members = [path]
    elif path.is_dir():
        members = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        members = sorted(p for p in path.parent.glob(path.name + ".*") if p.is_file())
        if not members:
            raise FileNotFoundError(f"no checkpoint file at {path}")
    digest = hashlib.sha256()
    for member in members:
        if len(members) > 1:
            digest.update(member.relative_to(path.parent).as_posix().encode() + b"\0")
        with open(member, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def describe(
    *,
    fmt: str,
    output: Path,
    graph: ServingGraph,
    segmenter: Any,
    batch: int | None,
    source: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON's content (see the module docstring)."""
    batch_dim = batch  # None -> null: any batch size
    size = [graph.height, graph.width]
    palette = np.asarray(segmenter.palette, np.uint8).reshape(-1, 3)[: graph.num_classes]
    meta: dict[str, Any] = {
        "format": fmt,
        "file": output.name,
        "jaxseg_version": jaxseg.__version__,
        "model": graph.model_name,
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "shape": [batch_dim, *size, 3],
            "layout": "NHWC, RGB 0..255 (normalisation is inside the graph)",
        },
        "pad_pixel": [float(v) for v in getattr(segmenter, "pad_pixel", (0.0, 0.0, 0.0))],
        "outputs": {
            "logits": {"dtype": "float32", "shape": [batch_dim, *size, graph.num_classes]},
            "labels": {"dtype": "int32", "shape": [batch_dim, *size]},
        },
        "size": size,
        "batch": "dynamic" if batch is None else batch,
        "class_names": [str(n) for n in segmenter.class_names],
        "palette": palette.tolist(),
        "source": dict(source),
    }
    meta.update(extra or {})
    return meta


def dumps(meta: Mapping[str, Any]) -> str:
    return json.dumps(meta, indent=2) + "\n"
