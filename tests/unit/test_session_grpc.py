"""The session's gRPC server, driven by an in-memory h2 client playing the engine.

`GrpcServerConnection` is tested byte for byte without I/O; `SessionServer` runs on an
asyncio loop over a pair of in-memory pipes, with the real service handlers behind it:
what is asserted is what the engine would read (status, trailers, messages).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from buildsdk._grpc.framing import frame_message, parse_timeout
from buildsdk._grpc.server import (
    CallEnded,
    CallReset,
    CallStarted,
    GrpcServerConnection,
    MessageReceived,
)
from buildsdk._grpc.status import GrpcError, Status
from buildsdk.auth import RegistryAuth
from buildsdk.session._messages import (
    CheckAgentRequest,
    CredentialsRequest,
    CredentialsResponse,
    GetSecretRequest,
)
from buildsdk.session._server import Call, SessionServer
from buildsdk.session.auth import AuthService
from buildsdk.session.secrets import BuildSecret, SecretsService
from buildsdk.session.ssh import SSHService


class Engine:
    """The engine's side: an h2 client that makes gRPC calls and collects the answers."""

    def __init__(self) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.headers: dict[int, list[tuple[str, str]]] = {}
        self.trailers: dict[int, dict[str, str]] = {}
        self.data: dict[int, bytearray] = {}
        self.ended: set[int] = set()

    def call(
        self,
        method: str,
        message: bytes | list[bytes] | None = b"",
        *,
        metadata: tuple[tuple[str, str], ...] = (),
        end: bool = True,
    ) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", "9998m"),
            *metadata,
        ]
        self.h2.send_headers(stream_id, headers)
        if isinstance(message, list):
            body = b"".join(frame_message(m) for m in message)
            self.h2.send_data(stream_id, body, end_stream=end)
        elif message is not None:
            self.h2.send_data(stream_id, frame_message(message), end_stream=end)
        elif end:
            self.h2.end_stream(stream_id)
        return stream_id

    def feed(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.headers[event.stream_id] = _text_headers(event.headers)
            elif isinstance(event, h2.events.TrailersReceived):
                self.trailers[event.stream_id] = dict(_text_headers(event.headers))
            elif isinstance(event, h2.events.DataReceived):
                self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)

    def status(self, stream_id: int) -> tuple[int, str]:
        """grpc-status and grpc-message, from trailers or a trailers-only answer."""
        fields = self.trailers.get(stream_id) or dict(self.headers.get(stream_id, []))
        return int(fields["grpc-status"]), fields.get("grpc-message", "")

    def messages(self, stream_id: int) -> list[bytes]:
        body = bytes(self.data.get(stream_id, b""))
        out = []
        while body:
            flag, length = struct.unpack(">BI", body[:5])
            assert flag == 0
            out.append(body[5 : 5 + length])
            body = body[5 + length :]
        return out


