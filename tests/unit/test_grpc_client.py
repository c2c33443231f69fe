"""The gRPC client connection against an in-memory `h2` server playing the engine.

What is asserted is what crosses the wire: the request headers and bytes the engine reads
(and its resets and flow-control updates), and the events the client reports for every way
an engine can end a call.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildsdk._grpc.client import (
    CallFinished,
    CallLimitReached,
    ConnectionClosed,
    GrpcClientConnection,
    GrpcClientEvent,
    ResponseMessage,
    ResponseStarted,
    SendWindowOpened,
)
from buildsdk._grpc.framing import MessageDeframer, frame_message
from buildsdk._grpc.status import Detail, RpcStatus, Status, encode_status_details

METHOD = "/moby.buildkit.v1.Control/ListWorkers"
OK_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]


class Engine:
    """The engine's side: an h2 server that records what the client sent."""

    def __init__(self) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.h2.initiate_connection()
        self.requests: dict[int, list[tuple[str, str]]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.events: list[h2.events.Event] = []

    def receive(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            self.events.append(event)
            sid = getattr(event, "stream_id", None)
            if isinstance(event, h2.events.RequestReceived):
                assert sid is not None
                self.requests[sid] = [(n.decode(), v.decode()) for n, v in (event.headers or [])]
                self.bodies[sid] = bytearray()
            elif isinstance(event, h2.events.DataReceived):
                assert sid is not None
                self.bodies[sid] += event.data or b""
                self.h2.acknowledge_received_data(event.flow_controlled_length or 0, sid)
            elif isinstance(event, h2.events.StreamEnded):
                assert sid is not None
                self.ended.add(sid)
            elif isinstance(event, h2.events.StreamReset):
                assert sid is not None
                self.resets[sid] = int(event.error_code or 0)

    def messages(self, stream_id: int) -> list[bytes]:
        return MessageDeframer().feed(bytes(self.bodies[stream_id]))


def exchange(client: GrpcClientConnection, engine: Engine) -> list[GrpcClientEvent]:
    """Move bytes both ways until neither side has anything to send."""
    events: list[GrpcClientEvent] = []
    while True:
        out = client.data_to_send()
        if out:
            engine.receive(out)
        back = engine.h2.data_to_send()
        if back:
            events += client.receive_data(back)
        if not out and not back:
            return events


def pair() -> tuple[GrpcClientConnection, Engine]:
    client = GrpcClientConnection(user_agent="buildsdk/0.1.0")
    engine = Engine()
    exchange(client, engine)
    return client, engine


def finished(events: list[GrpcClientEvent]) -> CallFinished:
    [end] = [e for e in events if isinstance(e, CallFinished)]
    return end


def test_request_headers_are_what_grpc_servers_expect() -> None:
    client, engine = pair()
    sid = client.start_call(
        METHOD, timeout=1.5, metadata=[("buildkit-controlapi-buildid", "ref1"), ("x-bin", b"\0")]
    )
    exchange(client, engine)
    assert engine.requests[sid] == [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", METHOD),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "buildsdk/0.1.0"),
        ("grpc-timeout", "1500000u"),
        ("buildkit-controlapi-buildid", "ref1"),
        ("x-bin", "AA"),
    ]


def test_a_unary_call_sends_one_message_half_closes_and_reads_the_reply() -> None:
    client, engine = pair()
    sid = client.start_call(METHOD)
    client.send_message(sid, b"\x0a\x03abc")
    client.end_call(sid)
    exchange(client, engine)
    assert engine.messages(sid) == [b"\x0a\x03abc"]
    assert sid in engine.ended

    reply = frame_message(b"\x0a\x01x") + frame_message(b"")
    engine.h2.send_headers(sid, [*OK_HEADERS, ("x-meta", "1")])
    # One reply cut across two DATA frames, the second holding the next one too.
    engine.h2.send_data(sid, reply[:4])
    engine.h2.send_data(sid, reply[4:])
    engine.h2.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    events = exchange(client, engine)
    assert [e for e in events if not isinstance(e, SendWindowOpened)] == [
        ResponseStarted(sid, {"x-meta": ("1",)}),
        ResponseMessage(sid, b"\x0a\x01x"),
        ResponseMessage(sid, b""),
        CallFinished(sid, Status.OK, ""),
    ]
    assert not client.is_open(sid)


def test_an_error_in_trailers_carries_the_decoded_message_and_details() -> None:
    client, engine = pair()
    sid = client.start_call(METHOD)
    exchange(client, engine)
    details = RpcStatus(
        2, "exit code: 3", (Detail("github.com/moby/buildkit/errdefs.Exit+json", b"{}"),)
    )
    engine.h2.send_headers(sid, OK_HEADERS)
    engine.h2.send_headers(
        sid,
        [
            ("grpc-status", "2"),
            ("grpc-message", "process %22sh%22 failed: 100%25 %C3%A9"),
            ("grpc-status-details-bin", encode_status_details(details)),
            ("x-trailer", "t"),
        ],
        end_stream=True,
    )
    end = finished(exchange(client, engine))
    assert end.code == Status.UNKNOWN
    assert end.message == 'process "sh" failed: 100% é'
    assert end.details == details
    assert end.trailers == {"x-trailer": ("t",)}


def test_a_trailers_only_answer_ends_the_call() -> None:
    client, engine = pair()
    sid = client.start_call("/moby.buildkit.v1.Control/Nope")
    exchange(client, engine)
    engine.h2.send_headers(
        sid,
        [*OK_HEADERS, ("grpc-status", "12"), ("grpc-message", "unknown method Nope")],
        end_stream=True,
    )
    events = exchange(client, engine)
    assert not [e for e in events if isinstance(e, ResponseStarted)]
    end = finished(events)
    assert (end.code, end.message, end.details) == (12, "unknown method Nope", None)


@pytest.mark.parametrize(
    ("status", "content_type", "code"),
    [
        ("404", "text/plain", Status.UNIMPLEMENTED),
        ("503", "application/grpc", Status.UNAVAILABLE),
        ("200", "text/html", Status.UNKNOWN),
    ],
)
def test_a_non_grpc_answer_ends_the_call_and_resets_it(
    status: str, content_type: str, code: int
) -> None:
    client, engine = pair()
    sid = client.start_call(METHOD)
    exchange(client, engine)
    engine.h2.send_headers(sid, [(":status", status), ("content-type", content_type)])
    end = finished(exchange(client, engine))
    assert end.code == code
    assert engine.resets[sid] == h2.errors.ErrorCodes.CANCEL


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (h2.errors.ErrorCodes.CANCEL, Status.CANCELLED),
        (h2.errors.ErrorCodes.REFUSED_STREAM, Status.UNAVAILABLE),
        (h2.errors.ErrorCodes.NO_ERROR, Status.INTERNAL),
        (h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, Status.RESOURCE_EXHAUSTED),
    ],
)
def test_a_reset_from_the_engine_maps_to_a_status(error: h2.errors.ErrorCodes, code: int) -> None:
    client, engine = pair()
    sid = client.start_call(METHOD)
    exchange(client, engine)
    engine.h2.reset_stream(sid, error)
    end = finished(exchange(client, engine))
    assert end.code == code
    assert error.name in end.message


