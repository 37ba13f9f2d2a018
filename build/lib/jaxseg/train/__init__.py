"""Training and evaluation engine: state, optimizers, pure steps, sharding, checkpoints, loop.

An experiment file composes these (see `train_and_evaluate`):

    mesh = train.make_mesh()
    tx = train.make_optimizer(config.optimizer, config.num_train_steps)
    state = train.create_train_state(model, tx, jax.random.key(config.seed), (1, 513, 513, 3))
    train.train_and_evaluate(
        config, workdir, state=state,
        train_step=functools.partial(train.train_step, loss_fn=loss, learning_rate_fn=schedule),
        eval_step=functools.partial(train.eval_step, num_classes=21),
        train_stream_fn=..., eval_stream_fn=..., class_names=..., mesh=mesh)
"""

from jaxseg.train.checkpoint import Checkpoints, model_signature
from jaxseg.train.config import default_config, define_config_flag, handle_errors, validate_config
from jaxseg.train.errors import (
    CheckpointError,
    CheckpointMismatchError,
    ConfigError,
    NonFiniteLossError,
    StopRequested,
    TrainingError,
)
from jaxseg.train.logs import MetricLogger, make_render
from jaxseg.train.loop import evaluate, train_and_evaluate
from jaxseg.train.optim import (
    lr_multiplier_tree,
    make_optimizer,
    make_schedule,
    optimizer_config,
    weight_decay_mask,
)
from jaxseg.train.parallel import (
    batch_sharding,
    enable_compilation_cache,
    jit_eval_step,
    jit_train_step,
    make_mesh,
    maybe_initialize_distributed,
    replicated,
    shard_batch,
    shard_state,
    to_host,
)
from jaxseg.train.state import TrainState, create_train_state
from jaxseg.train.steps import eval_step, predict_logits, predict_step, train_step

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "Checkpoints",
    "ConfigError",
    "MetricLogger",
    "NonFiniteLossError",
    "StopRequested",
    "TrainState",
    "TrainingError",
    "batch_sharding",
    "create_train_state",
    "default_config",
    "define_config_flag",
    "enable_compilation_cache",
    "eval_step",
    "evaluate",
    "handle_errors",
    "jit_eval_step",
    "jit_train_step",
    "lr_multiplier_tree",
    "make_mesh",
    "make_optimizer",
    "make_render",
    "make_schedule",
    "maybe_initialize_distributed",
    "model_signature",
    "optimizer_config",
    "predict_logits",
    "predict_step",
    "replicated",
    "shard_batch",
    "shard_state",
    "to_host",
    "train_and_evaluate",
    "train_step",
    "validate_config",
    "weight_decay_mask",
]
