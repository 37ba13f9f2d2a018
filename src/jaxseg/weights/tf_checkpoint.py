"""Reads TensorFlow checkpoints (tensor bundles) with numpy alone: TensorFlow is not needed.

A checkpoint `PREFIX` is `PREFIX.index`, a sorted key/value table (LevelDB's table format),
plus `PREFIX.data-SSSSS-of-NNNNN` files holding the raw tensor bytes. The table maps the
empty key to a `BundleHeaderProto` (number of data files, byte order, format version) and each
variable name to a `BundleEntryProto` (dtype, shape, data file, byte offset and size, masked
CRC32C of the bytes, and the slices of a partitioned variable). `docs/tf_checkpoint_format.md`
lists the facts this reader relies on.

Everything is checked: the CRC32C of every table block and of every tensor's bytes, the sizes
against dtype and shape, the files' lengths. A problem raises `CheckpointFormatError` (a
`ValueError`) naming the checkpoint, the file or variable, and what to do; a missing file
raises `CheckpointFileMissingError`, which is also a `FileNotFoundError`.

    with TFCheckpoint("model.ckpt") as checkpoint:
        for name in checkpoint.names():
            shape, dtype = checkpoint.shape_and_dtype(name)
            array = checkpoint.tensor(name)
    arrays = read_tf_checkpoint("model.ckpt")  # {name: array}
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import BinaryIO

import google_crc32c
import ml_dtypes
import numpy as np

from jaxseg.weights.protowire import BYTES, FIXED32, VARINT, WireReader, signed64

_TABLE_MAGIC = 0xDB4775248B80FB57  # last 8 bytes of every table file (little-endian)
_FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the magic number
_TRAILER_SIZE = 5  # after each block: compression type (1 byte) + masked CRC32C (4 bytes)
_MASK_DELTA = 0xA282EAD8
_BUNDLE_VERSION = 1  # the bundle format version this reader implements (TF's kTensorBundleVersion)

# DataType enum (tensorflow/core/framework/types.proto) -> numpy dtype of the stored bytes.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    8: np.dtype("<c8"),  # DT_COMPLEX64
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL: one byte each
    14: np.dtype(ml_dtypes.bfloat16),  # DT_BFLOAT16
    17: np.dtype("<u2"),  # DT_UINT16
    18: np.dtype("<c16"),  # DT_COMPLEX128
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
_STRING = 7
_UNSUPPORTED = {
    0: "DT_INVALID", 11: "DT_QINT8", 12: "DT_QUINT8", 13: "DT_QINT32", 15: "DT_QINT16",
    16: "DT_QUINT16", 20: "DT_RESOURCE", 21: "DT_VARIANT", 24: "DT_FLOAT8_E5M2",
    25: "DT_FLOAT8_E4M3FN", 26: "DT_FLOAT8_E4M3FNUZ", 27: "DT_FLOAT8_E4M3B11FNUZ",
    28: "DT_FLOAT8_E5M2FNUZ", 29: "DT_INT4", 30: "DT_UINT4",
}  # fmt: skip

_REDOWNLOAD = "delete the checkpoint's files and download or copy them again"


class CheckpointFormatError(ValueError):
    """A TF checkpoint that cannot be read: truncated, corrupt, foreign or unsupported."""


class CheckpointFileMissingError(FileNotFoundError, CheckpointFormatError):
    """A file of the checkpoint (`.index` or a `.data-*` shard) does not exist."""


def unmask_crc(masked: int) -> int:
    """The CRC32C that TensorFlow stored masked (rotated right by 15 bits plus a constant)."""
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


def crc32c(data) -> int:
    """CRC32C (Castagnoli) of a bytes-like object, as TensorFlow computes it before masking."""
    # google_crc32c's C extension takes bytes or a numpy array, not a memoryview or bytearray.
    return google_crc32c.value(np.frombuffer(data, np.uint8))


@dataclasses.dataclass(frozen=True)
class Entry:
    """One `BundleEntryProto`.

    Attributes:
      dtype: the DataType enum value.
      shape: the tensor's shape (of the full tensor for a partitioned variable).
      shard: index of the `.data-*` file holding the bytes.
      offset, size: where the bytes lie in that file.
      crc: the masked CRC32C of the bytes.
      slices: for a partitioned variable, one `((start, length), ...)` per stored slice, one
        pair per dimension; length -1 means the whole dimension. Empty otherwise.
    """

    dtype: int
    shape: tuple[int, ...]
    shard: int = 0
    offset: int = 0
    size: int = 0
    crc: int = 0
    slices: tuple[tuple[tuple[int, int], ...], ...] = ()


class _IndexReader(WireReader):
    """Table and protobuf decoding over the bytes of `PREFIX.index`."""

    def __init__(self, buffer: bytes, prefix: str, path: Path):
        super().__init__(buffer)
        self.prefix = prefix
        self.path = path

    def fail(self, what: str, offset: int) -> CheckpointFormatError:
        return CheckpointFormatError(
            f"{self.prefix}: not a readable TF checkpoint: {self.path.name} {what} at byte "
            f"{offset} (file size {len(self.buffer)}); the file is truncated, corrupt or not a "
            f"checkpoint index: {_REDOWNLOAD}"
        )

    def footer(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """The (offset, size) of the meta-index and the index block, from the 48-byte footer."""
        size = len(self.buffer)
        if size < _FOOTER_SIZE:
            raise self.fail(f"is shorter than a table footer ({_FOOTER_SIZE} bytes)", 0)
        footer = size - _FOOTER_SIZE
        if int.from_bytes(self.buffer[size - 8 :], "little") != _TABLE_MAGIC:
            raise self.fail("does not end in the table magic number", size - 8)
        meta_offset, pos = self.varint(footer, size - 8)
        meta_size, pos = self.varint(pos, size - 8)
        index_offset, pos = self.varint(pos, size - 8)
        index_size, pos = self.varint(pos, size - 8)
        return (meta_offset, meta_size), (index_offset, index_size)

    def block(self, offset: int, size: int, what: str) -> tuple[int, int]:
        """The span of a block's contents after checking its trailer (type byte and CRC)."""
        end = offset + size
        if end + _TRAILER_SIZE > len(self.buffer) - _FOOTER_SIZE:
            raise self.fail(f"has a {what} of {size} bytes that runs past the table's end", offset)
        stored = unmask_crc(int.from_bytes(self.buffer[end + 1 : end + 5], "little"))
        if crc32c(memoryview(self.buffer)[offset : end + 1]) != stored:
            raise self.fail(f"has a {what} whose CRC32C does not match", offset)
        kind = self.buffer[end]
        if kind == 1:
            raise CheckpointFormatError(
                f"{self.prefix}: {self.path.name} holds Snappy-compressed table blocks, which "
                "TensorFlow never writes for checkpoints and this reader does not decompress; "
                "re-save the checkpoint with TensorFlow"
            )
        if kind != 0:
            raise self.fail(f"has a {what} of unknown compression type {kind}", end)
        return offset, end

    def block_entries(self, start: int, end: int) -> list[tuple[bytes, tuple[int, int]]]:
        """The `(key, value span)` pairs of a block, in order.

        A block is a run of entries `varint shared, varint unshared, varint value size,
        unshared key bytes, value bytes` (each key shares `shared` leading bytes with the one
        before), then the uint32 offsets of the restart points and their uint32 count.
        """
        if end - start < 4:
            raise self.fail("has a block too short for its restart count", start)
        restarts = int.from_bytes(self.buffer[end - 4 : end], "little")
        entries_end = end - 4 - 4 * restarts
        if restarts == 0 or entries_end < start:
            raise self.fail(f"has a block with an impossible restart count {restarts}", start)
        entries, key, pos = [], b"", start
        while pos < entries_end:
            at = pos
            shared, pos = self.varint(pos, entries_end)
            unshared, pos = self.varint(pos, entries_end)
            value_size, pos = self.varint(pos, entries_end)
            if shared > len(key) or pos + unshared + value_size > entries_end:
                raise self.fail("has a block entry that runs past its block", at)
            key = key[:shared] + bytes(self.buffer[pos : pos + unshared])
            pos += unshared
            entries.append((key, (pos, pos + value_size)))
            pos += value_size
        return entries

    def table(self) -> dict[bytes, tuple[int, int]]:
        """`{key: span of its value}` of every data block, through the index block."""
        _, (index_offset, index_size) = self.footer()
        index = self.block(index_offset, index_size, "index block")
        table: dict[bytes, tuple[int, int]] = {}
        for _, handle in self.block_entries(*index):
            offset, pos = self.varint(*handle)
            size, _ = self.varint(pos, handle[1])
            for key, value in self.block_entries(*self.block(offset, size, "data block")):
                if table and key <= next(reversed(table)):
                    raise self.fail("has keys out of order", value[0])
                table[key] = value
        return table

    def header(self, span: tuple[int, int]) -> tuple[int, int, tuple[int, int, list[int]]]:
        """`(num_shards, endianness, (producer, min_consumer, bad_consumers))` of the header."""
        num_shards, endianness, version = 0, 0, (0, 0, [])
        for number, wire, value in self.fields(*span):
            if number == 1 and wire == VARINT:
                num_shards = signed64(value)
            elif number == 2 and wire == VARINT:
                endianness = value
            elif number == 3 and wire == BYTES:
                producer, min_consumer, bad = 0, 0, []
                for n, w, v in self.fields(*value):
                    if n == 1 and w == VARINT:
                        producer = signed64(v)
                    elif n == 2 and w == VARINT:
                        min_consumer = signed64(v)
                    elif n == 3:
                        bad.extend(self.packed_varints(v) if w == BYTES else [v])
                version = (producer, min_consumer, bad)
        return num_shards, endianness, version

    def entry(self, span: tuple[int, int]) -> Entry:
        dtype, shape, shard, offset, size, crc, slices = 0, (), 0, 0, 0, 0, []
        for number, wire, value in self.fields(*span):
            if number == 1 and wire == VARINT:
                dtype = value
            elif number == 2 and wire == BYTES:
                shape = self.shape(value)
            elif number == 3 and wire == VARINT:
                shard = signed64(value)
            elif number == 4 and wire == VARINT:
                offset = signed64(value)
            elif number == 5 and wire == VARINT:
                size = signed64(value)
            elif number == 6 and wire == FIXED32:
                crc = self.fixed32(value)
            elif number == 7 and wire == BYTES:
                slices.append(self.slice(value))
        if min(shard, offset, size) < 0:
            raise self.fail("has an entry with a negative shard, offset or size", span[0])
        return Entry(dtype, shape, shard, offset, size, crc, tuple(slices))

    def shape(self, span: tuple[int, int]) -> tuple[int, ...]:
        """A `TensorShapeProto`: `dim` = 2 (`size` = 1), `unknown_rank` = 3."""
        dims = []
        for number, wire, value in self.fields(*span):
            if number == 2 and wire == BYTES:
                size = 0
                for n, w, v in self.fields(*value):
                    if n == 1 and w == VARINT:
                        size = signed64(v)
                if size < 0:
                    raise self.fail(f"has a tensor shape with unknown size {size}", value[0])
                dims.append(size)
            elif number == 3 and wire == VARINT and value:
                raise self.fail("has a tensor shape of unknown rank", span[0])
        return tuple(dims)

    def slice(self, span: tuple[int, int]) -> tuple[tuple[int, int], ...]:
        """A `TensorSliceProto`: `extent` = 1 (`start` = 1, `length` = 2, absent: all)."""
        extents = []
        for number, wire, value in self.fields(*span):
            if number == 1 and wire == BYTES:
                start, length = 0, -1
                for n, w, v in self.fields(*value):
                    if n == 1 and w == VARINT:
                        start = signed64(v)
                    elif n == 2 and w == VARINT:
                        length = signed64(v)
                extents.append((start, length))
        return tuple(extents)