def test_an_end_without_status_or_inside_a_message_is_internal() -> None:
    client, engine = pair()
    first = client.start_call(METHOD)
    second = client.start_call(METHOD)
    exchange(client, engine)
    engine.h2.send_headers(first, OK_HEADERS)
    engine.h2.send_data(first, b"", end_stream=True)
    engine.h2.send_headers(second, OK_HEADERS)
    engine.h2.send_data(second, frame_message(b"abc")[:5])
    engine.h2.send_headers(second, [("grpc-status", "0")], end_stream=True)
    events = exchange(client, engine)
    ends = {e.stream_id: e for e in events if isinstance(e, CallFinished)}
    assert ends[first].code == Status.INTERNAL
    assert ends[first].message == "the engine ended the call without a status"
    assert ends[second].code == Status.INTERNAL
    assert "inside a message" in ends[second].message


def test_cancel_resets_the_stream_with_cancel() -> None:
    client, engine = pair()
    sid = client.start_call(METHOD)
    exchange(client, engine)
    client.send_message(sid, b"queued")
    end = client.cancel(sid)
    assert end == CallFinished(sid, Status.CANCELLED, "the call was cancelled")
    assert client.cancel(sid) is None
    # A reply the engine sent before it read the reset is ignored.
    engine.h2.send_headers(sid, [*OK_HEADERS, ("grpc-status", "0")], end_stream=True)
    racing = engine.h2.data_to_send()
    engine.receive(client.data_to_send())
    assert engine.resets[sid] == h2.errors.ErrorCodes.CANCEL
    assert engine.bodies[sid] == b""  # the queued request was dropped
    assert not [e for e in client.receive_data(racing) if isinstance(e, CallFinished)]


def test_a_large_request_waits_for_the_engines_window() -> None:
    client, engine = pair()
    sid = client.start_call(METHOD)
    big = bytes(range(256)) * 1024  # 256 KiB: four times HTTP/2's initial 64 KiB window
    client.send_message(sid, big)
    client.end_call(sid)
    engine.receive(client.data_to_send())
    # Only the initial window went out; the rest waits, and the stream is not ended yet.
    assert len(engine.bodies[sid]) == 65535
    assert client.buffered(sid) == len(big) + 5 - 65535
    assert sid not in engine.ended
    # The engine acknowledged what it read: WINDOW_UPDATEs let the rest out.
    events = exchange(client, engine)
    assert any(isinstance(e, SendWindowOpened) for e in events)
    assert engine.messages(sid) == [big]
    assert sid in engine.ended
    assert client.buffered(sid) == 0


def test_pings_are_acknowledged() -> None:
    client, engine = pair()
    engine.h2.ping(b"12345678")
    exchange(client, engine)
    acks = [e for e in engine.events if isinstance(e, h2.events.PingAckReceived)]
    assert [a.ping_data for a in acks] == [b"12345678"]


