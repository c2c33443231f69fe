"""The Control API channel over an in-memory connection to buildsdk's own gRPC server.

The engine here is `GrpcServerConnection` behind a pair of in-memory pipes, so the test
sees every call the channel made and every reset it sent. Checked: replies and errors reach
the caller typed, a large request crosses flow control whole, leaving a stream early and a
passed deadline reset the call on the wire, a dead connection fails open calls with
`StreamError` at once, and closing leaves no task behind.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from buildsdk._grpc.server import (
    CallEnded,
    CallReset,
    CallStarted,
    ConnectionEnded,
    GrpcServerConnection,
    MessageReceived,
)
from buildsdk._grpc.status import Status
from buildsdk.buildkit.control import AsyncControlChannel, ControlChannel, open_control
from buildsdk.endpoint import resolve_endpoint
from buildsdk.errors import GrpcCallError, NotFound, ServerError, StreamError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """The channel is written for asyncio."""
    return "asyncio"


class Pipe:
    """One direction of an in-memory connection."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def put(self, data: bytes) -> None:
        self.chunks.put_nowait(data)


class End:
    """One end of the in-memory connection, shaped like httpcore's network stream."""

    def __init__(self, inbound: Pipe, outbound: Pipe) -> None:
        self.inbound = inbound
        self.outbound = outbound
        self.closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self.inbound.chunks.get()

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self.closed:
            raise OSError("closed")
        self.outbound.put(buffer)

    async def aclose(self) -> None:
        self.closed = True
        self.outbound.put(b"")
        self.inbound.put(b"")

    def get_extra_info(self, info: str) -> object:
        return None


class Engine:
    """Echoes `/t.Echo/Echo` requests back (one reply per request), never answers
    `/t.Echo/Hang`, says UNIMPLEMENTED to anything else; records resets and GOAWAY."""

    def __init__(self, stream: End) -> None:
        self.stream = stream
        self.conn = GrpcServerConnection()
        self.methods: dict[int, str] = {}
        self.received: dict[int, list[bytes]] = {}
        self.resets: list[str] = []
        self.goaway = False

    async def serve(self) -> None:
        self.stream.outbound.put(self.conn.data_to_send())
        while True:
            data = await self.stream.read(65536)
            if not data:
                return
            for event in self.conn.receive_data(data):
                if isinstance(event, CallStarted):
                    self.methods[event.stream_id] = event.method
                    self.received[event.stream_id] = []
                    if event.method not in ("/t.Echo/Echo", "/t.Echo/Hang"):
                        self.conn.finish(event.stream_id, Status.UNIMPLEMENTED, "no 100% match")
                elif isinstance(event, MessageReceived):
                    self.received[event.stream_id].append(event.message)
                    if self.methods[event.stream_id] == "/t.Echo/Echo":
                        self.conn.send_message(event.stream_id, event.message[:64])
                elif isinstance(event, CallEnded):
                    if self.methods[event.stream_id] == "/t.Echo/Echo":
                        self.conn.finish(event.stream_id, Status.OK)
                elif isinstance(event, CallReset):
                    self.resets.append(self.methods[event.stream_id])
                elif isinstance(event, ConnectionEnded):
                    self.goaway = True
            out = self.conn.data_to_send()
            if out:
                await self.stream.write(out)


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[AsyncControlChannel, Engine, End]]:
    up, down = Pipe(), Pipe()
    client_end, engine_end = End(down, up), End(up, down)
    engine = Engine(engine_end)
    serving = asyncio.ensure_future(engine.serve())
    channel = AsyncControlChannel(client_end, "memory://engine")
    channel.start()
    try:
        yield channel, engine, client_end
    finally:
        await channel.aclose()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


async def test_unary_replies_and_errors_are_typed() -> None:
    async with connected() as (channel, _, _):
        assert await channel.unary("/t.Echo/Echo", b"ping") == b"ping"
        with pytest.raises(GrpcCallError) as info:
            await channel.unary("/t.Echo/Missing", b"")
        assert (info.value.code, info.value.code_name) == (12, "UNIMPLEMENTED")
        assert info.value.message == "no 100% match"
        assert str(info.value) == "/t.Echo/Missing failed: UNIMPLEMENTED (12): no 100% match"


