"""A small reader and writer for the protobuf wire format.

Why hand-written: the engine wraps BuildKit progress (`moby.buildkit.trace`) in protobuf, and
the BuildKit session speaks gRPC, but the runtime dependencies stay pydantic, httpx and
typing-extensions. Both uses need only the wire format, not descriptors or code generation:
a message is a sequence of (field number, wire type, value) records, and a decoder keeps the
fields it knows and skips the rest, which is exactly what protobuf's own compatibility rules
ask for.

Supported wire types are varint (0), fixed64 (1), length-delimited (2) and fixed32 (5). The
deprecated group wire types (3, 4) are refused: no message this package reads uses them.
Varints are returned as unsigned 64-bit integers; `as_int64` and `as_int32` reinterpret them
for signed fields. Malformed input raises `ProtobufError`, a `ValueError`, which callers
turn into the error that fits their protocol (a `StreamError` for build streams).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

__all__ = [
    "WIRE_FIXED32",
    "WIRE_FIXED64",
    "WIRE_LEN",
    "WIRE_VARINT",
    "ProtobufError",
    "as_int32",
    "as_int64",
    "decode_varint",
    "encode_tag",
    "encode_varint",
    "field_bool",
    "field_bytes",
    "field_fixed32",
    "field_fixed64",
    "field_string",
    "field_varint",
    "iter_fields",
    "read_bytes",
    "read_text",
    "read_varint",
    "skip_field",
]

WIRE_VARINT = 0
"""Wire type of varint-encoded scalars (int32, int64, uint*, bool, enum)."""
WIRE_FIXED64 = 1
"""Wire type of eight little-endian bytes (fixed64, sfixed64, double)."""
WIRE_LEN = 2
"""Wire type of length-delimited values (string, bytes, messages, packed repeated)."""
WIRE_FIXED32 = 5
"""Wire type of four little-endian bytes (fixed32, sfixed32, float)."""

_MAX_FIELD_NUMBER = (1 << 29) - 1
_U64 = (1 << 64) - 1
_unpack_u32 = struct.Struct("<I").unpack_from
_unpack_u64 = struct.Struct("<Q").unpack_from


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message (truncated, bad tag or wire type)."""


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Decode the varint that starts at `pos`; return its value and the position after it."""
    # One-byte varints (field tags, small lengths, booleans) dominate real messages.
    try:
        byte = data[pos]
    except IndexError:
        raise ProtobufError("truncated varint") from None
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    end = len(data)
    while True:
        if pos >= end:
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")
    return result & _U64, pos


def iter_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield `(field number, wire type, value)` for each field of an encoded message, in order.

    Varint and fixed values are non-negative ints (reinterpret signed fields with
    `as_int64`/`as_int32`); length-delimited values are `bytes`. Raises `ProtobufError` when the
    message is truncated or uses an unknown or group wire type.
    """
    pos = 0
    end = len(data)
    while pos < end:
        tag, pos = decode_varint(data, pos)
        number = tag >> 3
        wire = tag & 7
        if number == 0 or number > _MAX_FIELD_NUMBER:
            raise ProtobufError(f"invalid field number {number}")
        if wire == WIRE_LEN:
            length, pos = decode_varint(data, pos)
            stop = pos + length
            if stop > end:
                raise ProtobufError(f"field {number}: length {length} runs past the message end")
            yield number, wire, data[pos:stop]
            pos = stop
        elif wire == WIRE_VARINT:
            value, pos = decode_varint(data, pos)
            yield number, wire, value
        elif wire == WIRE_FIXED64:
            if pos + 8 > end:
                raise ProtobufError(f"field {number}: truncated fixed64")
            yield number, wire, _unpack_u64(data, pos)[0]
            pos += 8
        elif wire == WIRE_FIXED32:
            if pos + 4 > end:
                raise ProtobufError(f"field {number}: truncated fixed32")
            yield number, wire, _unpack_u32(data, pos)[0]
            pos += 4
        else:
            raise ProtobufError(f"field {number}: unsupported wire type {wire}")


