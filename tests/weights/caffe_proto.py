"""Test-side Caffe encoders, independent of `jaxseg.weights.caffe`.

- `messages()`: a minimal `caffe.proto` (NetParameter, LayerParameter, V1LayerParameter,
  BlobProto, BlobShape, with the BVLC field numbers) built at run time with protobuf's own
  descriptor API (protoc is not needed), for files written by protobuf's Python runtime.
- `write_caffemodel`: a tiny hand encoder of the same wire format with numpy, fast enough for
  the tens of millions of weights of a full VGG16.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _field(msg, name, number, kind, label=_F.LABEL_OPTIONAL, type_name=None, packed=False):
    f = msg.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        f.type_name = type_name
    if packed:
        f.options.packed = True


def messages() -> dict[str, type]:
    """Message classes of a minimal caffe.proto (package `caffe`, proto2)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="mini_caffe.proto", package="caffe")
    fdp.syntax = "proto2"
    rep = _F.LABEL_REPEATED
    shape = fdp.message_type.add(name="BlobShape")
    _field(shape, "dim", 1, _F.TYPE_INT64, rep, packed=True)
    blob = fdp.message_type.add(name="BlobProto")
    _field(blob, "shape", 7, _F.TYPE_MESSAGE, type_name=".caffe.BlobShape")
    _field(blob, "data", 5, _F.TYPE_FLOAT, rep, packed=True)
    _field(blob, "diff", 6, _F.TYPE_FLOAT, rep, packed=True)
    _field(blob, "double_data", 8, _F.TYPE_DOUBLE, rep, packed=True)
    for i, name in enumerate(("num", "channels", "height", "width"), start=1):
        _field(blob, name, i, _F.TYPE_INT32)
    conv = fdp.message_type.add(name="ConvolutionParameter")
    _field(conv, "num_output", 1, _F.TYPE_UINT32)
    _field(conv, "pad", 3, _F.TYPE_UINT32, rep)
    layer = fdp.message_type.add(name="LayerParameter")
    _field(layer, "name", 1, _F.TYPE_STRING)
    _field(layer, "type", 2, _F.TYPE_STRING)
    _field(layer, "bottom", 3, _F.TYPE_STRING, rep)
    _field(layer, "top", 4, _F.TYPE_STRING, rep)
    _field(layer, "blobs", 7, _F.TYPE_MESSAGE, rep, ".caffe.BlobProto")
    _field(
        layer, "convolution_param", 106, _F.TYPE_MESSAGE, type_name=".caffe.ConvolutionParameter"
    )
    v1 = fdp.message_type.add(name="V1LayerParameter")
    _field(v1, "bottom", 2, _F.TYPE_STRING, rep)
    _field(v1, "top", 3, _F.TYPE_STRING, rep)
    _field(v1, "name", 4, _F.TYPE_STRING)
    _field(v1, "type", 5, _F.TYPE_INT32)  # an enum in caffe.proto; same wire encoding
    _field(v1, "blobs", 6, _F.TYPE_MESSAGE, rep, ".caffe.BlobProto")
    _field(v1, "convolution_param", 10, _F.TYPE_MESSAGE, type_name=".caffe.ConvolutionParameter")
    net = fdp.message_type.add(name="NetParameter")
    _field(net, "name", 1, _F.TYPE_STRING)
    _field(net, "layers", 2, _F.TYPE_MESSAGE, rep, ".caffe.V1LayerParameter")
    _field(net, "input", 3, _F.TYPE_STRING, rep)
    _field(net, "input_dim", 4, _F.TYPE_INT32, rep)
    _field(net, "layer", 100, _F.TYPE_MESSAGE, rep, ".caffe.LayerParameter")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    names = ("NetParameter", "LayerParameter", "V1LayerParameter", "BlobProto", "BlobShape")
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{n}")) for n in names
    }


# ---- hand encoder ---------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _blob(array: np.ndarray, legacy: bool) -> bytes:
    array = np.asarray(array, np.float32)
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        head = b"".join(_varint(i << 3) + _varint(d) for i, d in enumerate(dims, start=1))
    else:
        head = _bytes_field(7, _bytes_field(1, b"".join(_varint(d) for d in array.shape)))
    return head + _bytes_field(5, array.astype("<f4").tobytes())


def write_caffemodel(path, layers, v1: bool = False) -> None:
    """Writes `[(name, type, [arrays])]` as a NetParameter (V1 `layers` or `layer` field).

    V1 layers get legacy 4-D blob shapes, current layers `BlobShape`; `type` is a string for
    current layers and an int (the enum value) for V1 layers.
    """
    with open(path, "wb") as f:
        f.write(_bytes_field(1, b"test_net"))
        for name, kind, arrays in layers:
            if v1:
                body = _bytes_field(4, name.encode()) + _varint(5 << 3) + _varint(kind)
                body += b"".join(_bytes_field(6, _blob(a, legacy=True)) for a in arrays)
                f.write(_bytes_field(2, body))
            else:
                body = _bytes_field(1, name.encode()) + _bytes_field(2, kind.encode())
                body += b"".join(_bytes_field(7, _blob(a, legacy=False)) for a in arrays)
                f.write(_bytes_field(100, body))


# ---- deploy prototxt text -------------------------------------------------------------------


