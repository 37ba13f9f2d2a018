"""The model zoo from the command line.

    python -m jaxseg.zoo list                       # the released models
    python -m jaxseg.zoo download NAME              # into the cache
    python -m jaxseg.zoo predict NAME --input photos/ --output out/

`predict` writes, per image, `<name>.png` (palette PNG whose pixel values are the class
indices) and `<name>_overlay.jpg`; it refuses to overwrite existing files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxseg import zoo


def _published(item: zoo.ZooEntry) -> str:
    if not item.published:
        return "-"
    return "; ".join(f"{p.metric} {p.value:.2f} ({p.protocol})" for p in item.published)


def list_table() -> str:
    """The zoo as a plain-text table (name, architecture, dataset, published numbers)."""
    lines = []
    for name in sorted(zoo.ENTRIES):
        item = zoo.ENTRIES[name]
        lines.append(f"{name}\n    {item.architecture}\n    trained on: {item.dataset}")
        lines.append(f"    published: {_published(item)}")
        lines.append(f"    {item.urls[0]}")
        lines.append(f"    {item.notes}")
    return "\n".join(lines)


def _images(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    raise FileNotFoundError(f"--input {path} does not exist")


def predict(name: str, inputs: Path, output: Path, output_stride=None, crop_size=None) -> int:
    """Segments every image of `inputs` (a file or a folder) with zoo model `name`."""
    from jaxseg import viz
    from jaxseg.images import NotAnImageError, read_rgb

    paths = _images(inputs)
    targets = {p: (output / f"{p.stem}.png", output / f"{p.stem}_overlay.jpg") for p in paths}
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError(f"--input {inputs}: several images share a name stem; rename them")
    existing = [str(t) for pair in targets.values() for t in pair if t.exists()]
    if existing:
        raise FileExistsError(f"refusing to overwrite {existing[:5]}; choose another --output")
    segmenter = zoo.load(name, output_stride=output_stride, crop_size=crop_size)
    palette = np.asarray(segmenter.palette)
    output.mkdir(parents=True, exist_ok=True)
    for path, (label_path, overlay_path) in targets.items():
        try:
            image = read_rgb(path)  # EXIF orientation applied: labels match the photo as shown
        except NotAnImageError:
            print(f"skipped {path}: not an image", file=sys.stderr)
            continue
        label = segmenter(image).astype(np.uint8)
        viz.save_index_png(label_path, label, palette)
        viz.save_image(overlay_path, viz.overlay(image, label, palette), quality=90)
        print(label_path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxseg.zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the released models")
    fetch = commands.add_parser("download", help="download a model into the cache")
    fetch.add_argument("name", help="a model name from `list`")
    run = commands.add_parser("predict", help="segment images with a model")
    run.add_argument("name", help="a model name from `list`")
    run.add_argument("--input", required=True, type=Path, help="an image or a folder")
    run.add_argument("--output", required=True, type=Path, help="folder for the results")
    run.add_argument("--output-stride", type=int, help="default: the entry's evaluation one")
    run.add_argument("--crop-size", type=int, help="evaluation canvas (default: the entry's)")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(list_table())
        return 0
    try:
        if args.command == "predict":
            return predict(args.name, args.input, args.output, args.output_stride, args.crop_size)
        print(zoo.fetch(args.name))
    except (KeyError, OSError, ValueError) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
