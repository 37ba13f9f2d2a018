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
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxseg import inference, metrics, train, viz
from jaxseg.data import transforms
from jaxseg.experiment.config import crf_kwargs, denormalize
from jaxseg.experiment.datasets import Batch, eval_split

# (variables, images [B, H, W, 3]) -> logits [B, h, w, C]
PredictFn = Callable[[dict, jax.Array], jax.Array]


def _confusion(label: np.ndarray, prediction: np.ndarray, num_classes: int) -> np.ndarray:
    """Host version of `metrics.confusion_matrix` for one image (any size, no compiling)."""
    valid = label != transforms.IGNORE_LABEL
    truth = np.minimum(label[valid].astype(np.int64), num_classes)
    guess = np.minimum(prediction[valid].astype(np.int64), num_classes)
    size = num_classes + 1
    return np.bincount(truth * size + guess, minlength=size * size).reshape(size, size)


def _image_extent(image: np.ndarray, label: np.ndarray) -> tuple[int, int]:
    """(height, width) of an eval example before bucket padding.

    The pipeline pads bottom/right with 0 (the mean pixel after normalising, which a real
    pixel of 8-bit data never hits exactly) and labels with 255; the union of both extents
    therefore never drops a labelled pixel.
    """
    used = np.any(image != 0, axis=-1) | (label != transforms.IGNORE_LABEL)
    rows, cols = np.flatnonzero(used.any(axis=1)), np.flatnonzero(used.any(axis=0))
    if len(rows) == 0:
        return image.shape[0], image.shape[1]
    return int(rows[-1]) + 1, int(cols[-1]) + 1


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


def evaluate_per_image(
    state: train.TrainState,
    batches: Iterable[Batch],
    *,
    config: ml_collections.ConfigDict,
    predict_fn: PredictFn,
    num_batches: int | None = None,
) -> dict[str, np.ndarray]:
    """Confusion matrices with test-time augmentation and/or the dense CRF.

    Each real example is cropped back to its own size, predicted by
    `jaxseg.inference.multiscale_flip_logits` (the network compiles once per size bucket) and,
    with `config.crf`, refined by `jaxseg.inference.crf_refine` against its RGB image.

    Returns:
      `{"plain": cm}` and, with the CRF, `{"crf": cm}` as well (int64 `[C + 1, C + 1]`,
      summed over processes).
    """
    num_classes = config.num_classes
    device = jax.local_devices()[0]
    variables = jax.device_put(
        train.to_host({"params": state.params, "batch_stats": state.batch_stats}), device
    )
    network = jax.jit(lambda v, x: predict_fn(v, x).astype(jnp.float32))
    apply_fn = functools.partial(network, variables)
    window = (config.sliding_window, None) if config.sliding_window else None
    totals = {"plain": np.zeros((num_classes + 1,) * 2, np.int64)}
    if config.crf:
        totals["crf"] = totals["plain"].copy()
    bar = tqdm(batches, total=num_batches, unit="batch", disable=jax.process_index() != 0)
    for batch in bar:
        for i in np.flatnonzero(batch["mask"]):
            height, width = _image_extent(batch["image"][i], batch["label"][i])
            image = batch["image"][i, :height, :width]
            label = batch["label"][i, :height, :width]
            logits = inference.multiscale_flip_logits(
                apply_fn,
                image,
                tuple(config.eval_scales),
                bool(config.eval_flip),
                sliding_window=window,
                align_corners=config.align_corners,
            )
            totals["plain"] += _confusion(label, np.argmax(logits, -1), num_classes)
            if config.crf:
                rgb = denormalize(config, image)
                refined = inference.crf_refine(logits, rgb, **crf_kwargs(config))
                totals["crf"] += _confusion(label, np.argmax(refined, -1), num_classes)
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
        return {k: _jsonable(v) for k, v in value.items() if k != "confusion_matrix"}
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
    predict_fn: PredictFn | None,
    mesh: jax.sharding.Mesh,
) -> dict[str, Any]:
    """Scores `state` on the eval split, prints the tables, writes `eval_step_<N>.json`."""
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
                predict_fn=predict_fn,
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
        predict = predict_fn or (lambda v, x: state.apply_fn(v, x, train=False))
        totals = evaluate_per_image(
            state, stream, config=config, predict_fn=predict, num_batches=num_batches
        )
        summary = metrics.summarize(totals["plain"], class_names)
        title = f"step {step} on {results['split']}, {_describe_eval(config)}"
        say(f"\nEvaluation of {title}:\n{metrics.format_table(summary)}")
        results["metrics"] = summary
        results["eval_scales"] = list(config.eval_scales)
        results["eval_flip"] = bool(config.eval_flip)
        if "crf" in totals:
            after = metrics.summarize(totals["crf"], class_names)
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
        say(f"Scores written to {path}")
    return results


def write_overlays(
    state: train.TrainState,
    *,
    config: ml_collections.ConfigDict,
    workdir: str,
    eval_stream_fn: Callable[[], Iterable[Batch]],
    palette: np.ndarray,
    predict_fn: PredictFn | None,
    mesh: jax.sharding.Mesh,
    count: int,
) -> str:
    """Colour overlays of the final predictions on the first `count` eval images."""
    folder = os.path.join(workdir, "overlays")
    if jax.process_index() == 0:
        os.makedirs(folder, exist_ok=True)
    predict = train.jit_eval_step(
        functools.partial(
            train.predict_step, predict_fn=predict_fn, align_corners=config.align_corners
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
    for i in np.flatnonzero(batch["mask"])[:count]:
        height, width = _image_extent(batch["image"][i], batch["label"][i])
        rgb = np.clip(np.round(denormalize(config, batch["image"][i])), 0, 255).astype(np.uint8)
        overlay = viz.overlay(rgb[:height, :width], predictions[i, :height, :width], palette)
        viz.save_image(os.path.join(folder, f"{i}.jpg"), overlay, quality=90)
    return folder


def make_render(config: ml_collections.ConfigDict, palette: np.ndarray) -> Callable:
    """Training-log figures (image | truth | prediction) with the normalisation undone."""
    # Images arrive in 0..255 already: identity mean/std instead of a per-image stretch.
    draw = train.make_render(palette, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def render(image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        height, width = _image_extent(image, label)  # without the eval bucket's padding
        rgb = np.clip(np.round(denormalize(config, image[:height, :width])), 0, 255)
        return draw(rgb, label[:height, :width], prediction[:height, :width])

    return render
