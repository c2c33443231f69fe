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

from buildsdk._protobuf import field_bytes, field_string, field_varint
from buildsdk.buildkit import decode_status_response, decode_trace
from buildsdk.errors import StreamError
from buildsdk.events import (
    BuildEvent,
    EventDecoder,
    Position,
    ProgressGroup,
    Range,
    SourceInfo,
    VertexEvent,
    VertexLogEvent,
    VertexStatusEvent,
    VertexWarningEvent,
)

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


@settings(max_examples=300)
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


@pytest.mark.parametrize("data", [b"\x0a\x05ab", b"\x0b", b"\x0a\x02\x0a\x09"])
def test_bad_protobuf_is_a_stream_error(data: bytes) -> None:
    with pytest.raises(StreamError, match="not a BuildKit StatusResponse"):
        decode_trace(base64.b64encode(data).decode())


def test_invalid_utf8_in_strings_is_replaced_not_fatal() -> None:
    data = field_bytes(1, field_bytes(1, b"sha256:\xff") + field_bytes(3, b"RUN \xe2\x9c"))
    [event] = decode_status_response(data)
    assert event == VertexEvent(digest="sha256:\ufffd", name="RUN \ufffd")
