"""TFDS builder ``ade20k_scene_parsing``: the ADE20K SceneParsing benchmark (150 classes).

Reads MIT's ``ADEChallengeData2016`` (``ADEChallengeData2016.zip``)::

    ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_XXXXXXXX.jpg
    ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_XXXXXXXX.png
    ADEChallengeData2016/objectInfo150.txt   (class list; objectInfo150.csv is accepted too)

``manual_dir`` may be the ``ADEChallengeData2016`` folder, contain it (at most two levels down)
or hold the zip. Online, ``tfds.load`` downloads the zip (923 MB) itself; with downloads off
(``downloads.prepare(..., download=False)``, the experiments' default) it never does.

Features: ``image`` (the JPEG bytes as published, ``uint8 [H, W, 3]`` decoded), ``label``
(PNG ``uint8 [H, W, 1]``: the annotation's values *as published*, 0 = "other", 1..150 the
classes of objectInfo150), ``file_name`` (``"ADE_val_00000001.jpg"``). Splits: ``train``
(20,210 images) and ``validation`` (2,000).

Label convention: the stored labels are the release's 151-value convention (DeepLab's ADE20K
model has 151 outputs, 0 = "other"). Training and scoring use
``jaxseg.data.get_dataset_info("ade20k_scene_parsing")``, whose table maps "other" to the
ignore label 255 and class ``v`` to ``v - 1`` (``reduce_zero_label``): 150 classes, mIoU over
them, "other" never scored.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from pathlib import Path

import tensorflow_datasets as tfds

from jaxseg.data.builders import downloads, example_io
from jaxseg.data.errors import DataError, DatasetNotFoundError
from jaxseg.data.label_tables import ADE20K_CLASS_NAMES

NAME = "ade20k_scene_parsing"
ROOT_NAME = "ADEChallengeData2016"
ADE20K_URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
HOMEPAGE = "http://sceneparsing.csail.mit.edu/"
NUM_RAW_VALUES = len(ADE20K_CLASS_NAMES) + 1  # 0 = "other" and the 150 classes, as stored
# Split -> folder under images/ and annotations/, and its image count in the official archive.
SPLIT_FOLDERS = {"train": "training", "validation": "validation"}
OFFICIAL_COUNTS = {"train": 20210, "validation": 2000}
CLASS_FILES = ("objectInfo150.txt", "objectInfo150.csv")
_PARTS = tuple(
    f"{kind}/{folder}" for kind in ("images", "annotations") for folder in SPLIT_FOLDERS.values()
)
_SHOWN = 5  # file names listed in an error before "... and N more"

_log = logging.getLogger(__name__)

INSTRUCTIONS = f"""\
ADE20K SceneParsing (ADEChallengeData2016, 150 classes) is MIT's scene parsing benchmark:
  {ADE20K_URL}   (923 MB; {HOMEPAGE})
Put the zip, or its extracted ADEChallengeData2016/ folder (images/training, images/validation,
annotations/training, annotations/validation, objectInfo150.txt), into the manual directory:
  tfds.load("{NAME}", data_dir=DATA_DIR, download_and_prepare_kwargs={{
      "download_config": tfds.download.DownloadConfig(manual_dir=MANUAL_DIR)}})
or, in an experiment: --config.dataset={NAME} --config.manual_dir=MANUAL_DIR"""

_CITATION = """\
@inproceedings{zhou2017scene,
  title={Scene Parsing through ADE20K Dataset},
  author={Zhou, Bolei and Zhao, Hang and Puig, Xavier and Fidler, Sanja and Barriuso, Adela and
          Torralba, Antonio},
  booktitle={CVPR}, year={2017}}
