"""BuildKit trace decoding, checked against the official `protobuf` package and real output.

The message classes are built at run time from a trimmed copy of BuildKit's
`control.proto` / `ops.proto` (same field numbers, engine-api.md §2.5), so no generated code
or `protoc` is needed.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    timestamp_pb2,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from buildsdk._decoder import EventDecoder
from buildsdk._protobuf import (
    WIRE_FIXED64,
    WIRE_LEN,
    WIRE_VARINT,
    ProtobufError,
    as_int32,
    as_int64,
    encode_varint,
    field_bytes,
    field_string,
    field_varint,
    iter_fields,
)
from buildsdk.buildkit import decode_status_response, decode_trace
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
)
from tests import examples

STREAMS = Path(__file__).resolve().parents[1] / "fixtures" / "streams"
UTC = timezone.utc
_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_TS = ".google.protobuf.Timestamp"

# message name -> [(field name, number, type, label, type name)]
_OPS = {
    "ProgressGroup": [
        ("id", 1, _F.TYPE_STRING, _OPT, ""),
        ("name", 2, _F.TYPE_STRING, _OPT, ""),
        ("weak", 3, _F.TYPE_BOOL, _OPT, ""),
    ],
    "Position": [
        ("line", 1, _F.TYPE_INT32, _OPT, ""),
        ("character", 2, _F.TYPE_INT32, _OPT, ""),
    ],
    "Range": [
        ("start", 1, _F.TYPE_MESSAGE, _OPT, ".pb.Position"),
        ("end", 2, _F.TYPE_MESSAGE, _OPT, ".pb.Position"),
    ],
    "SourceInfo": [
        ("filename", 1, _F.TYPE_STRING, _OPT, ""),
        ("data", 2, _F.TYPE_BYTES, _OPT, ""),
        ("definition", 3, _F.TYPE_BYTES, _OPT, ""),
        ("language", 4, _F.TYPE_STRING, _OPT, ""),
    ],
}
_CONTROL = {
    "StatusResponse": [
        ("vertexes", 1, _F.TYPE_MESSAGE, _REP, ".moby.buildkit.v1.Vertex"),
        ("statuses", 2, _F.TYPE_MESSAGE, _REP, ".moby.buildkit.v1.VertexStatus"),
        ("logs", 3, _F.TYPE_MESSAGE, _REP, ".moby.buildkit.v1.VertexLog"),
        ("warnings", 4, _F.TYPE_MESSAGE, _REP, ".moby.buildkit.v1.VertexWarning"),
    ],
    "Vertex": [
        ("digest", 1, _F.TYPE_STRING, _OPT, ""),
        ("inputs", 2, _F.TYPE_STRING, _REP, ""),
        ("name", 3, _F.TYPE_STRING, _OPT, ""),
        ("cached", 4, _F.TYPE_BOOL, _OPT, ""),
        ("started", 5, _F.TYPE_MESSAGE, _OPT, _TS),
        ("completed", 6, _F.TYPE_MESSAGE, _OPT, _TS),
        ("error", 7, _F.TYPE_STRING, _OPT, ""),
        ("progressGroup", 8, _F.TYPE_MESSAGE, _OPT, ".pb.ProgressGroup"),
    ],
    "VertexStatus": [
        ("ID", 1, _F.TYPE_STRING, _OPT, ""),
        ("vertex", 2, _F.TYPE_STRING, _OPT, ""),
        ("name", 3, _F.TYPE_STRING, _OPT, ""),
        ("current", 4, _F.TYPE_INT64, _OPT, ""),
        ("total", 5, _F.TYPE_INT64, _OPT, ""),
        ("timestamp", 6, _F.TYPE_MESSAGE, _OPT, _TS),
        ("started", 7, _F.TYPE_MESSAGE, _OPT, _TS),
        ("completed", 8, _F.TYPE_MESSAGE, _OPT, _TS),
    ],
    "VertexLog": [
        ("vertex", 1, _F.TYPE_STRING, _OPT, ""),
        ("timestamp", 2, _F.TYPE_MESSAGE, _OPT, _TS),
        ("stream", 3, _F.TYPE_INT64, _OPT, ""),
        ("msg", 4, _F.TYPE_BYTES, _OPT, ""),
    ],
    "VertexWarning": [
        ("vertex", 1, _F.TYPE_STRING, _OPT, ""),
        ("level", 2, _F.TYPE_INT64, _OPT, ""),
        ("short", 3, _F.TYPE_BYTES, _OPT, ""),
        ("detail", 4, _F.TYPE_BYTES, _REP, ""),
        ("url", 5, _F.TYPE_STRING, _OPT, ""),
        ("info", 6, _F.TYPE_MESSAGE, _OPT, ".pb.SourceInfo"),
        ("ranges", 7, _F.TYPE_MESSAGE, _REP, ".pb.Range"),
    ],
}


def _file(name: str, package: str, messages: dict[str, Any], deps: list[str]) -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")
    fdp.dependency.extend(deps)
    for msg_name, fields in messages.items():
        msg = fdp.message_type.add(name=msg_name)
        for field_name, number, ftype, label, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
    return fdp


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(_file("ops.proto", "pb", _OPS, []))
    pool.Add(
        _file(
            "control.proto",
            "moby.buildkit.v1",
            _CONTROL,
            ["google/protobuf/timestamp.proto", "ops.proto"],
        )
    )
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"moby.buildkit.v1.{name}")
        )
        for name in _CONTROL
    }


PB = _classes()
StatusResponse = PB["StatusResponse"]


def _dt(ts: Any) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        seconds=ts.seconds, microseconds=ts.nanos // 1000
    )


def _opt_dt(msg: Any, field: str) -> datetime | None:
    return _dt(getattr(msg, field)) if msg.HasField(field) else None


def _expected_events(resp: Any) -> list[BuildEvent]:
    """The events a StatusResponse should decode to, built from the official parse."""
    out: list[BuildEvent] = []
    for v in resp.vertexes:
        group = None
        if v.HasField("progressGroup"):
            pg = v.progressGroup
            group = ProgressGroup(id=pg.id, name=pg.name, weak=pg.weak)
        out.append(
            VertexEvent(
                digest=v.digest,
                inputs=list(v.inputs),
                name=v.name,
                cached=v.cached,
                started=_opt_dt(v, "started"),
                completed=_opt_dt(v, "completed"),
                error=v.error,
                progress_group=group,
            )
        )
    for s in resp.statuses:
        out.append(
            VertexStatusEvent(
                id=s.ID,
                vertex=s.vertex,
                name=s.name,
                current=s.current,
                total=s.total,
                timestamp=_opt_dt(s, "timestamp"),
                started=_opt_dt(s, "started"),
                completed=_opt_dt(s, "completed"),
            )
        )
    for log in resp.logs:
        out.append(
            VertexLogEvent(
                vertex=log.vertex,
                stream=log.stream,
                data=log.msg,
                timestamp=_opt_dt(log, "timestamp"),
            )
        )
    for w in resp.warnings:
        info = None
        if w.HasField("info"):
            info = SourceInfo(filename=w.info.filename, data=w.info.data, language=w.info.language)
        out.append(
            VertexWarningEvent(
                vertex=w.vertex,
                level=w.level,
                short=w.short,
                detail=list(w.detail),
                url=w.url,
                info=info,
                ranges=[
                    Range(
                        start=Position(line=r.start.line, character=r.start.character),
                        end=Position(line=r.end.line, character=r.end.character),
                    )
                    for r in w.ranges
                ],
            )
        )
    return out


# --- hypothesis strategies producing official messages -------------------------------------

_int64 = st.integers(-(2**63), 2**63 - 1)
_int32 = st.integers(-(2**31), 2**31 - 1)
# Timestamps as Go can send them: year 1 (Go's zero time) to 9999.
_seconds = st.integers(-62135596800, 253402300799)
_nanos = st.integers(0, 999_999_999)
_digest = st.text(alphabet="0123456789abcdef", min_size=1, max_size=8).map(lambda h: f"sha256:{h}")


def _set_time(msg: Any, field: str, seconds: int, nanos: int = 0) -> None:
    ts = getattr(msg, field)
    ts.seconds = seconds
    ts.nanos = nanos
    ts.SetInParent()  # present even when both are zero (the Unix epoch)


@st.composite
def _maybe_times(draw: st.DrawFn, msg: Any, fields: tuple[str, ...]) -> None:
    for field in fields:
        if draw(st.booleans()):
            _set_time(msg, field, draw(_seconds), draw(_nanos))


@st.composite
def _vertex(draw: st.DrawFn) -> Any:
    v = PB["Vertex"](
        digest=draw(_digest),
        inputs=draw(st.lists(_digest, max_size=3)),
        name=draw(st.text(max_size=20)),
        cached=draw(st.booleans()),
        error=draw(st.text(max_size=20)),
    )
    draw(_maybe_times(v, ("started", "completed")))
    if draw(st.booleans()):
        v.progressGroup.id = draw(st.text(max_size=5))
        v.progressGroup.name = draw(st.text(max_size=5))
        v.progressGroup.weak = draw(st.booleans())
    return v


@st.composite
def _status(draw: st.DrawFn) -> Any:
    s = PB["VertexStatus"](
        ID=draw(st.text(max_size=20)),
        vertex=draw(_digest),
        name=draw(st.text(max_size=10)),
        current=draw(_int64),
        total=draw(_int64),
    )
    draw(_maybe_times(s, ("timestamp", "started", "completed")))
    return s


@st.composite
def _log(draw: st.DrawFn) -> Any:
    log = PB["VertexLog"](
        vertex=draw(_digest), stream=draw(st.sampled_from([1, 2, 0, -1])), msg=draw(st.binary())
    )
    draw(_maybe_times(log, ("timestamp",)))
    return log


@st.composite
def _warning(draw: st.DrawFn) -> Any:
    w = PB["VertexWarning"](
        vertex=draw(_digest),
        level=draw(_int64),
        short=draw(st.binary(max_size=20)),
        detail=draw(st.lists(st.binary(max_size=10), max_size=3)),
        url=draw(st.text(max_size=10)),
    )
    if draw(st.booleans()):
        w.info.filename = draw(st.text(max_size=10))
        w.info.data = draw(st.binary(max_size=10))
        w.info.definition = draw(st.binary(max_size=10))
        w.info.language = draw(st.text(max_size=5))
    for _ in range(draw(st.integers(0, 2))):
        r = w.ranges.add()
        r.start.line, r.start.character = draw(_int32), draw(_int32)
        r.end.line, r.end.character = draw(_int32), draw(_int32)
    return w


@st.composite
def _status_response(draw: st.DrawFn) -> Any:
    return StatusResponse(
        vertexes=draw(st.lists(_vertex(), max_size=3)),
        statuses=draw(st.lists(_status(), max_size=3)),
        logs=draw(st.lists(_log(), max_size=3)),
        warnings=draw(st.lists(_warning(), max_size=2)),
    )


@settings(max_examples=examples(300))
@given(_status_response())
def test_decodes_every_status_response_official_protobuf_encodes(resp: Any) -> None:
    data = resp.SerializeToString()
    assert decode_status_response(data) == _expected_events(resp)
    aux = base64.b64encode(data).decode()
    assert decode_trace(aux) == _expected_events(resp)


@given(_status_response())
def test_decoded_events_survive_a_json_round_trip(resp: Any) -> None:
    for event in decode_status_response(resp.SerializeToString()):
        # strict: the decoder stored exactly the declared types (not 0 for False, str for bytes)
        assert type(event).model_validate(event.model_dump(), strict=True) == event
        again = type(event).model_validate_json(event.model_dump_json())
        assert again == event


def _recorded_traces(name: str) -> list[str]:
    traces = []
    for line in (STREAMS / name).read_bytes().splitlines():
        msg = json.loads(line)
        if msg.get("id") == "moby.buildkit.trace":
            traces.append(msg["aux"])
    assert traces, f"{name} holds no BuildKit trace"
    return traces


@pytest.mark.parametrize(
    "name", ["buildkit_ok.jsonl", "buildkit_cached.jsonl", "buildkit_fail.jsonl"]
)
def test_recorded_traces_decode_as_official_protobuf_reads_them(name: str) -> None:
    for aux in _recorded_traces(name):
        resp = StatusResponse()
        resp.ParseFromString(base64.b64decode(aux))
        assert decode_trace(aux) == _expected_events(resp)


def test_recorded_buildkit_build_shows_steps_and_run_output() -> None:
    decoder = EventDecoder()
    events = decoder.feed((STREAMS / "buildkit_ok.jsonl").read_bytes()) + decoder.flush()
    names = {e.name for e in events if isinstance(e, VertexEvent)}
    assert '[2/3] RUN echo "buildkit stdout" && echo "buildkit stderr" >&2' in names
    assert "[1/3] FROM docker.io/library/busybox:latest" in names
    logs = [(e.stream, e.data) for e in events if isinstance(e, VertexLogEvent)]
    assert (1, b"buildkit stdout\n") in logs
    assert (2, b"buildkit stderr\n") in logs
    assert (1, "line 1\nline 2\nline 3\nnaïve café ✓ 日本\n".encode()) in logs
    first = next(e for e in events if isinstance(e, VertexEvent) and e.started is not None)
    assert first.started is not None
    assert first.started.tzinfo is UTC
    assert first.started.year == 2026


def test_recorded_failure_carries_the_vertex_error() -> None:
    decoder = EventDecoder()
    events = decoder.feed((STREAMS / "buildkit_fail.jsonl").read_bytes()) + decoder.flush()
    errors = [e.error for e in events if isinstance(e, VertexEvent) and e.error]
    assert errors == [
        'executor failed running [/bin/sh -c echo "about to fail" && echo "failing now" >&2'
        " && exit 3]: exit code: 3"
    ]


def test_unknown_fields_and_wire_type_mismatches_are_skipped() -> None:
    vertex = (
        field_string(1, "sha256:aa")
        + field_varint(3, 5)  # `name` with the wrong wire type: not a name
        + field_string(3, "step")
        + field_bytes(42, b"future field")
        + field_varint(43, 1)
    )
    data = field_bytes(1, vertex) + field_bytes(9, b"future list")
    assert decode_status_response(data) == [VertexEvent(digest="sha256:aa", name="step")]


def test_go_zero_time_is_year_one() -> None:
    log = PB["VertexLog"](vertex="v", msg=b"x", stream=1)
    _set_time(log, "timestamp", -62135596800)
    [event] = decode_status_response(StatusResponse(logs=[log]).SerializeToString())
    assert isinstance(event, VertexLogEvent)
    assert event.timestamp == datetime(1, 1, 1, tzinfo=UTC)


def test_timestamps_keep_microseconds() -> None:
    v = PB["Vertex"](digest="d")
    _set_time(v, "started", 1_700_000_000, 123_456_789)
    [event] = decode_status_response(StatusResponse(vertexes=[v]).SerializeToString())
    assert isinstance(event, VertexEvent)
    assert event.started == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)


def test_out_of_range_timestamp_is_a_stream_error() -> None:
    ts = field_varint(1, 2**62)
    data = field_bytes(1, field_string(1, "d") + field_bytes(5, ts))
    with pytest.raises(StreamError, match="not a BuildKit StatusResponse: timestamp"):
        decode_trace(base64.b64encode(data).decode())


@pytest.mark.parametrize(
    "aux",
    [
        "not base64!",
        "CgJ4eA",  # padding missing
        base64.urlsafe_b64encode(b"\xfb\xff\xfe" * 4).decode(),  # url-safe alphabet
    ],
)
def test_bad_base64_is_a_stream_error(aux: str) -> None:
    with pytest.raises(StreamError, match=r"moby\.buildkit\.trace is not base64"):
        decode_trace(aux)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x0a\x05ab", "field 1: length 5 runs past the message end"),
        (b"\x0b", "field 1: unsupported wire type 3"),
        (b"\x0a\x02\x0a\x09", "field 1: length 9 runs past the message end"),
        (b"\x0a", "truncated varint"),
        (b"\x0a\x03\x2a\x01\x08", "truncated varint"),  # inside a vertex's start time
        (b"\x12\x02\x20\x80", "truncated varint"),  # a status's `current`
        (b"\x1a\x02\x02\x00", "invalid field number 0"),  # inside a log
    ],
)
def test_bad_protobuf_is_a_stream_error(data: bytes, reason: str) -> None:
    with pytest.raises(StreamError) as info:
        decode_trace(base64.b64encode(data).decode())
    assert str(info.value) == f"moby.buildkit.trace is not a BuildKit StatusResponse: {reason}"
    assert isinstance(info.value.__cause__, ProtobufError)


def test_invalid_utf8_in_strings_is_replaced_not_fatal() -> None:
    data = field_bytes(1, field_bytes(1, b"sha256:\xff") + field_bytes(3, b"RUN \xe2\x9c"))
    [event] = decode_status_response(data)
    assert event == VertexEvent(digest="sha256:\ufffd", name="RUN \ufffd")


# --- the hand-walked reader against a plain one -----------------------------------------------
#
# decode_status_response walks the frequent messages by hand for speed. This reference reads the
# same fields the straightforward way, with iter_fields and validated models: on any bytes, valid
# or damaged, both must give the same events or refuse with the same error.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ref_text(value: int | bytes) -> str:
    assert isinstance(value, bytes)
    return value.decode("utf-8", "replace")


def _ref_time(value: int | bytes) -> datetime:
    assert isinstance(value, bytes)
    seconds = nanos = 0
    for number, wire, field in iter_fields(value):
        if wire == WIRE_VARINT and number == 1:
            seconds = _ref_int64(field)
        elif wire == WIRE_VARINT and number == 2:
            nanos = _ref_int32(field)
    try:
        return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise ProtobufError(f"timestamp {seconds}s is out of range") from None


def _ref_int64(value: int | bytes) -> int:
    assert isinstance(value, int)
    return as_int64(value)


def _ref_int32(value: int | bytes) -> int:
    assert isinstance(value, int)
    return as_int32(value)


def _ref_bool(value: int | bytes) -> bool:
    return value != 0


def _ref_bytes(value: int | bytes) -> bytes:
    assert isinstance(value, bytes)
    return value


def _ref_of(cls: type[Any]) -> Any:
    return lambda value: _ref_message(cls, value)


_LEN, _VARINT = WIRE_LEN, WIRE_VARINT
# model -> {(field number, wire type): (attribute, converter, repeated)}
_REF_FIELDS: dict[type[Any], dict[tuple[int, int], tuple[str, Any, bool]]] = {
    VertexEvent: {
        (1, _LEN): ("digest", _ref_text, False),
        (2, _LEN): ("inputs", _ref_text, True),
        (3, _LEN): ("name", _ref_text, False),
        (4, _VARINT): ("cached", _ref_bool, False),
        (5, _LEN): ("started", _ref_time, False),
        (6, _LEN): ("completed", _ref_time, False),
        (7, _LEN): ("error", _ref_text, False),
        (8, _LEN): ("progress_group", _ref_of(ProgressGroup), False),
    },
    ProgressGroup: {
        (1, _LEN): ("id", _ref_text, False),
        (2, _LEN): ("name", _ref_text, False),
        (3, _VARINT): ("weak", _ref_bool, False),
    },
    VertexStatusEvent: {
        (1, _LEN): ("id", _ref_text, False),
        (2, _LEN): ("vertex", _ref_text, False),
        (3, _LEN): ("name", _ref_text, False),
        (4, _VARINT): ("current", _ref_int64, False),
        (5, _VARINT): ("total", _ref_int64, False),
        (6, _LEN): ("timestamp", _ref_time, False),
        (7, _LEN): ("started", _ref_time, False),
        (8, _LEN): ("completed", _ref_time, False),
    },
    VertexLogEvent: {
        (1, _LEN): ("vertex", _ref_text, False),
        (2, _LEN): ("timestamp", _ref_time, False),
        (3, _VARINT): ("stream", _ref_int64, False),
        (4, _LEN): ("data", _ref_bytes, False),
    },
    VertexWarningEvent: {
        (1, _LEN): ("vertex", _ref_text, False),
        (2, _VARINT): ("level", _ref_int64, False),
        (3, _LEN): ("short", _ref_bytes, False),
        (4, _LEN): ("detail", _ref_bytes, True),
        (5, _LEN): ("url", _ref_text, False),
        (6, _LEN): ("info", _ref_of(SourceInfo), False),
        (7, _LEN): ("ranges", _ref_of(Range), True),
    },
    SourceInfo: {
        (1, _LEN): ("filename", _ref_text, False),
        (2, _LEN): ("data", _ref_bytes, False),
        (4, _LEN): ("language", _ref_text, False),
    },
    Range: {
        (1, _LEN): ("start", _ref_of(Position), False),
        (2, _LEN): ("end", _ref_of(Position), False),
    },
    Position: {
        (1, _VARINT): ("line", _ref_int32, False),
        (2, _VARINT): ("character", _ref_int32, False),
    },
}
_REF_LISTS = {1: VertexEvent, 2: VertexStatusEvent, 3: VertexLogEvent, 4: VertexWarningEvent}


def _ref_message(cls: type[Any], data: int | bytes) -> Any:
    assert isinstance(data, bytes)
    fields = _REF_FIELDS[cls]
    values: dict[str, Any] = {name: [] for name, _, repeated in fields.values() if repeated}
    if cls is VertexEvent or cls is VertexStatusEvent:
        values["digest" if cls is VertexEvent else "id"] = ""  # required fields
    if cls is VertexLogEvent:
        values["vertex"] = ""
    for number, wire, value in iter_fields(data):
        spec = fields.get((number, wire))
        if spec is None:
            continue
        name, convert, repeated = spec
        if repeated:
            values[name].append(convert(value))
        else:
            values[name] = convert(value)
    return cls(**values)


def _ref_status_response(data: bytes) -> list[BuildEvent]:
    lists: dict[int, list[BuildEvent]] = {n: [] for n in _REF_LISTS}
    for number, wire, value in iter_fields(data):
        if wire == WIRE_LEN and number in _REF_LISTS:
            lists[number].append(_ref_message(_REF_LISTS[number], value))
    return [event for n in sorted(lists) for event in lists[n]]


def _outcome(decode: Any, data: bytes) -> Any:
    try:
        events = decode(data)
    except ProtobufError as exc:
        return ("refused", str(exc))
    return events


def _overlong_keys(data: bytes, depth: int) -> bytes:
    """The same message with its one-byte keys written in two bytes (valid, non-minimal varints)."""
    out = []
    for number, wire, value in iter_fields(data):
        key = number << 3 | wire
        out.append(bytes((key | 0x80, 0)) if key < 0x80 else encode_varint(key))
        if wire == WIRE_LEN:
            assert isinstance(value, bytes)
            try:
                inner = _overlong_keys(value, depth - 1) if depth else value
            except ProtobufError:  # a string or bytes field, not a message
                inner = value
            out.append(encode_varint(len(inner)) + inner)
        elif wire == WIRE_VARINT:
            assert isinstance(value, int)
            out.append(encode_varint(value))
        else:
            assert isinstance(value, int)
            out.append(value.to_bytes(8 if wire == WIRE_FIXED64 else 4, "little"))
    return b"".join(out)


@st.composite
def _damaged(draw: st.DrawFn) -> bytes:
    """Official StatusResponse bytes, merged out of order, re-keyed, cut, flipped or padded."""
    data: bytes = draw(_status_response()).SerializeToString()
    if draw(st.booleans()):
        # Concatenated messages merge: their lists arrive out of field order.
        data = draw(_status_response()).SerializeToString() + data
    if draw(st.booleans()):
        data = _overlong_keys(data, draw(st.integers(0, 3)))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        change = draw(st.sampled_from(["cut", "flip", "insert"]))
        if change == "cut":
            data = data[:at]
        elif change == "flip" and at < len(data):
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        else:
            data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return data


@settings(max_examples=examples(1000), deadline=None)
@given(_damaged())
def test_hand_walked_reader_agrees_with_a_plain_reader_on_any_bytes(data: bytes) -> None:
    outcome = _outcome(decode_status_response, data)
    assert outcome == _outcome(_ref_status_response, data)
    if isinstance(outcome, list):
        # Built without validation, as if every field had been given (what `_trusted` does).
        assert all(e.model_fields_set == set(type(e).model_fields) for e in outcome)


@settings(max_examples=examples(1000), deadline=None)
@given(st.binary(max_size=200))
def test_hand_walked_reader_agrees_with_a_plain_reader_on_random_bytes(data: bytes) -> None:
    # Any bytes: events or ProtobufError from both readers (anything else escapes `_outcome`).
    assert _outcome(decode_status_response, data) == _outcome(_ref_status_response, data)


def test_lists_out_of_field_order_are_regrouped_in_order() -> None:
    log = field_bytes(3, field_string(1, "sha256:l"))
    status = field_bytes(2, field_string(1, "s"))
    vertex = field_bytes(1, field_string(1, "sha256:v"))
    events = decode_status_response(log + status + vertex + status)
    assert [type(e) for e in events] == [
        VertexEvent,
        VertexStatusEvent,
        VertexStatusEvent,
        VertexLogEvent,
    ]


def test_overlong_keys_still_name_their_fields() -> None:
    v = PB["Vertex"](digest="sha256:aa", name="step")
    _set_time(v, "started", 1_700_000_000, 5_000)
    data = StatusResponse(vertexes=[v]).SerializeToString()
    assert decode_status_response(_overlong_keys(data, 3)) == decode_status_response(data)


@given(st.text(alphabet="ABCab01+/=-_ \n!é", max_size=16))
def test_base64_is_refused_exactly_when_b64decode_validate_refuses(aux: str) -> None:
    try:
        data = base64.b64decode(aux, validate=True)
    except ValueError:  # binascii.Error too
        with pytest.raises(StreamError, match=r"moby\.buildkit\.trace is not base64"):
            decode_trace(aux)
        return
    try:
        expected = decode_status_response(data)
    except ProtobufError:
        with pytest.raises(StreamError, match="not a BuildKit StatusResponse"):
            decode_trace(aux)
        return
    assert decode_trace(aux) == expected


@pytest.mark.parametrize("value", [2, 127, 128, 2**31, 2**63, 2**64 - 1])
def test_varint_fields_read_as_official_protobuf_reads_them(value: int) -> None:
    vertex = field_bytes(1, field_string(1, "d") + field_varint(4, value))
    status = field_bytes(2, field_string(1, "s") + field_varint(4, value) + field_varint(5, value))
    log = field_bytes(3, field_string(1, "v") + field_varint(3, value))
    data = vertex + status + log
    assert decode_status_response(data) == _expected_events(StatusResponse.FromString(data))


@pytest.mark.parametrize(
    "seconds",
    # varints of one to ten bytes: 2**28 (1978) and 2**35 (3058) start five and six bytes,
    # times before 1970 are negative (ten bytes), 253402300799 is the end of year 9999
    [0, 1, 127, 128, 2**28 - 1, 2**28, 2**35 - 1, 2**35, -1, -86400 * 365, 253402300799],
)
@pytest.mark.parametrize("nanos", [0, 1, 127, 128, 999_999_999, -1])
def test_timestamps_of_every_varint_length_read_as_official_protobuf_reads_them(
    seconds: int, nanos: int
) -> None:
    status = PB["VertexStatus"](ID="s")
    _set_time(status, "timestamp", seconds, nanos)
    data = StatusResponse(statuses=[status]).SerializeToString()
    assert decode_status_response(data) == _expected_events(StatusResponse.FromString(data))