def _escape(match: re.Match) -> bytes:
    return b"\x00\xff" if match.group() == b"\x00" else b"\xff\x00"


def _unsigned_increasing(value: int) -> bytes:
    """TF's OrderedCode for a uint64: its byte count, then its big-endian bytes."""
    size = (value.bit_length() + 7) // 8
    return bytes([size]) + value.to_bytes(size, "big")


def _signed_increasing(value: int) -> bytes:
    """TF's OrderedCode for an int64: `n` bytes, two's complement big-endian, with the top `n`
    bits flipped to code the length (n = 1 for [-64, 64), one more per further 7 bits)."""
    magnitude = ~value if value < 0 else value
    size = magnitude.bit_length() // 7 + 1
    bits = (value & ((1 << (8 * size)) - 1)) ^ (((1 << size) - 1) << (7 * size))
    return bits.to_bytes(size, "big")


def slice_key(name: str, extents: tuple[tuple[int, int], ...]) -> bytes:
    """The table key under which one stored slice of partitioned variable `name` lives.

    TF's `EncodeTensorNameSlice`: OrderedCode of 0, the name (0x00 -> 00 ff, 0xff -> ff 00,
    ended by 00 01), the rank, then start and length of each dimension (-1: the whole one).
    """
    key = _unsigned_increasing(0)
    key += re.sub(rb"[\x00\xff]", _escape, name.encode("utf-8")) + b"\x00\x01"
    key += _unsigned_increasing(len(extents))
    for start, length in extents:
        key += _signed_increasing(start) + _signed_increasing(length)
    return key


