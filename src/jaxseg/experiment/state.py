"""Experiment model state: shapes without compiling, workdir and checkpoint checks, restoring."""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import ml_collections

from jaxseg import train


def _input_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
    crop = config.crop_size
    return (1, crop, crop, 3) if isinstance(crop, int) else (1, *crop, 3)


def abstract_state(model: nn.Module, config: ml_collections.ConfigDict) -> train.TrainState:
    """The train state's shapes, traced without computing or compiling anything."""
    tx = train.make_train_optimizer(config)
    return jax.eval_shape(
        lambda: train.create_train_state(
            model, tx, jax.random.key(config.seed), _input_shape(config)
        )
    )


def check_workdir(workdir: str, state: train.TrainState, config) -> None:
    """Refuses a workdir whose latest checkpoint belongs to another model (nothing written)."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return
    ckpts = train.Checkpoints(directory, keep_best=config.keep_best, read_only=True)
    try:
        ckpts.check_compatible(train.model_signature(state))
    finally:
        ckpts.close()


def find_checkpoint(workdir: str, which: str, config: ml_collections.ConfigDict) -> int:
    """The step `--checkpoint` names ("best", "latest" or a number) in `workdir`.

    Raises:
      CheckpointError: no checkpoints, or not that step; ConfigError: a bad `which`.
    """
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise train.CheckpointError(
            f"{workdir} has no checkpoints/ folder: --mode=eval needs the --workdir of a "
            "training run (train first, or point --workdir at the run)"
        )
    ckpts = train.Checkpoints(directory, keep_best=config.keep_best, read_only=True)
    try:
        steps = ckpts.all_steps()
        if not steps:
            raise train.CheckpointError(f"no complete checkpoint in {directory}")
        if which == "latest":
            return steps[-1]
        if which == "best":
            best = ckpts.best_step()
            return steps[-1] if best is None else best
        try:
            step = int(which)
        except ValueError:
            raise train.ConfigError(
                f"--checkpoint={which!r}: use best, latest or a step number"
            ) from None
        if step not in steps:
            raise train.CheckpointError(
                f"no checkpoint for step {step} in {directory} (have: {steps})"
            )
        return step
    finally:
        ckpts.close()


def restore(state: train.TrainState, workdir: str, step: int, config) -> train.TrainState:
    """`state` (placed on the mesh) replaced by checkpoint `step` of `workdir`."""
    ckpts = train.Checkpoints(
        os.path.join(workdir, "checkpoints"), keep_best=config.keep_best, read_only=True
    )
    try:
        return ckpts.restore(state, step)
    finally:
        ckpts.close()


def create_state(model: nn.Module, config: ml_collections.ConfigDict) -> train.TrainState:
    """A freshly initialised train state (random weights; the experiment's `initialize` then
    loads what it starts from)."""
    tx = train.make_train_optimizer(config)
    return train.create_train_state(model, tx, jax.random.key(config.seed), _input_shape(config))
