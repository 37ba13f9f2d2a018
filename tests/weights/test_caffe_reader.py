"""`jaxseg.weights.caffe` against files written by protobuf's own runtime and a hand encoder."""

from __future__ import annotations

import numpy as np
import pytest

from jaxseg.weights.caffe import CaffeFormatError, flat_blobs, read_caffemodel, read_layers


@pytest.fixture(scope="module")
def caffe_pb(caffe_proto):
    return caffe_proto.messages()


@pytest.fixture(scope="module")
def write_caffemodel(caffe_proto):
    return caffe_proto.write_caffemodel


def _fill(blob, array, legacy):
    array = np.asarray(array, np.float32)
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(array.shape)
    blob.data.extend(array.ravel().tolist())


def test_current_format_with_blob_shapes(tmp_path, caffe_pb):
    rng = np.random.default_rng(0)
    # 1080 weights: large blobs are read from the file straight into the array.
    w, b = rng.normal(size=(40, 3, 3, 3)), rng.normal(size=(40,))
    up = rng.normal(size=(4, 4, 2, 2))
    net = caffe_pb["NetParameter"](name="fcn")
    net.input.append("data")
    net.layer.add(name="data", type="Input", top=["data"])
    conv = net.layer.add(name="conv1_1", type="Convolution", bottom=["data"], top=["c"])
    conv.convolution_param.num_output = 40
    conv.convolution_param.pad.append(100)
    _fill(conv.blobs.add(), w, legacy=False)
    _fill(conv.blobs.add(), b, legacy=False)
    conv.blobs[0].diff.extend([1.0] * w.size)  # gradients stored by some solvers: ignored
    deconv = net.layer.add(name="upscore", type="Deconvolution")
    _fill(deconv.blobs.add(), up, legacy=False)
    net.layer.add(name="relu", type="ReLU")
    path = tmp_path / "net.caffemodel"
    path.write_bytes(net.SerializeToString())

    layers = read_layers(path)
    assert [(x.name, x.type, len(x.blobs)) for x in layers] == [
        ("data", "Input", 0),
        ("conv1_1", "Convolution", 2),
        ("upscore", "Deconvolution", 1),
        ("relu", "ReLU", 0),
    ]
    blobs = read_caffemodel(path)
    assert list(blobs) == ["conv1_1", "upscore"]
    np.testing.assert_array_equal(blobs["conv1_1"][0], w.astype(np.float32))
    np.testing.assert_array_equal(blobs["conv1_1"][1], b.astype(np.float32))
    np.testing.assert_array_equal(blobs["upscore"][0], up.astype(np.float32))
    assert blobs["conv1_1"][0].dtype == np.float32
    assert set(flat_blobs(blobs)) == {"conv1_1/0", "conv1_1/1", "upscore/0"}


def test_v1_format_with_legacy_shapes(tmp_path, caffe_pb):
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(4, 2, 3, 3)), rng.normal(size=(4,))
    net = caffe_pb["NetParameter"](name="deeplab")
    net.layers.add(name="data", type=5)
    conv = net.layers.add(name="conv1_1", type=4)
    _fill(conv.blobs.add(), w, legacy=True)
    _fill(conv.blobs.add(), b, legacy=True)  # stored as (1, 1, 1, 4), as old files do
    conv.convolution_param.num_output = 4
    net.layers.add(name="fork_layer", type=40)  # a number the BVLC enum does not have
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(net.SerializeToString())

    layers = read_layers(path)
    assert [(x.name, x.type) for x in layers] == [
        ("data", "Data"),
        ("conv1_1", "Convolution"),
        ("fork_layer", "V1:40"),
    ]
    assert layers[1].legacy_shape
    blobs = read_caffemodel(path)
    np.testing.assert_array_equal(blobs["conv1_1"][0], w.astype(np.float32))
    assert blobs["conv1_1"][1].shape == (1, 1, 1, 4)
    np.testing.assert_array_equal(blobs["conv1_1"][1].ravel(), b.astype(np.float32))


