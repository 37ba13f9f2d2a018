"""Converted Caffe models score like OpenCV's Caffe runtime on the same file and image.

Each test writes a deploy prototxt with the release's layer structure and a `.caffemodel` with
random weights (random, not bilinear, deconvolutions too), runs it in `cv2.dnn` and compares
with the `Segmenter` that `load_release` builds from the zoo entry's own release data on the
same RGB image (relative error <= 1e-4). Channel counts are reduced where the architecture
allows it (`CaffeRelease.with_sizes`: fc layers, class counts, ResNet depth); images are small.
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxseg.zoo import caffe_models as zoo

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
    pytest.skip("OpenCV without the Caffe importer (needs opencv-python-headless<5)",
                allow_module_level=True)  # fmt: skip

RTOL = 1e-4

# The releases' mean pixels (BGR, 0..255), written here from the authors' files, not read
# from jaxseg:
# FCN: shelhamer/fcn.berkeleyvision.org voc-fcn*s inference (`infer.py`:
# `in_ -= np.array((104.00698793,116.66876762,122.67891434))`).
FCN_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
# DeepLab v1/v2: the released train/test prototxts' `transform_param` (`mean_value: 104.008`,
# `116.669`, `122.675`).
DEEPLAB_MEAN_BGR = (104.008, 116.669, 122.675)
# VGG_ILSVRC_16_layers: its model-zoo README (gist ksimonyan/211839e770f7b538e2d8), "mean pixel
# (in BGR order) [103.939, 116.779, 123.68]".
VGG_MEAN_BGR = (103.939, 116.779, 123.68)
# SegNet (SegNet-Tutorial Example_Models): raw BGR 0..255, no mean (the tests below feed it so).


def _load(name, caffemodel, crop_size=None, **sizes):
    """The zoo entry `name`'s release with smaller `sizes`, loaded from `caffemodel`."""
    return zoo.load_release(zoo.RELEASES[name].with_sizes(**sizes), caffemodel, crop_size=crop_size)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _assert_close(ours, theirs):
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    err = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert err <= RTOL, f"relative error {err:.2e}"


def _vgg16(p, bottom, pool):
    """conv1_1..pool5 in Caffe names; `pool(name, x)` makes each pool."""
    x = bottom
    for b, widths in enumerate(p_widths(), start=1):
        for i, width in enumerate(widths, start=1):
            x = p.conv(f"conv{b}_{i}", x, width, 3, pad=100 if (b, i) == (1, 1) else 1)
        x = pool(f"pool{b}", x)
    return x


def p_widths():
    return ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _scale(p, name, bottom, value):
    """The at-once nets' fixed Scale layer (one factor per channel, no bias)."""
    c = p.channels[bottom]
    p._layer(name, "Scale", [bottom], name, "scale_param { bias_term: false }")
    p.blobs.append((name, "Scale", [np.full(c, value, np.float32)]))
    p.channels[name] = c
    return name


@pytest.mark.parametrize("stride, at_once", [(32, False), (16, False), (8, False), (8, True)])
def test_fcn(tmp_path, caffe_proto, stride, at_once):
    h, w, classes, fc = 33, 37, 5, 32
    p = caffe_proto.Prototxt((1, 3, h, w), seed=stride)
    pool5 = _vgg16(p, "data", lambda name, x: p.pool(name, x, 2, 2))
    x = p.conv("fc6", pool5, fc, 7)
    x = p.conv("fc7", x, fc, 1)
    score = p.conv("score_fr", x, classes, 1, relu=False)
    if stride == 32:
        up = p.deconv("upscore", score, 64, 32)
        p.crop("score", up, "data", 19)
    else:
        up = p.deconv("upscore2", score, 4, 2)
        pool4 = _scale(p, "scale_pool4", "pool4", 0.01) if at_once else "pool4"
        skip = p.conv("score_pool4", pool4, classes, 1, relu=False)
        fuse = p.eltwise("fuse_pool4", [up, p.crop("score_pool4c", skip, up, 5)])
        if stride == 16:
            up = p.deconv("upscore16", fuse, 32, 16)
            p.crop("score", up, "data", 27)
        else:
            up = p.deconv("upscore_pool4", fuse, 4, 2)
            pool3 = _scale(p, "scale_pool3", "pool3", 1e-4) if at_once else "pool3"
            skip = p.conv("score_pool3", pool3, classes, 1, relu=False)
            fuse = p.eltwise("fuse_pool3", [up, p.crop("score_pool3c", skip, up, 9)])
            up = p.deconv("upscore8", fuse, 16, 8)
            p.crop("score", up, "data", 31)
    prototxt, caffemodel = p.write(tmp_path)

    image = _image(h, w, stride)
    net_input = image[..., ::-1].astype(np.float32) - np.float32(FCN_MEAN_BGR)
    theirs = caffe_proto.opencv_forward(prototxt, caffemodel, net_input)
    seg = _load(f"fcn{stride}s_heavy_pascal", caffemodel, num_classes=classes, fc_features=fc)
    _assert_close(seg.logits(image), theirs)


