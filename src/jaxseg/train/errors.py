"""Errors the training engine raises with a message meant for the person running the experiment.

Each one is a `TrainingError`, so an experiment's entry point can print the message and exit
without a stack trace (`jaxseg.train.handle_errors`); everything else still shows its trace,
because it is a bug rather than a problem with the run's inputs.
"""

from __future__ import annotations


class TrainingError(Exception):
    """Base class: a clear, actionable problem with the run. `exit_code` is the process status."""

    exit_code: int = 1


class ConfigError(TrainingError, ValueError):
    """The config (or a command-line override) is invalid; raised before any compilation."""

    exit_code = 2


class CheckpointError(TrainingError):
    """A checkpoint is missing, incomplete or unreadable."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (full disk, permissions); older ones are intact.

    Status 1 for a full disk or an I/O error (the run failed), 2 for a folder that cannot be
    written (a bad --workdir), as for the same problems met elsewhere in a run.
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class CheckpointMismatchError(CheckpointError):
    """The workdir holds checkpoints of a different model; nothing was overwritten."""


class NonFiniteLossError(TrainingError):
    """The loss or gradient norm became NaN/Inf; the bad state was not saved."""


class StopRequested(TrainingError):
    """A signal (SIGTERM/SIGINT) stopped the run after a checkpoint was saved."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        # The shell convention for "terminated by signal N", so schedulers see a preemption.
        self.exit_code = 128 + signum
