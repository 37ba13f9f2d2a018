"""The Caffe releases as data: FCN, DeepLab v1/v2, SegNet and VGG16 (ImageNet).

A release is a `CaffeRelease`: the architecture (`CaffeArch`: model class, its keyword
arguments with the release's switches and sizes, the backbone by its
`jaxseg.backbones.BACKBONES` name), the preprocessing (BGR minus a mean, or raw BGR), the
canvas, the converter of `jaxseg.weights.caffe_models`, the zip member holding the model and
the label set. `load_release(release, path)` is the one function that turns any of them and a
`.caffemodel` into a `Segmenter` fed the way the release was evaluated (docs/caffe_models.md);
`release.with_sizes(...)` is the same release with smaller widths, for nets small enough to
check against OpenCV's Caffe runtime.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones import BACKBONES
from jaxseg.data.label_tables import CAMVID_CLASS_NAMES, VOC_CLASS_NAMES
from jaxseg.models.deeplab_v1 import DeepLabV1
from jaxseg.models.deeplab_v2 import DeepLabV2, DeepLabV2VGG16
from jaxseg.models.fcn import FCN8s, FCN16s, FCN32s, VGG16Classifier
from jaxseg.models.segnet import SegNet, SegNetBasic
from jaxseg.segmenter import Segmenter
from jaxseg.weights import caffe_models as convert
from jaxseg.weights.caffe import flat_blobs, read_caffemodel
from jaxseg.weights.convert import Spec
from jaxseg.zoo.registry import Published, ZooEntry, register

# BGR means of the releases (0..255 units).
FCN_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
DEEPLAB_MEAN_BGR = (104.008, 116.669, 122.675)
VGG_MEAN_BGR = (103.939, 116.779, 123.68)

# The 12 classes of the SegNet web demo (CamVid's 11 with road marking split from road).
SEGNET_DRIVING_CLASS_NAMES = (
    "sky", "building", "pole", "road_marking", "road", "pavement", "tree", "sign_symbol",
    "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
LABEL_SETS = {
    "voc": VOC_CLASS_NAMES,
    "camvid": CAMVID_CLASS_NAMES,
    "segnet_driving": SEGNET_DRIVING_CLASS_NAMES,
}


def bgr_minus_mean(mean_bgr: Sequence[float]):
    """Caffe preprocessing: RGB 0..255 `[..., 3]` -> BGR minus the per-channel mean."""
    mean = jnp.asarray(mean_bgr, jnp.float32)

    def normalize(images: jax.Array) -> jax.Array:
        return jnp.asarray(images, jnp.float32)[..., ::-1] - mean

    return normalize


def raw_bgr(images: jax.Array) -> jax.Array:
    """SegNet's preprocessing: RGB 0..255 -> BGR 0..255, no mean."""
    return jnp.asarray(images, jnp.float32)[..., ::-1]


