"""The engine's config keys, the `--config` flag, and checks that run before any compilation.

An experiment's `get_config()` starts from `default_config()` (loop keys + `optimizer`), adds its
own sections (model, data), and sets values. `define_config_flag` locks the result, so a
misspelt `--config.optimizer.learnig_rate=0.1` stops the program with a clear message instead
of silently training with the default.
"""

from __future__ import annotations

import errno
import sys
import traceback
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from absl import flags
from ml_collections import config_flags

from jaxseg import debug
from jaxseg.train.errors import ConfigError, TrainingError
from jaxseg.train.optim import OPTIMIZERS, SCHEDULES, lr_multiplier_tree, optimizer_config


def default_config() -> ml_collections.ConfigDict:
    """Keys the loop reads (`train_and_evaluate`) with defaults; experiments extend and override."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 16  # global: summed over all devices and processes
    config.num_train_steps = 30_000
    config.log_every = 50  # train metrics to TensorBoard / metrics.jsonl every N steps
    config.eval_every = 2_000  # 0: evaluate only after the last step
    config.checkpoint_every = 1_000  # 0: save only at evaluations, the end and on signals
    config.keep_best = 3  # best checkpoints by eval mIoU kept, plus always the latest
    config.num_eval_images = 4  # prediction figures logged per evaluation
    config.tensorboard = True
    config.grad_accum_steps = 1  # k > 1: one update per k steps, the k-times larger batch
    config.ema_decay = 0.0  # > 0: evaluate an exponential moving average of the weights
    config.optimizer = optimizer_config()
    return config


# Keys whose value may be an int (a square) or an (h, w) pair, on any section.
SIZE_KEYS = ("crop_size",)


def allow_size_pairs(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Lets each `SIZE_KEYS` field hold an int or an `(h, w)` tuple (in place; returns it).

    A ConfigDict field keeps the type of its first value, so `config.crop_size = 513` would
    refuse `--config.crop_size=(96,128)`; an untyped reference takes either (and the command
    line then parses the override as a Python literal).
    """
    for key in list(config.keys()):
        value = config[key]
        if isinstance(value, ml_collections.ConfigDict):
            allow_size_pairs(value)
        elif key in SIZE_KEYS and isinstance(value, int | tuple | list):
            with config.unlocked():
                del config[key]
                config[key] = ml_collections.FieldReference(value, field_type=object)
    return config


def define_config_flag(
    config: ml_collections.ConfigDict,
    name: str = "config",
    help_string: str = "Experiment config.",
    flag_values: flags.FlagValues = flags.FLAGS,
) -> flags.FlagHolder:
    """`ml_collections` config flag over a locked `config`; unknown override keys exit clearly.

    Call at module level of an experiment file (like `config_flags.DEFINE_config_dict`). A
    `--config.some.key=value` that names no key prints the valid keys and exits with status 2.
    """
    allow_size_pairs(config)
    config.lock()
    try:
        return config_flags.DEFINE_config_dict(name, config, help_string, flag_values=flag_values)
    except (AttributeError, KeyError) as e:
        # ml_collections parses overrides while defining the flag and raises a bare
        # AttributeError("'foo'") with a traceback; turn it into a sentence.
        bad = [a for a in sys.argv[1:] if a.lstrip("-").startswith(f"{name}.")]
        detail = e
        while detail.args and isinstance(detail.args[0], BaseException):  # unwrap the chain
            detail = detail.args[0]
        detail = " ".join(str(detail.args[0] if detail.args else detail).split())
        keys = "\n  ".join(sorted(_flat_keys(config)))
        message = (
            f"error: unknown config key in {' '.join(bad) or 'the command line'}: {detail}\n"
            f"Valid keys (--{name}.KEY=VALUE):\n  {keys}"
        )
        print(message, file=sys.stderr)
        raise SystemExit(2) from None


