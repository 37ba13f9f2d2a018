"""Train state: flax's `TrainState` plus BatchNorm statistics, and helpers to build it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

PyTree = Any


class TrainState(train_state.TrainState):
    """`step`, `params`, `opt_state` (from flax) and `batch_stats` (BatchNorm running stats).

    `batch_stats` is `{}` for models without BatchNorm. The dropout RNG is deliberately not part
    of the state: steps derive it as `fold_in(base_rng, step)`, so a resumed run draws the same
    masks as an uninterrupted one.
    """

    batch_stats: PyTree


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    input_shape: Sequence[int],
    *,
    params_transform: Callable[[PyTree], PyTree] | None = None,
) -> TrainState:
    """Initialises `model` on zeros of `input_shape` and the optimizer on its params.

    Args:
      model: a Flax linen module called as `model(images, train=...)`.
      tx: the optimizer (`make_optimizer`).
      rng: PRNG key for parameter initialisation.
      input_shape: `[B, H, W, 3]` of the dummy input; a small batch (1) suffices because
        parameter shapes do not depend on it.
      params_transform: optional `params -> params` applied before the optimizer sees them,
        e.g. to load ImageNet backbone weights; the optimizer state then matches them.

    Returns:
      A `TrainState` with `step = 0` (int32), on the default device; `shard_state` places it.
    """
    # jit: eager initialisation dispatches (and compiles) op by op, slow for deep backbones.
    init = jax.jit(lambda key, x: model.init(key, x, train=False))
    variables = init(rng, jnp.zeros(tuple(input_shape), jnp.float32))
    params = variables["params"]
    if params_transform is not None:
        params = params_transform(params)

    def create(params: PyTree, batch_stats: PyTree) -> TrainState:
        state = TrainState.create(
            apply_fn=model.apply, params=params, tx=tx, batch_stats=batch_stats
        )
        # An int32 array step (not Python 0) keeps the pytree the same before and after restore.
        return state.replace(step=jnp.zeros((), jnp.int32))

    return jax.jit(create)(params, variables.get("batch_stats", {}))


def param_path(path: tuple) -> str:
    """`('backbone', 'conv1', 'kernel')`-style key path -> `'backbone/conv1/kernel'`."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def param_shapes(params: PyTree) -> dict[str, list]:
    """`{'backbone/conv1/kernel': [[3, 3, 3, 64], 'float32'], ...}` for every leaf."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return {param_path(p): [list(x.shape), str(jnp.dtype(x.dtype))] for p, x in leaves}


def num_params(params: PyTree) -> int:
    """Total number of scalar parameters."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
