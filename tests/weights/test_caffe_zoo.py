"""Caffe zoo loaders: release packaging, preprocessing defaults and errors (no OpenCV)."""

from __future__ import annotations

import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models.deeplab_v1 import DeepLabV1
from jaxseg.models.deeplab_v2 import DeepLabV2VGG16
from jaxseg.models.fcn import FCN8s, FCN16s, FCN32s, VGG16Classifier
from jaxseg.models.segnet import SegNet, SegNetBasic
from jaxseg.ops.pooling import avg_pool2d_count_pad, ceil_mode_pads
from jaxseg.weights import caffe_models as convert
from jaxseg.weights.caffe import flat_blobs, read_caffemodel
from jaxseg.zoo import caffe_models as zoo
from jaxseg.zoo.registry import ENTRIES, Published

V1, VGG, RESNET = "deeplab_largefov_voc12", "deeplabv2_vgg16_voc12", "deeplabv2_resnet101_voc12"


def _release(name: str, **sizes) -> zoo.CaffeRelease:
    """Zoo entry `name`'s release with smaller `sizes` (`CaffeRelease.with_sizes`)."""
    return zoo.RELEASES[name].with_sizes(**sizes)


def _small_deeplab_v2_vgg(caffe_proto, classes=3, fc=4):
    """Random Caffe-layout blobs of a DeepLab v2 VGG16 ASPP-L with `fc` channels."""
    p = caffe_proto.Prototxt((1, 3, 40, 40), seed=1)
    widths = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
    x = "data"
    for b, block in enumerate(widths, start=1):
        for i, width in enumerate(block, start=1):
            x = p.conv(f"conv{b}_{i}", x, width, 3, pad=1)
    pool5 = x
    for i in range(1, 5):
        y = p.conv(f"fc6_{i}", pool5, fc, 3)
        y = p.conv(f"fc7_{i}", y, fc, 1)
        p.conv(f"fc8_voc12_{i}", y, classes, 1)
    return p.blobs


def test_entries_and_published_numbers():
    published = {
        "fcn32s_heavy_pascal": 63.6,
        "fcn16s_heavy_pascal": 65.0,
        "fcn8s_heavy_pascal": 65.5,
        "deeplab_largefov_voc12": 62.25,
        "deeplabv2_resnet101_voc12": 76.35,
        "segnet_basic_camvid": 46.3,
    }
    for name, value in published.items():
        assert ENTRIES[name].published[0].value == value
    assert ENTRIES["deeplab_largefov_voc12"].published[1].value == 67.64
    assert ENTRIES["deeplabv2_resnet101_voc12"].published[1].value == 77.69
    for name in ("segnet_driving_webdemo", "deeplabv2_vgg16_voc12", "vgg16_ilsvrc"):
        assert name in ENTRIES
    assert ENTRIES["segnet_driving_webdemo"].num_classes == 12
    assert ENTRIES["segnet_basic_camvid"].num_classes == 11
    for entry in ENTRIES.values():
        assert entry.urls and all(u.startswith("http") for u in entry.urls)


# The released architectures as the releases' deploy prototxts define them (docs/caffe_models.md,
# "Semantics reproduced by model arguments"): FCN's 100-pixel pad, VALID fc6 and crops and its
# stored final deconvolution; DeepLab's ceil-mode 3x3/2 pools, LargeFOV's 1024-wide fc6/fc7 and
# `pool5a`, `Interp` zoom 8; SegNet's 3x3 classifier (`conv1_1_D`); SegNet-Basic's 64 channels.
RELEASED_MODELS = {
    "fcn32s_heavy_pascal": FCN32s(21, faithful_padding=True, learnable_final_upsampling=True),
    "fcn16s_heavy_pascal": FCN16s(21, faithful_padding=True, learnable_final_upsampling=True),
    "fcn8s_heavy_pascal": FCN8s(21, faithful_padding=True, learnable_final_upsampling=True),
    "deeplab_largefov_voc12": DeepLabV1(
        21, fc_features=1024, ceil_mode=True, pool5_avg=True, caffe_interp=True
    ),
    "deeplabv2_vgg16_voc12": DeepLabV2VGG16(
        21, fc_features=1024, ceil_mode=True, caffe_interp=True
    ),
    "segnet_basic_camvid": SegNetBasic(11, features=64),
    "segnet_driving_webdemo": SegNet(12, classifier_kernel_size=3),
    "vgg16_ilsvrc": VGG16Classifier(1000, fc_features=4096),
}


