"""Broken trees stop preparation with a DataError / DatasetNotFoundError naming the file."""

import numpy as np
import pytest
from PIL import Image

from jaxseg.data import demo
from jaxseg.data.errors import DataError, DatasetNotFoundError


@pytest.fixture
def tiny_tree(tmp_path):
    manual = tmp_path / "manual"
    demo.write_voc_tree(manual, num_train=3, num_val=2, seed=2, image_size=(24, 32))
    return manual, manual / "VOCdevkit" / "VOC2012"


def _prepare(build_dataset, tmp_path, manual, config="2012"):
    return build_dataset(f"voc_segmentation/{config}", tmp_path / "tfds", manual)


def test_truncated_jpeg(build_dataset, tmp_path, tiny_tree):
    manual, voc = tiny_tree
    path = voc / "JPEGImages" / "demo_000001.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="demo_000001.jpg.*truncated or corrupt"):
        _prepare(build_dataset, tmp_path, manual)


def test_mask_size_differs_from_image(build_dataset, tmp_path, tiny_tree):
    manual, voc = tiny_tree
    path = voc / "SegmentationClass" / "demo_000002.png"
    mask = Image.open(path)
    mask.crop((0, 0, mask.width - 3, mask.height)).save(path)
    with pytest.raises(DataError, match=r"demo_000002.png: mask is \d+x\d+ .* but its image"):
        _prepare(build_dataset, tmp_path, manual)


def test_mask_value_outside_classes(build_dataset, tmp_path, tiny_tree):
    manual, voc = tiny_tree
    path = voc / "SegmentationClass" / "demo_000000.png"
    mask = Image.open(path)
    values = np.array(mask)
    values[0, 0] = 42  # neither a VOC class (0..20) nor 255
    out = Image.frombytes("P", mask.size, values.tobytes())
    out.putpalette(mask.getpalette())
    out.save(path)
    with pytest.raises(DataError, match=r"demo_000000.png: mask values \[42\]"):
        _prepare(build_dataset, tmp_path, manual)


def test_colour_mask_refused(build_dataset, tmp_path, tiny_tree):
    manual, voc = tiny_tree
    path = voc / "SegmentationClass" / "demo_000003.png"
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(DataError, match="demo_000003.png: mask PNG has mode 'RGB'"):
        _prepare(build_dataset, tmp_path, manual)


def test_listed_name_without_file(build_dataset, tmp_path, tiny_tree):
    manual, voc = tiny_tree
    listing = voc / "ImageSets" / "Segmentation" / "train.txt"
    listing.write_text(listing.read_text() + "ghost_0001\n")
    with pytest.raises(
        DataError, match=r"train.txt lists 'ghost_0001' but its image .*ghost_0001.jpg"
    ):
        _prepare(build_dataset, tmp_path, manual)


def _offline(monkeypatch):
    import tensorflow_datasets as tfds

    def no_network(self, *args, **kwargs):
        raise ConnectionError("simulated: no network")

    # Simulate a machine without internet; tests must never download 2 GB.
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", no_network)


@pytest.mark.parametrize("make_manual", [False, True])
def test_missing_data_without_network(build_dataset, tmp_path, monkeypatch, make_manual):
    _offline(monkeypatch)
    manual = tmp_path / "manual"
    if make_manual:
        manual.mkdir()  # empty
    with pytest.raises(DatasetNotFoundError) as info:
        _prepare(build_dataset, tmp_path, manual)
    message = str(info.value)
    for needle in ("VOCtrainval_11-May-2012.tar", "benchmark.tgz", "manual_dir", "--demo"):
        assert needle in message
    assert "no network" in message


def test_aug_without_sbd_and_no_network(build_dataset, tmp_path, tiny_tree, monkeypatch):
    _offline(monkeypatch)
    manual, _ = tiny_tree
    with pytest.raises(DatasetNotFoundError, match=f"SBD .*manual_dir {manual} has no SBD"):
        _prepare(build_dataset, tmp_path, manual, config="2012_aug")


def test_unprepared_dataset_in_pipeline(tmp_path):
    from jaxseg.data.pipeline import train_stream

    with pytest.raises(DatasetNotFoundError, match="not prepared.*--demo"):
        train_stream(
            "voc_segmentation/2012",
            "train",
            batch_size=2,
            crop_size=8,
            seed=0,
            data_dir=tmp_path,
            process_index=0,
            process_count=1,
        )
