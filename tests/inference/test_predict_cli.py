"""`python -m jaxseg.predict` end to end: a tiny experiment, a run folder (run.json and a
checkpoint saved by the training engine's `Checkpoints`), generated images (grey, RGBA,
palette, odd sizes) and bad input."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxseg import predict, train, viz
from jaxseg.experiment import load_segmenter, runs

EXPERIMENT = """
import dataclasses

import flax.linen as nn

from jaxseg import experiment
from jaxseg.data import get_dataset_info


class TinySegmenter(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, images, train: bool = False):
        # 1x1 convs: each pixel's logits depend on that pixel only, so bucket padding is harmless
        x = nn.relu(nn.Conv(8, (1, 1))(images))
        return nn.Conv(self.num_classes, (1, 1))(x)


def get_config():
    config = experiment.base_config()
    config.dataset = "voc_segmentation/2012"
    config.num_classes = {num_classes}
    config.crop_size = 16
    config.normalization = "inception"  # images / 127.5 - 1
    return config


def build_model(config):
    return TinySegmenter(num_classes=config.num_classes)


def dataset(config):
    voc = get_dataset_info("voc")
    n = config.num_classes
    return dataclasses.replace(
        voc, num_classes=n, class_names=voc.class_names[:n], palette=voc.palette[:n]
    )


EXPERIMENT = experiment.Experiment(
    file=__file__,
    get_config=get_config,
    demo_config=experiment.demo_defaults,
    model=build_model,
    train_model=build_model,
    loss=experiment.cross_entropy,
    batch_transform=None,
    dataset=dataset,
    normalize=experiment.normalize,
    initialize=experiment.init_from_pretrained,
    eval_settings=(),
)
"""


def _write_experiment(path: Path, num_classes: int) -> Path:
    path.write_text(textwrap.dedent(EXPERIMENT.format(num_classes=num_classes)))
    return path


def _save_run(workdir: Path, experiment_file: Path, params, step: int = 7):
    """A run folder as training leaves it: run.json and one checkpoint of `params`."""
    exp = runs.import_experiment(experiment_file)
    config = exp.get_config()
    model = exp.model(config)
    tx = train.make_optimizer(config.optimizer, config.num_train_steps)
    state = train.TrainState.create(
        apply_fn=model.apply, params=params, tx=tx, batch_stats={}
    ).replace(step=jnp.asarray(step, jnp.int32))
    workdir.mkdir(parents=True, exist_ok=True)
    runs.write_run(workdir, exp, config, demo=False, model_name=type(model).__name__)
    checkpoints = train.Checkpoints(workdir / "checkpoints", async_save=False)
    checkpoints.save(step, state, train.model_signature(state))
    checkpoints.close()
    return exp, config, model


def _params(num_classes: int, seed: int = 1):
    # Weights from NumPy (compiling Flax init costs seconds on CPU); large enough that all
    # classes occur in predictions.
    rng = np.random.default_rng(seed)
    shapes = {"Conv_0": ((1, 1, 3, 8), (8,)), "Conv_1": ((1, 1, 8, num_classes), (num_classes,))}
    return {
        name: {
            "kernel": rng.normal(0, 2, k).astype(np.float32),
            "bias": rng.normal(0, 1, b).astype(np.float32),
        }
        for name, (k, b) in shapes.items()
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder with run.json and one checkpoint (step 7) of the 3-class experiment."""
    root = tmp_path_factory.mktemp("run")
    experiment = _write_experiment(root / "tiny_voc.py", num_classes=3)
    params = _params(3)
    _, config, model = _save_run(root / "workdir", experiment, params)
    return {
        "root": root,
        "experiment": experiment,
        "workdir": root / "workdir",
        "model": model,
        "config": config,
        "params": params,
    }


