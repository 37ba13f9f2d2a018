"""Each benchmark script runs end to end at a tiny size and prints its table.

Speed is never asserted here (benchmarks print numbers; tests on a shared CI machine would be
flaky): these only keep the scripts alive as the library changes under them.
"""

import os
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str) -> str:
    env = dict(os.environ)
    # One real CPU device, as a user would run the script (conftest simulates 8 for tests).
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _table_header(stdout: str, first_columns: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(first_columns)]
    assert lines, f"no table starting with {first_columns!r} in:\n{stdout[-3000:]}"
    return lines[-1]


def _assert_context(stdout: str) -> None:
    for key in ("date:", "device:", "versions:", "command:", "load average"):
        assert key in stdout, f"missing {key!r} in:\n{stdout[-2000:]}"


def test_ops_benchmark_smoke():
    out = _run("ops.py")
    _assert_context(out)
    header = _table_header(out, "| section | op | impl |")
    assert "median ms" in header and "max |diff|" in header and "HLO" in header
    for section in ("| atrous |", "| transpose |", "| unpool |", "| resize |"):
        assert section in out
    # Our unpooling compiles without a scatter; the reference version does use one.
    unpool_rows = [line for line in out.splitlines() if line.startswith("| unpool | max_unpool")]
    ours = next(line for line in unpool_rows if "one-hot" in line)
    reference = next(line for line in unpool_rows if ".at[].set" in line)
    assert "scatter" not in ours and "scatter" in reference


def test_train_step_benchmark_smoke():
    out = _run(
        "train_step.py",
        "--model=UNet",
        "--num-classes=2",
        "--model-arg=base_features=4",
        "--model-arg=depth=2",
        "--model-arg=padding=SAME",
    )
    _assert_context(out)
    header = _table_header(out, "| model | res | batch | dtype |")
    for column in ("step ms", "img/s", "XLA GFLOP/img", "model GFLOP/img", "MFU", "XLA mem MiB"):
        assert column in header
    assert "| UNet" in out


def test_peers_benchmark_smoke():
    # Without keras-hub installed (the default requirements) only our side runs.
    out = _run("peers.py", "--peer=keras-hub")
    _assert_context(out)
    header = _table_header(out, "| framework | model |")
    assert "step ms" in header and "vs peer" in header
    assert "jaxseg (JAX/XLA)" in out


def test_tf_deeplab_peer_smoke():
    """Xception-65 v3+ (one middle-flow unit, 33x33 canvas) in TF ops and through the zoo's
    Segmenter: the script checks that the two logits agree before it times them."""
    pytest.importorskip("tensorflow")
    out = _run("peers.py", "--peer=tf-deeplab", "--ours", "zoo")
    _assert_context(out)
    assert "zoo vs TF: logits relative error" in out and "labels equal on" in out
    header = _table_header(out, "| framework | model |")
    assert "step ms" in header and "vs peer" in header
    assert "| TensorFlow " in out and "| jaxseg (JAX/XLA) | ours zoo" in out


def test_cpu_options_benchmark_smoke():
    out = _run("cpu_options.py", "--model=r50", "--variants", "segmenter", "constants")
    _assert_context(out)
    header = _table_header(out, "| variant | compile options |")
    assert "call ms" in header and "max rel diff" in header
    assert "| segmenter |" in out and "| constants |" in out


def test_export_runtimes_benchmark_smoke():
    """JAX, onnxruntime and LiteRT in one table, each row checked against JAX's logits."""
    out = _run("export_runtimes.py")
    _assert_context(out)
    header = _table_header(out, "| runtime |")
    assert "median ms" in header and "max rel. logit diff" in header
    for runtime in ("| jaxseg (JAX)", "| ONNX in onnxruntime", "| TFLite float32 in ai-edge"):
        assert runtime in out


def test_flops_counts_known_convolution_and_matmul():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import flops
        import jax.numpy as jnp
        from jax import lax

        n = 64
        x = jnp.zeros((2, n, n, 3))
        k = jnp.zeros((3, 3, 3, 16))
        w = jnp.zeros((16, 5))

        def net(x, k, w):
            y = lax.conv_general_dilated(
                x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            return y @ w

        counted = flops.count_flops(net, x, k, w)
        assert counted["conv"] == 2 * (2 * n * n * 16) * (3 * 9)
        assert counted["dot"] == 2 * (2 * n * n * 5) * 16
    finally:
        sys.path.remove(str(BENCHMARKS))
