"""TF-slim DeepLab checkpoints: conversion checked against TensorFlow's own ops.

`Official` (benchmarks/tf_deeplab.py, shared with the TensorFlow peer of benchmarks/peers.py)
composes the forward pass of the official DeepLab graphs from TensorFlow ops
(`tf.nn.conv2d` / `depthwise_conv2d` with TF-slim's padding, `tf.nn.batch_normalization` with
the checkpoint's epsilon, `tf.compat.v1.image.resize_bilinear(align_corners=True)`, the image
padded to the evaluation crop) and creates each variable, with the official name and random
values (random BN statistics included), the first time the structure asks for it. The
variables are then written as a TF checkpoint, converted by jaxseg and run through the zoo's
`Segmenter`; the logits must match TF's to a relative error of 1e-4.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxseg.weights import tf_slim  # noqa: E402
from jaxseg.weights.tf_slim import DeepLabArch  # noqa: E402
from jaxseg.zoo import deeplab_models  # noqa: E402

DATA = Path(__file__).parent / "data" / "deeplab_tf"


def _tf_deeplab():
    """benchmarks/tf_deeplab.py (the official graphs in TF ops), loaded by file path: the tests
    are not a package (importlib import mode) and the benchmarks folder is not on sys.path."""
    name = "jaxseg_benchmarks_tf_deeplab"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "benchmarks" / "tf_deeplab.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


_official = _tf_deeplab()
OFFICIAL_ATROUS_RATES = _official.OFFICIAL_ATROUS_RATES
OFFICIAL_SCOPES = _official.OFFICIAL_SCOPES
OFFICIAL_HEAD_SCOPES = _official.OFFICIAL_HEAD_SCOPES
Case = _official.Case
Official = _official.Official
official_logits = _official.official_logits
official_multiscale = _official.official_multiscale
resize = _official.resize
scale_dimension = _official.scale_dimension
write_checkpoint = _official.write_checkpoint


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


# jaxseg's side: the zoo's own architecture data where a release uses it (the test's sizes:
# classes, middle-flow depth); the official side: the literal configuration of `Case`.
XCEPTION65 = Case(
    DeepLabArch(**{**deeplab_models.XCEPTION65, "num_classes": 5, "middle_flow_units": 2}),
    scope=OFFICIAL_SCOPES["xception_65"],
)
XCEPTION71 = Case(
    DeepLabArch("xception_71", num_classes=4, middle_flow_units=1),
    scope=OFFICIAL_SCOPES["xception_71"],
    entry=((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)),
    end_block=3,
)
MOBILENETV2 = Case(
    DeepLabArch(**{**deeplab_models.MOBILENETV2, "num_classes": 6}),
    scope=OFFICIAL_SCOPES["mobilenet_v2"],
    aspp=False,
    separable=False,
    decoder=False,
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Each case's official variables (created by one TF pass) written once as a checkpoint."""
    root = tmp_path_factory.mktemp("tf_slim")
    out = {}
    image = np.zeros((33, 33, 3), np.uint8)
    for name, case in {"x65": XCEPTION65, "x71": XCEPTION71, "mnv2": MOBILENETV2}.items():
        official = Official(seed=len(out))
        official_logits(official, case, image, (33, 33), 16)
        variables = dict(official.variables)
        # Training-only variables a released checkpoint may hold: ignored by rule.
        variables["global_step"] = np.array(30000, np.int64)
        first = sorted(official.variables)[0]
        variables[f"{first}/Momentum"] = np.zeros_like(official.variables[first])
        variables[f"{first}/ExponentialMovingAverage"] = official.variables[first]
        out[name] = (case, official, write_checkpoint(variables, root / name / "model.ckpt"))
    return out


