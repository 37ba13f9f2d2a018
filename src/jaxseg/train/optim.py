"""Learning-rate schedules and optimizers from the `config.optimizer` section.

The recipes this covers (see docs/recipes.md):
- DeepLab v2/v3/v3+: SGD momentum 0.9, poly schedule (power 0.9) to 0, weight decay 1e-4/5e-4.
- DeepLab v1 and FCN: step schedule (x0.1 every N steps), 10x learning rate for the classifier.
- U-Net: Adam (or AdamW), constant or cosine schedule.

Weight decay is L2 on kernels only (never biases or BatchNorm scale/offset). For SGD and Adam it
is added to the gradient before momentum, like Caffe's `weight_decay` and TF's L2 regularisers
that the reference numbers were trained with; for AdamW it is decoupled (Loshchilov & Hutter).

`make_train_optimizer(config)` adds the run-level options for one-GPU users: gradient
accumulation (`config.grad_accum_steps`, `optax.MultiSteps`) and an exponential moving average of
the weights (`config.ema_decay`, kept in the optimizer state, so it is checkpointed with it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxseg.train.state import param_path

PyTree = Any
OptimizerConfig = ml_collections.ConfigDict | Mapping[str, Any]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "poly", "step", "cosine")


def optimizer_config() -> ml_collections.ConfigDict:
    """Defaults of the `optimizer` config section (DeepLab v3+'s recipe)."""
    return ml_collections.ConfigDict(
        {
            "name": "sgd",  # sgd | adam | adamw
            "learning_rate": 0.007,  # base (peak) learning rate
            "schedule": "poly",  # constant | poly | step | cosine
            "power": 0.9,  # poly: lr = (base - end) (1 - t / T)^power + end
            "end_learning_rate": 0.0,  # poly and cosine: value at the last step
            "decay_every": 2000,  # step: multiply by decay_factor every decay_every steps
            "decay_factor": 0.1,
            "warmup_steps": 0,  # linear warmup from 0 to the base rate, before the schedule
            "momentum": 0.9,  # sgd; 0 disables momentum
            "nesterov": False,
            "b1": 0.9,  # adam / adamw
            "b2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.0,  # on kernels only; L2 for sgd/adam, decoupled for adamw
            "grad_clip_norm": 0.0,  # clip the global gradient norm; 0 disables
            # ((regex, multiplier), ...): a parameter whose path ('head/conv/kernel') fully
            # matches the first regex gets its updates scaled, e.g. (("head/.*", 10.0),).
            "lr_multipliers": (),
        }
    )


def _get(config: OptimizerConfig, key: str) -> Any:
    defaults = optimizer_config()
    return config[key] if key in config else defaults[key]


def make_schedule(config: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the step (what `train/lr` logs).

    With `warmup_steps = w > 0` the rate rises linearly from 0 at step 0 to the base rate at
    step w; the main schedule then runs over the remaining `total_steps - w` steps, counting
    from 0 at step w:
      constant: base
      poly:     (base - end) (1 - t / T)^power + end,  t = step - w, T = total - w, t clipped to T
      step:     base * decay_factor ** floor(t / decay_every)
      cosine:   end + (base - end) (1 + cos(pi t / T)) / 2

    Args:
      config: the `optimizer` section (keys of `optimizer_config()`; missing keys use defaults).
      total_steps: number of training steps.

    Returns:
      An optax schedule `step (int scalar) -> float32 scalar`.
    """
    name = _get(config, "schedule")
    base = float(_get(config, "learning_rate"))
    end = float(_get(config, "end_learning_rate"))
    warmup = int(_get(config, "warmup_steps"))
    decay_steps = max(int(total_steps) - warmup, 1)
    if name == "constant":
        main = optax.constant_schedule(base)
    elif name == "poly":
        main = optax.polynomial_schedule(
            init_value=base,
            end_value=end,
            power=float(_get(config, "power")),
            transition_steps=decay_steps,
        )
    elif name == "step":
        main = optax.exponential_decay(
            init_value=base,
            transition_steps=int(_get(config, "decay_every")),
            decay_rate=float(_get(config, "decay_factor")),
            staircase=True,
        )
    elif name == "cosine":
        alpha = end / base if base else 0.0
        main = optax.cosine_decay_schedule(base, decay_steps=decay_steps, alpha=alpha)
    else:
        raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
    if warmup <= 0:
        return main
    ramp = optax.linear_schedule(init_value=0.0, end_value=base, transition_steps=warmup)
    return optax.join_schedules([ramp, main], boundaries=[warmup])


def weight_decay_mask(params: PyTree) -> PyTree:
    """True for kernels (leaves named 'kernel', ndim > 1); biases and BN scale/bias get no decay.

    Args:
      params: the parameter tree.

    Returns:
      A tree of bools with the structure of `params`.
    """

    def is_kernel(path: tuple, x: jax.Array) -> bool:
        last = path[-1]
        name = getattr(last, "key", getattr(last, "name", None))
        return name == "kernel" and x.ndim > 1

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def _multiplier_rules(
    multipliers: Mapping[str, float] | Sequence[tuple[str, float]],
) -> list[tuple[re.Pattern, float]]:
    items = multipliers.items() if isinstance(multipliers, Mapping) else multipliers
    return [(re.compile(pattern), float(value)) for pattern, value in items]


def lr_multiplier_tree(
    params: PyTree, multipliers: Mapping[str, float] | Sequence[tuple[str, float]]
) -> PyTree:
    """Per-parameter learning-rate factor: the first regex that fully matches the path wins, else 1.

    Args:
      params: the parameter tree; paths are '/'-joined keys, e.g. 'head/conv/kernel'.
      multipliers: `{regex: factor}` or `((regex, factor), ...)`, tried in order.

    Returns:
      A tree of Python floats with the structure of `params`.

    Raises:
      ValueError: a pattern matches no parameter (almost always a typo in the path).
    """
    rules = _multiplier_rules(multipliers)
    paths = [param_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    for pattern, _ in rules:
        if not any(pattern.fullmatch(path) for path in paths):
            examples = ", ".join(paths[:3] + (["..."] if len(paths) > 3 else []) + paths[-2:])
            raise ValueError(
                f"lr_multipliers pattern {pattern.pattern!r} matches no parameter; "
                f"paths look like: {examples}"
            )

    def factor(path: tuple, _: jax.Array) -> float:
        name = param_path(path)
        return next((value for pattern, value in rules if pattern.fullmatch(name)), 1.0)

    return jax.tree_util.tree_map_with_path(factor, params)


class _EmptyState(NamedTuple):
    pass


def scale_by_lr_multipliers(
    multipliers: Mapping[str, float] | Sequence[tuple[str, float]],
) -> optax.GradientTransformation:
    """Scales each parameter's update by its `lr_multiplier_tree` factor (stateless).

    Placed after the learning rate, so a factor of 10 makes a parameter move 10x as far as it
    would with the same gradient, as Caffe's `lr_mult` does.
    """

    def init_fn(params: PyTree) -> _EmptyState:
        lr_multiplier_tree(params, multipliers)  # fail at init on patterns that match nothing
        return _EmptyState()

    def update_fn(updates: PyTree, state: _EmptyState, params: PyTree | None = None):
        del params
        # Factors are Python floats computed from the tree paths at trace time: no runtime cost.
        factors = lr_multiplier_tree(updates, multipliers)
        return jax.tree_util.tree_map(
            lambda u, f: u * f if f != 1.0 else u, updates, factors
        ), state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
    """The optimizer described by the `optimizer` config section.

    Order of transformations: clip global norm -> (L2 weight decay) -> momentum / Adam ->
    (decoupled weight decay, AdamW) -> learning rate schedule -> per-path LR multipliers.

    Args:
      config: the `optimizer` section (keys of `optimizer_config()`).
      total_steps: number of training steps (for the schedule).

    Returns:
      An optax `GradientTransformation` producing updates to add to the params.
    """
    name = _get(config, "name")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    schedule = make_schedule(config, total_steps)
    weight_decay = float(_get(config, "weight_decay"))
    clip = float(_get(config, "grad_clip_norm"))
    multipliers = _get(config, "lr_multipliers")

    parts: list[optax.GradientTransformation] = []
    if clip > 0:
        parts.append(optax.clip_by_global_norm(clip))
    if weight_decay > 0 and name in ("sgd", "adam"):
        parts.append(optax.add_decayed_weights(weight_decay, mask=weight_decay_mask))
    if name == "sgd":
        momentum = float(_get(config, "momentum"))
        if momentum > 0:
            parts.append(optax.trace(decay=momentum, nesterov=bool(_get(config, "nesterov"))))
    else:
        b1, b2, eps = (float(_get(config, k)) for k in ("b1", "b2", "eps"))
        parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
        if weight_decay > 0 and name == "adamw":
            parts.append(optax.add_decayed_weights(weight_decay, mask=weight_decay_mask))
    parts.append(optax.scale_by_learning_rate(schedule))
    if multipliers:
        parts.append(scale_by_lr_multipliers(multipliers))
    return optax.chain(*parts)


class ParamsEmaState(NamedTuple):
    """EMA of the parameters; `count` = updates averaged so far (0: `ema` not yet set)."""

    count: jax.Array  # int32 scalar
    ema: PyTree


def params_ema(decay: float) -> optax.GradientTransformation:
    """Tracks `ema <- decay * ema + (1 - decay) * new_params` (updates pass through unchanged).

    Put last in the chain, so `params + updates` are the parameters after the step. The first
    update starts the average from the parameters it is given (`ema_0 = params_0`), not from
    those at `init`: parameters replaced after the optimizer was initialised (ImageNet weights
    loaded into a fresh state) are averaged from the loaded values. Under `optax.MultiSteps`
    it runs once per applied update. Averaging is `optax.incremental_update`.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema decay must be in [0, 1), got {decay}")

    def init_fn(params: PyTree) -> ParamsEmaState:
        return ParamsEmaState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates: PyTree, state: ParamsEmaState, params: PyTree | None = None):
        if params is None:
            raise ValueError("params_ema needs the params: call tx.update(grads, state, params)")
        previous = jax.tree.map(lambda e, p: jnp.where(state.count > 0, e, p), state.ema, params)
        new_params = optax.apply_updates(params, updates)
        ema = optax.incremental_update(new_params, previous, step_size=1.0 - decay)
        return updates, ParamsEmaState(state.count + 1, ema)

    return optax.GradientTransformation(init_fn, update_fn)


def ema_params(opt_state: PyTree, params: PyTree) -> PyTree:
    """The EMA of the weights held in `opt_state` (`params_ema`), else `params`.

    Before the first update (and without EMA) this is `params`.
    """
    found = [
        leaf
        for leaf in jax.tree_util.tree_leaves(
            opt_state, is_leaf=lambda x: isinstance(x, ParamsEmaState)
        )
        if isinstance(leaf, ParamsEmaState)
    ]
    if not found:
        return params
    (state,) = found
    return jax.tree.map(lambda e, p: jnp.where(state.count > 0, e, p), state.ema, params)


def _run_options(config: ml_collections.ConfigDict) -> tuple[int, float]:
    return int(config.get("grad_accum_steps", 1)), float(config.get("ema_decay", 0.0))


def train_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """The learning rate as a function of the *train step* (what `train/lr` logs).

    With `grad_accum_steps = k` the optimizer updates every k steps and its schedule runs over
    `num_train_steps / k` updates: step s uses the rate of update `s // k`.
    """
    k, _ = _run_options(config)
    schedule = make_schedule(config.optimizer, int(config.num_train_steps) // k)
    if k == 1:
        return schedule
    return lambda step: schedule(step // k)


def make_train_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The run's optimizer from the whole config: `optimizer`, `grad_accum_steps`, `ema_decay`.

    - `grad_accum_steps = k > 1`: `optax.MultiSteps` averages the gradients of k consecutive
      train steps (micro-batches of `batch_size`) and applies one update, the same update as
      one step on the k-times larger batch (up to BatchNorm statistics, which see micro-batches,
      and to micro-batches with different numbers of valid pixels, each weighted equally).
      `num_train_steps`, `log_every`, `eval_every` and `checkpoint_every` count train steps;
      the schedule (and `optimizer.warmup_steps`, `decay_every`) counts updates.
    - `ema_decay = d > 0`: `params_ema(d)` after the update; evaluation and prediction images
      use the average (`ema_params`), and checkpoints hold it in `opt_state`.
    """
    k, decay = _run_options(config)
    tx = make_optimizer(config.optimizer, int(config.num_train_steps) // k)
    if decay > 0:
        tx = optax.chain(tx, params_ema(decay))
    if k > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=k).gradient_transformation()
    return tx
