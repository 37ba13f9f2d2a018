"""TensorFlow as jaxseg uses it: imported without its start-up notices and kept off
accelerators. TensorFlow only feeds data (`jaxseg.data.pipeline`) and converts or checks
exports (`jaxseg.export`); if it saw a GPU it would reserve most of that GPU's memory at
start-up, memory JAX needs for the model.

Importing TensorFlow writes C++ notices straight to file descriptor 2 ("oneDNN custom
operations are on ...", "All log messages before absl::InitializeLog() ..."), which
`TF_CPP_MIN_LOG_LEVEL` does not silence in current releases: `quiet_native_output` captures
the descriptor while native code runs and writes back everything but those known notices
(the TFLite converter's and LiteRT's notices are filtered the same way).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

# Informational lines TensorFlow's C++ runtime writes to file descriptor 2 on every import,
# whatever TF_CPP_MIN_LOG_LEVEL says.
_NOTICES = (
    "oneDNN custom operations are on",
    "All log messages before absl::InitializeLog() is called",
    "cpu_feature_guard.cc",
    "To enable the following instructions:",
)


@contextlib.contextmanager
def quiet_native_output(notices: tuple[str, ...] = _NOTICES) -> Iterator[None]:
    """Drops the lines containing any of `notices` that native code (TensorFlow's C++, LiteRT)
    writes to file descriptor 2 inside the block; other output is written back."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real stderr (embedded): leave it
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(True) if not any(n in line for n in notices)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def tensorflow() -> Any:
    """The `tensorflow` module, imported quietly the first time, with no GPU/TPU visible."""
    if sys.modules.get("tensorflow") is not None:
        return sys.modules["tensorflow"]
    with quiet_native_output():
        import tensorflow as tf
    for kind in ("GPU", "TPU"):
        # RuntimeError: TF started its devices already; ValueError: unknown kind. Nothing to do.
        with contextlib.suppress(RuntimeError, ValueError):
            tf.config.set_visible_devices([], kind)
    return tf