def _flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys += _flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def validate_config(
    config: ml_collections.ConfigDict,
    *,
    num_devices: int | None = None,
    num_processes: int | None = None,
    params: Any = None,
) -> None:
    """Checks the loop and optimizer keys; raises `ConfigError` with the fix, before compiling.

    Args:
      config: the full experiment config (keys of `default_config()`).
      num_devices: devices in the mesh (default: all, `jax.device_count()`).
      num_processes: processes in the run (default: `jax.process_count()`).
      params: if given, `optimizer.lr_multipliers` patterns are checked against its paths.
    """
    num_devices = jax.device_count() if num_devices is None else num_devices
    num_processes = jax.process_count() if num_processes is None else num_processes
    missing = [k for k in default_config() if k not in config]
    if missing:
        raise ConfigError(
            f"config lacks the training keys {missing}; start get_config() from "
            "jaxseg.train.default_config()"
        )
    batch = config.batch_size
    if not isinstance(batch, int) or batch <= 0:
        raise ConfigError(f"config.batch_size must be a positive int, got {batch!r}")
    if batch % num_devices:
        lower = max(num_devices, batch - batch % num_devices)
        raise ConfigError(
            f"config.batch_size={batch} is not divisible by the {num_devices} devices: "
            f"the global batch is split evenly across them. Use e.g. "
            f"--config.batch_size={lower} or {lower + num_devices}."
        )
    if batch % num_processes:
        raise ConfigError(
            f"config.batch_size={batch} is not divisible by the {num_processes} processes"
        )
    for key in ("num_train_steps", "log_every", "keep_best"):
        if int(config[key]) <= 0:
            raise ConfigError(f"config.{key} must be positive, got {config[key]!r}")
    for key in ("eval_every", "checkpoint_every", "num_eval_images"):
        if int(config[key]) < 0:
            raise ConfigError(f"config.{key} must be >= 0, got {config[key]!r}")
    accum = config.grad_accum_steps
    if not isinstance(accum, int) or accum < 1:
        raise ConfigError(f"config.grad_accum_steps must be an int >= 1, got {accum!r}")
    if config.num_train_steps % accum:
        raise ConfigError(
            f"config.num_train_steps={config.num_train_steps} is not a multiple of "
            f"config.grad_accum_steps={accum} (train steps per update); use e.g. "
            f"--config.num_train_steps={config.num_train_steps - config.num_train_steps % accum}"
        )
    if not 0.0 <= config.ema_decay < 1.0:
        raise ConfigError(
            f"config.ema_decay={config.ema_decay} must be in [0, 1) (0: no average; "
            "typical: 0.999 to 0.9999)"
        )
    num_updates = config.num_train_steps // accum
    opt = config.optimizer
    if opt.name not in OPTIMIZERS:
        raise ConfigError(f"config.optimizer.name={opt.name!r}; choose one of {OPTIMIZERS}")
    if opt.schedule not in SCHEDULES:
        raise ConfigError(f"config.optimizer.schedule={opt.schedule!r}; choose one of {SCHEDULES}")
    if not 0 <= opt.warmup_steps < num_updates:
        raise ConfigError(
            f"config.optimizer.warmup_steps={opt.warmup_steps} must be in [0, {num_updates}) "
            f"(the updates: num_train_steps / grad_accum_steps)"
        )
    if opt.schedule == "step" and opt.decay_every <= 0:
        raise ConfigError("config.optimizer.decay_every must be positive for the step schedule")
    if params is not None and opt.lr_multipliers:
        try:
            lr_multiplier_tree(params, opt.lr_multipliers)
        except (ValueError, TypeError) as e:  # bad regex or a pattern that matches nothing
            raise ConfigError(f"config.optimizer.lr_multipliers: {e}") from None


# errno values that mean "the run failed" (status 1) rather than "bad input" (status 2).
_RUN_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EIO)


def handle_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an experiment's `main(argv)`: a `TrainingError` prints its message and exits.

    Use as `app.run(train.handle_errors(main))`: configuration problems, an incompatible
    workdir, a NaN loss or a preemption end with one clear line (and the error's exit status)
    rather than a stack trace; so do a full disk (status 1) and a folder without write
    permission (status 2) wherever they are met. `JAXSEG_DEBUG=1` adds the traceback.
    """

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except TrainingError as e:
            if debug.debug_enabled():
                traceback.print_exception(e, file=sys.stderr)
            print(f"\n{type(e).__name__}: {e}", file=sys.stderr, flush=True)
            raise SystemExit(e.exit_code) from None
        except Exception as e:
            # A full disk or a folder without permission, met outside the checkpoints (logs,
            # figures, the data folder): a few lines, not a stack trace; other errors are bugs.
            problem = debug.system_problem(e, "the run stopped")
            if problem is None:
                raise
            code = 1 if debug.system_errno(e) in _RUN_FAILURES else 2
            debug.print_failure(
                f"\n{problem}. Nothing was deleted; once fixed, rerun the same command to "
                "resume from the newest complete checkpoint.",
                e,
            )
            raise SystemExit(code) from None

    return wrapped
