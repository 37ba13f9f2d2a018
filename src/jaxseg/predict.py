"""Segment your own images with a trained checkpoint.

    python -m jaxseg.predict --workdir RUN --input photos/ --output predictions/ \\
        [--checkpoint best|latest|STEP] [--scales 0.5 0.75 1 1.25 1.5 1.75] [--flip] [--crf] \\
        [--sliding-window 513 [--stride 342]] [--config.model.output_stride=8]

For every image in `--input` (a file, or the files directly inside a folder) it writes
`<name>.png`, the predicted classes as a palette PNG of the input's size (pixel value = class
index, viewers show the dataset's colours), and `<name>_overlay.jpg`, the colours blended over
the image. Grey, palette and RGBA images are converted to RGB (alpha is dropped); files that are
not images are skipped with a warning and counted. Each output file appears complete or not at
all, and an image that fails leaves no output behind.

The run folder says how to use it: `<workdir>/run.json`, written by training, names the
experiment file and records the resolved config, so the model, normalisation, class names,
palette and resize convention are the run's (`jaxseg.Segmenter.from_run`). `--config.KEY=VALUE`
may change evaluation settings such as `--config.model.output_stride=8` for DeepLab; a value
that contradicts how the run was trained is refused, naming both. `--checkpoint` picks the
checkpoint as `--mode=eval` does (default: the best by validation mIoU, else the latest).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from jaxseg import viz
from jaxseg.experiment import runs
from jaxseg.segmenter import Segmenter
from jaxseg.train.errors import TrainingError

OVERLAY_SUFFIX = "_overlay.jpg"


class PredictError(Exception):
    """A problem with the command's inputs (experiment, workdir, checkpoint): message, exit 2."""


class NotAnImageError(Exception):
    """The file is not an image PIL can read."""


# --------------------------------------------------------------------------- images + palette


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 RGB `[H, W, 3]`: grey, palette, RGBA and CMYK images converted
    (alpha dropped), 16-bit and float greys rescaled by their maximum.

    Raises `NotAnImageError` if PIL does not recognise the file as an image; a recognised but
    broken image (e.g. truncated) raises PIL's own error.
    """
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I", "F"):
                # PIL's RGB conversion would clip these to 255 instead of scaling them.
                values = np.asarray(image, np.float64)
                span = max(float(values.max()), 1.0)
                image = Image.fromarray(np.round(values / span * 255).astype(np.uint8))
            return np.asarray(image.convert("RGB"))
    except Image.UnidentifiedImageError as e:
        raise NotAnImageError(f"{path} is not an image PIL can read") from e


def list_inputs(path: Path) -> list[Path]:
    """The file itself, or the non-hidden files directly inside a folder, sorted."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    raise PredictError(f"--input {path} does not exist")


def _output_stem(path: Path, used: set[str]) -> str:
    # a.jpg and a.png in one folder would both write a.png: the second becomes a_png.png.
    stem = path.stem if path.stem not in used else f"{path.stem}_{path.suffix.lstrip('.')}"
    used.add(stem)
    return stem


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
        description="Segment images with a trained jaxseg checkpoint.",
        epilog="Evaluation settings of the run's config: --config.KEY=VALUE (e.g. output stride).",
    )
    parser.add_argument("--workdir", required=True, help="the training run's --workdir")
    parser.add_argument(
        "--experiment",
        help="the run's experiment file, if it moved since training (default: from run.json)",
    )
    parser.add_argument("--input", required=True, help="an image, or a folder of images")
    parser.add_argument("--output", required=True, help="folder for <name>.png and overlays")
    parser.add_argument(
        "--checkpoint", default="best", help="best (default), latest or a step, as --mode=eval"
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
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    return parser


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`--config.a.b=value` arguments -> `{"a.b": value}` (values parsed as Python literals,
    else kept as strings), checked against the run's config by `Segmenter.from_run`."""
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


def _predict_one(path: Path, output: Path, stem: str, *, segment, palette, alpha) -> None:
    """Reads, segments and writes one image; on any error removes what it wrote and re-raises."""
    image = read_rgb(path)
    label = np.asarray(segment(image)).astype(np.uint8)
    overlay = viz.overlay(image, label, palette, alpha)
    written = []
    try:
        viz.save_index_png(output / f"{stem}.png", label, palette)
        written.append(output / f"{stem}.png")
        viz.save_image(output / f"{stem}{OVERLAY_SUFFIX}", overlay, quality=90)
    except BaseException:
        for target in written:
            target.unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace, overrides: Sequence[str] = ()) -> int:
    """The command; returns the exit status (0 ok, 1 if some image failed)."""
    inputs = list_inputs(Path(args.input))
    output = Path(args.output)
    input_dir = Path(args.input) if Path(args.input).is_dir() else Path(args.input).parent
    if output.resolve() == input_dir.resolve():
        raise PredictError("--output must differ from the input folder (outputs are PNG images)")
    if args.bucket == [0]:
        bucket = None  # every image size compiles anew
    else:
        bucket = args.bucket[0] if len(args.bucket) == 1 else tuple(args.bucket)
    segmenter = Segmenter.from_run(
        args.workdir,
        args.checkpoint,
        overrides=parse_overrides(overrides),
        experiment=runs.import_experiment(args.experiment) if args.experiment else None,
        crf=args.crf,
        scales=args.scales,
        flip=args.flip,
        bucket=bucket,
        sliding_window=(args.sliding_window, args.stride) if args.sliding_window else None,
        batch_size=args.batch_size,
    )
    palette = segmenter.palette
    if len(palette) < segmenter.num_classes:
        print(
            f"warning: the palette has {len(palette)} colours for {segmenter.num_classes} "
            "classes; using the generic VOC colour map",
            file=sys.stderr,
        )
        palette = viz.voc_palette(256)
    config = segmenter.run_config
    output.mkdir(parents=True, exist_ok=True)
    print(
        f"{type(segmenter.model).__name__} from {args.workdir} (step {segmenter.step}), "
        f"dataset {config.dataset}: {len(inputs)} file(s) -> {output}",
        file=sys.stderr,
    )
    done, skipped, failed, used = 0, 0, 0, set()
    for path in tqdm(inputs, unit="img", disable=len(inputs) == 1, file=sys.stderr):
        stem = _output_stem(path, used)
        try:
            _predict_one(path, output, stem, segment=segmenter, palette=palette, alpha=args.alpha)
            done += 1
        except NotAnImageError:
            skipped += 1
            tqdm.write(f"warning: skipping {path}: not an image", file=sys.stderr)
        except Exception as e:  # one bad image must not stop a folder
            failed += 1
            tqdm.write(f"error: {path}: {type(e).__name__}: {e}", file=sys.stderr)
    print(
        f"wrote {done} prediction(s) to {output}; skipped {skipped} non-image file(s); "
        f"{failed} failed",
        file=sys.stderr,
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 (all images done), 1 (some image failed) or 2 (bad setup)."""
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    unknown = [a for a in overrides if not a.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return run(args, overrides)
    except (PredictError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
