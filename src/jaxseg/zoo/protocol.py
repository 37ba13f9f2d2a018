"""DeepLab's official multi-scale + flip evaluation (the "MS, flip" published numbers).

The official evaluation (`predict_labels_multi_scale`) does, for one image padded to the
evaluation canvas `(Hc, Wc)` with the mean pixel:

    for each scale s (and, with flips, the left-right mirrored canvas as well):
        input  = the canvas resized (bilinear, align_corners) to scale_dimension((Hc, Wc), s)
        logits = the network at its own resolution (stride 4 with the decoder, else the
                 output stride), resized to scale_dimension((Hc, Wc), max(1, s) / stride),
                 mirrored back if the input was, then resized to (Hc, Wc)
        probabilities += softmax(logits)
    probabilities /= number of passes; labels = argmax

with `scale_dimension(d, s) = int((d - 1) * s + 1)`. The two successive resizes matter: they
are not one resize in general. `official_probabilities` reproduces this on a zoo `Segmenter`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg import inference
from jaxseg.ops import resize_bilinear


def scale_dimension(dim: int, scale: float) -> int:
    """The official output size of a side `dim` at `scale`: `int((dim - 1) * scale + 1)`."""
    return int((float(dim) - 1.0) * scale + 1.0)


def _logits_stride(model) -> int:
    from jaxseg.models.deeplab_v3plus import DeepLabV3Plus

    return 4 if isinstance(model, DeepLabV3Plus) else model.output_stride


def official_probabilities(
    segmenter, image: np.ndarray, scales: Sequence[float] = (1.0,), flip: bool = False
) -> np.ndarray:
    """Class probabilities of one image by the official multi-scale/flip protocol.

    Args:
      segmenter: a DeepLab `Segmenter` from `jaxseg.zoo.load` (its model, variables,
        normalisation, canvas and pad pixel are used).
      image: uint8 `[H, W, 3]` RGB.
      scales: e.g. (0.5, 0.75, 1.0, 1.25, 1.5, 1.75).
      flip: add the left-right mirrored passes.

    Returns:
      float32 `[H, W, C]`: the mean of the passes' softmax probabilities (argmax = labels).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] RGB, got shape {image.shape}")
    height, width = image.shape[:2]
    crop = segmenter.crop_size
    if crop is not None and height <= crop[0] and width <= crop[1]:
        canvas_hw = tuple(crop)
    else:  # as Segmenter: larger images go to the bucket size
        canvas_hw = tuple(inference.bucket_size(d, segmenter.bucket) for d in (height, width))
    canvas = np.empty((1, *canvas_hw, 3), np.float32)
    canvas[:] = np.asarray(segmenter.pad_pixel, np.float32)
    canvas[0, :height, :width] = image
    model = segmenter.model.clone(upsample_logits=False)
    stride = _logits_stride(model)
    normalize = segmenter.normalize

    @jax.jit
    def network(variables, x):
        return model.apply(variables, normalize(x), train=False).astype(jnp.float32)

    total, passes = 0.0, 0
    for scale in scales:
        size = tuple(scale_dimension(d, scale) for d in canvas_hw)
        scaled = resize_bilinear(jnp.asarray(canvas), size, align_corners=True)
        logits_size = tuple(scale_dimension(d, max(1.0, scale) / stride) for d in canvas_hw)
        for mirrored in (False, True) if flip else (False,):
            x = scaled[:, :, ::-1] if mirrored else scaled
            logits = resize_bilinear(network(segmenter.variables, x), logits_size, True)
            if mirrored:
                logits = logits[:, :, ::-1]
            logits = resize_bilinear(logits, canvas_hw, align_corners=True)
            total = total + jax.nn.softmax(logits, axis=-1)
            passes += 1
    return np.asarray(total / passes, np.float32)[0, :height, :width]


def labels_by_protocol(
    segmenter, image: np.ndarray, scales: Sequence[float] = (1.0,), flip: bool = False
) -> np.ndarray:
    """int32 `[H, W]` labels of one image: single scale through the segmenter, else through
    `official_probabilities` (both as the official evaluation computes them)."""
    if tuple(scales) == (1.0,) and not flip:
        return np.argmax(segmenter.logits(image), axis=-1).astype(np.int32)
    return np.argmax(official_probabilities(segmenter, image, scales, flip), -1).astype(np.int32)


def evaluate_published(
    name: str,
    pairs,
    which: int = 0,
    checkpoint=None,
    crop_size=None,
    ignore_label: int = 255,
) -> tuple[dict, object]:
    """Measures a zoo model the way one of its published numbers was measured.

    Args:
      name: a zoo entry with published numbers.
      pairs: iterable of (uint8 `[H, W, 3]` image, int `[H, W]` label map) in the entry's
        label set as jaxseg's datasets deliver it (ADE20K: 0..149, "other" = `ignore_label`;
        the model's extra "other" output is then left out of the argmax).
      which: index into the entry's `published` (its protocol: output stride, scales, flip).
      checkpoint, crop_size: as `jaxseg.zoo.load`.
      ignore_label: label value not scored.

    Returns:
      (`jaxseg.metrics.summarize` of the confusion matrix, the `Published` it compares with).
    """
    from jaxseg import zoo
    from jaxseg.zoo.evaluate import evaluate

    published = zoo.entry(name).published[which]
    segmenter = zoo.load(name, checkpoint, published.eval_output_stride, crop_size)
    release = zoo.deeplab_models.RELEASES.get(name)
    results = evaluate(
        segmenter,
        pairs,
        ignore_label=ignore_label,
        scales=published.eval_scales,
        flip=published.eval_flip,
        drop_first_class=release is not None and release.labels == "ade20k",
    )
    if not results["num_images"]:
        raise ValueError(f"evaluate_published({name!r}): no (image, label) pairs given")
    summary = results["plain"]
    del summary["confusion_matrix"]
    return summary, published
