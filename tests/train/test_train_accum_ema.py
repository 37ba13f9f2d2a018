"""Gradient accumulation (`grad_accum_steps`) against the larger batch, and the weight EMA
(`ema_decay`) against a numpy recurrence; the EMA is what evaluation applies and checkpoints hold.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import inference, losses, train


class NoBatchNormNet(nn.Module):
    """Two convolutions, no BatchNorm or dropout: a micro-batch's gradient depends on it alone."""

    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(6, (3, 3))(x))
        return nn.Conv(self.num_classes, (1, 1), name="head")(x)


@pytest.fixture
def net(tinyrun):
    return NoBatchNormNet(tinyrun.NUM_CLASSES)


def _batch(tinyrun, step: int, size: int) -> dict:
    """Batch of `step` without ignored pixels (every example has the same number of pixels)."""
    batch = tinyrun.make_examples(np.random.default_rng([7, step]), size)
    batch["label"] = np.where(batch["label"] == 255, 0, batch["label"]).astype(np.int32)
    return batch


def _state(config, model):
    tx = train.make_train_optimizer(config)
    return train.create_train_state(model, tx, jax.random.key(0), (1, 16, 16, 3))


def _step_fn(config):
    step = functools.partial(
        train.train_step,
        loss_fn=functools.partial(losses.softmax_cross_entropy, ignore_label=255),
        learning_rate_fn=train.train_schedule(config),
    )
    return jax.jit(step)


def _host(tree):
    return jax.tree.map(np.asarray, tree)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_k_micro_batches_make_the_update_of_the_k_times_larger_batch(optimizer, tinyrun, net):
    k, micro, updates = 4, 2, 3
    common = {
        "optimizer.name": optimizer,
        "optimizer.learning_rate": 0.05,
        "optimizer.weight_decay": 1e-3,
        "optimizer.schedule": "poly",
        "optimizer.grad_clip_norm": 5.0,
    }
    big = tinyrun.tiny_config(batch_size=k * micro, num_train_steps=updates, **common)
    small = tinyrun.tiny_config(
        batch_size=micro, num_train_steps=k * updates, grad_accum_steps=k, **common
    )
    train.validate_config(big, num_devices=1, num_processes=1)
    train.validate_config(small, num_devices=1, num_processes=1)
    big_state, small_state = _state(big, net), _state(small, net)
    big_step, small_step = _step_fn(big), _step_fn(small)
    rng = jax.random.key(1)
    for u in range(updates):
        batch = _batch(tinyrun, u, k * micro)
        before = _host(small_state.params)
        big_state, big_metrics = big_step(big_state, batch, rng)
        for i in range(k):
            part = {key: v[i * micro : (i + 1) * micro] for key, v in batch.items()}
            small_state, small_metrics = small_step(small_state, part, rng)
            # The update's learning rate is the big run's at the same update.
            assert float(small_metrics["lr"]) == pytest.approx(float(big_metrics["lr"]))
            if i < k - 1:  # nothing moves until the k-th micro-batch
                jax.tree.map(np.testing.assert_array_equal, _host(small_state.params), before)
        jax.tree.map(
            functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=2e-6),
            _host(small_state.params),
            _host(big_state.params),
        )
    assert int(small_state.step) == k * updates


def _numpy_ema(history, decay):
    ema = history[0]
    for params in history[1:]:
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
    return ema


@pytest.mark.parametrize("accum", [1, 2])
def test_ema_follows_the_recurrence_and_is_what_evaluation_applies(accum, tinyrun, net):
    decay, updates = 0.8, 4
    config = tinyrun.tiny_config(
        batch_size=2, num_train_steps=updates * accum, grad_accum_steps=accum, ema_decay=decay
    )
    state = _state(config, net)
    # Parameters replaced after the optimizer was initialised (as ImageNet weights are): the
    # average starts from them.
    state = state.replace(params=jax.tree.map(lambda p: 0.5 * p + 0.01, state.params))
    np.testing.assert_array_equal(
        train.ema_params(state.opt_state, state.params)["head"]["kernel"],
        state.params["head"]["kernel"],
    )
    step = _step_fn(config)
    history = [_host(state.params)]  # p_0, then the parameters after each update
    rng = jax.random.key(2)
    for s in range(updates * accum):
        state, _ = step(state, _batch(tinyrun, s, 2), rng)
        if (s + 1) % accum == 0:
            history.append(_host(state.params))
            expected = _numpy_ema(history, decay)
            jax.tree.map(
                functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7),
                _host(train.ema_params(state.opt_state, state.params)),
                expected,
            )
    ema = _numpy_ema(history, decay)
    # Evaluation and prediction apply the average, not the raw weights.
    images = jnp.asarray(_batch(tinyrun, 99, 2)["image"])
    logits = inference.predict_logits(state.apply_fn, train.eval_variables(state), images, (16, 16))
    reference = net.apply({"params": ema}, images)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(reference), rtol=1e-4, atol=1e-5)
    raw = net.apply({"params": state.params}, images)
    assert np.abs(np.asarray(raw) - np.asarray(reference)).max() > 1e-3


def test_ema_is_checkpointed_with_the_state(tmp_path, tinyrun):
    config = tinyrun.tiny_config(num_train_steps=4, checkpoint_every=2, ema_decay=0.7)
    final = tinyrun.run(str(tmp_path), config)
    saved_ema = _host(train.ema_params(final.opt_state, final.params))
    tx = train.make_train_optimizer(config)
    fresh = train.create_train_state(tinyrun.tiny_net(), tx, jax.random.key(5), (1, 16, 16, 3))
    template = train.shard_state(fresh, train.make_mesh())
    ckpts = train.Checkpoints(tmp_path / "checkpoints")
    restored = ckpts.restore(template, 4)
    ckpts.close()
    jax.tree.map(
        np.testing.assert_array_equal,
        _host(train.ema_params(restored.opt_state, restored.params)),
        saved_ema,
    )
    differs = jax.tree.map(lambda a, b: np.abs(a - b).max(), saved_ema, _host(final.params))
    assert max(jax.tree.leaves(differs)) > 0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("grad_accum_steps", 0, "grad_accum_steps must be an int >= 1"),
        ("grad_accum_steps", 3, "not a multiple of config.grad_accum_steps=3"),
        ("ema_decay", 1.0, "ema_decay=1.0 must be in"),
    ],
)
def test_bad_accumulation_and_ema_settings(key, value, message, tinyrun):
    config = tinyrun.tiny_config(num_train_steps=10, **{key: value})
    with pytest.raises(train.ConfigError, match=message):
        train.validate_config(config, num_devices=1, num_processes=1)
