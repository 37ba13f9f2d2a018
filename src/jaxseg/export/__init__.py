"""Take a segmenter anywhere: ONNX, TFLite, StableHLO and TensorFlow SavedModel exports.

    jaxseg-export --workdir RUN --format onnx --size 513 --output model.onnx
    jaxseg-export --model zoo:mobilenetv2_coco_voc_trainaug --format tflite --size 513 \\
        --output deeplab.tflite

or from Python:

    from jaxseg import export
    export.export_segmenter(seg, "model.onnx", format="onnx", size=513)

Every export computes the same graph (`jaxseg.export.graph`): uint8 RGB `images [N, H, W,
3]` at the export size, the model's own preprocessing inside, outputs `logits` float32
`[N, H, W, C]` and `labels` int32 `[N, H, W]`. A JSON beside the file (`<output>.json`,
`jaxseg.export.metadata`) names the classes, their palette, the size, the source and the check
of the written file in its own runtime. Formats:

- "onnx" (`pip install 'jaxseg[onnx]'`): jax2onnx, dynamic batch by default, checked with
  `onnx.checker` (full) and onnxruntime (`jaxseg.export.onnx`);
- "tflite" (`pip install 'jaxseg[tflite]'`): jax2tf -> SavedModel -> TFLiteConverter at a
  fixed batch, builtin ops only, checked with LiteRT's interpreter; optional int8
  post-training quantisation (`jaxseg.export.tflite`);
- "stablehlo": `jax.export`, weights embedded, reloaded by `load_stablehlo`;
- "savedmodel": TensorFlow SavedModel for TF Serving (`jaxseg.export.savedmodel`).

The older model-level functions `export_stablehlo` / `export_saved_model` keep their
contract: already normalised float32 images in, logits out.

The converters and runtimes behind "onnx" and "tflite" (and the jax2tf module behind
"savedmodel") are `jaxseg.runtimes`, which also runs a `Segmenter`'s network in onnxruntime
or LiteRT without writing a file (`Segmenter(..., runtime="onnxruntime" | "litert")`).
"""

from jaxseg.export.errors import ConversionError, ExportError, ExportFileError, MissingExtraError
from jaxseg.export.exporter import (
    FORMATS,
    check_format,
    export_segmenter,
    load_calibration,
    parse_size,
)
from jaxseg.export.graph import ServingGraph, serving_graph, with_reference_convs
from jaxseg.export.metadata import json_path
from jaxseg.export.savedmodel import export_saved_model, load_saved_model
from jaxseg.export.stablehlo import export_stablehlo, load_stablehlo

__all__ = [
    "FORMATS",
    "ConversionError",
    "ExportError",
    "ExportFileError",
    "MissingExtraError",
    "ServingGraph",
    "check_format",
    "export_saved_model",
    "export_segmenter",
    "export_stablehlo",
    "json_path",
    "load_calibration",
    "load_saved_model",
    "load_stablehlo",
    "parse_size",
    "serving_graph",
    "with_reference_convs",
]
