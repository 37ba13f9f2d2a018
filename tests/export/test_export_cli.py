"""`jaxseg-export` end to end: a DeepLab release checkpoint (official layout, random weights)
and a training run folder exported through the command, the files run in onnxruntime, LiteRT
and JAX and compared with TensorFlow's official graph or the Flax model; then bad input.

The release is the MobileNetV2 VOC checkpoint written by TensorFlow with random weights
(`tests/weights/test_tf_slim.py`'s `Official`, which also computes the official graph's
logits with TensorFlow ops). The run is the tiny one of `tests/inference/test_predict_cli.py`.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")
pytest.importorskip("jax2onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from jaxseg.export import __main__ as command  # noqa: E402
from jaxseg.export import metadata  # noqa: E402
from jaxseg.export import onnx as onnx_format  # noqa: E402
from jaxseg.export import tflite as tflite_format  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]
NAME = "mobilenetv2_coco_voc_trainaug"
SIZE = 65


def _load(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


tf_slim_tests = _load("_tf_slim_official", TESTS / "weights" / "test_tf_slim.py")
predict_tests = _load("_predict_cli_run", TESTS / "inference" / "test_predict_cli.py")


def _relative(ours, reference) -> float:
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(archive, image uint8 [65, 65, 3], official logits [65, 65, 21]) with a module-wide
    conversion cache, so the checkpoint is converted once."""
    root = tmp_path_factory.mktemp("release")
    official = tf_slim_tests.Official(seed=41)
    arch = dataclasses.replace(tf_slim_tests.MOBILENETV2.arch, num_classes=21)
    case = dataclasses.replace(tf_slim_tests.MOBILENETV2, arch=arch)
    image = np.random.default_rng(5).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    logits = tf_slim_tests.official_logits(official, case, image, (SIZE, SIZE), 16)
    # Background competes with the other classes, so that labels vary over the image.
    margin = np.max(logits[..., 1:], -1) - logits[..., 0]
    official.variables["logits/semantic/biases"][0] += np.median(margin)
    reference = tf_slim_tests.official_logits(official, case, image, (SIZE, SIZE), 16)
    folder = root / "deeplabv3_mnv2_pascal_train_aug"
    folder.mkdir()
    tf_slim_tests.write_checkpoint(official.variables, folder / "model.ckpt-30000")
    archive = root / "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXSEG_CACHE", str(root / "cache"))
        yield archive, image, reference


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder (run.json, checkpoint of step 7) of the 3-class 1x1-conv experiment, with
    its parameters for an independent forward pass."""
    root = tmp_path_factory.mktemp("run")
    experiment = predict_tests._write_experiment(root / "tiny_voc.py", num_classes=3)
    params = predict_tests._params(3)
    _, _, model = predict_tests._save_run(root / "workdir", experiment, params)
    return root / "workdir", model, params


def _expected_run_logits(run, images: np.ndarray) -> np.ndarray:
    """The run's experiment normalises as Inception does: x / 127.5 - 1."""
    _, model, params = run
    x = jnp.asarray(images, jnp.float32) / 127.5 - 1.0
    return np.asarray(model.apply({"params": params}, x))


def _export(source: list[str], fmt: str, output: Path, *extra: str) -> int:
    return command.main([*source, "--format", fmt, "--output", str(output), *extra])