def caffemodel_from(path: str | Path, member: str) -> Path:
    """`path` itself, or for a release `.zip` its `member` extracted next to it (once).

    DeepLab v2 publishes a zip holding the prototxts, the trained model and the COCO
    initialisation; the trained model is extracted to `<zip without .zip>/member` (written to
    a temporary name first, so an interrupted extraction never leaves a partial file).
    """
    path = Path(path).expanduser()
    if not zipfile.is_zipfile(path):
        return path
    target = path.with_suffix("") / member
    if target.exists():
        return target
    with zipfile.ZipFile(path) as archive:
        names = {Path(n).name: n for n in archive.namelist()}
        if member not in names:
            models = sorted(n for n in names if n.endswith(".caffemodel"))
            raise FileNotFoundError(
                f"{path} has no {member}; its .caffemodel files: {models or 'none'}"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, archive.open(names[member]) as src:
                shutil.copyfileobj(src, out, 1 << 24)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target


@dataclasses.dataclass(frozen=True)
class CaffeArch:
    """A released network: `model(**options)`, its backbone (for models that take one)
    `BACKBONES[backbone]` bound to `backbone_options`.

    Example: `CaffeArch(DeepLabV1, dict(num_classes=21, fc_features=1024, ceil_mode=True,
    pool5_avg=True, caffe_interp=True))`.
    """

    model: type[nn.Module]
    options: Mapping[str, Any]
    backbone: str | None = None
    backbone_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # Read-only copies: entries may share one dict of options.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "backbone_options", MappingProxyType(dict(self.backbone_options)))

    @property
    def num_classes(self) -> int:
        return self.options["num_classes"]

    def build(self) -> nn.Module:
        """The model (unbound), e.g. for `model.init`."""
        options = dict(self.options)
        if self.backbone is not None:
            options["backbone"] = functools.partial(
                BACKBONES[self.backbone], **self.backbone_options
            )
        return self.model(**options)

    def with_sizes(self, **sizes: Any) -> CaffeArch:
        """The same architecture with other sizes, e.g. `num_classes=3, fc_features=4`, or
        `stage_sizes=(1, 1, 1, 1), base_width=4` for the backbone: each name goes to the
        model's arguments, else to the backbone's; an argument of neither is a ValueError."""
        ours = {f.name for f in dataclasses.fields(self.model)} - {"backbone", "parent", "name"}
        theirs = set()
        if self.backbone is not None:
            theirs = {f.name for f in dataclasses.fields(BACKBONES[self.backbone])}
        options, backbone_options = dict(self.options), dict(self.backbone_options)
        for key, value in sizes.items():
            if key in ours:
                options[key] = value
            elif key in theirs:
                backbone_options[key] = value
            else:
                where = f" or of its backbone {self.backbone}" if self.backbone else ""
                raise ValueError(f"{key!r} is not an argument of {self.model.__name__}{where}")
        return dataclasses.replace(self, options=options, backbone_options=backbone_options)


@dataclasses.dataclass(frozen=True)
class CaffeRelease:
    """What loading one released `.caffemodel` needs besides its file.

    Attributes:
      arch: the architecture (`CaffeArch`).
      converter: `model -> Spec` of `jaxseg.weights.caffe_models` mapping the file's blobs.
      output_stride: the network's one output stride (its layout is fixed by the release).
      mean_bgr: the BGR mean subtracted from the input (0..255), or None for raw BGR 0..255;
        images are padded with this pixel (black for raw BGR).
      crop_size: the canvas images are padded to (bottom/right), or None to run each image
        at its own size.
      labels: a `LABEL_SETS` name, or None (classes numbered `class_0`, ...).
      member: the `.caffemodel` to take from a release `.zip` (`caffemodel_from`), or None.
      scale_copies: scale tags of per-scale copies of shared weights (DeepLab v2's
        multi-scale net), checked equal to the full-scale blobs and dropped
        (`jaxseg.weights.caffe_models.drop_scale_copies`).
    """

    arch: CaffeArch
    converter: Callable[[nn.Module], Spec]
    output_stride: int
    mean_bgr: tuple[float, float, float] | None
    crop_size: int | None = None
    labels: str | None = None
    member: str | None = None
    scale_copies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.labels is not None and self.labels not in LABEL_SETS:
            raise ValueError(f"labels={self.labels!r}: choose one of {sorted(LABEL_SETS)}")

    def with_sizes(self, **sizes: Any) -> CaffeRelease:
        """The release with `arch.with_sizes(**sizes)`."""
        return dataclasses.replace(self, arch=self.arch.with_sizes(**sizes))

    @property
    def class_names(self) -> tuple[str, ...]:
        names = LABEL_SETS.get(self.labels, ())
        if len(names) == self.arch.num_classes:
            return tuple(names)
        return tuple(f"class_{i}" for i in range(self.arch.num_classes))

    @property
    def normalize(self) -> Callable[[jax.Array], jax.Array]:
        return raw_bgr if self.mean_bgr is None else bgr_minus_mean(self.mean_bgr)

    @property
    def pad_pixel(self) -> tuple[float, float, float]:
        """The pixel padding the canvas, RGB 0..255 (zero after `normalize`)."""
        if self.mean_bgr is None:
            return (0.0, 0.0, 0.0)
        blue, green, red = self.mean_bgr
        return (float(red), float(green), float(blue))


def released_variables(release: CaffeRelease, path: str | Path) -> dict[str, Any]:
    """The variables (`{"params", "batch_stats"}`) of `release.arch.build()` in the Caffe file
    at `path` (a `.caffemodel`, or the release `.zip` holding `release.member`)."""
    if release.member is not None:
        path = caffemodel_from(path, release.member)
    arrays = None
    if release.scale_copies:
        arrays = convert.drop_scale_copies(
            flat_blobs(read_caffemodel(path)), release.scale_copies, f"Caffe model {path}"
        )
    spec = release.converter(release.arch.build())
    return convert.convert_caffemodel(path, spec, arrays=arrays)


def load_release(
    release: CaffeRelease,
    path: str | Path,
    output_stride: int | None = None,
    crop_size: int | Sequence[int] | None = None,
) -> Segmenter:
    """`ZooEntry.load` of the Caffe entries: `.caffemodel` (or release `.zip`) -> Segmenter."""
    if output_stride not in (None, release.output_stride):
        raise ValueError(
            f"{release.arch.model.__name__} runs at output stride {release.output_stride} only "
            f"(its layout is fixed by the Caffe release), got output_stride={output_stride}"
        )
    return Segmenter(
        release.arch.build(),
        released_variables(release, path),
        normalize=release.normalize,
        class_names=release.class_names,
        crop_size=release.crop_size if crop_size is None else crop_size,
        pad_pixel=release.pad_pixel,
        bucket=None,
    )


# ---- the table -----------------------------------------------------------------------------

RELEASES: dict[str, CaffeRelease] = {}


def _add(name: str, release: CaffeRelease, **entry: Any) -> None:
    RELEASES[name] = release
    register(
        ZooEntry(
            name=name,
            num_classes=release.arch.num_classes,
            load=functools.partial(load_release, release),
            size=None,
            **entry,
        )
    )


# FCN: the 100-pixel pad, VALID fc6 and the reference crop offsets (`faithful_padding`), the
# stored final deconvolution (`learnable_final_upsampling`); each image at its own size.
_FCN_CLASSES = {32: FCN32s, 16: FCN16s, 8: FCN8s}
_FCN = dict(
    num_classes=21, faithful_padding=True, learnable_final_upsampling=True, fc_features=4096
)
_FCN_URL = "http://dl.caffe.berkeleyvision.org/fcn{s}s-heavy-pascal.caffemodel"
_FCN_PROTOTXT = (
    "https://github.com/shelhamer/fcn.berkeleyvision.org/blob/master/voc-fcn{s}s/deploy.prototxt"
)
_FCN_PUBLISHED = {32: 63.6, 16: 65.0, 8: 65.5}
_FCN_PAPER = {32: 59.4, 16: 62.4, 8: 62.7}

for _s in (32, 16, 8):
    _add(
        f"fcn{_s}s_heavy_pascal",
        CaffeRelease(
            CaffeArch(_FCN_CLASSES[_s], _FCN),
            convert.fcn_spec,
            output_stride=_s,
            mean_bgr=FCN_MEAN_BGR,
            labels="voc",
        ),
        architecture=f"FCN-{_s}s, VGG16 (Caffe, 100-pixel pad, reference crop offsets)",
        dataset="PASCAL VOC 2011 train + SBD (21 classes)",
        urls=(_FCN_URL.format(s=_s),),
        filename=f"fcn{_s}s-heavy-pascal.caffemodel",
        published=(
            Published(
                "mIoU",
                _FCN_PUBLISHED[_s],
                "VOC 2011 seg11valid, single scale, whole image (FCN release README; the "
                f"CVPR 2015 paper's {_FCN_PAPER[_s]} was an earlier model)",
            ),
        ),
        references={"deploy_prototxt": _FCN_PROTOTXT.format(s=_s)},
        notes="Input BGR minus (104.007, 116.669, 122.679); runs on the image at its size.",
    )


# DeepLab v1/v2: ceil-mode pools, Caffe's `Interp` zoom 8; images padded with the mean to the
# official evaluation canvas, 513 x 513.
DEEPLAB_CROP = 513
# The VOC 2012 model each DeepLab v2 prototxt_and_model.zip entry loads (docs/caffe_models.md,
# "Which file each DeepLab entry loads"). In the authors' scripts `train_iter_*` is Training #1
# on train_aug and `train2_iter_*` its fine-tuning on trainval_aug (val included). The
# ResNet-101 zip holds both (and init.caffemodel, the COCO initialisation): the train_aug one
# is the model of the published val numbers. For the VGG16 zip no public listing of its files
# could be found; the entry keeps the trainval_aug fine-tuned file it was built for.
DEEPLAB_V2_VGG16_MEMBER = "train2_iter_20000.caffemodel"
DEEPLAB_V2_RESNET_MEMBER = "train_iter_20000.caffemodel"
# Scale tags of the multi-scale ResNet-101 net's per-branch weight copies (inputs at 0.75, 0.5).
MSC_SUFFIXES = ("_res075", "_res05")
_DEEPLAB = dict(output_stride=8, mean_bgr=DEEPLAB_MEAN_BGR, crop_size=DEEPLAB_CROP, labels="voc")

_DEEPLAB_NOTES = (
    "Input BGR minus (104.008, 116.669, 122.675); images padded bottom/right with the mean "
    "to 513 x 513 as the official evaluation (crop_size= to change it)."
)
_VOC12_VAL = "VOC 2012 val (1449 images), single scale, 513 x 513 mean-padded input"
# The authors' scripts (run_pascal.sh, "Training #2 (finetune on trainval_aug)", solver2
# snapshot prefix `train2`) fine-tune the train_aug model on trainval_aug: a `train2` file has
# seen VOC 2012 val. Its published val numbers belong to the train_aug model it started from.
_TRAINVAL = "PASCAL VOC 2012 train_aug, then fine-tuned on trainval_aug (val included)"
_NOT_HELD_OUT = (
    "; published for the authors' train_aug model: this file was fine-tuned on "
    "trainval_aug, so its val score is not held out"
)
_TRAINED_ON_VAL = (
    " Trained on val too (the authors' train2 fine-tuning on trainval_aug): what it scores on "
    "VOC 2012 val is not held out and not comparable with the published numbers."
)

_add(
    "deeplab_largefov_voc12",
    CaffeRelease(
        CaffeArch(
            DeepLabV1,
            dict(
                num_classes=21, fc_features=1024, ceil_mode=True, pool5_avg=True, caffe_interp=True
            ),
        ),
        convert.deeplab_v1_spec,
        **_DEEPLAB,
    ),
    architecture="DeepLab v1 LargeFOV, VGG16 (fc6 3x3 rate 12, 1024 channels)",
    dataset=f"{_TRAINVAL} (21 classes)",
    urls=(
        "http://ccvl.stat.ucla.edu/ccvl/DeepLab-LargeFOV/train2_iter_8000.caffemodel",
        "http://www.cs.jhu.edu/~alanlab/ccvl/DeepLab-LargeFOV/train2_iter_8000.caffemodel",
    ),
    filename="deeplab_largefov_train2_iter_8000.caffemodel",
    published=(
        Published(
            "mIoU",
            62.25,
            _VOC12_VAL + _NOT_HELD_OUT,
            eval_output_stride=8,
            split_in_training=True,
        ),
        Published(
            "mIoU",
            67.64,
            f"{_VOC12_VAL}, dense CRF{_NOT_HELD_OUT}",
            eval_output_stride=8,
            split_in_training=True,
        ),
    ),
    crf=dict(  # the dense-CRF settings published with this release
        w_bilateral=4.0, theta_alpha=121.0, theta_beta=5.0, w_gaussian=3.0, theta_gamma=3.0
    ),
    references={"test_prototxt": "http://ccvl.stat.ucla.edu/ccvl/DeepLab-LargeFOV/test.prototxt"},
    notes=_DEEPLAB_NOTES + " V1 file format (deeplab-public). The only released LargeFOV "
    "file is train2_iter_8000 (solver2.prototxt: 8000 iterations, prefix train2)."
    + _TRAINED_ON_VAL,
)

_V2 = "http://liangchiehchen.com/projects/released/deeplab_aspp_{net}/prototxt_and_model.zip"
_add(
    "deeplabv2_vgg16_voc12",
    CaffeRelease(
        CaffeArch(
            DeepLabV2VGG16,
            dict(num_classes=21, fc_features=1024, ceil_mode=True, caffe_interp=True),
        ),
        convert.deeplab_v2_vgg_spec,
        member=DEEPLAB_V2_VGG16_MEMBER,
        **_DEEPLAB,
    ),
    architecture="DeepLab v2, VGG16, ASPP-L (rates 6/12/18/24)",
    dataset=f"{_TRAINVAL} (21 classes)",
    urls=(_V2.format(net="vgg16"),),
    filename="deeplab_aspp_vgg16_prototxt_and_model.zip",
    published=(
        Published(
            "mIoU",
            68.96,
            _VOC12_VAL + _NOT_HELD_OUT,
            eval_output_stride=8,
            split_in_training=True,
        ),
        Published(
            "mIoU",
            71.57,
            f"{_VOC12_VAL}, dense CRF{_NOT_HELD_OUT}",
            eval_output_stride=8,
            split_in_training=True,
        ),
    ),
    crf=dict(  # the dense-CRF settings published with this release
        w_bilateral=4.0, theta_alpha=65.0, theta_beta=3.0, w_gaussian=2.0, theta_gamma=2.0
    ),
    references={"project_page": "http://liangchiehchen.com/projects/DeepLabv2_vgg.html"},
    notes=_DEEPLAB_NOTES
    + f" Loads the zip's {DEEPLAB_V2_VGG16_MEMBER}."
    + _TRAINED_ON_VAL
    + " Whether the zip also holds the train_aug train_iter_20000.caffemodel (as the "
    "ResNet-101 zip does) is unconfirmed; if it does, pass that file as checkpoint=.",
)
_add(
    "deeplabv2_resnet101_voc12",
    CaffeRelease(
        # Caffe's ResNet: stride in the 1x1 `branch2a`, ceil-mode stem pool, BN + Scale; the
        # inputs at 1, 0.75 and 0.5 fused by max.
        CaffeArch(
            DeepLabV2,
            dict(num_classes=21, multi_scale_inputs=(0.75, 0.5), caffe_interp=True),
            backbone="resnet101",
            backbone_options=dict(stride_in_1x1=True, stem_pool_ceil_mode=True),
        ),
        convert.deeplab_v2_resnet_spec,
        member=DEEPLAB_V2_RESNET_MEMBER,
        scale_copies=MSC_SUFFIXES,
        **_DEEPLAB,
    ),
    architecture="DeepLab v2, ResNet-101 (Caffe), ASPP-L, multi-scale inputs 1/0.75/0.5 "
    "fused by max",
    dataset="MS-COCO, then PASCAL VOC 2012 train_aug (21 classes)",
    urls=(_V2.format(net="resnet101"),),
    filename="deeplab_aspp_resnet101_prototxt_and_model.zip",
    published=(
        Published("mIoU", 76.35, f"{_VOC12_VAL}, MSC", eval_output_stride=8),
        Published("mIoU", 77.69, f"{_VOC12_VAL}, MSC, dense CRF", eval_output_stride=8),
    ),
    crf=dict(  # the dense-CRF settings published with this release
        w_bilateral=4.0, theta_alpha=67.0, theta_beta=3.0, w_gaussian=3.0, theta_gamma=1.0
    ),
    references={"project_page": "http://liangchiehchen.com/projects/DeepLabv2_resnet.html"},
    notes=_DEEPLAB_NOTES + f" Loads the zip's {DEEPLAB_V2_RESNET_MEMBER} (train_aug, val "
    "held out); its train2_iter_20000.caffemodel was fine-tuned on trainval_aug (val "
    "included). The file stores the shared weights once per scale branch (checked equal).",
)

_SEGNET = "http://mi.eng.cam.ac.uk/~agk34/resources/SegNet/{}.caffemodel"
_SEGNET_PROTOTXT = (
    "https://github.com/alexgkendall/SegNet-Tutorial/blob/master/Example_Models/{}.prototxt"
)
# SegNet: conv bias and inference `BN` folded into BatchNorm, ceil-mode pools with stored
# indices; raw BGR input, each image at its own size (the releases': 360 x 480).
_add(
    "segnet_basic_camvid",
    CaffeRelease(
        CaffeArch(SegNetBasic, dict(num_classes=11, features=64)),
        convert.segnet_basic_spec,
        output_stride=16,
        mean_bgr=None,
        labels="camvid",
    ),
    architecture="SegNet-Basic (4 stages of 7x7 conv + BN, 64 channels)",
    dataset="CamVid (11 classes), SegNet tutorial",
    urls=(_SEGNET.format("segnet_basic_camvid"),),
    filename="segnet_basic_camvid.caffemodel",
    published=(Published("mIoU", 46.3, "CamVid test (233 images), 11 classes, 360 x 480"),),
    references={"deploy_prototxt": _SEGNET_PROTOTXT.format("segnet_basic_camvid")},
    notes="Input raw BGR 0..255 (no mean); runs at the image's size (CamVid: 360 x 480).",
)
_add(
    "segnet_driving_webdemo",
    CaffeRelease(
        CaffeArch(SegNet, dict(num_classes=12, classifier_kernel_size=3)),
        convert.segnet_spec,
        output_stride=32,
        mean_bgr=None,
        labels="segnet_driving",
    ),
    architecture="SegNet (VGG16 encoder-decoder with BN, pooling indices)",
    dataset="road scenes of the SegNet web demo (12 classes: CamVid's 11 + road marking)",
    urls=(_SEGNET.format("segnet_weights_driving_webdemo"),),
    filename="segnet_weights_driving_webdemo.caffemodel",
    published=(),
    references={"deploy_prototxt": _SEGNET_PROTOTXT.format("segnet_model_driving_webdemo")},
    notes="Input raw BGR 0..255 (no mean), 360 x 480 as released. The web demo model was "
    "trained on more data than CamVid and has no published benchmark number.",
)
# VGG16 as a dense classifier: fc6 a 7x7 VALID conv, class scores of every 224-pixel window
# resized to the image; smaller images are padded with the mean to 224 x 224.
_add(
    "vgg16_ilsvrc",
    CaffeRelease(
        CaffeArch(VGG16Classifier, dict(num_classes=1000, fc_features=4096)),
        convert.vgg16_ilsvrc_spec,
        output_stride=32,
        mean_bgr=VGG_MEAN_BGR,
        crop_size=224,
    ),
    architecture="VGG16 ImageNet classifier, fully convolutional (fc6 7x7, fc7/fc8 1x1)",
    dataset="ILSVRC 2012 (1000 classes)",
    urls=(
        "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_16_layers.caffemodel",
    ),
    filename="VGG_ILSVRC_16_layers.caffemodel",
    published=(
        Published("top-5 error", 7.5, "ILSVRC 2012 val, dense evaluation at scales 256/384/512"),
    ),
    references={"deploy_prototxt": "https://gist.github.com/ksimonyan/211839e770f7b538e2d8"},
    notes="Input BGR minus (103.939, 116.779, 123.68). The FCN and DeepLab "
    "initialisation: `convert.vgg16_ilsvrc_spec(VGG16(include_fc=True), "
    "with_classifier=False)`.",
)
