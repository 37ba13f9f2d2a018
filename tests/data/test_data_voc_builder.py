"""voc_segmentation on a generated tree: split sizes and an exact mask round trip."""

import numpy as np
import scipy.io
from PIL import Image


def _names(path):
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _examples(builder, split):
    return {
        ex["file_name"].decode(): ex for ex in builder.as_dataset(split=split).as_numpy_iterator()
    }


def test_split_sizes_2012(voc_builder, voc_root):
    sets = voc_root / "manual" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    splits = voc_builder.info.splits
    assert splits["train"].num_examples == len(_names(sets / "train.txt")) == 12
    assert splits["validation"].num_examples == len(_names(sets / "val.txt")) == 7


def test_split_sizes_2012_aug(voc_aug_builder, voc_root):
    sets = voc_root / "manual" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    sbd = voc_root / "manual" / "benchmark_RELEASE" / "dataset"
    voc_train, voc_val = set(_names(sets / "train.txt")), set(_names(sets / "val.txt"))
    sbd_all = set(_names(sbd / "train.txt")) | set(_names(sbd / "val.txt"))
    expected = (voc_train | sbd_all) - voc_val
    # The demo SBD lists overlap VOC train and VOC val, like the real ones.
    assert sbd_all & voc_val and sbd_all & voc_train
    train = _examples(voc_aug_builder, "train")
    assert {name.removesuffix(".jpg") for name in train} == expected
    assert voc_aug_builder.info.splits["validation"].num_examples == len(voc_val)


def test_masks_round_trip_exactly(voc_builder, voc_root):
    voc = voc_root / "manual" / "VOCdevkit" / "VOC2012"
    for split in ("train", "validation"):
        for file_name, ex in _examples(voc_builder, split).items():
            name = file_name.removesuffix(".jpg")
            expected = np.asarray(Image.open(voc / "SegmentationClass" / f"{name}.png"))
            assert Image.open(voc / "SegmentationClass" / f"{name}.png").mode == "P"
            assert ex["label"].shape == (*expected.shape, 1) and ex["label"].dtype == np.uint8
            np.testing.assert_array_equal(ex["label"][..., 0], expected)
            jpeg = Image.open(voc / "JPEGImages" / file_name)
            assert ex["image"].shape == (jpeg.height, jpeg.width, 3)
    labels = [ex["label"] for ex in _examples(voc_builder, "train").values()]
    assert any((label == 255).any() for label in labels), "object borders (255) must survive"


def test_jpeg_bytes_stored_unchanged(voc_builder, voc_root):
    import tensorflow_datasets as tfds

    voc = voc_root / "manual" / "VOCdevkit" / "VOC2012"
    ds = voc_builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
    for ex in ds.as_numpy_iterator():
        assert ex["image"] == (voc / "JPEGImages" / ex["file_name"].decode()).read_bytes()


def test_sbd_masks_come_from_mat(voc_aug_builder, voc_root):
    voc = voc_root / "manual" / "VOCdevkit" / "VOC2012"
    cls = voc_root / "manual" / "benchmark_RELEASE" / "dataset" / "cls"
    checked = 0
    for file_name, ex in _examples(voc_aug_builder, "train").items():
        name = file_name.removesuffix(".jpg")
        if (voc / "SegmentationClass" / f"{name}.png").exists():
            expected = np.asarray(Image.open(voc / "SegmentationClass" / f"{name}.png"))
        else:
            expected = scipy.io.loadmat(cls / f"{name}.mat")["GTcls"][0, 0]["Segmentation"]
            checked += 1
        np.testing.assert_array_equal(ex["label"][..., 0], expected)
    assert checked == 6


def test_segmentation_class_aug_folder_replaces_sbd(build_dataset, tmp_path):
    from jaxseg.data import demo

    manual = tmp_path / "manual"
    demo.write_voc_tree(manual, num_train=3, num_val=2, seed=1, image_size=(24, 32))
    aug = manual / "SegmentationClassAug"
    aug.mkdir()
    jpegs = manual / "VOCdevkit" / "VOC2012" / "JPEGImages"
    rng = np.random.default_rng(0)
    for name in ("extra_a", "extra_b"):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
            jpegs / f"{name}.jpg"
        )
        mask = rng.integers(0, 21, (24, 32), dtype=np.uint8)
        Image.fromarray(mask).save(aug / f"{name}.png")  # greyscale, as the shared folder has
    builder = build_dataset("voc_segmentation/2012_aug", tmp_path / "tfds", manual)
    train = _examples(builder, "train")
    assert len(train) == 3 + 2
    np.testing.assert_array_equal(
        train["extra_a.jpg"]["label"][..., 0], np.asarray(Image.open(aug / "extra_a.png"))
    )


def test_tfds_load_after_import(voc_builder, voc_root):
    import tensorflow_datasets as tfds

    splits = tfds.load(
        "voc_segmentation/2012",
        data_dir=str(voc_root / "tfds"),
        download_and_prepare_kwargs={
            "download_config": tfds.download.DownloadConfig(manual_dir=str(voc_root / "manual"))
        },
    )
    assert {name: len(ds) for name, ds in splits.items()} == {"train": 12, "validation": 7}


def test_manual_dir_with_official_archives(build_dataset, tmp_path):
    import tarfile

    from jaxseg.data import demo

    tree = demo.write_voc_tree(tmp_path / "tree", 3, 2, seed=4, image_size=(24, 32), num_sbd=3)
    manual = tmp_path / "manual"
    manual.mkdir()
    with tarfile.open(manual / "VOCtrainval_11-May-2012.tar", "w") as tar:
        tar.add(tree / "VOCdevkit", arcname="VOCdevkit")
    with tarfile.open(manual / "benchmark.tgz", "w:gz") as tar:
        tar.add(tree / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    builder = build_dataset("voc_segmentation/2012_aug", tmp_path / "tfds", manual)
    # 3 VOC train + 3 SBD-only (SBD also lists 2 VOC train and 2 VOC val names).
    assert builder.info.splits["train"].num_examples == 6
    assert builder.info.splits["validation"].num_examples == 2
