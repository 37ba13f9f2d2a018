"""The model zoo from the command line.

    python -m jaxseg.zoo list                       # the released models
    python -m jaxseg.zoo download NAME              # into the cache
    python -m jaxseg.zoo predict NAME --input photos/ --output out/

`predict NAME ...` is `python -m jaxseg.predict --model zoo:NAME ...`: the same options
(`--checkpoint`, `--output-stride`, `--crop-size`, `--legend`, `--overwrite`, ...), the same
outputs (`<name>.png`, a palette PNG of class indices, and `<name>_overlay.jpg`) and the same
refusal to replace existing files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["predict"] and len(argv) > 1 and not argv[1].startswith("-"):
        from jaxseg import predict as predict_command  # one prediction path for runs and releases

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
    args = parser.parse_args(argv)
    if args.command == "list":
        print(list_table())
        return 0
    try:
        print(zoo.fetch(args.name))
    except (KeyError, OSError, ValueError) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