@pytest.fixture(scope="module")
def inputs(run):
    """Folder of generated images of several modes and odd sizes, plus two non-images."""
    folder = run["root"] / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (33, 45, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "odd.png")
    Image.fromarray(rng.integers(0, 256, (17, 23), dtype=np.uint8)).save(folder / "grey.png")
    rgba = rng.integers(0, 256, (30, 20, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(folder / "alpha.png")
    Image.fromarray(rgb[:21, :31]).convert("P").save(folder / "paletted.gif")
    Image.fromarray(rgb[:9, :40]).save(folder / "photo.jpg", quality=95)
    Image.fromarray(rng.integers(0, 4096, (12, 19), dtype=np.uint16)).save(folder / "deep.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.png").write_bytes(b"\x00garbage")
    return folder


def _expected_labels(run, image_path: Path) -> np.ndarray:
    """Independent path: PIL's RGB conversion, the run's [-1, 1] inputs, plain model.apply."""
    image = np.asarray(Image.open(image_path).convert("RGB"), np.float32)
    x = image[None] / 127.5 - 1.0
    logits = run["model"].apply({"params": run["params"]}, jnp.asarray(x))
    return np.asarray(jnp.argmax(logits[0], axis=-1))


def _cli(run, inputs, output, *extra):
    argv = ["--workdir", str(run["workdir"])]
    return predict.main(argv + ["--input", str(inputs), "--output", str(output), *extra])


def test_folder_end_to_end(run, inputs, tmp_path, capsys):
    output = tmp_path / "out"
    assert _cli(run, inputs, output, "--flip") == 0
    err = capsys.readouterr().err
    assert "skipped 2 non-image" in err and "notes.txt" in err and "fake.png" in err
    stems = ["odd", "grey", "alpha", "paletted", "photo", "deep"]
    expected_files = {f"{s}.png" for s in stems} | {f"{s}_overlay.jpg" for s in stems}
    assert set(os.listdir(output)) == expected_files
    for name in ["odd.png", "grey.png", "alpha.png", "paletted.gif", "photo.jpg"]:
        source = Image.open(inputs / name)
        stem = Path(name).stem
        prediction = Image.open(output / f"{stem}.png")
        assert prediction.mode == "P" and prediction.size == source.size
        assert prediction.getpalette()[:6] == [0, 0, 0, 128, 0, 0]  # VOC colours
        labels = np.asarray(prediction)
        # flip TTA of a per-pixel model changes nothing, so this is exactly the plain argmax
        np.testing.assert_array_equal(labels, _expected_labels(run, inputs / name))
        overlay = Image.open(output / f"{stem}_overlay.jpg")
        assert overlay.mode == "RGB" and overlay.size == source.size
    assert len(np.unique(np.asarray(Image.open(output / "odd.png")))) == 3
    assert Image.open(output / "deep.png").size == (19, 12)  # 16-bit grey, rescaled to 8 bits


def test_single_file_multiscale_and_sliding_window(run, inputs, tmp_path):
    output = tmp_path / "out"
    args = ["--scales", "1.0", "--sliding-window", "16", "--stride", "8x5"]
    assert _cli(run, inputs / "odd.png", output, *args) == 0
    assert sorted(os.listdir(output)) == ["odd.png", "odd_overlay.jpg"]
    labels = np.asarray(Image.open(output / "odd.png"))
    np.testing.assert_array_equal(labels, _expected_labels(run, inputs / "odd.png"))
    assert _cli(run, inputs / "grey.png", output, "--scales", "0.5", "1.5") == 0
    assert Image.open(output / "grey.png").size == (23, 17)


def test_exported_runtime_gives_the_same_labels(run, inputs, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("jax2onnx")
    output = tmp_path / "out"
    assert _cli(run, inputs / "odd.png", output, "--runtime", "onnxruntime") == 0
    labels = np.asarray(Image.open(output / "odd.png"))
    np.testing.assert_array_equal(labels, _expected_labels(run, inputs / "odd.png"))
    with pytest.raises(SystemExit) as exit_info:
        _cli(run, inputs / "odd.png", tmp_path / "other", "--runtime", "tensorrt")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'tensorrt'" in err and "jax" in err and "onnxruntime" in err and "litert" in err
    assert not (tmp_path / "other").exists()


def test_failed_image_leaves_no_output(run, inputs, tmp_path, monkeypatch, capsys):
    real_save = viz.save_image

    def failing_overlay(path, image, **kwargs):
        if "alpha" in Path(path).name:
            raise OSError("disk full")
        return real_save(path, image, **kwargs)

    monkeypatch.setattr(viz, "save_image", failing_overlay)
    output = tmp_path / "out"
    assert _cli(run, inputs, output) == 1
    err = capsys.readouterr().err
    assert "disk full" in err and "1 failed" in err
    names = os.listdir(output)
    assert not [n for n in names if n.startswith("alpha")]  # its index PNG was removed too
    assert "odd.png" in names and "odd_overlay.jpg" in names
    assert not [n for n in names if n.endswith(".tmp")]


def test_missing_workdir_run_record_and_checkpoint(run, inputs, tmp_path, capsys):
    argv = ["--input", str(inputs)]
    output = tmp_path / "out"
    assert predict.main(argv + ["--workdir", str(tmp_path / "nope"), "--output", str(output)]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert predict.main(argv + ["--workdir", str(empty), "--output", str(output)]) == 2
    assert "has no run.json" in capsys.readouterr().err
    shutil.copy(run["workdir"] / "run.json", empty / "run.json")
    assert predict.main(argv + ["--workdir", str(empty), "--output", str(output)]) == 2
    assert "no checkpoints/ folder" in capsys.readouterr().err
    (empty / "checkpoints").mkdir()
    assert predict.main(argv + ["--workdir", str(empty), "--output", str(output)]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    code = predict.main(
        argv + ["--workdir", str(run["workdir"]), "--output", str(output), "--checkpoint", "3"]
    )
    assert code == 2
    assert "no checkpoint for step 3" in capsys.readouterr().err
    assert not output.exists()


def test_run_record_checkpoint_mismatch(run, inputs, tmp_path, capsys):
    """A run.json whose experiment builds another model than its checkpoint holds."""
    workdir = tmp_path / "mixed"
    shutil.copytree(run["workdir"] / "checkpoints", workdir / "checkpoints")
    other = _write_experiment(tmp_path / "tiny_voc.py", num_classes=5)
    exp = runs.import_experiment(other)
    runs.write_run(workdir, exp, exp.get_config(), demo=False, model_name="TinySegmenter")
    argv = ["--workdir", str(workdir), "--input", str(inputs), "--output", str(tmp_path / "o")]
    assert predict.main(argv) == 2
    err = capsys.readouterr().err
    assert "the parameters differ" in err and "Conv_1/kernel: checkpoint [[1, 1, 8, 3]" in err
    assert not (tmp_path / "o").exists()


def test_config_overrides_only_for_evaluation_settings(run, inputs, tmp_path, capsys):
    argv = ["--workdir", str(run["workdir"])]
    argv += ["--input", str(inputs / "odd.png"), "--output", str(tmp_path / "out")]
    # Another class count would be another model: refused, naming both values.
    assert predict.main(argv + ["--config.num_classes=4"]) == 2
    assert "config.num_classes: the run has 3, the command line 4" in capsys.readouterr().err
    assert predict.main(argv + ["--config.normalization=imagenet"]) == 2
    assert "the run has 'inception', the command line 'imagenet'" in capsys.readouterr().err
    assert predict.main(argv + ["--config.no_such_key=1"]) == 2
    assert "config.no_such_key: the run has '<no such key>'" in capsys.readouterr().err
    assert predict.main(argv + ["--config.crop_size=16", "--config.sliding_window=8"]) == 0
    assert predict.main(argv + ["--config.eval_scales=(0.5,1.0)", "--overwrite"]) == 0
    with pytest.raises(SystemExit):
        predict.main(argv + ["--frobnicate"])


def test_run_record_naming_a_file_without_an_experiment(run, inputs, tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config():\n    return {}\n")
    workdir = tmp_path / "bad_run"
    workdir.mkdir()
    record = json.loads((run["workdir"] / "run.json").read_text())
    record.update(experiment="bad", file=str(bad))
    (workdir / "run.json").write_text(json.dumps(record))
    argv = ["--workdir", str(workdir), "--input", str(inputs), "--output", str(tmp_path / "o")]
    assert predict.main(argv) == 2
    assert "builds no EXPERIMENT" in capsys.readouterr().err


def test_module_entry_point(run, inputs, tmp_path):
    output = tmp_path / "out"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    command = [
        sys.executable,
        "-m",
        "jaxseg.predict",
        "--workdir",
        str(run["workdir"]),
        "--input",
        str(inputs / "alpha.png"),
        "--output",
        str(output),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(output)) == ["alpha.png", "alpha_overlay.jpg"]
    assert Image.open(output / "alpha.png").size == (20, 30)


def test_load_segmenter_and_export_use_the_run(run, tmp_path):
    """`load_segmenter` rebuilds the run's model, weights, normalisation and palette; its
    model and variables export to StableHLO computing the same logits."""
    from jaxseg import export

    seg = load_segmenter(run["workdir"], "latest")
    assert seg.step == 7 and seg.run_config.normalization == "inception"
    assert seg.class_names == ("background", "aeroplane", "bicycle")
    np.testing.assert_array_equal(seg.palette[1], [128, 0, 0])
    image = np.random.default_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    want = run["model"].apply({"params": run["params"]}, jnp.asarray(image[None] / 127.5 - 1.0))
    np.testing.assert_allclose(seg.logits(image), np.asarray(want)[0], rtol=1e-5, atol=1e-5)

    path = tmp_path / "model.bin"
    export.export_stablehlo(seg.model, seg.variables, path, height=16, width=16)
    reloaded = export.load_stablehlo(path)
    got = reloaded(jnp.asarray(image[None] / 127.5 - 1.0, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_load_segmenter_applies_the_weight_average_of_an_ema_run(tmp_path):
    """A run trained with `ema_decay` is used with its averaged weights, as its evaluation was."""
    from jaxseg.train.optim import ParamsEmaState

    path = _write_experiment(tmp_path / "tiny_voc.py", num_classes=3)
    text = path.read_text().replace(
        'config.normalization = "inception"',
        'config.normalization = "inception"\n    config.ema_decay = 0.5',
    )
    path.write_text(text)
    exp = runs.import_experiment(path)
    config = exp.get_config()
    model = exp.model(config)
    raw, average = _params(3, seed=1), _params(3, seed=2)
    tx = train.make_train_optimizer(config)

    def with_average(node):
        if isinstance(node, ParamsEmaState):
            return ParamsEmaState(count=jnp.asarray(3, jnp.int32), ema=average)
        return node

    opt_state = jax.tree_util.tree_map(
        with_average, tx.init(raw), is_leaf=lambda x: isinstance(x, ParamsEmaState)
    )
    state = train.TrainState(
        step=jnp.asarray(3, jnp.int32),
        apply_fn=model.apply,
        params=raw,
        tx=tx,
        opt_state=opt_state,
        batch_stats={},
    )
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    runs.write_run(workdir, exp, config, demo=False, model_name=type(model).__name__)
    checkpoints = train.Checkpoints(workdir / "checkpoints", async_save=False)
    checkpoints.save(3, state, train.model_signature(state))
    checkpoints.close()

    seg = load_segmenter(workdir, "latest")
    image = np.random.default_rng(6).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    x = jnp.asarray(image[None] / 127.5 - 1.0)
    want = np.asarray(model.apply({"params": average}, x))[0]
    np.testing.assert_allclose(seg.logits(image), want, rtol=1e-5, atol=1e-5)
    raw_logits = np.asarray(model.apply({"params": raw}, x))[0]
    assert np.abs(raw_logits - want).max() > 1e-2  # the test can tell the two apart


def test_moved_experiment_file_is_named_with_experiment(run, inputs, tmp_path, capsys):
    workdir = tmp_path / "moved"
    shutil.copytree(run["workdir"], workdir)
    record = json.loads((workdir / "run.json").read_text())
    record["file"] = str(tmp_path / "gone" / "tiny_voc.py")
    (workdir / "run.json").write_text(json.dumps(record))
    argv = ["--workdir", str(workdir), "--input", str(inputs / "odd.png")]
    assert predict.main(argv + ["--output", str(tmp_path / "a")]) == 2
    assert "gone/tiny_voc.py does not exist" in capsys.readouterr().err
    argv += ["--experiment", str(run["experiment"])]
    assert predict.main(argv + ["--output", str(tmp_path / "b")]) == 0
    labels = np.asarray(Image.open(tmp_path / "b" / "odd.png"))
    np.testing.assert_array_equal(labels, _expected_labels(run, inputs / "odd.png"))
    other = _write_experiment(tmp_path / "other_name.py", num_classes=3)
    assert predict.main(argv[:-1] + [str(other), "--output", str(tmp_path / "c")]) == 2
    assert "is a run of tiny_voc" in capsys.readouterr().err


def test_existing_outputs_are_listed_and_kept_unless_overwrite(run, inputs, tmp_path, capsys):
    output = tmp_path / "masks"
    output.mkdir()
    truth = np.full((33, 45), 2, np.uint8)
    Image.fromarray(truth).save(output / "odd.png")  # e.g. a ground-truth mask of the same name
    before = (output / "odd.png").read_bytes()
    assert _cli(run, inputs / "odd.png", output) == 2
    err = capsys.readouterr().err
    assert str(output / "odd.png") in err and "--overwrite" in err and "Nothing was written" in err
    assert (output / "odd.png").read_bytes() == before
    assert os.listdir(output) == ["odd.png"]  # not even the overlay was written

    assert _cli(run, inputs / "odd.png", output, "--overwrite") == 0
    labels = np.asarray(Image.open(output / "odd.png"))
    np.testing.assert_array_equal(labels, _expected_labels(run, inputs / "odd.png"))


def test_same_stem_inputs_never_overwrite_each_other(tmp_path):
    names = ["a.jpg", "a.png", "a_png.jpg", "b.png"]
    stems = [stem for _, stem in predict.plan_outputs([tmp_path / n for n in names])]
    assert len(set(stems)) == len(stems) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scales", "0"], "--scales 0.0: every scale must be > 0"),
        (["--scales", "1", "-0.5"], "every scale must be > 0"),
        (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
        (["--bucket", "-5"], "--bucket -5: sizes must be >= 1"),
        (["--bucket", "32", "0"], "sizes must be >= 1"),
        (["--sliding-window", "64", "--stride", "100"], "--stride 100x100 is larger than"),
        (["--stride", "8"], "--stride needs --sliding-window"),
        (["--alpha", "1.5"], "--alpha 1.5: must be between 0 and 1"),
    ],
)
def test_numeric_options_are_checked_before_any_work(inputs, tmp_path, capsys, args, message):
    # A workdir that does not exist: the option must be refused before it.
    argv = ["--workdir", str(tmp_path / "nope")]
    output = tmp_path / "out"
    argv += ["--input", str(inputs), "--output", str(output), *args]
    assert predict.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "does not exist" not in err
    assert not output.exists()


def test_unwritable_output_is_a_short_error(run, inputs, tmp_path, capsys, monkeypatch):
    assert _cli(run, inputs / "odd.png", inputs / "odd.png" / "sub") == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: cannot create --output {inputs / 'odd.png' / 'sub'}: " + (
        f"{inputs / 'odd.png'} is a file"
    )
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # The tests may run as root, which ignores permission bits: deny as the kernel would.
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode)
    )
    assert _cli(run, inputs / "odd.png", locked / "new") == 2
    err = capsys.readouterr().err
    assert "permission denied" in err and str(locked / "new") in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert os.listdir(locked) == []


def test_exif_rotated_photo_is_segmented_as_displayed(run, tmp_path):
    stored = np.random.default_rng(5).integers(0, 256, (20, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF Orientation: rotate 90 degrees clockwise to display
    photo = tmp_path / "portrait.jpg"
    Image.fromarray(stored).save(photo, quality=95, exif=exif.tobytes())
    output = tmp_path / "out"
    assert _cli(run, photo, output) == 0
    labels = np.asarray(Image.open(output / "portrait.png"))
    assert labels.shape == (40, 20)  # the displayed size, not the stored 20x40
    # Independent path: the decoded stored pixels, turned with numpy, through model.apply.
    decoded = np.asarray(Image.open(photo).convert("RGB"))  # PIL ignores EXIF here
    displayed = np.rot90(decoded, k=-1).astype(np.float32)
    x = displayed[None] / 127.5 - 1.0  # the run's [-1, 1] inputs
    logits = run["model"].apply({"params": run["params"]}, jnp.asarray(x))
    np.testing.assert_array_equal(labels, np.asarray(jnp.argmax(logits[0], axis=-1)))
    assert Image.open(output / "portrait_overlay.jpg").size == (20, 40)


def test_legend_lists_the_predicted_classes_under_the_overlay(run, inputs, tmp_path):
    source = inputs / "odd.png"
    assert _cli(run, source, tmp_path / "plain") == 0
    assert _cli(run, source, tmp_path / "legend", "--legend") == 0
    labels = _expected_labels(run, source)
    plain = np.asarray(Image.open(tmp_path / "plain" / "odd_overlay.jpg"), np.int32)
    shown = np.asarray(Image.open(tmp_path / "legend" / "odd_overlay.jpg"), np.int32)
    height, width = labels.shape
    # the overlay on top (JPEG: nearly equal), padded to the legend's 320 pixels, legend below
    assert shown.shape[1] == 320 and shown.shape[0] > height
    assert np.abs(shown[:height, :width] - plain).mean() < 4
    key = shown[height:]
    palette = viz.voc_palette(256).astype(np.int32)
    for k in (1, 2):  # VOC's dark red and green: a 13x13 swatch each (JPEG: within 40)
        assert k in labels
        near = np.abs(key - palette[k]).max(axis=-1) <= 40
        assert 120 <= near.sum() <= 400, (k, near.sum())
    for k in (3, 4):  # not predicted (3 classes): no swatch
        assert (np.abs(key - palette[k]).max(axis=-1) <= 40).sum() < 20


def test_class_names_and_palette_come_from_the_run_record(run, inputs, tmp_path, monkeypatch):
    """What training recorded in run.json (e.g. a folder dataset's classes) names and colours
    the predictions; the experiment's dataset is not consulted."""
    workdir = tmp_path / "run"
    shutil.copytree(run["workdir"], workdir)
    record = json.loads((workdir / "run.json").read_text())
    names, palette = ["sky", "road", "car"], [[10, 200, 30], [200, 10, 180], [250, 250, 0]]
    record["classes"] = {"names": names, "palette": palette}
    (workdir / "run.json").write_text(json.dumps(record))
    experiment = runs.import_experiment(run["experiment"])

    def no_dataset(config):
        raise AssertionError("the dataset was consulted")

    experiment = dataclasses.replace(experiment, dataset=no_dataset)
    segmenter = load_segmenter(workdir, experiment=experiment)
    assert segmenter.class_names == tuple(names)
    np.testing.assert_array_equal(segmenter.palette, np.asarray(palette, np.uint8))
    output = tmp_path / "out"
    argv = ["--workdir", str(workdir), "--experiment", str(run["experiment"])]
    monkeypatch.setattr(runs, "import_experiment", lambda path: experiment)
    assert predict.main(argv + ["--input", str(inputs / "odd.png"), "--output", str(output)]) == 0
    assert Image.open(output / "odd.png").getpalette()[:9] == sum(palette, [])
