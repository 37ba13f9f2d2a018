"""Pieces the experiment files add: overlap-tile U-Net inference, the shift-and-stitch patch
segmenter, patch sampling, border weights, and the shared helpers of `jaxseg.experiment`."""

import importlib.util
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from jaxseg import experiment, metrics
from jaxseg.data.pipeline import transforms
from jaxseg.models import PatchClassifier

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


class Tiny(nn.Module):
    """conv + BatchNorm + conv: a state with batch_stats that compiles in a moment."""

    num_classes: int = 2

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Conv(8, (3, 3))(x)))
        return nn.Conv(self.num_classes, (3, 3))(x)


def load(name):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overlap_tile_equals_the_unet_on_each_mirrored_tile():
    module = load("unet_valid_pets")
    config = module.get_config()
    config.model.update(depth=2, base_features=4, tile_output=12, dtype="float32")
    config.crop_size = 52  # depth 2: a 52 tile gives the 12 x 12 centre, 20 px margin
    model = module.build_model(config)
    images = np.random.default_rng(0).normal(size=(2, 17, 30, 3)).astype(np.float32)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 12, 12, 3)))  # one tile
    logits = np.asarray(jax.jit(model.apply)(variables, images))
    assert logits.shape == (2, 17, 30, 2)

    # Reference: numpy's mirror padding, each 52x52 tile through the plain U-Net, outputs
    # placed every 12 pixels.
    margin, out, tile = 20, 12, 52
    pad_h, pad_w = (margin, margin + 2 * out - 17), (margin, margin + 3 * out - 30)
    padded = np.pad(images, ((0, 0), pad_h, pad_w, (0, 0)), mode="reflect")
    unet_vars = {"params": variables["params"]["unet"]}
    unet = jax.jit(model.unet.apply)
    expected = np.zeros((2, 2 * out, 3 * out, 2), np.float32)
    for r in range(2):
        for c in range(3):
            window = padded[:, r * out : r * out + tile, c * out : c * out + tile]
            expected[:, r * out : (r + 1) * out, c * out : (c + 1) * out] = unet(unet_vars, window)
    np.testing.assert_allclose(logits, expected[:, :17, :30], rtol=1e-5, atol=1e-5)
    # Training sees one tile: the centre 12 x 12 only.
    train_logits = model.apply(
        variables, padded[:, :tile, :tile], train=True, rngs={"dropout": jax.random.key(1)}
    )
    assert train_logits.shape == (2, out, out, 2)


def test_patch_segmenter_scores_each_pixel_by_the_window_centred_on_it():
    module = load("patch_classifier_voc")
    config = module.demo_config(module.get_config())
    config.model.update(patch_size=14, conv_features=(4, 8), hidden_features=(6,))
    config.num_classes = 5
    dense, patches = module.build_model(config), module.build_train_model(config)
    images = np.random.default_rng(1).normal(size=(2, 11, 13, 3)).astype(np.float32)
    variables = dense.init(jax.random.key(0), jnp.asarray(images))
    scores = np.asarray(dense.apply(variables, images))
    assert scores.shape == (2, 11, 13, 5)

    classifier = PatchClassifier(
        num_classes=5, patch_size=14, conv_features=(4, 8), hidden_features=(6,)
    )
    padded = np.pad(images, ((0, 0), (7, 6), (7, 6), (0, 0)))  # window of pixel y: y-7 .. y+6
    for b, y, x in [(0, 0, 0), (0, 10, 12), (1, 5, 6), (1, 3, 11), (0, 7, 2)]:
        window = padded[b : b + 1, y : y + 14, x : x + 14]
        expected = classifier.apply({"params": variables["params"]["classifier"]}, window)
        np.testing.assert_allclose(scores[b, y, x], expected[0], rtol=1e-4, atol=1e-5)
        # The training module gives the same score for that window, shaped [B, 1, 1, C].
        np.testing.assert_allclose(
            patches.apply(variables, window)[0, 0, 0], expected[0], rtol=1e-5, atol=1e-6
        )


