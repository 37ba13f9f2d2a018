"""Scoring a zoo model the way its paper did, and printing the published number beside it.

    seg = zoo.load("deeplab_largefov_voc12")
    results = evaluate(seg, pairs, crf=zoo.entry(name).crf)   # pairs: (RGB image, labels)
    print(published_vs_measured(zoo.entry(name), results))

`evaluate` (`jaxseg.scoring.evaluate`, the one scoring loop) runs each image through
`Segmenter.logits`: the release's preprocessing, evaluation canvas and test-time protocol (a
TF DeepLab release loaded with `scales`/`flip` applies the official multi-scale protocol),
and, with `crf`, scores the dense-CRF refinement too, with the settings the release was
published with (`ZooEntry.crf`). `evaluate_published` and `evaluate_entry` (all published
numbers of an entry, as `jaxseg-zoo evaluate` prints them) call it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from jaxseg.scoring import evaluate
from jaxseg.zoo.deeplab_models import RELEASES
from jaxseg.zoo.loading import load
from jaxseg.zoo.registry import Published, ZooEntry, entry


def label_offset(name: str) -> int:
    """The output of release `name` that meets the dataset's label 0: 1 for DeepLab's ADE20K
    release (its output 0 is "other", which jaxseg's ADE20K labels mark as ignored and shift
    away), else 0. See `jaxseg.scoring.confusion_matrices`."""
    release = RELEASES.get(name)
    return int(release is not None and release.labels == "ade20k")


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


def evaluate_entry(
    name: str,
    pairs_fn: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    *,
    crf: bool = False,
    checkpoint=None,
    crop_size=None,
    ignore_label: int = 255,
) -> list[tuple[Published, float | None]]:
    """Every published number of zoo entry `name`, each measured by its own protocol.

    The published numbers are grouped by protocol (evaluation output stride, scales, flip);
    each group is one pass of `evaluate` over `pairs_fn()` (with `crf`, the release's CRF
    settings, `ZooEntry.crf`, as well). A CRF number is measured only with `crf=True`.

    Args:
      name: a zoo entry with published numbers.
      pairs_fn: `() -> iterable of (uint8 [H, W, 3] RGB image, int [H, W] labels)`, called
        once per protocol.
      crf: also measure the numbers published with the dense CRF.
      checkpoint, crop_size: as `jaxseg.zoo.load`.

    Returns:
      `(published, measured value in the published unit (percent) or None)` per number.
    """
    item = entry(name)
    if crf and item.crf is None:
        raise ValueError(f"{name} was not published with CRF settings; drop crf=True")
    keys = {"mIoU": "miou", "pixel accuracy": "pixel_accuracy"}
    measured: dict[int, float | None] = {}
    groups: dict[tuple, list[int]] = {}
    for index, published in enumerate(item.published):
        key = (published.eval_output_stride, tuple(published.eval_scales), published.eval_flip)
        groups.setdefault(key, []).append(index)
    for (output_stride, scales, flip), indices in groups.items():
        segmenter = load(name, checkpoint, output_stride, crop_size, scales=scales, flip=flip)
        with_crf = crf and any("CRF" in item.published[i].protocol for i in indices)
        results = evaluate(
            segmenter,
            pairs_fn(),
            crf=item.crf if with_crf else None,
            ignore_label=ignore_label,
            label_offset=label_offset(name),
        )
        for i in indices:
            published = item.published[i]
            which = "crf" if "CRF" in published.protocol else "plain"
            value = results.get(which, {}).get(keys.get(published.metric, ""))
            measured[i] = None if value is None else 100.0 * float(value)
    return [(item.published[i], measured[i]) for i in range(len(item.published))]


def evaluate_published(
    name: str,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    which: int = 0,
    checkpoint=None,
    crop_size=None,
    ignore_label: int = 255,
) -> tuple[dict[str, Any], Published]:
    """Measures a zoo model the way one of its published numbers was measured.

    Args:
      name: a zoo entry with published numbers.
      pairs: (uint8 `[H, W, 3]` image, int `[H, W]` label map) in the entry's label set as
        jaxseg's datasets deliver it (ADE20K: 0..149, "other" = `ignore_label`; they are
        scored in the release's 151 outputs as DeepLab's eval.py does, see `label_offset`).
      which: index into the entry's `published` (its protocol: output stride, scales, flip).
      checkpoint, crop_size: as `jaxseg.zoo.load`.
      ignore_label: label value not scored.

    Returns:
      (`jaxseg.metrics.summarize` of the confusion matrix, the `Published` it compares with).
    """
    published = entry(name).published[which]
    segmenter = load(
        name,
        checkpoint,
        published.eval_output_stride,
        crop_size,
        scales=published.eval_scales,
        flip=published.eval_flip,
    )
    results = evaluate(
        segmenter,
        pairs,
        ignore_label=ignore_label,
        label_offset=label_offset(name),
    )
    if not results["num_images"]:
        raise ValueError(f"evaluate_published({name!r}): no (image, label) pairs given")
    summary = results["plain"]
    del summary["confusion_matrix"]
    return summary, published
