"""Per-image scoring: `(image, labels)` pairs through a `Segmenter` -> exact confusion counts.

    counts, n = confusion_matrices(seg, pairs, crf=seg_crf)   # {"plain": cm, "crf": cm}
    summary = metrics.summarize(counts["plain"], names, out_of_range=True)

Every per-image evaluation goes through it: a run's evaluation with test-time scales, flips,
sliding windows or the dense CRF (`jaxseg.experiment.evaluate_per_image`), and the evaluation
of released models (`jaxseg.zoo.evaluate`, `jaxseg-zoo evaluate`). The counts are summed by
`jaxseg.metrics.sum_counts`, the loop that also sums the training-time evaluation's batches (a
sharded eval step over fixed-size crops). The segmenter carries the preprocessing, evaluation
canvas and test-time protocol, so a score is always of what `Segmenter.logits` (and so
`jaxseg-predict`) computes. Labels are scored at their own resolution; `ignore_label` pixels
are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxseg import inference, metrics
from jaxseg.segmenter import Segmenter


def confusion_matrices(
    seg: Segmenter,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    crf: Mapping[str, float] | None = None,
    ignore_label: int = 255,
    label_offset: int = 0,
) -> tuple[dict[str, np.ndarray], int]:
    """Confusion counts of `seg` over `pairs`.

    Args:
      seg: the model with its preprocessing, canvas, scales, flips and window.
      pairs: RGB `[H, W, 3]` images (0..255) with int `[H, W]` ground truth.
      crf: dense-CRF parameters to also count the CRF-refined labels (the CRF's unaries are
        `seg.logits`), or None.
      ignore_label: label value not counted.
      label_offset: the model output of label 0. DeepLab's ADE20K release has 151 outputs,
        output 0 being "other", which the dataset marks `ignore_label` and shifts the classes
        down by one: with 1 the labels are shifted back up and scored over all the outputs, as
        DeepLab's eval.py does (an "other" prediction on a labelled pixel is an error, and
        "other" enters the mean IoU with IoU 0 wherever it was predicted).

    Returns:
      (`{"plain": cm}` plus `{"crf": cm}` with `crf`: int64 `[C + 1, C + 1]` over the model's
      C outputs, rows = truth, the last row and column counting labels and predictions
      outside `0..C-1`; the number of pairs).
    """
    num_classes = seg.num_classes

    def image_counts(image: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        image, labels = np.asarray(image), np.asarray(labels)
        if labels.shape != image.shape[:2]:
            raise ValueError(f"labels {labels.shape} must match the image {image.shape[:2]}")
        if label_offset:
            labels = np.where(labels == ignore_label, ignore_label, labels + label_offset)
        scores = seg.logits(image)
        outputs = {"plain": scores}
        if crf is not None:
            outputs["crf"] = inference.crf_refine(scores, image, **crf)
        return {
            key: metrics.confusion_matrix(
                labels[None],
                np.argmax(np.asarray(values), -1)[None],
                num_classes,
                ignore_label,
                out_of_range=True,
            )
            for key, values in outputs.items()
        }

    totals, count = metrics.sum_counts(image_counts(image, labels) for image, labels in pairs)
    if totals is None:  # no pairs: all counts zero
        empty = np.zeros((num_classes + 1,) * 2, np.int64)
        totals = {"plain": empty} | ({"crf": empty.copy()} if crf is not None else {})
    return totals, count


def summaries(
    counts: Mapping[str, np.ndarray], class_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """`metrics.summarize` of each confusion matrix, the matrix kept under "confusion_matrix"."""
    out = {}
    for key, cm in counts.items():
        out[key] = metrics.summarize(cm, class_names, out_of_range=True)
        out[key]["confusion_matrix"] = cm
    return out


def evaluate(
    seg: Segmenter,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    crf: Mapping[str, float] | None = None,
    ignore_label: int = 255,
    label_offset: int = 0,
) -> dict[str, Any]:
    """Scores `seg` on `pairs` (arguments as `confusion_matrices`).

    Returns:
      `{"plain": metrics.summarize(...)}` and with `crf` also `{"crf": ...}`; each has its
      confusion matrix under "confusion_matrix". `"num_images"`: how many pairs were scored.
    """
    counts, count = confusion_matrices(
        seg, pairs, crf=crf, ignore_label=ignore_label, label_offset=label_offset
    )
    return {"num_images": count, **summaries(counts, seg.class_names)}