async def test_a_large_request_crosses_flow_control_whole() -> None:
    big = bytes(range(256)) * 20_000  # 5 MB: more than the engine's 4 MiB window
    async with connected() as (channel, engine, _):
        assert await channel.unary("/t.Echo/Echo", big) == big[:64]
        [received] = engine.received.values()
        assert received == [big]


async def test_a_bidirectional_call_sends_and_receives_in_turn() -> None:
    async with connected() as (channel, _, _), await channel.stream("/t.Echo/Echo") as call:
        for word in (b"one", b"two"):
            await call.send(word)
            assert await call.recv() == word
        call.done_writing()
        assert await call.recv() is None
        assert call.code == Status.OK


async def test_leaving_a_server_stream_early_resets_it() -> None:
    async with connected() as (channel, engine, _):
        async with channel.server_stream("/t.Echo/Echo", b"first") as stream:
            async for message in stream:
                assert message == b"first"
                break
        async with channel.server_stream("/t.Echo/Hang", b"x") as stream:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(stream.__anext__(), 0.05)
        assert await channel.unary("/t.Echo/Echo", b"after") == b"after"
        assert engine.resets == ["/t.Echo/Hang"]


async def test_a_passed_deadline_resets_the_call_and_is_deadline_exceeded() -> None:
    async with connected() as (channel, engine, _):
        with pytest.raises(GrpcCallError) as info:
            await channel.unary("/t.Echo/Hang", b"", timeout=0.05)
        assert info.value.code == Status.DEADLINE_EXCEEDED
        assert await channel.unary("/t.Echo/Echo", b"still here") == b"still here"
        assert engine.resets == ["/t.Echo/Hang"]


async def test_a_lost_connection_fails_open_and_later_calls_with_stream_error() -> None:
    async with connected() as (channel, _, client_end):
        waiting = asyncio.ensure_future(channel.unary("/t.Echo/Hang", b""))
        await asyncio.sleep(0.01)
        client_end.inbound.put(b"")  # the engine's side hung up
        with pytest.raises(StreamError, match="Hang on memory://engine: the engine closed"):
            await waiting
        with pytest.raises(StreamError):
            await channel.unary("/t.Echo/Echo", b"")


async def test_closing_resets_open_calls_says_goaway_and_ends_its_tasks() -> None:
    before = set(asyncio.all_tasks())
    async with connected() as (channel, engine, _):
        waiting = asyncio.ensure_future(channel.unary("/t.Echo/Hang", b""))
        await asyncio.sleep(0.01)
        await channel.aclose()
        with pytest.raises(StreamError):
            await waiting
        await asyncio.sleep(0.01)
        assert engine.resets == ["/t.Echo/Hang"]
        assert engine.goaway
    leftover = set(asyncio.all_tasks()) - before
    assert {t for t in leftover if not t.done()} == set()


def _refusing(status: int, body: bytes) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.url.path == "/grpc"
        assert request.headers["upgrade"] == "h2c"
        assert request.headers["connection"] == "Upgrade"
        return httpx.Response(status, content=body)

    return httpx.MockTransport(handler)


ENDPOINT = resolve_endpoint("unix:///run/buildsdk-test-nothing-here.sock", env={})


async def test_an_engine_without_grpc_is_a_clear_not_found() -> None:
    transport = _refusing(404, b"page not found\n")
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as http:
        with pytest.raises(NotFound) as info:
            async with open_control(http, ENDPOINT):
                pytest.fail("opened")
    assert info.value.message.startswith(
        "the engine has no BuildKit Control API (POST /grpc answered 404: page not found)"
    )


async def test_a_transport_that_cannot_hand_over_the_connection_is_a_stream_error() -> None:
    transport = _refusing(101, b"")
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as http:
        with pytest.raises(StreamError, match="cannot hand over the upgraded connection"):
            async with open_control(http, ENDPOINT):
                pytest.fail("opened")


def test_the_sync_channel_reports_a_refusal_and_leaves_no_thread() -> None:
    before = threading.active_count()
    with pytest.raises(ServerError, match="no upgrade proto in request"):
        ControlChannel(
            ENDPOINT, transport=_refusing(500, b'{"message":"no upgrade proto in request"}')
        )
    assert threading.active_count() == before
