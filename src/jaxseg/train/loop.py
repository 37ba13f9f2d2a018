"""The training loop (`train_and_evaluate`) and exact evaluation (`evaluate`).

Experiments build the model, optimizer, state, steps and data streams, then hand them here; the
loop owns only the run's bookkeeping: resume, shard, step, log, evaluate, checkpoint, stop.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from jaxseg import figures, metrics
from jaxseg.train import steps as steps_lib
from jaxseg.train.checkpoint import Checkpoints, model_signature
from jaxseg.train.config import validate_config
from jaxseg.train.errors import NonFiniteLossError, StopRequested, TrainingError
from jaxseg.train.logs import (
    MetricLogger,
    Progress,
    Render,
    eval_scalars,
    make_render,
    write_config,
)
from jaxseg.train.optim import train_schedule
from jaxseg.train.parallel import (
    jit_eval_step,
    jit_train_step,
    make_mesh,
    replicated,
    shard_batch,
    shard_state,
    to_host,
)
from jaxseg.train.signals import StopSignal
from jaxseg.train.state import TrainState, num_params

Batch = Mapping[str, Any]


def evaluate(
    state: TrainState,
    batches: Iterable[Batch],
    *,
    eval_step: Callable[[TrainState, Batch], jax.Array],
    mesh: Mesh,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Exact scores over a whole eval stream.

    Args:
      state: the train state on `mesh`.
      batches: process-local batches (`image [b, H, W, 3]`, `label [b, H, W]`, `mask [b]`);
        in multi-process runs every process must yield the same number of batches (pad with
        masked examples), because each batch is one global computation.
      eval_step: the *jitted* eval step (`jit_eval_step(partial(eval_step, num_classes=...),
        mesh)`) returning the batch's global confusion matrix.
      mesh: the device mesh.
      class_names: `C` names for the per-class scores.

    Returns:
      `jaxseg.metrics.summarize` of the int64 sum of all batches' confusion matrices, plus
      `confusion_matrix` (int64 `[C + 1, C + 1]`) and `num_batches`.
    """
    counts = (eval_step(state, shard_batch(batch, mesh)) for batch in batches)
    total, num_batches = metrics.sum_counts(counts, read=to_host)
    if total is None:
        raise TrainingError("the eval stream yielded no batches")
    summary = metrics.summarize(total, class_names, out_of_range=True)
    summary["confusion_matrix"] = total
    summary["num_batches"] = num_batches
    return summary


def _stop_agreed(stop: StopSignal, step: int, sync_every: int) -> int | None:
    """The signal number if this process (or, multi-process, any process) was asked to stop.

    Processes must agree, since saving is collective; comparing flags is a host round trip, so
    multi-process runs do it every `sync_every` steps (the logging interval).
    """
    if jax.process_count() == 1:
        return stop.requested
    if step % sync_every:
        return None
    flags = multihost_utils.process_allgather(np.asarray([stop.requested or 0], np.int32))
    requested = int(np.max(flags))
    return requested or None


class _TrainMetrics:
    """Device metrics of recent steps, read back (and checked for NaN/Inf) only when logged."""

    def __init__(self) -> None:
        self._pending: list[tuple[int, dict[str, jax.Array]]] = []

    def add(self, step: int, step_metrics: dict[str, jax.Array]) -> None:
        self._pending.append((step, step_metrics))

    def flush(self) -> tuple[dict[str, float], int | None]:
        """-> (averages over the pending steps, first step with a non-finite loss or None)."""
        if not self._pending:
            return {}, None
        steps = [s for s, _ in self._pending]
        values = to_host([m for _, m in self._pending])
        self._pending.clear()
        for s, m in zip(steps, values, strict=True):
            if not (np.isfinite(m["loss"]) and np.isfinite(m.get("grad_norm", 0.0))):
                return {k: float(v) for k, v in m.items()}, s
        means = {k: float(np.mean([m[k] for m in values])) for k in values[0]}
        if "lr" in values[-1]:
            means["lr"] = float(values[-1]["lr"])  # the rate in effect now, not an average
        return means, None


