"""The table of released models: what each one is, where it comes from, how it loads.

Entries are registered by the modules that know a release format (TF-slim DeepLab checkpoints,
Caffe models); `jaxseg.zoo.load` resolves an entry's file (a local path, or a download into the
cache) and calls the entry's `load`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jaxseg.segmenter import Segmenter


@dataclasses.dataclass(frozen=True)
class Published:
    """One published number and the protocol that produced it.

    Example: `Published("mIoU", 82.20, "VOC 2012 val, output stride 16, single scale")`.

    `split_in_training` is True when the released file was trained on the evaluation split
    (a DeepLab `train2` model fine-tuned on trainval_aug, scored on val): what it measures
    there is not held out, and `protocol` says so, since that is the text printed beside it.
    """

    metric: str
    value: float
    protocol: str
    eval_output_stride: int | None = None
    eval_scales: tuple[float, ...] = (1.0,)
    eval_flip: bool = False
    split_in_training: bool = False

    def __post_init__(self) -> None:
        # The protocol is what `jaxseg-zoo list` and `published_vs_measured` print: a score on
        # a split the model was trained on must say so there.
        if self.split_in_training and "not held out" not in self.protocol:
            raise ValueError(
                f"Published {self.metric} {self.value}: split_in_training=True needs the "
                f"protocol to say 'not held out', got {self.protocol!r}"
            )


# load(local file, output_stride=..., crop_size=...) -> Segmenter. `local file` is what
# `ZooEntry.filename` names once downloaded, or the path the user passed as `checkpoint=`.
Loader = Callable[..., "Segmenter"]


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """A released model.

    Attributes:
      name: the zoo name (`jaxseg.zoo.load(name)`).
      architecture: e.g. "DeepLab v3+, Xception-65".
      dataset: training data and label set, e.g. "PASCAL VOC 2012 train_aug (21 classes)".
      num_classes: output channels.
      urls: download addresses as the authors publish them, tried in order.
      filename: name of the downloaded file in the cache.
      size: its size in bytes (checked after download), or None if unknown.
      published: the published numbers with their protocols.
      load: builds the `Segmenter` from the local file, see `Loader`.
      references: other files of the release (deploy prototxt, ...) by role -> address.
      notes: preprocessing and deviations worth knowing.
      crf: the dense-CRF settings published with the release (`jaxseg.crf.dense_crf`
        keyword arguments), or None.
    """

    name: str
    architecture: str
    dataset: str
    num_classes: int
    urls: tuple[str, ...]
    filename: str
    size: int | None
    published: tuple[Published, ...]
    load: Loader
    references: Mapping[str, str] = dataclasses.field(default_factory=dict)
    notes: str = ""
    crf: Mapping[str, float] | None = None


ENTRIES: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    """Adds `entry` to the table; a second entry with the same name is a programming error."""
    if entry.name in ENTRIES:
        raise ValueError(f"zoo entry {entry.name!r} is registered twice")
    ENTRIES[entry.name] = entry
    return entry


def entry(name: str) -> ZooEntry:
    """The entry called `name`; an unknown name lists the known ones."""
    if name not in ENTRIES:
        known = ", ".join(sorted(ENTRIES)) or "(none)"
        raise KeyError(f"no model {name!r} in the zoo; known models: {known}")
    return ENTRIES[name]


def local_file(path: str | Path) -> Path:
    """A user-given checkpoint path, checked to exist (named in the error if not)."""
    path = Path(path).expanduser()
    if not path.exists() and not Path(f"{path}.index").exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path