"""


def find_root(base: Path) -> Path | None:
    """The first ``ADEChallengeData2016``-like folder (``images/`` and ``annotations/``) at
    ``base``, in it, or up to two folders further down."""
    for path in [
        base,
        base / ROOT_NAME,
        *sorted(base.glob(f"*/{ROOT_NAME}")),
        *sorted(base.glob(f"*/*/{ROOT_NAME}")),
    ]:
        if (path / "images").is_dir() and (path / "annotations").is_dir():
            return path.resolve()
    return None


def _listed(names: list[str]) -> str:
    more = f", ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def split_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """``(image, annotation)`` paths of one split, sorted by name.

    Every ``images/<folder>/*.jpg`` needs ``annotations/<folder>/<same name>.png`` and vice
    versa; otherwise a :class:`DataError` names the unpaired files.
    """
    folder = SPLIT_FOLDERS[split]
    image_dir, annot_dir = root / "images" / folder, root / "annotations" / folder
    for path in (image_dir, annot_dir):
        if not path.is_dir():
            raise DataError(
                f"{path} does not exist: the {split} split needs it. Extract "
                f"{ROOT_NAME}.zip again (it holds images/ and annotations/, each with "
                "training/ and validation/)."
            )
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")}
    annots = {p.stem: p for p in annot_dir.iterdir() if p.suffix.lower() == ".png"}
    if not images:
        raise DataError(f"{image_dir} holds no .jpg images: extract {ROOT_NAME}.zip again.")
    no_annot = sorted(images.keys() - annots.keys())
    if no_annot:
        raise DataError(
            f"{len(images)} images in {image_dir} but {len(annots)} annotations in {annot_dir}: "
            f"{len(no_annot)} images have no annotation {annot_dir}/<name>.png: "
            f"{_listed([images[n].name for n in no_annot])}. Extract the annotations again, or "
            "remove those images."
        )
    no_image = sorted(annots.keys() - images.keys())
    if no_image:
        raise DataError(
            f"{len(annots)} annotations in {annot_dir} but {len(images)} images in {image_dir}: "
            f"{len(no_image)} annotations have no image {image_dir}/<name>.jpg: "
            f"{_listed([annots[n].name for n in no_image])}. Extract the images again, or "
            "remove those annotations."
        )
    return [(images[name], annots[name]) for name in sorted(images)]


def read_class_file(path: str | os.PathLike) -> list[tuple[int, str]]:
    """``(Idx, Name)`` rows of ``objectInfo150.txt`` (tab-separated, synonyms ``", "``-joined,
    as in the archive) or ``objectInfo150.csv`` (comma-separated, words ``";"``-joined)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the class list ({err}).") from err
    header = text.split("\n", 1)[0]
    reader = csv.DictReader(io.StringIO(text), delimiter="\t" if "\t" in header else ",")
    fields = {(name or "").strip(): name for name in reader.fieldnames or ()}
    if "Idx" not in fields or "Name" not in fields:
        raise DataError(
            f"{path}: the header {header.strip()!r} has no 'Idx' and 'Name' columns; is this "
            f"{ROOT_NAME}'s objectInfo150 class list?"
        )
    rows = []
    for line, row in enumerate(reader, start=2):
        idx, name = (row.get(fields[key]) for key in ("Idx", "Name"))
        if not (idx or "").strip() and not (name or "").strip():
            continue  # blank line
        try:
            rows.append((int(idx.strip()), name.strip()))
        except (AttributeError, ValueError):
            raise DataError(f"{path}, line {line}: Idx {idx!r} is not a number.") from None
    return rows


def _starts_with(listed: str, name: str) -> bool:
    """Whether the class list's Name field ``listed`` begins with the class ``name``."""
    if "," in listed:  # objectInfo150.txt: "chest of drawers, chest, bureau, dresser"
        return listed.split(",")[0].strip() == name
    # objectInfo150.csv joins words and synonyms alike with ";": "chest;of;drawers;chest;..."
    words = [w for w in re.split(r"[;\s]+", listed) if w]
    return words[: len(name.split())] == name.split()


def check_class_file(path: str | os.PathLike) -> None:
    """Raise :class:`DataError` unless every row of the class list names jaxseg's class of its
    ``Idx`` (``ADE20K_CLASS_NAMES[Idx - 1]``): a different class list would misname labels."""
    rows = read_class_file(path)
    if not rows:
        raise DataError(f"{path}: the class list has no rows; extract {ROOT_NAME}.zip again.")
    for idx, listed in rows:
        if not 1 <= idx <= len(ADE20K_CLASS_NAMES):
            raise DataError(
                f"{path}: Idx {idx} is outside 1..{len(ADE20K_CLASS_NAMES)}; this is not the "
                "150-class SceneParsing list (the full ADE20K index has thousands of classes)."
            )
        expected = ADE20K_CLASS_NAMES[idx - 1]
        if not _starts_with(listed, expected):
            raise DataError(
                f"{path}: class {idx} is {listed!r}, but ADE20K SceneParsing's class {idx} is "
                f"{expected!r}: these annotations use another class list, so their labels "
                "would be misnamed. Use the original ADEChallengeData2016 files."
            )


def _missing_parts(bases: list[Path]) -> str:
    """Lines naming what an ``ADEChallengeData2016`` folder under ``bases`` lacks."""
    for base in bases:
        for folder in [base / ROOT_NAME, *sorted(base.glob(f"*/{ROOT_NAME}"))]:
            if folder.is_dir():
                missing = [part for part in _PARTS if not (folder / part).is_dir()]
                if missing:
                    return "\n".join(f"  - {folder / part}/" for part in missing)
    return f"  - an {ROOT_NAME}/ folder (images/, annotations/) or {ROOT_NAME}.zip"


