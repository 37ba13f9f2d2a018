"""Every experiment file trains one step on tiny generated data, as a script, and leaves a
checkpoint, metrics and its config in the workdir; the main file also evaluates (plain, with
test-time augmentation) and refuses a foreign workdir; DeepLab v1 scores before/after the CRF.
"""

import json
import re
import shutil

import pytest

# Per-file overrides on top of `demo_args`: crops as small as each model allows. Models are
# the files' own demo models (nothing swapped for a lighter one).
SMOKE = {
    "fcn32s_voc": ["--config.crop_size=48"],
    "fcn16s_voc": ["--config.crop_size=48"],
    "fcn8s_voc": ["--config.crop_size=48"],
    "segnet_camvid": ["--config.crop_size=(48, 64)"],
    "unet_pets": ["--config.crop_size=48"],
    "unet_valid_pets": [],  # its demo tile (188 -> 100) is the smallest sensible one
    "deeplabv2_voc": ["--config.crop_size=48"],
    "deeplabv3_voc": ["--config.crop_size=48"],
    "patch_classifier_voc": [
        "--config.crop_size=48",
        "--config.images_per_step=2",
        "--config.patches_per_image=4",
        "--config.batch_size=8",
    ],
}
HEADLINES = ("pixel accuracy", "mean pixel accuracy", "mean IoU", "frequency-weighted IoU")


def _records(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _check_run(result, workdir, steps=1):
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "checkpoints" / str(steps)).is_dir()
    assert json.loads((workdir / "config.json").read_text())["num_train_steps"] == steps
    records = _records(workdir)
    assert any("train/loss" in r and r["step"] == steps for r in records)
    evals = [r for r in records if "eval/miou" in r]
    assert evals and evals[-1]["step"] == steps and 0.0 <= evals[-1]["eval/miou"] <= 1.0
    for headline in HEADLINES:
        assert headline in result.stdout


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_one_demo_step_writes_checkpoint_and_metrics(
    name, tmp_path, demo_data, experiment_runner, demo_argv
):
    workdir = tmp_path / "run"
    result = experiment_runner(name, demo_argv(demo_data, workdir) + SMOKE[name])
    _check_run(result, workdir)