def test_released_architectures_are_the_training_models():
    from jaxseg.zoo import training

    for name, model in RELEASED_MODELS.items():
        assert training.model(f"zoo:{name}") == model, name
    # DeepLab v2 ResNet-101 (MSC): Caffe's ResNet-101 (res4b1..res4b22: 3, 4, 23, 3 blocks)
    # strides the 1x1 branch2a and rounds the stem pool up; inputs at 1, 0.75 and 0.5.
    resnet = training.model("zoo:deeplabv2_resnet101_voc12")
    assert (resnet.num_classes, resnet.output_stride, resnet.caffe_interp) == (21, 8, True)
    assert tuple(resnet.multi_scale_inputs) == (0.75, 0.5)
    backbone = resnet.backbone()
    assert tuple(backbone.stage_sizes) == (3, 4, 23, 3) and backbone.base_width == 64
    assert backbone.stride_in_1x1 and backbone.stem_pool_ceil_mode
    # Another label set changes the classifier only; the output stride is the release's.
    assert training.model(f"zoo:{V1}", num_classes=5) == RELEASED_MODELS[V1].clone(num_classes=5)
    with pytest.raises(ValueError, match="output stride 8 only"):
        training.model(f"zoo:{V1}", output_stride=16)
    small = zoo.RELEASES["segnet_basic_camvid"].with_sizes(num_classes=3)
    assert small.class_names == ("class_0", "class_1", "class_2")
    with pytest.raises(ValueError, match="'stage_sizes' is not an argument of FCN8s"):
        zoo.RELEASES["fcn8s_heavy_pascal"].with_sizes(stage_sizes=(1, 1, 1, 1))


# In the authors' scripts (deeplab-public(-ver2) exper/run_pascal.sh: "Training #1 (on
# train_aug)" snapshots `train_iter_*`, "Training #2 (finetune on trainval_aug)" with
# solver2.prototxt's prefix `train2`), a `train2_iter_*` file has been trained on VOC 2012 val.
TRAINED_ON_VAL = {
    "deeplab_largefov_voc12": True,  # the only released file: train2_iter_8000.caffemodel
    "deeplabv2_vgg16_voc12": True,  # loads the zip's train2_iter_20000.caffemodel
    "deeplabv2_resnet101_voc12": False,  # loads the zip's train_iter_20000.caffemodel
}


def test_val_scores_of_models_fine_tuned_on_val_are_labelled_not_held_out():
    for name, trained_on_val in TRAINED_ON_VAL.items():
        entry = ENTRIES[name]
        assert ("val included" in entry.dataset) == trained_on_val, entry.dataset
        for published in entry.published:
            assert published.split_in_training == trained_on_val
            assert ("not held out" in published.protocol) == trained_on_val
    assert ENTRIES["deeplab_largefov_voc12"].urls[0].endswith("/train2_iter_8000.caffemodel")
    with pytest.raises(ValueError, match="not held out"):
        Published("mIoU", 1.0, "VOC 2012 val", split_in_training=True)