def _text_headers(headers: Any) -> list[tuple[str, str]]:
    return [
        (k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
        for k, v in headers
    ]


def _pump(engine: Engine, server: GrpcServerConnection) -> list[Any]:
    """Move bytes both ways until neither side has anything to say; return server events."""
    events: list[Any] = []
    while True:
        to_server = engine.h2.data_to_send()
        if to_server:
            events += server.receive_data(to_server)
        to_engine = server.data_to_send()
        if to_engine:
            engine.feed(to_engine)
        if not to_server and not to_engine:
            return events


# -- the sans-I/O connection ------------------------------------------------------------------


def test_call_headers_metadata_and_message_reach_the_server() -> None:
    engine, server = Engine(), GrpcServerConnection()
    stream = engine.call(
        "/moby.filesync.v1.FileSync/DiffCopy",
        b"\x08\x01",
        metadata=(("dir-name", "context"), ("followpaths", "a"), ("followpaths", "b")),
    )
    events = _pump(engine, server)
    started = next(e for e in events if isinstance(e, CallStarted))
    assert started.stream_id == stream
    assert started.method == "/moby.filesync.v1.FileSync/DiffCopy"
    assert started.metadata == {"dir-name": ("context",), "followpaths": ("a", "b")}
    assert started.timeout == pytest.approx(9.998)
    assert MessageReceived(stream, b"\x08\x01") in events
    assert CallEnded(stream) in events


def test_messages_split_across_frames_and_joined_in_one_frame() -> None:
    engine, server = Engine(), GrpcServerConnection()
    stream = engine.call("/x/Y", None, end=False)
    _pump(engine, server)
    wire = frame_message(b"first") + frame_message(b"") + frame_message(b"third")
    received: list[Any] = []
    for i in range(len(wire)):
        engine.h2.send_data(stream, wire[i : i + 1])
        received += _pump(engine, server)
    messages = [e.message for e in received if isinstance(e, MessageReceived)]
    assert messages == [b"first", b"", b"third"]


def test_reply_has_headers_messages_then_trailers() -> None:
    engine, server = Engine(), GrpcServerConnection()
    stream = engine.call("/x/Y")
    _pump(engine, server)
    server.send_message(stream, b"one")
    server.send_message(stream, b"two")
    server.finish(stream, Status.OK)
    _pump(engine, server)
    assert dict(engine.headers[stream])[":status"] == "200"
    assert dict(engine.headers[stream])["content-type"] == "application/grpc"
    assert engine.messages(stream) == [b"one", b"two"]
    assert engine.status(stream) == (0, "")
    assert stream in engine.ended


def test_error_is_a_trailers_only_answer_with_an_encoded_message() -> None:
    engine, server = Engine(), GrpcServerConnection()
    stream = engine.call("/x/Y")
    _pump(engine, server)
    server.finish(stream, Status.NOT_FOUND, "secret 100% missing\n")
    _pump(engine, server)
    assert stream not in engine.trailers
    fields = dict(engine.headers[stream])
    assert fields["grpc-status"] == "5"
    assert fields["grpc-message"] == "secret 100%25 missing%0A"
    assert stream in engine.ended


def test_large_reply_waits_for_window_updates() -> None:
    engine, server = Engine(), GrpcServerConnection()
    stream = engine.call("/x/Y")
    _pump(engine, server)
    payload = bytes(range(256)) * 1024  # 256 KiB: four times the default window
    server.send_message(stream, payload)
    server.finish(stream, Status.OK)
    first = server.data_to_send()
    engine.feed(first)
    # Only the default 64 KiB window went out; the rest waits for WINDOW_UPDATE.
    assert 0 < server.buffered(stream) < len(payload)
    assert stream not in engine.ended
    _pump(engine, server)
    assert engine.messages(stream) == [payload]
    assert engine.status(stream) == (0, "")


def test_reset_call_is_reported_and_forgotten() -> None:
    engine, server = Engine(), GrpcServerConnection()
    stream = engine.call("/x/Y", end=False)
    _pump(engine, server)
    engine.h2.reset_stream(stream)
    events = _pump(engine, server)
    assert CallReset(stream) in events
    assert not server.is_open(stream)
    server.send_message(stream, b"ignored")  # no error: the call is simply gone


def test_compressed_message_is_refused() -> None:
    engine, server = Engine(), GrpcServerConnection()
    stream = engine.call("/x/Y", None, end=False)
    engine.h2.send_data(stream, b"\x01\x00\x00\x00\x01z")
    events = _pump(engine, server)
    assert CallReset(stream) in events
    assert engine.status(stream)[0] == Status.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("10S", 10.0), ("9998m", 9.998), ("1H", 3600.0), ("5u", 5e-6), ("x", None), ("10s", None)],
)
def test_grpc_timeout_header(value: str, seconds: float | None) -> None:
    assert parse_timeout(value) == (pytest.approx(seconds) if seconds is not None else None)


# -- the asyncio server with real handlers ----------------------------------------------------


class Pipe:
    """One direction of an in-memory connection: writes on one side, reads on the other."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()


class MemoryStream:
    """The server's end of an in-memory connection (read from `inbound`, write to `outbound`)."""

    def __init__(self, inbound: Pipe, outbound: Pipe) -> None:
        self.inbound, self.outbound = inbound, outbound
        self.closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self.inbound.queue.get()

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.outbound.queue.put_nowait(bytes(buffer))

    async def aclose(self) -> None:
        self.closed = True
        self.inbound.queue.put_nowait(b"")


