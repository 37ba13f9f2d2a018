"""Checkpoints with orbax `CheckpointManager`: resume, keep the best by mIoU, refuse foreign ones.

Layout: `<workdir>/checkpoints/<step>/{state, signature}`. `state` is the whole `TrainState`
pytree (step, params, opt_state, batch_stats); `signature` is a small JSON naming the model
class and every parameter's path and shape, checked before anything is restored or written so
that a workdir of another model is refused instead of overwritten.

The data position is not stored: training streams derive their order from the step
(`train_stream_fn(start_step)`), and the dropout RNG is `fold_in(seed, step)`.

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
mid-save leaves no half-written step that `latest_step` could pick up (the leftover temporary
directory is ignored and cleaned up by the next run).

Failures end in a few lines, not orbax's tracebacks: a save that meets a full disk or a
permission problem raises `CheckpointWriteError` (the previous checkpoints stay intact), an
unreadable checkpoint `CheckpointError` naming it and the previous step. Orbax's background
threads log each such failure with its traceback; those records are dropped unless
`JAXSEG_DEBUG=1` (the error itself always reaches the caller).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging as py_logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as policies

from jaxseg import debug
from jaxseg.train.errors import CheckpointError, CheckpointMismatchError, CheckpointWriteError
from jaxseg.train.state import TrainState, param_shapes

SIGNATURE_VERSION = 1
_MESSAGE_CHARS = 300  # of a wrapped orbax/tensorstore error (they run to dozens of lines)


def _short(error: BaseException) -> str:
    """`Type: first line of the message`, cut to a few hundred characters."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > _MESSAGE_CHARS:
        text = text[:_MESSAGE_CHARS] + " ..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _QuietOrbaxErrors(py_logging.Filter):
    """Drops the ERROR records (with tracebacks) orbax logs from its background save threads;
    the failure reaches the caller as an exception, reported in a few lines."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        if debug.debug_enabled() or record.levelno < py_logging.ERROR:
            return True
        if record.name == "asyncio":  # "Future exception was never retrieved" of a failed write
            error = record.exc_info[1] if record.exc_info else None
            return error is None or debug.system_errno(error) is None
        return "orbax" not in record.pathname


_QUIET_FILTER = _QuietOrbaxErrors()


def _after_failed_save(unraisable: Any) -> bool:
    """Whether an "unraisable" exception is the echo of a failed orbax save: tensorstore
    callbacks reaching the closed event loop of the save's thread, or its coroutines collected
    at interpreter exit."""
    error = unraisable.exc_value
    return (isinstance(error, RuntimeError) and "Event loop is closed" in str(error)) or (
        isinstance(error, ImportError) and "shutting down" in str(error)
    )


def _quiet_orbax_logs() -> None:
    absl_logger = py_logging.getLogger("absl")  # absl.logging's Python logger, orbax logs there
    for logger in (absl_logger, py_logging.getLogger("asyncio")):
        if _QUIET_FILTER not in logger.filters:
            logger.addFilter(_QUIET_FILTER)
    previous = sys.unraisablehook
    if getattr(previous, "_jaxseg_quiet", False):
        return

    def hook(unraisable: Any) -> None:
        if debug.debug_enabled() or not _after_failed_save(unraisable):
            previous(unraisable)

    hook._jaxseg_quiet = True
    sys.unraisablehook = hook


def model_signature(state: TrainState, model_name: str | None = None) -> dict[str, Any]:
    """What identifies a model's checkpoints: class name, config digest, parameter shapes.

    Args:
      state: a train state (concrete or abstract) of the model.
      model_name: defaults to the class of the module whose `apply` is `state.apply_fn`.

    Returns:
      JSON-able dict: `model` (name), `module_digest` (hash of the module's repr, i.e. its
      hyper-parameters), `params` ({path: [shape, dtype]}).
    """
    module = getattr(state.apply_fn, "__self__", None)
    if model_name is None:
        model_name = type(module).__name__ if module is not None else "unknown"
    digest = hashlib.sha256(repr(module).encode()).hexdigest()[:16] if module is not None else ""
    return {
        "version": SIGNATURE_VERSION,
        "model": model_name,
        "module_digest": digest,
        "params": param_shapes(state.params),
    }


def _describe_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """A human-readable difference if the checkpoint cannot belong to this model, else None."""
    if saved.get("model") != current["model"]:
        return f"it holds model {saved.get('model')!r}, this run builds {current['model']!r}"
    old, new = saved.get("params", {}), current["params"]
    only_old = sorted(set(old) - set(new))
    only_new = sorted(set(new) - set(old))
    reshaped = sorted(k for k in set(old) & set(new) if list(old[k]) != list(new[k]))
    if not (only_old or only_new or reshaped):
        return None
    lines = []
    if only_old:
        lines.append(f"parameters only in the checkpoint: {only_old[:5]}")
    if only_new:
        lines.append(f"parameters only in this model: {only_new[:5]}")
    for k in reshaped[:5]:
        lines.append(f"{k}: checkpoint {old[k]}, this model {new[k]}")
    return "the parameters differ (" + "; ".join(lines) + ")"


@dataclasses.dataclass
class LatestAndBest(policies.PreservationPolicy):
    """Keeps the newest checkpoint and the `n` with the highest `metric`.

    Unlike orbax's `BestN`, checkpoints without metrics never take one of the `n` slots (orbax
    keeps everything while there are at most `n` checkpoints).
    """

    n: int
    metric: str = "miou"

    def should_preserve(
        self, checkpoints: Sequence[policies.PolicyCheckpointInfo], *, context: Any
    ) -> list[bool]:
        del context
        scored = [
            (float(info.metrics[self.metric]), info.step, i)
            for i, info in enumerate(checkpoints)
            if info.metrics and self.metric in info.metrics
        ]
        # Ties go to the later step; checkpoints arrive sorted by step, the last is the newest.
        best = (
            {i for _, _, i in sorted(scored)[max(len(scored) - self.n, 0) :]}
            if self.n > 0
            else set()
        )
        return [i in best or i == len(checkpoints) - 1 for i in range(len(checkpoints))]


class Checkpoints:
    """The run's checkpoints: `<directory>/<step>/`, the latest plus the best `keep_best` by mIoU.

    Saves carrying eval metrics (`metrics={'miou': ...}`) compete for the `keep_best` slots;
    saves without metrics (periodic, on a signal) are kept only while they are the latest.
    Saving is asynchronous: `save` returns once the arrays are copied off the devices; call
    `wait` (or `close`) before the process exits. `read_only=True` is for readers (evaluation
    while a training run may still be saving): nothing is created or cleaned up.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep_best: int = 3,
        best_metric: str = "miou",
        async_save: bool = True,
        read_only: bool = False,
    ):
        self.directory = os.path.abspath(os.fspath(directory))
        self.best_metric = best_metric
        self._read_only = read_only
        options = ocp.CheckpointManagerOptions(
            preservation_policy=LatestAndBest(n=keep_best, metric=best_metric),
            # Orbax writes a step's metrics to disk only when best_fn is set; without them a
            # restarted run would forget which old checkpoints are the best ones.
            best_fn=lambda m: float(m.get(best_metric, float("-inf"))),
            best_mode="max",
            # A reader (an evaluation next to a running training) must not delete the
            # temporary directory of a save in flight, nor create folders.
            cleanup_tmp_directories=not read_only,
            enable_async_checkpointing=async_save and not read_only,
            create=not read_only,
        )
        _quiet_orbax_logs()
        self._failed: CheckpointWriteError | None = None
        self._pending_step: int | None = None
        try:
            self._manager = ocp.CheckpointManager(
                self.directory, options=options, item_names=("state", "signature")
            )
        except Exception as e:  # e.g. the workdir cannot be created: say so in one line
            problem = debug.system_problem(e, f"cannot use checkpoint folder {self.directory}")
            if problem is None:
                raise
            raise CheckpointWriteError(problem, _exit_code(e)) from e

    def _write_failed(self, error: BaseException, step: int | None) -> CheckpointWriteError:
        """The error to raise for a failed (possibly background) write of `step`."""
        what = (
            f"writing checkpoint {step} to {self.directory}"
            if step is not None
            else (f"writing a checkpoint to {self.directory}")
        )
        problem = debug.system_problem(error, what)
        older = [s for s in self.all_steps() if step is None or s < step]
        kept = (
            f"checkpoint {older[-1]} and older are intact"
            if older
            else "there is no earlier checkpoint"
        )
        self._failed = CheckpointWriteError(
            f"{problem}. Nothing was deleted ({kept}); rerun the same command to resume "
            "from the newest complete checkpoint.",
            _exit_code(error),
        )
        return self._failed

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None for an empty directory."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of all complete checkpoints, ascending."""
        return sorted(self._manager.all_steps())

    def best_step(self) -> int | None:
        """The step with the highest `best_metric` among checkpoints that carry it (or None)."""
        scored = []
        for step in self.all_steps():
            saved = self._manager.metrics(step) or {}
            if self.best_metric in saved:
                scored.append((float(saved[self.best_metric]), step))
        return max(scored)[1] if scored else None

    def read_signature(self, step: int) -> dict[str, Any] | None:
        """The signature JSON saved with `step` (None if that checkpoint has none)."""
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(signature=ocp.args.JsonRestore())
            )
        except Exception as e:  # orbax raises assorted types for a missing item
            # The caller says so in its own message; the details only for debugging.
            logging.info("no readable signature in checkpoint %d: %s", step, e)
            return None
        return restored.signature

    def check_compatible(self, signature: dict[str, Any]) -> None:
        """Refuses (raises `CheckpointMismatchError`) if the latest checkpoint is another model's.

        A different module digest with identical parameter shapes is allowed with a warning:
        e.g. DeepLab trained at output stride 16 and evaluated at 8, or a new compute dtype.
        """
        step = self.latest_step()
        if step is None:
            return
        saved = self.read_signature(step)
        if saved is None:
            problem = (
                f"its signature/ item ({os.path.join(self.directory, str(step), 'signature')}) "
                "is missing or unreadable, so it is incomplete (copied in part?) or was not "
                "written by jaxseg.train"
            )
        else:
            problem = _describe_mismatch(saved, signature)
        if problem is not None:
            raise CheckpointMismatchError(
                f"{self.directory} holds a checkpoint (step {step}) that this run cannot "
                f"resume: {problem}. Nothing was overwritten. Use a new --workdir, or move "
                "the old run away."
            )
        if saved.get("module_digest") != signature["module_digest"]:
            # Evaluation and prediction (read-only) build the evaluation module, whose settings
            # (output stride, conv forms, ...) may differ from the training module's by design;
            # only a resumed training run is worth a warning.
            log = logging.info if self._read_only else logging.warning
            log(
                "%s %s from step %d: the module's settings differ from the saved ones "
                "(same parameter shapes).",
                "Reading" if self._read_only else "Resuming",
                signature["model"],
                step,
            )

    def restore(self, template: TrainState, step: int | None = None) -> TrainState:
        """Restores `step` (default: latest) onto the shardings of `template`.

        Args:
          template: a train state placed on the current mesh (`shard_state`); only its
            structure, shapes, dtypes and shardings are used, so the checkpoint may come from a
            run with a different number of devices.
          step: which checkpoint; None for the latest.

        Returns:
          The restored `TrainState` (apply_fn and tx from `template`).
        """
        steps = self.all_steps()
        if step is None:
            step = steps[-1] if steps else None
        if step is None or step not in steps:
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory} (available: {steps or 'none'})"
            )
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), template
        )
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )
        except Exception as e:  # tensorstore/orbax/OS errors: report them as one clear problem
            path = os.path.join(self.directory, str(step))
            older = [s for s in steps if s < step]
            previous = f"checkpoint {older[-1]}" if older else "the start (no older checkpoint)"
            raise CheckpointError(
                f"checkpoint {path} could not be read ({_short(e)}); it is incomplete or "
                f"corrupt. Nothing was deleted.\nTo resume from {previous}, move it away: "
                f"mv {path} {path}.bad (or start over in a new --workdir)."
            ) from e
        return restored.state

    def save(
        self,
        step: int,
        state: TrainState,
        signature: dict[str, Any],
        metrics: dict[str, float] | None = None,
    ) -> bool:
        """Saves `state` as `step` (asynchronously); False if that step is already saved.

        Args:
          step: the training step (the state after `step` updates).
          state: the train state (replicated global arrays); all processes must call this.
          signature: `model_signature(state)`.
          metrics: eval scores for best-N retention, must contain `best_metric` (e.g. 'miou').
        """
        if step in self._manager.all_steps():
            return False
        # {} rather than None: no metric, and no orbax warning about a missing tracked metric.
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), signature=ocp.args.JsonSave(signature)
        )
        if self._failed is not None:
            raise self._failed
        previous, self._pending_step = self._pending_step, step
        try:
            return self._manager.save(step, args=args, metrics=metrics, force=True)
        except Exception as e:  # a failure of this save, or of the previous one's background
            if debug.system_errno(e) is None:
                raise  # not the disk or permissions: a bug, with its traceback
            failed = previous if _names_step(e, self.directory, previous) else step
            raise self._write_failed(e, failed) from e

    def wait(self) -> None:
        """Blocks until background writes are committed.

        Raises:
          CheckpointWriteError: a background write failed (full disk, permissions).
        """
        if self._failed is not None:
            raise self._failed
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            if debug.system_errno(e) is None:
                raise
            raise self._write_failed(e, self._pending_step) from e

    def close(self) -> None:
        """Waits for pending writes and releases the manager.

        After a failed write (already raised) the manager is released without raising again.
        """
        try:
            self._manager.close()
        except Exception as e:
            if self._failed is None:
                if debug.system_errno(e) is None:
                    raise
                raise self._write_failed(e, self._pending_step) from e


def _exit_code(error: BaseException) -> int:
    """2 for a folder that cannot be written (bad input), 1 for a full disk or anything else."""
    return 2 if debug.system_errno(error) in (errno.EACCES, errno.EPERM, errno.EROFS) else 1


def _names_step(error: BaseException, directory: str, step: int | None) -> bool:
    """Whether the error (or a cause) is about the folder of checkpoint `step`: orbax reports
    the failure of a background save only when the next save or wait starts."""
    if step is None:
        return False
    prefix = os.path.join(directory, str(step))
    texts = []
    while error is not None and len(texts) < 20:
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    return any(f"{prefix}." in t or f"{prefix}/" in t for t in texts)
