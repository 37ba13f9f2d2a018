"""The released DeepLab v3 / v3+ models: TF-slim checkpoints of the official DeepLab model zoo.

Every entry records the architecture the official flags build (`DeepLabArch`), its label set,
its evaluation preprocessing and the numbers the DeepLab model zoo publishes with their
protocol. `docs/model_zoo.md` explains the facts; none of the numbers was measured here.

Evaluation preprocessing of the official code, reproduced by the `Segmenter` built here:
RGB `x` in 0..255 -> `x * 2 / 255 - 1`; the image is padded bottom/right to the evaluation
crop (513x513 for VOC and ADE20K, 1025x2049 for Cityscapes) with the mean pixel 127.5 (0 after
normalisation), the network runs on the whole canvas (its image pooling averages the padded
map too) and the logits, resized with `align_corners=True` to the canvas, are cropped back.
Images larger than the crop are padded to the next of `EVAL_CANVASES` (32k + 1 sizes).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxseg import viz
from jaxseg.data import label_tables
from jaxseg.files import atomic_write
from jaxseg.segmenter import Segmenter
from jaxseg.weights import tf_slim
from jaxseg.weights.tf_slim import DeepLabArch
from jaxseg.zoo import download
from jaxseg.zoo.registry import Published, ZooEntry, register

BASE_URL = "http://download.tensorflow.org/models/"
MEAN_PIXEL = (127.5, 127.5, 127.5)
# Canvas sizes for images larger than the evaluation crop: 32k + 1, like 513 and 1025, so
# that every align_corners resize of the graph maps pixel centres onto a regular grid.
EVAL_CANVASES = tuple(32 * k + 1 for k in range(8, 129, 8))


def normalize(images):
    """The official `_preprocess_zero_mean_unit_range`: RGB 0..255 -> [-1, 1]."""
    return images * (2.0 / 255.0) - 1.0


@dataclasses.dataclass(frozen=True)
class Release:
    """What loading one released checkpoint needs besides its file.

    Attributes:
      arch: the architecture (`DeepLabArch`).
      labels: the label set, 'voc', 'cityscapes' or 'ade20k' (None for ImageNet backbones);
        `class_names` and `palette` follow from it.
      eval_crop: the official evaluation crop `(height, width)`.
      eval_output_stride: default output stride of `jaxseg.zoo.load`.
    """

    arch: DeepLabArch
    labels: str | None
    eval_crop: tuple[int, int] = (513, 513)
    eval_output_stride: int = 16

    @property
    def class_names(self) -> tuple[str, ...] | None:
        if self.labels is None:
            return None
        return {
            "voc": tuple(label_tables.VOC_CLASS_NAMES),
            "cityscapes": tuple(label_tables.CITYSCAPES_CLASS_NAMES),
            # DeepLab's 151 ADE20K outputs: 0 = "other" (ignored in training), then the 150.
            "ade20k": ("other", *label_tables.ADE20K_CLASS_NAMES),
        }[self.labels]

    @property
    def palette(self) -> np.ndarray | None:
        if self.labels == "cityscapes":
            return viz.CITYSCAPES_PALETTE
        return viz.voc_palette(256)


def _cached_variables(prefix: str, arch: DeepLabArch) -> dict:
    """Converted variables of the checkpoint at `prefix`, converted once into the cache."""
    index = Path(f"{prefix}.index")
    stat = index.stat()
    key = hashlib.sha1(
        f"{index.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{arch.key()}".encode()
    ).hexdigest()[:16]
    cached = download.cache_dir() / "converted" / f"{Path(prefix).name}-{key}.npz"
    if cached.exists():
        with np.load(cached) as data:
            flat = {name: data[name] for name in data.files}
        tree: dict = {}
        for name, value in flat.items():
            node = tree
            *parents, leaf = name.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return tree
    variables = tf_slim.convert_checkpoint(prefix, arch).variables
    flat = {}

    def walk(node, path):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, (*path, k))
            else:
                flat["/".join((*path, k))] = np.asarray(v)

    walk(variables, ())
    cached.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(cached) as out:  # readable as the umask allows, complete or absent
        np.savez(out, **flat)
    return variables


def checkpoint_of(path: str | Path) -> str:
    """The checkpoint prefix for a prefix, a folder holding one, or a release `.tar.gz`."""
    path = Path(path)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        path = download.extract_once(path)
    return tf_slim.checkpoint_prefix(path)


def converted_variables(path: str | Path, arch: DeepLabArch) -> dict:
    """The variables of the checkpoint at `path` (prefix, folder or .tar.gz) for `arch`,
    converted once into the cache."""
    return _cached_variables(checkpoint_of(path), arch)


def build_segmenter(
    release: Release,
    variables: dict,
    output_stride: int | None = None,
    crop_size: int | Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
):
    """A `Segmenter` evaluating `variables` the official way (see the module docstring).

    `class_names` overrides the release's label set (e.g. for a model fine-tuned elsewhere).
    """
    model = release.arch.model(output_stride or release.eval_output_stride)
    return Segmenter(
        model,
        variables,
        normalize=normalize,
        class_names=class_names if class_names is not None else release.class_names,
        palette=release.palette,
        crop_size=crop_size if crop_size is not None else release.eval_crop,
        pad_pixel=MEAN_PIXEL,
        bucket=EVAL_CANVASES,
        align_corners=True,
        multiscale="deeplab",  # test-time scales and flips by the official protocol
    )


def load_release(
    release: Release,
    path: str | Path,
    output_stride: int | None = None,
    crop_size: int | Sequence[int] | None = None,
):
    """`ZooEntry.load` of the DeepLab entries: checkpoint (prefix, folder, .tar.gz) -> Segmenter."""
    if release.labels is None:
        raise ValueError(
            f"{path} is an ImageNet backbone checkpoint ({release.arch.backbone}) without a "
            "segmentation head; use jaxseg.zoo.backbone_weights(name) to initialise training"
        )
    variables = converted_variables(path, release.arch)
    return build_segmenter(release, variables, output_stride, crop_size)


def load_backbone_weights(release: Release, path: str | Path) -> tf_slim.ImportedWeights:
    """Backbone variables of a checkpoint (ImageNet backbones, or a whole model's backbone)."""
    arch = dataclasses.replace(release.arch, num_classes=None)
    prefix = checkpoint_of(path)
    arrays = tf_slim.read_checkpoint(prefix)
    scope = arch.scope + "/"
    return tf_slim.convert_arrays(
        {k: v for k, v in arrays.items() if k.startswith(scope) or tf_slim.is_training_only(k)},
        arch,
        prefix,
    )


# --- the table --------------------------------------------------------------------------------


XCEPTION65 = dict(backbone="xception_65", atrous_rates=(6, 12, 18), decoder=True, separable=True)
MOBILENETV2 = dict(backbone="mobilenet_v2", atrous_rates=(), decoder=False, separable=False)
MULTI_VOC = tuple(0.5 + 0.25 * i for i in range(6))  # [0.5:0.25:1.75]
MULTI_CITYSCAPES = (0.75, 1.0, 1.25)  # [0.75:0.25:1.25]
RELEASES: dict[str, Release] = {}


def _single(metric, value, split, eval_os=16):
    return Published(
        metric, value, f"{split}, output stride {eval_os}, scale 1.0, no flip", eval_os
    )


def _multi(metric, value, split, scales, eval_os=8):
    text = f"{split}, output stride {eval_os}, scales {list(scales)}, left-right flip"
    return Published(metric, value, text, eval_os, tuple(scales), True)


def _add(name, url, arch, dataset, labels, published, size, notes, **release):
    # The default evaluation stride is the one of the first published number.
    eval_os = next((p.eval_output_stride for p in published if p.eval_output_stride), 16)
    RELEASES[name] = Release(arch=arch, labels=labels, eval_output_stride=eval_os, **release)
    filename = url.rsplit("/", 1)[-1]
    register(
        ZooEntry(
            name=name,
            architecture=_describe(arch),
            dataset=dataset,
            num_classes=arch.num_classes or 0,
            urls=(BASE_URL + url,),
            filename=filename,
            size=None,  # the zoo publishes rounded sizes only (`notes`)
            published=tuple(published),
            load=functools.partial(load_release, RELEASES[name]),
            references={"model zoo": "https://github.com/tensorflow/models/blob/master/"
                        "research/deeplab/g3doc/model_zoo.md"},
            notes=_notes(RELEASES[name], size, notes),
        )
    )  # fmt: skip


def _notes(release: Release, size: str, extra: str) -> str:
    if release.labels is None:
        layout = "one folder with the TF-slim checkpoint (model.ckpt.index / .data-*)"
        preprocessing = "input RGB * 2 / 255 - 1"
    else:
        layout = (
            "one folder with the TF-slim checkpoint (model.ckpt.index / .data-*) and "
            "frozen_inference_graph.pb (OS8, scale 1; not used)"
        )
        height, width = release.eval_crop
        preprocessing = (
            f"input RGB * 2 / 255 - 1, padded bottom/right to {height}x{width} with the mean "
            f"pixel 127.5; evaluated at OS{release.eval_output_stride} by default"
        )
    return f"{size} archive: {layout}. Preprocessing: {preprocessing}. {extra}"


def _describe(arch: DeepLabArch) -> str:
    names = {
        "xception_41": "Xception-41",
        "xception_65": "Xception-65",
        "xception_71": "Xception-71",
        "mobilenet_v2": "MobileNetV2",
        "resnet_v1_50_beta": "ResNet-50-beta",
        "resnet_v1_101_beta": "ResNet-101-beta",
    }
    backbone = names[arch.backbone]
    if arch.num_classes is None:
        return f"{backbone} (ImageNet backbone)"
    if arch.decoder:
        return f"DeepLab v3+, {backbone}, ASPP {list(arch.atrous_rates)} at OS16, decoder OS4"
    return f"DeepLab v3, {backbone}, image pooling + 1x1 (no atrous branches, no decoder)"


_VOC_NOTE = "VOC 2012 21 classes (0 = background), labels 255 ignored."
_add(
    "xception65_coco_voc_trainaug",
    "deeplabv3_pascal_train_aug_2018_01_04.tar.gz",
    DeepLabArch(num_classes=21, **XCEPTION65),
    "PASCAL VOC 2012 train_aug (pretrained on MS-COCO)",
    "voc",
    [
        _single("mIoU", 82.20, "VOC 2012 val"),
        _multi("mIoU", 83.58, "VOC 2012 val", MULTI_VOC),
    ],
    "439MB",
    _VOC_NOTE,
)
_add(
    "xception65_coco_voc_trainval",
    "deeplabv3_pascal_trainval_2018_01_04.tar.gz",
    DeepLabArch(num_classes=21, **XCEPTION65),
    "PASCAL VOC 2012 train_aug + trainval (pretrained on MS-COCO)",
    "voc",
    [_multi("mIoU", 87.80, "VOC 2012 test (evaluation server)", MULTI_VOC)],
    "439MB",
    _VOC_NOTE + " Trained on val too: its val numbers mean nothing.",
)
_add(
    "mobilenetv2_coco_voc_trainaug",
    "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz",
    DeepLabArch(num_classes=21, **MOBILENETV2),
    "PASCAL VOC 2012 train_aug (pretrained on MS-COCO)",
    "voc",
    [
        _single("mIoU", 75.32, "VOC 2012 val"),
        _multi("mIoU", 77.33, "VOC 2012 val", MULTI_VOC),
    ],
    "23MB",
    _VOC_NOTE,
)
_add(
    "mobilenetv2_coco_voc_trainval",
    "deeplabv3_mnv2_pascal_trainval_2018_01_29.tar.gz",
    DeepLabArch(num_classes=21, **MOBILENETV2),
    "PASCAL VOC 2012 train_aug + trainval (pretrained on MS-COCO)",
    "voc",
    [_multi("mIoU", 80.25, "VOC 2012 test (evaluation server)", MULTI_VOC)],
    "23MB",
    _VOC_NOTE + " Trained on val too: its val numbers mean nothing.",
)
_CITYSCAPES_NOTE = (
    "Cityscapes 19 train ids, labels 255 ignored; evaluation crop 1025x2049 (the 1024x2048 "
    "images padded by one pixel)."
)
_add(
    "xception65_cityscapes_trainfine",
    "deeplabv3_cityscapes_train_2018_02_06.tar.gz",
    DeepLabArch(num_classes=19, **XCEPTION65),
    "Cityscapes train_fine (pretrained on ImageNet)",
    "cityscapes",
    [
        _single("mIoU", 78.79, "Cityscapes val"),
        _multi("mIoU", 80.42, "Cityscapes val", MULTI_CITYSCAPES),
    ],
    "439MB",
    _CITYSCAPES_NOTE,
    eval_crop=(1025, 2049),
)
_add(
    "mobilenetv2_coco_cityscapes_trainfine",
    "deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz",
    DeepLabArch(num_classes=19, **MOBILENETV2),
    "Cityscapes train_fine (pretrained on MS-COCO)",
    "cityscapes",
    [
        _single("mIoU", 70.71, "Cityscapes val"),
        _multi("mIoU", 73.57, "Cityscapes val", MULTI_CITYSCAPES),
    ],
    "23MB",
    _CITYSCAPES_NOTE,
    eval_crop=(1025, 2049),
)
_add(
    "xception65_ade20k_train",
    "deeplabv3_xception_ade20k_train_2018_05_29.tar.gz",
    DeepLabArch(num_classes=151, **XCEPTION65),
    "ADE20K (ADEChallengeData2016) train (pretrained on ImageNet)",
    "ade20k",
    [
        _multi("mIoU", 45.65, "ADE20K val", MULTI_VOC),
        _multi("pixel accuracy", 82.52, "ADE20K val", MULTI_VOC),
    ],
    "439MB",
    "151 outputs: 0 = 'other' (ignored by the official training), 1..150 the SceneParsing "
    "classes. Trained on images resized to 513 on the long side (min/max_resize_value 513); "
    "the model zoo does not state the evaluation resize, jaxseg pads to 513 without resizing.",
)

_IMAGENET_NOTE = (
    "ImageNet classification checkpoint of the backbone alone, the initialisation of the "
    "DeepLab training recipe; its 1001-class classifier is not used. Input: RGB * 2 / 255 - 1."
)
for _name, _url, _size, _eps in [
    ("xception_41", "xception_41_2018_05_09.tar.gz", "288MB", 1e-3),
    ("xception_65", "deeplabv3_xception_2018_01_04.tar.gz", "447MB", 1e-3),
    ("xception_71", "xception_71_2018_05_09.tar.gz", "474MB", 1e-3),
    ("resnet_v1_50_beta", "resnet_v1_50_2018_05_04.tar.gz", "274MB", 1e-5),
    ("resnet_v1_101_beta", "resnet_v1_101_2018_05_04.tar.gz", "477MB", 1e-5),
]:
    _add(
        _name,
        _url,
        DeepLabArch(_name, num_classes=None, backbone_epsilon=_eps),
        "ImageNet",
        None,
        [],
        _size,
        _IMAGENET_NOTE,
    )
