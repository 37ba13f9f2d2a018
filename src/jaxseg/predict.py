"""Segment your own images with a trained checkpoint or a released model.

    python -m jaxseg.predict --workdir RUN --input photos/ --output predictions/ \\
        [--checkpoint best|latest|STEP] [--scales 0.5 0.75 1 1.25 1.5 1.75] [--flip] [--crf] \\
        [--sliding-window 513 [--stride 342]] [--legend] [--config.model.output_stride=8]
    python -m jaxseg.predict --model zoo:NAME --input photos/ --output predictions/ \\
        [--checkpoint LOCAL_FILE] [--runtime jax|onnxruntime|litert]

`--model zoo:NAME` runs a model of `jaxseg.zoo` (`python -m jaxseg.zoo list`) with its own
preprocessing and evaluation canvas, no experiment file needed; without `--checkpoint` the
release is downloaded once into the cache.

For every image in `--input` (a file, or the files directly inside a folder) it writes
`<name>.png`, the predicted classes as a palette PNG of the input's size (pixel value = class
index, viewers show the dataset's colours), and `<name>_overlay.jpg`, the colours blended over
the image (with `--legend`, a legend of the classes present below it: colour swatch + name).
Grey, palette and RGBA images are converted to RGB (alpha is dropped); files that are not
images are skipped with a warning and counted. Each output file appears complete or not at
all, and an image that fails leaves no output behind.

The run folder says how to use it: `<workdir>/run.json`, written by training, names the
experiment file and records the resolved config, so the model, normalisation, class names,
palette and resize convention are the run's (`jaxseg.experiment.load_segmenter`).
`--config.KEY=VALUE`
may change evaluation settings such as `--config.model.output_stride=8` for DeepLab; a value
that contradicts how the run was trained is refused, naming both. `--checkpoint` picks the
checkpoint as `--mode=eval` does (default: the best by validation mIoU, else the latest).

`--runtime onnxruntime|litert` runs the network in an exported runtime on CPU instead of JAX
(`Segmenter(runtime=...)`): same labels, the network exported once per canvas shape on its
first use (tens of seconds for a 513 canvas; each test-time scale is another shape).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from jaxseg import debug, figures, runtimes, viz, zoo
from jaxseg.experiment import load_segmenter, runs
from jaxseg.images import NotAnImageError, read_rgb  # noqa: F401  (re-exported)
from jaxseg.segmenter import Segmenter
from jaxseg.train.errors import TrainingError

OVERLAY_SUFFIX = "_overlay.jpg"


class PredictError(Exception):
    """A problem with the command's inputs (experiment, workdir, checkpoint): message, exit 2."""


# --------------------------------------------------------------------------- inputs + outputs


