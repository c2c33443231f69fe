"""The session tunnelled through `Control/Session`, over an in-memory connection.

The daemon here is `GrpcServerConnection` behind in-memory pipes, answering the
`Control/Session` call as BuildKit does: it reads `BytesMessage`s, sends its own, and on our
half-close says goodbye inside the tunnel and ends the call with status OK. Checked: the
bytes a `SessionServer` writes reach the daemon whole, in `BytesMessage`s no larger than
`MAX_PIECE`; the daemon's bytes come out of `read` whole whatever the read sizes; closing
half-closes and waits for the end; the session metadata is what BuildKit reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsdk._grpc.server import CallEnded, CallStarted, GrpcServerConnection, MessageReceived
from buildsdk._grpc.status import Status
from buildsdk._protobuf import field_bytes, iter_fields
from buildsdk.buildkit.control import CONTROL_SESSION, AsyncControlChannel
from buildsdk.errors import GrpcCallError
from buildsdk.session._runtime import control_session_metadata
from buildsdk.session._tunnel import MAX_PIECE, ControlSessionStream

GOODBYE = b"inner GOAWAY"


class End:
    """One end of an in-memory connection, shaped like httpcore's network stream."""

    def __init__(self, inbound: asyncio.Queue[bytes], outbound: asyncio.Queue[bytes]) -> None:
        self.inbound = inbound
        self.outbound = outbound

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self.inbound.get()

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.outbound.put_nowait(buffer)

    async def aclose(self) -> None:
        self.outbound.put_nowait(b"")
        self.inbound.put_nowait(b"")

    def get_extra_info(self, info: str) -> object:
        return None


def _data(message: bytes) -> bytes:
    fields = list(iter_fields(message))
    assert all(number == 1 for number, _, _ in fields)
    return b"".join(value for _, _, value in fields if isinstance(value, bytes))


class Daemon:
    """Answers `Control/Session`: sends `to_send` as BytesMessages, records what arrives,
    and after our half-close sends GOODBYE and status OK (or `status` if set)."""

    def __init__(self, stream: End, to_send: list[bytes], status: int = Status.OK) -> None:
        self.stream = stream
        self.conn = GrpcServerConnection()
        self.to_send = to_send
        self.status = status
        self.metadata: dict[str, tuple[str, ...]] = {}
        self.received: list[bytes] = []
        self.half_closed = False

    async def serve(self) -> None:
        self.stream.outbound.put_nowait(self.conn.data_to_send())
        while data := await self.stream.read(65536):
            for event in self.conn.receive_data(data):
                if isinstance(event, CallStarted):
                    assert event.method == CONTROL_SESSION
                    self.metadata = dict(event.metadata)
                    for piece in self.to_send:
                        self.conn.send_message(event.stream_id, field_bytes(1, piece))
                elif isinstance(event, MessageReceived):
                    self.received.append(event.message)
                elif isinstance(event, CallEnded):
                    self.half_closed = True
                    self.conn.send_message(event.stream_id, field_bytes(1, GOODBYE))
                    self.conn.finish(event.stream_id, self.status, "tunnel says no")
            if out := self.conn.data_to_send():
                await self.stream.write(out)


@asynccontextmanager
async def tunnel(
    to_send: list[bytes], status: int = Status.OK
) -> AsyncIterator[tuple[ControlSessionStream, Daemon]]:
    up: asyncio.Queue[bytes] = asyncio.Queue()
    down: asyncio.Queue[bytes] = asyncio.Queue()
    daemon = Daemon(End(up, down), to_send, status)
    serving = asyncio.ensure_future(daemon.serve())
    channel = AsyncControlChannel(End(down, up), "memory://buildkitd")
    channel.start()
    try:
        metadata = control_session_metadata("s1", "app", "key", ["/m.S/A", "/m.S/B"])
        call = await channel.stream(CONTROL_SESSION, metadata=metadata)
        yield ControlSessionStream(call), daemon
    finally:
        await channel.aclose()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


async def _read_all(stream: ControlSessionStream, sizes: list[int]) -> bytes:
    out = b""
    for index in range(10_000):
        data = await stream.read(sizes[index % len(sizes)])
        if not data:
            return out
        out += data
    raise AssertionError("the stream did not end")


