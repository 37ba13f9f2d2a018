"""`python -m jaxseg.zoo list` prints the model table; `... download NAME` fetches one."""

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
    parser = argparse.ArgumentParser(prog="python -m jaxseg.zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the released models")
    fetch = commands.add_parser("download", help="download a model into the cache")
    fetch.add_argument("name", help="a model name from `list`")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(list_table())
        return 0
    try:
        path = zoo.fetch(args.name)
    except (KeyError, OSError, ValueError) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