@pytest.mark.parametrize(
    "name, output_stride, image_size, crop",
    [
        ("x65", 16, (50, 61), (65, 65)),
        ("x65", 8, (41, 30), (49, 49)),
        ("x71", 16, (40, 45), (65, 65)),
        ("mnv2", 16, (50, 61), (65, 65)),
        ("mnv2", 8, (64, 48), (64, 64)),  # even canvas: TF "SAME" pads after
    ],
)
def test_whole_network_matches_official_graph(checkpoints, name, output_stride, image_size, crop):
    case, official, prefix = checkpoints[name]
    imported = tf_slim.convert_checkpoint(prefix, case.arch, output_stride)
    assert imported.missing == ()
    assert set(imported.unexpected) == {
        "global_step",
        *(k for k in tf_slim.read_checkpoint(prefix) if "/Momentum" in k or "Exponential" in k),
    }
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (*image_size, 3), dtype=np.uint8)
    reference = official_logits(official, case, image, crop, output_stride)
    release = deeplab_models.Release(case.arch, labels=None, eval_crop=crop)
    names = [f"class{i}" for i in range(case.arch.num_classes)]
    segmenter = deeplab_models.build_segmenter(
        release, imported.variables, output_stride, class_names=names
    )
    ours = segmenter.logits(image)
    assert ours.shape == (*image_size, case.arch.num_classes)
    assert relative_error(ours, reference) <= 1e-4


def _zeros_from_list(path: Path, keep=lambda name: True) -> dict[str, np.ndarray]:
    """`name<TAB>[shape]` lines -> zero-cost arrays of those shapes (variance 1 for BN)."""
    arrays = {}
    for line in path.read_text().splitlines():
        name, shape = line.split("\t")
        if keep(name):
            dims = tuple(int(d) for d in shape.strip("[]").split(","))
            arrays[name] = np.broadcast_to(np.float32(1.0), dims)
    return arrays


@pytest.mark.parametrize(
    "listing, arch, keep",
    [
        ("xception65_v3plus.txt", DeepLabArch("xception_65", num_classes=21), None),
        (
            "mobilenetv2_v3.txt",
            DeepLabArch("mobilenet_v2", atrous_rates=(), decoder=False, separable=False),
            None,
        ),
        (
            "resnet101beta_v3plus.txt",
            DeepLabArch("resnet_v1_101_beta", backbone_epsilon=1e-5),
            None,
        ),
        (
            "resnet101beta_v3plus.txt",
            DeepLabArch("resnet_v1_101_beta", num_classes=None, backbone_epsilon=1e-5),
            "resnet_v1_101/",
        ),
        (
            "xception65_v3plus.txt",
            DeepLabArch("xception_65", num_classes=None),
            "xception_65/",
        ),
    ],
)
def test_official_variable_lists_map_completely(listing, arch, keep):
    """Every variable of the official graphs (name and shape) fills exactly one model variable."""
    arrays = _zeros_from_list(
        DATA / listing, (lambda n: n.startswith(keep)) if keep else (lambda n: True)
    )
    imported = tf_slim.convert_arrays(arrays, arch, listing)
    assert imported.missing == () and imported.unexpected == ()


def test_official_constants_agree_with_the_official_listings_and_the_zoo(checkpoints):
    """The stated head scopes are those of a released checkpoint's variable list (and of the
    graph the tests build); the zoo's release data uses the official rates."""
    listed = {
        line.split("\t")[0].split("/BatchNorm")[0].rsplit("/", 1)[0]
        for line in (DATA / "xception65_v3plus.txt").read_text().splitlines()
    }
    _, official, _ = checkpoints["x65"]
    built = {name.split("/BatchNorm")[0].rsplit("/", 1)[0] for name in official.variables}
    for scope in OFFICIAL_HEAD_SCOPES:
        assert scope in listed and scope in built, scope
    assert any(n.startswith(OFFICIAL_SCOPES["xception_65"] + "/") for n in listed)
    assert deeplab_models.XCEPTION65["atrous_rates"] == OFFICIAL_ATROUS_RATES[16]
    assert deeplab_models.MOBILENETV2["atrous_rates"] == ()
    for backbone, scope in OFFICIAL_SCOPES.items():
        assert DeepLabArch(backbone, num_classes=None).scope == scope


