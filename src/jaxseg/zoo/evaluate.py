"""Scoring a zoo model the way its paper did, and printing the published number beside it.

    seg = zoo.load("deeplab_largefov_voc12")
    results = evaluate(seg, pairs, crf=RELEASE_CRF.get(name))   # pairs: (RGB image, labels)
    print(published_vs_measured(zoo.entry(name), results))

`evaluate` runs each image through `Segmenter.logits` (the release's preprocessing and
evaluation canvas) and, with `crf`, through the dense CRF with the settings the release was
published with (`RELEASE_CRF`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from jaxseg import inference, metrics
from jaxseg.segmenter import Segmenter
from jaxseg.zoo.registry import ZooEntry

# Dense CRF settings published with the DeepLab releases (`jaxseg.crf.dense_crf` names).
RELEASE_CRF: dict[str, dict[str, float]] = {
    "deeplab_largefov_voc12": dict(
        w_bilateral=4.0, theta_alpha=121.0, theta_beta=5.0, w_gaussian=3.0, theta_gamma=3.0
    ),
    "deeplabv2_vgg16_voc12": dict(
        w_bilateral=4.0, theta_alpha=65.0, theta_beta=3.0, w_gaussian=2.0, theta_gamma=2.0
    ),
    "deeplabv2_resnet101_voc12": dict(
        w_bilateral=4.0, theta_alpha=67.0, theta_beta=3.0, w_gaussian=3.0, theta_gamma=1.0
    ),
}


def evaluate(
    seg: Segmenter,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    crf: Mapping[str, float] | None = None,
    ignore_label: int = 255,
) -> dict[str, Any]:
    """Scores `seg` on `(image, labels)` pairs.

    Args:
      seg: the model (its own preprocessing and evaluation canvas apply).
      pairs: uint8 RGB `[H, W, 3]` images with int `[H, W]` ground truth (`ignore_label`
        pixels not scored).
      crf: dense-CRF parameters to also score the CRF-refined labels, or None.

    Returns:
      `{"plain": metrics.summarize(...)}` and with `crf` also `{"crf": ...}`; each has its
      confusion matrix under "confusion_matrix".
    """
    side = seg.num_classes + 1
    totals = {"plain": np.zeros((side, side), np.int64)}
    if crf is not None:
        totals["crf"] = totals["plain"].copy()
    for image, labels in pairs:
        image = np.asarray(image)
        labels = np.asarray(labels)
        if labels.shape != image.shape[:2]:
            raise ValueError(f"labels {labels.shape} must match the image {image.shape[:2]}")
        logits = seg.logits(image)
        cm = metrics.confusion_matrix(
            labels[None],
            np.argmax(logits, -1)[None],
            seg.num_classes,
            ignore_label,
            out_of_range=True,
        )
        totals["plain"] += np.asarray(cm, np.int64)
        if crf is not None:
            refined = inference.crf_refine(logits, image, **crf)
            cm = metrics.confusion_matrix(
                labels[None],
                np.argmax(refined, -1)[None],
                seg.num_classes,
                ignore_label,
                out_of_range=True,
            )
            totals["crf"] += np.asarray(cm, np.int64)
    results = {}
    for key, cm in totals.items():
        results[key] = metrics.summarize(cm, seg.class_names, out_of_range=True)
        results[key]["confusion_matrix"] = cm
    return results


def published_vs_measured(entry: ZooEntry, results: Mapping[str, Any]) -> str:
    """One line per published number of `entry`, with the measured value beside it.

    A published number whose protocol mentions the CRF is compared with `results["crf"]`
    (when it was measured), the others with `results["plain"]`. mIoU and pixel accuracy are
    in percent.
    """
    keys = {"mIoU": "miou", "pixel accuracy": "pixel_accuracy"}
    lines = []
    for published in entry.published:
        which = "crf" if "CRF" in published.protocol else "plain"
        measured = results.get(which, {}).get(keys.get(published.metric, ""))
        text = "not measured" if measured is None else f"measured {100 * measured:.2f}"
        lines.append(
            f"{entry.name}: published {published.metric} {published.value} "
            f"({published.protocol}); {text}"
        )
    if not entry.published:
        lines.append(f"{entry.name}: no published number")
    return "\n".join(lines)
