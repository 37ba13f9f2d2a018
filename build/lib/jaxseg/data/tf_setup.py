"""Keep TensorFlow on the host CPU.

TensorFlow only feeds data in jaxseg. If it saw a GPU it would reserve most of that GPU's memory
for itself at start-up, memory JAX needs for the model, so the data package hides accelerators
from TensorFlow as soon as it is imported.
"""

import logging

try:
    import tensorflow as tf
except ModuleNotFoundError as err:  # `pip install jaxseg` alone has no TensorFlow
    raise ModuleNotFoundError(
        f"jaxseg.data needs TensorFlow and TFDS ({err}); install them with "
        "pip install 'jaxseg[data]' (or pip install -r requirements.txt in a checkout)",
        name=err.name,
    ) from err

_log = logging.getLogger(__name__)


def hide_accelerators_from_tf() -> None:
    """Make every GPU/TPU invisible to TensorFlow (no-op when TF has already started them)."""
    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError) as err:
            # RuntimeError: TF already initialised its devices (someone ran a TF op first);
            # ValueError: this TF build does not know the device kind. Either way nothing to hide.
            _log.debug("could not hide %s devices from TensorFlow: %s", kind, err)
