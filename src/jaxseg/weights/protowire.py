"""Protobuf wire-format decoding over a byte buffer, without a schema or the protobuf package.

The weight readers decode only the few fields they need straight from the wire format:
`caffe.py` (`NetParameter` of a `.caffemodel`) and `tf_checkpoint.py` (`BundleHeaderProto`,
`BundleEntryProto` of a TensorFlow checkpoint). A message is a sequence of fields, each a varint
tag `(number << 3) | wire type` followed by its payload:

    wire type 0  varint (int32/int64/uint/bool/enum; negative int32/int64 take 10 bytes)
    wire type 1  8 bytes little-endian (fixed64, sfixed64, double)
    wire type 2  varint length + that many bytes (string, bytes, sub-message, packed repeated)
    wire type 5  4 bytes little-endian (fixed32, sfixed32, float)

Wire types 3 and 4 (groups) are used by neither schema and are refused.
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5


def signed64(value: int) -> int:
    """A decoded varint as the int64 it encodes (negative numbers are 64-bit two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


class WireReader:
    """Walks the fields of protobuf messages in `buffer` (bytes, memoryview or mmap).

    Subclasses override `fail` to raise their own error type naming their file; offsets are
    positions in `buffer`.
    """

    def __init__(self, buffer):
        self.buffer = buffer

    def fail(self, what: str, offset: int) -> Exception:
        return ValueError(f"malformed protobuf message: {what} at byte {offset}")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        """The varint at `pos` (before `end`) and the position after it."""
        result = shift = 0
        start = pos
        while True:
            if pos >= end:
                raise self.fail("a number runs past the end of its message", start)
            byte = self.buffer[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result, pos
            shift += 7
            if shift > 63:
                raise self.fail("an over-long number", start)

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int]]]:
        """Yields `(field number, wire type, value or (begin, end) of the payload)`.

        Varints come as their value; fixed-size and length-delimited fields as the span of
        their payload bytes in `buffer`.
        """
        pos = start
        while pos < end:
            tag_at = pos
            tag, pos = self.varint(pos, end)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise self.fail("field number 0", tag_at)
            if wire == VARINT:
                value, pos = self.varint(pos, end)
                yield number, wire, value
            elif wire == FIXED64 or wire == FIXED32:
                size = 8 if wire == FIXED64 else 4
                if pos + size > end:
                    raise self.fail("a fixed-size field runs past the end of its message", tag_at)
                yield number, wire, (pos, pos + size)
                pos += size
            elif wire == BYTES:
                length, pos = self.varint(pos, end)
                if pos + length > end:
                    raise self.fail(
                        f"field {number} claims {length} bytes but its message ends sooner", tag_at
                    )
                yield number, wire, (pos, pos + length)
                pos += length
            else:  # groups (3, 4) are used by neither schema; 6, 7 do not exist
                raise self.fail(f"wire type {wire} (field {number})", tag_at)

    def string(self, span: tuple[int, int]) -> str:
        return bytes(self.buffer[span[0] : span[1]]).decode("utf-8", errors="replace")

    def packed_varints(self, span: tuple[int, int]) -> list[int]:
        values, pos = [], span[0]
        while pos < span[1]:
            value, pos = self.varint(pos, span[1])
            values.append(value)
        return values

    def fixed32(self, span: tuple[int, int]) -> int:
        return int.from_bytes(self.buffer[span[0] : span[1]], "little")
