"""Sharded steps: 8 devices agree with 1 (sync BN), eval counts match numpy, VALID-net cropping."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from jaxseg import train


def _train_two_steps(tinyrun, mesh):
    config = tinyrun.tiny_config()
    tx = train.make_optimizer(config.optimizer, 10)
    state = train.create_train_state(tinyrun.tiny_net(), tx, jax.random.key(0), (1, 16, 16, 3))
    state = train.shard_state(state, mesh)
    schedule = train.make_schedule(config.optimizer, 10)
    step = train.jit_train_step(
        functools.partial(train.train_step, learning_rate_fn=schedule), mesh
    )
    rng = jax.random.key(7)
    for i in range(2):
        batch = train.shard_batch(tinyrun.global_batch(i, 16), mesh)
        state, metrics = step(state, batch, rng)
    return tinyrun.flat_variables(state), train.to_host(metrics)


def test_eight_devices_match_one_device_including_batchnorm(tinyrun):
    assert jax.device_count() == 8
    many, many_metrics = _train_two_steps(tinyrun, train.make_mesh())
    one, one_metrics = _train_two_steps(tinyrun, train.make_mesh(jax.devices()[:1]))
    assert many.keys() == one.keys()
    assert any(k.startswith("batch_stats/") for k in many)
    for key in many:
        np.testing.assert_allclose(many[key], one[key], rtol=2e-5, atol=2e-6, err_msg=key)
    for key in ("loss", "grad_norm", "pixel_accuracy"):
        np.testing.assert_allclose(many_metrics[key], one_metrics[key], rtol=2e-5)
    # The second update (step 1) of a 10-step poly schedule from 0.1.
    assert many_metrics["lr"] == pytest.approx(0.1 * (1 - 1 / 10) ** 0.9, rel=1e-6)


def test_shard_batch_splits_rows_over_devices(tinyrun):
    mesh = train.make_mesh()
    batch = train.shard_batch(tinyrun.global_batch(0, 16), mesh)
    assert batch["image"].shape == (16, 16, 16, 3)
    shards = batch["label"].addressable_shards
    assert len(shards) == 8 and all(s.data.shape == (2, 16, 16) for s in shards)
    # Values, dtypes and placement: row block k of the batch lives on device k.
    host = {
        "image": np.arange(8 * 4 * 5 * 3, dtype=np.float32).reshape(8, 4, 5, 3),
        "label": np.arange(8 * 4 * 5, dtype=np.int32).reshape(8, 4, 5),
        "mask": np.array([True] * 7 + [False]),
    }
    out = train.shard_batch(host, mesh)
    for key, value in host.items():
        assert out[key].shape == value.shape and out[key].dtype == value.dtype
        assert out[key].sharding == NamedSharding(mesh, PartitionSpec("data"))
        np.testing.assert_array_equal(np.asarray(out[key]), value)
        shard = next(s for s in out[key].addressable_shards if s.index[0].start == 3)
        np.testing.assert_array_equal(np.asarray(shard.data), value[3:4])
    # Eval batches' file names stay on the host: devices cannot hold strings.
    named = train.shard_batch({**host, "name": np.array([b"a.jpg"] * 7 + [b""], object)}, mesh)
    assert set(named) == set(host)


class _HalfResolution(nn.Module):
    """Logits at half the input size (like an output stride), to exercise the resize."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3), strides=2)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Conv(3, (1, 1))(nn.relu(x))


def _numpy_confusion(labels, predictions, mask, num_classes, ignore=255):
    counted = (labels != ignore) & mask[:, None, None]
    rows = np.where(labels[counted] < num_classes, labels[counted], num_classes)
    cols = predictions[counted]
    cm = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    np.add.at(cm, (rows, cols), 1)
    return cm


def test_eval_step_counts_match_numpy_with_resize_mask_and_ignore(tinyrun):
    model = _HalfResolution()
    tx = train.make_optimizer(train.optimizer_config(), 10)
    state = train.create_train_state(model, tx, jax.random.key(1), (1, 16, 16, 3))
    batch = tinyrun.global_batch(3, 8)
    batch["mask"][-3:] = False  # padding examples of a last batch
    batch["label"][0, :2] = 7  # an out-of-range label: counted in the extra row

    mesh = train.make_mesh()
    p_eval = train.jit_eval_step(functools.partial(train.eval_step, num_classes=3), mesh)
    cm = train.to_host(p_eval(train.shard_state(state, mesh), train.shard_batch(batch, mesh)))

    # Independent expectation: plain apply on one device, jax.image.resize, numpy counting.
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits = model.apply(variables, jnp.asarray(batch["image"]), train=False)
    assert logits.shape[1:3] == (8, 8)
    logits = jax.image.resize(logits, (8, 16, 16, 3), "bilinear")
    predictions = np.asarray(jnp.argmax(logits, -1))
    expected = _numpy_confusion(batch["label"], predictions, batch["mask"], 3)
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == np.sum((batch["label"] != 255) & batch["mask"][:, None, None])


class _Valid(nn.Module):
    """Unpadded convs (U-Net style): 16x16 in, 12x12 out."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(4, (3, 3), padding="VALID")(x))
        return nn.Conv(3, (3, 3), padding="VALID")(x)


def test_train_step_center_crops_labels_for_smaller_logits(tinyrun):
    model = _Valid()
    tx = train.make_optimizer(train.optimizer_config(), 10)
    state = train.create_train_state(model, tx, jax.random.key(2), (1, 16, 16, 3))
    batch = tinyrun.global_batch(5, 8)
    batch["mask"][-1] = False
    logits = np.asarray(model.apply({"params": state.params}, jnp.asarray(batch["image"])))
    assert logits.shape == (8, 12, 12, 3)

    # Numpy cross entropy on the centre 12x12 of the labels, valid pixels of real examples.
    labels = batch["label"][:, 2:14, 2:14]
    valid = (labels != 255) & batch["mask"][:, None, None]
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    expected_loss = -picked[valid].mean()
    accuracy = (logits.argmax(-1) == labels)[valid].mean()

    mesh = train.make_mesh()
    step = train.jit_train_step(train.train_step, mesh)
    _, metrics = step(
        train.shard_state(state, mesh), train.shard_batch(batch, mesh), jax.random.key(0)
    )
    metrics = train.to_host(metrics)
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["pixel_accuracy"] == pytest.approx(accuracy, rel=1e-6)
