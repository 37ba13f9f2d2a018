"""Import TensorFlow quietly and keep it on the host CPU.

TensorFlow only feeds data in jaxseg. If it saw a GPU it would reserve most of that GPU's memory
for itself at start-up, memory JAX needs for the model, so the data package hides accelerators
from TensorFlow as soon as it is imported.

Importing TensorFlow writes C++ notices straight to file descriptor 2 ("oneDNN custom
operations are on ...", "All log messages before absl::InitializeLog() ..."), which
`TF_CPP_MIN_LOG_LEVEL` does not silence in current releases. The first import goes through
`import_tensorflow_quietly`: stderr is captured at the descriptor level while TensorFlow loads,
and everything but those known notices is written back.
"""

import contextlib
import logging
import os
import sys
import tempfile

_log = logging.getLogger(__name__)

# Start-up notices of TensorFlow's C++ runtime (informational, on every import).
_NOTICES = (
    "oneDNN custom operations are on",
    "All log messages before absl::InitializeLog() is called",
    "cpu_feature_guard.cc",
    "To enable the following instructions:",
)


def import_tensorflow_quietly():
    """`import tensorflow` without its start-up notices; other output passes through."""
    if "tensorflow" in sys.modules:
        import tensorflow

        return tensorflow
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. embedded): just import
        import tensorflow

        return tensorflow
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if not any(notice in line for notice in _NOTICES)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
    return tensorflow


try:
    tf = import_tensorflow_quietly()
except ModuleNotFoundError as err:  # `pip install jaxseg` alone has no TensorFlow
    raise ModuleNotFoundError(
        f"jaxseg.data needs TensorFlow and TFDS ({err}); install them with "
        "pip install 'jaxseg[data]' (or pip install -r requirements.txt in a checkout)",
        name=err.name,
    ) from err


def hide_accelerators_from_tf() -> None:
    """Make every GPU/TPU invisible to TensorFlow (no-op when TF has already started them)."""
    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError) as err:
            # RuntimeError: TF already initialised its devices (someone ran a TF op first);
            # ValueError: this TF build does not know the device kind. Either way nothing to hide.
            _log.debug("could not hide %s devices from TensorFlow: %s", kind, err)


# Importing this module is how the data package's TensorFlow parts start TensorFlow.
hide_accelerators_from_tf()
