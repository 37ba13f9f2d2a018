"""Experiment evaluation: exact scores with test-time augmentation and the dense CRF (before and
after, like DeepLab's tables), JSON results, prediction figures and overlays."""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxseg import figures, inference, metrics, train, viz
from jaxseg.experiment.config import crf_kwargs, denormalize
from jaxseg.experiment.datasets import Batch, eval_split

# A module's apply: (variables, images [B, H, W, 3], train=False) -> logits [B, h, w, C]
ApplyFn = Callable[..., jax.Array]


def _all_processes_sum(cm: np.ndarray) -> np.ndarray:
    if jax.process_count() == 1:
        return cm
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(cm)).sum(axis=0)


def _confusion(label: np.ndarray, logits: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 `[C + 1, C + 1]` counts of one image: label `[1, Hk, Wk]` (its bucket), logits
    `[H, W, C]` (its own size, placed top-left on the bucket)."""
    prediction = np.zeros(label.shape, np.int32)
    height, width = logits.shape[:2]
    prediction[0, :height, :width] = np.argmax(logits, axis=-1)
    cm = metrics.confusion_matrix(label, prediction, num_classes, out_of_range=True)
    return np.asarray(cm, np.int64)


def uses_tta(config: ml_collections.ConfigDict) -> bool:
    """Whether evaluation needs the per-image path (scales, flips, windows or the CRF)."""
    return (
        tuple(config.eval_scales) != (1.0,)
        or bool(config.eval_flip)
        or bool(config.sliding_window)
        or bool(config.crf)
    )


def evaluate_per_image(
    state: train.TrainState,
    batches: Iterable[Batch],
    *,
    config: ml_collections.ConfigDict,
    apply_fn: ApplyFn,
    num_batches: int | None = None,
) -> dict[str, np.ndarray]:
    """Confusion matrices with test-time augmentation and/or the dense CRF.

    Each real example is cropped back to its own size (`batch["size"]`), predicted by
    `jaxseg.inference.multiscale_flip_logits` around `jaxseg.inference.predict_logits` (the
    network compiles once per size bucket) and, with `config.crf`, refined by
    `jaxseg.inference.crf_refine` against its RGB image. Predictions are scored on the batch's
    bucket canvas by `jaxseg.metrics.confusion_matrix` (labels there are ignore), so scoring
    also compiles once per bucket.

    Returns:
      `{"plain": cm}` and, with the CRF, `{"crf": cm}` as well (int64 `[C + 1, C + 1]`,
      summed over processes).
    """
    num_classes = config.num_classes
    device = jax.local_devices()[0]
    variables = jax.device_put(train.to_host(train.eval_variables(state)), device)
    network = jax.jit(functools.partial(inference.predict_logits, apply_fn))
    apply_fn = functools.partial(network, variables)
    window = (config.sliding_window, None) if config.sliding_window else None
    totals = {"plain": np.zeros((num_classes + 1,) * 2, np.int64)}
    if config.crf:
        totals["crf"] = totals["plain"].copy()
    bar = tqdm(batches, total=num_batches, unit="batch", disable=jax.process_index() != 0)
    for batch in bar:
        for i in np.flatnonzero(batch["mask"]):
            height, width = batch["size"][i]
            image = batch["image"][i, :height, :width]
            label = batch["label"][i : i + 1]  # [1, Hk, Wk]: the bucket, padding ignored
            logits = inference.multiscale_flip_logits(
                apply_fn,
                image,
                tuple(config.eval_scales),
                bool(config.eval_flip),
                sliding_window=window,
                align_corners=config.align_corners,
            )
            totals["plain"] += _confusion(label, logits, num_classes)
            if config.crf:
                rgb = denormalize(config, image)
                refined = inference.crf_refine(logits, rgb, **crf_kwargs(config))
                totals["crf"] += _confusion(label, refined, num_classes)
    bar.close()
    return {k: _all_processes_sum(v) for k, v in totals.items()}


def _describe_eval(config: ml_collections.ConfigDict) -> str:
    parts = [f"scales {tuple(config.eval_scales)}"]
    if config.eval_flip:
        parts.append("+ flips")
    if config.sliding_window:
        parts.append(f"sliding window {config.sliding_window}")
    return ", ".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def run_evaluation(
    state: train.TrainState,
    *,
    config: ml_collections.ConfigDict,
    workdir: str,
    step: int,
    eval_stream_fn: Callable[[], Iterable[Batch]],
    class_names: Sequence[str],
    apply_fn: ApplyFn,
    mesh: jax.sharding.Mesh,
    palette: np.ndarray | None = None,
) -> dict[str, Any]:
    """Scores `state` on the eval split, prints the tables, writes `eval_step_<N>.json` (scores
    and confusion matrix) and its pictures, `predictions/step_<N>/{confusion_matrix,
    class_iou}.png` (IoU bars in `palette`'s colours)."""
    started = time.perf_counter()
    stream = eval_stream_fn()
    num_batches = len(stream) if hasattr(stream, "__len__") else None
    say = print if jax.process_index() == 0 else (lambda *a, **k: None)
    results: dict[str, Any] = {"step": step, "split": eval_split(config)}
    if not uses_tta(config):
        p_eval = train.jit_eval_step(
            functools.partial(
                train.eval_step,
                num_classes=config.num_classes,
                apply_fn=apply_fn,
                align_corners=config.align_corners,
            ),
            mesh,
        )
        summary = train.evaluate(
            state, stream, eval_step=p_eval, mesh=mesh, class_names=class_names
        )
        say(f"\nEvaluation of step {step} on {results['split']}:\n{metrics.format_table(summary)}")
        results["metrics"] = summary
    else:
        totals = evaluate_per_image(
            state, stream, config=config, apply_fn=apply_fn, num_batches=num_batches
        )
        summary = metrics.summarize(totals["plain"], class_names, out_of_range=True)
        summary["confusion_matrix"] = totals["plain"]
        title = f"step {step} on {results['split']}, {_describe_eval(config)}"
        say(f"\nEvaluation of {title}:\n{metrics.format_table(summary)}")
        results["metrics"] = summary
        results["eval_scales"] = list(config.eval_scales)
        results["eval_flip"] = bool(config.eval_flip)
        if "crf" in totals:
            after = metrics.summarize(totals["crf"], class_names, out_of_range=True)
            after["confusion_matrix"] = totals["crf"]
            say(f"\nAfter the dense CRF ({crf_kwargs(config)}):\n{metrics.format_table(after)}")
            say(
                f"\nmIoU before CRF {100 * summary['miou']:.2f}%, after CRF "
                f"{100 * after['miou']:.2f}% ({100 * (after['miou'] - summary['miou']):+.2f})"
            )
            results["metrics_crf"] = after
            results["crf_params"] = crf_kwargs(config)
    results["seconds"] = time.perf_counter() - started
    if jax.process_index() == 0:
        path = os.path.join(workdir, f"eval_step_{step}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(_jsonable(results), f, indent=2)
        os.replace(path + ".tmp", path)
        folder = os.path.join(workdir, "predictions", f"step_{int(step):08d}")
        os.makedirs(folder, exist_ok=True)
        for name, picture in figures.score_figures(summary, palette).items():
            viz.save_image(os.path.join(folder, f"{name}.png"), picture)
        say(f"Scores written to {path}, pictures to {folder}")
    return results


def write_overlays(
    state: train.TrainState,
    *,
    config: ml_collections.ConfigDict,
    workdir: str,
    eval_stream_fn: Callable[[], Iterable[Batch]],
    palette: np.ndarray,
    apply_fn: ApplyFn,
    mesh: jax.sharding.Mesh,
    count: int,
    class_names: Sequence[str] = (),
) -> str:
    """Colour overlays of the final predictions on the first `count` eval images, written as
    `overlays/<image name>.jpg` (the batch index where the dataset has no file names); a class
    named "background" keeps the photo's colours, the other classes are tinted."""
    lowered = [str(n).lower() for n in class_names]
    background = lowered.index("background") if "background" in lowered else None
    folder = os.path.join(workdir, "overlays")
    if jax.process_index() == 0:
        os.makedirs(folder, exist_ok=True)
    predict = train.jit_eval_step(
        functools.partial(
            train.predict_step, apply_fn=apply_fn, align_corners=config.align_corners
        ),
        mesh,
    )
    batches = iter(eval_stream_fn())
    batch = next(batches)
    for _ in batches:  # read to the end: tf.data warns about a half-read cached dataset
        pass
    predictions = train.to_host(predict(state, train.shard_batch(batch, mesh)))
    if jax.process_index() != 0:
        return folder
    shown = np.flatnonzero(batch["mask"])[:count]
    for i, name in zip(shown, figures.picture_names(batch.get("name"), shown), strict=True):
        height, width = batch["size"][i]
        rgb = np.clip(np.round(denormalize(config, batch["image"][i])), 0, 255).astype(np.uint8)
        overlay = figures.object_overlay(
            rgb[:height, :width], predictions[i, :height, :width], palette, background=background
        )
        viz.save_image(os.path.join(folder, f"{name}.jpg"), overlay, quality=90)
    return folder


def make_render(
    config: ml_collections.ConfigDict,
    palette: np.ndarray,
    class_names: Sequence[str] | None = None,
) -> Callable:
    """Training-log figures (image | truth | prediction, titled, with a legend when the class
    names are given) with the normalisation undone; the loop passes each image cropped to its
    own size."""
    # Images arrive in 0..255 already: identity mean/std instead of a per-image stretch.
    draw = train.make_render(
        palette, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), class_names=class_names
    )

    def render(image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        rgb = np.clip(np.round(denormalize(config, image)), 0, 255)
        return draw(rgb, label, prediction)

    return render
