"""Zoo entries of the Caffe releases: FCN, DeepLab v1/v2, SegNet and VGG16 (ImageNet).

Each entry's `load(path, *, output_stride=None, crop_size=None)` reads the release's
`.caffemodel` (`jaxseg.weights.caffe`), builds the jaxseg model with the arguments that
reproduce the release's Caffe semantics (docs/caffe_models.md) and returns a `Segmenter` fed
the way the release was evaluated. The `build_*` functions take the sizes as arguments (the
entries fix them to the released ones), so that small nets can be checked against OpenCV.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxseg.backbones.resnet import ResNet
from jaxseg.data.label_tables import CAMVID_CLASS_NAMES, VOC_CLASS_NAMES
from jaxseg.models.deeplab_v1 import DeepLabV1
from jaxseg.models.deeplab_v2 import DeepLabV2, DeepLabV2VGG16
from jaxseg.models.fcn import FCN8s, FCN16s, FCN32s, VGG16Classifier
from jaxseg.models.segnet import SegNet, SegNetBasic
from jaxseg.segmenter import Segmenter
from jaxseg.weights import caffe_models as convert
from jaxseg.weights.caffe import flat_blobs, read_caffemodel
from jaxseg.zoo.registry import Published, ZooEntry, register

# BGR means of the releases (0..255 units).
FCN_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
DEEPLAB_MEAN_BGR = (104.008, 116.669, 122.675)
VGG_MEAN_BGR = (103.939, 116.779, 123.68)


def bgr_minus_mean(mean_bgr: Sequence[float]):
    """Caffe preprocessing: RGB 0..255 `[..., 3]` -> BGR minus the per-channel mean."""
    mean = jnp.asarray(mean_bgr, jnp.float32)

    def normalize(images: jax.Array) -> jax.Array:
        return jnp.asarray(images, jnp.float32)[..., ::-1] - mean

    return normalize


def raw_bgr(images: jax.Array) -> jax.Array:
    """SegNet's preprocessing: RGB 0..255 -> BGR 0..255, no mean."""
    return jnp.asarray(images, jnp.float32)[..., ::-1]


def _rgb(mean_bgr: Sequence[float]) -> tuple[float, float, float]:
    return tuple(float(v) for v in mean_bgr[::-1])


def _no_output_stride(output_stride: int | None, name: str, fixed: int) -> None:
    if output_stride not in (None, fixed):
        raise ValueError(
            f"{name} runs at output stride {fixed} only (its layout is fixed by the Caffe "
            f"release), got output_stride={output_stride}"
        )


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


# ---- FCN -----------------------------------------------------------------------------------

_FCN_CLASSES = {32: FCN32s, 16: FCN16s, 8: FCN8s}


def build_fcn(
    path: str | Path,
    *,
    stride: int,
    output_stride: int | None = None,
    crop_size: int | Sequence[int] | None = None,
    num_classes: int = 21,
    fc_features: int = 4096,
) -> Segmenter:
    """FCN-`stride`s from a voc-fcn*s `.caffemodel`: the 100-pixel pad, VALID fc6 and the
    reference crop offsets (`faithful_padding=True`), the stored final deconvolution
    (`learnable_final_upsampling=True`), BGR minus the mean. The image runs at its own size
    (`crop_size` pads it with the mean pixel, as a fixed canvas)."""
    _no_output_stride(output_stride, f"FCN-{stride}s", stride)
    model = _FCN_CLASSES[stride](
        num_classes=num_classes,
        faithful_padding=True,
        learnable_final_upsampling=True,
        fc_features=fc_features,
    )
    variables = convert.convert_caffemodel(path, convert.fcn_spec(model))
    return Segmenter(
        model,
        variables,
        normalize=bgr_minus_mean(FCN_MEAN_BGR),
        class_names=_class_names(num_classes),
        crop_size=crop_size,
        pad_pixel=_rgb(FCN_MEAN_BGR),
        bucket=None,
    )


def _numbered(num_classes: int) -> tuple[str, ...]:
    return tuple(f"class_{i}" for i in range(num_classes))