def test_sample_patches_are_windows_labelled_by_their_centre():
    module = load("patch_classifier_voc")
    config = module.demo_config(module.get_config())
    config.model.patch_size = 5
    config.patches_per_image = 7
    rng = np.random.default_rng(2)
    batch = {
        "image": rng.normal(size=(3, 9, 10, 3)).astype(np.float32),
        "label": rng.integers(0, 21, size=(3, 9, 10)).astype(np.int32),
        "mask": np.ones(3, bool),
    }
    out = module.sample_patches(config, batch, step=4)
    assert out["image"].shape == (21, 5, 5, 3) and out["label"].shape == (21, 1, 1)
    again = module.sample_patches(config, batch, step=4)
    np.testing.assert_array_equal(out["image"], again["image"])  # a function of the step
    for i in range(21):
        b = i // 7
        centre = out["image"][i, 2, 2]
        (ys, xs) = np.nonzero(np.all(batch["image"][b] == centre, axis=-1))
        assert len(ys) == 1  # random normals: the centre pixel identifies the position
        assert out["label"][i, 0, 0] == batch["label"][b, ys[0], xs[0]]


def test_border_weights_added_per_training_tile():
    module = load("unet_valid_pets")
    config = module.get_config()
    label = np.zeros((1, 40, 40), np.int32)
    label[0, 5:15, 5:15] = 1
    label[0, 5:15, 18:28] = 1  # two instances 3 px apart: the gap gets the border term
    label[0, 30:, :] = 255
    out = module.add_border_weights(config, {"image": np.zeros((1, 40, 40, 3)), "label": label}, 0)
    weights = out["pixel_weights"]
    assert weights.shape == (1, 40, 40) and weights.dtype == np.float32
    assert np.all(weights[0, 30:] == 0)  # ignored pixels
    assert weights[0, 10, 16] > 5 * weights[0, 25, 35]  # between the objects vs open background


@pytest.mark.parametrize("name", ["imagenet", "caffe_bgr", "inception", "none"])
def test_normalize_matches_the_data_pipeline_and_denormalize_inverts_it(name):
    config = ml_collections.ConfigDict({"normalization": name})
    image = np.random.default_rng(3).integers(0, 256, size=(2, 5, 7, 3)).astype(np.float32)
    ours = np.asarray(experiment.normalize(config, image))
    pipeline = transforms.normalize(tf.constant(image), name).numpy()
    np.testing.assert_allclose(ours, pipeline, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(experiment.denormalize(config, ours), image, atol=1e-3)


def test_the_scoring_loop_counts_each_image_at_its_own_size():
    """`jaxseg.scoring.confusion_matrices`: hand-counted matrix, labels out of range (7) in the
    extra row, 255 not counted, images of two sizes."""
    import types

    from jaxseg import scoring

    truth = np.array([[0, 1, 1, 255], [2, 2, 7, 0]])
    guess = np.array([[0, 1, 2, 2], [2, 0, 1, 1]])
    small_truth, small_guess = np.array([[1]]), np.array([[0]])
    logits = {4: np.eye(3, dtype=np.float32)[guess], 1: np.eye(3, dtype=np.float32)[small_guess]}
    seg = types.SimpleNamespace(num_classes=3, logits=lambda image: logits[image.shape[1]])
    pairs = [(np.zeros((2, 4, 3)), truth), (np.zeros((1, 1, 3)), small_truth)]
    counts, n = scoring.confusion_matrices(seg, pairs)
    expected = np.zeros((4, 4), np.int64)  # 3 classes + the out-of-range row/column
    for t, g in [(0, 0), (1, 1), (1, 2), (2, 2), (2, 0), (3, 1), (0, 1), (1, 0)]:
        expected[t, g] += 1
    assert n == 2
    np.testing.assert_array_equal(counts["plain"], expected)


def test_label_offset_scores_like_deeplab_eval_with_ignore_label_zero():
    """DeepLab's ADE20K release: 151 outputs, output 0 = "other"; jaxseg's labels hold other as
    255 and classes shifted to 0..149. With `label_offset=1` the scores must be those of
    DeepLab's eval.py (research/deeplab/eval.py, ADE20K `ignore_label=0`, `num_classes=151`):
    `tf.compat.v1.metrics.mean_iou` over all outputs, weights 0 on "other", "other"
    predictions counted as errors and "other" in the mean with IoU 0."""
    import types

    from jaxseg import scoring

    rng = np.random.default_rng(4)
    raw = rng.integers(0, 5, (6, 9))  # the archive's values: 0 = other, 1..4 classes
    predicted = rng.integers(0, 5, (6, 9))  # argmax over 5 outputs, "other" (0) included
    assert np.any((predicted == 0) & (raw > 0))  # "other" predicted on labelled pixels
    labels = np.where(raw == 0, 255, raw - 1)  # jaxseg's ADE20K label table
    seg = types.SimpleNamespace(num_classes=5, logits=lambda image: np.eye(5)[predicted])
    pairs = [(np.zeros((6, 9, 3)), labels)]
    counts, _ = scoring.confusion_matrices(seg, pairs, label_offset=1)
    ours = metrics.summarize(counts["plain"], list("oabcd"), out_of_range=True)

    with tf.Graph().as_default():
        flat_labels = tf.constant(raw.reshape(-1))
        weights = tf.cast(tf.not_equal(flat_labels, 0), tf.float32)
        miou, update = tf.compat.v1.metrics.mean_iou(
            flat_labels, tf.constant(predicted.reshape(-1)), 5, weights=weights
        )
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.local_variables_initializer())
            session.run(update)
            official = session.run(miou)
    assert ours["miou"] == pytest.approx(float(official), rel=1e-6)
    labelled = raw > 0
    accuracy = np.mean(predicted[labelled] == raw[labelled])
    assert ours["pixel_accuracy"] == pytest.approx(accuracy)
    # Without the offset the same predictions would meet the wrong labels.
    plain, _ = scoring.confusion_matrices(seg, pairs)
    assert metrics.summarize(plain["plain"], list("oabcd"), out_of_range=True)["miou"] != (
        pytest.approx(float(official))
    )


