"""Downloads off: a wrong or half-extracted manual_dir stops with what is missing, fetches
nothing and leaves nothing; empty split lists are named; phone photos are stored upright."""

import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxseg.data import demo
from jaxseg.data.builders import downloads
from jaxseg.data.errors import DataError, DatasetNotFoundError


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test (the builders must not even try)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("name", ["voc_segmentation/2012", "voc_segmentation/2012_aug", "camvid"])
def test_typo_in_manual_dir_downloads_nothing_and_leaves_nothing(name, tmp_path, no_network):
    import jaxseg.data.builders  # noqa: F401  (registers the builders)

    data_dir = tmp_path / "data"
    (tmp_path / "manual").mkdir()
    builder = tfds.builder(name, data_dir=str(data_dir))
    with pytest.raises(DatasetNotFoundError, match="downloads are off") as info:
        downloads.prepare(builder, manual_dir=tmp_path / "manul", download=False)
    message = str(info.value)
    assert "nothing was downloaded" in message and "Missing:" in message
    assert "http" in message  # where to get it
    assert not data_dir.exists()  # no temporary folders, no downloads/ cache
    assert _listing(tmp_path) == ["manual"]


def test_half_extracted_voc_lists_the_missing_folders(tmp_path, no_network):
    import jaxseg.data.builders  # noqa: F401

    manual = tmp_path / "manual"
    demo.write_voc_tree(manual, num_train=2, num_val=1, seed=0, image_size=(24, 32))
    voc = manual / "VOCdevkit" / "VOC2012"
    for sub in ("SegmentationClass", "ImageSets"):
        for path in sorted((voc / sub).rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (voc / sub).rmdir()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "other_dataset").mkdir()  # the user's: must survive
    before = _listing(tmp_path)
    builder = tfds.builder("voc_segmentation/2012", data_dir=str(data_dir))
    with pytest.raises(DatasetNotFoundError) as info:
        downloads.prepare(builder, manual_dir=manual, download=False)
    message = str(info.value)
    assert f"{voc / 'SegmentationClass'}/" in message
    assert f"{voc / 'ImageSets' / 'Segmentation'}/" in message
    assert f"{voc / 'JPEGImages'}/" not in message  # present, so not listed
    assert _listing(tmp_path) == before


def test_voc_without_sbd_for_2012_aug_names_sbd(tmp_path, no_network):
    import jaxseg.data.builders  # noqa: F401

    manual = tmp_path / "manual"
    demo.write_voc_tree(manual, num_train=2, num_val=1, seed=0, image_size=(24, 32))
    builder = tfds.builder("voc_segmentation/2012_aug", data_dir=str(tmp_path / "data"))
    with pytest.raises(DatasetNotFoundError, match="SBD") as info:
        downloads.prepare(builder, manual_dir=manual, download=False)
    assert "benchmark.tgz" in str(info.value) and "SegmentationClassAug" in str(info.value)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("listing", ["train.txt", "val.txt"])
def test_empty_split_list_is_named(listing, build_dataset, tmp_path):
    manual = tmp_path / "manual"
    demo.write_voc_tree(manual, num_train=2, num_val=1, seed=0, image_size=(24, 32))
    path = manual / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / listing
    path.write_text("\n")
    with pytest.raises(DataError, match=f"{path}: the split list is empty"):
        build_dataset("voc_segmentation/2012", tmp_path / "tfds", manual)


def test_camvid_empty_split_list_is_named(build_dataset, tmp_path):
    manual = tmp_path / "manual"
    demo.write_camvid_tree(manual, 2, 1, 1, image_size=(24, 32))
    camvid = next(p for p in manual.rglob("val.txt")).parent
    (camvid / "val.txt").write_text("")
    with pytest.raises(DataError, match=r"val.txt lists no images"):
        build_dataset("camvid", tmp_path / "tfds", manual)


def test_exif_rotated_jpeg_is_stored_upright(build_dataset, tmp_path):
    manual = tmp_path / "manual"
    demo.write_voc_tree(manual, num_train=2, num_val=1, seed=0, image_size=(24, 32), size_jitter=0)
    voc = manual / "VOCdevkit" / "VOC2012"
    name = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[0]
    # The photo is stored 32 high x 24 wide with "rotate 90 clockwise to display": displayed,
    # it is 24 x 32 like its mask.
    displayed = np.zeros((24, 32, 3), np.uint8)
    displayed[:, :16] = (255, 0, 0)
    displayed[:, 16:] = (0, 0, 255)
    stored = np.rot90(displayed, k=1)  # what a camera held that way writes
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(
        voc / "JPEGImages" / f"{name}.jpg", quality=100, exif=exif.tobytes()
    )
    builder = build_dataset("voc_segmentation/2012", tmp_path / "tfds", manual)
    (example,) = tfds.as_numpy(builder.as_dataset(split="validation"))
    image = example["image"]
    assert image.shape == (24, 32, 3)
    assert np.abs(image[12, 4].astype(int) - (255, 0, 0)).max() < 16  # red on the left
    assert np.abs(image[12, 28].astype(int) - (0, 0, 255)).max() < 16  # blue on the right
