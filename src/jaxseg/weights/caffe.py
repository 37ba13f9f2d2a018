"""Reads `.caffemodel` files without Caffe: layer names, types and weight blobs as numpy.

A `.caffemodel` is one protobuf `NetParameter` message. Only the fields needed to recover the
weights are decoded, straight from the wire format, so the reader accepts every schema the
released models were written with (BVLC, DeepLab's forks, caffe-segnet), including fields a
given `caffe.proto` would misread or reject:

    NetParameter      name = 1 (string), layers = 2 (V1LayerParameter, old files),
                      layer = 100 (LayerParameter, current files)
    LayerParameter    name = 1 (string), type = 2 (string), blobs = 7 (BlobProto)
    V1LayerParameter  name = 4 (string), type = 5 (enum), blobs = 6 (BlobProto)
    BlobProto         num = 1, channels = 2, height = 3, width = 4 (legacy 4-D shape),
                      data = 5 (float32), shape = 7 (BlobShape), double_data = 8
    BlobShape         dim = 1 (int64)

Every other field (layer parameters, `diff` blobs, fork-specific fields) is skipped by its
wire type. The message structure is walked through a memory map of the file; each large blob
is read from the file straight into its numpy array (one copy, and the map's pages holding the
data are never touched), so a 538 MB FCN-8s file needs about 540 MB of memory.

The architecture is never taken from the file (forks store their own layer parameters under
numbers the BVLC schema assigns to other fields); `jaxseg.weights.caffe_models` maps the blobs
onto jaxseg's models by layer name.
"""

from __future__ import annotations

import dataclasses
import mmap
from pathlib import Path

import numpy as np

from jaxseg.weights.protowire import BYTES as _BYTES
from jaxseg.weights.protowire import FIXED32 as _FIXED32
from jaxseg.weights.protowire import FIXED64 as _FIXED64
from jaxseg.weights.protowire import VARINT as _VARINT
from jaxseg.weights.protowire import WireReader

# V1LayerParameter.LayerType of the BVLC schema, for messages only (forks renumbered some).
V1_LAYER_TYPES = {
    0: "None", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data",
    6: "Dropout", 7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output",
    11: "Im2col", 12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN",
    16: "MultinomialLogisticLoss", 17: "Pooling", 18: "ReLU", 19: "Sigmoid", 20: "Softmax",
    21: "SoftmaxWithLoss", 22: "Split", 23: "TanH", 24: "WindowData", 25: "Eltwise",
    26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss", 29: "MemoryData",
    30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice", 34: "MVN", 35: "AbsVal",
    36: "Silence", 37: "ContrastiveLoss", 38: "Exp", 39: "Deconvolution",
}  # fmt: skip


class CaffeFormatError(ValueError):
    """The file is not a readable `.caffemodel` (foreign, truncated or corrupt)."""


@dataclasses.dataclass(frozen=True)
class CaffeLayer:
    """One layer of a `.caffemodel`.

    Attributes:
      name: the layer name.
      type: the type string (`LayerParameter.type`), or for V1 files the BVLC name of the enum
        value ("Convolution"), or "V1:<number>" for numbers the BVLC schema does not know.
      blobs: the weight arrays in file order, float32 (float64 for `double_data` blobs), each
        shaped by `BlobShape` when present, else by the legacy `(num, channels, height, width)`.
      legacy_shape: True when the shape came from the legacy 4-D fields.
    """

    name: str
    type: str
    blobs: tuple[np.ndarray, ...]
    legacy_shape: bool = False


