"""Decoding of BuildKit progress (`moby.buildkit.trace`) into build events.

With `version=2` the engine reports progress as aux messages
`{"id": "moby.buildkit.trace", "aux": "<base64>"}`: the string is Go's JSON form of `[]byte`
(standard base64 with padding) holding a protobuf `moby.buildkit.v1.StatusResponse`. Each
update lists vertices, vertex statuses, log chunks and (BuildKit >= 0.10) warnings; they are
returned in that order, as BuildKit's own `SolveStatus` orders them.

Only the fields this package exposes are read, by field number, with `buildsdk._protobuf`;
anything else (a newer field, the LLB definition inside a warning's source info) is skipped,
as protobuf's compatibility rules intend. Timestamps become timezone-aware UTC datetimes,
truncated to microseconds (Python's resolution; the wire carries nanoseconds).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta, timezone
from typing import Any

from buildsdk._protobuf import (
    WIRE_LEN,
    WIRE_VARINT,
    ProtobufError,
    as_int32,
    as_int64,
    iter_fields,
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
    _trusted,
)

__all__ = ["decode_status_response", "decode_trace"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _str(value: int | bytes) -> str:
    assert isinstance(value, bytes)
    return value.decode("utf-8", "replace")


def _timestamp(data: bytes) -> datetime:
    seconds = 0
    nanos = 0
    for number, wire, value in iter_fields(data):
        if wire != WIRE_VARINT:
            continue
        assert isinstance(value, int)
        if number == 1:
            seconds = as_int64(value)
        elif number == 2:
            nanos = as_int32(value)
    try:
        return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
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
    return _trusted(ProgressGroup, values)


def _vertex(data: bytes) -> VertexEvent:
    values: dict[str, Any] = {
        "kind": "vertex",
        "digest": "",
        "inputs": [],
        "name": "",
        "cached": False,
        "started": None,
        "completed": None,
        "error": "",
        "progress_group": None,
    }
    for number, wire, value in iter_fields(data):
        if wire == WIRE_LEN:
            assert isinstance(value, bytes)
            if number == 1:
                values["digest"] = _str(value)
            elif number == 2:
                values["inputs"].append(_str(value))
            elif number == 3:
                values["name"] = _str(value)
            elif number == 5:
                values["started"] = _timestamp(value)
            elif number == 6:
                values["completed"] = _timestamp(value)
            elif number == 7:
                values["error"] = _str(value)
            elif number == 8:
                values["progress_group"] = _progress_group(value)
        elif number == 4 and wire == WIRE_VARINT:
            values["cached"] = value != 0
    return _trusted(VertexEvent, values)


def _vertex_status(data: bytes) -> VertexStatusEvent:
    values: dict[str, Any] = {
        "kind": "vertex_status",
        "id": "",
        "vertex": "",
        "name": "",
        "current": 0,
        "total": 0,
        "timestamp": None,
        "started": None,
        "completed": None,
    }
    for number, wire, value in iter_fields(data):
        if wire == WIRE_LEN:
            assert isinstance(value, bytes)
            if number == 1:
                values["id"] = _str(value)
            elif number == 2:
                values["vertex"] = _str(value)
            elif number == 3:
                values["name"] = _str(value)
            elif number == 6:
                values["timestamp"] = _timestamp(value)
            elif number == 7:
                values["started"] = _timestamp(value)
            elif number == 8:
                values["completed"] = _timestamp(value)
        elif wire == WIRE_VARINT:
            assert isinstance(value, int)
            if number == 4:
                values["current"] = as_int64(value)
            elif number == 5:
                values["total"] = as_int64(value)
    return _trusted(VertexStatusEvent, values)


def _vertex_log(data: bytes) -> VertexLogEvent:
    values: dict[str, Any] = {
        "kind": "vertex_log",
        "vertex": "",
        "stream": 0,
        "data": b"",
        "timestamp": None,
    }
    for number, wire, value in iter_fields(data):
        if wire == WIRE_LEN:
            assert isinstance(value, bytes)
            if number == 1:
                values["vertex"] = _str(value)
            elif number == 2:
                values["timestamp"] = _timestamp(value)
            elif number == 4:
                values["data"] = value
        elif number == 3 and wire == WIRE_VARINT:
            assert isinstance(value, int)
            values["stream"] = as_int64(value)
    return _trusted(VertexLogEvent, values)


def _position(data: bytes) -> Position:
    values = {"line": 0, "character": 0}
    for number, wire, value in iter_fields(data):
        if wire == WIRE_VARINT:
            assert isinstance(value, int)
            if number == 1:
                values["line"] = as_int32(value)
            elif number == 2:
                values["character"] = as_int32(value)
    return _trusted(Position, values)


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
            values[key] = _trusted(Position, {"line": 0, "character": 0})
    return _trusted(Range, values)


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
    return _trusted(SourceInfo, values)


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
    return _trusted(VertexWarningEvent, values)


def decode_status_response(data: bytes) -> list[BuildEvent]:
    """Decode the protobuf bytes of a `StatusResponse` into vertex, status, log, warning events.

    Raises `ProtobufError` (a `ValueError`) when the bytes are not a well-formed message.
    """
    vertexes: list[BuildEvent] = []
    statuses: list[BuildEvent] = []
    logs: list[BuildEvent] = []
    warnings: list[BuildEvent] = []
    for number, wire, value in iter_fields(data):
        if wire != WIRE_LEN:
            continue
        assert isinstance(value, bytes)
        if number == 1:
            vertexes.append(_vertex(value))
        elif number == 2:
            statuses.append(_vertex_status(value))
        elif number == 3:
            logs.append(_vertex_log(value))
        elif number == 4:
            warnings.append(_vertex_warning(value))
    return vertexes + statuses + logs + warnings


def decode_trace(aux: str) -> list[BuildEvent]:
    """Decode the `aux` string of a `moby.buildkit.trace` message into events.

    Raises `StreamError` when the string is not standard base64 or the bytes are not a
    `StatusResponse`.
    """
    try:
        data = base64.b64decode(aux, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise StreamError(f"moby.buildkit.trace is not base64 ({exc}): {aux[:80]!r}") from exc
    try:
        return decode_status_response(data)
    except ProtobufError as exc:
        raise StreamError(f"moby.buildkit.trace is not a BuildKit StatusResponse: {exc}") from exc
