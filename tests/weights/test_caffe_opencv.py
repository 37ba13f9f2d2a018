"""Converted Caffe models score like OpenCV's Caffe runtime on the same file and image.

Each test writes a deploy prototxt with the release's layer structure and a `.caffemodel` with
random weights (random, not bilinear, deconvolutions too), runs it in `cv2.dnn` and compares
with the zoo loader's `Segmenter` on the same RGB image (relative error <= 1e-4). Channel
counts are reduced where the architecture allows it (fc layers, class counts, ResNet depth);
images are small.
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


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_fcn(tmp_path, caffe_proto, stride):
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
        skip = p.conv("score_pool4", "pool4", classes, 1, relu=False)
        fuse = p.eltwise("fuse_pool4", [up, p.crop("score_pool4c", skip, up, 5)])
        if stride == 16:
            up = p.deconv("upscore16", fuse, 32, 16)
            p.crop("score", up, "data", 27)
        else:
            up = p.deconv("upscore_pool4", fuse, 4, 2)
            skip = p.conv("score_pool3", "pool3", classes, 1, relu=False)
            fuse = p.eltwise("fuse_pool3", [up, p.crop("score_pool3c", skip, up, 9)])
            up = p.deconv("upscore8", fuse, 16, 8)
            p.crop("score", up, "data", 31)
    prototxt, caffemodel = p.write(tmp_path)

    image = _image(h, w, stride)
    net_input = image[..., ::-1].astype(np.float32) - np.float32(zoo.FCN_MEAN_BGR)
    theirs = caffe_proto.opencv_forward(prototxt, caffemodel, net_input)
    seg = zoo.build_fcn(caffemodel, stride=stride, num_classes=classes, fc_features=fc)
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
    return image[..., ::-1].astype(np.float32) - np.float32(zoo.DEEPLAB_MEAN_BGR)


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
    seg = zoo.build_deeplab_v1(caffemodel, num_classes=classes, fc_features=fc, crop_size=(h, w))
    _assert_close(seg.logits(image), theirs[:h, :w])