class Prototxt:
    """Builds a deploy prototxt (text format) and the matching random Caffe-layout weights.

    Each method appends one layer and returns its top name; `blobs` collects
    `(name, type, [arrays])` for `write_caffemodel`.
    """

    def __init__(self, shape, seed=0):
        self.lines = [
            'name: "test"',
            'input: "data"',
            "input_shape { " + " ".join(f"dim: {d}" for d in shape) + " }",
        ]
        self.blobs = []
        self.channels = {"data": shape[1]}
        self.rng = np.random.default_rng(seed)

    def _layer(self, name, kind, bottoms, top, params=""):
        bottom = " ".join(f'bottom: "{b}"' for b in bottoms)
        self.lines.append(
            f'layer {{ name: "{name}" type: "{kind}" {bottom} top: "{top}" {params} }}'
        )
        return top

    def weights(self, *shape, fan_in=None):
        fan_in = fan_in or int(np.prod(shape[1:]))
        return (self.rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def _shared(self, name, share, make):
        """Blobs of layer `share` (weights shared across scale branches) or new ones."""
        arrays = dict((n, a) for n, _, a in self.blobs)[share] if share else make()
        return arrays

    def conv(
        self, name, bottom, out, k, pad=0, stride=1, dilation=1, bias=True, relu=True, share=None
    ):
        cin = self.channels[bottom]
        extra = f" dilation: {dilation}" if dilation > 1 else ""
        extra += "" if bias else " bias_term: false"
        params = (
            f"convolution_param {{ num_output: {out} kernel_size: {k} pad: {pad} "
            f"stride: {stride}{extra} }}"
        )
        self._layer(name, "Convolution", [bottom], name, params)

        def make():
            arrays = [self.weights(out, cin, k, k)]
            if bias:
                arrays.append((self.rng.normal(size=out) * 0.1).astype(np.float32))
            return arrays

        self.blobs.append((name, "Convolution", self._shared(name, share, make)))
        self.channels[name] = out
        top = name
        if relu:
            self._layer(f"relu_{name}", "ReLU", [name], name)
        return top

    def batchnorm_scale(self, bn, scale, bottom, share=None, relu=False):
        """Caffe's inference BatchNorm (mean, var, moving-average factor) + Scale (bias)."""
        c = self.channels[bottom]
        self._layer(bn, "BatchNorm", [bottom], bn, "batch_norm_param { use_global_stats: true }")
        self._layer(scale, "Scale", [bn], scale, "scale_param { bias_term: true }")
        rng = self.rng

        def make_bn():
            factor = np.float32(rng.uniform(0.5, 2.0))
            mean = rng.normal(size=c).astype(np.float32) * 0.1 * factor
            var = rng.uniform(0.5, 1.5, size=c).astype(np.float32) * factor
            return [mean, var, np.array([factor], np.float32)]

        def make_scale():
            gamma = rng.uniform(0.5, 1.5, size=c).astype(np.float32)
            return [gamma, (rng.normal(size=c) * 0.1).astype(np.float32)]

        self.blobs.append((bn, "BatchNorm", self._shared(bn, share and share[0], make_bn)))
        self.blobs.append((scale, "Scale", self._shared(scale, share and share[1], make_scale)))
        self.channels[bn] = self.channels[scale] = c
        if relu:
            self._layer(f"relu_{scale}", "ReLU", [scale], scale)
        return scale

    def interp(self, name, bottom, params):
        self._layer(name, "Interp", [bottom], name, f"interp_param {{ {params} }}")
        self.channels[name] = self.channels[bottom]
        return name

    def deconv(self, name, bottom, k, stride):
        c = self.channels[bottom]
        params = (
            f"convolution_param {{ num_output: {c} kernel_size: {k} stride: {stride} "
            "bias_term: false }"
        )
        self._layer(name, "Deconvolution", [bottom], name, params)
        self.blobs.append((name, "Deconvolution", [self.weights(c, c, k, k, fan_in=c * 2)]))
        self.channels[name] = c
        return name

    def pool(self, name, bottom, k, stride, pad=0, kind="MAX", tops=None):
        params = f"pooling_param {{ pool: {kind} kernel_size: {k} stride: {stride} pad: {pad} }}"
        if tops:
            bottom_s = f'bottom: "{bottom}"'
            top_s = " ".join(f'top: "{t}"' for t in tops)
            self.lines.append(
                f'layer {{ name: "{name}" type: "Pooling" {bottom_s} {top_s} {params} }}'
            )
            self.channels.update({t: self.channels[bottom] for t in tops})
            return tops
        self._layer(name, "Pooling", [bottom], name, params)
        self.channels[name] = self.channels[bottom]
        return name

    def crop(self, name, bottom, like, offset):
        self._layer(
            name, "Crop", [bottom, like], name, f"crop_param {{ axis: 2 offset: {offset} }}"
        )
        self.channels[name] = self.channels[bottom]
        return name

    def eltwise(self, name, bottoms, op="SUM"):
        self._layer(name, "Eltwise", bottoms, name, f"eltwise_param {{ operation: {op} }}")
        self.channels[name] = self.channels[bottoms[0]]
        return name

    def text(self):
        return "\n".join(self.lines) + "\n"

    def write(self, directory):
        """Writes deploy.prototxt and net.caffemodel; returns their paths."""
        prototxt, model = directory / "deploy.prototxt", directory / "net.caffemodel"
        prototxt.write_text(self.text())
        write_caffemodel(model, self.blobs)
        return prototxt, model


VGG16_WIDTHS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def opencv_forward(prototxt, caffemodel, bgr_minus_mean, output=None):
    """Runs the net in OpenCV's Caffe runtime on `[H, W, 3]` network input; `[H, W, C]` out."""
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(np.ascontiguousarray(bgr_minus_mean.transpose(2, 0, 1)[None], np.float32))
    out = net.forward(output) if output else net.forward()
    return out[0].transpose(1, 2, 0)