async def _serve_and_call(
    handlers: Mapping[str, Callable[[Call], Awaitable[None]]],
    calls: list[tuple[str, bytes | list[bytes] | None, tuple[tuple[str, str], ...]]],
    *,
    settle: Callable[[Engine], bool] | None = None,
) -> tuple[Engine, list[int]]:
    to_server, to_engine = Pipe(), Pipe()
    stream = MemoryStream(to_server, to_engine)
    server = SessionServer(stream, handlers)
    task = asyncio.ensure_future(server.serve())
    engine = Engine()
    ids = [engine.call(method, message, metadata=metadata) for method, message, metadata in calls]
    to_server.queue.put_nowait(engine.h2.data_to_send())
    done = settle or (lambda e: all(i in e.ended for i in ids))

    async def converse() -> None:
        while not done(engine):
            engine.feed(await to_engine.queue.get())
            reply = engine.h2.data_to_send()
            if reply:
                to_server.queue.put_nowait(reply)

    await asyncio.wait_for(converse(), 5)
    server.stop()
    await asyncio.wait_for(task, 5)
    assert stream.closed
    return engine, ids


def test_health_check_is_answered_serving() -> None:
    engine, (stream,) = asyncio.run(
        _serve_and_call({}, [("/grpc.health.v1.Health/Check", b"", ())])
    )
    assert engine.messages(stream) == [b"\x08\x01"]
    assert engine.status(stream) == (0, "")


def test_health_check_is_answered_while_a_handler_is_stuck() -> None:
    async def stuck(call: Call) -> None:
        await asyncio.sleep(3600)

    engine, (slow, health) = asyncio.run(
        _serve_and_call(
            {"/x/Stuck": stuck},
            [("/x/Stuck", b"", ()), ("/grpc.health.v1.Health/Check", b"", ())],
            settle=lambda e: 3 in e.ended,
        )
    )
    assert health == 3
    assert engine.status(health) == (0, "")
    assert slow not in engine.ended


def test_unknown_method_is_unimplemented() -> None:
    engine, (stream,) = asyncio.run(_serve_and_call({}, [("/no.Such/Method", b"", ())]))
    status, message = engine.status(stream)
    assert status == Status.UNIMPLEMENTED
    assert "/no.Such/Method" in message


def test_secrets_answer_known_ids_and_not_found_for_others() -> None:
    service = SecretsService(
        [BuildSecret(id="token", data=b"s3cr3t"), BuildSecret(id="env", env="TOKEN_VAR")],
        {"TOKEN_VAR": "from-env"},
    )
    method = "/moby.buildkit.secrets.v1.Secrets/GetSecret"
    engine, (known, from_env, unknown) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [
                (method, GetSecretRequest("token").encode(), ()),
                (method, GetSecretRequest("env").encode(), ()),
                (method, GetSecretRequest("other").encode(), ()),
            ],
        )
    )
    assert engine.messages(known) == [b"\x0a\x06s3cr3t"]
    assert engine.messages(from_env) == [b"\x0a\x08from-env"]
    assert engine.status(unknown) == (Status.NOT_FOUND, "secret other not found")


def test_auth_answers_credentials_and_refuses_token_authority() -> None:
    looked_up: list[str] = []

    def lookup(host: str) -> RegistryAuth | None:
        looked_up.append(host)
        if host == "registry-1.docker.io":
            return RegistryAuth(username="hubuser", password=SecretStr("hubpw"))
        return None

    given = {"private.example:5000": RegistryAuth(identity_token=SecretStr("tok"))}
    service = AuthService(given, lookup)
    credentials = "/moby.filesync.v1.Auth/Credentials"
    engine, (hub, private, none, authority) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [
                (credentials, CredentialsRequest("registry-1.docker.io").encode(), ()),
                (credentials, CredentialsRequest("private.example:5000").encode(), ()),
                (credentials, CredentialsRequest("unknown.example").encode(), ()),
                ("/moby.filesync.v1.Auth/GetTokenAuthority", b"", ()),
            ],
        )
    )
    assert engine.messages(hub) == [CredentialsResponse("hubuser", "hubpw").encode()]
    # An identity token goes alone, as the Docker CLI sends it.
    assert engine.messages(private) == [CredentialsResponse("", "tok").encode()]
    assert engine.messages(none) == [b""]
    assert engine.status(authority)[0] == Status.UNIMPLEMENTED
    assert looked_up == ["registry-1.docker.io", "unknown.example"]


