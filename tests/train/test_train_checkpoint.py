"""Checkpoints: best-N + latest retention, partial saves ignored, restore onto another device
count, refusal of another model's workdir, clear errors for missing or corrupt checkpoints."""

import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tinyrun):
    """A 10-step run on 8 devices: (workdir, final variables)."""
    workdir = tmp_path_factory.mktemp("trained")
    state = tinyrun.run(str(workdir), tinyrun.tiny_config())
    return workdir, tinyrun.flat_variables(state)


def _fresh_state(tinyrun, mesh, **net_kwargs):
    config = tinyrun.tiny_config(num_train_steps=4)
    tx = train.make_optimizer(config.optimizer, 4)
    model = tinyrun.tiny_net(**net_kwargs)
    state = train.create_train_state(model, tx, jax.random.key(123), (1, 16, 16, 3))
    return train.shard_state(state, mesh)


def _snapshot(folder):
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in pathlib.Path(folder).rglob("*")
    }


def test_restore_onto_one_device(trained, tinyrun):
    workdir, saved = trained
    mesh = train.make_mesh(jax.devices()[:1])
    ckpts = train.Checkpoints(workdir / "checkpoints")
    assert ckpts.latest_step() == 10
    state = ckpts.restore(_fresh_state(tinyrun, mesh))
    ckpts.close()
    assert int(state.step) == 10
    restored = tinyrun.flat_variables(state)
    for key, value in saved.items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)
    leaf = state.params["head"]["kernel"]
    assert leaf.sharding.mesh.size == 1
    # And it trains on: one step on the single-device mesh.
    step = train.jit_train_step(train.train_step, mesh)
    state, metrics = step(
        state, train.shard_batch(tinyrun.global_batch(10, 8), mesh), jax.random.key(0)
    )
    assert np.isfinite(train.to_host(metrics["loss"]))


def test_refuses_workdir_of_another_model(trained, tmp_path, tinyrun):
    workdir = tmp_path / "run"
    shutil.copytree(trained[0], workdir)
    before = _snapshot(workdir)
    config_before = (workdir / "config.json").read_text()
    config = tinyrun.tiny_config(num_train_steps=20)
    with pytest.raises(train.CheckpointMismatchError, match="parameters differ") as info:
        tinyrun.run(str(workdir), config, model=tinyrun.tiny_net(features=4))
    assert "Conv_0/kernel" in str(info.value) and "Nothing was overwritten" in str(info.value)
    with pytest.raises(train.CheckpointMismatchError, match="'OtherNet'"):
        tinyrun.run(str(workdir), config, model=tinyrun.tiny_net(name="OtherNet"))
    assert _snapshot(workdir) == before
    assert (workdir / "config.json").read_text() == config_before


def test_missing_and_corrupt_checkpoints(trained, tmp_path, tinyrun):
    workdir = tmp_path / "run"
    shutil.copytree(trained[0], workdir)
    mesh = train.make_mesh()
    ckpts = train.Checkpoints(workdir / "checkpoints")
    with pytest.raises(
        train.CheckpointError, match=r"no checkpoint for step 3 .*available: \[10\]"
    ):
        ckpts.restore(_fresh_state(tinyrun, mesh), step=3)
    ckpts.close()
    # Corrupt the array data of the latest step: restore must name the step and the way out.
    for path in (workdir / "checkpoints" / "10" / "state").rglob("*"):
        if path.is_file() and "manifest" not in path.name and path.suffix != ".json":
            path.write_bytes(b"garbage")
    with pytest.raises(train.CheckpointError, match=r"could not be read.*corrupt"):
        tinyrun.run(str(workdir), tinyrun.tiny_config(num_train_steps=20))


def _tiny_state():
    return {"w": jnp.arange(4.0)}


def test_keeps_best_by_miou_plus_latest_and_ignores_partial_saves(tmp_path):
    ckpts = train.Checkpoints(tmp_path / "ck", keep_best=2, async_save=False)
    signature = {"model": "x", "params": {}}
    history = [(1, 0.5), (2, None), (3, 0.2), (4, 0.7), (5, 0.6), (6, None)]
    for step, miou in history:
        ckpts.save(step, _tiny_state(), signature, None if miou is None else {"miou": miou})
    ckpts.wait()
    assert ckpts.all_steps() == [4, 5, 6]  # best two by mIoU (0.7, 0.6) + the latest
    assert ckpts.best_step() == 4
    ckpts.close()

    # A save killed before its final rename leaves only a temporary directory: never "latest".
    partial = tmp_path / "ck" / "7.orbax-checkpoint-tmp-1234567"
    shutil.copytree(tmp_path / "ck" / "6", partial)
    (partial / "_CHECKPOINT_METADATA").unlink()
    ckpts = train.Checkpoints(tmp_path / "ck", keep_best=2)
    assert ckpts.latest_step() == 6
    # The scores persist: after reopening, a new save still keeps the best two.
    ckpts.save(7, _tiny_state(), signature)
    ckpts.close()
    assert not partial.exists()  # orbax removes leftovers of interrupted saves
    assert sorted(os.listdir(tmp_path / "ck")) == ["4", "5", "7"]


def test_a_changed_module_warns_only_when_training_resumes(trained, tinyrun, caplog):
    """Evaluation and prediction read checkpoints with the evaluation module, whose settings
    differ from the training module's by design: that is not worth a warning there (it was
    printed by `jaxseg-predict --workdir` on every demo run); a resumed training is told."""
    import logging

    workdir, _ = trained
    state = _fresh_state(tinyrun, train.make_mesh(jax.devices()[:1]))
    signature = {**train.model_signature(state), "module_digest": "another module"}
    for read_only, level in ((True, logging.INFO), (False, logging.WARNING)):
        caplog.clear()
        ckpts = train.Checkpoints(workdir / "checkpoints", read_only=read_only)
        with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="absl"):
            ckpts.check_compatible(signature)
        ckpts.close()
        said = [r for r in caplog.records if "module's settings differ" in r.getMessage()]
        assert [r.levelno for r in said] == [level], read_only