def _deeplab_vgg16(p, ceil_first=True):
    """DeepLab's VGG16: 3x3 pools (stride 2, 2, 2, 1, 1; pad 1), conv5 at dilation 2."""
    x = "data"
    for b, widths in enumerate(p_widths(), start=1):
        for i, width in enumerate(widths, start=1):
            rate = 2 if b == 5 else 1
            x = p.conv(f"conv{b}_{i}", x, width, 3, pad=rate, dilation=rate)
        x = p.pool(f"pool{b}", x, 3, 2 if b <= 3 else 1, pad=1)
    return x


def _deeplab_input(image):
    return image[..., ::-1].astype(np.float32) - np.float32(DEEPLAB_MEAN_BGR)


def test_deeplab_v1_largefov(tmp_path, caffe_proto):
    # 42 x 50: even sides, where ceil-mode pools differ from floor (42 -> 22 -> 12 -> 7).
    h, w, classes, fc = 42, 50, 4, 16
    p = caffe_proto.Prototxt((1, 3, h, w), seed=11)
    x = _deeplab_vgg16(p)
    x = p.pool("pool5a", x, 3, 1, pad=1, kind="AVE")
    x = p.conv("fc6", x, fc, 3, pad=12, dilation=12)
    x = p.conv("fc7", x, fc, 1)
    x = p.conv("fc8_voc12", x, classes, 1, relu=False)
    p._layer("fc8_interp", "Interp", [x], "fc8_interp", "interp_param { zoom_factor: 8 }")
    prototxt = tmp_path / "deploy.prototxt"
    prototxt.write_text(p.text())
    # The release is an old V1 file: `layers` field, legacy 4-D blobs, biases (1, 1, 1, n).
    caffemodel = tmp_path / "v1.caffemodel"
    caffe_proto.write_caffemodel(caffemodel, [(n, 4, a) for n, _, a in p.blobs], v1=True)

    image = _image(h, w, 11)
    theirs = caffe_proto.opencv_forward(prototxt, caffemodel, _deeplab_input(image))
    assert theirs.shape == (7 * 8 - 7, 7 * 8 - 7 + 8, classes)  # (h8 - 1) * 8 + 1 = 49, 57
    seg = _load("deeplab_largefov_voc12", caffemodel, (h, w), num_classes=classes, fc_features=fc)
    _assert_close(seg.logits(image), theirs[:h, :w])

    # A smaller image on the same canvas: padded bottom/right with the mean pixel (zero after
    # the mean subtraction), as DeepLab's evaluation pads to 513, and cropped back.
    small = image[: h - 5, : w - 9]
    canvas = np.zeros((h, w, 3), np.float32)
    canvas[: h - 5, : w - 9] = _deeplab_input(small)
    theirs = caffe_proto.opencv_forward(prototxt, caffemodel, canvas)
    _assert_close(seg.logits(small), theirs[: h - 5, : w - 9])


