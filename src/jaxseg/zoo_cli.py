"""The model zoo from the command line.

    python -m jaxseg.zoo list                       # the released models
    python -m jaxseg.zoo download NAME              # into the cache
    python -m jaxseg.zoo predict NAME --input photos/ --output out/
    python -m jaxseg.zoo evaluate NAME --dataset voc_segmentation/2012 --data-dir DIR

`predict NAME ...` is `python -m jaxseg.predict --model zoo:NAME ...`: the same options
(`--checkpoint`, `--output-stride`, `--crop-size`, `--runtime`, `--legend`, `--overwrite`,
...), the same outputs (`<name>.png`, a palette PNG of class indices, and
`<name>_overlay.jpg`) and the same refusal to replace existing files.

`evaluate NAME` scores the release on a prepared TFDS dataset (`--dataset`, `--data-dir`,
`--split`) by each of its published protocols and prints the published number beside the
measured one (`--crf`: also the numbers published with the dense CRF). `jaxseg-zoo` is the
same command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jaxseg import predict as predict_command  # one prediction path for runs and releases
from jaxseg import zoo
from jaxseg.data import DataError, DatasetNotFoundError, get_dataset_info
from jaxseg.experiment import zoo_runs
from jaxseg.train.errors import TrainingError


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


def evaluate_command(args: argparse.Namespace) -> int:
    """`evaluate NAME --dataset D [--data-dir DIR] [--split S] [--checkpoint F] [--crf]`."""
    try:
        from jaxseg.data.pipeline import source  # TensorFlow: only to read the dataset
    except ModuleNotFoundError as error:  # the library install: no TensorFlow
        print(
            f"error: jaxseg-zoo evaluate reads datasets with TensorFlow: {error}", file=sys.stderr
        )
        return 2

    try:
        info = get_dataset_info(args.dataset)
    except KeyError as error:
        print(f"error: --dataset {args.dataset}: {error.args[0]}", file=sys.stderr)
        return 2
    try:
        builder = source.get_builder(args.dataset, args.data_dir)
        split = source.resolve_split(builder, args.split)
        if split.split("[")[0] not in builder.info.splits:
            raise DataError(
                f"{args.dataset} has no split {args.split!r}; it has "
                f"{', '.join(sorted(builder.info.splits))}"
            )
        zoo_runs.evaluate_release(
            args.name, builder, info, split, crf=args.crf, checkpoint=args.checkpoint
        )
    except (DataError, DatasetNotFoundError, TrainingError) as error:
        print(f"error: jaxseg-zoo evaluate {args.name}: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["predict"] and len(argv) > 1 and not argv[1].startswith("-"):
        return predict_command.main(["--model", f"zoo:{argv[1]}", *argv[2:]])
    parser = argparse.ArgumentParser(prog="python -m jaxseg.zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the released models")
    fetch = commands.add_parser("download", help="download a model into the cache")
    fetch.add_argument("name", help="a model name from `list`")
    run = commands.add_parser(
        "predict",
        help="segment images with a model: NAME --input IMAGES --output DIR, then any option "
        "of python -m jaxseg.predict --model",
    )
    run.add_argument("name", help="a model name from `list`")
    score = commands.add_parser(
        "evaluate", help="score a model on a prepared dataset by its published protocols"
    )
    score.add_argument("name", help="a model name from `list`")
    score.add_argument(
        "--dataset",
        required=True,
        help="TFDS name of the prepared data in the release's label set, e.g. "
        "voc_segmentation/2012, camvid, ade20k_scene_parsing",
    )
    score.add_argument("--data-dir", help="TFDS data folder (default: TFDS' own)")
    score.add_argument("--split", default="validation", help="split to score (validation)")
    score.add_argument("--checkpoint", help="a local copy of the release (else the cache)")
    score.add_argument("--crf", action="store_true", help="also the dense-CRF numbers")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(list_table())
        return 0
    if args.command == "evaluate":
        return evaluate_command(args)
    try:
        print(zoo.fetch(args.name))
    except (KeyError, OSError, ValueError) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # python -m jaxseg.zoo_cli (python -m jaxseg.zoo is the same)
    sys.exit(main())
