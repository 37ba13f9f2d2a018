"""`python experiments/X.py --help`: the experiment's docstring, every flag and every config key.

absl's own help lists only the flags of the main module, which for an experiment file is none
of them (they are defined on a private `FlagValues`), so this module writes the text itself:
`--workdir`, `--mode`, `--demo`, `--checkpoint` with their help and defaults, then every
`--config.KEY=VALUE` override with the value it has now (the `--demo` values with `--demo`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ml_collections
from absl import flags


def config_lines(config: ml_collections.ConfigDict, prefix: str = "config") -> Iterator[str]:
    """`--config.a.b=VALUE` for every leaf key of `config` (sections expanded), sorted."""
    for key in sorted(config.keys()):
        value = config[key]
        name = f"{prefix}.{key}"
        if isinstance(value, ml_collections.ConfigDict):
            yield from config_lines(value, name)
        else:
            yield f"  --{name}={value!r}"


def _flag_line(flag: Any) -> str:
    # absl starts an enum flag's help with its choices, e.g. "<train|eval>: Train, or evaluate."
    suffix = f" (default: {flag.default!r})" if flag.default is not None else ""
    return f"  --{flag.name}: {flag.help}{suffix}"


def format_help(
    doc: str | None,
    flag_values: flags.FlagValues,
    config: ml_collections.ConfigDict,
    *,
    config_flag: str = "config",
    demo: bool = False,
) -> str:
    """The `--help` text.

    Args:
      doc: the experiment's docstring (printed first).
      flag_values: the experiment's flags (the config flag among them is shown key by key).
      config: the config whose values are listed (the `--demo` one when `demo`).
      config_flag: the name of the config flag.
      demo: say that the values are those of `--demo`.
    """
    seen, lines = set(), []
    for name in sorted(flag_values):
        flag = flag_values[name]
        if id(flag) in seen or flag.name == config_flag or flag.name.startswith(config_flag + "."):
            continue
        seen.add(id(flag))
        lines.append(_flag_line(flag))
    which = "with --demo" if demo else "defaults; --demo changes some, see above"
    keys = list(config_lines(config, config_flag))
    return (
        (doc or "").strip()
        + "\n\nFlags:\n"
        + "\n".join(lines)
        + f"\n\nConfig overrides (--{config_flag}.KEY=VALUE; values {which}):\n"
        + "\n".join(keys)
        + "\n"
    )
