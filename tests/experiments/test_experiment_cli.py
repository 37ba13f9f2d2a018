"""The experiment command line in-process: `--demo` and override precedence, and bad input
stopping with one message before anything compiles (8 simulated devices, see tests/conftest)."""

import importlib.util
import os
from pathlib import Path

import pytest

from jaxseg import experiment

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def load(name):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def v3plus():
    return load("deeplabv3plus_voc")


def parse(module, *args):
    command = experiment.parse_command_line(
        ["experiments/deeplabv3plus_voc.py", *args], module.EXPERIMENT
    )
    return command.config, command.workdir, command.mode, command.demo, command.checkpoint


def test_paper_settings_by_default_demo_settings_with_demo_overrides_on_top(v3plus):
    config, workdir, mode, demo, checkpoint = parse(v3plus)
    assert (config.crop_size, config.model.backbone, config.batch_size) == (513, "xception65", 16)
    assert (workdir, mode, demo, checkpoint) == (
        os.path.join("runs", "deeplabv3plus_voc"),
        "train",
        False,
        "best",
    )
    config, workdir, *_ = parse(v3plus, "--demo")
    assert (config.crop_size, config.model.backbone, config.dataset) == (
        128,
        "resnet50",
        "voc_segmentation/2012",
    )
    assert workdir == os.path.join("runs", "deeplabv3plus_voc_demo")
    # An explicit override wins over the demo's value, whatever the flag order.
    for args in (("--demo", "--config.crop_size=96"), ("--config.crop_size=96", "--demo")):
        config, *_ = parse(v3plus, *args, "--config.model.base_width=8", "--workdir=w")
        assert (config.crop_size, config.model.base_width, config.batch_size) == (96, 8, 16)
    config, workdir, mode, _, checkpoint = parse(v3plus, "--mode=eval", "--checkpoint=latest")
    assert (mode, checkpoint) == ("eval", "latest")


def test_unknown_config_key_and_unknown_flag_exit_2(v3plus, capsys):
    with pytest.raises(SystemExit) as stop:
        parse(v3plus, "--demo", "--config.optimizer.learnig_rate=0.1")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "unknown config key" in err and "optimizer.learning_rate" in err
    with pytest.raises(SystemExit) as stop:
        parse(v3plus, "--mdoe=eval")
    assert stop.value.code == 2


def test_help_shows_the_docstring(v3plus, capsys):
    with pytest.raises(SystemExit) as stop:
        experiment.parse_command_line(["x.py", "--help"], v3plus.EXPERIMENT)
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "python experiments/deeplabv3plus_voc.py --demo" in out and "--mode" in out


@pytest.mark.parametrize("demo", [[], ["--demo"]])
def test_crop_size_takes_an_int_or_height_width(v3plus, demo):
    config = parse(v3plus, *demo, "--config.crop_size=(96,128)")[0]
    assert tuple(config.crop_size) == (96, 128)
    assert parse(v3plus, *demo, "--config.crop_size=96")[0].crop_size == 96


def _flat(tree, prefix="config"):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}.{key}")
        else:
            yield f"{prefix}.{key}", value


@pytest.mark.parametrize("demo", [False, True])
def test_help_lists_every_flag_and_config_key_with_its_value(v3plus, capsys, demo):
    argv = ["x.py", "--help"] + (["--demo"] if demo else [])
    with pytest.raises(SystemExit) as stop:
        experiment.parse_command_line(argv, v3plus.EXPERIMENT)
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--workdir", "--mode", "--demo", "--checkpoint"):
        assert f"\n  {flag}: " in out, flag
    config = v3plus.demo_config(v3plus.get_config()) if demo else v3plus.get_config()
    keys = dict(_flat(config.to_dict()))
    assert len(keys) > 40
    for key, value in keys.items():
        assert f"\n  --{key}={value!r}\n" in out, key
    assert ("--config.crop_size=128" in out) == demo  # the demo's crop, not the paper's 513


def _main(module, argv):
    return experiment.main(module.EXPERIMENT, argv=["experiments/x.py", *argv])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.crop_size=16"], "crop_size=16 is too small for DeepLabV3Plus"),
        (["--config.batch_size=12"], "batch_size=12 is not divisible by the 8 devices"),
        (["--config.eval_batch_size=4"], "eval_batch_size=4 must be a positive multiple"),
        (["--config.model.backbone=resnet18"], "config.model.backbone='resnet18'"),
        (["--config.normalization=caffe"], "config.normalization='caffe'"),
        (["--config.eval_scales=(1.0, 0.0)"], "eval_scales=(1.0, 0.0) must be > 0"),
        (["--config.sliding_window=-64"], "sliding_window=-64 must be a window size >= 1"),
        (
            ["--config.dataset=ade20k_scene_parsing", "--config.num_classes=150"],
            "--demo generates VOC- or CamVid-like data, not 'ade20k_scene_parsing'",
        ),
    ],
)
def test_bad_config_stops_before_data_or_compilation(v3plus, tmp_path, capsys, args, message):
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        _main(v3plus, ["--demo", f"--workdir={workdir}", *args])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not workdir.exists()