def test_unpacked_and_double_data(tmp_path, caffe_pb):
    # Writers without `packed` store one tagged float per value; old blobs may hold doubles.
    net = caffe_pb["NetParameter"]()
    layer = net.layer.add(name="fc", type="InnerProduct")
    blob = layer.blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.double_data.extend([0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    data = net.SerializeToString()
    path = tmp_path / "double.caffemodel"
    path.write_bytes(data)
    array = read_caffemodel(path)["fc"][0]
    assert array.dtype == np.float64
    np.testing.assert_array_equal(array, [[0.5, 1.5, 2.5], [3.5, 4.5, 5.5]])

    # Unpacked floats: field 5, wire type 5, one per value (hand-written bytes).
    floats = np.array([1.0, -2.0, 3.25], "<f4")
    blob_bytes = bytes([0x3A, 2, 0x08, 3]) + b"".join(b"\x2d" + f.tobytes() for f in floats)
    body = bytes([0x0A, 2]) + b"fc" + bytes([0x3A, len(blob_bytes)]) + blob_bytes
    path.write_bytes(bytes([0xA2, 0x06, len(body)]) + body)  # field 100, wire type 2
    np.testing.assert_array_equal(read_caffemodel(path)["fc"][0], floats)


def test_hand_encoder_agrees_with_protobuf(tmp_path, caffe_pb, write_caffemodel):
    # The OpenCV tests write models with the hand encoder; protobuf itself must parse them.
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 2, 1, 1)).astype(np.float32)
    path = tmp_path / "hand.caffemodel"
    write_caffemodel(path, [("score", "Convolution", [w])])
    net = caffe_pb["NetParameter"].FromString(path.read_bytes())
    assert net.layer[0].name == "score" and list(net.layer[0].blobs[0].shape.dim) == [3, 2, 1, 1]
    np.testing.assert_array_equal(np.array(net.layer[0].blobs[0].data), w.ravel())
    np.testing.assert_array_equal(read_caffemodel(path)["score"][0], w)
    write_caffemodel(path, [("score", 4, [w])], v1=True)
    net = caffe_pb["NetParameter"].FromString(path.read_bytes())
    assert (net.layers[0].type, net.layers[0].blobs[0].num) == (4, 3)


def test_truncated_foreign_and_missing_files(tmp_path, write_caffemodel):
    rng = np.random.default_rng(3)
    path = tmp_path / "model.caffemodel"
    write_caffemodel(path, [("conv", "Convolution", [rng.normal(size=(4, 3, 3, 3))])])
    data = path.read_bytes()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[: len(data) - 7])
    with pytest.raises(CaffeFormatError, match="cut.caffemodel.*truncated"):
        read_caffemodel(cut)

    prototxt = tmp_path / "deploy.prototxt"
    prototxt.write_text('name: "FCN"\nlayer { name: "data" type: "Input" }\n')
    with pytest.raises(CaffeFormatError, match="deploy.prototxt"):
        read_caffemodel(prototxt)
    foreign = tmp_path / "weights.h5"
    foreign.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(CaffeFormatError, match="weights.h5"):
        read_caffemodel(foreign)
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(CaffeFormatError, match="empty"):
        read_caffemodel(empty)
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_caffemodel(tmp_path / "nothere.caffemodel")


def test_duplicate_names(tmp_path, write_caffemodel):
    a, b = np.ones((2, 2), np.float32), np.zeros((2, 2), np.float32)
    path = tmp_path / "dup.caffemodel"
    write_caffemodel(path, [("fc", "InnerProduct", [a]), ("fc", "InnerProduct", [a])])
    assert list(read_caffemodel(path)) == ["fc"]  # shared weights saved twice: kept once
    write_caffemodel(path, [("fc", "InnerProduct", [a]), ("fc", "InnerProduct", [b])])
    with pytest.raises(CaffeFormatError, match="two layers are named 'fc'"):
        read_caffemodel(path)