def test_deeplab_v2_resnet_loads_the_train_aug_model_of_the_zip(tmp_path, caffe_proto):
    # The ResNet-101 zip holds init.caffemodel, train_iter_20000.caffemodel (train_aug) and
    # train2_iter_20000.caffemodel (fine-tuned on trainval_aug). Only the train_aug file here
    # is a readable caffemodel (of another net): the error must name it.
    model_file = tmp_path / "model.caffemodel"
    caffe_proto.write_caffemodel(model_file, [("conv1", "Convolution", [np.ones((2, 3, 1, 1))])])
    release = tmp_path / "prototxt_and_model.zip"
    with zipfile.ZipFile(release, "w") as archive:
        archive.write(model_file, "train_iter_20000.caffemodel")
        archive.writestr("train2_iter_20000.caffemodel", b"not this one")
        archive.writestr("init.caffemodel", b"nor this one")
    with pytest.raises(ValueError, match="train_iter_20000.caffemodel does not match"):
        zoo.load_release(_release(RESNET, num_classes=3, stage_sizes=(1, 1, 1, 1)), release)


def test_deeplab_v2_zip_release_and_defaults(tmp_path, caffe_proto):
    blobs = _small_deeplab_v2_vgg(caffe_proto)
    model_file = tmp_path / "train2_iter_20000.caffemodel"
    caffe_proto.write_caffemodel(model_file, blobs)
    release = tmp_path / "prototxt_and_model.zip"
    with zipfile.ZipFile(release, "w") as archive:
        archive.write(model_file, "prototxt_and_model/train2_iter_20000.caffemodel")
        archive.writestr("prototxt_and_model/init.caffemodel", b"not this one")
        archive.writestr("prototxt_and_model/test.prototxt", 'name: "deeplab"\n')
    model_file.unlink()

    seg = zoo.load_release(_release(VGG, num_classes=3, fc_features=4), release)
    extracted = tmp_path / "prototxt_and_model" / "train2_iter_20000.caffemodel"
    assert extracted.is_file() and not list(tmp_path.glob("**/*.part"))
    kernel = seg.variables["params"]["branch2"]["fc7"]["kernel"]
    weights = dict((n, a) for n, _, a in blobs)["fc7_2"][0]
    np.testing.assert_array_equal(kernel, weights.transpose(2, 3, 1, 0))
    # The official evaluation canvas: 513 x 513 padded with the mean pixel (RGB order).
    assert seg.crop_size == (513, 513)
    np.testing.assert_allclose(seg.pad_pixel, (122.675, 116.669, 104.008))
    normalized = np.asarray(seg.normalize(jnp.array([[[[10.0, 20.0, 30.0]]]])))
    np.testing.assert_allclose(normalized.ravel(), [30 - 104.008, 20 - 116.669, 10 - 122.675])
    small = _release(VGG, num_classes=3, fc_features=4)
    assert zoo.load_release(small, release, crop_size=65).crop_size == (65, 65)

    empty = tmp_path / "other.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("init.caffemodel", b"")
    with pytest.raises(FileNotFoundError, match="other.zip has no train2_iter_20000"):
        zoo.load_release(small, empty)


def test_wrong_release_is_named(tmp_path, caffe_proto):
    blobs = _small_deeplab_v2_vgg(caffe_proto)
    path = tmp_path / "vgg_aspp.caffemodel"
    caffe_proto.write_caffemodel(path, blobs)
    with pytest.raises(ValueError, match="vgg_aspp.caffemodel does not match.*fc8_voc12/0"):
        zoo.load_release(_release(V1, num_classes=3, fc_features=4), path)
    with pytest.raises(ValueError, match="output stride 8"):
        zoo.load_release(zoo.RELEASES[VGG], path, output_stride=16)
    # Wrong width: caught by the shape check against the model itself.
    with pytest.raises(ValueError, match="shapes do not match"):
        zoo.load_release(_release(VGG, num_classes=3, fc_features=8), path)


# Scale tags of DeepLab v2's multi-scale prototxt (deeplab_aspp_resnet101 train/test.prototxt:
# `data_res075`, `conv1_res075`, ..., `fc1_voc12_res075_c0`; `_res05` for the 0.5 branch).
SCALE_TAGS = ("_res075", "_res05")


