"""Find PASCAL VOC 2012 and SBD on disk (manual_dir) or fetch them (download manager).

``manual_dir`` may hold the official archives or their extracted trees, at the top or one
folder down:

    VOCtrainval_11-May-2012.tar  or  VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets}
    benchmark.tgz                or  benchmark_RELEASE/dataset/{cls/*.mat,img,train.txt,val.txt}
    SegmentationClassAug.zip     or  SegmentationClassAug/*.png   (the converted SBD masks many
                                     codebases share; accepted instead of SBD)
"""

import dataclasses
import os
from pathlib import Path

from jaxseg.data.builders import downloads
from jaxseg.data.errors import DatasetNotFoundError

VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
SBD_URL = (
    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
    "benchmark.tgz"
)
_ARCHIVE_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".zip")

INSTRUCTIONS = f"""\
PASCAL VOC 2012 segmentation needs the VOC2012 trainval archive (both configs) and, for config
2012_aug, the Semantic Boundaries Dataset (SBD):
  VOC2012 (2 GB):  {VOC_URL}
  SBD (1.4 GB):    {SBD_URL}
Put the archives, or their extracted trees, into the manual directory:
  <manual_dir>/VOCtrainval_11-May-2012.tar  or  <manual_dir>/VOCdevkit/VOC2012/...
  <manual_dir>/benchmark.tgz                or  <manual_dir>/benchmark_RELEASE/dataset/cls/*.mat
  (instead of SBD: <manual_dir>/SegmentationClassAug/*.png, the widely shared converted masks)
and point the builder at it:
  tfds.load("voc_segmentation/2012_aug", data_dir=DATA_DIR, download_and_prepare_kwargs={{
      "download_config": tfds.download.DownloadConfig(manual_dir=MANUAL_DIR)}})
(without manual_dir TFDS looks in DATA_DIR/downloads/manual). On a machine with internet access
the builder downloads both archives itself. No data at hand? Every experiment runs on small
generated VOC-style data with --demo (jaxseg.data.demo.prepare_demo)."""


@dataclasses.dataclass(frozen=True)
class VocSources:
    """Where the raw trees are. ``sbd`` and ``aug`` are ``None`` when absent."""

    voc: Path  # VOC2012/ with JPEGImages, SegmentationClass, ImageSets/Segmentation
    sbd: Path | None = None  # benchmark_RELEASE/dataset/ with cls/*.mat, train.txt, val.txt
    aug: Path | None = None  # SegmentationClassAug/ with <name>.png class-index masks


def _candidates(bases: list[Path], relatives: tuple[str, ...]) -> list[Path]:
    out = []
    for base in bases:
        for rel in relatives:
            out.append(base / rel)
            # One folder down too: people extract archives into a folder named after them.
            out.extend(sorted(child / rel for child in base.iterdir() if child.is_dir()))
    return out


def find_voc(bases: list[Path]) -> Path | None:
    """First ``VOC2012``-like folder (JPEGImages + ImageSets/Segmentation) under ``bases``."""
    for path in _candidates(bases, ("VOCdevkit/VOC2012", "VOC2012", ".")):
        if (path / "JPEGImages").is_dir() and (path / "ImageSets" / "Segmentation").is_dir():
            return path.resolve()
    return None


def find_sbd(bases: list[Path]) -> Path | None:
    """First SBD ``dataset`` folder (with ``cls/``) under ``bases``."""
    for path in _candidates(bases, ("benchmark_RELEASE/dataset", "dataset", ".")):
        if (path / "cls").is_dir():
            return path.resolve()
    return None


def find_aug(bases: list[Path]) -> Path | None:
    """First ``SegmentationClassAug`` folder holding PNGs under ``bases``."""
    for path in _candidates(
        bases, ("SegmentationClassAug", "VOCdevkit/VOC2012/SegmentationClassAug")
    ):
        if path.is_dir() and any(path.glob("*.png")):
            return path.resolve()
    return None


def _search_bases(dl_manager, manual: Path) -> list[Path]:
    bases = [manual]
    archives = sorted(
        p for p in manual.iterdir() if p.is_file() and p.name.endswith(_ARCHIVE_SUFFIXES)
    )
    if archives:
        extracted = dl_manager.extract({p.name: os.fspath(p) for p in archives})
        bases += [Path(os.fspath(extracted[p.name])) for p in archives]
    return bases


_VOC_PARTS = ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation")


def _partial_voc(bases: list[Path]) -> tuple[Path, list[str]] | None:
    """A VOC2012-like folder that has some of the needed parts, and the parts it lacks."""
    for path in _candidates(bases, ("VOCdevkit/VOC2012", "VOC2012")):
        if path.is_dir():
            return path, [part for part in _VOC_PARTS if not (path / part).is_dir()]
    return None


def _missing_voc(bases: list[Path], manual: Path | None) -> str:
    """What the manual directory lacks for VOC, as lines for the user."""
    if manual is None:
        return "  - no manual_dir was given, or it does not exist or is empty"
    partial = _partial_voc(bases)
    if partial is not None and partial[1]:
        folder, parts = partial
        return "\n".join(
            f"  - {folder / part}/ (from VOCtrainval_11-May-2012.tar)" for part in parts
        )
    return (
        f"  - {manual}/VOCdevkit/VOC2012/ (JPEGImages/, SegmentationClass/, "
        "ImageSets/Segmentation/), or the archive VOCtrainval_11-May-2012.tar"
    )


def _download(dl_manager, url: str, what: str, manual: Path | None, missing: str) -> Path:
    return downloads.fetch_or_explain(
        dl_manager, url, what=what, manual=manual, missing=missing, instructions=INSTRUCTIONS
    )


def resolve_sources(dl_manager, *, need_extra: bool) -> VocSources:
    """Locate VOC (+ SBD or SegmentationClassAug if ``need_extra``), downloading what is missing.

    Raises:
      DatasetNotFoundError: a needed part is neither in manual_dir nor downloadable; the
        message says where to get it, where to put it and mentions ``--demo``.
    """
    manual = downloads.manual_dir_of(dl_manager)
    bases = _search_bases(dl_manager, manual) if manual else []
    voc = find_voc(bases) if bases else None
    if voc is None:
        missing = _missing_voc(bases, manual)
        voc = find_voc(
            [_download(dl_manager, VOC_URL, "VOC2012 (VOCdevkit/VOC2012)", manual, missing)]
        )
        if voc is None:
            raise DatasetNotFoundError(
                f"{VOC_URL} did not contain VOCdevkit/VOC2012.\n\n{INSTRUCTIONS}"
            )
    if not need_extra:
        return VocSources(voc=voc)
    search = bases + [voc.parent.parent]
    sbd, aug = find_sbd(search), find_aug(search + [voc])
    if sbd is None and aug is None:
        missing = (
            f"  - {manual}/benchmark_RELEASE/dataset/ (cls/*.mat, img/, train.txt, val.txt), "
            f"the archive benchmark.tgz, or {manual}/SegmentationClassAug/*.png"
        )
        sbd = find_sbd(
            [_download(dl_manager, SBD_URL, "SBD (benchmark_RELEASE/dataset)", manual, missing)]
        )
        if sbd is None:
            raise DatasetNotFoundError(
                f"{SBD_URL} did not contain benchmark_RELEASE/dataset.\n\n{INSTRUCTIONS}"
            )
    return VocSources(voc=voc, sbd=sbd, aug=aug)