def _eval_images(
    state: TrainState,
    batch: Batch,
    predict: Callable,
    mesh: Mesh,
    render: Render,
    count: int,
) -> dict[str, np.ndarray]:
    """Figures for the first `count` real examples of `batch` (process 0's rows)."""
    # Predictions come back whole (replicated); process 0's rows are the first global rows.
    predictions = to_host(predict(state, shard_batch(batch, mesh)))
    image, label = _local_rows(batch["image"]), _local_rows(batch["label"])
    mask = _local_rows(batch["mask"]) if "mask" in batch else np.ones(len(image), bool)
    # Eval batches carry each image's size: figures leave out the bucket padding.
    sizes = _local_rows(batch["size"]) if "size" in batch else [label.shape[1:]] * len(label)
    # Named after the source images where the dataset has names, else by batch index.
    shown = np.flatnonzero(mask)[:count]
    names = _local_rows(batch["name"]) if "name" in batch else None
    pictures = {}
    for i, name in zip(shown, figures.picture_names(names, shown), strict=True):
        h, w = sizes[i]
        pictures[name] = render(image[i, :h, :w], label[i, :h, :w], predictions[i, :h, :w])
    return pictures


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    state: TrainState,
    train_step: Callable,
    train_stream_fn: Callable[[int], Iterable[Batch]],
    eval_step: Callable | None = None,
    eval_stream_fn: Callable[[], Iterable[Batch]] | None = None,
    class_names: Sequence[str] | None = None,
    predict_step: Callable | None = None,
    render: Render | None = None,
    mesh: Mesh | None = None,
    palette: np.ndarray | None = None,
) -> TrainState:
    """Trains `state` for `config.num_train_steps`, resuming from `<workdir>/checkpoints`.

    Every process of a multi-host run calls this with the same arguments.

    Args:
      config: keys of `default_config()` (batch_size, num_train_steps, log_every, eval_every,
        checkpoint_every, keep_best, num_eval_images, seed, tensorboard, optimizer).
      workdir: run folder: checkpoints/, tensorboard/, metrics.jsonl, config.json,
        predictions/.
      state: a freshly initialised state (`create_train_state`); replaced by the latest
        checkpoint when there is one. Its model must match the checkpoint's.
      train_step: `(state, batch, rng) -> (state, metrics)`, not jitted (a partial of
        `jaxseg.train.train_step`); jitted here with the mesh's shardings.
      train_stream_fn: `start_step -> iterator` of process-local batches for steps
        `start_step, start_step + 1, ...` (the data position after a resume).
      eval_step: `(state, batch) -> confusion matrix`, not jitted (a partial of
        `jaxseg.train.eval_step`); required with `eval_stream_fn`.
      eval_stream_fn: `() -> iterable` of process-local eval batches; None: no evaluation.
      class_names: class names for per-class scores.
      predict_step: `(state, batch) -> int [B, H, W]` for prediction images (default
        `jaxseg.train.predict_step`).
      render: `(image, label, prediction) -> uint8 [H, W', 3]` figure (default
        `make_render()`).
      mesh: device mesh (default: all devices, `make_mesh()`).
      palette: class colours `[C, 3]` of the per-class IoU chart (default: VOC's colour map).

    Every evaluation also writes a row-normalised confusion matrix and a per-class IoU bar
    chart (`predictions/step_<N>/{confusion_matrix,class_iou}.png` and TensorBoard).

    Returns:
      The final train state.

    Raises:
      ConfigError, CheckpointMismatchError: before anything is compiled or written.
      NonFiniteLossError: the loss became NaN/Inf; the last good checkpoint is kept.
      StopRequested: SIGTERM/SIGINT; a checkpoint of the current step was saved.
    """
    workdir = os.fspath(workdir)
    mesh = make_mesh() if mesh is None else mesh
    validate_config(config, num_devices=mesh.size, params=state.params)
    if (eval_stream_fn is None) != (eval_step is None):
        raise TrainingError("pass both eval_step and eval_stream_fn, or neither")
    os.makedirs(workdir, exist_ok=True)
    total_steps = int(config.num_train_steps)

    ckpts = Checkpoints(os.path.join(workdir, "checkpoints"), keep_best=config.keep_best)
    signature = model_signature(state)
    ckpts.check_compatible(signature)  # before anything in the workdir is written
    state = shard_state(state, mesh)
    resumed_from = ckpts.latest_step()
    if resumed_from is not None:
        state = ckpts.restore(state, resumed_from)
    start_step = int(to_host(state.step))

    write_config(config, workdir)
    logger = MetricLogger(workdir, tensorboard=config.tensorboard, resume_step=start_step)
    logger.print(
        f"{signature['model']}: {num_params(state.params):,} parameters; "
        f"{mesh.size} devices, {jax.process_count()} processes; global batch {config.batch_size}"
    )
    if resumed_from is not None:
        logger.print(f"Resumed from {ckpts.directory}/{resumed_from} (step {start_step}).")

    p_train = jit_train_step(train_step, mesh)
    p_eval = jit_eval_step(eval_step, mesh) if eval_step is not None else None
    p_predict = jit_eval_step(predict_step or steps_lib.predict_step, mesh)
    render = render or make_render()
    schedule = train_schedule(config)
    # Created by a jitted function so that every process holds the same replicated key.
    rng = jax.jit(
        lambda: jax.random.fold_in(jax.random.key(config.seed), 1), out_shardings=replicated(mesh)
    )()

    def run_eval(step: int) -> dict[str, Any]:
        started = time.perf_counter()
        batches = iter(eval_stream_fn())
        first = next(batches, None)
        if first is None:
            raise TrainingError("the eval stream yielded no batches")
        if config.num_eval_images:
            images = _eval_images(state, first, p_predict, mesh, render, config.num_eval_images)
            logger.images(step, images)
        summary = evaluate(
            state,
            itertools.chain([first], batches),
            eval_step=p_eval,
            mesh=mesh,
            class_names=class_names,
        )
        scalars = eval_scalars(summary)
        scalars["eval/seconds"] = time.perf_counter() - started
        logger.scalars(step, scalars)
        logger.images(step, figures.score_figures(summary, palette))
        logger.print(f"\nEvaluation at step {step}:\n{metrics.format_table(summary)}")
        return summary

    train_metrics = _TrainMetrics()
    last_saved = resumed_from

    def log_train(step: int) -> None:
        means, bad_step = train_metrics.flush()
        if bad_step is not None:
            ckpts.wait()
            good = ckpts.latest_step()
            where = (
                f"the last good checkpoint is step {good} in {ckpts.directory} (kept)"
                if good is not None
                else "no checkpoint had been written yet"
            )
            raise NonFiniteLossError(
                f"loss is not finite at step {bad_step} (loss={means['loss']}, "
                f"grad_norm={means.get('grad_norm')}): stopping without saving; {where}. "
                "Lower optimizer.learning_rate, set optimizer.grad_clip_norm, or check the data "
                "of that step."
            )
        if means:
            if "lr" not in means:  # the rate of the latest update, from the config's schedule
                means["lr"] = float(schedule(step - 1))
            rate = progress.set_metrics(step, means["loss"])
            scalars = {f"train/{k}": v for k, v in means.items()}
            scalars["train/images_per_second"] = rate
            logger.scalars(step, scalars)

    def save(step: int, eval_summary: dict[str, Any] | None = None) -> None:
        nonlocal last_saved
        if last_saved == step:
            return
        scores = None
        if eval_summary is not None:
            miou = eval_summary["miou"]
            scores = {"miou": -1.0 if np.isnan(miou) else miou}
        ckpts.save(step, state, signature, metrics=scores)
        last_saved = step

    step = start_step
    progress = Progress(total_steps, start_step, config.batch_size)
    try:
        with StopSignal() as stop:
            train_iter: Iterator[Batch] = iter(train_stream_fn(start_step))
            while step < total_steps:
                signum = _stop_agreed(stop, step, config.log_every)
                if signum is not None:
                    log_train(step)
                    save(step)
                    ckpts.wait()
                    name = signal.Signals(signum).name
                    raise StopRequested(
                        f"stopped by {name} at step {step}; checkpoint saved in "
                        f"{ckpts.directory}/{step}. Run the same command to resume.",
                        signum,
                    )
                batch = next(train_iter, None)
                if batch is None:
                    raise TrainingError(
                        f"the train stream ended at step {step}, before num_train_steps="
                        f"{total_steps}; training streams must be infinite (repeat)"
                    )
                batch = shard_batch(batch, mesh)
                if step == start_step:
                    _check_batch_size(batch, config.batch_size)
                state, step_metrics = p_train(state, batch, rng)
                step += 1
                train_metrics.add(step, step_metrics)
                progress.update(step)
                if step == start_step + 1:
                    # Compilation happened in this step: start the images/s clock after it.
                    jax.block_until_ready(step_metrics)
                    progress.pause(step)

                last = step == total_steps
                do_eval = eval_stream_fn is not None and (
                    last or (config.eval_every and step % config.eval_every == 0)
                )
                do_save = (
                    last
                    or do_eval
                    or (config.checkpoint_every and step % config.checkpoint_every == 0)
                )
                if last or do_eval or do_save or step % config.log_every == 0:
                    log_train(step)  # also the NaN check: nothing is saved before it passes
                summary = run_eval(step) if do_eval else None
                if do_save:
                    save(step, summary)
                if do_eval or do_save:
                    progress.pause(step)
            ckpts.wait()
            if start_step >= total_steps:
                logger.print(f"Already trained: step {start_step} >= {total_steps} steps.")
    finally:
        progress.close()
        ckpts.close()
        logger.close()
    return state


def _check_batch_size(batch: Batch, global_batch: int) -> None:
    """`batch` is the sharded global batch; its size must be `config.batch_size`."""
    size = batch["image"].shape[0]
    if size != global_batch:
        raise TrainingError(
            f"the train stream's batches add up to {size} examples over "
            f"{jax.process_count()} processes, but config.batch_size={global_batch} (global); "
            "each process must yield batch_size / process_count examples"
        )


def _local_rows(x: Any) -> np.ndarray:
    """This process's rows of a batch array (numpy, or a global array sharded on `data`)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
        return np.concatenate([np.asarray(s.data) for s in shards])
    return np.asarray(x)