def list_inputs(path: Path) -> list[Path]:
    """The file itself, or the non-hidden files directly inside a folder, sorted."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    raise PredictError(f"--input {path} does not exist")


def _output_stem(path: Path, used: set[str]) -> str:
    # a.jpg and a.png in one folder would both write a.png: the second becomes a_png.png
    # (then a_png_2.png, ... should that be taken too).
    stem = path.stem if path.stem not in used else f"{path.stem}_{path.suffix.lstrip('.')}"
    base, number = stem, 2
    while stem in used:
        stem, number = f"{base}_{number}", number + 1
    used.add(stem)
    return stem


def plan_outputs(inputs: Sequence[Path]) -> list[tuple[Path, str]]:
    """`(input, output stem)` for each input; the stems are distinct."""
    used: set[str] = set()
    return [(path, _output_stem(path, used)) for path in inputs]


def output_files(output: Path, stem: str) -> tuple[Path, Path]:
    """The two files one input writes: `<stem>.png` and `<stem>_overlay.jpg`."""
    return output / f"{stem}.png", output / f"{stem}{OVERLAY_SUFFIX}"


def check_no_existing_outputs(output: Path, plan: Sequence[tuple[Path, str]]) -> None:
    """Raises `PredictError` listing the files of `plan` that already exist in `output`:
    without `--overwrite` nothing the user had is replaced (e.g. ground-truth masks)."""
    existing = [f for _, stem in plan for f in output_files(output, stem) if os.path.lexists(f)]
    if existing:
        shown = "\n  ".join(str(f) for f in existing[:10])
        more = f"\n  ... and {len(existing) - 10} more" if len(existing) > 10 else ""
        raise PredictError(
            f"--output {output} already holds {len(existing)} file(s) this run would write:\n"
            f"  {shown}{more}\nNothing was written. Choose another --output, or pass "
            "--overwrite to replace them."
        )


def check_output_writable(output: Path) -> None:
    """Raises `PredictError` if `output` is not a folder that exists or can be created and
    written to; nothing is created here (a later setup error must leave no empty folder)."""
    if output.exists() and not output.is_dir():
        raise PredictError(f"--output {output} is a file, not a folder")
    existing = output
    while not existing.exists():  # the nearest ancestor that exists decides
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise PredictError(f"cannot create --output {output}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write to" if existing == output else f"create folders in {existing} for"
        raise PredictError(
            f"cannot {what} --output {output}: permission denied. Choose a folder you can write to."
        )


def check_numeric_options(args: argparse.Namespace) -> None:
    """Raises `PredictError` for a numeric option outside its range, before any work: such
    values would otherwise give all-background masks, uncovered pixels or per-image errors."""
    bad = []
    if not all(np.isfinite(s) and s > 0 for s in args.scales):
        bad.append(f"--scales {' '.join(map(str, args.scales))}: every scale must be > 0")
    if args.batch_size < 1:
        bad.append(f"--batch-size {args.batch_size}: must be >= 1")
    if args.bucket != [0] and min(args.bucket) < 1:
        bad.append(
            f"--bucket {' '.join(map(str, args.bucket))}: sizes must be >= 1 (or a single 0 "
            "for no padding)"
        )
    if not 0 <= args.alpha <= 1:
        bad.append(f"--alpha {args.alpha}: must be between 0 and 1")
    if args.stride is not None and args.sliding_window is None:
        bad.append("--stride needs --sliding-window")
    elif args.stride is not None:
        window, stride = args.sliding_window, args.stride
        if stride[0] > window[0] or stride[1] > window[1]:
            bad.append(
                f"--stride {stride[0]}x{stride[1]} is larger than --sliding-window "
                f"{window[0]}x{window[1]}: pixels between windows would get no prediction; "
                f"use a stride of at most {window[0]}x{window[1]}"
            )
    if bad:
        raise PredictError("invalid option(s):\n  " + "\n  ".join(bad))


# --------------------------------------------------------------------------- command


def _size_arg(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jaxseg.predict",
        description="Segment images with a trained jaxseg checkpoint or a released model.",
        epilog="Evaluation settings of the run's config: --config.KEY=VALUE (e.g. output stride).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="the training run's --workdir")
    source.add_argument(
        "--model",
        help="a released model instead of a run: zoo:NAME (`python -m jaxseg.zoo list`)",
    )
    parser.add_argument(
        "--experiment",
        help="the run's experiment file, if it moved since training (default: from run.json)",
    )
    parser.add_argument("--input", required=True, help="an image, or a folder of images")
    parser.add_argument("--output", required=True, help="folder for <name>.png and overlays")
    parser.add_argument(
        "--checkpoint",
        help="--workdir: best (default), latest or a step, as --mode=eval; --model: a local "
        "copy of the release (default: the cached download, downloaded once)",
    )
    parser.add_argument(
        "--scales", type=float, nargs="+", default=[1.0], help="test-time scales, e.g. 0.5 1 1.5"
    )
    parser.add_argument("--flip", action="store_true", help="add left-right flipped predictions")
    parser.add_argument("--crf", action="store_true", help="refine with the dense CRF")
    parser.add_argument(
        "--sliding-window", type=_size_arg, metavar="CROP", help="window size N or HxW"
    )
    parser.add_argument("--stride", type=_size_arg, help="window stride (default: 2/3 of CROP)")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per network call")
    parser.add_argument(
        "--bucket",
        type=int,
        nargs="+",
        default=[32],
        help="pad whole images to a multiple of N, or to the next of several sizes (0: no pad)",
    )
    parser.add_argument(
        "--output-stride",
        type=int,
        help="--model only: evaluation output stride (default: the release's)",
    )
    parser.add_argument(
        "--crop-size",
        type=_size_arg,
        help="--model only: evaluation canvas N or HxW (default: the release's)",
    )
    parser.add_argument(
        "--runtime",
        choices=runtimes.RUNTIMES,
        default="jax",
        help="what runs the network: jax (default), or onnxruntime / litert on CPU, exported "
        "per canvas shape on first use (pip install 'jaxseg[onnx]' / 'jaxseg[tflite]')",
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    parser.add_argument(
        "--legend",
        action="store_true",
        help="add a legend of the classes present (colour swatch + name) below each overlay",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing <name>.png / <name>_overlay.jpg in --output (default: refuse)",
    )
    return parser


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`--config.a.b=value` arguments -> `{"a.b": value}` (values parsed as Python literals,
    else kept as strings), checked against the run's config by `experiment.load_segmenter`."""
    overrides = {}
    for item in items:
        key, sep, text = item.removeprefix("--config.").partition("=")
        if not item.startswith("--config.") or not sep:
            raise PredictError(f"unrecognised argument {item!r} (overrides are --config.KEY=VALUE)")
        try:
            overrides[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[key] = text
    return overrides


def _predict_one(
    path: Path, output: Path, stem: str, *, segment, palette, alpha, class_names=None
) -> None:
    """Reads, segments and writes one image; on any error removes what it wrote and re-raises.
    With `class_names`, the overlay gets a legend of the classes present below it."""
    image = read_rgb(path)
    label = np.asarray(segment(image)).astype(np.uint8)
    overlay = viz.overlay(image, label, palette, alpha)
    if class_names is not None:
        overlay = figures.with_legend(overlay, label, palette, class_names)
    mask_file, overlay_file = output_files(output, stem)
    written = []
    try:
        viz.save_index_png(mask_file, label, palette)
        written.append(mask_file)
        viz.save_image(overlay_file, overlay, quality=90)
    except BaseException:
        for target in written:
            target.unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace, overrides: Sequence[str] = ()) -> int:
    """The command; returns the exit status (0 ok, 1 if some image failed)."""
    check_numeric_options(args)
    try:
        runtimes.check_runtime(args.runtime)
    except (ValueError, ImportError) as e:
        raise PredictError(f"--runtime {args.runtime}: {e}") from None
    inputs = list_inputs(Path(args.input))
    output = Path(args.output)
    input_dir = Path(args.input) if Path(args.input).is_dir() else Path(args.input).parent
    if output.resolve() == input_dir.resolve():
        raise PredictError("--output must differ from the input folder (outputs are PNG images)")
    check_output_writable(output)
    plan = plan_outputs(inputs)
    if not args.overwrite:
        check_no_existing_outputs(output, plan)
    if args.bucket == [0]:
        bucket = None  # every image size compiles anew
    else:
        bucket = args.bucket[0] if len(args.bucket) == 1 else tuple(args.bucket)
    if args.model is not None:
        return _run_with(args, inputs, output, plan, load_release(args, overrides))
    if args.output_stride is not None or args.crop_size is not None:
        raise PredictError(
            "--output-stride and --crop-size apply to --model only; a run's evaluation stride "
            "is --config.model.output_stride=N"
        )
    segmenter = load_segmenter(
        args.workdir,
        args.checkpoint or "best",
        overrides=parse_overrides(overrides),
        experiment=runs.import_experiment(args.experiment) if args.experiment else None,
        crf=args.crf,
        scales=args.scales,
        flip=args.flip,
        bucket=bucket,
        sliding_window=(args.sliding_window, args.stride) if args.sliding_window else None,
        batch_size=args.batch_size,
        runtime=args.runtime,
    )
    return _run_with(args, inputs, output, plan, segmenter)