def test_classifier_head_of_imagenet_checkpoints_is_ignored_by_rule():
    arch = DeepLabArch("xception_65", num_classes=None)
    arrays = _zeros_from_list(
        DATA / "xception65_v3plus.txt", lambda n: n.startswith("xception_65/")
    )
    arrays["xception_65/logits/weights"] = np.zeros((1, 1, 2048, 1001), np.float32)
    imported = tf_slim.convert_arrays(arrays, arch, "imagenet")
    assert imported.unexpected == ("xception_65/logits/weights",)


def test_shape_mismatch_names_the_variable():
    arrays = _zeros_from_list(DATA / "mobilenetv2_v3.txt")
    arrays["aspp0/weights"] = np.zeros((1, 1, 320, 128), np.float32)
    arch = DeepLabArch("mobilenet_v2", atrous_rates=(), decoder=False, separable=False)
    with pytest.raises(ValueError, match="aspp0"):
        tf_slim.convert_arrays(arrays, arch, "mnv2")


def test_missing_and_unexpected_variables_are_refused_by_name():
    arrays = _zeros_from_list(DATA / "mobilenetv2_v3.txt")
    del arrays["MobilenetV2/expanded_conv_3/project/weights"]
    arrays["aspp1/weights"] = np.zeros((3, 3, 320, 256), np.float32)
    arch = DeepLabArch("mobilenet_v2", atrous_rates=(), decoder=False, separable=False)
    with pytest.raises(ValueError, match=r"expanded_conv_3/project/weights.*aspp1/weights"):
        tf_slim.convert_arrays(arrays, arch, "mnv2")


def test_foreign_checkpoint_is_refused_naming_the_file(tmp_path):
    prefix = write_checkpoint({"dense/kernel": np.zeros((3, 4), np.float32)}, tmp_path / "m.ckpt")
    arch = DeepLabArch("xception_65", num_classes=21)
    with pytest.raises(ValueError, match=r"m\.ckpt does not look like"):
        tf_slim.convert_checkpoint(prefix, arch)


def test_corrupt_checkpoint_is_refused_naming_the_file(tmp_path):
    prefix = write_checkpoint({"a/weights": np.ones((64, 64), np.float32)}, tmp_path / "m.ckpt")
    data = next(tmp_path.glob("m.ckpt.data-*"))
    data.write_bytes(data.read_bytes()[:100])  # truncated download
    with pytest.raises(ValueError, match=r"m\.ckpt: not a readable TF checkpoint"):
        tf_slim.read_checkpoint(prefix)
    (tmp_path / "junk.ckpt.index").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.ckpt: not a readable TF checkpoint"):
        tf_slim.read_checkpoint(tmp_path / "junk.ckpt")
    with pytest.raises(FileNotFoundError, match="nothere"):
        tf_slim.read_checkpoint(tmp_path / "nothere")


@pytest.mark.parametrize(
    "backbone, output_stride",
    [("resnet_v1_50_beta", 16), ("resnet_v1_50_beta", 8), ("xception_41", 16)],
)
def test_imagenet_backbone_matches_official(tmp_path, backbone, output_stride):
    """ImageNet checkpoints (classifier included): `out` and the decoder end point match."""
    official = Official(seed=3)
    scope = OFFICIAL_SCOPES[backbone]
    x = tf.constant(np.random.default_rng(5).uniform(-1, 1, (1, 49, 41, 3)), tf.float32)
    if backbone.startswith("resnet"):
        arch = DeepLabArch(
            backbone, num_classes=None, stage_sizes=(2, 2, 2, 2), backbone_epsilon=1e-5
        )
        out, points = official.resnet_v1_beta(x, scope, (2, 2, 2, 2), output_stride)
        end = points[f"{scope}/block1/unit_2/bottleneck_v1/conv3"]
        channels = 2048
    else:
        arch = DeepLabArch(backbone, num_classes=None, middle_flow_units=2)
        out, points = official.xception(x, scope, XCEPTION65.entry, 2, output_stride)
        end = points[f"{scope}/entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise"]
        channels = 2048
    variables = dict(official.variables)
    variables[f"{scope}/logits/weights"] = np.zeros((1, 1, channels, 1001), np.float32)
    variables[f"{scope}/logits/biases"] = np.zeros((1001,), np.float32)
    prefix = write_checkpoint(variables, tmp_path / "model.ckpt")
    imported = tf_slim.convert_checkpoint(prefix, arch, output_stride)
    assert imported.missing == ()
    assert set(imported.unexpected) == {
        f"{scope}/logits/weights",
        f"{scope}/logits/biases",
    }
    features = jax.jit(arch.model(output_stride).apply)(imported.variables, x.numpy())
    assert relative_error(np.asarray(features["out"]), out.numpy()) <= 1e-4
    assert relative_error(np.asarray(features["stride4"]), end.numpy()) <= 1e-4


