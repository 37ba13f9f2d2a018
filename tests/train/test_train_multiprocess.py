"""Two processes on localhost (jax.distributed, CPU collectives): each feeds half of the global
batch; both finish with the same parameters, equal to a single-process run of the same batches."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

STEPS = 10  # as in the other tests' runs: their compiled programs are reused


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_agree_with_each_other_and_with_one_process(tmp_path, tinyrun):
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    workdir = tmp_path / "run"  # shared, as on a cluster file system
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                tinyrun.__file__,
                "--workdir",
                str(workdir),
                "--steps",
                str(STEPS),
                "--num_processes",
                "2",
                "--process_id",
                str(i),
                "--port",
                str(port),
                "--out",
                str(tmp_path / f"process_{i}.npz"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=300))
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail("two-process run timed out")
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-4000:]
    assert "4 devices, 2 processes" in outputs[0][0]

    first = np.load(tmp_path / "process_0.npz")
    second = np.load(tmp_path / "process_1.npz")
    assert sorted(first.files) == sorted(second.files)
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)

    # Same global batches in one process over 8 devices: equal up to float summation order.
    reference = tinyrun.flat_variables(
        tinyrun.run(str(tmp_path / "single"), tinyrun.tiny_config(num_train_steps=STEPS))
    )
    for key in first.files:
        np.testing.assert_allclose(first[key], reference[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert (workdir / "checkpoints" / str(STEPS)).is_dir()