def test_deeplab_v2_vgg16_aspp(tmp_path, caffe_proto):
    h, w, classes, fc = 40, 35, 3, 8
    p = caffe_proto.Prototxt((1, 3, h, w), seed=12)
    pool5 = _deeplab_vgg16(p)
    scores = []
    for i, rate in enumerate((6, 12, 18, 24), start=1):
        x = p.conv(f"fc6_{i}", pool5, fc, 3, pad=rate, dilation=rate)
        x = p.conv(f"fc7_{i}", x, fc, 1)
        scores.append(p.conv(f"fc8_voc12_{i}", x, classes, 1, relu=False))
    x = p.eltwise("fc8_voc12", scores)
    p._layer("fc8_interp", "Interp", [x], "fc8_interp", "interp_param { zoom_factor: 8 }")
    prototxt, caffemodel = p.write(tmp_path)

    image = _image(h, w, 12)
    theirs = caffe_proto.opencv_forward(prototxt, caffemodel, _deeplab_input(image))
    seg = _load("deeplabv2_vgg16_voc12", caffemodel, (h, w), num_classes=classes, fc_features=fc)
    _assert_close(seg.logits(image), theirs[:h, :w])


def _caffe_resnet(p, stage_sizes, base, suffix=""):
    """DeepLab v2's Caffe ResNet at output stride 8 with the released prototxt's layer names:
    a scale branch tags the backbone's names at the end (`conv1_res075`) and the ASPP
    classifier's before the branch index (`fc1_voc12_res075_c0`); weights are shared."""

    def share(name):
        return name if suffix else None

    def cbs(conv, bn, scale, bottom, out, k, stride=1, dilation=1, relu=True):
        pad = dilation * (k // 2)
        x = p.conv(conv + suffix, bottom, out, k, pad, stride, dilation, bias=False, relu=False,
                   share=share(conv))  # fmt: skip
        names = (bn, scale) if suffix else None
        return p.batchnorm_scale(bn + suffix, scale + suffix, x, share=names, relu=relu)

    x = cbs("conv1", "bn_conv1", "scale_conv1", "data" + suffix, base, 7, stride=2)
    x = p.pool("pool1" + suffix, x, 3, 2, pad=1)
    for s, blocks in enumerate(stage_sizes):
        stage = s + 2
        stride, dilation = (2, 1) if stage == 3 else (1, {2: 1, 4: 2, 5: 4}[stage])
        for b in range(blocks):
            block = f"res{stage}a" if b == 0 else (
                f"res{stage}b{b}" if stage in (3, 4) else f"res{stage}{'abcdefg'[b]}"
            )  # fmt: skip
            sfx = block[3:]
            width = base * 2**s
            st = stride if b == 0 else 1
            shortcut = x
            if b == 0:
                shortcut = cbs(f"{block}_branch1", f"bn{sfx}_branch1", f"scale{sfx}_branch1",
                               x, 4 * width, 1, stride=st, relu=False)  # fmt: skip
            y = cbs(f"{block}_branch2a", f"bn{sfx}_branch2a", f"scale{sfx}_branch2a", x,
                    width, 1, stride=st)  # fmt: skip
            y = cbs(f"{block}_branch2b", f"bn{sfx}_branch2b", f"scale{sfx}_branch2b", y,
                    width, 3, dilation=dilation)  # fmt: skip
            y = cbs(f"{block}_branch2c", f"bn{sfx}_branch2c", f"scale{sfx}_branch2c", y,
                    4 * width, 1, relu=False)  # fmt: skip
            x = p.eltwise(block + suffix, [shortcut, y])
            p._layer(f"{block}_relu{suffix}", "ReLU", [x], x)
    # The released prototxt puts the scale tag of the ASPP classifier before the branch index:
    # `fc1_voc12_res075_c0` is the 0.75 branch's copy of `fc1_voc12_c0` (its params are named
    # `fc1_voc12_c0_w` / `_b` in every branch), summed into `fc1_voc12_res075`.
    scores = [
        p.conv(
            f"fc1_voc12{suffix}_c{i}",
            x,
            p.classes,
            3,
            pad=r,
            dilation=r,
            relu=False,
            share=share(f"fc1_voc12_c{i}"),
        )  # fmt: skip
        for i, r in enumerate((6, 12, 18, 24))
    ]
    return p.eltwise("fc1_voc12" + suffix, scores)


def test_deeplab_v2_resnet_msc(tmp_path, caffe_proto):
    # 33 x 65 (8k + 1 sides): the sizes at which Caffe's three branches line up.
    h, w, stages, base = 33, 65, (1, 2, 2, 1), 4
    p = caffe_proto.Prototxt((1, 3, h, w), seed=13)
    p.classes = 3
    main = _caffe_resnet(p, stages, base)
    fused = [main]
    for scale, suffix in ((0.75, "_res075"), (0.5, "_res05")):
        size = (int((h - 1) * scale) + 1, int((w - 1) * scale) + 1)
        p.interp("data" + suffix, "data", f"height: {size[0]} width: {size[1]}")
        branch = _caffe_resnet(p, stages, base, suffix)
        fused.append(p.interp(f"fc1_voc12{suffix}_interp", branch, "height: 5 width: 9"))
    x = p.eltwise("fc_fusion", fused, op="MAX")
    p.interp("fc_fusion_interp", x, "zoom_factor: 8")
    prototxt, caffemodel = p.write(tmp_path)
    stored = [name for name, _, _ in p.blobs]
    for name in (
        "conv1_res075",
        "res5a_branch2c_res05",
        "fc1_voc12_res075_c0",
        "fc1_voc12_res05_c3",
    ):
        assert name in stored

    image = _image(h, w, 13)
    theirs = caffe_proto.opencv_forward(prototxt, caffemodel, _deeplab_input(image))
    assert theirs.shape == (h, w, 3)
    seg = _load(
        "deeplabv2_resnet101_voc12",
        caffemodel,
        (h, w),
        num_classes=3,
        stage_sizes=stages,
        base_width=base,
    )
    _assert_close(seg.logits(image), theirs)


class _Upsample:
    """caffe-segnet's `Upsample` for OpenCV, in numpy: bottoms (values, mask, a blob of the
    output size); each value is written at its mask index `h * W + w`, zeros elsewhere."""

    def __init__(self, params, blobs):
        pass

    def getMemoryShapes(self, inputs):  # noqa: N802 (OpenCV's name)
        return [[*inputs[0][:2], *inputs[2][2:]]]

    def forward(self, inputs):
        values, mask, like = inputs
        n, c = values.shape[:2]
        out = np.zeros((n, c, like.shape[2] * like.shape[3]), np.float32)
        index = mask.reshape(n, c, -1).astype(np.int64)
        np.put_along_axis(out, index, values.reshape(n, c, -1), axis=2)
        return [out.reshape(n, c, *like.shape[2:])]


@pytest.fixture
def upsample_layer():
    cv2.dnn_registerLayer("Upsample", _Upsample)
    yield
    cv2.dnn_unregisterLayer("Upsample")


def _segnet_bn(p, name, bottom, relu=True):
    """caffe-segnet's inference BN (scale * x + shift, blobs (1, C, 1, 1)) as a Scale layer."""
    c = p.channels[bottom]
    p._layer(name, "Scale", [bottom], name, "scale_param { bias_term: true }")
    scale = p.rng.uniform(0.5, 1.5, size=(1, c, 1, 1)).astype(np.float32)
    shift = (p.rng.normal(size=(1, c, 1, 1)) * 0.1).astype(np.float32)
    p.blobs.append((name, "BN", [scale, shift]))
    p.channels[name] = c
    if relu:
        p._layer(f"relu_{name}", "ReLU", [name], name)
    return name


def _unpool(p, name, bottom, mask, like):
    p._layer(name, "Upsample", [bottom, mask, like], name)
    p.channels[name] = p.channels[bottom]
    return name


def test_segnet_driving(tmp_path, caffe_proto, upsample_layer):
    # 45 x 38: odd sizes all the way down (45 -> 23 -> 12 -> 6 -> 3 -> 2), as CamVid's 360.
    h, w, classes = 45, 38, 12
    p = caffe_proto.Prototxt((1, 3, h, w), seed=14)
    x, convs = "data", {}
    for b, widths in enumerate(p_widths(), start=1):
        for i, width in enumerate(widths, start=1):
            x = p.conv(f"conv{b}_{i}", x, width, 3, pad=1, relu=False)
            x = _segnet_bn(p, f"conv{b}_{i}_bn", x)
        convs[b] = x
        x, _ = p.pool(f"pool{b}", x, 2, 2, tops=[f"pool{b}", f"pool{b}_mask"])
    for b in range(5, 0, -1):
        x = _unpool(p, f"upsample{b}", x, f"pool{b}_mask", convs[b])
        widths = p_widths()[b - 1]
        outs = list(widths[1:]) + ([p_widths()[b - 2][-1]] if b > 1 else [])
        for i, width in zip(range(len(widths), 0, -1), outs, strict=False):
            x = p.conv(f"conv{b}_{i}_D", x, width, 3, pad=1, relu=False)
            x = _segnet_bn(p, f"conv{b}_{i}_D_bn", x)
    p.conv("conv1_1_D", x, classes, 3, pad=1, relu=False)
    prototxt, caffemodel = p.write(tmp_path)

    image = _image(h, w, 14)
    theirs = caffe_proto.opencv_forward(prototxt, caffemodel, image[..., ::-1].astype(np.float32))
    seg = _load("segnet_driving_webdemo", caffemodel, num_classes=classes)
    _assert_close(seg.logits(image), theirs)


def test_segnet_basic(tmp_path, caffe_proto, upsample_layer):
    h, w, classes, width = 45, 60, 11, 8
    p = caffe_proto.Prototxt((1, 3, h, w), seed=15)
    p._layer("norm", "LRN", ["data"], "norm",
             "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }")  # fmt: skip
    p.channels["norm"] = 3
    x, convs = "norm", {}
    for i in range(1, 5):
        x = p.conv(f"conv{i}", x, width, 7, pad=3, relu=False)
        convs[i] = _segnet_bn(p, f"conv{i}_bn", x)
        x, _ = p.pool(f"pool{i}", convs[i], 2, 2, tops=[f"pool{i}", f"pool{i}_mask"])
    for i in range(4, 0, -1):
        x = _unpool(p, f"upsample{i}", x, f"pool{i}_mask", convs[i])
        x = p.conv(f"conv_decode{i}", x, width, 7, pad=3, relu=False)
        x = _segnet_bn(p, f"conv_decode{i}_bn", x, relu=False)
    p.conv("conv_classifier", x, classes, 1, relu=False)
    prototxt, caffemodel = p.write(tmp_path)

    # Large raw 0..255 values make the LRN matter (its denominator is far from 1).
    image = _image(h, w, 15)
    theirs = caffe_proto.opencv_forward(prototxt, caffemodel, image[..., ::-1].astype(np.float32))
    seg = _load("segnet_basic_camvid", caffemodel, features=width)
    _assert_close(seg.logits(image), theirs)


def test_vgg16_ilsvrc_inner_products(tmp_path, caffe_proto):
    # The ImageNet file stores fc6/fc7/fc8 as InnerProduct [out, C * h * w]; OpenCV runs them
    # as such at 224 x 224, where our fully convolutional form has one score cell.
    classes, fc = 10, 16
    p = caffe_proto.Prototxt((1, 3, 224, 224), seed=16)
    x = _vgg16(p, "data", lambda name, x: p.pool(name, x, 2, 2))
    p.lines = [line.replace("pad: 100", "pad: 1") for line in p.lines]
    for name, out, fan_in in (("fc6", fc, 512 * 49), ("fc7", fc, fc), ("fc8", classes, fc)):
        params = f"inner_product_param {{ num_output: {out} }}"
        p._layer(name, "InnerProduct", [x], name, params)
        w = p.weights(out, fan_in)
        p.blobs.append((name, "InnerProduct", [w, (p.rng.normal(size=out) * 0.1).astype("f4")]))
        x = name
        if name != "fc8":
            p._layer(f"relu_{name}", "ReLU", [x], x)
    prototxt, caffemodel = p.write(tmp_path)

    image = _image(224, 224, 16)
    net_input = image[..., ::-1].astype(np.float32) - np.float32(VGG_MEAN_BGR)
    import cv2 as cv

    net = cv.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(np.ascontiguousarray(net_input.transpose(2, 0, 1)[None]))
    theirs = net.forward().reshape(classes)
    seg = _load("vgg16_ilsvrc", caffemodel, num_classes=classes, fc_features=fc)
    ours = seg.logits(image)
    _assert_close(ours, np.broadcast_to(theirs, ours.shape))
