"""Segmentation losses: pure, jit-able functions of `[B, H, W, C]` logits and `[B, H, W]` labels.

Conventions shared by every loss here:
- A pixel is *valid* when its label is in `[0, C)`, is not `ignore_label`, and its example is
  not masked out (`mask`, `[B]`, for padded batches). Only valid pixels contribute.
- Labels outside `[0, C)` that are not the ignore label cannot raise under jit; they are
  treated like ignored pixels here. They are never hidden from evaluation:
  `jaxseg.metrics.confusion_matrix` counts them in its extra row and `summarize` reports them,
  so a wrong `num_classes` or label encoding shows up on the first evaluation.
- Math is float32 whatever the logits dtype (bf16 logits give a float32 loss).

`unet_weight_map` is different: it is host-side data preparation on numpy (scipy distance
transforms), run once per label map, whose output is fed to `softmax_cross_entropy` as
`pixel_weights`.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from scipy import ndimage

__all__ = ["dice_loss", "softmax_cross_entropy", "unet_weight_map"]


def softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    ignore_label: int | None = 255,
    class_weights: ArrayLike | None = None,
    pixel_weights: ArrayLike | None = None,
    top_k_percent: float = 1.0,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Per-pixel softmax cross entropy, averaged over valid pixels (DeepLab's convention).

    With per-pixel loss l and weight w = class_weights[label] * pixel_weights (1 when absent):

        top_k_percent == 1:  sum_valid(w * l) / num_valid

    i.e. the mean over valid pixels of the weighted loss, as DeepLab's
    `add_softmax_cross_entropy_loss_for_each_scale` (and mmsegmentation) do; it is *not*
    divided by sum(w), so weights also scale the loss magnitude. 0 when no pixel is valid.

    top_k_percent < 1 is online hard example mining as DeepLab's `top_k_percent_pixels`: over
    the whole batch, k = max(1, floor(top_k_percent * B * H * W)) (ignored pixels included in
    that count, as in DeepLab); the k valid pixels with the largest w * l are kept and the loss
    is their sum divided by the number of valid pixels kept (min(k, num_valid)). Ignored pixels
    rank below every valid one. (DeepLab divides by the count of nonzero kept losses instead;
    the two differ only when valid pixels with exactly zero weighted loss are kept.) Ties at the
    k-th value share its weight equally, so value and gradient equal an exact top-k and the
    gradient needs no scatter.

    Args:
      logits: `[B, H, W, C]` float scores at label resolution (upsample logits before calling).
      labels: `[B, H, W]` integer class ids; `ignore_label` marks pixels without a label.
      ignore_label: label value that contributes nothing; None for none.
      class_weights: optional `[C]` non-negative per-class weights.
      pixel_weights: optional `[B, H, W]` non-negative per-pixel weights (e.g. from
        `unet_weight_map`).
      top_k_percent: static float in (0, 1]; 1 uses every valid pixel.
      mask: optional `[B]` bool/int per-example validity; False drops the whole example (for
        a last batch padded to full size).

    Returns:
      float32 scalar.
    """
    logits, labels = _check_logits_labels(logits, labels)
    num_classes = logits.shape[-1]
    if not isinstance(top_k_percent, numbers.Real) or not 0.0 < top_k_percent <= 1.0:
        raise ValueError(f"top_k_percent must be a float in (0, 1], got {top_k_percent!r}")
    valid = _valid_pixels(labels, num_classes, ignore_label, mask)

    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    # A one-hot product instead of take_along_axis: its gradient is elementwise, not a scatter.
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    pixel_loss = -jnp.sum(one_hot * log_probs, axis=-1)
    weights = _pixel_weights(one_hot, labels.shape, class_weights, pixel_weights)
    # where, not multiply: garbage (even NaN) logits in ignored pixels must not leak in.
    weighted = jnp.where(valid, weights * pixel_loss, 0.0)
    num_valid = jnp.sum(valid, dtype=jnp.int32)

    num_pixels = labels.size
    k = max(1, math.floor(top_k_percent * num_pixels + 1e-6))  # 1e-6: 0.29 * 100 is 28.99...
    if k >= num_pixels:
        return jnp.sum(weighted) / jnp.maximum(num_valid, 1).astype(jnp.float32)

    # Valid losses are >= 0 (for non-negative weights), so -1 ranks ignored pixels last.
    key = jnp.where(valid, weighted, -1.0).reshape(-1)
    top_values = jax.lax.top_k(jax.lax.stop_gradient(key), k)[0]
    threshold = top_values[k - 1]
    num_kept = jnp.sum(top_values >= 0.0, dtype=jnp.int32)  # = min(k, num_valid)
    above = key > threshold  # if threshold < 0 these are exactly the valid pixels
    tied = (key == threshold) & (threshold >= 0.0)
    num_above = jnp.sum(above, dtype=jnp.int32)
    num_tied = jnp.maximum(jnp.sum(tied, dtype=jnp.int32), 1)
    tied_share = (k - num_above).astype(jnp.float32) / num_tied.astype(jnp.float32)
    flat = weighted.reshape(-1)
    total = jnp.sum(jnp.where(above, flat, 0.0)) + tied_share * jnp.sum(jnp.where(tied, flat, 0.0))
    return total / jnp.maximum(num_kept, 1).astype(jnp.float32)


