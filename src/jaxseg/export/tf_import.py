"""TensorFlow for the SavedModel and TFLite exports: imported without its start-up notices and
kept off accelerators (JAX needs their memory; TF only converts and checks here); native
notices of the converter and LiteRT filtered the same way.

`jaxseg.data.tf_setup` does the same for the input pipeline, but importing `jaxseg.data` needs
TensorFlow Datasets, which the `tflite` extra does not install.
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
