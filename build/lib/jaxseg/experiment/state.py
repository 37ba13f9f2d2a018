"""Experiment model state: shapes without compiling, workdir and checkpoint checks, restoring,
ImageNet backbone weights."""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import ml_collections

from jaxseg import train

# Pretrained weight files carry the preprocessing they were trained with (keras.applications'
# names); the config's `normalization` must agree or the backbone sees garbage.
_INPUT_MODE_NORMALIZATION = {"caffe": "caffe_bgr", "torch": "imagenet", "tf": "inception"}


def _input_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
    crop = config.crop_size
    return (1, crop, crop, 3) if isinstance(crop, int) else (1, *crop, 3)


def abstract_state(model: nn.Module, config: ml_collections.ConfigDict) -> train.TrainState:
    """The train state's shapes, traced without computing or compiling anything."""
    tx = train.make_optimizer(config.optimizer, config.num_train_steps)
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


def load_pretrained(state: train.TrainState, config: ml_collections.ConfigDict):
    """`state` with backbone params and BatchNorm statistics from `config.pretrained`."""
    from jaxseg import weights

    path = os.path.expanduser(config.pretrained)
    if not os.path.isfile(path):
        raise train.ConfigError(f"config.pretrained={config.pretrained!r} is not a file")
    if not config.pretrained_model:
        raise train.ConfigError(
            "config.pretrained needs config.pretrained_model, the architecture of the file "
            "(vgg16, vgg16bn, resnet50, resnet101, mobilenetv2)"
        )
    if path.lower().endswith((".h5", ".hdf5")):
        imported = weights.from_keras(path, config.pretrained_model)
    else:
        imported = weights.from_torch(path, config.pretrained_model)
    wanted = _INPUT_MODE_NORMALIZATION.get(imported.input_mode)
    if wanted and wanted != config.normalization:
        raise train.ConfigError(
            f"{config.pretrained} was trained on '{imported.input_mode}'-style inputs: add "
            f"--config.normalization={wanted}"
        )
    for key, value in imported.backbone_kwargs.items():
        if config.model.get(key, value) != value:
            raise train.ConfigError(
                f"{config.pretrained} needs the backbone built with {key}={value}: add "
                f"--config.model.{key}={value}"
            )
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    try:
        variables = weights.load_backbone(variables, imported)
    except ValueError as e:
        raise train.ConfigError(f"config.pretrained: {e}") from None
    # The optimizer state (momentum, Adam moments) is zeros whatever the params: keep it.
    return state.replace(params=variables["params"], batch_stats=variables["batch_stats"])


def create_state(
    model: nn.Module, config: ml_collections.ConfigDict, pretrained: bool = True
) -> train.TrainState:
    """A fresh train state (with `config.pretrained` backbone weights if set and wanted)."""
    tx = train.make_optimizer(config.optimizer, config.num_train_steps)
    state = train.create_train_state(model, tx, jax.random.key(config.seed), _input_shape(config))
    if pretrained and config.pretrained:
        state = load_pretrained(state, config)
    return state