def skip_field(data: bytes, pos: int, key: int) -> int:
    """Return the position after the value of a field whose key, already read, ends at `pos`.

    The key is the field's decoded tag (`number << 3 | wire type`). The checks and errors are
    those of `iter_fields`: decoders that walk a message by hand (`buildsdk.buildkit.status`) pass
    every field they do not read here, so both readers refuse the same bytes the same way.
    """
    number = key >> 3
    wire = key & 7
    if number == 0 or number > _MAX_FIELD_NUMBER:
        raise ProtobufError(f"invalid field number {number}")
    end = len(data)
    if wire == WIRE_LEN:
        length, pos = decode_varint(data, pos)
        if pos + length > end:
            raise ProtobufError(f"field {number}: length {length} runs past the message end")
        return pos + length
    if wire == WIRE_VARINT:
        return decode_varint(data, pos)[1]
    if wire == WIRE_FIXED64:
        if pos + 8 > end:
            raise ProtobufError(f"field {number}: truncated fixed64")
        return pos + 8
    if wire == WIRE_FIXED32:
        if pos + 4 > end:
            raise ProtobufError(f"field {number}: truncated fixed32")
        return pos + 4
    raise ProtobufError(f"field {number}: unsupported wire type {wire}")


def as_int64(value: int) -> int:
    """Reinterpret an unsigned varint as a two's-complement int64 (protobuf `int64`)."""
    value &= _U64
    return value - (1 << 64) if value >= 1 << 63 else value


def read_varint(value: int | bytes, what: str) -> int:
    """A field value `iter_fields` gave, which must be a varint; `what` names it in the error."""
    if isinstance(value, bytes):
        raise ProtobufError(f"{what} must be a varint")
    return value


def read_bytes(value: int | bytes, what: str) -> bytes:
    """A field value `iter_fields` gave, which must be length-delimited; `what` names it in
    the error."""
    if not isinstance(value, bytes):
        raise ProtobufError(f"{what} must be length-delimited")
    return value


def read_text(value: int | bytes, what: str) -> str:
    """A string field value `iter_fields` gave: length-delimited and UTF-8."""
    try:
        return read_bytes(value, what).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtobufError(f"{what} is not UTF-8") from None


def as_int32(value: int) -> int:
    """Reinterpret an unsigned varint as a protobuf `int32` (negative ones use 10 bytes)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


# A context sync encodes a few varints and keys per file, tens of thousands of files per
# build: the one-byte varints and the keys of the messages' few fields are made once.
_ONE_BYTE: Final = tuple(bytes((byte,)) for byte in range(0x80))
_TAGS: dict[tuple[int, int], bytes] = {}
_TAGS_KEPT: Final = 4096


def encode_varint(value: int) -> bytes:
    """Encode an integer as a varint; negative values are encoded as their 64-bit complement."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if value < 0:
        if value < -(1 << 63):
            raise ProtobufError(f"{value} does not fit in 64 bits")
        value &= _U64
    elif value > _U64:
        raise ProtobufError(f"{value} does not fit in 64 bits")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_tag(number: int, wire: int) -> bytes:
    """Encode the key (field number and wire type) that precedes every field."""
    tag = _TAGS.get((number, wire))
    if tag is None:
        if not 0 < number <= _MAX_FIELD_NUMBER:
            raise ProtobufError(f"invalid field number {number}")
        tag = encode_varint((number << 3) | wire)
        if len(_TAGS) < _TAGS_KEPT:
            _TAGS[number, wire] = tag
    return tag


def field_varint(number: int, value: int) -> bytes:
    """Encode a varint field (int32, int64, uint32, uint64, enum)."""
    return encode_tag(number, WIRE_VARINT) + encode_varint(value)


def field_bool(number: int, value: bool) -> bytes:
    """Encode a bool field as a varint 0 or 1."""
    return encode_tag(number, WIRE_VARINT) + (b"\x01" if value else b"\x00")


def field_bytes(number: int, data: bytes) -> bytes:
    """Encode a length-delimited field: bytes, or an already encoded sub-message."""
    return encode_tag(number, WIRE_LEN) + encode_varint(len(data)) + data


def field_string(number: int, text: str) -> bytes:
    """Encode a string field as UTF-8."""
    return field_bytes(number, text.encode("utf-8"))


def field_fixed64(number: int, value: int) -> bytes:
    """Encode a fixed64 field (eight little-endian bytes; negative values as complement)."""
    return encode_tag(number, WIRE_FIXED64) + struct.pack("<Q", value & _U64)


def field_fixed32(number: int, value: int) -> bytes:
    """Encode a fixed32 field (four little-endian bytes; negative values as complement)."""
    return encode_tag(number, WIRE_FIXED32) + struct.pack("<I", value & 0xFFFFFFFF)