_FCN_URL = "http://dl.caffe.berkeleyvision.org/fcn{s}s-heavy-pascal.caffemodel"
_FCN_PROTOTXT = (
    "https://github.com/shelhamer/fcn.berkeleyvision.org/blob/master/voc-fcn{s}s/deploy.prototxt"
)
_FCN_PUBLISHED = {32: 63.6, 16: 65.0, 8: 65.5}
_FCN_PAPER = {32: 59.4, 16: 62.4, 8: 62.7}

for _s in (32, 16, 8):
    register(
        ZooEntry(
            name=f"fcn{_s}s_heavy_pascal",
            architecture=f"FCN-{_s}s, VGG16 (Caffe, 100-pixel pad, reference crop offsets)",
            dataset="PASCAL VOC 2011 train + SBD (21 classes)",
            num_classes=21,
            urls=(_FCN_URL.format(s=_s),),
            filename=f"fcn{_s}s-heavy-pascal.caffemodel",
            size=None,
            published=(
                Published(
                    "mIoU",
                    _FCN_PUBLISHED[_s],
                    "VOC 2011 seg11valid, single scale, whole image (FCN release README; the "
                    f"CVPR 2015 paper's {_FCN_PAPER[_s]} was an earlier model)",
                ),
            ),
            load=functools.partial(build_fcn, stride=_s),
            references={"deploy_prototxt": _FCN_PROTOTXT.format(s=_s)},
            notes="Input BGR minus (104.007, 116.669, 122.679); runs on the image at its size.",
        )
    )


# ---- DeepLab v1 LargeFOV / v2 -------------------------------------------------------------------

DEEPLAB_CROP = 513
# The VOC 2012 model each DeepLab v2 prototxt_and_model.zip entry loads (docs/caffe_models.md,
# "Which file each DeepLab entry loads"). In the authors' scripts `train_iter_*` is Training #1
# on train_aug and `train2_iter_*` its fine-tuning on trainval_aug (val included). The
# ResNet-101 zip holds both (and init.caffemodel, the COCO initialisation): the train_aug one
# is the model of the published val numbers. For the VGG16 zip no public listing of its files
# could be found; the entry keeps the trainval_aug fine-tuned file it was built for.
DEEPLAB_V2_VGG16_MEMBER = "train2_iter_20000.caffemodel"
DEEPLAB_V2_RESNET_MEMBER = "train_iter_20000.caffemodel"


def _class_names(num_classes: int) -> tuple[str, ...]:
    return VOC_CLASS_NAMES if num_classes == 21 else _numbered(num_classes)


def _deeplab_segmenter(model, variables, num_classes, crop_size) -> Segmenter:
    return Segmenter(
        model,
        variables,
        normalize=bgr_minus_mean(DEEPLAB_MEAN_BGR),
        class_names=_class_names(num_classes),
        crop_size=DEEPLAB_CROP if crop_size is None else crop_size,
        pad_pixel=_rgb(DEEPLAB_MEAN_BGR),
        bucket=None,
    )


def build_deeplab_v1(
    path: str | Path,
    *,
    output_stride: int | None = None,
    crop_size: int | Sequence[int] | None = None,
    num_classes: int = 21,
    fc_features: int = 1024,
    classifier: str = "fc8_voc12",
) -> Segmenter:
    """DeepLab v1 LargeFOV from its `.caffemodel`: ceil-mode pools, `pool5a`, Caffe's `Interp`
    zoom 8; images padded with the mean to 513 x 513 (or `crop_size`), BGR minus the mean."""
    _no_output_stride(output_stride, "DeepLab v1", 8)
    model = DeepLabV1(
        num_classes=num_classes,
        fc_features=fc_features,
        ceil_mode=True,
        pool5_avg=True,
        caffe_interp=True,
    )
    spec = convert.deeplab_v1_spec(model, classifier)
    variables = convert.convert_caffemodel(path, spec)
    return _deeplab_segmenter(model, variables, num_classes, crop_size)