def test_strided_xception_block_and_resize_match_tf_ops(tmp_path):
    """One layer at a time: a strided Xception module (explicit padding, ReLU before each
    separable conv, BN epsilon 1e-3), an atrous one, and the align_corners resize."""
    import jax.numpy as jnp

    from jaxseg.backbones import XceptionBlock
    from jaxseg.ops import resize_bilinear

    official = Official(seed=11)
    x = np.random.default_rng(2).normal(0, 1, (1, 12, 11, 16)).astype(np.float32)
    strided = official.xception_module(tf.constant(x), "m1", (8, 8, 24), "conv", 2, 1, False, {})
    atrous = official.xception_module(tf.constant(x), "m2", (8, 8, 16), "sum", 1, 2, True, {})
    arrays = official.variables
    norm = DeepLabArch("xception_65")._norm(1e-3)
    for scope, block, reference in [
        ("m1", XceptionBlock((8, 8, 24), "conv", stride=2, norm=norm), strided),
        (
            "m2",
            XceptionBlock((8, 8, 16), "sum", rate=2, activation_in_separable=True, norm=norm),
            atrous,
        ),
    ]:
        entries = []
        for j in (1, 2, 3):
            entries += tf_slim._separable(
                f"{scope}/separable_conv{j}", (f"separable_conv{j}",), 1e-3
            )
        if scope == "m1":
            entries.append(tf_slim._conv_bn(f"{scope}/shortcut", ("shortcut",), 1e-3))
        variables: dict = {}
        for entry in entries:  # the converters alone (the engine checks 3-channel inputs)
            found = {role: arrays[key] for role, key in entry.keys.items()}
            for collection, subtree in entry.convert(found).items():
                node = variables.setdefault(collection, {})
                for part in entry.target:
                    node = node.setdefault(part, {})
                node.update(subtree)
        ours, _ = jax.jit(block.apply)(variables, jnp.asarray(x))
        assert relative_error(np.asarray(ours), reference.numpy()) <= 1e-5
    small = np.random.default_rng(3).normal(0, 1, (1, 5, 7, 3)).astype(np.float32)
    ours = resize_bilinear(jnp.asarray(small), (17, 25), align_corners=True)
    assert relative_error(np.asarray(ours), resize(small, (17, 25)).numpy()) <= 1e-6


# --- jaxseg.zoo.load on a release archive ------------------------------------------------------


@pytest.fixture(scope="module")
def mobilenet_release(tmp_path_factory):
    """A full-size MobileNetV2 VOC checkpoint with random weights, packed as the release is."""
    import tarfile

    root = tmp_path_factory.mktemp("release")
    official = Official(seed=21)
    case = dataclasses.replace(
        MOBILENETV2, arch=dataclasses.replace(MOBILENETV2.arch, num_classes=21)
    )
    official_logits(official, case, np.zeros((33, 33, 3), np.uint8), (33, 33), 16)
    folder = root / "deeplabv3_mnv2_pascal_train_aug"
    folder.mkdir()
    write_checkpoint(official.variables, folder / "model.ckpt-30000")
    (folder / "frozen_inference_graph.pb").write_bytes(b"graph")
    archive = root / "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return case, official, archive, folder


