"""jaxseg: semantic segmentation in JAX/Flax, from FCN to DeepLab v3+."""

import os

# TensorFlow (the data pipeline, TFDS) prints C++ start-up notices (CPU features, oneDNN,
# "All log messages before absl::InitializeLog()") unless told otherwise before it is first
# imported; jaxseg is imported before it. The oneDNN notice goes only with oneDNN's custom TF
# ops off (TF only decodes and augments images here, no convolutions). Errors still show; a
# value the user set is kept.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"


def __getattr__(name: str):
    # `jaxseg.Segmenter` without importing JAX/Flax for `import jaxseg` alone.
    if name == "Segmenter":
        from jaxseg.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'jaxseg' has no attribute {name!r}")
