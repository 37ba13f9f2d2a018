"""`folder:DIR` datasets: the built examples against the files (numpy), splits, and the errors.

Folders are written here by hand with known label arrays, so every expectation comes from the
arrays the masks were drawn from, not from the code under test.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from jaxseg.data.builders import folder, folder_layout
from jaxseg.data.errors import DataError

COLOURS = {  # class -> RGB in the colour masks
    0: (0, 0, 0),
    1: (250, 0, 0),
    2: (0, 250, 0),
}
IGNORE_RGB = (255, 255, 255)


def _labels(rng, h, w, num_classes):
    label = rng.integers(0, num_classes, size=(h, w)).astype(np.uint8)
    label[rng.random((h, w)) < 0.05] = 255
    return label


def _colour_mask(label):
    rgb = np.zeros((*label.shape, 3), np.uint8)
    for k, colour in COLOURS.items():
        rgb[label == k] = colour
    rgb[label == 255] = IGNORE_RGB
    return rgb


def write_colour_folder(root, count=8, size=(20, 24), seed=0):
    """Nested folders, PNG/BMP/JPEG images, RGB masks; returns {stem: (image, label)}."""
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(count):
        stem = f"{'ab'[i % 2]}/img{i}"
        (root / "images" / stem).parent.mkdir(parents=True, exist_ok=True)
        (root / "masks" / stem).parent.mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 256, size=(*size, 3)).astype(np.uint8)
        label = _labels(rng, *size, 3)
        suffix = (".png", ".bmp", ".jpg")[i % 3]
        Image.fromarray(image).save(root / "images" / f"{stem}{suffix}")
        Image.fromarray(_colour_mask(label)).save(root / "masks" / f"{stem}.png")
        truth[stem] = (image, label, suffix)
    (root / "classes.csv").write_text(
        "name,r,g,b\nsky,0,0,0\nroad,250,0,0\ncar,0,250,0\nignore,255,255,255\n"
    )
    return truth


def write_index_folder(root, count=6, size=(18, 22), seed=1, names=None, palette=None):
    rng = np.random.default_rng(seed)
    truth = {}
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(count):
        image = rng.integers(0, 256, size=(*size, 3)).astype(np.uint8)
        label = _labels(rng, *size, 4)
        Image.fromarray(image).save(root / "images" / f"p{i}.png")
        mask = Image.fromarray(label, mode="L")
        if palette is not None:
            mask = mask.convert("P")
            mask.putpalette(palette)
        mask.save(root / "masks" / f"p{i}.png")
        truth[f"p{i}"] = (image, label)
    if names is not None:
        (root / "classes.txt").write_text("\n".join(names) + "\n")
    return truth


def _examples(builder):
    out = {}
    for split in ("train", "validation"):
        for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
            out[ex["file_name"].decode()] = (split, ex["image"], ex["label"][..., 0])
    return out


def test_colour_masks_build_to_the_drawn_labels(tmp_path):
    truth = write_colour_folder(tmp_path / "set")
    builder, info = folder.load(f"folder:{tmp_path / 'set'}", str(tmp_path / "tfds"))
    assert info.class_names == ("sky", "road", "car")
    np.testing.assert_array_equal(info.palette, [COLOURS[0], COLOURS[1], COLOURS[2]])
    examples = _examples(builder)
    assert sorted(examples) == sorted(truth)
    for stem, (image, label, suffix) in truth.items():
        split, built_image, built_label = examples[stem]
        np.testing.assert_array_equal(built_label, label)
        if suffix == ".jpg":  # stored as the file's bytes: TF decodes it exactly as the file
            data = (tmp_path / "set" / "images" / f"{stem}.jpg").read_bytes()
            np.testing.assert_array_equal(built_image, tf.io.decode_jpeg(data).numpy())
        else:
            np.testing.assert_array_equal(built_image, image)
    # Without split files: validation = stems whose SHA-256 fraction is below 0.1 (at least one).
    val = sorted(s for s, (split, *_) in examples.items() if split == "validation")
    fractions = {s: folder_layout.stem_fraction(s) for s in truth}
    expected = sorted(s for s, f in fractions.items() if f < 0.1) or [
        min(fractions, key=fractions.get)
    ]
    assert val == expected


def test_index_masks_with_split_files_and_reduce_zero_label(tmp_path):
    palette = [0, 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90] + [200, 200, 200] * 252
    truth = write_index_folder(
        tmp_path / "set", names=["other", "wall", "floor", "sky"], palette=palette
    )
    (tmp_path / "set" / "train.txt").write_text("p0\np1.png\nimages/p2\np3\n")
    (tmp_path / "set" / "val.txt").write_text("p4\n")
    spec = f"folder:{tmp_path / 'set'},reduce_zero_label"
    builder, info = folder.load(spec, str(tmp_path / "tfds"))
    assert info.class_names == ("wall", "floor", "sky")
    np.testing.assert_array_equal(info.palette, [[10, 20, 30], [40, 50, 60], [70, 80, 90]])
    examples = _examples(builder)
    assert sorted(examples) == ["p0", "p1", "p2", "p3", "p4"]  # p5 is in neither list
    assert examples["p4"][0] == "validation"
    for stem, (_, image, label) in examples.items():
        raw = truth[stem][1].astype(int)
        expected = np.where((raw == 0) | (raw == 255), 255, raw - 1)
        np.testing.assert_array_equal(label, expected)
        np.testing.assert_array_equal(image, truth[stem][0])


def test_index_masks_without_classes_txt_are_numbered(tmp_path):
    truth = write_index_folder(tmp_path / "set")
    _, info = folder.load(f"folder:{tmp_path / 'set'}", str(tmp_path / "tfds"))
    top = max(int(lab[lab != 255].max()) for _, lab in truth.values())
    assert info.class_names == tuple(f"class_{k}" for k in range(top + 1))


def test_a_changed_folder_is_built_again(tmp_path):
    write_index_folder(tmp_path / "set", count=4)
    spec = f"folder:{tmp_path / 'set'}"
    first, _ = folder.load(spec, str(tmp_path / "tfds"))
    image = np.zeros((18, 22, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "set" / "images" / "new.png")
    Image.fromarray(np.ones((18, 22), np.uint8)).save(tmp_path / "set" / "masks" / "new.png")
    second, _ = folder.load(spec, str(tmp_path / "tfds"))
    assert first.data_dir != second.data_dir
    assert "new" in _examples(second)


def _build_error(tmp_path, spec_suffix=""):
    with pytest.raises(DataError) as err:
        folder.load(f"folder:{tmp_path / 'set'}{spec_suffix}", str(tmp_path / "tfds"))
    return str(err.value)


def test_image_without_mask_and_mask_without_image(tmp_path):
    write_index_folder(tmp_path / "set")
    (tmp_path / "set" / "masks" / "p3.png").rename(tmp_path / "set" / "masks" / "q9.png")
    message = _build_error(tmp_path)
    assert "without a mask" in message and "p3" in message
    (tmp_path / "set" / "images" / "p3.png").unlink()
    message = _build_error(tmp_path)
    assert "without an image" in message and "q9" in message


def test_unlisted_colour_names_file_and_colour_unless_ignored(tmp_path):
    write_colour_folder(tmp_path / "set")
    mask_path = tmp_path / "set" / "masks" / "a" / "img0.png"
    rgb = np.asarray(Image.open(mask_path)).copy()
    rgb[0, :3] = (1, 2, 3)
    Image.fromarray(rgb).save(mask_path)
    message = _build_error(tmp_path)
    assert str(mask_path) in message and "(1, 2, 3) in 3 pixels" in message
    csv = tmp_path / "set" / "classes.csv"
    csv.write_text(csv.read_text() + "unlisted,ignore\n")
    builder, _ = folder.load(f"folder:{tmp_path / 'set'}", str(tmp_path / "tfds"))
    label = _examples(builder)["a/img0"][2]
    assert (label[0, :3] == 255).all()


@pytest.mark.parametrize(
    ("change", "spec_suffix", "expected"),
    [
        ("small", ",min_image_size=20", "smaller than min_image_size=20"),
        ("rgb_mask", "", "colour image"),
        ("value", "", "mask values [7]"),
        ("size", "", "must match"),
        ("jpeg_mask", "", "lossless"),
    ],
)
def test_bad_files_stop_the_build_naming_the_file(tmp_path, change, spec_suffix, expected):
    write_index_folder(tmp_path / "set", names=["a", "b", "c", "d"])
    masks = tmp_path / "set" / "masks"
    if change == "rgb_mask":
        Image.open(masks / "p1.png").convert("RGB").save(masks / "p1.png")
    elif change == "value":
        label = np.asarray(Image.open(masks / "p1.png")).copy()
        label[0, 0] = 7
        Image.fromarray(label).save(masks / "p1.png")
    elif change == "size":
        Image.fromarray(np.zeros((5, 5), np.uint8)).resize((22, 17)).save(masks / "p1.png")
    elif change == "jpeg_mask":
        Image.open(masks / "p1.png").convert("RGB").save(masks / "p1.jpg")
    message = _build_error(tmp_path, spec_suffix)
    assert expected in message
    if change != "small":
        assert "p1" in message


def test_configure_sets_num_classes_and_refuses_a_conflicting_one(tmp_path):
    import ml_collections

    write_colour_folder(tmp_path / "set")
    config = ml_collections.ConfigDict(
        {"dataset": f"folder:{tmp_path / 'set'}", "data_dir": str(tmp_path / "tfds"),
         "num_classes": 21}
    )  # fmt: skip
    folder.configure(config, num_classes_given=False)
    assert config.num_classes == 3
    config.num_classes = 5
    with pytest.raises(DataError, match=r"num_classes=5 but .* has 3 classes"):
        folder.configure(config, num_classes_given=True)
    config.class_weights = (1.0,) * 11  # e.g. SegNet's CamVid weights
    with pytest.raises(DataError, match=r"class_weights has 11 entries .* has 3 classes"):
        folder.configure(config, num_classes_given=False)


def test_bad_specs(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="no masks/ folder"):
        folder_layout.parse_spec(f"folder:{tmp_path}")
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="unknown option 'zero'"):
        folder_layout.parse_spec(f"folder:{tmp_path},zero")
    spec = folder_layout.parse_spec(f"folder:{tmp_path},reduce_zero_label,min_image_size=8")
    assert (spec.reduce_zero_label, spec.min_image_size) == (True, 8)


def test_photo_with_exif_rotation_is_stored_upright(tmp_path):
    """A phone photo stored sideways with EXIF orientation 6 (display rotated 90 degrees
    clockwise): its mask is drawn on the upright photo, and the built image is that photo."""
    root = tmp_path / "set"
    truth = write_index_folder(root, count=2, size=(18, 22))
    raw = np.random.default_rng(3).integers(0, 256, (22, 18, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(raw).save(root / "images" / "p0.png", exif=exif)
    builder, _ = folder.load(f"folder:{root}", str(tmp_path / "tfds"))
    image, label = _examples(builder)["p0"][1:]
    np.testing.assert_array_equal(image, np.rot90(raw, k=-1))  # upright: 18 x 22
    np.testing.assert_array_equal(label, truth["p0"][1])