class Ade20kSceneParsing(downloads.OneLinePreparation, tfds.core.GeneratorBasedBuilder):
    """ADE20K SceneParsing (ADEChallengeData2016): labels 0 = other, 1..150 as published."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "ADEChallengeData2016, train 20,210 / validation 2,000."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "ADE20K SceneParsing benchmark (ADEChallengeData2016), 150 classes. label holds "
                "the published values: 0 = other (not scored), 1..150 = objectInfo150's classes."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=HOMEPAGE,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        root = self._locate(dl_manager)
        for name in CLASS_FILES:
            if (root / name).is_file():
                check_class_file(root / name)
        splits = {split: split_pairs(root, split) for split in SPLIT_FOLDERS}
        for split, pairs in splits.items():
            if len(pairs) != OFFICIAL_COUNTS[split]:
                # Not an error (subsets are legitimate), but scores on them are not the
                # benchmark's.
                _log.warning(
                    "%s: %s has %d images, the official %s has %d; scores on it are not "
                    "comparable with published ones",
                    NAME,
                    split,
                    len(pairs),
                    ROOT_NAME,
                    OFFICIAL_COUNTS[split],
                )
        return {split: self._generate_examples(pairs) for split, pairs in splits.items()}

    def _locate(self, dl_manager) -> Path:
        manual = downloads.manual_dir_of(dl_manager)
        bases = [manual] if manual is not None else []
        if manual is not None:
            if (found := find_root(manual)) is not None:
                return found
            # Only the benchmark's own zip: other archives in the folder are not ours to unpack.
            for archive in sorted(manual.glob(f"{ROOT_NAME}*.zip")):
                extracted = Path(os.fspath(dl_manager.extract(os.fspath(archive))))
                bases.append(extracted)
                if (found := find_root(extracted)) is not None:
                    return found
        downloaded = downloads.fetch_or_explain(
            dl_manager,
            ADE20K_URL,
            what=f"ADE20K SceneParsing ({ROOT_NAME})",
            manual=manual,
            missing=_missing_parts(bases),
            instructions=INSTRUCTIONS,
        )
        found = find_root(downloaded)
        if found is None:
            raise DatasetNotFoundError(f"{ADE20K_URL} held no {ROOT_NAME}.\n\n{INSTRUCTIONS}")
        return found

    def _generate_examples(self, pairs: list[tuple[Path, Path]]):
        def build(pair: tuple[Path, Path]):
            image, annotation = pair
            # Values 0..150 (and 255, ignore, for relabelled copies) are kept as published.
            return image.stem, example_io.make_example(image, annotation, NUM_RAW_VALUES)

        yield from example_io.parallel_map(build, pairs)
