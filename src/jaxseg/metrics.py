"""Segmentation metrics: an exact confusion matrix on device, scores from it on the host.

The confusion matrix is the only thing evaluation accumulates. Rows are ground truth, columns
predictions, as in scikit-learn: `cm[i, j]` counts pixels of class i predicted as class j. The
scores take that standard `[C, C]` matrix.

Evaluation keeps one more row and column (`out_of_range=True`), so that nothing is silently
dropped or wrapped:

    cm[i, j]  (i, j < C)  pixels of ground-truth class i predicted as class j
    cm[i, C]              pixels of class i whose prediction is outside [0, C)
    cm[C, j], cm[C, C]    pixels whose *label* is outside [0, C) and is not the ignore label

so that `cm` has shape `[C + 1, C + 1]`; pass `out_of_range=True` to the scores and `summarize`
with such a matrix. Ignore-labelled pixels (and pixels masked out, e.g. the padding of the last
eval batch) are not counted anywhere.

Scores follow FCN (Long et al., 2015), with n_ij = cm[i, j] and t_i = sum_j cm[i, j] (with
`out_of_range`, over all C + 1 columns: a valid pixel with an out-of-range prediction is a miss
for its class):

    pixel accuracy          sum_i n_ii / sum_i t_i
    mean pixel accuracy     mean over classes with t_i > 0 of n_ii / t_i
    mean IoU                mean over classes with union_i > 0 of n_ii / union_i,
                            union_i = t_i + sum_{j<C} n_ji - n_ii
    frequency-weighted IoU  (sum_k t_k)^-1 sum_i t_i n_ii / union_i

A class absent from both labels and predictions (union_i = 0) has IoU NaN and is excluded from
the means; `summarize` names it. A class that is predicted but never labelled has IoU 0 (its
false positives count) and accuracy NaN (recall is undefined), as in FCN's `score.py`. The
out-of-range label row takes no part in any score; `summarize` reports its total.

Per-call counts are int32 (exact: the call refuses inputs of 2^31 pixels or more); sum calls on
the host in int64 with `accumulate`.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxseg.labels import IGNORE_LABEL

__all__ = [
    "accumulate",
    "sum_counts",
    "confusion_matrix",
    "format_table",
    "frequency_weighted_iou",
    "mean_iou",
    "mean_pixel_accuracy",
    "pixel_accuracy",
    "summarize",
]


def confusion_matrix(
    labels: ArrayLike,
    predictions: ArrayLike,
    num_classes: int,
    ignore_label: int | None = IGNORE_LABEL,
    mask: ArrayLike | None = None,
    *,
    out_of_range: bool = False,
) -> jax.Array:
    """Counts (label, prediction) pairs exactly; jit-able, static output shape.

    Args:
      labels: `[B, H, W]` integer ground truth. `ignore_label` pixels are not counted; other
        values outside `[0, num_classes)` are counted in the last row (`out_of_range`), or not
        at all.
      predictions: `[B, H, W]` integer predicted classes (e.g. `argmax(logits, -1)`). Values
        outside `[0, num_classes)` are counted in the last column (`out_of_range`), or not at
        all.
      num_classes: static number of classes C >= 1.
      ignore_label: label value that is not counted; None counts every pixel.
      mask: optional `[B]` (per example, e.g. padding of the last batch) or `[B, H, W]` bool or
        integer validity; pixels where it is False/0 are not counted.
      out_of_range: keep the extra row and column (see the module docstring).

    Returns:
      int32 `[C, C]` matrix, rows = ground truth, columns = prediction; `[C + 1, C + 1]` with
      `out_of_range`. Under jit with a batch sharded over devices the
      result is the global count; nothing more needs summing across devices.
    """
    labels = _as_int_map(labels, "labels")
    predictions = _as_int_map(predictions, "predictions")
    if predictions.shape != labels.shape:
        raise ValueError(
            f"predictions must have the shape of labels {labels.shape}, got {predictions.shape}"
        )
    if not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if labels.size >= 2**31:
        # Every bin is an int32; the total bounds every bin, so this guarantees exact counts.
        raise ValueError(
            f"labels has {labels.size} pixels, too many for exact int32 counts in one call; "
            "split the batch and sum the matrices with `accumulate`"
        )
    num_classes = int(num_classes)
    side = num_classes + 1

    labels = labels.astype(jnp.int32)  # uint8 labels would overflow the flat index below
    predictions = predictions.astype(jnp.int32)
    row = jnp.where((labels >= 0) & (labels < num_classes), labels, num_classes)
    col = jnp.where((predictions >= 0) & (predictions < num_classes), predictions, num_classes)
    counted = _mask_to_pixels(mask, labels.shape)
    if ignore_label is not None:
        counted = counted & (labels != ignore_label)
    # Uncounted pixels go to one extra bin that is sliced off: static shapes, no boolean
    # indexing, and the scatter-add is integer so counts are exact.
    flat = jnp.where(counted, row * side + col, side * side)
    counts = jnp.bincount(flat.reshape(-1), length=side * side + 1)
    cm = counts[: side * side].reshape(side, side).astype(jnp.int32)
    return cm if out_of_range else cm[:num_classes, :num_classes]


def accumulate(total: np.ndarray | None, cm: ArrayLike) -> np.ndarray:
    """Adds a confusion matrix to a host-side int64 running total.

    Args:
      total: int64 running sum, or None to start one.
      cm: a matrix of the same shape from `confusion_matrix` (device or host array).

    Returns:
      int64 numpy array (a new array; `total` is not modified).
    """
    cm = np.asarray(cm).astype(np.int64)
    if total is None:
        return cm
    total = np.asarray(total)
    if total.shape != cm.shape:
        raise ValueError(f"total has shape {total.shape} but cm has shape {cm.shape}")
    return total.astype(np.int64) + cm


def sum_counts(
    counts: Iterable[Any], read: Callable[[Any], Any] | None = None
) -> tuple[Any | None, int]:
    """The one scoring loop: sums a stream of confusion matrices into int64 host totals.

    Every evaluation in jaxseg ends here: the training loop's (one sharded, jitted eval step per
    batch, `jaxseg.train.evaluate`) and the per-image one (`jaxseg.scoring`: a `Segmenter` with
    its canvas, test-time protocol and CRF, as release evaluation and `--mode=eval` run it).
    Each item is read back one item late, so an accelerator computes item `i + 1` while the
    host adds item `i`.

    Args:
      counts: confusion matrices, or pytrees of them (e.g. `{"plain": cm, "crf": cm}`), as
        device or host arrays; consumed lazily.
      read: turns an item into host arrays where `np.asarray` would not (e.g.
        `jaxseg.train.parallel.to_host` for global arrays of a multi-process run).

    Returns:
      (the int64 sum, the same pytree structure; None if `counts` was empty), number of items.
    """
    total = None
    pending: collections.deque = collections.deque()
    count = 0

    def add(total: Any, item: Any) -> Any:
        item = read(item) if read is not None else item
        item = jax.tree_util.tree_map(lambda cm: np.asarray(cm).astype(np.int64), item)
        return item if total is None else jax.tree_util.tree_map(accumulate, total, item)

    for item in counts:
        pending.append(item)
        count += 1
        if len(pending) > 1:
            total = add(total, pending.popleft())
    while pending:
        total = add(total, pending.popleft())
    return total, count


def pixel_accuracy(cm: ArrayLike, *, out_of_range: bool = False) -> float:
    """Fraction of correctly classified valid pixels.

    Args:
      cm: `[C, C]` confusion matrix (rows truth, columns prediction); `[C + 1, C + 1]` from
        `confusion_matrix(..., out_of_range=True)` with `out_of_range`.
      out_of_range: `cm` has the extra row and column.

    Returns:
      sum_i n_ii / sum_i t_i (NaN if no pixel was counted). Pixels with an out-of-range label are
      excluded; valid pixels with an out-of-range prediction count as wrong.
    """
    n, t, _ = _parts(cm, out_of_range)
    return _ratio(np.trace(n), t.sum())


def mean_pixel_accuracy(cm: ArrayLike, *, out_of_range: bool = False) -> float:
    """Mean per-class accuracy (recall) over classes present in the ground truth.

    Args:
      cm: `[C, C]` confusion matrix (rows truth, columns prediction); `[C + 1, C + 1]` from
        `confusion_matrix(..., out_of_range=True)` with `out_of_range`.
      out_of_range: `cm` has the extra row and column.

    Returns:
      mean over classes with t_i > 0 of n_ii / t_i (NaN if there are none).
    """
    return _nanmean(_class_accuracy(cm, out_of_range))


def mean_iou(cm: ArrayLike, *, out_of_range: bool = False) -> tuple[float, np.ndarray]:
    """Mean intersection-over-union.

    Args:
      cm: `[C, C]` confusion matrix (rows truth, columns prediction); `[C + 1, C + 1]` from
        `confusion_matrix(..., out_of_range=True)` with `out_of_range`.
      out_of_range: `cm` has the extra row and column.

    Returns:
      `(miou, iou)`: `iou` is a `[C]` float64 array, NaN for classes absent from both labels
      and predictions; `miou` is the mean of the non-NaN entries (NaN if there are none).
    """
    iou = _class_iou(cm, out_of_range)
    return _nanmean(iou), iou


def frequency_weighted_iou(cm: ArrayLike, *, out_of_range: bool = False) -> float:
    """IoU averaged with weights proportional to each class's ground-truth pixel count.

    Args:
      cm: `[C, C]` confusion matrix (rows truth, columns prediction); `[C + 1, C + 1]` from
        `confusion_matrix(..., out_of_range=True)` with `out_of_range`.
      out_of_range: `cm` has the extra row and column.

    Returns:
      (sum_k t_k)^-1 sum_i t_i IoU_i over classes with t_i > 0 (NaN if no pixel was counted).
    """
    _, t, _ = _parts(cm, out_of_range)
    iou = _class_iou(cm, out_of_range)
    labelled = t > 0  # labelled classes have union >= t_i > 0, so their IoU is a number
    return _ratio(np.sum(t[labelled] * iou[labelled]), t.sum())


def summarize(
    cm: ArrayLike, class_names: Sequence[str] | None = None, *, out_of_range: bool = False
) -> dict[str, Any]:
    """All scores of a confusion matrix as plain Python values (for logs and JSON).

    Args:
      cm: `[C, C]` confusion matrix; `[C + 1, C + 1]` with `out_of_range` (as evaluation
        accumulates it: `confusion_matrix(..., out_of_range=True)`, `accumulate`).
      class_names: C names; defaults to "0", "1", ...
      out_of_range: `cm` has the extra row and column.

    Returns:
      dict with `pixel_accuracy`, `mean_pixel_accuracy`, `miou`, `fw_iou` (floats in [0, 1]);
      `iou` and `accuracy` ({name: float}, NaN where undefined); `absent_classes` (names of
      classes in neither labels nor predictions, excluded from the means);
      `out_of_range_pixels` (pixels whose label is outside [0, C) and not ignored: nonzero means
      the data or `num_classes` is wrong); `out_of_range_predictions` (valid pixels predicted
      outside [0, C)); `num_pixels` (valid pixels scored). Without `out_of_range` the two
      out-of-range counts are 0: a `[C, C]` matrix holds none.
    """
    full = _check_cm(cm, out_of_range)
    if not out_of_range:  # the same scores, from the matrix with empty extra row and column
        full = np.pad(full, ((0, 1), (0, 1)))
    num_classes = full.shape[0] - 1
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    class_names = [str(name) for name in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"class_names has {len(class_names)} names but cm has {num_classes} classes"
        )
    miou, iou = mean_iou(full, out_of_range=True)
    accuracy = _class_accuracy(full, True)
    return {
        "pixel_accuracy": pixel_accuracy(full, out_of_range=True),
        "mean_pixel_accuracy": _nanmean(accuracy),
        "miou": miou,
        "fw_iou": frequency_weighted_iou(full, out_of_range=True),
        "iou": {name: float(v) for name, v in zip(class_names, iou, strict=True)},
        "accuracy": {name: float(v) for name, v in zip(class_names, accuracy, strict=True)},
        "absent_classes": [name for name, v in zip(class_names, iou, strict=True) if np.isnan(v)],
        "out_of_range_pixels": int(full[num_classes, :].sum()),
        "out_of_range_predictions": int(full[:num_classes, num_classes].sum()),
        "num_pixels": int(full[:num_classes, :].sum()),
    }


def format_table(summary: dict[str, Any]) -> str:
    """A printable per-class IoU / accuracy table (percent) with the headline scores below.

    Args:
      summary: the dict returned by `summarize`.

    Returns:
      Multi-line string: one aligned row per class ("-" and a note where a score is undefined),
      then pixel counts (with a warning for out-of-range labels) and the four headline scores.
    """
    names = list(summary["iou"])
    absent = set(summary["absent_classes"])
    width = max([len("class"), *(len(name) for name in names)])

    def pct(value: float) -> str:
        return "-" if math.isnan(value) else f"{100.0 * value:.2f}"

    lines = [f"{'class':<{width}}  {'IoU %':>7}  {'acc %':>7}"]
    for name in names:
        iou, acc = summary["iou"][name], summary["accuracy"][name]
        note = ""
        if name in absent:
            note = "  absent (excluded from means)"
        elif math.isnan(acc):
            note = "  predicted, never labelled"
        lines.append(f"{name:<{width}}  {pct(iou):>7}  {pct(acc):>7}{note}".rstrip())
    lines.append("-" * len(lines[0]))
    lines.append(f"pixels scored: {summary['num_pixels']}")
    out_of_range = summary["out_of_range_pixels"]
    if out_of_range:
        lines.append(
            f"WARNING: {out_of_range} pixels have labels outside [0, {len(names)}) "
            "(not scored; check num_classes and the label encoding)"
        )
    if summary.get("out_of_range_predictions"):
        lines.append(
            f"WARNING: {summary['out_of_range_predictions']} pixels have predictions outside "
            f"[0, {len(names)}) (scored as wrong)"
        )
    headline = [
        ("pixel accuracy", summary["pixel_accuracy"]),
        ("mean pixel accuracy", summary["mean_pixel_accuracy"]),
        ("mean IoU", summary["miou"]),
        ("frequency-weighted IoU", summary["fw_iou"]),
    ]
    label_width = max(len(label) for label, _ in headline)
    lines += [f"{label:<{label_width}}  {pct(value):>7}" for label, value in headline]
    return "\n".join(lines)


def _as_int_map(x: ArrayLike, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape [B, H, W] (rank 3), got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"{name} must be an integer array (class ids), got dtype {x.dtype}")
    return x


def _mask_to_pixels(mask: ArrayLike | None, shape: tuple[int, ...]) -> jax.Array:
    """`[B]` or `[B, H, W]` validity -> `[B, H, W]` bool."""
    if mask is None:
        return jnp.ones(shape, bool)
    mask = jnp.asarray(mask)
    if not (mask.dtype == jnp.bool_ or jnp.issubdtype(mask.dtype, jnp.integer)):
        raise ValueError(f"mask must be bool or integer, got dtype {mask.dtype}")
    if mask.shape == shape[:1]:
        mask = mask[:, None, None]
    elif mask.shape != shape:
        raise ValueError(f"mask must have shape {shape[:1]} or {shape}, got {mask.shape}")
    return jnp.broadcast_to(mask != 0, shape)


def _check_cm(cm: ArrayLike, out_of_range: bool) -> np.ndarray:
    cm = np.asarray(cm)
    smallest = 2 if out_of_range else 1
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < smallest:
        want = "a [C + 1, C + 1] matrix (out_of_range=True)" if out_of_range else "a [C, C] matrix"
        raise ValueError(f"cm must be {want}, got shape {cm.shape}")
    return cm.astype(np.int64) if np.issubdtype(cm.dtype, np.integer) else cm


def _parts(cm: ArrayLike, out_of_range: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (n [C, C], t [C] ground-truth totals, p [C] prediction totals), float64."""
    cm = _check_cm(cm, out_of_range).astype(np.float64)
    num_classes = cm.shape[0] - 1 if out_of_range else cm.shape[0]
    n = cm[:num_classes, :num_classes]
    t = cm[:num_classes, :].sum(axis=1)  # includes the out-of-range prediction column: misses
    p = n.sum(axis=0)  # excludes the out-of-range label row: those pixels have no class
    return n, t, p


def _class_accuracy(cm: ArrayLike, out_of_range: bool) -> np.ndarray:
    n, t, _ = _parts(cm, out_of_range)
    return np.array([_ratio(n[i, i], t[i]) for i in range(len(t))], np.float64)


def _class_iou(cm: ArrayLike, out_of_range: bool) -> np.ndarray:
    n, t, p = _parts(cm, out_of_range)
    union = t + p - np.diag(n)
    return np.array([_ratio(n[i, i], union[i]) for i in range(len(t))], np.float64)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else math.nan


def _nanmean(values: np.ndarray) -> float:
    # np.nanmean warns on all-NaN input; an empty evaluation is a normal NaN result here.
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan
