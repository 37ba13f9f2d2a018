"""Released models in experiments and the CLI: `--config.init_from=zoo:NAME` (training and
`--mode=eval`) and `python -m jaxseg.predict --model zoo:NAME`.

The release is a full-size MobileNetV2 VOC checkpoint with random weights written by TensorFlow
(`tests/weights/test_tf_slim.py`'s `Official`, which also computes the official graph's logits
with TensorFlow ops); it reaches the zoo through the download cache (as if downloaded before)
or `--checkpoint`, never through the network.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import shutil
import sys
import tarfile
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("tensorflow")

_spec = importlib.util.spec_from_file_location(
    "_tf_slim_official", Path(__file__).parents[1] / "weights" / "test_tf_slim.py"
)
tf_slim_tests = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(tf_slim_tests)

NAME = "mobilenetv2_coco_voc_trainaug"
ARCHIVE = "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(case, official, archive): the release packed as the authors pack it."""
    root = tmp_path_factory.mktemp("release")
    official = tf_slim_tests.Official(seed=31)
    arch = dataclasses.replace(tf_slim_tests.MOBILENETV2.arch, num_classes=21)
    case = dataclasses.replace(tf_slim_tests.MOBILENETV2, arch=arch)
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    logits = tf_slim_tests.official_logits(official, case, image, (65, 65), 16)
    # Background competes with the other classes, so that scores are neither 0 nor constant.
    margin = np.max(logits[..., 1:], -1) - logits[..., 0]
    official.variables["logits/semantic/biases"][0] += np.median(margin)
    folder = root / "deeplabv3_mnv2_pascal_train_aug"
    folder.mkdir()
    tf_slim_tests.write_checkpoint(official.variables, folder / "model.ckpt-30000")
    archive = root / ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return case, official, archive


@pytest.fixture
def cached(release, tmp_path, monkeypatch):
    """The release in a fresh download cache, as `python -m jaxseg.zoo download` leaves it."""
    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    shutil.copy(release[2], downloads / ARCHIVE)
    return release


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class State:
    """What `initialize` reads and replaces of a `TrainState`."""

    params: dict
    batch_stats: dict

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _state(model, size=65):
    import jax.numpy as jnp

    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    variables = jax.tree.map(lambda s: np.full(s.shape, 0.25, s.dtype), shapes)
    return State(variables["params"], variables["batch_stats"])


def test_init_from_fills_the_variables_with_the_checkpoint_arrays(cached):
    from jaxseg import experiment, train, zoo
    from jaxseg.models import DeepLabV3Plus

    _, official, _ = cached
    config = experiment.base_config()
    config.init_from = f"zoo:{NAME}"
    for num_classes in (21, 5):
        state = _state(zoo.training.model(config.init_from, num_classes=num_classes))
        out = experiment.init_from_pretrained(config, state)
        np.testing.assert_array_equal(
            out.params["backbone"]["stem"]["conv"]["kernel"],
            official.variables["MobilenetV2/Conv/weights"],
        )
        np.testing.assert_array_equal(
            out.batch_stats["aspp"]["conv1x1"]["bn"]["var"],
            official.variables["aspp0/BatchNorm/moving_variance"],
        )
        classifier = out.params["classifier"]["kernel"]
        if num_classes == 21:  # the released label set: the released classifier
            np.testing.assert_array_equal(classifier, official.variables["logits/semantic/weights"])
        else:  # another label set: the classifier stays as initialised
            np.testing.assert_array_equal(classifier, state.params["classifier"]["kernel"])

    config.model = {"backbone": "resnet50"}
    other = _state(DeepLabV3Plus(num_classes=21, backbone="resnet50", separable=False))
    with pytest.raises(train.ConfigError, match=r"DeepLab v3.*MobileNetV2.*backbone='resnet50'"):
        experiment.init_from_pretrained(config, other)
    config.init_from = "zoo:nope"
    with pytest.raises(train.ConfigError, match="no model 'nope' in the zoo"):
        experiment.init_from_pretrained(config, other)
    config.init_from, config.pretrained = f"zoo:{NAME}", "resnet50.safetensors"
    with pytest.raises(train.ConfigError, match="both give initial weights; keep one"):
        experiment.init_from_pretrained(config, other)


def test_demo_never_initialises_from_a_download():
    sys.path.insert(0, str(Path(__file__).parents[2] / "experiments"))
    import deeplabv3plus_voc

    config = deeplabv3plus_voc.get_config()
    assert config.init_from == "zoo:xception_65" and config.align_corners
    assert config.model.backbone_epsilon == 1e-3  # TF-slim Xception's BN epsilon
    assert deeplabv3plus_voc.demo_config(config).init_from == ""


def test_fcn_experiments_evaluate_on_seg11valid():
    """The FCN papers and releases report seg11valid: the configs evaluate there (--demo's
    generated data has no such split and keeps `validation`)."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "experiments"))
    import fcn8s_voc
    import fcn32s_voc

    for module in (fcn32s_voc, fcn8s_voc):
        config = module.EXPERIMENT.get_config()
        assert config.eval_split == "seg11valid"
        assert module.EXPERIMENT.demo_config(config).eval_split == "validation"


def test_zoo_evaluate_prints_published_and_measured(cached, tmp_path, capsys):
    """`jaxseg-zoo evaluate NAME --dataset --data-dir`: the release scored on the prepared
    dataset, expected from TensorFlow's official logits and a numpy confusion matrix."""
    import tensorflow_datasets as tfds

    from jaxseg import zoo_cli
    from jaxseg.data import demo
    from jaxseg.zoo import deeplab_models, registry

    case, official, _ = cached
    # The entry evaluated on a 65x65 canvas with one published protocol (CPU-sized).
    release = dataclasses.replace(deeplab_models.RELEASES[NAME], eval_crop=(65, 65))
    entry = dataclasses.replace(
        registry.ENTRIES[NAME],
        published=(registry.Published("mIoU", 75.32, "VOC 2012 val, OS16, scale 1.0", 16),),
        load=functools.partial(deeplab_models.load_release, release),
    )
    builder = demo.prepare_demo(tmp_path / "data", num_train=2, num_val=3, image_size=(48, 64))
    command = ["evaluate", NAME, "--dataset", "voc_segmentation/2012"]
    command += ["--data-dir", builder.data_dir.rsplit("/voc_segmentation", 1)[0]]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry.ENTRIES, NAME, entry)
        patch.setitem(deeplab_models.RELEASES, NAME, release)
        assert zoo_cli.main(command) == 0
        printed = capsys.readouterr().out
        assert zoo_cli.main([*command, "--split", "nope"]) == 2
        assert "has no split 'nope'" in capsys.readouterr().err
    confusion = np.zeros((21, 21), np.int64)
    for example in tfds.as_numpy(builder.as_dataset(split="validation")):
        image, label = example["image"], example["label"][..., 0].astype(np.int64)
        logits = tf_slim_tests.official_logits(official, case, image, (65, 65), 16)
        keep = label != 255
        np.add.at(confusion, (label[keep], np.argmax(logits, -1)[keep]), 1)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    present = union > 0
    expected = 100 * np.mean(np.diag(confusion)[present] / union[present])
    assert 0 < expected < 100 and np.count_nonzero(confusion.sum(0)) > 1
    assert f"published 75.32 (VOC 2012 val, OS16, scale 1.0); measured {expected:.2f}" in printed


def test_mode_eval_without_checkpoints_names_the_missing_folder(tmp_path):
    """`--mode=eval` on a folder without checkpoints/ (e.g. a mistyped --workdir with the paper
    config, whose init_from is a release) says so, and names the command scoring releases."""
    from jaxseg import experiment, train

    sys.path.insert(0, str(Path(__file__).parents[2] / "experiments"))
    import deeplabv3plus_voc

    config = deeplabv3plus_voc.get_config()
    with pytest.raises(train.CheckpointError, match="has no checkpoints/ folder") as error:
        experiment.run(
            deeplabv3plus_voc.EXPERIMENT, config, str(tmp_path / "typo"), mode="eval", demo=False
        )
    assert "jaxseg-zoo evaluate xception_65" in str(error.value)


def test_predict_with_a_released_model_writes_the_official_labels(
    release, tmp_path, capsys, monkeypatch
):
    """`jaxseg-predict --model zoo:NAME`: label PNGs equal the argmax of TensorFlow's official
    graph (plain, and with --flip by the official multi-scale protocol) wherever the top two
    scores are not within 1e-3."""
    from PIL import Image

    from jaxseg import predict

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))  # conversions, no download
    case, official, archive = release
    photos = tmp_path / "photos"
    photos.mkdir()
    image = np.random.default_rng(5).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    Image.fromarray(image).save(photos / "a.png")
    args = ["--model", f"zoo:{NAME}", "--checkpoint", str(archive), "--input", str(photos)]
    args += ["--crop-size", "65"]
    plain = tf_slim_tests.official_logits(official, case, image, (65, 65), 16)
    flipped = tf_slim_tests.official_multiscale(
        official, case, image, (65, 65), 16, (1.0,), flip=True
    )
    for extra, reference in (([], plain), (["--flip"], flipped)):
        out = tmp_path / f"out{len(extra)}"
        assert predict.main([*args, *extra, "--output", str(out)]) == 0
        labels = np.asarray(Image.open(out / "a.png"))
        top2 = np.sort(reference, -1)[..., -2:]
        clear = top2[..., 1] - top2[..., 0] > 1e-3
        assert clear.mean() > 0.5  # random weights: most pixels have a clear winner
        np.testing.assert_array_equal(labels[clear], np.argmax(reference, -1)[clear])
        assert (out / "a_overlay.jpg").exists()
    out = tmp_path / "out0"
    assert predict.main([*args, "--output", str(out)]) == 2  # never overwrites
    assert "--overwrite" in capsys.readouterr().err
    assert predict.main([*args, "--output", str(tmp_path / "o2"), "--sliding-window", "33"]) == 2
    assert "--sliding-window apply to --workdir runs only" in capsys.readouterr().err


def test_init_from_an_imagenet_entry_fills_the_backbone_only(tmp_path, monkeypatch):
    """`zoo:xception_65` (here a reduced-depth Xception-65 checkpoint under that entry):
    backbone variables equal the checkpoint's arrays, the head keeps its initial values."""
    from jaxseg import experiment, zoo
    from jaxseg.weights.tf_slim import DeepLabArch
    from jaxseg.zoo import deeplab_models

    case = tf_slim_tests.XCEPTION65
    official = tf_slim_tests.Official(seed=7)
    tf_slim_tests.official_logits(official, case, np.zeros((33, 33, 3), np.uint8), (33, 33), 16)
    folder = tmp_path / "xception"
    folder.mkdir()
    tf_slim_tests.write_checkpoint(official.variables, folder / "model.ckpt")
    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    with tarfile.open(downloads / zoo.entry("xception_65").filename, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    arch = DeepLabArch("xception_65", num_classes=None, middle_flow_units=2)
    monkeypatch.setitem(
        deeplab_models.RELEASES, "xception_65", deeplab_models.Release(arch, labels=None)
    )
    config = experiment.base_config()
    config.init_from = "zoo:xception_65"
    state = _state(zoo.training.model(config.init_from, num_classes=5))
    out = experiment.init_from_pretrained(config, state)
    np.testing.assert_array_equal(
        out.params["backbone"]["entry_conv1"]["conv"]["kernel"],
        official.variables["xception_65/entry_flow/conv1_1/weights"],
    )
    np.testing.assert_array_equal(
        out.batch_stats["backbone"]["entry_conv1"]["bn"]["mean"],
        official.variables["xception_65/entry_flow/conv1_1/BatchNorm/moving_mean"],
    )
    np.testing.assert_array_equal(  # the head: not in an ImageNet checkpoint
        out.params["classifier"]["kernel"], state.params["classifier"]["kernel"]
    )


def test_eval_of_a_release_refuses_what_it_cannot_score():
    import types

    from jaxseg import train
    from jaxseg.experiment import zoo_runs

    voc = types.SimpleNamespace(name="voc", class_names=[f"c{i}" for i in range(21)])
    camvid = types.SimpleNamespace(name="camvid", class_names=[f"c{i}" for i in range(11)])
    with pytest.raises(train.ConfigError, match="ImageNet backbone.*nothing to evaluate"):
        zoo_runs.evaluate_release("xception_65", None, voc, "validation")
    with pytest.raises(train.ConfigError, match="predicts 21 classes.* has 11"):
        zoo_runs.evaluate_release(NAME, None, camvid, "validation")
    with pytest.raises(train.ConfigError, match="not published with CRF settings"):
        zoo_runs.evaluate_release(NAME, None, voc, "validation", crf=True)
    with pytest.raises(train.ConfigError, match="no model 'nope'"):
        zoo_runs.evaluate_release("nope", None, voc, "validation")


def test_the_paper_model_of_deeplabv3plus_voc_takes_the_released_weights():
    """With its paper config, the experiment's model has exactly the variables (names and
    shapes) of the released Xception-65 v3+ architecture, whose mapping onto the official
    variable lists tests/weights/test_tf_slim.py checks: fine-tuning from it fills everything."""
    import jax.numpy as jnp

    from jaxseg import zoo

    sys.path.insert(0, str(Path(__file__).parents[2] / "experiments"))
    import deeplabv3plus_voc

    def shapes(model):
        tree = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 65, 65, 3)))
        flat = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {jax.tree_util.keystr(k): v.shape for k, v in flat}

    ours = shapes(deeplabv3plus_voc.build_model(deeplabv3plus_voc.get_config()))
    assert ours == shapes(zoo.training.model("zoo:xception65_coco_voc_trainaug"))


def test_zoo_evaluate_scores_by_the_official_multiscale_protocol(release, tmp_path, monkeypatch):
    """`zoo.evaluate.evaluate` with scales and flip (the one scoring loop of the zoo): labels
    from TensorFlow's official multi-scale graph are scored as all right, also with the labels
    shifted one below the outputs (ADE20K's "other" = output 0)."""
    from jaxseg import zoo
    from jaxseg.zoo.evaluate import evaluate

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    case, official, archive = release
    seg = zoo.load(NAME, checkpoint=archive, crop_size=65)
    image = np.random.default_rng(8).integers(0, 256, (50, 41, 3), dtype=np.uint8)
    scales = (0.75, 1.25)
    reference = tf_slim_tests.official_multiscale(
        official, case, image, (65, 65), 16, scales, flip=True
    )
    for offset in (0, 1):
        # with an offset, label k meets output k + 1 (ADE20K's "other" is output 0)
        labels = np.argmax(reference, -1) - offset
        labels[labels < 0] = 255  # "other" is not a label
        tta = seg.replace(scales=scales, flip=True)
        results = evaluate(tta, [(image, labels)], label_offset=offset)
        assert results["num_images"] == 1
        assert results["plain"]["pixel_accuracy"] == 1.0
        assert results["plain"]["confusion_matrix"].shape == (21 + 1,) * 2
    wrong = np.argmax(reference, -1)
    wrong[:10] = (wrong[:10] + 1) % 21
    results = evaluate(seg.replace(scales=scales, flip=True), [(image, wrong)])
    assert results["plain"]["pixel_accuracy"] == pytest.approx(1 - 10 * 41 / (50 * 41))