def load_release(args: argparse.Namespace, overrides: Sequence[str]) -> Segmenter:
    """The `Segmenter` of `--model zoo:NAME`: the release's preprocessing and evaluation
    canvas (`jaxseg.zoo.load`), from `--checkpoint` if given, else the cached download;
    `--scales`/`--flip` by the release's protocol, `--crf` with its published settings."""
    if not args.model.startswith("zoo:"):
        raise PredictError(f"--model {args.model!r}: write zoo:NAME (jaxseg-zoo list)")
    options = [
        flag
        for flag, used in (
            ("--sliding-window", args.sliding_window),
            ("--bucket", list(args.bucket) != [32]),
            ("--experiment", args.experiment),
            ("--config.*", overrides),
        )
        if used
    ]
    if options:
        raise PredictError(
            f"--model runs a release on its own evaluation canvas; {', '.join(options)} "
            "apply to --workdir runs only"
        )
    name = args.model.removeprefix("zoo:")
    try:
        return zoo.load(
            name,
            checkpoint=args.checkpoint,
            output_stride=args.output_stride,
            crop_size=args.crop_size,
            crf=args.crf,
            scales=args.scales,
            flip=args.flip,
            batch_size=args.batch_size,
            runtime=args.runtime,
        )
    except KeyError as e:
        raise PredictError(f"--model {args.model}: {e.args[0]}") from None
    except (ValueError, FileNotFoundError) as e:
        raise PredictError(f"--model {args.model}: {e}") from None


