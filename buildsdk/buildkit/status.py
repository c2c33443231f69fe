"""Decoding of BuildKit progress (`moby.buildkit.trace`) into build events.

With `version=2` the engine reports progress as aux messages
`{"id": "moby.buildkit.trace", "aux": "<base64>"}`: the string is Go's JSON form of `[]byte`
(standard base64 with padding) holding a protobuf `moby.buildkit.v1.StatusResponse`. Each
update lists vertices, vertex statuses, log chunks and (BuildKit >= 0.10) warnings; they are
returned in that order, as BuildKit's own `SolveStatus` orders them.

Only the fields this package exposes are read, by field number; anything else (a newer field,
the LLB definition inside a warning's source info) is skipped, as protobuf's compatibility
rules intend. Timestamps become timezone-aware UTC datetimes, truncated to microseconds
(Python's resolution; the wire carries nanoseconds).

Speed. A busy build sends thousands of traces, so the messages that make up nearly all of
them (the response itself, vertices, statuses, logs and their timestamps) are walked by hand
rather than through `iter_fields`: no generator, no tuple per field, one-byte keys and
lengths read inline, and the events built without validation (every value already has its
declared type). Everything else a hand walk meets goes to `skip_field`, which checks and
refuses exactly what `iter_fields` does, so both readers accept and reject the same bytes.
The rare messages (warnings and what they hold, progress groups) use `iter_fields`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from buildsdk._protobuf import (
    WIRE_LEN,
    WIRE_VARINT,
    ProtobufError,
    as_int32,
    as_int64,
    decode_varint,
    iter_fields,
    skip_field,
)
from buildsdk.errors import StreamError
from buildsdk.events import (
    BuildEvent,
    Position,
    ProgressGroup,
    Range,
    SourceInfo,
    VertexEvent,
    VertexLogEvent,
    VertexStatusEvent,
    VertexWarningEvent,
    trusted,
)

__all__ = ["decode_status_response", "decode_trace"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_U64 = (1 << 64) - 1
_2_64 = 1 << 64
_2_63 = 1 << 63
_2_32 = 1 << 32
_2_31 = 1 << 31

# The hand walks compare field keys (`number << 3 | wire type`) as literal bytes, as a hex dump
# shows them: 0x08 is field 1 varint, 0x0A field 1 length-delimited, 0x12 field 2, and so on.
# Every field read here has a number below 16, so its key is one byte (a longer encoding of the
# same key is decoded first, then compared).

_RANKS: dict[type[BuildEvent], int] = {
    VertexEvent: 1,
    VertexStatusEvent: 2,
    VertexLogEvent: 3,
    VertexWarningEvent: 4,
}

if sys.version_info >= (3, 11):
    # What `base64.b64decode(aux, validate=True)` does on 3.11+, without its Python wrapper.
    _b64decode = functools.partial(binascii.a2b_base64, strict_mode=True)
else:

    def _b64decode(aux: str) -> bytes:
        return base64.b64decode(aux, validate=True)


def _str(value: int | bytes) -> str:
    assert isinstance(value, bytes)
    return value.decode("utf-8", "replace")


def _timestamp(data: bytes) -> datetime:
    # Called for nearly every vertex and status, so the two varints are read inline.
    seconds = 0
    nanos = 0
    pos = 0
    end = len(data)
    while pos < end:
        key = data[pos]
        pos += 1
        if key >= 0x80:
            key, pos = decode_varint(data, pos - 1)
        if key == 0x08 or key == 0x10:  # 1 seconds, 2 nanos
            # Unrolled up to five bytes, which hold the seconds of any time from 1978 to 3058
            # and any nanos; longer varints (earlier times, negative values) take the loop.
            byte = data[pos]
            if byte < 0x80:
                value = byte
                pos += 1
            else:
                value = byte & 0x7F
                byte = data[pos + 1]
                if byte < 0x80:
                    value |= byte << 7
                    pos += 2
                else:
                    value |= (byte & 0x7F) << 7
                    byte = data[pos + 2]
                    if byte < 0x80:
                        value |= byte << 14
                        pos += 3
                    else:
                        value |= (byte & 0x7F) << 14
                        byte = data[pos + 3]
                        if byte < 0x80:
                            value |= byte << 21
                            pos += 4
                        else:
                            value |= (byte & 0x7F) << 21
                            byte = data[pos + 4]
                            if byte < 0x80:
                                value |= byte << 28
                                pos += 5
                            else:
                                value, pos = decode_varint(data, pos)
            if key == 0x08:
                value &= _U64
                seconds = value - _2_64 if value >= _2_63 else value
            else:
                value &= 0xFFFFFFFF
                nanos = value - _2_32 if value >= _2_31 else value
        else:
            pos = skip_field(data, pos, key)
    try:
        # Positional arguments: timedelta's keyword parsing costs more than the addition.
        return _EPOCH + timedelta(0, seconds, nanos // 1000)
    except OverflowError:
        raise ProtobufError(f"timestamp {seconds}s is out of range") from None


def _progress_group(data: bytes) -> ProgressGroup:
    values: dict[str, Any] = {"id": "", "name": "", "weak": False}
    for number, wire, value in iter_fields(data):
        if number == 1 and wire == WIRE_LEN:
            values["id"] = _str(value)
        elif number == 2 and wire == WIRE_LEN:
            values["name"] = _str(value)
        elif number == 3 and wire == WIRE_VARINT:
            values["weak"] = value != 0
    return trusted(ProgressGroup, values)


def _vertex(data: bytes) -> VertexEvent:
    digest = ""
    inputs: list[str] = []
    name = ""
    cached = False
    started: datetime | None = None
    completed: datetime | None = None
    error = ""
    group: ProgressGroup | None = None
    pos = 0
    end = len(data)
    while pos < end:
        key = data[pos]
        pos += 1
        if key >= 0x80:
            key, pos = decode_varint(data, pos - 1)
        if key in {0x0A, 0x12, 0x1A, 0x2A, 0x32, 0x3A, 0x42}:
            size = data[pos]
            if size < 0x80:
                pos += 1
            else:
                size, pos = decode_varint(data, pos)
            stop = pos + size
            if stop > end:
                raise ProtobufError(f"field {key >> 3}: length {size} runs past the message end")
            if key == 0x0A:  # 1 digest
                digest = data[pos:stop].decode("utf-8", "replace")
            elif key == 0x1A:  # 3 name
                name = data[pos:stop].decode("utf-8", "replace")
            elif key == 0x2A:  # 5 started
                started = _timestamp(data[pos:stop])
            elif key == 0x32:  # 6 completed
                completed = _timestamp(data[pos:stop])
            elif key == 0x12:  # 2 inputs
                inputs.append(data[pos:stop].decode("utf-8", "replace"))
            elif key == 0x3A:  # 7 error
                error = data[pos:stop].decode("utf-8", "replace")
            else:  # 8 progressGroup
                group = _progress_group(data[pos:stop])
            pos = stop
        elif key == 0x20:  # 4 cached
            value, pos = decode_varint(data, pos)
            cached = value != 0
        else:
            pos = skip_field(data, pos, key)
    return trusted(
        VertexEvent,
        {
            "kind": "vertex",
            "digest": digest,
            "inputs": inputs,
            "name": name,
            "cached": cached,
            "started": started,
            "completed": completed,
            "error": error,
            "progress_group": group,
        },
    )


def _vertex_status(data: bytes) -> VertexStatusEvent:
    ident = ""
    vertex = ""
    name = ""
    current = 0
    total = 0
    timestamp: datetime | None = None
    started: datetime | None = None
    completed: datetime | None = None
    pos = 0
    end = len(data)
    while pos < end:
        key = data[pos]
        pos += 1
        if key >= 0x80:
            key, pos = decode_varint(data, pos - 1)
        if key in {0x0A, 0x12, 0x1A, 0x32, 0x3A, 0x42}:
            size = data[pos]
            if size < 0x80:
                pos += 1
            else:
                size, pos = decode_varint(data, pos)
            stop = pos + size
            if stop > end:
                raise ProtobufError(f"field {key >> 3}: length {size} runs past the message end")
            if key == 0x0A:  # 1 ID
                ident = data[pos:stop].decode("utf-8", "replace")
            elif key == 0x12:  # 2 vertex
                vertex = data[pos:stop].decode("utf-8", "replace")
            elif key == 0x1A:  # 3 name
                name = data[pos:stop].decode("utf-8", "replace")
            elif key == 0x32:  # 6 timestamp
                timestamp = _timestamp(data[pos:stop])
            elif key == 0x3A:  # 7 started
                started = _timestamp(data[pos:stop])
            else:  # 8 completed
                completed = _timestamp(data[pos:stop])
            pos = stop
        elif key == 0x20:  # 4 current
            value, pos = decode_varint(data, pos)
            current = value - _2_64 if value >= _2_63 else value
        elif key == 0x28:  # 5 total
            value, pos = decode_varint(data, pos)
            total = value - _2_64 if value >= _2_63 else value
        else:
            pos = skip_field(data, pos, key)
    return trusted(
        VertexStatusEvent,
        {
            "kind": "vertex_status",
            "id": ident,
            "vertex": vertex,
            "name": name,
            "current": current,
            "total": total,
            "timestamp": timestamp,
            "started": started,
            "completed": completed,
        },
    )


def _vertex_log(data: bytes) -> VertexLogEvent:
    vertex = ""
    stream = 0
    chunk = b""
    timestamp: datetime | None = None
    pos = 0
    end = len(data)
    while pos < end:
        key = data[pos]
        pos += 1
        if key >= 0x80:
            key, pos = decode_varint(data, pos - 1)
        if key in {0x0A, 0x12, 0x22}:
            size = data[pos]
            if size < 0x80:
                pos += 1
            else:
                size, pos = decode_varint(data, pos)
            stop = pos + size
            if stop > end:
                raise ProtobufError(f"field {key >> 3}: length {size} runs past the message end")
            if key == 0x0A:  # 1 vertex
                vertex = data[pos:stop].decode("utf-8", "replace")
            elif key == 0x12:  # 2 timestamp
                timestamp = _timestamp(data[pos:stop])
            else:  # 4 msg
                chunk = data[pos:stop]
            pos = stop
        elif key == 0x18:  # 3 stream
            value, pos = decode_varint(data, pos)
            stream = value - _2_64 if value >= _2_63 else value
        else:
            pos = skip_field(data, pos, key)
    return trusted(
        VertexLogEvent,
        {
            "kind": "vertex_log",
            "vertex": vertex,
            "stream": stream,
            "data": chunk,
            "timestamp": timestamp,
        },
    )


def _position(data: bytes) -> Position:
    values = {"line": 0, "character": 0}
    for number, wire, value in iter_fields(data):
        if wire == WIRE_VARINT:
            assert isinstance(value, int)
            if number == 1:
                values["line"] = as_int32(value)
            elif number == 2:
                values["character"] = as_int32(value)
    return trusted(Position, values)


def _range(data: bytes) -> Range:
    values: dict[str, Any] = {"start": None, "end": None}
    for number, wire, value in iter_fields(data):
        if wire == WIRE_LEN:
            assert isinstance(value, bytes)
            if number == 1:
                values["start"] = _position(value)
            elif number == 2:
                values["end"] = _position(value)
    for key in ("start", "end"):
        if values[key] is None:
            values[key] = trusted(Position, {"line": 0, "character": 0})
    return trusted(Range, values)


def _source_info(data: bytes) -> SourceInfo:
    values: dict[str, Any] = {"filename": "", "data": b"", "language": ""}
    for number, wire, value in iter_fields(data):
        if wire == WIRE_LEN:
            assert isinstance(value, bytes)
            if number == 1:
                values["filename"] = _str(value)
            elif number == 2:
                values["data"] = value
            elif number == 4:
                values["language"] = _str(value)
    return trusted(SourceInfo, values)


def _vertex_warning(data: bytes) -> VertexWarningEvent:
    values: dict[str, Any] = {
        "kind": "vertex_warning",
        "vertex": "",
        "level": 0,
        "short": b"",
        "detail": [],
        "url": "",
        "info": None,
        "ranges": [],
    }
    for number, wire, value in iter_fields(data):
        if wire == WIRE_LEN:
            assert isinstance(value, bytes)
            if number == 1:
                values["vertex"] = _str(value)
            elif number == 3:
                values["short"] = value
            elif number == 4:
                values["detail"].append(value)
            elif number == 5:
                values["url"] = _str(value)
            elif number == 6:
                values["info"] = _source_info(value)
            elif number == 7:
                values["ranges"].append(_range(value))
        elif number == 2 and wire == WIRE_VARINT:
            assert isinstance(value, int)
            values["level"] = as_int64(value)
    return trusted(VertexWarningEvent, values)


def _status_response(data: bytes) -> list[BuildEvent]:
    out: list[BuildEvent] = []
    append = out.append
    highest = 0
    in_order = True
    pos = 0
    end = len(data)
    while pos < end:
        key = data[pos]
        pos += 1
        if key >= 0x80:
            key, pos = decode_varint(data, pos - 1)
        if key in {0x0A, 0x12, 0x1A, 0x22}:
            size = data[pos]
            if size < 0x80:
                pos += 1
            elif data[pos + 1] < 0x80:  # most vertices take 128 bytes or more
                size = (size & 0x7F) | data[pos + 1] << 7
                pos += 2
            else:
                size, pos = decode_varint(data, pos)
            stop = pos + size
            if stop > end:
                raise ProtobufError(f"field {key >> 3}: length {size} runs past the message end")
            if key < highest:
                in_order = False
            else:
                highest = key
            if key == 0x0A:  # 1 vertexes
                append(_vertex(data[pos:stop]))
            elif key == 0x12:  # 2 statuses
                append(_vertex_status(data[pos:stop]))
            elif key == 0x1A:  # 3 logs
                append(_vertex_log(data[pos:stop]))
            else:  # 4 warnings
                append(_vertex_warning(data[pos:stop]))
            pos = stop
        else:
            pos = skip_field(data, pos, key)
    if not in_order:
        # Go writes the lists in field order; any other order is regrouped (a stable sort).
        out.sort(key=_rank)
    return out


def _rank(event: BuildEvent) -> int:
    return _RANKS[type(event)]


def decode_status_response(data: bytes) -> list[BuildEvent]:
    """Decode the protobuf bytes of a `StatusResponse` into vertex, status, log, warning events.

    Raises `ProtobufError` (a `ValueError`) when the bytes are not a well-formed message.
    """
    try:
        return _status_response(data)
    except IndexError:
        # The inline readers index past the end of a (sub-)message only inside a varint.
        raise ProtobufError("truncated varint") from None


def decode_trace(aux: str) -> list[BuildEvent]:
    """Decode the `aux` string of a `moby.buildkit.trace` message into events.

    Raises `StreamError` when the string is not standard base64 or the bytes are not a
    `StatusResponse`.
    """
    try:
        data = _b64decode(aux)
    except (binascii.Error, ValueError) as exc:
        raise StreamError(f"moby.buildkit.trace is not base64 ({exc}): {aux[:80]!r}") from exc
    try:
        return _status_response(data)  # decode_status_response, one call less per message
    except (IndexError, ProtobufError) as exc:
        error = exc if isinstance(exc, ProtobufError) else ProtobufError("truncated varint")
        raise StreamError(
            f"moby.buildkit.trace is not a BuildKit StatusResponse: {error}"
        ) from error
