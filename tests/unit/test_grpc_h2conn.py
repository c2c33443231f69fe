"""DATA frames of open calls bypass h2: every message arrives, every window is given back."""

from __future__ import annotations

import itertools
from typing import Any

import h2.config
import h2.connection
import h2.events
import hyperframe.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildsdk._grpc.client import GrpcClientConnection, ResponseMessage
from buildsdk._grpc.framing import frame_message
from buildsdk._grpc.server import GrpcServerConnection, MessageReceived

METHOD = "/moby.filesync.v1.FileSend/DiffCopy"
REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", METHOD), (":authority", "x")]
PAYLOAD = bytes(range(256)) * 256  # 64 KiB: four 16 KiB DATA frames and a bit


@pytest.fixture
def no_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything builds hyperframe's hex text of a bulk frame body."""
    original = hyperframe.frame._raw_data_repr

    def refuse(data: Any) -> str:
        # HEADERS and SETTINGS frames keep h2's own text; they are small and few.
        if data and len(data) >= 4096:
            raise AssertionError(f"the hex text of a {len(data)}-byte frame body was built")
        return original(data)

    monkeypatch.setattr(hyperframe.frame, "_raw_data_repr", refuse)


def _send_in_frames(connection: h2.connection.H2Connection, sid: int, body: bytes) -> None:
    """Queue `body` in DATA frames of 16 KiB, the size BuildKit sends."""
    for start in range(0, len(body), 16384):
        connection.send_data(sid, body[start : start + 16384])


def test_a_large_message_to_the_session_server_never_reaches_h2_s_frame_text(no_hex: None) -> None:
    engine = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    engine.initiate_connection()
    server = GrpcServerConnection()
    engine.receive_data(server.data_to_send())
    sid = engine.get_next_available_stream_id()
    engine.send_headers(
        sid,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", METHOD),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
        ],
    )
    _send_in_frames(engine, sid, frame_message(PAYLOAD))
    events = server.receive_data(engine.data_to_send())
    assert [e.message for e in events if isinstance(e, MessageReceived)] == [PAYLOAD]


def test_a_large_reply_to_the_control_client_never_reaches_h2_s_frame_text(no_hex: None) -> None:
    engine = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    engine.initiate_connection()
    client = GrpcClientConnection(user_agent="buildsdk-test")
    sid = client.start_call(METHOD)
    engine.receive_data(client.data_to_send())
    client.receive_data(engine.data_to_send())
    engine.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    _send_in_frames(engine, sid, frame_message(PAYLOAD))
    events = client.receive_data(engine.data_to_send())
    assert [e.message for e in events if isinstance(e, ResponseMessage)] == [PAYLOAD]


# -- DATA frames of open calls bypass h2 (InboundFrames) -------------------------------------


def _cut(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    return [wire[a:b] for a, b in itertools.pairwise(points)]


def _send_what_the_window_allows(
    engine: h2.connection.H2Connection, sid: int, body: bytes, sent: int
) -> int:
    """Queue DATA frames of `body` from offset `sent` as far as the windows allow; return
    the new offset."""
    window = min(engine.local_flow_control_window(sid), len(body) - sent)
    while window > 0:
        size = min(window, engine.max_outbound_frame_size)
        engine.send_data(sid, body[sent : sent + size])
        sent += size
        window -= size
    return sent


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 700_000), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 10**7), max_size=40),
)
def test_the_session_server_gets_every_message_and_gives_the_whole_window_back(
    sizes: list[int], cuts: list[int]
) -> None:
    engine = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    engine.initiate_connection()
    server = GrpcServerConnection()
    sid = engine.get_next_available_stream_id()
    engine.send_headers(sid, [*REQUEST, ("content-type", "application/grpc")])
    messages = [bytes([n % 251]) * n for n in sizes]
    body = b"".join(frame_message(m) for m in messages)
    received: list[bytes] = []
    ended = False
    sent = 0
    while True:
        # The engine sends what its window allows, then an empty frame ending the stream.
        sent = _send_what_the_window_allows(engine, sid, body, sent)
        if sent == len(body) and not ended:
            engine.end_stream(sid)
        wire = engine.data_to_send()
        if not wire and ended:
            break
        for piece in _cut(wire, cuts):
            for event in server.receive_data(piece):
                if isinstance(event, MessageReceived):
                    received.append(event.message)
                ended = ended or type(event).__name__ == "CallEnded"
        engine.receive_data(server.data_to_send())
    assert received == messages
    # Every byte was given back: the engine's windows are as large as they started.
    assert engine.local_flow_control_window(sid) == engine.remote_settings.initial_window_size
    assert engine.outbound_flow_control_window == 65535 + 4 * 1024 * 1024


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 700_000), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 10**7), max_size=40),
)
def test_the_control_client_gets_every_reply_and_gives_the_whole_window_back(
    sizes: list[int], cuts: list[int]
) -> None:
    engine = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    engine.initiate_connection()
    client = GrpcClientConnection(user_agent="buildsdk-test")
    sid = client.start_call(METHOD)
    engine.receive_data(client.data_to_send())
    client.receive_data(engine.data_to_send())
    engine.receive_data(client.data_to_send())
    engine.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    messages = [bytes([n % 251]) * n for n in sizes]
    body = b"".join(frame_message(m) for m in messages)
    received: list[bytes] = []
    sent = 0
    while sent < len(body):
        before = sent
        sent = _send_what_the_window_allows(engine, sid, body, sent)
        assert sent > before, "the client did not give the window back"
        for piece in _cut(engine.data_to_send(), cuts):
            for event in client.receive_data(piece):
                if isinstance(event, ResponseMessage):
                    received.append(event.message)
        engine.receive_data(client.data_to_send())
    engine.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    finals = client.receive_data(engine.data_to_send())
    assert received == messages
    assert [type(e).__name__ for e in finals] == ["CallFinished"]
    assert engine.local_flow_control_window(sid) == engine.remote_settings.initial_window_size