def build_deeplab_v2_vgg16(
    path: str | Path,
    *,
    output_stride: int | None = None,
    crop_size: int | Sequence[int] | None = None,
    num_classes: int = 21,
    fc_features: int = 1024,
    classifier: str = "fc8_voc12",
) -> Segmenter:
    """DeepLab v2 VGG16 ASPP-L from its `.caffemodel`: ceil-mode pools, four LargeFOV
    branches at rates 6/12/18/24 summed, Caffe's `Interp` zoom 8; padded to 513 as v1."""
    _no_output_stride(output_stride, "DeepLab v2 VGG16", 8)
    model = DeepLabV2VGG16(
        num_classes=num_classes, fc_features=fc_features, ceil_mode=True, caffe_interp=True
    )
    spec = convert.deeplab_v2_vgg_spec(model, classifier)
    variables = convert.convert_caffemodel(caffemodel_from(path, DEEPLAB_V2_VGG16_MEMBER), spec)
    return _deeplab_segmenter(model, variables, num_classes, crop_size)


# ---- DeepLab v2 ResNet-101 -----------------------------------------------------------------

MSC_SUFFIXES = ("_res075", "_res05")


def build_deeplab_v2_resnet(
    path: str | Path,
    *,
    output_stride: int | None = None,
    crop_size: int | Sequence[int] | None = None,
    num_classes: int = 21,
    stage_sizes: Sequence[int] = (3, 4, 23, 3),
    base_width: int = 64,
    multi_scale_inputs: Sequence[float] = (0.75, 0.5),
    classifier: str = "fc1_voc12",
) -> Segmenter:
    """DeepLab v2 ResNet-101 ASPP-L (MSC) from its `.caffemodel`: Caffe ResNet (stride in the
    1x1 `branch2a`, ceil-mode stem pool, BatchNorm + Scale), inputs at 1, 0.75 and 0.5 fused
    by max, Caffe's `Interp` zoom 8; padded to 513 with the mean, BGR minus the mean."""
    _no_output_stride(output_stride, "DeepLab v2 ResNet-101", 8)
    backbone = functools.partial(
        ResNet,
        stage_sizes=tuple(stage_sizes),
        base_width=base_width,
        stride_in_1x1=True,
        stem_pool_ceil_mode=True,
    )
    model = DeepLabV2(
        num_classes=num_classes,
        backbone=backbone,
        output_stride=8,
        multi_scale_inputs=tuple(multi_scale_inputs),
        caffe_interp=True,
    )
    path = caffemodel_from(path, DEEPLAB_V2_RESNET_MEMBER)
    what = f"Caffe model {path}"
    arrays = convert.drop_scale_copies(flat_blobs(read_caffemodel(path)), MSC_SUFFIXES, what)
    spec = convert.deeplab_v2_resnet_spec(model, stage_sizes, classifier)
    variables = convert.convert_caffemodel(path, spec, arrays=arrays)
    return _deeplab_segmenter(model, variables, num_classes, crop_size)


# ---- SegNet --------------------------------------------------------------------------------