def test_scale_copies_must_be_equal():
    a = np.ones((2, 3), np.float32)
    arrays = {"conv1/0": a, "conv1_res075/0": a.copy(), "conv1_res05/0": a.copy()}
    kept = convert.drop_scale_copies(arrays, SCALE_TAGS, "f")
    assert list(kept) == ["conv1/0"]
    arrays["conv1_res05/0"] = a * 2
    with pytest.raises(ValueError, match="conv1_res05/0 .*should be a copy of conv1/0"):
        convert.drop_scale_copies(arrays, SCALE_TAGS, "f")


def _released_aspp_layers(rng, classes=3, channels=5):
    """The ASPP classifier of a DeepLab v2 ResNet-101 MSC caffemodel under the released names:
    `fc1_voc12_c{i}` and the per-scale copies `fc1_voc12_res075_c{i}`, `fc1_voc12_res05_c{i}`
    (scale tag before the branch index), plus a backbone layer tagged at the end."""
    conv1 = [rng.normal(size=(4, 3, 7, 7)).astype(np.float32)]
    layers = [("conv1", "Convolution", conv1)]
    aspp = {
        i: [rng.normal(size=(classes, channels, 3, 3)).astype(np.float32),
            rng.normal(size=classes).astype(np.float32)]
        for i in range(4)
    }  # fmt: skip
    layers += [(f"fc1_voc12_c{i}", "Convolution", aspp[i]) for i in range(4)]
    for tag in SCALE_TAGS:
        layers.append((f"conv1{tag}", "Convolution", [b.copy() for b in conv1]))
        layers += [(f"fc1_voc12{tag}_c{i}", "Convolution", [b.copy() for b in aspp[i]])
                   for i in range(4)]  # fmt: skip
    return layers


def test_released_aspp_scale_copies_are_checked_and_dropped(tmp_path, caffe_proto):
    layers = _released_aspp_layers(np.random.default_rng(0))
    path = tmp_path / "train_iter_20000.caffemodel"
    caffe_proto.write_caffemodel(path, layers)
    arrays = flat_blobs(read_caffemodel(path))
    kept = convert.drop_scale_copies(arrays, SCALE_TAGS, str(path))
    want = ["conv1/0"] + [f"fc1_voc12_c{i}/{j}" for i in range(4) for j in (0, 1)]
    assert list(kept) == want
    for key in want:
        np.testing.assert_array_equal(kept[key], arrays[key])


def test_differing_aspp_copy_names_both_layers(tmp_path, caffe_proto):
    layers = _released_aspp_layers(np.random.default_rng(1))
    index = [name for name, _, _ in layers].index("fc1_voc12_res05_c2")
    name, kind, blobs = layers[index]
    layers[index] = (name, kind, [blobs[0], blobs[1] + 0.5])
    path = tmp_path / "train_iter_20000.caffemodel"
    caffe_proto.write_caffemodel(path, layers)
    arrays = flat_blobs(read_caffemodel(path))
    message = r"fc1_voc12_res05_c2/1 .*should be a copy of fc1_voc12_c2/1.*difference 0.5"
    with pytest.raises(ValueError, match=message):
        convert.drop_scale_copies(arrays, SCALE_TAGS, str(path))
    # A copy without its full-scale layer names what is missing.
    del arrays["fc1_voc12_c2/0"]
    arrays["fc1_voc12_res05_c2/1"] = arrays["fc1_voc12_c2/1"]
    message = (
        r"'fc1_voc12_res075_c2' is a scale-branch copy of 'fc1_voc12_c2'.*no blob fc1_voc12_c2/0"
    )
    with pytest.raises(ValueError, match=message):
        convert.drop_scale_copies(arrays, SCALE_TAGS, str(path))


@pytest.mark.parametrize(
    "layer, base",
    [("conv1_res075", "conv1"), ("bn_conv1_res05", "bn_conv1"),
     ("res4b22_branch2c_res075", "res4b22_branch2c"), ("fc1_voc12_res075_c0", "fc1_voc12_c0"),
     ("fc1_res05_c3", "fc1_c3"), ("res5c_branch2a", None), ("fc1_voc12_c0", None),
     ("data_res0755", None)],
)  # fmt: skip
def test_scale_tag_anywhere_in_the_name(layer, base):
    assert convert.scale_copy_base(layer, SCALE_TAGS) == base