@given(
    writes=st.lists(st.binary(max_size=3000), max_size=8),
    pieces=st.lists(st.binary(min_size=1, max_size=3000), max_size=8),
    sizes=st.lists(st.integers(1, 4096), min_size=1, max_size=4),
)
def test_bytes_cross_the_tunnel_whole_both_ways(
    writes: list[bytes], pieces: list[bytes], sizes: list[int]
) -> None:
    async def run() -> None:
        async with tunnel(pieces) as (stream, daemon):
            got = b""
            for index, data in enumerate(writes):
                await stream.write(data)
                if len(got) < sum(map(len, pieces)):
                    got += await stream.read(sizes[index % len(sizes)])
            while len(got) < sum(map(len, pieces)):
                got += await stream.read(sizes[len(got) % len(sizes)])
            assert got == b"".join(pieces)
            await stream.aclose()
            assert await _read_all(stream, sizes) == b""
            assert daemon.half_closed
            sent = b"".join(_data(message) for message in daemon.received)
            assert sent == b"".join(writes)
            assert all(_data(message) for message in daemon.received)

    asyncio.run(run())


@given(
    pieces=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=8),
    sizes=st.lists(st.integers(1, 4096), min_size=1, max_size=4),
)
def test_reads_return_the_daemons_bytes_in_order(pieces: list[bytes], sizes: list[int]) -> None:
    async def run() -> None:
        async with tunnel(pieces) as (stream, _):
            got = b""
            while len(got) < sum(map(len, pieces)):
                data = await stream.read(sizes[len(got) % len(sizes)])
                assert 0 < len(data) <= sizes[len(got) % len(sizes)]
                got += data
            assert got == b"".join(pieces)
            await stream.aclose()

    asyncio.run(run())


def test_a_large_write_goes_in_pieces_of_at_most_max_piece() -> None:
    big = bytes(range(256)) * (MAX_PIECE // 256 * 2 + 100)  # two and a bit pieces

    async def run() -> None:
        async with tunnel([]) as (stream, daemon):
            await stream.write(big)
            await stream.aclose()
            lengths = [len(_data(message)) for message in daemon.received]
            assert lengths == [MAX_PIECE, MAX_PIECE, len(big) - 2 * MAX_PIECE]
            assert b"".join(_data(message) for message in daemon.received) == big

    asyncio.run(run())


def test_closing_half_closes_and_waits_for_status_ok() -> None:
    async def run() -> None:
        async with tunnel([b"engine preface"]) as (stream, daemon):
            assert await stream.read(100) == b"engine preface"
            await stream.aclose()
            assert daemon.half_closed
            # The goodbye was drained by close; the stream is over.
            assert await stream.read(100) == b""
            with pytest.raises(Exception, match="closed"):
                await stream.write(b"late")

    asyncio.run(run())


def test_a_failed_tunnel_raises_on_read() -> None:
    async def run() -> None:
        async with tunnel([], status=Status.RESOURCE_EXHAUSTED) as (stream, daemon):
            await stream.write(b"x")
            stream_call_ended = asyncio.ensure_future(_read_all(stream, [100]))
            await asyncio.sleep(0)
            # Half-close by hand (not aclose, which would swallow the ending).
            await stream.aclose()
            with pytest.raises(GrpcCallError) as caught:
                await stream_call_ended
            assert caught.value.code == Status.RESOURCE_EXHAUSTED
            assert daemon.half_closed

    asyncio.run(run())


def test_the_session_is_announced_in_the_call_metadata() -> None:
    async def run() -> None:
        async with tunnel([]) as (stream, daemon):
            await stream.write(b"")
            await stream.aclose()
            assert daemon.metadata["x-docker-expose-session-uuid"] == ("s1",)
            assert daemon.metadata["x-docker-expose-session-name"] == ("app",)
            assert daemon.metadata["x-docker-expose-session-sharedkey"] == ("key",)
            methods = daemon.metadata["x-docker-expose-session-grpc-method"]
            assert methods == ("/m.S/A", "/m.S/B")

    asyncio.run(run())
