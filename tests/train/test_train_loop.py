"""The loop end to end: overfitting, run outputs, NaN stop, kill -9 / SIGTERM and resume."""

import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2

from jaxseg import train

STEPS = 10


def _read_events(folder):
    """All events of the TensorBoard files in `folder` (TFRecord framing read by hand)."""
    events = []
    for path in pathlib.Path(folder).glob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            offset += 12
            events.append(event_pb2.Event.FromString(data[offset : offset + length]))
            offset += length + 4
    return events


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_overfits_a_few_images_and_writes_run_outputs(tmp_path, tinyrun):
    config = tinyrun.tiny_config(
        num_train_steps=40, log_every=10, eval_every=20, checkpoint_every=0, tensorboard=True
    )
    config.optimizer.learning_rate = 0.05
    tinyrun.run(str(tmp_path), config, fixed=True, evaluate=True)

    records = _records(tmp_path)
    evals = [r for r in records if "eval/miou" in r]
    assert [r["step"] for r in evals] == [20, 40]
    assert evals[-1]["eval/miou"] >= 0.95, evals[-1]
    for key in ("eval/pixel_accuracy", "eval/mean_pixel_accuracy", "eval/fw_iou", "eval/iou/red"):
        assert key in evals[-1]
    train_records = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train_records] == [10, 20, 30, 40]
    assert train_records[-1]["train/loss"] < train_records[0]["train/loss"]
    assert {"train/lr", "train/grad_norm", "train/pixel_accuracy"} <= set(train_records[0])
    # The rate of update 10 (step index 9) of a 40-step poly schedule from 0.05.
    assert train_records[0]["train/lr"] == pytest.approx(0.05 * (1 - 9 / 40) ** 0.9, rel=1e-6)

    tags = {v.tag for e in _read_events(tmp_path / "tensorboard") for v in e.summary.value}
    assert {"train/loss", "train/lr", "eval/miou", "eval/iou/green"} <= tags
    assert any(tag.startswith("predictions/") for tag in tags)
    assert {"predictions/confusion_matrix", "predictions/class_iou"} <= tags
    figures = sorted(p.name for p in (tmp_path / "predictions" / "step_00000040").glob("*.png"))
    assert figures == sorted(
        [f"{i}.png" for i in range(config.num_eval_images)]
        + ["class_iou.png", "confusion_matrix.png"]
    )
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["num_train_steps"] == 40 and saved["optimizer"]["learning_rate"] == 0.05
    # Eval after the last step, with metrics: kept as the best and the latest.
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["20", "40"]


def test_nan_batch_stops_cleanly_and_keeps_last_good_checkpoint(tmp_path, tinyrun):
    # The batch of step index 5 is NaN: update 6 diverges; checkpoints exist for steps 2 and 4.
    with pytest.raises(train.NonFiniteLossError, match=r"not finite at step 6") as info:
        tinyrun.run(str(tmp_path), tinyrun.tiny_config(num_train_steps=STEPS), nan_at=5)
    assert "last good checkpoint is step 4" in str(info.value)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4"]
    records = _records(tmp_path)
    assert max(r["step"] for r in records) == 4
    assert all(np.isfinite(r["train/loss"]) for r in records)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tinyrun):
    """Final variables of an uninterrupted STEPS-step run (8 devices, in this process)."""
    workdir = tmp_path_factory.mktemp("reference")
    return tinyrun.flat_variables(tinyrun.run(str(workdir), tinyrun.tiny_config()))


def _start(tinyrun, workdir):
    # 0.4 s per batch, so the run is reliably interrupted mid-way.
    command = [sys.executable, tinyrun.__file__, "--workdir", str(workdir), "--steps", str(STEPS)]
    return subprocess.Popen(
        [*command, "--sleep", "0.4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_checkpoint(process, workdir, step, timeout=240.0):
    deadline = time.monotonic() + timeout
    while not (workdir / "checkpoints" / str(step)).exists():
        if process.poll() is not None:
            pytest.fail(f"run exited early:\n{process.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("timed out waiting for a checkpoint")
        time.sleep(0.05)


def _latest_step(workdir):
    ckpts = train.Checkpoints(workdir / "checkpoints")
    try:
        return ckpts.latest_step()
    finally:
        ckpts.close()


def _assert_same(final, reference):
    assert final.keys() == reference.keys()
    for key in reference:
        np.testing.assert_allclose(final[key], reference[key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path, reference, tinyrun):
    process = _start(tinyrun, tmp_path)
    _wait_for_checkpoint(process, tmp_path, 4)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    latest = _latest_step(tmp_path)
    assert latest is not None and 4 <= latest < STEPS

    state = tinyrun.run(str(tmp_path), tinyrun.tiny_config())  # resumes from `latest`
    assert int(state.step) == STEPS
    _assert_same(tinyrun.flat_variables(state), reference)
    steps = [r["step"] for r in _records(tmp_path)]
    assert steps == sorted(steps)  # records of the killed run past `latest` were dropped


def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path, reference, tinyrun):
    process = _start(tinyrun, tmp_path)
    _wait_for_checkpoint(process, tmp_path, 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "StopRequested: stopped by SIGTERM at step" in stderr
    stopped_at = int(stderr.split("stopped by SIGTERM at step ")[1].split(";")[0])
    assert 2 <= stopped_at < STEPS
    assert _latest_step(tmp_path) == stopped_at

    state = tinyrun.run(str(tmp_path), tinyrun.tiny_config())
    _assert_same(tinyrun.flat_variables(state), reference)


def test_ctrl_c_saves_and_exits_130(tmp_path, tinyrun):
    process = _start(tinyrun, tmp_path)
    _wait_for_checkpoint(process, tmp_path, 2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stderr[-3000:]
    assert "Traceback" not in stderr
    stopped_at = int(stderr.split("stopped by SIGINT at step ")[1].split(";")[0])
    assert 2 <= stopped_at < STEPS
    assert _latest_step(tmp_path) == stopped_at
