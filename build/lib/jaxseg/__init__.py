"""jaxseg: semantic segmentation in JAX/Flax, from FCN to DeepLab v3+."""

__version__ = "0.1.0"
