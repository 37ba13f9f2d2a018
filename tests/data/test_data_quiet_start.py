"""First contact: importing jaxseg and preparing a dataset prints no TensorFlow/absl start-up
notices and one line about the preparation (TFDS's banner and progress bars are silenced)."""

import os
import subprocess
import sys

SCRIPT = """
import sys
from jaxseg.data import demo
demo.prepare_demo(sys.argv[1], num_train=2, num_val=1, image_size=(24, 32))
import tensorflow as tf
print("TF", tf.constant(1).numpy())  # TF really ran
"""

NOISE = (
    "oneDNN",
    "InitializeLog",
    "cpu_feature_guard",
    "Downloading and preparing",
    "Generating",
    "Shuffling",
    "Subsequent calls",
    "incomplete.",
)


def test_dataset_preparation_prints_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "JAXSEG_"))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    for noise in NOISE:
        assert noise not in output, output[-3000:]
    lines = [line for line in output.replace("\r", "\n").splitlines() if line.strip()]
    assert done.stdout.strip() == "TF 1"
    (line,) = [line for line in lines if line != "TF 1"]  # exactly one line besides ours
    assert line.startswith("Preparing voc_segmentation/2012 in ") and "(once)" in line
