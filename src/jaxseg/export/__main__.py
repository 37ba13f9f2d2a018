"""`jaxseg-export` (also `python -m jaxseg.export`): a run or a released model -> one file.

    jaxseg-export (--workdir RUN [--checkpoint best|latest|STEP] | --model zoo:NAME
                   [--checkpoint FILE]) --format onnx|tflite|stablehlo|savedmodel
                  --size N|HxW --output FILE [--batch N|dynamic] [--overwrite]
                  [--opset N] [--int8 --calibration DIR]

The file takes uint8 RGB images `[N, H, W, 3]` at `--size` and returns `logits` float32
`[N, H, W, C]` and `labels` int32 `[N, H, W]`; the model's preprocessing is inside. Beside it,
`FILE.json` names the classes, palette, size and source (`jaxseg.export.metadata`). Before
anything is written the file is run in its own runtime (onnxruntime, LiteRT, JAX, TensorFlow)
and must reproduce jaxseg's logits. `--batch`: default dynamic (TFLite: 1, always fixed).

Exit status: 0 written; 1 the converter refused the model (the operation is named) or the file
did not reproduce the model; 2 bad input (an option, a size, a missing extra, an existing
output without --overwrite, an unwritable folder, a run without checkpoints). Nothing is
written unless everything succeeded. `JAXSEG_DEBUG=1` adds tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxseg import debug, zoo
from jaxseg.experiment import load_segmenter
from jaxseg.export import exporter
from jaxseg.export.errors import ConversionError, ExportError
from jaxseg.export.metadata import json_path, sha256
from jaxseg.train.errors import TrainingError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxseg-export",
        description="Export a trained run or a released model to ONNX, TFLite, StableHLO or a "
        "TensorFlow SavedModel: uint8 RGB images in, logits and labels out.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a training run's --workdir")
    source.add_argument("--model", help="a released model: zoo:NAME (python -m jaxseg.zoo list)")
    parser.add_argument(
        "--checkpoint",
        help="--workdir: best (default), latest or a step; --model: a local copy of the "
        "release (default: the cached download)",
    )
    parser.add_argument("--format", required=True, help=f"one of {', '.join(exporter.FORMATS)}")
    parser.add_argument("--size", required=True, help="export size N or HxW, e.g. 513")
    parser.add_argument("--output", required=True, help="the file (a folder for savedmodel)")
    parser.add_argument("--batch", help="a batch size N, or 'dynamic' (default; TFLite: 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    parser.add_argument(
        "--int8", action="store_true", help="TFLite: int8 post-training quantisation"
    )
    parser.add_argument("--calibration", help="--int8: a folder of images to calibrate on")
    return parser


def _batch(text: str | None) -> int | str | None:
    if text is None or text == "dynamic":
        return text
    try:
        return int(text)
    except ValueError:
        raise ExportError(f"--batch {text!r}: expected a positive int or 'dynamic'") from None


def _check_options(args: argparse.Namespace) -> None:
    """Refuses contradicting options before any model is loaded."""
    if args.int8 and args.format != "tflite":
        raise ExportError("--int8 is for --format tflite")
    if args.int8 and not args.calibration:
        raise ExportError("--int8 needs --calibration DIR, a folder of representative images")
    if args.calibration and not args.int8:
        raise ExportError("--calibration is used with --int8 only")
    if args.opset is not None and args.format != "onnx":
        raise ExportError("--opset is for --format onnx")


def load_source(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The `Segmenter` of `--workdir`/`--model` and the `source` record for the JSON."""
    if args.workdir is not None:
        checkpoint = args.checkpoint or "best"
        segmenter = load_segmenter(args.workdir, checkpoint)
        source = {
            "kind": "run",
            "workdir": str(Path(args.workdir).resolve()),
            "checkpoint": checkpoint,
            "step": int(segmenter.step),
        }
        return segmenter, source
    if not args.model.startswith("zoo:"):
        raise ExportError(f"--model {args.model!r}: write zoo:NAME (jaxseg-zoo list)")
    name = args.model.removeprefix("zoo:")
    try:
        zoo.entry(name)
        path = Path(args.checkpoint) if args.checkpoint else zoo.fetch(name)
        digest = sha256(path)
        segmenter = zoo.load(name, checkpoint=path)
    except KeyError as e:
        raise ExportError(f"--model {args.model}: {e.args[0]}") from None
    except (ValueError, FileNotFoundError) as e:
        raise ExportError(f"--model {args.model}: {e}") from None
    source = {"kind": "zoo", "name": name, "checkpoint": str(path.resolve()), "sha256": digest}
    return segmenter, source


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The command: checks everything cheap first, then loads, converts, checks and writes."""
    exporter.check_format(args.format)
    _check_options(args)
    batch = exporter.resolve_batch(args.format, _batch(args.batch))
    height, width = exporter.parse_size(args.size)
    output = exporter.check_outputs(args.format, args.output, args.overwrite)
    calibration = None
    if args.int8:
        calibration = exporter.load_calibration(args.calibration, height, width)
    segmenter, source = load_source(args)
    options = {} if args.opset is None else {"opset": args.opset}
    return exporter.export_segmenter(
        segmenter,
        output,
        format=args.format,
        size=(height, width),
        batch="dynamic" if batch is None else batch,
        overwrite=args.overwrite,
        source=source,
        calibration=calibration,
        **options,
    )


def _report(meta: dict[str, Any], output: str) -> str:
    check = meta["check"]
    lines = [
        f"wrote {output} and {json_path(output)}: {meta['model']}, {meta['format']}, "
        f"{meta['size'][0]}x{meta['size'][1]}, batch {meta['batch']}",
        f"checked in {check['runtime']} on {check['images']} probe image(s): logits within "
        f"{check['max_relative_logits_error']:.2g} of jaxseg's (relative to their largest "
        f"magnitude), labels {100 * check['label_agreement']:.2f}% equal",
    ]
    if "calibration" in meta:
        cal = meta["calibration"]
        lines.append(
            f"int8: labels agree with the float model on {100 * cal['label_agreement']:.2f}% "
            f"of the pixels of the {cal['images']} calibration image(s)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 (written), 1 (conversion refused or wrong) or 2 (bad input)."""
    args = build_parser().parse_args(argv)
    try:
        meta = run(args)
    except ConversionError as e:
        debug.print_failure(f"error: {e}", e if debug.debug_enabled() else None)
        return 1
    except (ExportError, TrainingError) as e:
        debug.print_failure(f"error: {e}", e if debug.debug_enabled() else None)
        return 2
    except OSError as e:  # a full disk, a folder that turned unwritable while writing
        problem = debug.system_problem(e, "jaxseg-export stopped")
        debug.print_failure(f"error: {problem or e}", e)
        return 2
    print(_report(meta, args.output), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
