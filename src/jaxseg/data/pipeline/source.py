"""Read a prepared TFDS split as *encoded* examples and decode them into image/label pairs.

Pipelines shuffle, skip and filter encoded bytes (cheap) and decode only the examples they
keep; the dataset's :class:`~jaxseg.data.datasets.DatasetInfo` says which features hold the
image and mask and how raw mask values map to training labels.
"""

import os

import tensorflow as tf
import tensorflow_datasets as tfds

from jaxseg.data.builders import ade20k, camvid, voc  # noqa: F401  (registers them for tfds.builder)
from jaxseg.data.datasets import DatasetInfo, get_dataset_info
from jaxseg.data.errors import DatasetNotFoundError

# Common names people use for splits, mapped to what the builders call them.
_SPLIT_ALIASES = {"val": "validation", "train_aug": "train", "trainaug": "train"}


def get_builder(builder_or_name, data_dir: str | os.PathLike | None = None):
    """A *prepared* TFDS builder from a builder or a name like ``"voc_segmentation/2012_aug"``."""
    builder = builder_or_name
    if isinstance(builder_or_name, str):
        data_dir = os.fspath(data_dir) if data_dir is not None else None
        builder = tfds.builder(builder_or_name, data_dir=data_dir)
    if not builder.is_prepared():
        raise DatasetNotFoundError(
            f"{builder.name}/{builder.builder_config.name if builder.builder_config else ''} is "
            f"not prepared in {builder.data_dir}. Prepare it first, e.g. tfds.load(name, "
            "data_dir=..., download_and_prepare_kwargs={'download_config': "
            "tfds.download.DownloadConfig(manual_dir=...)}) (see the README's Datasets "
            "section), or use --demo (jaxseg.data.demo.prepare_demo)."
        )
    return builder


def resolve_split(builder, split: str) -> str:
    """``split`` itself if the builder has it, else a known alias (``val`` -> ``validation``)."""
    base = split.split("[")[0]
    if base in builder.info.splits or base not in _SPLIT_ALIASES:
        return split
    return _SPLIT_ALIASES[base] + split[len(base) :]


def dataset_info_for(builder, dataset_info: DatasetInfo | None = None) -> DatasetInfo:
    return dataset_info if dataset_info is not None else get_dataset_info(builder.name)


def read_encoded(builder, split, info: DatasetInfo) -> tf.data.Dataset:
    """Examples of ``split`` in a fixed order as ``{"image": bytes, "label": bytes, "name":
    string}`` (images encoded; ``name`` the builder's ``file_name``, "" for builders without one).

    No image of the example is decoded (extra ones, like Cityscapes' right view, are dropped
    still encoded).
    """
    features = builder.info.features
    decoders = {
        key: tfds.decode.SkipDecoding()
        for key in features.keys()
        if isinstance(features[key], tfds.features.Image)
    }
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
    has_name = "file_name" in features.keys()

    def encoded(ex):
        name = ex["file_name"] if has_name else tf.constant("")
        return {"image": ex[info.image_key], "label": ex[info.label_key], "name": name}

    return ds.map(encoded)


def decode(builder, info: DatasetInfo, encoded: dict) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoded example -> image ``uint8 [H, W, 3]``, training label ``uint8 [H, W]``."""
    features = builder.info.features
    example = {
        info.image_key: features[info.image_key].decode_example(encoded["image"]),
        info.label_key: features[info.label_key].decode_example(encoded["label"]),
    }
    out = info.adapt(example)
    return out["image"], out["label"]


def encoded_image_size(encoded: tf.Tensor) -> tf.Tensor:
    """``int32 [2]`` (height, width) of a JPEG or PNG from its header, without decoding pixels."""

    def png_size():
        # IHDR: width then height as big-endian uint32 at bytes 16..23.
        raw = tf.io.decode_raw(tf.strings.substr(encoded, 16, 8), tf.uint8)
        raw = tf.cast(tf.reshape(raw, [2, 4]), tf.int32)
        width_height = raw[:, 0] * 16777216 + raw[:, 1] * 65536 + raw[:, 2] * 256 + raw[:, 3]
        return width_height[::-1]

    def other_size():
        return tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False))[:2]

    magic = tf.strings.substr(encoded, 0, 4)
    return tf.case(
        [
            (
                tf.equal(tf.strings.substr(magic, 0, 2), b"\xff\xd8"),
                lambda: tf.io.extract_jpeg_shape(encoded)[:2],
            ),
            (tf.equal(magic, b"\x89PNG"), png_size),
        ],
        default=other_size,
    )
