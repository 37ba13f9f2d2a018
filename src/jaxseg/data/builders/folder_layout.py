"""A user's folder of images and masks: find the pairs, read the class files, choose the splits.

Layout (``DIR`` is what ``--config.dataset=folder:DIR`` names)::

    DIR/images/**/<stem>.{jpg,jpeg,png,bmp,tif,tiff,webp}
    DIR/masks/**/<stem>.{png,bmp,tif,tiff}      same relative path and stem as its image
    DIR/classes.txt    optional, index masks: line k names mask value k
    DIR/classes.csv    colour masks: "name,r,g,b" per class, in label order
    DIR/train.txt, DIR/val.txt   optional: stems (relative paths, extension optional)

Everything here is host-side and checks the folder before anything is built: a problem stops
with a :class:`DataError` that names the file and says what to change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np

from jaxseg.data.datasets import SPEC_PREFIX, is_folder_spec
from jaxseg.data.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Masks must be lossless: a JPEG mask has blended values along every class border.
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
VAL_FRACTION = 0.1
IGNORE_NAME = "ignore"  # classes.csv: a colour with this name marks ignored pixels (255)
UNLISTED = "unlisted"  # classes.csv: "unlisted,ignore" ignores colours the file does not list
_SHOWN = 5  # file names listed in an error before "... and N more"


@dataclasses.dataclass(frozen=True)
class FolderSpec:
    """``folder:DIR[,reduce_zero_label][,min_image_size=N]`` parsed.

    Attributes:
      root: the folder (absolute).
      reduce_zero_label: mask value 0 means "unlabelled" (ignored) and values 1.. become
        classes 0.. (ADE20K's convention); the first name of the class file is dropped.
      min_image_size: images whose height or width is smaller stop the build (0: no check).
    """

    root: Path
    reduce_zero_label: bool = False
    min_image_size: int = 16


def parse_spec(dataset: str) -> FolderSpec:
    """``"folder:DIR,reduce_zero_label,min_image_size=32"`` -> :class:`FolderSpec`."""
    if not is_folder_spec(dataset):
        raise DataError(f"{dataset!r} is not a folder dataset (folder:DIR)")
    path, *options = dataset[len(SPEC_PREFIX) :].split(",")
    if not path:
        raise DataError("folder: needs a directory, e.g. --config.dataset=folder:data/my_set")
    kwargs: dict = {}
    for option in options:
        key, _, value = option.strip().partition("=")
        if key == "reduce_zero_label":
            kwargs[key] = value.lower() in ("", "1", "true", "yes")
        elif key == "min_image_size" and value.isdigit():
            kwargs[key] = int(value)
        else:
            raise DataError(
                f"{dataset!r}: unknown option {option!r}; the options are reduce_zero_label "
                "and min_image_size=N, e.g. folder:DIR,reduce_zero_label,min_image_size=32"
            )
    root = Path(os.path.expanduser(path)).resolve()
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise DataError(
                f"{root} has no {sub}/ folder: a folder dataset holds images/ and masks/ "
                "with matching file names (see the README, 'Your own data')."
            )
    return FolderSpec(root, **kwargs)


@dataclasses.dataclass(frozen=True)
class ColourTable:
    """``classes.csv``: class colours in label order, ignored colours, what unlisted ones mean."""

    names: tuple[str, ...]
    colours: np.ndarray  # uint8 [num_classes, 3]
    ignore_colours: np.ndarray  # uint8 [k, 3]
    unlisted_ignored: bool

    def lookup(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        """``uint8 [H, W, 3]`` colour mask -> ``uint8 [H, W]`` labels (255 = ignore)."""
        codes = _rgb_code(rgb.reshape(-1, 3))
        values, inverse = np.unique(codes, return_inverse=True)
        class_codes = _rgb_code(self.colours)
        labels = np.full(len(values), 255, np.uint8)
        known = np.isin(values, _rgb_code(self.ignore_colours))
        for k, code in enumerate(class_codes):
            labels[values == code] = k
            known |= values == code
        if not self.unlisted_ignored and not known.all():
            unknown = values[~known]
            counts = np.bincount(inverse.reshape(-1), minlength=len(values))[~known]
            shown = ", ".join(
                f"({c >> 16}, {(c >> 8) & 255}, {c & 255}) in {n} pixels"
                for c, n in list(zip(unknown.tolist(), counts.tolist(), strict=True))[:_SHOWN]
            )
            raise DataError(
                f"{path}: colours not in classes.csv: {shown}"
                + (f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else "")
                + ". Add each as a class or as 'ignore,r,g,b', or add the line 'unlisted,ignore' "
                "to ignore every unlisted colour (anti-aliased edges)."
            )
        return labels[inverse.reshape(rgb.shape[:2])]


def _rgb_code(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, np.int64).reshape(-1, 3)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def read_class_names(path: Path) -> tuple[str, ...]:
    """``classes.txt``: one name per line (line k = mask value k); trailing blank lines ok."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    for i, name in enumerate(names):
        if not name:
            raise DataError(
                f"{path}: line {i + 1} is blank; line k names mask value k - 1, so every line "
                "up to the last class needs a name."
            )
    _check_names(names, path)
    return tuple(names)


def _check_names(names: list[str], path: Path) -> None:
    if not names:
        raise DataError(f"{path} names no class")
    seen = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: class {name!r} is listed twice")
        seen.add(name)
    if len(names) > 255:
        raise DataError(f"{path}: {len(names)} classes; at most 255 (255 means ignore)")


def read_colour_table(path: Path) -> ColourTable:
    """``classes.csv``: ``name,r,g,b`` per class in label order (an optional header line
    ``name,r,g,b``, ``#`` comments); ``ignore,r,g,b`` marks ignored colours; ``unlisted,ignore``
    ignores colours the file does not list (default ``unlisted,error``)."""
    names, colours, ignored, unlisted_ignored = [], [], [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        where = f"{path}, line {number} ({line!r})"
        if [f.lower() for f in fields] == ["name", "r", "g", "b"]:
            continue
        if fields[0].lower() == UNLISTED:
            if len(fields) != 2 or fields[1].lower() not in ("ignore", "error"):
                raise DataError(f"{where}: write 'unlisted,ignore' or 'unlisted,error'")
            unlisted_ignored = fields[1].lower() == "ignore"
            continue
        if len(fields) != 4 or not all(f.isdigit() and int(f) <= 255 for f in fields[1:]):
            raise DataError(f"{where}: expected 'name,r,g,b' with r, g, b in 0..255")
        rgb = tuple(int(f) for f in fields[1:])
        if rgb in colours or rgb in ignored:
            raise DataError(f"{where}: colour {rgb} is listed twice")
        if fields[0].lower() == IGNORE_NAME:
            ignored.append(rgb)
        else:
            names.append(fields[0])
            colours.append(rgb)
    _check_names(names, path)
    return ColourTable(
        names=tuple(names),
        colours=np.asarray(colours, np.uint8).reshape(-1, 3),
        ignore_colours=np.asarray(ignored, np.uint8).reshape(-1, 3),
        unlisted_ignored=unlisted_ignored,
    )


@dataclasses.dataclass(frozen=True)
class Layout:
    """A scanned folder.

    Attributes:
      spec: the folder and its options.
      pairs: ``{stem: (image path, mask path)}``; a stem is the path under images/ without its
        extension, with "/" separators (``"site_a/0001"``).
      class_names: from classes.txt / classes.csv (raw mask values, before reduce_zero_label);
        None for index masks without classes.txt (then numbered from the masks).
      colours: the classes.csv table (colour masks), or None (index masks).
      splits: ``{"train": [stems], "validation": [stems]}``.
      split_source: how the splits were chosen (printed).
    """

    spec: FolderSpec
    pairs: dict[str, tuple[Path, Path]]
    class_names: tuple[str, ...] | None
    colours: ColourTable | None
    splits: dict[str, list[str]]
    split_source: str


def _files(folder: Path, suffixes: tuple[str, ...]) -> tuple[dict[str, Path], list[Path]]:
    """``({stem: path}, other files)`` of a folder tree (hidden files skipped)."""
    found: dict[str, Path] = {}
    other = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_dir() or any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() not in suffixes:
            other.append(path)
            continue
        stem = relative.with_suffix("").as_posix()
        if stem in found:
            raise DataError(
                f"{found[stem]} and {path} have the same stem {stem!r}; keep one of them."
            )
        found[stem] = path
    return found, other


def _listing(items: list, total: int | None = None) -> str:
    total = len(items) if total is None else total
    shown = ", ".join(str(x) for x in items[:_SHOWN])
    return shown + (f" ... and {total - _SHOWN} more" if total > _SHOWN else "")


def _pair(root: Path) -> dict[str, tuple[Path, Path]]:
    images, _ = _files(root / "images", IMAGE_SUFFIXES)
    masks, not_masks = _files(root / "masks", MASK_SUFFIXES)
    lossy = [p for p in not_masks if p.suffix.lower() in (".jpg", ".jpeg", ".webp")]
    if lossy:
        raise DataError(
            f"masks must be lossless (PNG, BMP or TIFF): {_listing(lossy)}. JPEG blends "
            "colours along class borders; export the masks as PNG."
        )
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask:
        raise DataError(
            f"{root / 'images'}: {len(no_mask)} image(s) without a mask in {root / 'masks'} "
            f"(same relative path and stem, extension .png/.bmp/.tif): {_listing(no_mask)}. "
            "Add the masks or move those images out of images/."
        )
    if no_image:
        raise DataError(
            f"{root / 'masks'}: {len(no_image)} mask(s) without an image in {root / 'images'}: "
            f"{_listing(no_image)}. Add the images or move those masks out of masks/."
        )
    if len(images) < 2:
        raise DataError(f"{root}: {len(images)} image/mask pair(s); training needs at least 2.")
    return {stem: (images[stem], masks[stem]) for stem in sorted(images)}


def _read_split_file(path: Path, pairs: dict) -> list[str]:
    stems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        stem = line.removeprefix("images/")
        if Path(stem).suffix.lower() in IMAGE_SUFFIXES:
            stem = stem[: -len(Path(stem).suffix)]
        if stem not in pairs:
            raise DataError(
                f"{path}, line {number}: {line!r} is not an image of images/ (write the path "
                "under images/, extension optional)."
            )
        stems.append(stem)
    if not stems:
        raise DataError(f"{path} lists no image")
    return stems


def stem_fraction(stem: str) -> float:
    """A stable number in [0, 1) from the stem (SHA-256), independent of the other files."""
    return int.from_bytes(hashlib.sha256(stem.encode("utf-8")).digest()[:8], "big") / 2.0**64


def _splits(root: Path, pairs: dict) -> tuple[dict[str, list[str]], str]:
    train_file, val_file = root / "train.txt", root / "val.txt"
    if train_file.is_file() or val_file.is_file():
        train = _read_split_file(train_file, pairs) if train_file.is_file() else None
        val = _read_split_file(val_file, pairs) if val_file.is_file() else None
        if train is None:
            train = [s for s in pairs if s not in set(val)]
        if val is None:
            val = [s for s in pairs if s not in set(train)]
        both = sorted(set(train) & set(val))
        if both:
            raise DataError(f"{train_file} and {val_file} both list {_listing(both)}")
        if not train or not val:
            raise DataError(f"{root}: the split files leave the training or validation set empty")
        named = " and ".join(p.name for p in (train_file, val_file) if p.is_file())
        return {"train": train, "validation": val}, f"from {named}"
    val = [s for s in pairs if stem_fraction(s) < VAL_FRACTION]
    if not val:  # small folders: the stem with the lowest hash, so validation is never empty
        val = [min(pairs, key=stem_fraction)]
    train = [s for s in pairs if s not in set(val)]
    source = (
        f"no train.txt/val.txt: {100 * (1 - VAL_FRACTION):.0f}/{100 * VAL_FRACTION:.0f} split "
        "by a hash of each file's stem (write train.txt and val.txt to choose)"
    )
    return {"train": train, "validation": val}, source


def scan(spec: FolderSpec) -> Layout:
    """Pairs, class files and splits of a folder; every problem raises :class:`DataError`."""
    root = spec.root
    pairs = _pair(root)
    txt, csv = root / "classes.txt", root / "classes.csv"
    if txt.is_file() and csv.is_file():
        raise DataError(
            f"{root} has both classes.txt (index masks) and classes.csv (colour masks); "
            "keep the one that describes the masks."
        )
    colours = read_colour_table(csv) if csv.is_file() else None
    names = colours.names if colours else (read_class_names(txt) if txt.is_file() else None)
    if spec.reduce_zero_label and names is not None and len(names) < 2:
        raise DataError(f"reduce_zero_label drops the first class of {csv if colours else txt}")
    splits, source = _splits(root, pairs)
    return Layout(spec, pairs, names, colours, splits, source)


def fingerprint(spec: FolderSpec) -> str:
    """Hex digest of the options and every file's path, size and modification time: a changed
    folder gets a new digest (and so a fresh build)."""
    digest = hashlib.sha256(
        repr((str(spec.root), spec.reduce_zero_label, spec.min_image_size)).encode()
    )
    for path in sorted(spec.root.rglob("*")):
        relative = path.relative_to(spec.root)
        if path.is_dir() or relative.parts[0] not in (
            "images",
            "masks",
            "classes.txt",
            "classes.csv",
            "train.txt",
            "val.txt",
        ):
            continue
        stat = path.stat()
        digest.update(f"{relative.as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