def _release_args(release) -> list[str]:
    return ["--model", f"zoo:{NAME}", "--checkpoint", str(release[0]), "--size", str(SIZE)]


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_release_exports_and_matches_the_official_graph(release, fmt, tmp_path, capsys):
    archive, image, reference = release
    output = tmp_path / f"deeplab.{fmt}"
    assert _export(_release_args(release), fmt, output) == 0
    assert sorted(os.listdir(tmp_path)) == sorted([output.name, output.name + ".json"])
    err = capsys.readouterr().err
    runtime = "onnxruntime" if fmt == "onnx" else "ai-edge-litert"
    assert f"checked in {runtime}" in err
    run = onnx_format.run if fmt == "onnx" else tflite_format.run
    logits, labels = run(str(output), image[None])
    assert _relative(logits[0], reference) <= 1e-4
    top2 = np.sort(reference, -1)[..., -2:]
    decided = top2[..., 1] - top2[..., 0] > 1e-3
    np.testing.assert_array_equal(labels[0][decided], np.argmax(reference, -1)[decided])
    assert len(np.unique(labels)) > 1
    meta = json.loads(metadata.json_path(output).read_text())
    # VOC's label set and colour map (VOC devkit VOCcode/labelcolormap: 1 = (128, 0, 0)).
    assert meta["class_names"][0] == "background" and meta["class_names"][15] == "person"
    assert len(meta["class_names"]) == 21 and meta["palette"][1] == [128, 0, 0]
    assert meta["size"] == [SIZE, SIZE] and meta["model"] == "DeepLabV3"
    assert meta["input"]["dtype"] == "uint8" and meta["pad_pixel"] == [127.5, 127.5, 127.5]
    assert meta["source"] == {
        "kind": "zoo",
        "name": NAME,
        "checkpoint": str(archive.resolve()),
        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
    }
    if fmt == "onnx":
        import onnx

        assert meta["batch"] == "dynamic" and meta["opset"] == 18
        # MobileNetV2's ReLU6 as one Clip per layer (which onnxruntime fuses into the conv).
        ops = [node.op_type for node in onnx.load(str(output)).graph.node]
        assert ops.count("Clip") == 34 and "Min" not in ops
        assert meta["outputs"]["logits"]["shape"] == [None, SIZE, SIZE, 21]
    else:
        assert meta["batch"] == 1 and meta["int8"] is False
        assert meta["outputs"]["labels"]["shape"] == [1, SIZE, SIZE]
    assert meta["check"]["max_relative_logits_error"] <= 1e-4


def test_run_exports_with_its_step_and_reloads_in_jax(run, tmp_path, capsys):
    from jaxseg.export import load_stablehlo

    workdir = run[0]
    images = np.random.default_rng(2).integers(0, 256, (3, 16, 20, 3), dtype=np.uint8)
    expected = _expected_run_logits(run, images)
    for fmt, name in [("onnx", "tiny.onnx"), ("stablehlo", "tiny.bin")]:
        output = tmp_path / "exports" / name  # the folder is created
        args = ["--workdir", str(workdir), "--size", "16x20"]
        assert _export(args, fmt, output) == 0, capsys.readouterr().err
        meta = json.loads(metadata.json_path(output).read_text())
        assert meta["source"] == {
            "kind": "run",
            "workdir": str(workdir.resolve()),
            "checkpoint": "best",
            "step": 7,
        }
        assert meta["class_names"] == ["background", "aeroplane", "bicycle"]
        assert meta["size"] == [16, 20] and meta["batch"] == "dynamic"
        if fmt == "onnx":
            logits, labels = onnx_format.run(str(output), images)
        else:
            logits, labels = (np.asarray(a) for a in load_stablehlo(output)(images))
        assert _relative(logits, expected) <= 1e-4
        np.testing.assert_array_equal(labels, np.argmax(expected, -1))


def test_savedmodel_folder_replaces_an_old_one_with_overwrite(run, tmp_path):
    import tensorflow as tf

    output = tmp_path / "saved"
    output.mkdir()
    (output / "old.txt").write_text("an older export")
    args = ["--workdir", str(run[0]), "--size", "16"]
    assert _export(args, "savedmodel", output) == 2
    assert os.listdir(output) == ["old.txt"]
    assert _export(args, "savedmodel", output, "--overwrite") == 0
    assert sorted(os.listdir(tmp_path)) == ["saved", "saved.json"]
    assert "old.txt" not in os.listdir(output)
    images = np.random.default_rng(3).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    serve = tf.saved_model.load(str(output)).signatures["serving_default"]
    result = serve(images=tf.constant(images))
    expected = _expected_run_logits(run, images)
    assert _relative(result["logits"].numpy(), expected) <= 1e-4
    np.testing.assert_array_equal(result["labels"].numpy(), np.argmax(expected, -1))