# The 12 classes of the SegNet web demo (CamVid's 11 with road marking split from road).
SEGNET_DRIVING_CLASS_NAMES = (
    "sky", "building", "pole", "road_marking", "road", "pavement", "tree", "sign_symbol",
    "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip


def _segnet_segmenter(model, variables, class_names, crop_size) -> Segmenter:
    return Segmenter(
        model,
        variables,
        normalize=raw_bgr,
        class_names=class_names,
        crop_size=crop_size,
        pad_pixel=(0.0, 0.0, 0.0),
        bucket=None,
    )


def build_segnet(
    path: str | Path,
    *,
    output_stride: int | None = None,
    crop_size: int | Sequence[int] | None = None,
    num_classes: int = 12,
) -> Segmenter:
    """SegNet (VGG16 encoder-decoder) from a caffe-segnet `.caffemodel`: conv bias and
    inference `BN` folded into BatchNorm, ceil-mode pools with stored indices, 3x3 classifier,
    raw BGR input. Each image runs at its own size (the release's is 360 x 480)."""
    _no_output_stride(output_stride, "SegNet", 32)
    model = SegNet(num_classes=num_classes, classifier_kernel_size=3)
    variables = convert.convert_caffemodel(path, convert.segnet_spec(model))
    names = SEGNET_DRIVING_CLASS_NAMES if num_classes == 12 else (
        CAMVID_CLASS_NAMES if num_classes == 11 else _numbered(num_classes)
    )  # fmt: skip
    return _segnet_segmenter(model, variables, names, crop_size)


def build_segnet_basic(
    path: str | Path,
    *,
    output_stride: int | None = None,
    crop_size: int | Sequence[int] | None = None,
    num_classes: int = 11,
    features: int = 64,
) -> Segmenter:
    """SegNet-Basic from the SegNet tutorial's `.caffemodel`: input LRN, four 7x7 conv + BN
    stages, decoder without ReLU, raw BGR input, each image at its own size."""
    _no_output_stride(output_stride, "SegNet-Basic", 16)
    model = SegNetBasic(num_classes=num_classes, features=features)
    variables = convert.convert_caffemodel(path, convert.segnet_basic_spec(model))
    names = CAMVID_CLASS_NAMES if num_classes == 11 else _numbered(num_classes)
    return _segnet_segmenter(model, variables, names, crop_size)


# ---- VGG16 (ImageNet) ----------------------------------------------------------------------


def build_vgg16_ilsvrc(
    path: str | Path,
    *,
    output_stride: int | None = None,
    crop_size: int | Sequence[int] | None = None,
    num_classes: int = 1000,
    fc_features: int = 4096,
) -> Segmenter:
    """VGG_ILSVRC_16_layers as a dense classifier (`VGG16Classifier`): fc6 a 7x7 VALID conv,
    class scores of every 224-pixel window resized to the image; images smaller than
    224 x 224 are padded with the mean (`crop_size`, default 224). BGR minus VGG's mean."""
    _no_output_stride(output_stride, "VGG16", 32)
    model = VGG16Classifier(num_classes=num_classes, fc_features=fc_features)
    variables = convert.convert_caffemodel(path, convert.vgg16_ilsvrc_spec(model))
    return Segmenter(
        model,
        variables,
        normalize=bgr_minus_mean(VGG_MEAN_BGR),
        class_names=_numbered(num_classes),
        crop_size=224 if crop_size is None else crop_size,
        pad_pixel=_rgb(VGG_MEAN_BGR),
        bucket=None,
    )


# ---- the entries ---------------------------------------------------------------------------

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

register(
    ZooEntry(
        name="deeplab_largefov_voc12",
        architecture="DeepLab v1 LargeFOV, VGG16 (fc6 3x3 rate 12, 1024 channels)",
        dataset=f"{_TRAINVAL} (21 classes)",
        num_classes=21,
        urls=(
            "http://ccvl.stat.ucla.edu/ccvl/DeepLab-LargeFOV/train2_iter_8000.caffemodel",
            "http://www.cs.jhu.edu/~alanlab/ccvl/DeepLab-LargeFOV/train2_iter_8000.caffemodel",
        ),
        filename="deeplab_largefov_train2_iter_8000.caffemodel",
        size=None,
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
        load=build_deeplab_v1,
        crf=dict(  # the dense-CRF settings published with this release
            w_bilateral=4.0, theta_alpha=121.0, theta_beta=5.0, w_gaussian=3.0, theta_gamma=3.0
        ),
        references={
            "test_prototxt": "http://ccvl.stat.ucla.edu/ccvl/DeepLab-LargeFOV/test.prototxt"
        },
        notes=_DEEPLAB_NOTES + " V1 file format (deeplab-public). The only released LargeFOV "
        "file is train2_iter_8000 (solver2.prototxt: 8000 iterations, prefix train2)."
        + _TRAINED_ON_VAL,
    )
)

_V2 = "http://liangchiehchen.com/projects/released/deeplab_aspp_{net}/prototxt_and_model.zip"
register(
    ZooEntry(
        name="deeplabv2_vgg16_voc12",
        architecture="DeepLab v2, VGG16, ASPP-L (rates 6/12/18/24)",
        dataset=f"{_TRAINVAL} (21 classes)",
        num_classes=21,
        urls=(_V2.format(net="vgg16"),),
        filename="deeplab_aspp_vgg16_prototxt_and_model.zip",
        size=None,
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
        load=build_deeplab_v2_vgg16,
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
)
register(
    ZooEntry(
        name="deeplabv2_resnet101_voc12",
        architecture="DeepLab v2, ResNet-101 (Caffe), ASPP-L, multi-scale inputs 1/0.75/0.5 "
        "fused by max",
        dataset="MS-COCO, then PASCAL VOC 2012 train_aug (21 classes)",
        num_classes=21,
        urls=(_V2.format(net="resnet101"),),
        filename="deeplab_aspp_resnet101_prototxt_and_model.zip",
        size=None,
        published=(
            Published("mIoU", 76.35, f"{_VOC12_VAL}, MSC", eval_output_stride=8),
            Published("mIoU", 77.69, f"{_VOC12_VAL}, MSC, dense CRF", eval_output_stride=8),
        ),
        load=build_deeplab_v2_resnet,
        crf=dict(  # the dense-CRF settings published with this release
            w_bilateral=4.0, theta_alpha=67.0, theta_beta=3.0, w_gaussian=3.0, theta_gamma=1.0
        ),
        references={"project_page": "http://liangchiehchen.com/projects/DeepLabv2_resnet.html"},
        notes=_DEEPLAB_NOTES + f" Loads the zip's {DEEPLAB_V2_RESNET_MEMBER} (train_aug, val "
        "held out); its train2_iter_20000.caffemodel was fine-tuned on trainval_aug (val "
        "included). The file stores the shared weights once per scale branch (checked equal).",
    )
)

_SEGNET = "http://mi.eng.cam.ac.uk/~agk34/resources/SegNet/{}.caffemodel"
_SEGNET_PROTOTXT = (
    "https://github.com/alexgkendall/SegNet-Tutorial/blob/master/Example_Models/{}.prototxt"
)
register(
    ZooEntry(
        name="segnet_basic_camvid",
        architecture="SegNet-Basic (4 stages of 7x7 conv + BN, 64 channels)",
        dataset="CamVid (11 classes), SegNet tutorial",
        num_classes=11,
        urls=(_SEGNET.format("segnet_basic_camvid"),),
        filename="segnet_basic_camvid.caffemodel",
        size=None,
        published=(Published("mIoU", 46.3, "CamVid test (233 images), 11 classes, 360 x 480"),),
        load=build_segnet_basic,
        references={"deploy_prototxt": _SEGNET_PROTOTXT.format("segnet_basic_camvid")},
        notes="Input raw BGR 0..255 (no mean); runs at the image's size (CamVid: 360 x 480).",
    )
)
register(
    ZooEntry(
        name="segnet_driving_webdemo",
        architecture="SegNet (VGG16 encoder-decoder with BN, pooling indices)",
        dataset="road scenes of the SegNet web demo (12 classes: CamVid's 11 + road marking)",
        num_classes=12,
        urls=(_SEGNET.format("segnet_weights_driving_webdemo"),),
        filename="segnet_weights_driving_webdemo.caffemodel",
        size=None,
        published=(),
        load=build_segnet,
        references={"deploy_prototxt": _SEGNET_PROTOTXT.format("segnet_model_driving_webdemo")},
        notes="Input raw BGR 0..255 (no mean), 360 x 480 as released. The web demo model was "
        "trained on more data than CamVid and has no published benchmark number.",
    )
)
register(
    ZooEntry(
        name="vgg16_ilsvrc",
        architecture="VGG16 ImageNet classifier, fully convolutional (fc6 7x7, fc7/fc8 1x1)",
        dataset="ILSVRC 2012 (1000 classes)",
        num_classes=1000,
        urls=(
            "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/"
            "VGG_ILSVRC_16_layers.caffemodel",
        ),
        filename="VGG_ILSVRC_16_layers.caffemodel",
        size=None,
        published=(
            Published(
                "top-5 error", 7.5, "ILSVRC 2012 val, dense evaluation at scales 256/384/512"
            ),
        ),
        load=build_vgg16_ilsvrc,
        references={"deploy_prototxt": "https://gist.github.com/ksimonyan/211839e770f7b538e2d8"},
        notes="Input BGR minus (103.939, 116.779, 123.68). The FCN and DeepLab "
        "initialisation: `convert.vgg16_ilsvrc_spec(VGG16(include_fc=True), "
        "with_classifier=False)`.",
    )
)
