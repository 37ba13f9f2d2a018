"""`--config.dataset=folder:DIR`: a user's folder of images and colour masks trains and
evaluates with one command (with `--demo`'s CPU settings), and the folder sets num_classes."""

import csv
import json

import numpy as np
import pytest

from jaxseg import experiment
from jaxseg.data.builders import folder as data_folder
from jaxseg.data.demo import folder as demo_folder
from jaxseg.experiment import load_segmenter

from .test_experiment_cli import load


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder") / "shapes"
    return demo_folder.write_folder(root, count=12, masks="colour", image_size=(48, 64))


def _folder_gone(*args, **kwargs):
    raise AssertionError("the dataset folder was read")


def test_folder_trains_and_evaluates_with_demo_settings(tmp_path, colour_folder, experiment_runner):
    workdir = tmp_path / "run"
    args = [
        "--demo",
        f"--workdir={workdir}",
        f"--config.dataset=folder:{colour_folder}",
        f"--config.data_dir={tmp_path / 'tfds'}",
        "--config.num_train_steps=2",
        "--config.batch_size=2",
        "--config.eval_batch_size=2",
        "--config.crop_size=48",
        "--config.num_eval_images=1",
        "--config.compilation_cache=False",
    ]
    result = experiment_runner("deeplabv3plus_voc", args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 classes (background, circle, square, triangle)" in result.stdout
    for name in ("background", "circle", "square", "triangle", "mean IoU"):
        assert name in result.stdout
    config = json.loads((workdir / "config.json").read_text())
    assert config["num_classes"] == 4 and config["dataset"].startswith("folder:")
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("step") == 2 and "eval/miou" in r for r in records)
    assert (workdir / "checkpoints" / "2").is_dir()
    pictures = workdir / "predictions" / "step_00000002"
    for name in ("confusion_matrix.png", "class_iou.png"):
        assert (pictures / name).is_file(), sorted(p.name for p in pictures.iterdir())
    # The panel and the overlay are named after the source image (sub-folder joined by "_").
    stems = {
        "_".join(p.relative_to(colour_folder / "images").with_suffix("").parts)
        for p in (colour_folder / "images").rglob("*.jpg")
    }
    panels = [p.stem for p in pictures.glob("*.png")]
    assert len(panels) == 3 and len(set(panels) & stems) == 1, panels
    overlays = [p.name for p in (workdir / "overlays").iterdir()]
    assert len(overlays) == 1 and overlays[0].removesuffix(".jpg") in stems, overlays
    # The run folder keeps the folder's class names and colours (classes.csv): the Python API
    # labels and colours predictions with them, even once the folder is gone.
    with open(colour_folder / "classes.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["name"] != "ignore"]
    names = [row["name"] for row in rows]
    colours = [[int(row[c]) for c in "rgb"] for row in rows]
    assert json.loads((workdir / "run.json").read_text())["classes"] == {
        "names": names,
        "palette": colours,
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_folder, "load", _folder_gone)
        segmenter = load_segmenter(workdir)
    assert segmenter.class_names == tuple(names) and segmenter.num_classes == 4
    np.testing.assert_array_equal(segmenter.palette, np.asarray(colours, np.uint8))
    # --mode=eval writes the scores with the confusion matrix.
    result = experiment_runner("deeplabv3plus_voc", [*args, "--mode=eval"])
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((workdir / "eval_step_2.json").read_text())["metrics"]
    cm = np.asarray(scores["confusion_matrix"])
    assert cm.shape == (5, 5) and cm[:4].sum() == scores["num_pixels"] > 0


def test_folder_sets_num_classes_and_refuses_a_conflicting_one(tmp_path, colour_folder, capsys):
    module = load("deeplabv3plus_voc")
    argv = [
        "experiments/deeplabv3plus_voc.py",
        "--demo",
        f"--config.dataset=folder:{colour_folder}",
        f"--config.data_dir={tmp_path / 'tfds'}",
    ]
    config = experiment.parse_command_line(argv, module.EXPERIMENT).config
    assert config.num_classes == 4
    with pytest.raises(SystemExit) as stop:
        experiment.parse_command_line([*argv, "--config.num_classes=21"], module.EXPERIMENT)
    assert stop.value.code == 2
    assert "num_classes=21 but" in capsys.readouterr().err