def test_int8_tflite_reports_label_agreement_on_the_calibration_images(run, tmp_path, capsys):
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    rng = np.random.default_rng(4)
    for i in range(4):  # other sizes than the export's: resized to it
        Image.fromarray(rng.integers(0, 256, (20 + i, 18, 3), dtype=np.uint8)).save(
            calibration / f"{i}.png"
        )
    (calibration / "notes.txt").write_text("not an image")
    output = tmp_path / "tiny_int8.tflite"
    args = ["--workdir", str(run[0]), "--size", "16", "--int8", "--calibration", str(calibration)]
    assert _export(args, "tflite", output) == 0
    err = capsys.readouterr().err
    meta = json.loads(metadata.json_path(output).read_text())
    assert meta["int8"] is True and meta["calibration"]["images"] == 4
    # The agreement the command reports is the int8 file's, measured here independently.
    images = np.stack(
        [
            np.asarray(
                Image.open(calibration / f"{i}.png").resize((16, 16), Image.Resampling.BILINEAR)
            )
            for i in range(4)
        ]
    )
    _, labels = tflite_format.run(str(output), images)
    agreement = np.mean(labels == np.argmax(_expected_run_logits(run, images), -1))
    assert meta["calibration"]["label_agreement"] == pytest.approx(agreement)
    assert agreement > 0.8
    assert f"{100 * agreement:.2f}% of the pixels of the 4 calibration image(s)" in err


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "caffe", "--size", "16"], "--format 'caffe' is not one of onnx, tflite"),
        (["--format", "onnx", "--size", "0"], "--size '0': expected N or HxW with positive"),
        (["--format", "onnx", "--size", "big"], "--size 'big': expected N or HxW"),
        (["--format", "onnx", "--size", "1x2x3"], "--size '1x2x3': expected N or HxW"),
        (["--format", "tflite", "--size", "16", "--batch", "dynamic"], "give --batch N"),
        (["--format", "onnx", "--size", "16", "--batch", "0"], "--batch must be a positive"),
        (["--format", "onnx", "--size", "16", "--batch", "two"], "--batch 'two'"),
        (["--format", "onnx", "--size", "16", "--int8"], "--int8 is for --format tflite"),
        (["--format", "tflite", "--size", "16", "--int8"], "--int8 needs --calibration DIR"),
        (["--format", "tflite", "--size", "16", "--opset", "18"], "--opset is for --format"),
    ],
)
def test_bad_options_are_refused_before_loading(run, tmp_path, capsys, args, message):
    output = tmp_path / "out" / "model"
    code = command.main(["--workdir", str(run[0]), "--output", str(output), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_unknown_release_and_size_the_model_refuses(release, tmp_path, capsys):
    output = tmp_path / "m.onnx"
    assert command.main(["--model", "deeplab", "--format", "onnx", "--size", "65",
                         "--output", str(output)]) == 2  # fmt: skip
    assert "write zoo:NAME" in capsys.readouterr().err
    assert command.main(["--model", "zoo:nope", "--format", "onnx", "--size", "65",
                         "--output", str(output)]) == 2  # fmt: skip
    assert "'nope'" in capsys.readouterr().err
    args = ["--model", f"zoo:{NAME}", "--checkpoint", str(release[0]), "--size", "24"]
    assert _export(args, "onnx", output) == 2
    err = capsys.readouterr().err
    assert "--size 24x24: DeepLabV3" in err and "32x32" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "fmt, module, extra", [("onnx", "jax2onnx", "onnx"), ("tflite", "ai_edge_litert", "tflite")]
)
def test_missing_extra_names_the_install_line(
    run, tmp_path, capsys, monkeypatch, fmt, module, extra
):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    assert _export(["--workdir", str(run[0]), "--size", "16"], fmt, tmp_path / "m") == 2
    err = capsys.readouterr().err
    assert f"pip install 'jaxseg[{extra}]'" in err and repr(module) in err
    assert os.listdir(tmp_path) == []


def test_existing_output_is_kept_unless_overwrite(run, tmp_path, capsys):
    output = tmp_path / "model.onnx"
    output.write_text("the user's file")
    args = ["--workdir", str(run[0]), "--size", "16"]
    assert _export(args, "onnx", output) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_text() == "the user's file" and os.listdir(tmp_path) == ["model.onnx"]
    output.unlink()
    metadata.json_path(output).write_text("{}")  # the JSON alone is someone's file too
    assert _export(args, "onnx", output) == 2
    assert "model.onnx.json already exists" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["model.onnx.json"]
    output.write_text("the user's file")
    assert _export(args, "onnx", output, "--overwrite") == 0
    assert output.read_bytes()[:2] != b"th" and json.loads(metadata.json_path(output).read_text())
    assert sorted(os.listdir(tmp_path)) == ["model.onnx", "model.onnx.json"]


def test_unwritable_folder_and_file_in_the_way(run, tmp_path, capsys, monkeypatch):
    args = ["--workdir", str(run[0]), "--size", "16"]
    (tmp_path / "file").write_text("x")
    assert _export(args, "onnx", tmp_path / "file" / "m.onnx") == 2
    assert f"{tmp_path / 'file'} is a file" in capsys.readouterr().err
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # The tests may run as root, which ignores permission bits: deny as the kernel would.
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode)
    )
    assert _export(args, "onnx", locked / "new" / "m.onnx") == 2
    err = capsys.readouterr().err
    assert "permission denied" in err and str(locked / "new" / "m.onnx") in err
    assert os.listdir(locked) == []


