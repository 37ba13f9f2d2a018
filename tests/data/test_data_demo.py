"""Demo data: VOC layout, palette PNGs with a 255 border, and prepare_demo's reuse."""

import numpy as np
from PIL import Image

from jaxseg.data import demo


def test_voc_tree_layout_and_labels(tmp_path):
    demo.write_voc_tree(tmp_path, num_train=6, num_val=3, seed=5, image_size=(64, 80))
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    sets = voc / "ImageSets" / "Segmentation"
    train, val = (sets / "train.txt").read_text().split(), (sets / "val.txt").read_text().split()
    assert len(train) == 6 and len(val) == 3 and not set(train) & set(val)
    assert (sets / "trainval.txt").read_text().split() == train + val
    classes = set()
    for name in train + val:
        png = Image.open(voc / "SegmentationClass" / f"{name}.png")
        assert png.mode == "P"
        assert (
            np.array(png.getpalette()[: 3 * 256], np.uint8).reshape(256, 3)[15].tolist()
            == [192, 128, 128]  # VOC's "person" colour
        )
        label = np.asarray(png)
        image = Image.open(voc / "JPEGImages" / f"{name}.jpg")
        assert (image.height, image.width) == label.shape
        assert 48 <= label.shape[0] <= 64 and 60 <= label.shape[1] <= 80
        assert set(np.unique(label)) <= set(range(21)) | {255}
        assert (label == 0).any() and (label == 255).any()
        objects = label[(label > 0) & (label < 255)]
        assert objects.size > 0.025 * label.size  # objects are not specks
        classes |= set(np.unique(objects).tolist())
        # the 255 band lies on the outlines: every object pixel touching another class is 255
        inner = label[1:-1, 1:-1]
        for dy, dx in ((0, 1), (1, 0)):
            other = label[1 + dy : label.shape[0] - 1 + dy, 1 + dx : label.shape[1] - 1 + dx]
            assert not ((inner != other) & (inner != 255) & (other != 255)).any()
    assert len(classes) >= 5


def test_prepare_demo_builds_and_reuses(tmp_path):
    builder = demo.prepare_demo(tmp_path, num_train=5, num_val=3, seed=1, image_size=(32, 40))
    assert builder.info.splits["train"].num_examples == 5
    assert builder.info.splits["validation"].num_examples == 3
    marker = next(tmp_path.glob("voc_demo_*/manual/WRITTEN"))
    before = marker.stat().st_mtime_ns
    again = demo.prepare_demo(tmp_path, num_train=5, num_val=3, seed=1, image_size=(32, 40))
    assert again.data_dir == builder.data_dir and marker.stat().st_mtime_ns == before
