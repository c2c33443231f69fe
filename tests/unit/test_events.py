"""Stream framing and event mapping: recorded engine output split every way, generated streams."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from buildsdk._decoder import (
    MAX_MESSAGE_BYTES,
    EventDecoder,
    MessageDecoder,
    RawMessages,
    event_from_message,
)
from buildsdk.errors import StreamError
from buildsdk.events import (
    AnyBuildEvent,
    AuxEvent,
    BuildEvent,
    ErrorEvent,
    ImageIdEvent,
    LogEvent,
    ProgressDetail,
    StatusEvent,
    UnknownEvent,
    VertexLogEvent,
    VertexWarningEvent,
)
from tests import examples

STREAMS = Path(__file__).resolve().parents[1] / "fixtures" / "streams"
RECORDED = sorted(p.name for p in STREAMS.glob("*.jsonl"))
ADAPTER: TypeAdapter[BuildEvent] = TypeAdapter(AnyBuildEvent)


def _read(name: str) -> bytes:
    return (STREAMS / name).read_bytes()


def _decode(pieces: list[bytes]) -> list[BuildEvent]:
    decoder = EventDecoder()
    events: list[BuildEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.flush())
    return events


def _messages(pieces: list[bytes]) -> list[dict[str, Any]]:
    decoder = MessageDecoder()
    out: list[dict[str, Any]] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    out.extend(decoder.flush())
    return out


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def test_all_recordings_are_present() -> None:
    assert set(RECORDED) >= {
        "classic_ok.jsonl",
        "classic_fail.jsonl",
        "classic_quiet.jsonl",
        "buildkit_ok.jsonl",
        "buildkit_cached.jsonl",
        "buildkit_fail.jsonl",
    }


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_messages_are_the_lines_the_engine_sent(name: str) -> None:
    data = _read(name)
    assert data.endswith(b"\r\n")
    expected = [json.loads(line) for line in data.split(b"\r\n") if line]
    assert _messages([data]) == expected
    events: list[BuildEvent] = []
    for msg in expected:
        events.extend(event_from_message(msg))
    assert _decode([data]) == events


@pytest.mark.parametrize("name", RECORDED)
def test_every_split_point_of_a_recording_gives_the_same_messages(name: str) -> None:
    data = _read(name)
    whole = _messages([data])
    for cut in range(len(data) + 1):
        assert _messages([data[:cut], data[cut:]]) == whole, f"split at byte {cut}"


def _interesting_cuts(data: bytes) -> list[int]:
    """Every cut of a small recording; in bigger ones, those near message ends and non-ASCII
    bytes, plus a regular sample (BuildKit decoding makes every cut of 7 KB slow)."""
    if len(data) <= 2048:
        return list(range(len(data) + 1))
    near = {
        i + d
        for i, byte in enumerate(data)
        if byte in b"\r\n}" or byte >= 0x80
        for d in (-1, 0, 1, 2)
    }
    return sorted({c for c in near if 0 <= c <= len(data)} | set(range(0, len(data) + 1, 11)))


@pytest.mark.parametrize("name", RECORDED)
def test_split_points_of_a_recording_give_the_same_events(name: str) -> None:
    data = _read(name)
    whole = _decode([data])
    for cut in _interesting_cuts(data):
        assert _decode([data[:cut], data[cut:]]) == whole, f"split at byte {cut}"


@pytest.mark.parametrize("name", RECORDED)
def test_a_recording_fed_byte_by_byte_gives_the_same_events(name: str) -> None:
    data = _read(name)
    assert _decode([data[i : i + 1] for i in range(len(data))]) == _decode([data])


@settings(max_examples=examples(200))
@given(st.sampled_from(RECORDED), st.data())
def test_random_splits_of_recordings(name: str, data: st.DataObject) -> None:
    raw = _read(name)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=40))
    assert _decode(_split(raw, cuts)) == _decode([raw])


def test_classic_recording_maps_to_typed_events() -> None:
    events = _decode([_read("classic_ok.jsonl")])
    logs = [e for e in events if isinstance(e, LogEvent)]
    assert len(logs) == 30
    text = "".join(e.text for e in logs)
    assert "Step 3/5 : RUN" in text
    assert "\x1b[91mto stderr\n\x1b[0m" in text
    assert "naïve café ✓ 日本\n" in text
    assert "[Warning] One or more build-args [UNUSED] were not consumed\n" in text
    assert [e for e in events if not isinstance(e, LogEvent)] == [
        ImageIdEvent(
            image_id="sha256:6ddd71fe305fc353495358458455e074de1820540ee76a1c4fc57bf665957c20"
        )
    ]


def test_classic_failure_maps_to_an_error_event_with_code() -> None:
    events = _decode([_read("classic_fail.jsonl")])
    assert events[-1] == ErrorEvent(
        message='The command \'/bin/sh -c echo "about to fail" && echo "failing now" >&2'
        " && exit 3' returned a non-zero code: 3",
        code=3,
    )


def test_remote_context_download_is_a_status_event() -> None:
    events = _decode([_read("classic_remote.jsonl")])
    assert events[0] == StatusEvent(
        status="http://127.0.0.1:18777/remote.tar",
        id="Downloading context",
        progress_detail=ProgressDetail(current=409600),
        progress=" 409.6kB",
    )


def test_buildkit_recording_has_image_id_and_trace_events() -> None:
    events = _decode([_read("buildkit_ok.jsonl")])
    ids = [e for e in events if isinstance(e, ImageIdEvent)]
    assert ids == [
        ImageIdEvent(
            image_id="sha256:5be5c5b54b9f29cd47ffbab00a1aa9b7ab3dc5f41aa75e44f7cadf104c82e3b8"
        )
    ]
    assert sum(isinstance(e, VertexLogEvent) for e in events) == 3
    assert not any(isinstance(e, (UnknownEvent, AuxEvent)) for e in events)


# --- message -> event table ----------------------------------------------------------------

_ID = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        ({"stream": "Step 1/2 : FROM x\n"}, [LogEvent(text="Step 1/2 : FROM x\n")]),
        (
            {"status": "Pulling fs layer", "progressDetail": {}, "id": "a1b2"},
            [StatusEvent(status="Pulling fs layer", id="a1b2", progress_detail=ProgressDetail())],
        ),
        (
            {
                "status": "Downloading",
                "progressDetail": {"current": 5, "total": 10, "start": 1700000000},
                "progress": "[=>  ]",
                "id": "a1b2",
            },
            [
                StatusEvent(
                    status="Downloading",
                    id="a1b2",
                    progress_detail=ProgressDetail(current=5, total=10, start=1700000000),
                    progress="[=>  ]",
                )
            ],
        ),
        (
            {
                "status": "x",
                "progressDetail": {"hidecounts": True, "units": "items", "current": True},
            },
            [
                StatusEvent(
                    status="x", progress_detail=ProgressDetail(hidecounts=True, units="items")
                )
            ],
        ),
        ({"aux": {"ID": _ID}}, [ImageIdEvent(image_id=_ID)]),
        ({"id": "moby.image.id", "aux": {"ID": _ID}}, [ImageIdEvent(image_id=_ID)]),
        ({"id": "other", "aux": {"ID": _ID}}, [AuxEvent(id="other", aux={"ID": _ID})]),
        ({"aux": [1, 2]}, [AuxEvent(aux=[1, 2])]),
        (
            {"id": "moby.buildkit.trace", "aux": {"x": 1}},
            [AuxEvent(id="moby.buildkit.trace", aux={"x": 1})],
        ),
        ({"id": "moby.buildkit.trace", "aux": ""}, []),
        (
            {"errorDetail": {"code": 2, "message": "boom"}, "error": "boom"},
            [ErrorEvent(message="boom", code=2)],
        ),
        ({"error": "old style"}, [ErrorEvent(message="old style")]),
        ({"errorDetail": {"message": ""}, "error": "fallback"}, [ErrorEvent(message="fallback")]),
        ({"errorDetail": {"message": "m", "code": "7"}}, [ErrorEvent(message="m")]),
        ({"errorDetail": {"code": 1}}, [UnknownEvent(raw={"errorDetail": {"code": 1}})]),
        ({}, [UnknownEvent(raw={})]),
        ({"stream": 5}, [UnknownEvent(raw={"stream": 5})]),
        ({"id": 3, "aux": {}}, [UnknownEvent(raw={"id": 3, "aux": {}})]),
        ({"newField": {"a": 1}}, [UnknownEvent(raw={"newField": {"a": 1}})]),
        ({"stream": "x", "time": 1}, [LogEvent(text="x")]),
    ],
)
def test_message_to_event(msg: dict[str, Any], expected: list[BuildEvent]) -> None:
    assert event_from_message(msg) == expected


def test_bad_trace_payload_is_a_stream_error() -> None:
    line = b'{"id":"moby.buildkit.trace","aux":"%%%"}\r\n'
    with pytest.raises(StreamError, match="not base64"):
        EventDecoder().feed(line)


# --- framing -------------------------------------------------------------------------------

_A = {"stream": "a\n"}
_B = {"aux": {"ID": _ID}}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"stream":"a\\n"}\r\n{"aux":{"ID":"' + _ID.encode() + b'"}}\r\n',
        b'{"stream":"a\\n"}\n{"aux":{"ID":"' + _ID.encode() + b'"}}\n',
        b'{"stream":"a\\n"}{"aux":{"ID":"' + _ID.encode() + b'"}}',
        b'\r\n\n{"stream":"a\\n"} \r\n\r\n  {"aux":{"ID":"' + _ID.encode() + b'"}}\t\r\n\n',
        b'{"stream":"a\\n"}\r\n{"aux":{"ID":"' + _ID.encode() + b'"}}',
    ],
)
def test_separators_and_blank_lines(raw: bytes) -> None:
    assert _messages([raw]) == [_A, _B]
    for cut in range(len(raw) + 1):
        assert _messages([raw[:cut], raw[cut:]]) == [_A, _B]


def test_unseparated_messages_are_yielded_as_they_complete() -> None:
    decoder = MessageDecoder()
    assert decoder.feed(b'{"stream":"a\\n"}') == [_A]
    assert decoder.feed(b'{"stream":"b}') == []
    # Only a piece that ends in "}" is tried, so a message completed mid-piece waits for it.
    assert decoder.feed(b'"}{"str') == []
    assert decoder.feed(b'eam":"c"}') == [{"stream": "b}"}, {"stream": "c"}]
    assert decoder.flush() == []


def test_multibyte_utf8_split_between_chunks() -> None:
    raw = '{"stream":"日本 ✓\\n"}\r\n'.encode()
    start = raw.index("日".encode())
    for cut in range(start, start + 9):
        decoder = EventDecoder()
        assert decoder.feed(raw[:cut]) == []
        assert decoder.feed(raw[cut:]) == [LogEvent(text="日本 ✓\n")]


def test_truncated_stream_is_a_stream_error_with_an_excerpt() -> None:
    decoder = EventDecoder()
    assert decoder.feed(b'{"stream":"ok"}\r\n{"stream":"cut off he') == [LogEvent(text="ok")]
    with pytest.raises(StreamError) as info:
        decoder.flush()
    assert str(info.value) == ('stream ended in the middle of a message: \'{"stream":"cut off he\'')


def test_truncated_inside_a_multibyte_character() -> None:
    decoder = EventDecoder()
    decoder.feed('{"stream":"日'.encode()[:-1])
    with pytest.raises(StreamError, match="stream ended in the middle of a message"):
        decoder.flush()


def test_huge_garbage_gives_a_short_message() -> None:
    garbage = b"<html>" + b"x" * 10_000_000 + b"\n"
    with pytest.raises(StreamError) as info:
        EventDecoder().feed(garbage)
    message = str(info.value)
    assert message.startswith("the engine sent something that is not JSON: '<html>xxx")
    assert message.endswith("... (10000006 characters)")
    assert len(message) < 200


@pytest.mark.parametrize("decoder", [EventDecoder, MessageDecoder, RawMessages])
def test_a_message_that_never_ends_is_refused_at_the_cap(
    decoder: type[EventDecoder | MessageDecoder | RawMessages],
) -> None:
    instance = decoder()
    start = b'{"stream":"'
    piece = b"x" * (1024 * 1024)
    assert instance.feed(start + piece[len(start) :]) == []
    # Exactly the cap is still buffered; one byte more ends the stream.
    for _ in range(MAX_MESSAGE_BYTES // len(piece) - 1):
        assert instance.feed(piece) == []
    with pytest.raises(StreamError) as info:
        instance.feed(b"x")
    message = str(info.value)
    assert message.startswith(
        'the engine sent a message longer than 64 MiB without ending it: b\'{"stream":"xxx'
    )
    assert len(message) < 200


@given(
    st.lists(st.sampled_from([b'{"stream":"a"}\r\n', b"\n", b"x", b"\xff", b"{", b"\r\n"])).map(
        b"".join
    ),
    st.data(),
)
def test_raw_messages_are_the_lines_however_the_bytes_are_cut(
    raw: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=5))
    splitter = RawMessages()
    lines = [line for piece in _split(raw, cuts) for line in splitter.feed(piece)]
    lines += splitter.flush()
    expected = [line + b"\n" for line in raw.split(b"\n")[:-1]]
    if raw.split(b"\n")[-1].strip():
        expected.append(raw.split(b"\n")[-1])
    assert lines == expected


def test_messages_up_to_the_cap_still_arrive_whole() -> None:
    decoder = EventDecoder()
    text = "y" * (MAX_MESSAGE_BYTES - 64)
    data = json.dumps({"stream": text}).encode() + b"\r\n"
    events: list[BuildEvent] = []
    for start in range(0, len(data), 1 << 20):
        events += decoder.feed(data[start : start + (1 << 20)])
    # The buffer is emptied by each message's end: the next long one gets the whole cap.
    for start in range(0, len(data), 1 << 20):
        events += decoder.feed(data[start : start + (1 << 20)])
    assert [len(e.text) for e in events if isinstance(e, LogEvent)] == [len(text)] * 2
    assert decoder.flush() == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1, 2]\r\n", "the engine sent a message that is not a JSON object: '[1, 2]\\r'"),
        (b'"text"\n', "the engine sent a message that is not a JSON object: '\"text\"'"),
        (b'{"a":1}{"b":\n', 'the engine sent something that is not JSON: \'{"a":1}{"b":\''),
        (b'{"a":1} trailing\n', "the engine sent something that is not JSON: '{\"a\":1} trailing'"),
        (b'{"a":1}[2]\n', "the engine sent a message that is not a JSON object: '{\"a\":1}[2]'"),
        (b"\xff\xfe{}\n", "the engine sent bytes that are not UTF-8: b'\\xff\\xfe{}'"),
    ],
)
def test_non_json_is_a_stream_error_when_its_line_ends(raw: bytes, message: str) -> None:
    with pytest.raises(StreamError) as info:
        MessageDecoder().feed(raw)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "the engine sent something that is not JSON: 'not json'"),
        (b"42", "the engine sent a message that is not a JSON object: '42'"),
        (b"\xff", "the engine sent bytes that are not UTF-8: b'\\xff'"),
        (b'{"a":1}{"b"', "stream ended in the middle of a message: '{\"b\"'"),
    ],
)
def test_non_json_without_newline_is_reported_at_flush(raw: bytes, message: str) -> None:
    decoder = MessageDecoder()
    decoder.feed(raw)
    with pytest.raises(StreamError) as info:
        decoder.flush()
    assert str(info.value) == message


def test_absurdly_deep_nesting_is_a_stream_error() -> None:
    with pytest.raises(StreamError, match="not JSON"):
        MessageDecoder().feed(b'{"a":' + b"[" * 200_000 + b"\r\n")
    decoder = MessageDecoder()
    decoder.feed(b"[" * 200_000)
    with pytest.raises(StreamError, match="not JSON"):
        decoder.flush()


def test_flush_of_an_empty_or_blank_stream() -> None:
    assert EventDecoder().flush() == []
    decoder = EventDecoder()
    assert decoder.feed(b"\r\n  \r\n") == []
    assert decoder.feed(b"  ") == []
    assert decoder.flush() == []


# --- generated streams ---------------------------------------------------------------------

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=10)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_engine_messages = st.one_of(
    st.builds(lambda t: {"stream": t}, st.text()),
    st.builds(
        lambda s, i, c: {"status": s, "id": i, "progressDetail": {"current": c}},
        st.text(max_size=20),
        st.text(max_size=12),
        st.integers(0, 2**40),
    ),
    st.builds(lambda h: {"aux": {"ID": "sha256:" + h}}, st.text("0123456789abcdef", max_size=64)),
    st.builds(
        lambda m, c: {"errorDetail": {"message": m, "code": c}, "error": m},
        st.text(min_size=1),
        st.integers(1, 255),
    ),
    st.dictionaries(st.text(max_size=8), _json_values, max_size=4),
)


@settings(max_examples=examples(300))
@given(
    st.lists(_engine_messages, max_size=12),
    st.sampled_from(["\r\n", "\n", "", " \r\n\r\n", "\n\n"]),
    st.booleans(),
    st.data(),
)
def test_generated_streams_decode_to_what_was_sent(
    messages: list[dict[str, Any]],
    separator: str,
    ascii_only: bool,
    data: st.DataObject,
) -> None:
    raw = "".join(
        json.dumps(m, ensure_ascii=ascii_only, separators=(",", ":")) + separator for m in messages
    ).encode("utf-8")
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=20))
    pieces = _split(raw, cuts)
    assert _messages(pieces) == messages
    expected: list[BuildEvent] = []
    for msg in messages:
        expected.extend(event_from_message(msg))
    assert _decode(pieces) == expected


@given(st.binary(max_size=200), st.data())
def test_arbitrary_bytes_decode_or_raise_stream_error(raw: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=5))
    try:
        whole = _messages([raw])
    except StreamError:
        whole = None
    try:
        split = _messages(_split(raw, cuts))
    except StreamError:
        split = None
    # However the bytes are cut, the verdict is the same.
    assert split == whole


# --- the event models ----------------------------------------------------------------------


def _all_recorded_events() -> list[BuildEvent]:
    events: list[BuildEvent] = []
    for name in RECORDED:
        events.extend(_decode([_read(name)]))
    return events


def test_decoded_events_equal_validated_models_and_round_trip_through_json() -> None:
    extra: list[dict[str, Any]] = [{"aux": [1]}, {"x": {"y": [1, None]}}]
    events = _all_recorded_events() + [e for msg in extra for e in event_from_message(msg)]
    kinds = set()
    for event in events:
        kinds.add(event.kind)
        assert type(event).model_validate(event.model_dump(), strict=True) == event
        text = event.model_dump_json()
        assert json.loads(text)["kind"] == event.kind
        assert ADAPTER.validate_json(text) == event
        assert event.model_copy(update={}) == event
    assert kinds == {
        "log",
        "status",
        "image_id",
        "error",
        "vertex",
        "vertex_status",
        "vertex_log",
        "aux",
        "unknown",
    }


def test_bytes_are_standard_base64_in_json() -> None:
    event = VertexLogEvent(vertex="v", stream=1, data=b"\xfb\xff\xe6\x97")
    dumped = json.loads(event.model_dump_json())
    assert dumped == {
        "kind": "vertex_log",
        "vertex": "v",
        "stream": 1,
        "data": "+//mlw==",
        "timestamp": None,
    }
    assert ADAPTER.validate_json(event.model_dump_json()) == event
    assert event.model_dump()["data"] == b"\xfb\xff\xe6\x97"
    warning = VertexWarningEvent(short=b"\xfb", detail=[b"\xff", b"ok"])
    assert json.loads(warning.model_dump_json())["detail"] == ["/w==", "b2s="]
    assert ADAPTER.validate_json(warning.model_dump_json()) == warning


def test_events_are_frozen_and_tolerate_new_fields() -> None:
    event = LogEvent(text="a")
    with pytest.raises(ValidationError, match="frozen"):
        event.text = "b"  # type: ignore[misc]
    assert LogEvent.model_validate({"text": "a", "newer": 1}) == event
    assert ADAPTER.validate_python({"kind": "error", "message": "m", "extra": 2}) == ErrorEvent(
        message="m"
    )


def test_model_copy_update_does_not_touch_the_original() -> None:
    [event] = _decode([b'{"stream":"a"}\r\n'])
    changed = event.model_copy(update={"text": "b"})
    assert changed == LogEvent(text="b")
    assert event == LogEvent(text="a")
    assert event.model_fields_set == {"kind", "text"}