def test_main_experiment_trains_evaluates_and_protects_its_workdir(
    tmp_path, demo_data, experiment_runner, predict_runner, demo_argv
):
    """The README's command at its demo settings (crop and batch shrunk), end to end; the
    Cityscapes file, whose demo is the same network, rides along."""
    workdir = tmp_path / "run"
    # Crop 48 as the Cityscapes smoke run: the same network, compiled once (shared cache).
    args = demo_argv(demo_data, workdir) + ["--config.crop_size=48", "--config.num_eval_images=1"]
    result = experiment_runner("deeplabv3plus_voc", args)
    _check_run(result, workdir)
    # Panels and overlays are named after the source image (the demo's val images).
    val = [f"demo_{i:06d}" for i in range(8, 12)]
    scores = {"confusion_matrix", "class_iou"}
    panels = {p.stem for p in (workdir / "predictions").glob("step_*/*.png")} - scores
    assert len(panels) == 1 and panels <= set(val), panels
    overlays = [p.name for p in (workdir / "overlays").iterdir()]
    assert len(overlays) == 1 and overlays[0] in {f"{name}.jpg" for name in val}
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert "Done in" in result.stdout

    # --mode=eval restores the checkpoint and prints the four scores and the class table.
    common = demo_argv(demo_data, workdir) + ["--config.crop_size=48", "--mode=eval"]
    plain = experiment_runner("deeplabv3plus_voc", common + ["--checkpoint=latest"])
    assert plain.returncode == 0, plain.stderr[-3000:]
    for headline in (*HEADLINES, "aeroplane"):
        assert headline in plain.stdout
    saved = json.loads((workdir / "eval_step_1.json").read_text())
    trained = [r for r in _records(workdir) if "eval/miou" in r][-1]
    # The same checkpoint and images as the training run's last evaluation: the same scores.
    assert saved["metrics"]["miou"] == pytest.approx(trained["eval/miou"], abs=1e-9)

    # Test-time scales and flips go through the per-image path.
    tta = experiment_runner(
        "deeplabv3plus_voc",
        common + ["--config.eval_scales=(0.75, 1.0)", "--config.eval_flip=True"],
    )
    assert tta.returncode == 0, tta.stderr[-3000:]
    assert "scales (0.75, 1.0), + flips" in tta.stdout
    saved = json.loads((workdir / "eval_step_1.json").read_text())
    assert saved["eval_scales"] == [0.75, 1.0] and saved["eval_flip"] is True

    # A corrupt checkpoint (array data gone) in a copy of the run: one clear message.
    broken = tmp_path / "broken"
    shutil.copytree(workdir, broken)
    for data in (broken / "checkpoints" / "1" / "state").glob("**/d"):
        shutil.rmtree(data)
    corrupt = experiment_runner(
        "deeplabv3plus_voc", demo_argv(demo_data, broken) + ["--config.crop_size=48", "--mode=eval"]
    )
    assert corrupt.returncode == 1
    assert "CheckpointError" in corrupt.stderr and "corrupt" in corrupt.stderr
    # (Not asserted: no traceback. After a failed restore orbax/tensorstore sometimes print
    # "RuntimeError: Event loop is closed" from a thread at interpreter exit.)

    # The prediction CLI segments images with the run's checkpoint: run.json says the rest.
    images = next(demo_data.glob("voc_demo_*/manual/VOCdevkit/VOC2012/JPEGImages"))
    image = images / "demo_000008.jpg"
    predicted = predict_runner(
        [f"--workdir={workdir}", f"--input={image}", f"--output={tmp_path / 'predicted'}",
         "--config.model.output_stride=8"]
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert (tmp_path / "predicted" / "demo_000008_overlay.jpg").is_file()

    # The Cityscapes file's demo is this network on the same data: one step there reuses the
    # programs compiled above (the shared compilation cache), so it is checked here, after.
    city = tmp_path / "cityscapes"
    result = experiment_runner("deeplabv3plus_cityscapes", demo_argv(demo_data, city) + args[-2:])
    _check_run(result, city)

    # Another model's run into this workdir: refused before compiling, nothing overwritten.
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    other = experiment_runner("fcn32s_voc", demo_argv(demo_data, workdir))
    assert other.returncode == 1
    assert "CheckpointMismatchError" in other.stderr and "DeepLabV3Plus" in other.stderr
    assert "deeplabv3plus_voc" in other.stderr and "fcn32s_voc" in other.stderr
    assert "Traceback" not in other.stderr
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_run_folder_defines_evaluation(tmp_path, demo_data, experiment_runner, demo_argv):
    """A run trained with a non-default normalisation evaluates to the same mIoU with and
    without repeating the flag (run.json carries it); a contradicting flag is refused, naming
    both values; evaluation settings may differ."""
    workdir = tmp_path / "run"
    args = demo_argv(demo_data, workdir) + ["--config.crop_size=48"]
    result = experiment_runner("unet_pets", args + ["--config.normalization=caffe_bgr"])
    _check_run(result, workdir)
    record = json.loads((workdir / "run.json").read_text())
    assert record["experiment"] == "unet_pets" and record["demo"] is True
    assert record["config"]["normalization"] == "caffe_bgr" and record["model"] == "UNet"
    trained = [r for r in _records(workdir) if "eval/miou" in r][-1]["eval/miou"]

    scores = []
    for extra in ([], ["--config.normalization=caffe_bgr"]):
        # Only the workdir: the run's config (demo data folder included) comes from run.json.
        evaluated = experiment_runner("unet_pets", [f"--workdir={workdir}", "--mode=eval", *extra])
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        scores.append(json.loads((workdir / "eval_step_1.json").read_text())["metrics"]["miou"])
    assert scores[0] == scores[1] == pytest.approx(trained, abs=1e-9)

    refused = experiment_runner(
        "unet_pets", [f"--workdir={workdir}", "--mode=eval", "--config.normalization=imagenet"]
    )
    assert refused.returncode == 2
    assert "config.normalization: the run has 'caffe_bgr', the command line 'imagenet'" in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr


def test_deeplab_v1_evaluates_before_and_after_the_crf(
    tmp_path, demo_data, experiment_runner, demo_argv
):
    """A VGG16 file at its demo settings (crop shrunk), then the paper's CRF table."""
    workdir = tmp_path / "run"
    result = experiment_runner(
        "deeplabv1_voc", demo_argv(demo_data, workdir) + ["--config.crop_size=48"]
    )
    _check_run(result, workdir)
    crf = experiment_runner(
        "deeplabv1_voc",
        demo_argv(demo_data, workdir)
        + ["--mode=eval", "--config.crf=True", "--config.num_eval_examples=1"],
    )
    assert crf.returncode == 0, crf.stderr[-3000:]
    assert "After the dense CRF" in crf.stdout
    assert re.search(r"mIoU before CRF [\d.]+%, after CRF [\d.]+% \([+-][\d.]+\)", crf.stdout)
    saved = json.loads((workdir / "eval_step_1.json").read_text())
    assert saved["crf_params"]["theta_alpha"] == 121.0  # DeepLab-LargeFOV's setting
    for key in ("metrics", "metrics_crf"):
        assert 0.0 <= saved[key]["miou"] <= 1.0


def test_missing_dataset_stops_at_once_with_instructions(tmp_path, experiment_runner):
    """The newcomer's first command without --demo and without VOC: how to get it, no trace."""
    workdir = tmp_path / "run"
    result = experiment_runner(
        "deeplabv3plus_voc", [f"--workdir={workdir}", f"--config.data_dir={tmp_path / 'tfds'}"]
    )
    assert result.returncode == 1
    assert "DatasetNotFoundError" in result.stderr
    for hint in ("VOCtrainval_11-May-2012.tar", "--config.manual_dir", "--demo"):
        assert hint in result.stderr
    assert "Traceback" not in result.stderr
    assert not workdir.exists()