def test_ssh_check_agent(tmp_path: Any) -> None:
    import socket

    path = str(tmp_path / "agent.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    try:
        from buildsdk.session.ssh import SSHForward

        service = SSHService([SSHForward(id="default", socket=path)], {})
        check = "/moby.sshforward.v1.SSH/CheckAgent"
        engine, (known, unknown) = asyncio.run(
            _serve_and_call(
                service.handlers(),  # type: ignore[arg-type]
                [
                    (check, CheckAgentRequest("default").encode(), ()),
                    (check, CheckAgentRequest("github").encode(), ()),
                ],
            )
        )
    finally:
        listener.close()
    # A unary OK carries its (empty) message; trailers alone would be an error.
    assert engine.messages(known) == [b""]
    assert engine.status(known) == (0, "")
    assert engine.status(unknown) == (Status.NOT_FOUND, "unset ssh forward key github")


def test_ssh_forward_agent_copies_bytes_both_ways(tmp_path: Any) -> None:
    from buildsdk.session._messages import BytesMessage
    from buildsdk.session.ssh import SSHForward

    path = str(tmp_path / "agent.sock")
    received: list[bytes] = []

    async def agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readexactly(5)
        received.append(request)
        writer.write(b"\x00\x00\x00\x05\x0c\x00\x00\x00\x00")  # IDENTITIES_ANSWER, no keys
        await writer.drain()
        writer.close()

    async def main() -> tuple[Engine, list[int]]:
        server = await asyncio.start_unix_server(agent, path)
        async with server:
            service = SSHService([SSHForward(socket=path)], {})
            return await _serve_and_call(
                service.handlers(),  # type: ignore[arg-type]
                [
                    (
                        "/moby.sshforward.v1.SSH/ForwardAgent",
                        BytesMessage(b"\x00\x00\x00\x01\x0b").encode(),
                        (("buildkit.ssh.id", "default"),),
                    )
                ],
            )

    engine, (stream,) = asyncio.run(main())
    assert received == [b"\x00\x00\x00\x01\x0b"]
    replies = b"".join(BytesMessage.decode(m).data for m in engine.messages(stream))
    assert replies == b"\x00\x00\x00\x05\x0c\x00\x00\x00\x00"
    assert engine.status(stream) == (0, "")


def test_handler_errors_become_statuses() -> None:
    async def refuses(call: Call) -> None:
        raise GrpcError(Status.INVALID_ARGUMENT, "bad request")

    async def crashes(call: Call) -> None:
        raise RuntimeError("boom")

    engine, (refused, crashed) = asyncio.run(
        _serve_and_call(
            {"/x/Refuses": refuses, "/x/Crashes": crashes},
            [("/x/Refuses", b"", ()), ("/x/Crashes", b"", ())],
        )
    )
    assert engine.status(refused) == (Status.INVALID_ARGUMENT, "bad request")
    assert engine.status(crashed) == (Status.INTERNAL, "RuntimeError: boom")


@given(
    st.lists(st.binary(max_size=3000), max_size=6),
    st.lists(st.integers(1, 5000), min_size=1, max_size=20),
)
def test_any_chunking_of_request_messages_yields_the_same_messages(
    messages: list[bytes], cuts: list[int]
) -> None:
    engine, server = Engine(), GrpcServerConnection()
    stream = engine.call("/x/Y", None, end=False)
    _pump(engine, server)
    wire = b"".join(frame_message(m) for m in messages)
    received: list[Any] = []
    position = 0
    for cut in cuts * (len(wire) // max(1, sum(cuts)) + 1):
        if position >= len(wire):
            break
        engine.h2.send_data(stream, wire[position : position + cut])
        position += cut
        received += _pump(engine, server)
    engine.h2.end_stream(stream)
    received += _pump(engine, server)
    assert [e.message for e in received if isinstance(e, MessageReceived)] == messages
    assert CallEnded(stream) in received


@given(st.lists(st.binary(max_size=70_000), min_size=1, max_size=4))
def test_replies_of_any_size_arrive_whole_and_in_order(messages: list[bytes]) -> None:
    engine, server = Engine(), GrpcServerConnection()
    stream = engine.call("/x/Y")
    _pump(engine, server)
    for message in messages:
        server.send_message(stream, message)
    server.finish(stream, Status.OK)
    _pump(engine, server)
    assert engine.messages(stream) == messages
    assert engine.status(stream) == (0, "")
