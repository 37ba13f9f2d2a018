"""jaxseg: semantic segmentation in JAX/Flax, from FCN to DeepLab v3+."""

import os

# TensorFlow (the data pipeline, TFDS) logs C++ notices (CPU features, ...) unless told
# otherwise before it is first imported; jaxseg is imported before it. Errors still show; a
# value the user set is kept. (The notices this does not reach: jaxseg.tf_quiet.)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def __getattr__(name: str):
    # `jaxseg.Segmenter` without importing JAX/Flax for `import jaxseg` alone.
    if name == "Segmenter":
        from jaxseg.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'jaxseg' has no attribute {name!r}")