def test_zoo_load_runs_the_release_as_officially_evaluated(
    mobilenet_release, tmp_path, monkeypatch
):
    from jaxseg import zoo

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    case, official, archive, folder = mobilenet_release
    image = np.random.default_rng(9).integers(0, 256, (60, 47, 3), dtype=np.uint8)
    reference = official_logits(official, case, image, (65, 65), 16)
    seg = zoo.load("mobilenetv2_coco_voc_trainaug", checkpoint=archive, crop_size=65)
    assert seg.class_names[0] == "background" and len(seg.class_names) == 21
    logits = seg.logits(image)
    assert logits.shape == (60, 47, 21) and relative_error(logits, reference) <= 1e-4
    np.testing.assert_array_equal(seg(image), np.argmax(reference, -1))
    # Converted once: later loads read the cache, not the checkpoint.
    assert len(list((tmp_path / "cache" / "converted").glob("*.npz"))) == 1
    with monkeypatch.context() as patch:
        patch.setattr(tf_slim, "convert_checkpoint", lambda *a, **k: pytest.fail("converted again"))
        again = zoo.load("mobilenetv2_coco_voc_trainaug", checkpoint=archive, crop_size=65)
        np.testing.assert_array_equal(again.logits(image), logits)
    # The folder and the prefix work too; the backbone alone for training.
    assert zoo.load("mobilenetv2_coco_voc_trainaug", checkpoint=folder, crop_size=65)
    weights = zoo.backbone_weights(
        "mobilenetv2_coco_voc_trainaug", checkpoint=folder / "model.ckpt-30000"
    )
    np.testing.assert_array_equal(
        weights.variables["params"]["stem"]["conv"]["kernel"],
        official.variables["MobilenetV2/Conv/weights"],
    )


def test_zoo_load_downloads_from_the_entry_address(mobilenet_release, tmp_path, monkeypatch):
    """`zoo.load(name)` without a checkpoint: download (here from 127.0.0.1), extract, convert."""
    import http.server
    import threading

    from jaxseg import zoo
    from jaxseg.zoo import registry

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    _, _, archive, _ = mobilenet_release
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        name = "mobilenetv2_coco_voc_trainaug"
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{archive.name}"
        local = dataclasses.replace(
            registry.ENTRIES[name], urls=(url,), size=archive.stat().st_size
        )
        monkeypatch.setitem(registry.ENTRIES, name, local)
        seg = zoo.load(name, crop_size=65)
        assert seg.num_classes == 21
        assert (
            tmp_path / "cache" / "downloads" / archive.name
        ).read_bytes() == archive.read_bytes()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_zoo_load_of_a_backbone_entry_points_to_backbone_weights(mobilenet_release):
    from jaxseg import zoo

    _, _, _, folder = mobilenet_release
    with pytest.raises(ValueError, match="backbone_weights"):
        zoo.load("xception_65", checkpoint=folder)


def test_init_from_zoo_fills_a_model_with_another_label_set(
    mobilenet_release, tmp_path, monkeypatch
):
    import jax.numpy as jnp

    from jaxseg import zoo
    from jaxseg.models import DeepLabV3Plus

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    _, official, archive, _ = mobilenet_release
    spec = "zoo:mobilenetv2_coco_voc_trainaug"
    model = zoo.training.model(spec, num_classes=5)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 65, 65, 3)))
    variables = jax.tree.map(lambda s: np.full(s.shape, 0.25, s.dtype), shapes)
    out = zoo.training.initial_variables(spec, variables, checkpoint=archive)
    np.testing.assert_array_equal(
        out["params"]["backbone"]["stem"]["conv"]["kernel"],
        official.variables["MobilenetV2/Conv/weights"],
    )
    np.testing.assert_array_equal(
        out["batch_stats"]["aspp"]["conv1x1"]["bn"]["var"],
        official.variables["aspp0/BatchNorm/moving_variance"],
    )
    np.testing.assert_array_equal(  # 5 classes here, 21 released: kept as initialised
        out["params"]["classifier"]["kernel"], variables["params"]["classifier"]["kernel"]
    )
    other = DeepLabV3Plus(num_classes=21, backbone="mobilenetv2", separable=False)
    shapes = jax.eval_shape(other.init, jax.random.key(0), jnp.zeros((1, 65, 65, 3)))
    with pytest.raises(ValueError, match="not the released architecture.*decoder"):
        zoo.training.initial_variables(spec, shapes, checkpoint=archive)
    with pytest.raises(KeyError, match="no model 'nope' in the zoo"):
        zoo.training.model("zoo:nope")


