"""Experiment-file tests: tiny generated datasets, and a runner for the files as scripts.

Each experiment runs in a subprocess, exactly as a user types it, on one CPU device (the
files' demo batches are not multiples of the 8 simulated devices of the rest of the suite) and
with XLA's cheaper CPU compilation: the smoke tests check the plumbing, not the speed.
"""

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
# FCN-16s/8s import their base experiment from their own folder, as when run as scripts.
sys.path.insert(0, str(EXPERIMENTS))
DEMO_IMAGE_SIZE = (48, 64)
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


@pytest.fixture(scope="session")
def compilation_cache(tmp_path_factory):
    """One persistent XLA cache for every experiment subprocess of the session (all xdist
    workers share the parent folder): files with the same network (the Cityscapes demo is the
    VOC demo's), and an evaluation after its training run, compile once."""
    path = tmp_path_factory.getbasetemp().parent / "experiments_xla_cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A folder holding the tiny VOC-layout and CamVid demo datasets, built once per worker.

    Built here, in one process, so that test subprocesses only read them (two subprocesses
    generating the same dataset at once would race).
    """
    import ml_collections

    from jaxseg import experiment
    from jaxseg.data import demo

    root = tmp_path_factory.mktemp("demo_data")
    demo.prepare_demo(root, num_train=8, num_val=4, image_size=DEMO_IMAGE_SIZE)
    config = ml_collections.ConfigDict(
        {"demo": {"data_dir": str(root), "num_train": 8, "num_val": 4,
                  "image_size": DEMO_IMAGE_SIZE}}
    )  # fmt: skip
    experiment.prepare_camvid_demo(config)
    return root


def demo_args(data_dir, workdir, steps: int = 1) -> list[str]:
    """A one-step `--demo` run on the tiny data (batch 2, 2 eval images, no figures)."""
    h, w = DEMO_IMAGE_SIZE
    return [
        "--demo",
        f"--workdir={workdir}",
        f"--config.demo.data_dir={data_dir}",
        "--config.demo.num_train=8",
        "--config.demo.num_val=4",
        f"--config.demo.image_size=({h}, {w})",
        f"--config.num_train_steps={steps}",
        "--config.batch_size=2",
        "--config.eval_batch_size=2",
        "--config.num_eval_examples=2",
        "--config.num_eval_images=0",
        "--config.compilation_cache=False",
    ]


def subprocess_env(cache=None, devices: int = 1) -> dict[str, str]:
    """Environment of a test subprocess: CPU, `devices` devices, cheap compilation."""
    env = dict(os.environ)
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}",
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    if cache is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    return env


def run_experiment(name: str, args, *, cache=None, devices: int = 1, timeout: int = 600):
    """`python experiments/<name>.py args...` -> CompletedProcess (text stdout/stderr)."""
    env = subprocess_env(cache, devices)
    return subprocess.run(
        [sys.executable, str(EXPERIMENTS / f"{name}.py"), *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def experiment_runner(compilation_cache):
    return functools.partial(run_experiment, cache=compilation_cache)


@pytest.fixture
def predict_runner(compilation_cache):
    """`python -m jaxseg.predict args...` -> CompletedProcess, like the experiment runner."""

    def run(args, timeout: int = 600):
        return subprocess.run(
            [sys.executable, "-m", "jaxseg.predict", *map(str, args)],
            cwd=REPO,
            env=subprocess_env(compilation_cache),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def demo_argv():
    return demo_args
