"""Schedules and optimizers against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import train
from jaxseg.train import optim


def _config(**kw):
    config = train.optimizer_config()
    config.update(kw)
    return config


def _lr(schedule, step):
    return float(schedule(jnp.asarray(step)))


def test_poly_schedule_with_warmup():
    schedule = train.make_schedule(
        _config(schedule="poly", learning_rate=0.01, warmup_steps=10, power=0.9), 110
    )
    # Warmup: linear from 0 at step 0 to the base rate at step 10.
    assert _lr(schedule, 0) == pytest.approx(0.0, abs=1e-12)
    assert _lr(schedule, 5) == pytest.approx(0.005, rel=1e-6)
    assert _lr(schedule, 10) == pytest.approx(0.01, rel=1e-6)
    # Then 0.01 * (1 - t/100)^0.9 with t = step - 10: 0.5^0.9 = 0.5358867...
    assert _lr(schedule, 60) == pytest.approx(0.01 * 0.5358867312681466, rel=1e-5)
    assert _lr(schedule, 35) == pytest.approx(0.01 * 0.75**0.9, rel=1e-5)
    assert _lr(schedule, 110) == pytest.approx(0.0, abs=1e-9)
    assert _lr(schedule, 500) == pytest.approx(0.0, abs=1e-9)


def test_poly_schedule_end_value_no_warmup():
    schedule = train.make_schedule(
        _config(schedule="poly", learning_rate=0.007, end_learning_rate=1e-4), 30_000
    )
    assert _lr(schedule, 0) == pytest.approx(0.007, rel=1e-6)
    expected = (0.007 - 1e-4) * (1 - 7500 / 30000) ** 0.9 + 1e-4
    assert _lr(schedule, 7500) == pytest.approx(expected, rel=1e-5)


def test_step_schedule_deeplab_v1():
    schedule = train.make_schedule(
        _config(schedule="step", learning_rate=1e-3, decay_every=2000, decay_factor=0.1), 6000
    )
    for step, expected in [(0, 1e-3), (1999, 1e-3), (2000, 1e-4), (3999, 1e-4), (4500, 1e-5)]:
        assert _lr(schedule, step) == pytest.approx(expected, rel=1e-5), step


def test_cosine_and_constant_schedules():
    cosine = train.make_schedule(
        _config(schedule="cosine", learning_rate=1e-3, end_learning_rate=1e-5), 100
    )
    assert _lr(cosine, 0) == pytest.approx(1e-3, rel=1e-6)
    assert _lr(cosine, 50) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5, rel=1e-5)
    angle = math.pi * 25 / 100
    assert _lr(cosine, 25) == pytest.approx(1e-5 + (1e-3 - 1e-5) * (1 + math.cos(angle)) / 2)
    constant = train.make_schedule(_config(schedule="constant", learning_rate=3e-4), 100)
    assert _lr(constant, 77) == pytest.approx(3e-4, rel=1e-6)


def _params():
    rng = np.random.default_rng(0)
    return {
        "backbone": {
            "conv": {"kernel": rng.normal(size=(3, 3, 2, 4)), "bias": rng.normal(size=(4,))},
            "bn": {"scale": rng.normal(size=(4,)), "bias": rng.normal(size=(4,))},
        },
        "head": {"kernel": rng.normal(size=(1, 1, 4, 3)), "bias": rng.normal(size=(3,))},
    }


def _as_jnp(tree):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), tree)


def _one_update(config, params, grads, steps=1):
    tx = train.make_optimizer(config, 100)
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(grads, state, params)
    return jax.tree_util.tree_map(np.asarray, updates)


def test_weight_decay_mask_kernels_only():
    mask = train.weight_decay_mask(_params())
    assert mask["backbone"]["conv"] == {"kernel": True, "bias": False}
    assert mask["backbone"]["bn"] == {"scale": False, "bias": False}
    assert mask["head"] == {"kernel": True, "bias": False}


def test_sgd_weight_decay_and_head_multiplier():
    params = _as_jnp(_params())
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    config = _config(
        schedule="constant",
        learning_rate=0.1,
        momentum=0.0,
        weight_decay=0.01,
        lr_multipliers=(("head/.*", 10.0),),
    )
    updates = _one_update(config, params, grads)
    p = jax.tree_util.tree_map(np.asarray, params)
    # SGD: update = -lr * mult * (g + wd * w) for kernels, -lr * mult * g otherwise.
    np.testing.assert_allclose(
        updates["backbone"]["conv"]["kernel"], -0.1 * (1 + 0.01 * p["backbone"]["conv"]["kernel"])
    )
    np.testing.assert_allclose(updates["backbone"]["conv"]["bias"], -0.1)
    np.testing.assert_allclose(updates["backbone"]["bn"]["scale"], -0.1)
    np.testing.assert_allclose(
        updates["head"]["kernel"], -1.0 * (1 + 0.01 * p["head"]["kernel"]), rtol=1e-6
    )
    np.testing.assert_allclose(updates["head"]["bias"], -1.0, rtol=1e-6)


def test_lr_multiplier_first_match_wins_and_typos_fail():
    params = _params()
    factors = train.lr_multiplier_tree(params, {"head/bias": 20.0, "head/.*": 10.0})
    assert factors["head"] == {"kernel": 10.0, "bias": 20.0}
    assert factors["backbone"]["conv"]["kernel"] == 1.0
    with pytest.raises(ValueError, match="matches no parameter"):
        train.lr_multiplier_tree(params, {"haed/.*": 10.0})


def test_sgd_nesterov_momentum():
    params = {"w": jnp.zeros((2,))}
    grads = {"w": jnp.asarray([1.0, -2.0])}
    config = _config(schedule="constant", learning_rate=0.5, momentum=0.9, nesterov=True)
    # trace_1 = g, update_1 = g + 0.9 g; trace_2 = 1.9 g, update_2 = g + 0.9 * 1.9 g = 2.71 g.
    np.testing.assert_allclose(_one_update(config, params, grads, 1)["w"], -0.5 * 1.9 * grads["w"])
    np.testing.assert_allclose(_one_update(config, params, grads, 2)["w"], -0.5 * 2.71 * grads["w"])


def test_adam_adamw_and_clipping():
    params = {"conv": {"kernel": jnp.full((1, 1, 1, 2), 2.0), "bias": jnp.full((2,), 2.0)}}
    grads = {"conv": {"kernel": jnp.asarray([[[[3.0, -4.0]]]]), "bias": jnp.asarray([3.0, -4.0])}}
    # First Adam step: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps) = lr * sign(g).
    adam = _config(name="adam", schedule="constant", learning_rate=0.01, eps=0.0)
    np.testing.assert_allclose(
        _one_update(adam, params, grads)["conv"]["bias"], [-0.01, 0.01], rtol=1e-5
    )
    # AdamW: decoupled decay lr * wd * w on kernels only.
    adamw = _config(
        name="adamw", schedule="constant", learning_rate=0.01, eps=0.0, weight_decay=0.1
    )
    updates = _one_update(adamw, params, grads)
    np.testing.assert_allclose(
        updates["conv"]["kernel"].ravel(), [-0.01 - 0.002, 0.01 - 0.002], rtol=1e-5
    )
    np.testing.assert_allclose(updates["conv"]["bias"], [-0.01, 0.01], rtol=1e-5)
    # Clipping: global norm of the grads is sqrt(2 * 25) = 7.07; clip to 1.
    sgd = _config(schedule="constant", learning_rate=1.0, momentum=0.0, grad_clip_norm=1.0)
    clipped = _one_update(sgd, params, grads)["conv"]["bias"]
    np.testing.assert_allclose(clipped, -np.array([3.0, -4.0]) / math.sqrt(50.0), rtol=1e-6)


def test_unknown_names_rejected():
    with pytest.raises(ValueError, match="unknown optimizer"):
        train.make_optimizer(_config(name="lamb"), 10)
    with pytest.raises(ValueError, match="unknown schedule"):
        train.make_schedule(_config(schedule="linear"), 10)
    assert set(optim.SCHEDULES) == {"constant", "poly", "step", "cosine"}
