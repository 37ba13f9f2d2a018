"""Data for jaxseg: dataset metadata and label tables (light), TFDS builders and tf.data
pipelines (TensorFlow).

Importing `jaxseg.data` itself needs no TensorFlow: `DatasetInfo`, the dataset table and the
class-name tables serve the model zoo and prediction in a library-only install. The TensorFlow
parts are subpackages imported by name, each hiding accelerators from TensorFlow first:

- `jaxseg.data.builders`: the TFDS builders `voc_segmentation`, `camvid`,
  `ade20k_scene_parsing` and `segmentation_folder`, each registered when its module is
  imported (`jaxseg.data.pipeline` imports the stock ones);
- `jaxseg.data.pipeline`: `train_stream` / `eval_stream`.
"""

from jaxseg.data.datasets import DATASETS, DatasetInfo, get_dataset_info, is_folder_spec
from jaxseg.data.errors import DataError, DatasetNotFoundError

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "get_dataset_info",
    "is_folder_spec",
]
