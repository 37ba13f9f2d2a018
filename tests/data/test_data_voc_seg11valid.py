"""voc_segmentation's seg11valid split: the shipped list is FCN's, the split holds exactly it."""

import hashlib
import re

import numpy as np
import pytest
from PIL import Image

from jaxseg.data.builders import voc_splits

SEG11VALID_MD5 = "7984b6ce736bd3666d8b7ee70b5401da"  # FCN's data/pascal/seg11valid.txt


def test_shipped_list_is_fcns_seg11valid():
    raw = voc_splits.SEG11VALID_LIST.read_bytes()
    assert hashlib.md5(raw).hexdigest() == SEG11VALID_MD5 and len(raw) == 8832
    names = raw.decode().split()
    assert len(names) == len(set(names)) == 736
    # VOC2011 naming: the year of a VOC release up to 2011, underscore, six digits.
    assert all(re.fullmatch(r"20(0[7-9]|1[01])_\d{6}", name) for name in names)


def _add_seg11valid(voc, names, skip=()):
    rng = np.random.default_rng(3)
    for name in names:
        if name in skip:
            continue
        Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{name}.jpg"
        )
        mask = rng.integers(0, 21, (4, 4), dtype=np.uint8)
        mask[0, 0] = 255
        Image.fromarray(mask).save(voc / "SegmentationClass" / f"{name}.png")


def test_seg11valid_split_holds_exactly_the_list(build_dataset, tmp_path):
    from jaxseg.data import demo

    manual = tmp_path / "manual"
    demo.write_voc_tree(manual, num_train=3, num_val=2, seed=1, image_size=(24, 32))
    voc = manual / "VOCdevkit" / "VOC2012"
    names = voc_splits.SEG11VALID_LIST.read_text().split()
    _add_seg11valid(voc, names)
    builder = build_dataset("voc_segmentation/2012", tmp_path / "tfds", manual)
    assert builder.version == "1.1.0"
    splits = builder.info.splits
    assert splits["train"].num_examples == 3 and splits["validation"].num_examples == 2
    examples = {
        ex["file_name"].decode(): ex
        for ex in builder.as_dataset(split="seg11valid").as_numpy_iterator()
    }
    assert set(examples) == {f"{name}.jpg" for name in names}
    for name in names[:20]:
        expected = np.asarray(Image.open(voc / "SegmentationClass" / f"{name}.png"))
        np.testing.assert_array_equal(examples[f"{name}.jpg"]["label"][..., 0], expected)


def test_seg11valid_items_for_2012_aug_come_from_voc(tmp_path):
    from jaxseg.data import demo
    from jaxseg.data.builders.voc_sources import VocSources

    tree = demo.write_voc_tree(tmp_path, 3, 2, seed=4, image_size=(24, 32), num_sbd=3)
    voc = tree / "VOCdevkit" / "VOC2012"
    names = voc_splits.SEG11VALID_LIST.read_text().split()
    _add_seg11valid(voc, names)
    sbd = tree / "benchmark_RELEASE" / "dataset"
    items = voc_splits.split_items(VocSources(voc=voc, sbd=sbd, aug=None), with_extra=True)
    seg11 = items["seg11valid"]
    assert [item.name for item in seg11] == sorted(names)
    assert all(item.label == voc / "SegmentationClass" / f"{item.name}.png" for item in seg11)


def test_partial_seg11valid_is_refused_naming_the_missing(tmp_path):
    from jaxseg.data import demo
    from jaxseg.data.builders.voc_sources import VocSources
    from jaxseg.data.errors import DataError

    tree = demo.write_voc_tree(tmp_path, 3, 2, seed=4, image_size=(24, 32))
    voc = tree / "VOCdevkit" / "VOC2012"
    names = voc_splits.SEG11VALID_LIST.read_text().split()
    _add_seg11valid(voc, names[:10], skip={names[3]})
    with pytest.raises(DataError, match=rf"1454 files are missing(.|\n)*{names[3]}\.jpg"):
        voc_splits.split_items(VocSources(voc=voc, sbd=None, aug=None), with_extra=False)


def test_tree_without_seg11valid_images_has_no_such_split(voc_builder):
    # The session tree is generated data (no VOC2011 name): built without the split, and an
    # experiment asking for it is told what the prepared folder holds.
    from jaxseg import train
    from jaxseg.experiment import config as experiment_config
    from jaxseg.experiment.datasets import _check_splits

    assert sorted(voc_builder.info.splits.keys()) == ["train", "validation"]
    config = experiment_config.base_config()
    config.dataset, config.eval_split = "voc_segmentation/2012", "seg11valid"
    with pytest.raises(train.ConfigError, match=r"no split 'seg11valid', only \['train', 'valid"):
        _check_splits(config, voc_builder)
    config.eval_split = "validation[:3]"
    assert _check_splits(config, voc_builder) is voc_builder


def test_folder_of_an_older_version_is_named(build_dataset, tmp_path):
    # A data folder prepared before seg11valid existed holds version 1.0.0 only; stand one in by
    # renaming a fresh build, then ask for the dataset without manual files.
    from jaxseg.data import demo
    from jaxseg.experiment import DatasetNotFoundError
    from jaxseg.experiment import config as experiment_config
    from jaxseg.experiment.datasets import load_builder

    demo.write_voc_tree(tmp_path / "manual", 3, 2, seed=1, image_size=(24, 32))
    build_dataset("voc_segmentation/2012", tmp_path / "tfds", tmp_path / "manual")
    folder = tmp_path / "tfds" / "voc_segmentation" / "2012"
    (folder / "1.1.0").rename(folder / "1.0.0")
    config = experiment_config.base_config()
    config.dataset, config.data_dir = "voc_segmentation/2012", str(tmp_path / "tfds")
    with pytest.raises(DatasetNotFoundError, match=r"holds version 1\.0\.0.*needs version 1\.1\.0"):
        load_builder(config, demo=False)
