"""Input normalisations of the supported weight families, and the training scale choices.

Plain data, no TensorFlow: the tf.data transforms (`jaxseg.data.pipeline.transforms`) apply
them to training batches, and prediction and export apply the same numbers in jnp.
"""

import dataclasses

DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)  # DeepLab's 0.5..2.0, step 0.25


@dataclasses.dataclass(frozen=True)
class Normalization:
    """``out = (x - mean) / std`` per RGB channel, then channels reversed when ``bgr``.

    ``mean`` is also the value images are padded with before normalising, so padding becomes
    exactly 0 afterwards (and eval images may be padded with 0 after normalising).
    """

    mean: tuple[float, float, float]  # RGB order, 0..255 scale
    std: tuple[float, float, float]
    bgr: bool = False


NORMALIZATIONS = {
    # torchvision / timm / Keras ImageNet weights.
    "imagenet": Normalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    # Caffe VGG weights (FCN, DeepLab v1/v2): BGR, mean (104.007, 116.669, 122.679), no scaling.
    "caffe_bgr": Normalization((122.679, 116.669, 104.007), (1.0, 1.0, 1.0), bgr=True),
    # TF-slim Inception/Xception weights (TF DeepLab v3+): [-1, 1].
    "inception": Normalization((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    # Raw 0..255 floats (tests, or models that normalise inside).
    "none": Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def get_normalization(normalization: str | Normalization) -> Normalization:
    """A :class:`Normalization` by name: ``imagenet``, ``caffe_bgr``, ``inception`` or ``none``."""
    if isinstance(normalization, Normalization):
        return normalization
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"unknown normalization {normalization!r}; one of {sorted(NORMALIZATIONS)}"
        )
    return NORMALIZATIONS[normalization]
