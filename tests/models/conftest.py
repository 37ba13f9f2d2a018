"""Helpers for model tests: variables without compiling `init`, and one jitted gradient step.

Compiling is what costs on CPU, so variables come from `jax.eval_shape(model.init)` filled
with seeded random numbers (He-scaled kernels, unit BN variances) instead of a jitted init.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

FAST_COMPILE = {"xla_backend_optimization_level": 0}


def count_params(tree) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def abstract_variables(model, shape):
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape, jnp.float32))


def random_variables(model, shape, seed: int = 0):
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = str(path[-1].key)
        if name == "var":
            return np.ones(leaf.shape, np.float32)
        if leaf.ndim == 4:
            fan_in = max(1, int(np.prod(leaf.shape[:3])))
            scale = np.sqrt(2.0 / fan_in)
        elif leaf.ndim == 2:
            scale = np.sqrt(2.0 / leaf.shape[0])
        else:
            scale = 0.1
        values = rng.standard_normal(leaf.shape, dtype=np.float32) * np.float32(scale)
        return jnp.asarray(values + 1.0 if name == "scale" else values)

    return jax.tree_util.tree_map_with_path(fill, abstract_variables(model, shape))


def loss_and_grads(model, variables, images, fast_compile: bool = False):
    """Jitted train-mode forward + gradient of a random linear functional of the logits.

    `fast_compile` skips LLVM optimisations: halves compile time of deep narrow nets, but
    slows wide convolutions several-fold, so use it for reduced-width models only.
    """

    def loss_fn(params):
        logits, _ = model.apply(
            {**variables, "params": params},
            images,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.key(1)},
        )
        weights = jax.random.normal(jax.random.key(2), logits.shape)
        return jnp.mean(logits * weights), logits

    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True)).lower(variables["params"])
    compiled = step.compile(compiler_options=FAST_COMPILE if fast_compile else None)
    (_, logits), grads = compiled(variables["params"])
    return logits, grads


def zero_grad_paths(grads) -> list[str]:
    return [
        jax.tree_util.keystr(path)
        for path, leaf in jax.tree_util.tree_leaves_with_path(grads)
        if not np.any(np.asarray(leaf) != 0)
    ]


@pytest.fixture
def helpers():
    return types.SimpleNamespace(
        count_params=count_params,
        abstract_variables=abstract_variables,
        random_variables=random_variables,
        loss_and_grads=loss_and_grads,
        zero_grad_paths=zero_grad_paths,
    )
