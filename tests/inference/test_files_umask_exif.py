"""Files follow the umask and appear whole; images read as displayed (EXIF); bad exports named."""

import errno
import os
import stat

import numpy as np
import pytest
from PIL import Image

from jaxseg import export, files, images, viz


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(umask, mask, tmp_path, mirror):
    umask(mask)
    expected = 0o666 & ~mask  # what open() creates: compared with a file Python writes itself
    with open(tmp_path / "reference.txt", "w") as f:
        f.write("x")
    assert _mode(tmp_path / "reference.txt") == expected
    assert files.current_umask() == mask

    viz.save_image(tmp_path / "a.jpg", np.zeros((4, 5, 3), np.uint8))
    viz.save_index_png(tmp_path / "b.png", np.zeros((4, 5), np.uint8), viz.voc_palette(21))
    with files.atomic_write(tmp_path / "c.json", "w") as f:
        f.write("{}")
    model, variables = mirror
    export.export_stablehlo(model, variables, tmp_path / "model.bin", height=12, width=10)
    for name in ("a.jpg", "b.png", "c.json", "model.bin"):
        assert _mode(tmp_path / name) == expected, name
    assert sorted(os.listdir(tmp_path)) == [
        "a.jpg",
        "b.png",
        "c.json",
        "model.bin",
        "reference.txt",
    ]


def test_saved_model_folder_follows_the_umask(umask, tmp_path, mirror):
    umask(0o022)
    model, variables = mirror
    export.export_saved_model(model, variables, tmp_path / "sm", height=12, width=10)
    assert _mode(tmp_path / "sm") == 0o755  # mkdtemp alone would leave 0700
    assert _mode(tmp_path / "sm" / "saved_model.pb") == 0o644


def test_full_disk_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(OSError) as info:
        with files.atomic_write(target, "w") as f:
            f.write("new, half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(target)  # the user's path, not the temporary file's
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_missing_folder_names_the_target_not_a_temporary(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        viz.save_image(tmp_path / "nope" / "a.png", np.zeros((2, 2, 3), np.uint8))
    assert info.value.filename == str(tmp_path / "nope" / "a.png")


def _exif_jpeg(path, pixels, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF Orientation tag number
    Image.fromarray(pixels).save(path, quality=100, exif=exif.tobytes())


def _stored_pixels():
    """40 wide, 20 high, four flat colour quadrants (survive JPEG at quality 100)."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:10, :20] = (255, 0, 0)
    stored[:10, 20:] = (0, 255, 0)
    stored[10:, :20] = (0, 0, 255)
    stored[10:, 20:] = (255, 255, 0)
    return stored


# EXIF orientation -> how a viewer shows the stored pixels (numpy, from the EXIF standard's
# definitions: 3 = rotated 180, 6 = rotate 90 clockwise to display, 8 = 90 counter-clockwise,
# 2 = mirrored).
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    6: lambda a: np.rot90(a, k=-1),
    8: lambda a: np.rot90(a, k=1),
}


@pytest.mark.parametrize("orientation", sorted(DISPLAYED))
def test_read_rgb_returns_the_displayed_orientation(orientation, tmp_path):
    stored = _stored_pixels()
    _exif_jpeg(tmp_path / "photo.jpg", stored, orientation)
    rgb = images.read_rgb(tmp_path / "photo.jpg")
    expected = DISPLAYED[orientation](stored)
    assert rgb.shape == expected.shape
    # Quadrant centres, away from JPEG ringing at the colour edges.
    h, w = expected.shape[:2]
    for y in (h // 4, 3 * h // 4):
        for x in (w // 4, 3 * w // 4):
            np.testing.assert_allclose(rgb[y, x], expected[y, x], atol=12)


def test_export_truncated_or_foreign_file_is_named(tmp_path, mirror):
    model, variables = mirror
    path = tmp_path / "model.bin"
    export.export_stablehlo(model, variables, path, height=12, width=10)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(export.ExportFileError, match="model.bin.*truncated"):
        export.load_stablehlo(path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(export.ExportFileError, match="notes.txt"):
        export.load_stablehlo(tmp_path / "notes.txt")
    with pytest.raises(export.ExportFileError, match="missing.bin"):
        export.load_stablehlo(tmp_path / "missing.bin")
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(export.ExportFileError, match="not_a_model"):
        export.load_saved_model(tmp_path / "not_a_model")  # a folder without saved_model.pb