def dice_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    ignore_label: int | None = 255,
    smooth: float = 1.0,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Soft multi-class Dice loss over the valid pixels of the whole batch.

    With softmax probabilities p and one-hot ground truth g, sums over valid pixels of all
    examples (batch Dice, not a per-image mean):

        loss = 1 - (1/C) sum_c (2 sum p_c g_c + smooth) / (sum p_c + sum g_c + smooth)

    Every class counts in the mean; a class absent from the labels scores ~1 when the model
    also predicts ~0 of it (that is what `smooth` is for; smooth=0 makes it 0/0 = NaN).

    Args:
      logits: `[B, H, W, C]` float scores at label resolution.
      labels: `[B, H, W]` integer class ids.
      ignore_label: label value that contributes nothing; None for none.
      smooth: float >= 0 added to numerator and denominator.
      mask: optional `[B]` bool/int per-example validity.

    Returns:
      float32 scalar in [0, 1].
    """
    logits, labels = _check_logits_labels(logits, labels)
    if not isinstance(smooth, numbers.Real) or smooth < 0:
        raise ValueError(f"smooth must be a float >= 0, got {smooth!r}")
    num_classes = logits.shape[-1]
    valid = _valid_pixels(labels, num_classes, ignore_label, mask)[..., None]
    probs = jnp.where(valid, jax.nn.softmax(logits.astype(jnp.float32), axis=-1), 0.0)
    one_hot = jnp.where(valid, jax.nn.one_hot(labels, num_classes, dtype=jnp.float32), 0.0)
    intersection = jnp.sum(probs * one_hot, axis=(0, 1, 2))
    denominator = jnp.sum(probs, axis=(0, 1, 2)) + jnp.sum(one_hot, axis=(0, 1, 2))
    dice = (2.0 * intersection + smooth) / (denominator + smooth)
    return 1.0 - jnp.mean(dice)


def unet_weight_map(
    labels: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_balance: bool = True,
    background_class: int = 0,
    ignore_label: int | None = 255,
) -> np.ndarray:
    """U-Net border weights w(x) = w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2)).

    Host-side numpy/scipy data preparation (not jit-able): compute once per label map, pass the
    result to `softmax_cross_entropy(..., pixel_weights=...)`.

    Instances: connected components (4-connectivity, `scipy.ndimage.label`) of each foreground
    class separately, foreground = not `background_class`, not `ignore_label`. So touching
    objects of different classes are different instances; touching objects of one class merge
    (U-Net's data separates them with a background gap, which is what the term emphasises).
    d1, d2: Euclidean distances (pixel centres) from x to the nearest pixel of the nearest and
    second-nearest instance. As in the paper's weight maps, the border term is added only on
    background pixels, and only when the map has at least two instances.

    w_c balances class frequencies within each map: w_c(x) = N / (K * N_c) for a pixel of class
    c, with N valid pixels, N_c of them of class c and K classes present, so every present
    class gets the same total weight and the mean weight over valid pixels is 1.
    class_balance=False uses w_c = 1. Ignored pixels get weight 0.

    Cost: one full-map distance transform per instance; precompute maps with many instances
    once (e.g. when building the dataset) rather than in the input pipeline.

    Args:
      labels: `[H, W]` or `[B, H, W]` integer numpy label map(s); each map is handled alone.
      w0: border term amplitude (paper: 10).
      sigma: border term width in pixels (paper: ~5).
      class_balance: use the class-frequency term w_c (else 1).
      background_class: the class whose pixels separate instances and get the border term.
      ignore_label: label value given weight 0; None for none.

    Returns:
      float32 weights with the shape of `labels`.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must have shape [H, W] or [B, H, W], got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    if not w0 >= 0:
        raise ValueError(f"w0 must be >= 0, got {w0!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if labels.ndim == 3:
        return np.stack(
            [
                unet_weight_map(m, w0, sigma, class_balance, background_class, ignore_label)
                for m in labels
            ]
        )

    valid = np.ones(labels.shape, bool) if ignore_label is None else labels != ignore_label
    weights = np.zeros(labels.shape, np.float64)
    if class_balance:
        classes, counts = np.unique(labels[valid], return_counts=True)
        for c, n in zip(classes, counts, strict=True):
            weights[valid & (labels == c)] = valid.sum() / (len(classes) * n)
    else:
        weights[valid] = 1.0

    # Running nearest and second-nearest distances: O(H W) memory for any number of instances.
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    num_instances = 0
    foreground = valid & (labels != background_class)
    for c in np.unique(labels[foreground]):
        components, n = ndimage.label(labels == c)
        for i in range(1, n + 1):
            d = ndimage.distance_transform_edt(components != i)
            d2 = np.minimum(d2, np.maximum(d1, d))
            d1 = np.minimum(d1, d)
        num_instances += n
    if num_instances >= 2:
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
        weights += np.where(valid & (labels == background_class), border, 0.0)
    return weights.astype(np.float32)


def _check_logits_labels(logits: ArrayLike, labels: ArrayLike) -> tuple[jax.Array, jax.Array]:
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.ndim != 4:
        raise ValueError(f"logits must have shape [B, H, W, C] (rank 4), got {logits.shape}")
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    if labels.ndim != 3:
        raise ValueError(f"labels must have shape [B, H, W] (rank 3), got {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be an integer array (class ids), got dtype {labels.dtype}")
    if logits.shape[:3] != labels.shape:
        raise ValueError(
            f"logits {logits.shape} and labels {labels.shape} must agree on [B, H, W] "
            "(resize logits to label resolution first)"
        )
    if logits.shape[-1] < 1:
        raise ValueError(f"logits must have num_classes >= 1 channels, got {logits.shape}")
    return logits, labels


def _valid_pixels(
    labels: jax.Array, num_classes: int, ignore_label: int | None, mask: ArrayLike | None
) -> jax.Array:
    """`[B, H, W]` bool: label in [0, C), not ignored, example not masked out."""
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_label is not None:
        valid = valid & (labels != ignore_label)
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != labels.shape[:1]:
            raise ValueError(f"mask must have shape [B] = {labels.shape[:1]}, got {mask.shape}")
        if not (mask.dtype == jnp.bool_ or jnp.issubdtype(mask.dtype, jnp.integer)):
            raise ValueError(f"mask must be bool or integer, got dtype {mask.dtype}")
        valid = valid & (mask != 0)[:, None, None]
    return valid


def _pixel_weights(
    one_hot: jax.Array,
    shape: tuple[int, ...],
    class_weights: ArrayLike | None,
    pixel_weights: ArrayLike | None,
) -> jax.Array:
    """`[B, H, W]` float32 product of the optional class and pixel weights."""
    weights = jnp.ones(shape, jnp.float32)
    if class_weights is not None:
        class_weights = jnp.asarray(class_weights, jnp.float32)
        if class_weights.shape != one_hot.shape[-1:]:
            raise ValueError(
                f"class_weights must have shape [C] = {one_hot.shape[-1:]}, "
                f"got {class_weights.shape}"
            )
        weights = weights * jnp.sum(one_hot * class_weights, axis=-1)
    if pixel_weights is not None:
        pixel_weights = jnp.asarray(pixel_weights)
        if pixel_weights.shape != shape:
            raise ValueError(
                f"pixel_weights must have the labels' shape {shape}, got {pixel_weights.shape}"
            )
        weights = weights * pixel_weights.astype(jnp.float32)
    return weights