@pytest.mark.parametrize(
    "size, window, stride, pad, out",
    # Caffe: ceil((size + 2 pad - window) / stride) + 1, minus one if the last window starts
    # in the padding. 513 -> 257 -> 129 -> 65 is DeepLab's evaluation canvas.
    [(64, 3, 2, 1, 33), (513, 3, 2, 1, 257), (257, 3, 2, 1, 129), (45, 2, 2, 0, 23),
     (64, 3, 1, 1, 64), (4, 3, 2, 1, 3), (3, 2, 2, 1, 2)],
)  # fmt: skip
def test_ceil_mode_pads(size, window, stride, pad, out):
    before, after = ceil_mode_pads(size, window, stride, pad)
    assert before == pad
    assert (size + before + after - window) // stride + 1 == out


def test_avg_pool_counts_padding():
    x = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros_like(x)
    for i in range(3):
        for j in range(4):
            want[:, i, j] = padded[:, i : i + 3, j : j + 3].sum(axis=(1, 2)) / 9
    np.testing.assert_allclose(avg_pool2d_count_pad(jnp.asarray(x), 3, 1, 1), want, rtol=1e-6)


# Dense-CRF settings the authors published with each DeepLab release, in their own names
# (densecrf's command line / pydensecrf): DeepLab v1 model page for DeepLab-LargeFOV
# ("bi_w = 4, bi_xy_std = 121, bi_rgb_std = 5, pos_w = 3, pos_xy_std = 3"), and the DeepLab v2
# project pages DeepLabv2_vgg.html ("bi_w = 4, bi_xy_std = 65, bi_rgb_std = 3, pos_w = 2,
# pos_xy_std = 2") and DeepLabv2_resnet.html ("bi_w = 4, bi_xy_std = 67, bi_rgb_std = 3,
# pos_w = 3, pos_xy_std = 1"); 10 mean-field iterations (MAX_ITER=10 in run_densecrf.sh).
PUBLISHED_CRF = {
    "deeplab_largefov_voc12": dict(bi_w=4, bi_xy_std=121, bi_rgb_std=5, pos_w=3, pos_xy_std=3),
    "deeplabv2_vgg16_voc12": dict(bi_w=4, bi_xy_std=65, bi_rgb_std=3, pos_w=2, pos_xy_std=2),
    "deeplabv2_resnet101_voc12": dict(bi_w=4, bi_xy_std=67, bi_rgb_std=3, pos_w=3, pos_xy_std=1),
}
# The same kernels in Kraehenbuehl & Koltun's notation, which jaxseg.crf.dense_crf uses:
# appearance w1 (bi_w), theta_alpha (bi_xy_std), theta_beta (bi_rgb_std); smoothness w2
# (pos_w), theta_gamma (pos_xy_std).
TO_JAXSEG = {
    "bi_w": "w_bilateral",
    "bi_xy_std": "theta_alpha",
    "bi_rgb_std": "theta_beta",
    "pos_w": "w_gaussian",
    "pos_xy_std": "theta_gamma",
}


def test_release_crf_settings_are_the_published_ones():
    import inspect

    from jaxseg.crf import dense_crf

    RELEASE_CRF = {name: item.crf for name, item in ENTRIES.items() if item.crf is not None}
    assert set(RELEASE_CRF) == set(PUBLISHED_CRF)
    defaults = inspect.signature(dense_crf).parameters
    for name, published in PUBLISHED_CRF.items():
        configured = RELEASE_CRF[name]
        assert {TO_JAXSEG[k]: float(v) for k, v in published.items()} == {
            k: float(v) for k, v in configured.items() if k != "num_iterations"
        }, name
        iterations = configured.get("num_iterations", defaults["num_iterations"].default)
        assert iterations == 10, name
        # Every published number of a DeepLab release measured with the CRF has settings.
        assert any("CRF" in p.protocol for p in ENTRIES[name].published)