def test_received_data_is_acknowledged_so_long_streams_never_stall() -> None:
    client, engine = pair()
    sid = client.start_call(METHOD)
    exchange(client, engine)
    engine.h2.send_headers(sid, OK_HEADERS)
    received = 0
    # 8 MiB, twice the client's receive window: only flows if the client sends updates.
    for _ in range(512):
        chunk = frame_message(b"z" * (16 * 1024 - 5))
        exchange(client, engine)
        # Without the client's WINDOW_UPDATEs this stays short and h2 refuses to send.
        assert engine.h2.local_flow_control_window(sid) >= len(chunk)
        engine.h2.send_data(sid, chunk)
        received += sum(isinstance(e, ResponseMessage) for e in exchange(client, engine))
    assert received == 512


def test_goaway_fails_the_calls_the_engine_never_saw() -> None:
    client, engine = pair()
    seen = client.start_call(METHOD)
    exchange(client, engine)
    unseen = client.start_call(METHOD)
    engine.h2.close_connection(last_stream_id=seen, additional_data=b"shutting down")
    events = client.receive_data(engine.h2.data_to_send())
    ends = [e for e in events if isinstance(e, CallFinished)]
    assert [(e.stream_id, e.code) for e in ends] == [(unseen, Status.UNAVAILABLE)]
    assert "shutting down" in ends[0].message
    assert isinstance(events[-1], ConnectionClosed)
    assert client.is_open(seen)
    with pytest.raises(ConnectionError):
        client.start_call(METHOD)


def test_connection_lost_finishes_every_open_call() -> None:
    client, _ = pair()
    first, second = client.start_call(METHOD), client.start_call(METHOD)
    ends = client.connection_lost("the engine closed the connection")
    assert [(e.stream_id, e.code) for e in ends] == [
        (first, Status.UNAVAILABLE),
        (second, Status.UNAVAILABLE),
    ]
    assert client.open_calls() == []


def test_an_oversized_reply_is_refused_and_the_call_reset() -> None:
    client, engine = pair()
    sid = client.start_call(METHOD)
    exchange(client, engine)
    engine.h2.send_headers(sid, OK_HEADERS)
    engine.h2.send_data(sid, b"\x00\xff\xff\xff\xff")
    end = finished(exchange(client, engine))
    assert end.code == Status.RESOURCE_EXHAUSTED
    assert engine.resets[sid] == h2.errors.ErrorCodes.CANCEL


def test_garbage_from_the_engine_ends_the_connection() -> None:
    client, _ = pair()
    sid = client.start_call(METHOD)
    events = client.receive_data(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00" * 3)
    assert finished(events).stream_id == sid
    assert finished(events).code == Status.INTERNAL
    assert isinstance(events[-1], ConnectionClosed)
    assert client.closed


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ([("Upper", "x")], "cannot be sent"),
        ([("grpc-foo", "x")], "cannot be sent"),
        ([("te", "x")], "cannot be sent"),
        ([("x-bin", "text")], "must be bytes"),
        ([("x", "line\nbreak")], "printable ASCII"),
    ],
)
def test_bad_metadata_is_refused_before_sending(
    metadata: list[tuple[str, str | bytes]], match: str
) -> None:
    client, _ = pair()
    with pytest.raises(ValueError, match=match):
        client.start_call(METHOD, metadata=metadata)


def test_a_method_must_be_a_grpc_path() -> None:
    client, _ = pair()
    with pytest.raises(ValueError, match=r"package\.Service/Method"):
        client.start_call("ListWorkers")


@settings(max_examples=30)
@given(
    messages=st.lists(st.binary(max_size=70_000), min_size=1, max_size=4),
    frame=st.integers(min_value=1, max_value=20_000),
)
def test_replies_arrive_whole_however_the_engine_cuts_them(
    messages: list[bytes], frame: int
) -> None:
    client, engine = pair()
    sid = client.start_call(METHOD)
    client.end_call(sid)
    exchange(client, engine)
    engine.h2.send_headers(sid, OK_HEADERS)
    wire = b"".join(frame_message(m) for m in messages)
    got: list[bytes] = []
    for start in range(0, len(wire), frame):
        got += [e.message for e in exchange(client, engine) if isinstance(e, ResponseMessage)]
        assert engine.h2.local_flow_control_window(sid) >= frame
        engine.h2.send_data(sid, wire[start : start + frame])
    engine.h2.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    events = exchange(client, engine)
    got += [e.message for e in events if isinstance(e, ResponseMessage)]
    assert got == messages
    assert finished(events).code == Status.OK


def test_the_engines_limit_of_concurrent_calls_is_a_clear_error() -> None:
    client = GrpcClientConnection(user_agent="buildsdk/0.1.0")
    engine = Engine()
    engine.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2})
    exchange(client, engine)
    first = client.start_call(METHOD)
    client.start_call(METHOD)
    with pytest.raises(CallLimitReached, match="at most 2 calls at once"):
        client.start_call(METHOD)
    client.cancel(first)
    assert client.start_call(METHOD)