def test_conv_layers_auto_is_the_cpu_forms_on_a_cpu(monkeypatch):
    """The default `config.conv_layers="auto"` trains with the CPU forms where JAX runs on a
    CPU (about twice as fast there) and the reference ops on accelerators."""
    import jax

    from jaxseg import nn as jaxseg_nn
    from jaxseg import train

    config = experiment.base_config()
    assert config.conv_layers == "auto"
    assert experiment.conv_layers(config) is jaxseg_nn.LAYER_FORMS["cpu"]
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert experiment.conv_layers(config) is jaxseg_nn.LAYER_FORMS["reference"]
    config.conv_layers = "fast"
    with pytest.raises(train.ConfigError, match="'fast'.*'auto'"):
        experiment.conv_layers(config)


def test_foreground_dataset_info_maps_every_object_to_one():
    config = ml_collections.ConfigDict({"dataset": "voc_segmentation/2012", "num_classes": 2})
    info = experiment.foreground_dataset_info(config, ("background", "pet"))
    raw = np.array([0, 1, 7, 20, 21, 255])
    np.testing.assert_array_equal(info.map_labels(raw), [0, 1, 1, 1, 255, 255])
    assert info.class_names == ("background", "pet") and info.palette.shape == (2, 3)


def test_backbone_factory_binds_only_that_backbones_options():
    model = ml_collections.ConfigDict(
        dict(backbone="resnet50", base_width=16, stride_in_1x1=True, width_multiplier=0.5)
    )
    factory = experiment.backbone_factory(model)
    assert factory.keywords == {"base_width": 16, "stride_in_1x1": True}
    model.backbone = "mobilenetv2"
    assert experiment.backbone_factory(model).keywords == {"width_multiplier": 0.5}


def test_per_image_evaluation_counts_what_the_batched_evaluation_counts():
    """Without scales, flips or CRF the per-image path (each image at its own size through the
    run's Segmenter and the one scoring loop) must count exactly the pixels and classes the
    jitted batch path counts."""
    import functools

    from jaxseg import metrics, train

    config = experiment.base_config()
    config.crop_size = 32
    config.num_classes = 3
    config.normalization = "none"  # the batch holds network inputs; raw images are the same
    mesh = train.make_mesh()
    tx = train.make_optimizer(config.optimizer, 10)
    state = train.create_train_state(Tiny(3), tx, jax.random.key(0), (1, 32, 64, 3))
    state = train.shard_state(state, mesh)
    rng = np.random.default_rng(4)
    image = rng.normal(size=(8, 32, 64, 3)).astype(np.float32)
    label = rng.integers(0, 3, size=(8, 32, 64)).astype(np.int32)
    label[:, :3] = 255  # an ignored band
    mask = np.array([True] * 6 + [False] * 2)  # two padding examples, counted by neither
    size = np.where(mask[:, None], [32, 64], 0).astype(np.int32)
    batch = {"image": image, "label": label, "mask": mask, "size": size}

    step = train.jit_eval_step(functools.partial(train.eval_step, num_classes=3), mesh)
    batched = train.evaluate(state, [batch], eval_step=step, mesh=mesh)["confusion_matrix"]
    config.eval_flip = True  # forces the per-image path ...
    assert experiment.uses_tta(config)
    config.eval_flip = False  # ... which, without any option, is plain prediction
    pairs = [(image[i], label[i]) for i in np.flatnonzero(mask)]
    per_image = experiment.evaluate_per_image(state, pairs, config=config, model=Tiny(3))
    np.testing.assert_array_equal(per_image["plain"], batched)
    assert metrics.summarize(per_image["plain"], out_of_range=True)["num_pixels"] == 6 * 29 * 64