def test_run_without_checkpoints_is_a_short_error(run, tmp_path, capsys):
    empty = tmp_path / "run"
    empty.mkdir()
    shutil.copy(run[0] / "run.json", empty / "run.json")
    output = tmp_path / "exports" / "m.onnx"
    assert _export(["--workdir", str(empty), "--size", "16"], "onnx", output) == 2
    err = capsys.readouterr().err
    assert "no checkpoints/ folder" in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "exports").exists()


def test_failure_while_writing_leaves_nothing_and_keeps_the_old_file(
    run, tmp_path, capsys, monkeypatch
):
    output = tmp_path / "new" / "model.onnx"
    output.parent.mkdir()
    output.write_text("old")

    def full_disk(meta):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(metadata, "dumps", full_disk)
    assert _export(["--workdir", str(run[0]), "--size", "16"], "onnx", output, "--overwrite") == 2
    assert "the disk is full" in capsys.readouterr().err
    assert os.listdir(output.parent) == ["model.onnx"] and output.read_text() == "old"


def test_operations_a_format_lacks_are_named_and_nothing_is_written(tmp_path):
    import flax.linen as nn
    import jax
    from jax.extend.core import Primitive

    from jaxseg import Segmenter
    from jaxseg.export import ConversionError, export_segmenter

    unknown = Primitive("no_converter_knows")
    unknown.def_abstract_eval(lambda x: x)

    class Odd(nn.Module):
        op: str

        @nn.compact
        def __call__(self, x, train=False):
            y = nn.Conv(2, (1, 1))(x)
            if self.op == "unknown":
                return unknown.bind(y)
            # No TFLite builtin counts bits.
            return y + jax.lax.population_count(y.astype(jnp.int32)).astype(y.dtype)

    # One Conv_0 either way; initialised where the op evaluates (the unknown one cannot).
    variables = Odd("popcount").init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    for op, fmt, named in [("unknown", "onnx", "'no_converter_knows'"),
                           ("popcount", "tflite", "tf.PopulationCount")]:  # fmt: skip
        model = Odd(op)
        seg = Segmenter(model, variables, normalize=lambda x: x, class_names=("a", "b"))
        with pytest.raises(ConversionError, match=named):
            export_segmenter(seg, tmp_path / f"odd.{fmt}", format=fmt, size=8)
        assert os.listdir(tmp_path) == []


def test_module_entry_point_and_console_script_share_main(tmp_path):
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "jaxseg.export", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--format" in result.stdout and "--int8" in result.stdout
    # Importing the package loads no converter or runtime (they come with the format used).
    heavy = ("tensorflow", "jax2onnx", "onnx", "onnxruntime", "ai_edge_litert")
    code = f"import sys, jaxseg.export; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]
    import tomllib

    with open(TESTS.parent / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts["jaxseg-export"] == "jaxseg.export.__main__:main"
