"""Which files make up each split of ``voc_segmentation`` (no pixel is read here).

* config ``2012``: ``train`` / ``validation`` = VOC2012 ``ImageSets/Segmentation/{train,val}.txt``
  (1,464 / 1,449 images), masks from ``SegmentationClass``.
* config ``2012_aug``: ``train`` = VOC train ∪ SBD train ∪ SBD val − VOC val (10,582 images, the
  "train_aug" set of DeepLab and FCN); ``validation`` = VOC val. A mask comes from VOC's
  ``SegmentationClass`` when VOC has one, else from ``SegmentationClassAug``, else from SBD's
  ``cls/<name>.mat``.
* both configs: ``seg11valid`` = the 736 images of VOC2011 segmentation val that are not in SBD
  train (the list the FCN authors published, shipped as ``seg11valid.txt`` next to this file),
  images and masks from the VOC 2012 tree (VOC2012 trainval holds VOC2011 val). The split needs
  every listed image: a tree holding some but not all of them is refused (a partial seg11valid
  would silently change the protocol); a tree holding none of them (generated demo data) gets no
  ``seg11valid`` split.

Every listed file is checked to exist up front, so a broken tree fails in seconds with the list
file and the missing path named, not an hour into preparation.
"""

import dataclasses
import logging
from pathlib import Path

from jaxseg.data.builders.voc_sources import VocSources
from jaxseg.data.errors import DataError

SEG11VALID_LIST = Path(__file__).with_name("seg11valid.txt")


@dataclasses.dataclass(frozen=True)
class Item:
    """One example to build: ``label`` is a ``.png`` (class-index PNG) or SBD ``.mat`` path."""

    name: str
    image: Path
    label: Path
    listed_in: Path  # the split list that named it, for error messages


def read_list(path: Path) -> list[str]:
    """Names in a VOC/SBD split list (one per line; extra columns and blank lines ignored)."""
    if not path.is_file():
        raise DataError(f"{path}: split list not found; the dataset tree is incomplete.")
    names = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(
            f"{path}: the split list is empty (cut short while extracting?). Extract the "
            "dataset again, or put the image names into it, one per line."
        )
    return names


def _missing(listed_in: Path, name: str, path: Path, what: str) -> DataError:
    return DataError(
        f"{listed_in} lists {name!r} but its {what} {path} does not exist. Extract the "
        "dataset again, or remove the name from the list."
    )


def _image_path(sources: VocSources, name: str, listed_in: Path) -> Path:
    path = sources.voc / "JPEGImages" / f"{name}.jpg"
    if path.is_file():
        return path
    if sources.sbd is not None and (sources.sbd / "img" / f"{name}.jpg").is_file():
        return sources.sbd / "img" / f"{name}.jpg"
    raise _missing(listed_in, name, path, "image")


def _label_path(sources: VocSources, name: str, listed_in: Path, *, use_extra: bool) -> Path:
    candidates = [sources.voc / "SegmentationClass" / f"{name}.png"]
    if use_extra and sources.aug is not None:
        candidates.append(sources.aug / f"{name}.png")
    if use_extra and sources.sbd is not None:
        candidates.append(sources.sbd / "cls" / f"{name}.mat")
    for path in candidates:
        if path.is_file():
            return path
    raise _missing(listed_in, name, candidates[-1] if use_extra else candidates[0], "mask")


def _items(sources, names: list[str], lists: dict[str, Path], *, use_extra: bool) -> list[Item]:
    return [
        Item(
            name=name,
            image=_image_path(sources, name, lists[name]),
            label=_label_path(sources, name, lists[name], use_extra=use_extra),
            listed_in=lists[name],
        )
        for name in names
    ]


def seg11valid_items(sources: VocSources) -> list[Item]:
    """The ``seg11valid`` items from the VOC tree; ``[]`` when the tree holds none of them.

    Raises:
      DataError: some listed images or masks are present and others missing (the first few
        missing files are named).
    """
    names = read_list(SEG11VALID_LIST)
    voc = sources.voc
    missing = [
        path
        for name in names
        for path in (voc / "JPEGImages" / f"{name}.jpg", voc / "SegmentationClass" / f"{name}.png")
        if not path.is_file()
    ]
    if len(missing) == 2 * len(names):
        logging.info("%s holds no image of %s: no seg11valid split", voc, SEG11VALID_LIST.name)
        return []
    if missing:
        shown = "\n  ".join(str(path) for path in missing[:5])
        raise DataError(
            f"{voc} holds part of the {len(names)} seg11valid images (VOC2011 val minus SBD "
            f"train, listed in {SEG11VALID_LIST}) but {len(missing)} files are missing, "
            f"first:\n  {shown}\nExtract the VOC 2012 trainval archive again: a partial "
            "seg11valid would not be the published protocol."
        )
    return [
        Item(
            name=name,
            image=voc / "JPEGImages" / f"{name}.jpg",
            label=voc / "SegmentationClass" / f"{name}.png",
            listed_in=SEG11VALID_LIST,
        )
        for name in sorted(names)
    ]


def split_items(sources: VocSources, *, with_extra: bool) -> dict[str, list[Item]]:
    """``{"train": [...], "validation": [...], "seg11valid": [...]}`` for config 2012
    (``with_extra=False``) or 2012_aug (``with_extra=True``); ``seg11valid`` only when the tree
    holds its images (see :func:`seg11valid_items`); names sorted so the build is reproducible."""
    sets = sources.voc / "ImageSets" / "Segmentation"
    train_list, val_list = sets / "train.txt", sets / "val.txt"
    val_names = read_list(val_list)
    origin = {name: train_list for name in read_list(train_list)}
    if with_extra:
        if sources.sbd is not None:
            for list_name in ("train.txt", "val.txt"):
                path = sources.sbd / list_name
                for name in read_list(path):
                    origin.setdefault(name, path)
        if sources.aug is not None:
            for png in sorted(sources.aug.glob("*.png")):
                origin.setdefault(png.stem, png)
    val_set = set(val_names)
    train_names = sorted(name for name in origin if name not in val_set)
    if not train_names:
        raise DataError(
            f"every image of {train_list} is also in {val_list}: the training split would be "
            "empty. Restore the official split lists (extract ImageSets/ again)."
        )
    splits = {
        "train": _items(sources, train_names, origin, use_extra=with_extra),
        "validation": _items(
            sources, sorted(val_set), dict.fromkeys(val_names, val_list), use_extra=False
        ),
    }
    seg11valid = seg11valid_items(sources)
    if seg11valid:
        splits["seg11valid"] = seg11valid
        overlap = sorted({item.name for item in seg11valid} & set(train_names))
        if overlap:  # VOC 2012 val holds VOC 2011 val, so the official lists give none
            logging.warning(
                "%d seg11valid images are also in the training split (first: %s): scores on "
                "seg11valid of a model trained on it are not held-out scores",
                len(overlap),
                overlap[0],
            )
    return splits