def test_mobilenet_depth_multipliers_that_would_round_differently_are_refused():
    assert DeepLabArch("mobilenet_v2", depth_multiplier=0.5).depth_multiplier == 0.5
    with pytest.raises(ValueError, match="depth_multiplier=0.75"):
        DeepLabArch("mobilenet_v2", depth_multiplier=0.75)
    with pytest.raises(ValueError, match="unknown DeepLab model_variant 'xception_66'"):
        DeepLabArch("xception_66")


@pytest.mark.parametrize("name", ["x65", "mnv2"])
def test_multiscale_flip_protocol_matches_official(checkpoints, name):
    case, official, prefix = checkpoints[name]
    crop, scales = (65, 65), (0.5, 0.75, 1.25)
    imported = tf_slim.convert_checkpoint(prefix, case.arch, 16)
    release = deeplab_models.Release(case.arch, labels=None, eval_crop=crop)
    names = [f"class{i}" for i in range(case.arch.num_classes)]
    seg = deeplab_models.build_segmenter(release, imported.variables, 16, class_names=names)
    image = np.random.default_rng(4).integers(0, 256, (60, 45, 3), dtype=np.uint8)
    ours = np.exp(seg.replace(scales=scales, flip=True).logits(image))  # log-probabilities
    reference = official_multiscale(official, case, image, crop, 16, scales, flip=True)
    assert ours.shape == (60, 45, case.arch.num_classes)
    np.testing.assert_allclose(ours, reference, atol=2e-5)


def test_evaluate_published_scores_against_the_protocol(mobilenet_release, tmp_path, monkeypatch):
    from jaxseg.zoo.evaluate import evaluate_published

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    case, official, archive, _ = mobilenet_release
    rng = np.random.default_rng(12)
    images = [rng.integers(0, 256, (50, 40, 3), dtype=np.uint8) for _ in range(2)]
    labels = [np.argmax(official_logits(official, case, im, (65, 65), 16), -1) for im in images]
    labels[0][:5, :5] = 255  # ignored
    summary, published = evaluate_published(
        "mobilenetv2_coco_voc_trainaug", zip(images, labels, strict=True), 0, archive, crop_size=65
    )
    assert (published.value, published.eval_output_stride) == (75.32, 16)
    assert summary["pixel_accuracy"] == 1.0 and summary["num_pixels"] == 2 * 50 * 40 - 25
    wrong = [label.copy() for label in labels]
    wrong[1][10:20, 10:20] = (wrong[1][10:20, 10:20] + 1) % 21
    summary, _ = evaluate_published(
        "mobilenetv2_coco_voc_trainaug", zip(images, wrong, strict=True), 0, archive, crop_size=65
    )
    assert summary["pixel_accuracy"] == pytest.approx(1 - 100 / (2 * 50 * 40 - 25))


def test_zoo_predict_command_writes_label_pngs(mobilenet_release, tmp_path, monkeypatch, capsys):
    import shutil

    from PIL import Image

    from jaxseg.zoo_cli import main

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    case, official, archive, _ = mobilenet_release
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    shutil.copy(archive, downloads / archive.name)  # as if downloaded before: no network
    photos = tmp_path / "photos"
    photos.mkdir()
    image = np.random.default_rng(13).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    Image.fromarray(image).save(photos / "a.png")
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    args = ["predict", "mobilenetv2_coco_voc_trainaug", "--input", str(photos)]
    assert main([*args, "--output", str(out), "--crop-size", "65"]) == 0
    expected = np.argmax(official_logits(official, case, image, (65, 65), 16), -1)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), expected)
    assert (out / "a_overlay.jpg").exists() and "notes.txt" in capsys.readouterr().err
    assert main([*args, "--output", str(out), "--crop-size", "65"]) == 2  # never overwrites
    assert "already holds 2 file(s)" in capsys.readouterr().err
