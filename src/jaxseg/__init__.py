"""jaxseg: semantic segmentation in JAX/Flax, from FCN to DeepLab v3+."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `jaxseg.Segmenter` without importing JAX/Flax for `import jaxseg` alone.
    if name == "Segmenter":
        from jaxseg.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'jaxseg' has no attribute {name!r}")