def test_pretrained_backbone_weights_are_loaded_and_their_preprocessing_enforced(tmp_path):
    """`--config.pretrained` with a Keras MobileNetV2 file (random weights) into the DeepLab v3+
    demo model: the backbone's params and BN statistics become the file's; a normalisation the
    weights were not trained with is refused with the fix."""
    keras = pytest.importorskip("keras")
    from jaxseg import train
    from jaxseg.weights import from_keras

    reference = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(64, 64, 3)
    )
    path = tmp_path / "mobilenet_v2.h5"
    reference.save(path)

    module = load("deeplabv3plus_voc")
    config = module.demo_config(module.get_config())
    config.model.update(backbone="mobilenetv2", width_multiplier=1.0, multi_grid=())
    config.pretrained, config.pretrained_model = str(path), "mobilenetv2"
    model = module.build_model(config)
    # Zeros in the shapes of the state: no initialisation to compile for this check.
    state = jax.tree_util.tree_map(
        lambda s: np.zeros(s.shape, s.dtype), experiment.abstract_state(model, config)
    )
    with pytest.raises(train.ConfigError, match="--config.normalization=inception"):
        experiment.init_from_pretrained(config, state)

    config.normalization = "inception"  # [-1, 1]: what Keras' MobileNetV2 was trained on
    loaded = experiment.init_from_pretrained(config, state)
    expected = from_keras(path, "mobilenetv2").variables
    for group in ("params", "batch_stats"):
        want = jax.tree_util.tree_leaves_with_path(expected[group])
        got = getattr(loaded, group)["backbone"]
        for key_path, value in want:
            leaf = got
            for key in key_path:
                leaf = leaf[key.key]
            np.testing.assert_array_equal(np.asarray(leaf), np.asarray(value))
    # Everything outside the backbone keeps its (here: zero) initial value.
    assert not np.any(np.asarray(loaded.params["classifier"]["kernel"]))


def test_evaluation_reads_checkpoints_without_touching_a_save_in_flight(tmp_path):
    """`--mode=eval` next to a running training: the reader neither deletes the temporary
    directory of a save in progress (as a writer's start-up clean-up would) nor creates
    anything; and it finds and restores the checkpoint."""
    from jaxseg import train
    from jaxseg.experiment import state as state_lib

    config = experiment.base_config()
    config.crop_size = 8
    tx = train.make_optimizer(config.optimizer, 10)
    state = train.create_train_state(Tiny(), tx, jax.random.key(0), (1, 8, 8, 3))
    ckpts = train.Checkpoints(tmp_path / "checkpoints")
    ckpts.save(3, state, train.model_signature(state))
    ckpts.close()
    in_flight = tmp_path / "checkpoints" / "5.orbax-checkpoint-tmp-1234567890"
    in_flight.mkdir()
    (in_flight / "partial").write_text("a save still being written")

    assert state_lib.find_checkpoint(str(tmp_path), "best", config) == 3
    restored = state_lib.restore(state, str(tmp_path), 3, config)
    np.testing.assert_array_equal(
        restored.params["Conv_0"]["kernel"], state.params["Conv_0"]["kernel"]
    )
    assert (in_flight / "partial").is_file()
    # The writer's manager does clean it up: what read_only protects against. Orbax may do
    # that clean-up on a background thread that outlives close(), so wait for it (bounded).
    train.Checkpoints(tmp_path / "checkpoints").close()
    deadline = time.monotonic() + 30
    while in_flight.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not in_flight.exists()