class TFCheckpoint:
    """Random access to the variables of one TF checkpoint; data files open on first use.

    Args:
      prefix: the checkpoint prefix (`.../model.ckpt`, without `.index`).

    Raises:
      CheckpointFileMissingError: `PREFIX.index` does not exist.
      CheckpointFormatError: the index is truncated, corrupt, foreign, big-endian, or of a
        newer bundle format.
    """

    def __init__(self, prefix: str | Path):
        self.prefix = str(Path(prefix).expanduser())
        path = Path(f"{self.prefix}.index")
        if not path.is_file():
            raise CheckpointFileMissingError(
                f"{self.prefix}: no TF checkpoint here ({path} does not exist); pass the prefix "
                "such as .../model.ckpt of a checkpoint whose .index and .data-* files are present"
            )
        self._index = _IndexReader(path.read_bytes(), self.prefix, path)
        self._table = self._index.table()
        if b"" not in self._table:
            raise self._index.fail("has no header entry (empty key)", 0)
        num_shards, endianness, (producer, min_consumer, bad) = self._index.header(self._table[b""])
        if endianness != 0:
            raise CheckpointFormatError(
                f"{self.prefix}: the checkpoint was written on a big-endian machine; this reader "
                "reads little-endian checkpoints only: re-save it with TensorFlow on a "
                "little-endian machine"
            )
        if min_consumer > _BUNDLE_VERSION or _BUNDLE_VERSION in bad:
            raise CheckpointFormatError(
                f"{self.prefix}: the checkpoint's bundle format (version {producer}, readable from "
                f"version {min_consumer} on, not by {bad}) excludes the version "
                f"{_BUNDLE_VERSION} this reader implements; re-save it with TensorFlow 1.x/2.x's "
                "tf.train.Checkpoint or Saver"
            )
        if num_shards < 1:
            raise self._index.fail(f"has a header that claims {num_shards} data files", 0)
        self.num_shards = num_shards
        self._files: dict[int, BinaryIO] = {}

    def __enter__(self) -> TFCheckpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the data files opened so far."""
        files, self._files = self._files, {}
        for file in files.values():
            file.close()

    def names(self) -> list[str]:
        """The variable names, sorted (the slices of partitioned variables are not listed)."""
        # Slice keys start with byte 0 (OrderedCode of 0); the header key is empty.
        keys = [key for key in self._table if key and key[0] != 0]
        try:
            return [key.decode("utf-8") for key in keys]
        except UnicodeDecodeError as error:
            raise self._index.fail(f"has a variable name that is not UTF-8 ({error})", 0) from None

    def entry(self, name: str) -> Entry:
        """The decoded `BundleEntryProto` of variable `name`."""
        span = self._table.get(name.encode("utf-8"))
        if span is None or not name:
            raise KeyError(f"{name!r} is not a variable of the TF checkpoint {self.prefix}")
        return self._index.entry(span)

    def shape_and_dtype(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """The shape and numpy dtype of `tensor(name)` (`object` for strings), without reading."""
        entry = self.entry(name)
        return entry.shape, self._dtype(entry, f"variable {name!r}")

    def tensor(self, name: str) -> np.ndarray:
        """Variable `name` as a numpy array (strings: an `object` array of `bytes`).

        Raises:
          KeyError: no variable has this name.
          CheckpointFormatError: its bytes fail their CRC32C, its data file is truncated, its
            dtype is not supported, or a partitioned variable's slices do not tile it.
          CheckpointFileMissingError: its data file is missing.
        """
        entry = self.entry(name)
        if entry.slices:
            return self._assemble(name, entry)
        return self._read(entry, f"variable {name!r}")

    # -- reading -----------------------------------------------------------------------------

    def _fail(self, what: str) -> CheckpointFormatError:
        return CheckpointFormatError(f"{self.prefix}: not a readable TF checkpoint: {what}")

    def _dtype(self, entry: Entry, what: str) -> np.dtype:
        if entry.dtype == _STRING:
            return np.dtype(object)
        if entry.dtype in _DTYPES:
            return _DTYPES[entry.dtype]
        kind = _UNSUPPORTED.get(entry.dtype, f"DataType {entry.dtype}")
        raise CheckpointFormatError(
            f"{self.prefix}: {what} has dtype {kind}, which this reader does not "
            "support (it reads float16/bfloat16/float32/float64, (u)int8-64, bool, complex and "
            "string tensors); convert the variable with TensorFlow"
        )

    def _shard(self, shard: int, what: str) -> tuple[BinaryIO, int]:
        if shard >= self.num_shards:
            raise self._fail(f"{what} lies in data file {shard} of {self.num_shards}")
        path = Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")
        if shard not in self._files:
            if not path.is_file():
                raise CheckpointFileMissingError(
                    f"{self.prefix}: the checkpoint's data file {path} does not exist (it has "
                    f"{self.num_shards} data file(s), PREFIX.data-00000-of-"
                    f"{self.num_shards:05d} on); copy every file of the checkpoint, .index and "
                    ".data-*, into one folder"
                )
            self._files[shard] = open(path, "rb")  # noqa: SIM115 -- kept open until close()
        file = self._files[shard]
        return file, os.fstat(file.fileno()).st_size

    def _raw(self, entry: Entry, what: str) -> tuple[np.ndarray, str]:
        """The entry's bytes (uint8, read straight into a fresh array) and the file's name."""
        file, file_size = self._shard(entry.shard, what)
        end = entry.offset + entry.size
        if end > file_size:
            raise self._fail(
                f"{what} needs bytes {entry.offset}..{end} of {Path(file.name).name}, which has "
                f"{file_size}: the data file is truncated; {_REDOWNLOAD}"
            )
        raw = np.empty(entry.size, np.uint8)
        file.seek(entry.offset)
        if file.readinto(memoryview(raw)) != entry.size:
            raise self._fail(f"{what}: {Path(file.name).name} ended early; {_REDOWNLOAD}")
        return raw, file.name

    def _check_crc(self, actual: int, entry: Entry, what: str, file: str) -> None:
        stored = unmask_crc(entry.crc)
        if actual != stored:
            raise self._fail(
                f"the bytes of {what} ({entry.size} bytes at offset {entry.offset} of "
                f"{Path(file).name}) do not match their CRC32C (stored {stored:08x}, computed "
                f"{actual:08x}): the data file is corrupt; {_REDOWNLOAD}"
            )

    def _read(self, entry: Entry, what: str) -> np.ndarray:
        dtype = self._dtype(entry, what)
        count = math.prod(entry.shape)
        if entry.dtype == _STRING:
            return self._strings(entry, count, what).reshape(entry.shape)
        if entry.size != count * dtype.itemsize:
            raise self._fail(
                f"{what} ({dtype}, shape {entry.shape}) is stored in {entry.size} bytes, not "
                f"{count * dtype.itemsize}; {_REDOWNLOAD}"
            )
        raw, file = self._raw(entry, what)
        self._check_crc(crc32c(raw), entry, what, file)
        array = raw.view(dtype).reshape(entry.shape)
        return array.astype(dtype.newbyteorder("="), copy=False)

    def _strings(self, entry: Entry, count: int, what: str) -> np.ndarray:
        """A string tensor: varint lengths, masked CRC32C of the lengths, then the bytes.

        The lengths' checksum and the entry's checksum run over each length as a little-endian
        uint32 (uint64 above 2**32 - 1), not over its varint bytes.
        """
        if count > entry.size:  # every element has at least its one-byte length
            raise self._fail(f"{what}: {count} strings cannot fit in its {entry.size} bytes")
        out = np.empty(count, object)
        if entry.size == 0:  # TF reads nothing then: every element is empty
            out[:] = b""
            self._check_crc(0, entry, what, f"{self.prefix}.data-{entry.shard:05d}")
            return out
        array, file = self._raw(entry, what)
        raw = array.tobytes()
        reader = _DataReader(raw, lambda problem, at: self._fail(f"{what}: {problem} at byte {at}"))
        lengths, pos = [], 0
        for _ in range(count):
            length, pos = reader.varint(pos, len(raw))
            lengths.append(length)
        packed = b"".join(n.to_bytes(4 if n <= 0xFFFFFFFF else 8, "little") for n in lengths)
        crc = crc32c(packed)
        if pos + 4 + sum(lengths) != len(raw):
            raise self._fail(f"{what}: its string lengths do not add up to its {len(raw)} bytes")
        if unmask_crc(int.from_bytes(raw[pos : pos + 4], "little")) != crc:
            raise self._fail(f"{what}: its string lengths do not match their CRC32C")
        self._check_crc(
            google_crc32c.extend(crc, np.frombuffer(raw, np.uint8, offset=pos)), entry, what, file
        )
        pos += 4
        for i, length in enumerate(lengths):
            out[i] = bytes(raw[pos : pos + length])
            pos += length
        return out

    def _assemble(self, name: str, entry: Entry) -> np.ndarray:
        """A partitioned variable from its stored slices, which must tile it exactly."""
        dtype = self._dtype(entry, f"partitioned variable {name!r}")
        full = np.empty(entry.shape, dtype if dtype.kind == "O" else dtype.newbyteorder("="))
        boxes = []
        for extents in entry.slices:
            described = ", ".join(f"{s}:{'' if n < 0 else s + n}" for s, n in extents)
            what = f"slice [{described}] of partitioned variable {name!r}"
            if len(extents) != len(entry.shape):
                raise self._fail(f"{what} has {len(extents)} dimensions, not {len(entry.shape)}")
            box = tuple(
                (s, dim - s if n < 0 else n)
                for (s, n), dim in zip(extents, entry.shape, strict=True)
            )
            if any(
                s < 0 or n < 0 or s + n > dim for (s, n), dim in zip(box, entry.shape, strict=True)
            ):
                raise self._fail(f"{what} lies outside its shape {entry.shape}")
            span = self._table.get(slice_key(name, extents))
            if span is None:
                raise self._fail(f"{what} is listed but not stored; {_REDOWNLOAD}")
            part = self._index.entry(span)
            if part.dtype != entry.dtype or part.shape != tuple(n for _, n in box):
                raise self._fail(f"{what} is stored with another dtype or shape {part.shape}")
            full[tuple(slice(s, s + n) for s, n in box)] = self._read(part, what)
            boxes.append(box)
        overlap = any(
            all(a[0] < b[0] + b[1] and b[0] < a[0] + a[1] for a, b in zip(p, q, strict=True))
            for i, p in enumerate(boxes)
            for q in boxes[:i]
        )
        covered = sum(math.prod(n for _, n in box) for box in boxes)
        if overlap or covered != full.size:
            raise self._fail(
                f"the stored slices of partitioned variable {name!r} "
                + ("overlap" if overlap else f"hold {covered} of its {full.size} values")
                + ", so it cannot be assembled whole; save the full variable with TensorFlow"
            )
        return full


class _DataReader(WireReader):
    """Varints inside a tensor's bytes; `fail(what, offset)` makes the error."""

    def __init__(self, buffer: bytes, fail):
        super().__init__(buffer)
        self._fail = fail

    def fail(self, what: str, offset: int) -> CheckpointFormatError:
        return self._fail(what, offset)


def read_tf_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """All variables of the TF checkpoint `prefix` as `{name: array}`, in name order.

    Partitioned variables come assembled; string tensors as `object` arrays of `bytes`.

    Raises:
      CheckpointFileMissingError (a FileNotFoundError): the `.index` or a data file is missing.
      CheckpointFormatError (a ValueError): truncated, corrupt (CRC32C mismatch), foreign or
        unsupported content, named in the message.
    """
    with TFCheckpoint(prefix) as checkpoint:
        return {name: checkpoint.tensor(name) for name in checkpoint.names()}