def test_unet_valid_crop_must_be_a_tile_size(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _main(
            load("unet_valid_pets"), ["--demo", f"--workdir={tmp_path}", "--config.crop_size=190"]
        )
    assert stop.value.code == 2
    assert "not a U-Net tile size at depth 3" in capsys.readouterr().err


def test_eval_without_checkpoints_says_so(v3plus, tmp_path, capsys, demo_data, demo_argv):
    argv = demo_argv(demo_data, tmp_path / "empty") + ["--mode=eval", "--config.batch_size=8"]
    argv += ["--config.eval_batch_size=8", "--config.crop_size=64"]
    with pytest.raises(SystemExit) as stop:
        _main(v3plus, argv)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "CheckpointError" in err and "has no checkpoints/ folder" in err


ALL = sorted(p.stem for p in EXPERIMENTS.glob("*.py"))


@pytest.mark.parametrize("name", ALL)
def test_every_file_states_the_experiment(name):
    """What training, `--mode=eval`, `jaxseg.predict` and export assume of an experiment file,
    checked on shapes only: it opens with its command and expected result, builds one
    `Experiment`, and the eval-mode model maps a crop to logits of the same size."""
    import jax
    import jax.numpy as jnp

    from jaxseg.experiment import runs

    exp = runs.import_experiment(EXPERIMENTS / f"{name}.py")
    assert exp.name == name and exp.path == str(EXPERIMENTS / f"{name}.py")
    assert exp.doc.split()[0]  # the docstring comes first
    assert f"python experiments/{name}.py" in exp.doc
    assert "--demo changes" in exp.doc and "Published" in exp.doc
    paper = exp.get_config()
    for key in ("crop_size", "align_corners", "crf", "crf_params", "dataset", "num_classes"):
        assert key in paper, key
    exp.model(paper)  # the paper's model builds (not initialised: too big here)
    config = exp.demo_config(exp.get_config())
    assert exp.dataset(config).num_classes == config.num_classes
    model = exp.model(config)
    crop = config.crop_size
    h, w = (crop, crop) if isinstance(crop, int) else crop
    images = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
    assert logits.shape == (1, h, w, config.num_classes)


def test_run_record_decides_the_config_and_refuses_contradictions(v3plus, tmp_path):
    """run.json, as training writes it, against later command lines (nothing trained here)."""
    import json

    from jaxseg import train
    from jaxseg.experiment import runs

    exp = v3plus.EXPERIMENT
    workdir = tmp_path / "run"
    trained = parse(v3plus, "--demo", "--config.normalization=caffe_bgr")[0]
    workdir.mkdir()
    runs.write_run(workdir, exp, trained, demo=True, model_name="DeepLabV3Plus")
    record = json.loads((workdir / "run.json").read_text())
    assert record["experiment"] == "deeplabv3plus_voc" and record["file"] == exp.path

    def resolve(*args):
        argv = ["experiments/deeplabv3plus_voc.py", f"--workdir={workdir}", *args]
        return experiment.resolve(exp, experiment.parse_command_line(argv, exp))

    # No flags at all: the run's config (demo settings, its normalisation), in eval and resume.
    for mode in ("eval", "train"):
        config, demo = resolve(f"--mode={mode}")
        assert demo and config.normalization == "caffe_bgr" and config.crop_size == 128
        assert config.model.backbone == "resnet50" and config.eval_scales == (1.0,)
    # Evaluation settings may change; the experiment's own (output stride) too.
    config, _ = resolve(
        "--mode=eval", "--config.model.output_stride=8", "--config.eval_scales=(0.75, 1.0)"
    )
    assert config.model.output_stride == 8 and config.eval_scales == (0.75, 1.0)
    # Repeating a training value is fine; contradicting it is refused, naming both values.
    assert resolve("--mode=eval", "--config.normalization=caffe_bgr")[0].crop_size == 128
    with pytest.raises(train.ConfigError) as refused:
        resolve("--mode=eval", "--config.normalization=imagenet", "--config.crop_size=64")
    message = str(refused.value)
    assert "config.normalization: the run has 'caffe_bgr', the command line 'imagenet'" in message
    assert "config.crop_size: the run has 128, the command line 64" in message
    # A resumed training run may train longer, not differently.
    assert resolve("--config.num_train_steps=500")[0].num_train_steps == 500
    with pytest.raises(train.ConfigError, match="optimizer.learning_rate"):
        resolve("--config.optimizer.learning_rate=0.5")
    # --demo on a run trained on real data, and another experiment's folder, are refused.
    runs.write_run(workdir, exp, exp.get_config(), demo=False, model_name="DeepLabV3Plus")
    with pytest.raises(train.ConfigError, match="trained without --demo"):
        resolve("--demo", "--mode=eval")
    other = load("fcn32s_voc").EXPERIMENT
    command = experiment.parse_command_line(["x.py", f"--workdir={workdir}"], other)
    with pytest.raises(train.CheckpointMismatchError, match="is a run of deeplabv3plus_voc"):
        experiment.resolve(other, command)


def test_manual_dir_typo_downloads_nothing_and_leaves_nothing(
    v3plus, tmp_path, capsys, monkeypatch
):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    (tmp_path / "voc_manual").mkdir()
    args = [f"--workdir={tmp_path / 'run'}", f"--config.data_dir={tmp_path / 'tfds'}"]
    with pytest.raises(SystemExit) as stop:
        _main(v3plus, [*args, f"--config.manual_dir={tmp_path / 'voc_manul'}"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "downloads are off (nothing was downloaded)" in err and "Missing:" in err
    assert "VOCtrainval_11-May-2012.tar" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["voc_manual"]  # no data folder, no workdir
