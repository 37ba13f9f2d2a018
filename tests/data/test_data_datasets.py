"""Dataset metadata and the label maps of the stock-TFDS adapters."""

import numpy as np
import pytest
import tensorflow as tf

from jaxseg.data import DATASETS, get_dataset_info


@pytest.mark.parametrize(
    "name,num_classes",
    [
        ("voc", 21),
        ("camvid", 11),
        ("cityscapes", 19),
        ("oxford_iiit_pet", 2),
        ("scene_parse150", 100),
        ("ade20k", 150),
    ],
)
def test_metadata_shapes(name, num_classes):
    info = get_dataset_info(name)
    assert info.num_classes == num_classes == len(info.class_names) == len(set(info.class_names))
    assert info.palette.shape == (num_classes, 3) and info.palette.dtype == np.uint8
    assert info.ignore_label == 255


def test_lookup_accepts_tfds_names():
    assert get_dataset_info("voc_segmentation/2012_aug") is DATASETS["voc_segmentation"]
    with pytest.raises(KeyError, match="unknown dataset"):
        get_dataset_info("mnist")


def test_voc_palette_and_classes():
    info = get_dataset_info("voc")
    # Colours of the official VOC palette (VOCdevkit's labelcolormap).
    assert info.palette[1].tolist() == [128, 0, 0]  # aeroplane
    assert info.palette[15].tolist() == [192, 128, 128]  # person
    assert info.palette[20].tolist() == [0, 64, 128]  # tvmonitor
    assert info.class_names[15] == "person" and info.ignore_color == (224, 224, 192)


def test_cityscapes_label_ids_to_train_ids():
    info = get_dataset_info("cityscapes")
    # cityscapesScripts labels.py: (name, id, trainId).
    official = [
        ("unlabeled", 0, 255),
        ("ego vehicle", 1, 255),
        ("ground", 6, 255),
        ("road", 7, 0),
        ("sidewalk", 8, 1),
        ("parking", 9, 255),
        ("rail track", 10, 255),
        ("building", 11, 2),
        ("wall", 12, 3),
        ("fence", 13, 4),
        ("guard rail", 14, 255),
        ("bridge", 15, 255),
        ("tunnel", 16, 255),
        ("pole", 17, 5),
        ("polegroup", 18, 255),
        ("traffic light", 19, 6),
        ("traffic sign", 20, 7),
        ("vegetation", 21, 8),
        ("terrain", 22, 9),
        ("sky", 23, 10),
        ("person", 24, 11),
        ("rider", 25, 12),
        ("car", 26, 13),
        ("truck", 27, 14),
        ("bus", 28, 15),
        ("caravan", 29, 255),
        ("trailer", 30, 255),
        ("train", 31, 16),
        ("motorcycle", 32, 17),
        ("bicycle", 33, 18),
    ]
    ids = np.array([[i for _, i, _ in official]], np.uint8)
    example = {
        "image_left": tf.zeros([1, len(official), 3], tf.uint8),
        "segmentation_label": ids[..., None],
    }
    out = info.adapt(example)
    np.testing.assert_array_equal(out["label"].numpy()[0], [t for _, _, t in official])
    for name, _, train_id in official:
        if train_id != 255:
            assert info.class_names[train_id] == name
    assert info.palette[0].tolist() == [128, 64, 128]  # road


def test_pet_trimap():
    info = get_dataset_info("oxford_iiit_pet")
    trimap = tf.constant([[[1], [2], [3]]], tf.uint8)  # pet, background, border
    out = info.adapt({"image": tf.zeros([1, 3, 3], tf.uint8), "segmentation_mask": trimap})
    assert out["label"].numpy().tolist() == [[1, 0, 255]]
    assert out["label"].dtype == tf.uint8


def test_scene_parse150_reads_red_channel():
    info = get_dataset_info("scene_parse150")
    # TFDS holds instance masks: red = category (0 = none), green = instance id.
    annotation = tf.constant([[[0, 0, 0], [1, 5, 0], [100, 9, 0], [4, 1, 0]]], tf.uint8)
    out = info.adapt({"image": tf.zeros([1, 4, 3], tf.uint8), "annotation": annotation})
    assert out["label"].numpy().tolist() == [[255, 0, 99, 3]]
    assert info.class_names[3] == "person" and info.class_names[99] == "flag"


def test_ade20k_semantic_map():
    info = get_dataset_info("ade20k")
    np.testing.assert_array_equal(info.map_labels(np.array([0, 1, 150, 151])), [255, 0, 149, 255])
    assert info.class_names[0] == "wall" and info.class_names[149] == "flag"