def _run_with(args, inputs, output, plan, segmenter: Segmenter) -> int:
    """Writes the label PNG and overlay of every planned input with `segmenter`."""
    palette = segmenter.palette
    if len(palette) < segmenter.num_classes:
        print(
            f"warning: the palette has {len(palette)} colours for {segmenter.num_classes} "
            "classes; using the generic VOC colour map",
            file=sys.stderr,
        )
        palette = viz.voc_palette(256)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PredictError(f"cannot create --output {output}: {e.strerror}") from None
    if args.model is not None:
        source = f"released model {args.model}"
    else:
        source = f"{args.workdir} (step {segmenter.step}), dataset {segmenter.run_config.dataset}"
    print(
        f"{type(segmenter.model).__name__} from {source}: {len(inputs)} file(s) -> {output}",
        file=sys.stderr,
    )
    done, skipped, failed = 0, 0, 0
    for path, stem in tqdm(plan, unit="img", disable=len(plan) == 1, file=sys.stderr):
        try:
            _predict_one(
                path,
                output,
                stem,
                segment=segmenter,
                palette=palette,
                alpha=args.alpha,
                class_names=segmenter.class_names if args.legend else None,
            )
            done += 1
        except NotAnImageError:
            skipped += 1
            tqdm.write(f"warning: skipping {path}: not an image", file=sys.stderr)
        except Exception as e:  # one bad image must not stop a folder
            failed += 1
            if debug.debug_enabled():
                traceback.print_exception(e, file=sys.stderr)
            tqdm.write(f"error: {path}: {type(e).__name__}: {e}", file=sys.stderr)
    print(
        f"wrote {done} prediction(s) to {output}; skipped {skipped} non-image file(s); "
        f"{failed} failed",
        file=sys.stderr,
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 (all images done), 1 (some image failed) or 2 (bad setup: an
    option out of range, outputs that exist without --overwrite, an output folder that cannot
    be written, a missing or unreadable workdir/checkpoint). `JAXSEG_DEBUG=1` adds tracebacks."""
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    unknown = [a for a in overrides if not a.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return run(args, overrides)
    except (PredictError, TrainingError) as e:
        if debug.debug_enabled():
            traceback.print_exception(e, file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. an unreadable input folder, a full disk while setting up
        problem = debug.system_problem(e, "jaxseg.predict stopped")
        debug.print_failure(f"error: {problem or e}", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