class _Reader(WireReader):
    """Wire-format decoding of a `.caffemodel`; errors name the file and the byte offset."""

    def __init__(self, buffer, path: Path, file=None):
        super().__init__(buffer)
        self.path = path
        self.file = file  # blob data is read from here, so the map's data pages stay untouched

    def fail(self, what: str, offset: int) -> CaffeFormatError:
        return CaffeFormatError(
            f"{self.path} is not a readable .caffemodel: {what} at byte {offset} (file size "
            f"{len(self.buffer)}); the file is truncated, corrupt or not a Caffe model — "
            "download it again or check that it is the .caffemodel, not the .prototxt"
        )

    def numbers(self, spans: list[tuple[int, int]], dtype: str) -> np.ndarray:
        """Concatenates packed (or one-element unpacked) spans into one array, copied once."""
        itemsize = np.dtype(dtype).itemsize
        total = sum(e - b for b, e in spans)
        if any((e - b) % itemsize for b, e in spans):
            raise self.fail(f"a {dtype} array whose length is not a multiple of {itemsize}",
                            spans[0][0])  # fmt: skip
        out = np.empty(total // itemsize, dtype)
        at = 0
        for b, e in spans:
            n = (e - b) // itemsize
            if self.file is not None and n > 1024:
                self.file.seek(b)
                if self.file.readinto(memoryview(out[at : at + n].view(np.uint8))) != e - b:
                    raise self.fail("the file ended while reading a blob", b)
            else:
                out[at : at + n] = np.frombuffer(self.buffer, dtype, n, b)
            at += n
        return out.astype(dtype.lstrip("<"), copy=False)

    def blob(self, start: int, end: int) -> tuple[np.ndarray, bool]:
        legacy = {}
        shape = None
        floats: list[tuple[int, int]] = []
        doubles: list[tuple[int, int]] = []
        for number, wire, value in self.fields(start, end):
            if number in (1, 2, 3, 4) and wire == _VARINT:
                legacy[number] = value
            elif number == 5 and wire in (_BYTES, _FIXED32):
                floats.append(value)
            elif number == 8 and wire in (_BYTES, _FIXED64):
                doubles.append(value)
            elif number == 7 and wire == _BYTES:
                shape = []
                for n, w, v in self.fields(*value):
                    if n == 1:
                        shape.extend(self.packed_varints(v) if w == _BYTES else [v])
        data = self.numbers(doubles, "<f8") if doubles else self.numbers(floats, "<f4")
        is_legacy = shape is None
        if is_legacy:
            shape = [legacy.get(k, 1 if data.size else 0) for k in (1, 2, 3, 4)]
        if int(np.prod(shape, dtype=np.int64)) != data.size:
            raise self.fail(f"a blob of shape {tuple(shape)} with {data.size} values", start)
        return data.reshape(shape), is_legacy

    def layer(self, start: int, end: int, v1: bool) -> CaffeLayer:
        name_field, type_field, blob_field = (4, 5, 6) if v1 else (1, 2, 7)
        name, kind, blobs, legacy = "", "", [], False
        for number, wire, value in self.fields(start, end):
            if number == name_field and wire == _BYTES:
                name = self.string(value)
            elif number == type_field and wire == (_VARINT if v1 else _BYTES):
                kind = V1_LAYER_TYPES.get(value, f"V1:{value}") if v1 else self.string(value)
            elif number == blob_field and wire == _BYTES:
                array, is_legacy = self.blob(*value)
                blobs.append(array)
                legacy = legacy or is_legacy
        return CaffeLayer(name, kind, tuple(blobs), legacy)


def read_layers(path: str | Path) -> list[CaffeLayer]:
    """All layers of a `.caffemodel` (V1 `layers` and current `layer` fields), in file order.

    Raises:
      FileNotFoundError: `path` does not exist.
      CaffeFormatError: the file is empty, truncated, or not a `NetParameter`.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Caffe model {path} does not exist")
    if path.stat().st_size == 0:
        raise CaffeFormatError(f"{path} is empty, not a .caffemodel")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        reader = _Reader(buffer, path, f)
        layers = []
        for number, wire, value in reader.fields(0, len(buffer)):
            if number in (2, 100) and wire == _BYTES:
                layers.append(reader.layer(*value, v1=number == 2))
            elif number not in (1, 3, 4, 5, 6, 7, 8) and number < 100:
                # NetParameter has no other fields below 100: a foreign protobuf, or no protobuf.
                raise reader.fail(f"field {number} (wire type {wire}), unknown to NetParameter", 0)
    if not layers:
        raise CaffeFormatError(
            f"{path} has no layers: it is not a .caffemodel (a deploy .prototxt is text, and "
            "holds no weights)"
        )
    return layers


def read_caffemodel(path: str | Path) -> dict[str, list[np.ndarray]]:
    """`{layer name: [blob arrays]}` of the layers that have weights, in file order.

    Blob shapes are Caffe's (`[out, in, kh, kw]` for convolutions, `[in, out, kh, kw]` for
    deconvolutions, `(1, 1, 1, n)` for biases of old files). A name stored twice with different
    weights is an error; with equal weights (a net saved with shared parameters) it is kept once.
    """
    result: dict[str, list[np.ndarray]] = {}
    for layer in read_layers(path):
        if not layer.blobs:
            continue
        if layer.name in result:
            same = len(result[layer.name]) == len(layer.blobs) and all(
                a.shape == b.shape and np.array_equal(a, b)
                for a, b in zip(result[layer.name], layer.blobs, strict=True)
            )
            if not same:
                raise CaffeFormatError(f"{path}: two layers are named {layer.name!r}")
            continue
        result[layer.name] = list(layer.blobs)
    return result


def flat_blobs(blobs: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """`{"layer/0": weights, "layer/1": bias, ...}`: the flat dict `weights.convert` walks."""
    return {
        f"{name}/{i}": array for name, arrays in blobs.items() for i, array in enumerate(arrays)
    }
