"""Data for jaxseg: TFDS builders, dataset metadata, tf.data transforms and pipelines.

Importing this package hides accelerators from TensorFlow (it only feeds data) and registers
the ``voc_segmentation`` (configs ``2012``, ``2012_aug``), ``camvid`` and ``ade20k_scene_parsing``
TFDS builders.
"""

from jaxseg.data.tf_setup import hide_accelerators_from_tf

hide_accelerators_from_tf()

from jaxseg.data.builders import ade20k, camvid, downloads, voc  # noqa: E402, F401  (registers the TFDS builders)
from jaxseg.data.datasets import DATASETS, DatasetInfo, get_dataset_info  # noqa: E402
from jaxseg.data.errors import DataError, DatasetNotFoundError  # noqa: E402
from jaxseg.data.pipeline import eval_stream, train_stream  # noqa: E402

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "ade20k",
    "camvid",
    "eval_stream",
    "get_dataset_info",
    "train_stream",
    "voc",
]
