"""Scoring a zoo model the way its paper did, and printing the published number beside it.

    seg = zoo.load("deeplab_largefov_voc12")
    results = evaluate(seg, pairs, crf=RELEASE_CRF.get(name))   # pairs: (RGB image, labels)
    print(published_vs_measured(zoo.entry(name), results))

`evaluate` runs each image through `Segmenter.logits` (the release's preprocessing and
evaluation canvas) or, with test-time scales/flip, DeepLab's official multi-scale protocol
(`protocol.official_probabilities`), and, with `crf`, through the dense CRF with the settings
the release was published with (`RELEASE_CRF`). It is the one scoring loop of the zoo:
`protocol.evaluate_published` and `evaluate_entry` (all published numbers of an entry, as
`--mode=eval --config.init_from=zoo:NAME` prints them) call it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxseg import inference, metrics
from jaxseg.segmenter import Segmenter
from jaxseg.zoo.registry import Published, ZooEntry

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
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    drop_first_class: bool = False,
) -> dict[str, Any]:
    """Scores `seg` on `(image, labels)` pairs.

    Args:
      seg: the model (its own preprocessing and evaluation canvas apply).
      pairs: uint8 RGB `[H, W, 3]` images with int `[H, W]` ground truth (`ignore_label`
        pixels not scored).
      crf: dense-CRF parameters to also score the CRF-refined labels, or None.
      scales, flip: test-time scales and mirroring by DeepLab's official protocol
        (`protocol.official_probabilities`); `(1.0,)` without flip is `seg.logits`.
      drop_first_class: leave output 0 out of the argmax and the scores (DeepLab's ADE20K
        "other", not a class of the dataset's labels).

    Returns:
      `{"plain": metrics.summarize(...)}` and with `crf` also `{"crf": ...}`; each has its
      confusion matrix under "confusion_matrix". `"num_images"`: how many pairs were scored.
    """
    from jaxseg.zoo import protocol

    first = 1 if drop_first_class else 0
    num_classes = seg.num_classes - first
    side = num_classes + 1
    totals = {"plain": np.zeros((side, side), np.int64)}
    if crf is not None:
        totals["crf"] = totals["plain"].copy()
    count = 0
    for image, labels in pairs:
        image = np.asarray(image)
        labels = np.asarray(labels)
        if labels.shape != image.shape[:2]:
            raise ValueError(f"labels {labels.shape} must match the image {image.shape[:2]}")
        if tuple(scales) == (1.0,) and not flip:
            scores = seg.logits(image)
        else:  # log-probabilities: the protocol's argmax, and the CRF's unaries
            probabilities = protocol.official_probabilities(seg, image, scales, flip)
            scores = np.log(np.maximum(probabilities, np.finfo(np.float32).tiny))
        outputs = {"plain": scores}
        if crf is not None:
            outputs["crf"] = inference.crf_refine(scores, image, **crf)
        for key, values in outputs.items():
            cm = metrics.confusion_matrix(
                labels[None],
                np.argmax(np.asarray(values)[..., first:], -1)[None],
                num_classes,
                ignore_label,
                out_of_range=True,
            )
            totals[key] += np.asarray(cm, np.int64)
        count += 1
    names = seg.class_names[first:]
    results: dict[str, Any] = {"num_images": count}
    for key, cm in totals.items():
        results[key] = metrics.summarize(cm, names, out_of_range=True)
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
    settings of `RELEASE_CRF` as well). A CRF number is measured only with `crf=True`.

    Args:
      name: a zoo entry with published numbers.
      pairs_fn: `() -> iterable of (uint8 [H, W, 3] RGB image, int [H, W] labels)`, called
        once per protocol.
      crf: also measure the numbers published with the dense CRF.
      checkpoint, crop_size: as `jaxseg.zoo.load`.

    Returns:
      `(published, measured value in the published unit (percent) or None)` per number.
    """
    from jaxseg import zoo

    item = zoo.entry(name)
    if crf and name not in RELEASE_CRF:
        raise ValueError(f"{name} was not published with CRF settings; drop crf=True")
    keys = {"mIoU": "miou", "pixel accuracy": "pixel_accuracy"}
    measured: dict[int, float | None] = {}
    groups: dict[tuple, list[int]] = {}
    for index, published in enumerate(item.published):
        key = (published.eval_output_stride, tuple(published.eval_scales), published.eval_flip)
        groups.setdefault(key, []).append(index)
    release = zoo.deeplab_models.RELEASES.get(name)
    drop_other = release is not None and release.labels == "ade20k"
    for (output_stride, scales, flip), indices in groups.items():
        segmenter = zoo.load(name, checkpoint, output_stride, crop_size)
        with_crf = crf and any("CRF" in item.published[i].protocol for i in indices)
        results = evaluate(
            segmenter,
            pairs_fn(),
            crf=RELEASE_CRF[name] if with_crf else None,
            ignore_label=ignore_label,
            scales=scales,
            flip=flip,
            drop_first_class=drop_other,
        )
        for i in indices:
            published = item.published[i]
            which = "crf" if "CRF" in published.protocol else "plain"
            value = results.get(which, {}).get(keys.get(published.metric, ""))
            measured[i] = None if value is None else 100.0 * float(value)
    return [(item.published[i], measured[i]) for i in range(len(item.published))]
