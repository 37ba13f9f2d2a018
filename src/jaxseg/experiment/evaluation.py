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

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxseg import figures, metrics, scoring, train, viz
from jaxseg.experiment.config import crf_kwargs, denormalize, eval_split, normalize
from jaxseg.experiment.datasets import Batch
from jaxseg.segmenter import Segmenter

# A module's apply: (variables, images [B, H, W, 3], train=False) -> logits [B, h, w, C]
ApplyFn = Callable[..., jax.Array]


def _all_processes_sum(cm: np.ndarray) -> np.ndarray:
    if jax.process_count() == 1:
        return cm
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(cm)).sum(axis=0)


def uses_tta(config: ml_collections.ConfigDict) -> bool:
    """Whether evaluation needs the per-image path (scales, flips, windows or the CRF)."""
    return (
        tuple(config.eval_scales) != (1.0,)
        or bool(config.eval_flip)
        or bool(config.sliding_window)
        or bool(config.crf)
    )


def run_segmenter(
    model: nn.Module, variables: Any, config: ml_collections.ConfigDict, class_names
) -> Segmenter:
    """The `Segmenter` of a run's model as its config evaluates it: the config's normalisation,
    images padded with the pixel that normalises to 0, its resize convention and test-time
    scales, flips and sliding window."""
    window = (config.sliding_window, None) if config.sliding_window else None
    return Segmenter(
        model,
        variables,
        normalize=functools.partial(normalize, config),
        class_names=class_names,
        pad_pixel=tuple(denormalize(config, np.zeros(3, np.float32))),
        align_corners=config.align_corners,
        scales=tuple(config.eval_scales),
        flip=bool(config.eval_flip),
        sliding_window=window,
    )


def evaluate_per_image(
    state: train.TrainState,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    config: ml_collections.ConfigDict,
    model: nn.Module,
) -> dict[str, np.ndarray]:
    """Confusion matrices with test-time augmentation and/or the dense CRF.

    The run's `Segmenter` (`run_segmenter`) scores `pairs` (RGB images in 0..255 at their own
    size, with their labels) through `jaxseg.scoring`, the loop that also scores released
    models, so an evaluation measures what `jaxseg-predict` computes; with `config.crf` the
    CRF-refined labels are counted as well.

    Returns:
      `{"plain": cm}` and, with the CRF, `{"crf": cm}` as well (int64 `[C + 1, C + 1]`,
      summed over processes).
    """
    device = jax.local_devices()[0]
    variables = jax.device_put(train.to_host(train.eval_variables(state)), device)
    names = [str(i) for i in range(config.num_classes)]
    seg = run_segmenter(model, variables, config, names)
    bar = tqdm(pairs, unit="image", disable=jax.process_index() != 0)
    counts, _ = scoring.confusion_matrices(seg, bar, crf=crf_kwargs(config) if config.crf else None)
    bar.close()
    return {k: _all_processes_sum(v) for k, v in counts.items()}


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
    eval_pairs_fn: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    class_names: Sequence[str],
    model: nn.Module,
    mesh: jax.sharding.Mesh,
    palette: np.ndarray | None = None,
) -> dict[str, Any]:
    """Scores `state` on the eval split, prints the tables, writes `eval_step_<N>.json` (scores
    and confusion matrix) and its pictures, `predictions/step_<N>/{confusion_matrix,
    class_iou}.png` (IoU bars in `palette`'s colours).

    Plain evaluation runs the jitted eval step on sharded batches of `eval_stream_fn()`
    (`jaxseg.train.evaluate`, the training loop's); with test-time scales, flips, windows or
    the CRF each image of `eval_pairs_fn()` goes through `evaluate_per_image`. Both predict
    with `jaxseg.inference.predict_logits` and count with `jaxseg.metrics.confusion_matrix`.
    """
    started = time.perf_counter()
    say = print if jax.process_index() == 0 else (lambda *a, **k: None)
    results: dict[str, Any] = {"step": step, "split": eval_split(config)}
    if not uses_tta(config):
        p_eval = train.jit_eval_step(
            functools.partial(
                train.eval_step,
                num_classes=config.num_classes,
                apply_fn=model.apply,
                align_corners=config.align_corners,
            ),
            mesh,
        )
        summary = train.evaluate(
            state, eval_stream_fn(), eval_step=p_eval, mesh=mesh, class_names=class_names
        )
        say(f"\nEvaluation of step {step} on {results['split']}:\n{metrics.format_table(summary)}")
        results["metrics"] = summary
    else:
        totals = evaluate_per_image(state, eval_pairs_fn(), config=config, model=model)
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
