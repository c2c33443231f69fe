"""Calls to BuildKit's Control API on the engine's hijacked `POST /grpc` connection.

Why a channel of our own: since Docker 18.09 the engine hands `POST /grpc` (upgraded to
`h2c`) to its BuildKit controller, which then speaks plain gRPC over HTTP/2 with buildsdk as
the client. The upgrade goes through the client's httpx transport, so unix sockets, tcp+TLS
and ssh all work; afterwards the raw stream (`response.extensions["network_stream"]`)
carries `GrpcClientConnection`'s bytes. This module moves bytes only: requests and replies
are protobuf bytes that `buildkit/solve.py` and friends encode and decode.

One reader task feeds what arrives to the connection and hands messages to the calls; one
writer task writes whatever the connection has queued (requests as flow control allows,
acknowledgements, PING ACKs). A call ending with a gRPC error raises `GrpcCallError`; a
connection that breaks (the engine died) ends every open call with `StreamError` at once;
a deadline resets the call (RST_STREAM CANCEL) and raises `GrpcCallError` with
DEADLINE_EXCEEDED. Replies are acknowledged to the engine as they arrive and wait in the
call's queue until read: a caller that stops reading a long stream should close it.
Closing the channel sends GOAWAY, resets what is still open and ends both tasks and the
socket. `ControlChannel` is the same channel for `Client`, run on a private event loop in a
thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from buildsdk._grpc.status import STATUS_NAMES, Status
from buildsdk._protocol import USER_AGENT
from buildsdk.errors import GrpcCallError, MissingDependency, StreamError, api_error_for_status

# The gRPC client needs h2 (the `session` extra); it is imported when a channel is opened,
# so this module can be imported, and its method names read, without it.
if TYPE_CHECKING:
    import httpx

    from buildsdk._grpc.client import CallFinished, GrpcClientEvent, Metadata
    from buildsdk.endpoint import Endpoint

__all__ = [
    "CONTROL_DISK_USAGE",
    "CONTROL_INFO",
    "CONTROL_LIST_WORKERS",
    "CONTROL_PRUNE",
    "CONTROL_SESSION",
    "CONTROL_SOLVE",
    "CONTROL_STATUS",
    "AsyncCall",
    "AsyncControlChannel",
    "ControlChannel",
    "ServerStream",
    "SyncServerStream",
    "open_control",
    "require_h2",
]

_SERVICE: Final = "/moby.buildkit.v1.Control/"
CONTROL_DISK_USAGE: Final = _SERVICE + "DiskUsage"
"""`DiskUsage(DiskUsageRequest) -> DiskUsageResponse`, unary."""
CONTROL_INFO: Final = _SERVICE + "Info"
"""`Info(InfoRequest) -> InfoResponse`, unary."""
CONTROL_LIST_WORKERS: Final = _SERVICE + "ListWorkers"
"""`ListWorkers(ListWorkersRequest) -> ListWorkersResponse`, unary."""
CONTROL_PRUNE: Final = _SERVICE + "Prune"
"""`Prune(PruneRequest) -> stream UsageRecord`, server streaming."""
CONTROL_SESSION: Final = _SERVICE + "Session"
"""`Session(stream BytesMessage) -> stream BytesMessage`, the session tunnel (bidirectional)."""
CONTROL_SOLVE: Final = _SERVICE + "Solve"
"""`Solve(SolveRequest) -> SolveResponse`, unary; returns when the build ends."""
CONTROL_STATUS: Final = _SERVICE + "Status"
"""`Status(StatusRequest) -> stream StatusResponse`, server streaming."""

_PATH: Final = "/grpc"
_UPGRADE_TIMEOUT: Final = 30.0
_CLOSE_TIMEOUT: Final = 5.0
_READ_SIZE: Final = 256 * 1024
_HIGH_WATER: Final = 1024 * 1024
_T = TypeVar("_T")


def require_h2() -> None:
    """Raise `MissingDependency` unless `h2` (the `session` extra) is installed."""
    try:
        import h2.connection  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "the BuildKit Control API (POST /grpc) needs the h2 package: "
            "pip install 'buildsdk[session]'"
        ) from None


class _Stream(Protocol):
    """The byte stream of the upgraded connection (httpcore's async network streams fit)."""

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes: ...

    async def write(self, buffer: bytes, timeout: float | None = None) -> None: ...

    async def aclose(self) -> None: ...

    def get_extra_info(self, info: str) -> Any: ...


class _CallState:
    """What the channel knows of one call: its queued replies and how it ended."""

    def __init__(self, stream_id: int, method: str) -> None:
        self.stream_id = stream_id
        self.method = method
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.metadata: Mapping[str, tuple[str, ...]] = {}
        self.finished: CallFinished | None = None
        self.lost: str | None = None
        self.done = asyncio.Event()
        self.timer: asyncio.TimerHandle | None = None

    def failed(self) -> bool:
        return self.finished is not None and self.finished.code != Status.OK

    def finish(self, event: CallFinished, *, lost: str | None = None) -> None:
        if self.finished is not None:
            return
        self.finished = event
        self.lost = lost
        if self.timer is not None:
            self.timer.cancel()
        self.inbox.put_nowait(None)
        self.done.set()


class AsyncControlChannel:
    """An open `/grpc` connection to the engine's BuildKit; make it with `open_control`."""

    def __init__(self, stream: _Stream, address: str) -> None:
        from buildsdk._grpc.client import GrpcClientConnection

        self._conn = GrpcClientConnection(user_agent=USER_AGENT)
        self._stream = stream
        self._address = address
        self._calls: dict[int, _CallState] = {}
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._lost: str | None = None
        self._closing = False
        self._goaway: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the reader and writer tasks (`open_control` does this)."""
        self._tasks = [
            asyncio.ensure_future(self._read_loop()),
            asyncio.ensure_future(self._write_loop()),
        ]
        self._wake.set()

    # -- the two tasks ------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._stream.read(_READ_SIZE)
                if not data:
                    self._lose("the engine closed the connection")
                    return
                self._dispatch(self._conn.receive_data(data))
                self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lose(f"reading from the engine failed: {exc!r}")

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._closing:
                    return
                data = self._conn.data_to_send()
                if data:
                    await self._stream.write(data)
                self._progress.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lose(f"writing to the engine failed: {exc!r}")

    def _dispatch(self, events: list[GrpcClientEvent]) -> None:
        from buildsdk._grpc.client import (
            CallFinished,
            ConnectionClosed,
            ResponseMessage,
            ResponseStarted,
            SendWindowOpened,
        )

        for event in events:
            if isinstance(event, ResponseMessage):
                state = self._calls.get(event.stream_id)
                if state is not None:
                    state.inbox.put_nowait(event.message)
            elif isinstance(event, CallFinished):
                state = self._calls.pop(event.stream_id, None)
                if state is not None:
                    state.finish(event)
            elif isinstance(event, ResponseStarted):
                state = self._calls.get(event.stream_id)
                if state is not None:
                    state.metadata = event.metadata
            elif isinstance(event, SendWindowOpened):
                self._wake.set()
            elif isinstance(event, ConnectionClosed):
                self._goaway = event.reason
        self._progress.set()

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        for event in self._conn.connection_lost(reason):
            state = self._calls.pop(event.stream_id, None)
            if state is not None:
                state.finish(event, lost=reason)
        self._progress.set()

    # -- calls --------------------------------------------------------------------------

    def _broken(self, method: str, reason: str) -> StreamError:
        return StreamError(f"{method} on {self._address}: {reason}")

    def _open(self, method: str, timeout: float | None, metadata: Metadata | None) -> _CallState:
        if self._lost is not None:
            raise self._broken(method, self._lost)
        from buildsdk._grpc.client import CallLimitReached

        try:
            stream_id = self._conn.start_call(method, timeout=timeout, metadata=metadata)
        except ConnectionError:
            raise self._broken(method, self._goaway or "the channel is closed") from None
        except CallLimitReached as exc:
            code = Status.RESOURCE_EXHAUSTED
            raise GrpcCallError(method, code, str(exc), code_name=STATUS_NAMES[code]) from None
        state = _CallState(stream_id, method)
        self._calls[stream_id] = state
        if timeout is not None:
            loop = asyncio.get_running_loop()
            state.timer = loop.call_later(timeout, self._expire, state, timeout)
        self._wake.set()
        return state

    def _expire(self, state: _CallState, timeout: float) -> None:
        from buildsdk._grpc.client import CallFinished

        self._conn.cancel(state.stream_id)
        self._calls.pop(state.stream_id, None)
        message = f"the deadline of {timeout:g} s passed"
        state.finish(CallFinished(state.stream_id, Status.DEADLINE_EXCEEDED, message))
        self._wake.set()

    def _cancel(self, state: _CallState) -> None:
        finished = self._conn.cancel(state.stream_id)
        self._calls.pop(state.stream_id, None)
        if finished is not None:
            state.finish(finished)
        self._wake.set()

    async def _send(self, state: _CallState, message: bytes) -> None:
        if state.finished is not None:
            raise self._error(state) if state.failed() else ValueError("the call has ended")
        self._conn.send_message(state.stream_id, message)
        self._wake.set()
        # Backpressure: a large request waits for the engine's flow-control window instead
        # of piling up in memory.
        while self._conn.buffered(state.stream_id) > _HIGH_WATER and state.finished is None:
            self._progress.clear()
            self._wake.set()
            await self._progress.wait()
        if state.failed():
            raise self._error(state)

    def _end(self, state: _CallState) -> None:
        self._conn.end_call(state.stream_id)
        self._wake.set()

    def _error(self, state: _CallState) -> Exception:
        finished = state.finished
        assert finished is not None
        if state.lost is not None:
            return self._broken(state.method, state.lost)
        details = finished.details.details if finished.details is not None else ()
        return GrpcCallError(
            state.method,
            finished.code,
            finished.message,
            code_name=STATUS_NAMES.get(finished.code, ""),
            details=details,
        )

    async def _next(self, state: _CallState) -> bytes | None:
        message = await state.inbox.get()
        if message is not None:
            return message
        state.inbox.put_nowait(None)
        assert state.finished is not None
        if state.finished.code != Status.OK:
            raise self._error(state)
        return None

    async def unary(
        self,
        method: str,
        request: bytes,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> bytes:
        """Call `method` with one request message and return its one reply message.

        Raises `GrpcCallError` when the call ends with an error status (DEADLINE_EXCEEDED
        after `timeout` seconds), `StreamError` when the connection breaks.
        """
        state = self._open(method, timeout, metadata)
        try:
            await self._send(state, request)
            self._end(state)
            await state.done.wait()
        except BaseException:
            self._cancel(state)
            raise
        replies: list[bytes] = []
        while not state.inbox.empty():
            item = state.inbox.get_nowait()
            if item is not None:
                replies.append(item)
        assert state.finished is not None
        if state.finished.code != Status.OK:
            raise self._error(state)
        if len(replies) != 1:
            raise GrpcCallError(
                method,
                Status.INTERNAL,
                f"a unary call got {len(replies)} replies instead of one",
                code_name="INTERNAL",
            )
        return replies[0]

    def server_stream(
        self,
        method: str,
        request: bytes,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> ServerStream:
        """Call `method` with one request and iterate over its reply messages.

        The call starts at the first iteration (or `async with`); leaving the `async with`
        block or calling `aclose()` before the end cancels it.
        """
        return ServerStream(self, method, request, timeout, metadata)

    async def stream(
        self, method: str, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> AsyncCall:
        """Start a bidirectional call to `method` (e.g. `CONTROL_SESSION`)."""
        return AsyncCall(self, self._open(method, timeout, metadata))

    # -- closing ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Reset every open call, say GOAWAY, and end the tasks and the connection."""
        for state in list(self._calls.values()):
            finished = self._conn.cancel(state.stream_id)
            self._calls.pop(state.stream_id, None)
            if finished is not None:
                state.finish(finished, lost="the channel was closed")
        self._conn.close()
        self._wake.set()
        if self._lost is None and self._tasks:
            # Let the writer put the resets and the GOAWAY on the wire, briefly.
            self._progress.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._progress.wait(), _CLOSE_TIMEOUT)
        self._lose("the channel is closed")
        self._closing = True
        self._wake.set()
        # The tasks end on their own: the writer sees `_closing`, the reader the end of the
        # stream once the socket is shut down under it. Cancelling a task blocked in a
        # socket read, or closing the socket under it, races anyio's reader callback (the
        # loop then reports an InvalidStateError); a shutdown just makes the read return.
        sock = self._stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        else:
            with contextlib.suppress(Exception):
                await self._stream.aclose()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=_CLOSE_TIMEOUT)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._stream.aclose()


class AsyncCall:
    """One started call: `send()` requests, `done_writing()`, then read the replies with
    `recv()` or `async for`; `aclose()` (or leaving `async with`) cancels it if unfinished."""

    def __init__(self, channel: AsyncControlChannel, state: _CallState) -> None:
        self._channel = channel
        self._state = state

    @property
    def metadata(self) -> Mapping[str, tuple[str, ...]]:
        """The engine's response header metadata (empty until it answered)."""
        return self._state.metadata

    @property
    def code(self) -> int | None:
        """The gRPC status the call ended with, or None while it runs."""
        finished = self._state.finished
        return finished.code if finished is not None else None

    async def send(self, message: bytes) -> None:
        """Send one request message (waits while flow control holds earlier ones back)."""
        await self._channel._send(self._state, message)

    def done_writing(self) -> None:
        """Half-close: tell the engine no more request messages come."""
        self._channel._end(self._state)

    async def recv(self) -> bytes | None:
        """The next reply message; None once the call ended with status OK.

        Raises `GrpcCallError` for an error status, `StreamError` for a broken connection.
        """
        return await self._channel._next(self._state)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        message = await self.recv()
        if message is None:
            raise StopAsyncIteration
        return message

    def cancel(self) -> None:
        """Reset the call with CANCEL if it has not ended."""
        if self._state.finished is None:
            self._channel._cancel(self._state)

    async def aclose(self) -> None:
        """Cancel the call if it has not ended."""
        self.cancel()

    async def __aenter__(self) -> AsyncCall:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class ServerStream:
    """The replies of a server-streaming call (see `AsyncControlChannel.server_stream`)."""

    def __init__(
        self,
        channel: AsyncControlChannel,
        method: str,
        request: bytes,
        timeout: float | None,
        metadata: Metadata | None,
    ) -> None:
        self._channel = channel
        self._method = method
        self._request = request
        self._timeout = timeout
        self._metadata = metadata
        self._call: AsyncCall | None = None
        self._closed = False

    async def _started(self) -> AsyncCall:
        if self._call is None:
            if self._closed:
                raise RuntimeError("the stream was closed")
            call = await self._channel.stream(
                self._method, timeout=self._timeout, metadata=self._metadata
            )
            self._call = call
            try:
                await call.send(self._request)
                call.done_writing()
            except BaseException:
                call.cancel()
                raise
        return self._call

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        call = await self._started()
        try:
            message = await call.recv()
        except BaseException:
            call.cancel()
            raise
        if message is None:
            raise StopAsyncIteration
        return message

    async def aclose(self) -> None:
        """Cancel the call if it has not ended."""
        self._closed = True
        if self._call is not None:
            await self._call.aclose()

    async def __aenter__(self) -> ServerStream:
        await self._started()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _upgrade(
    http: httpx.AsyncClient, endpoint: Endpoint, headers: Mapping[str, str]
) -> httpx.Response:
    import httpx

    from buildsdk import _protocol
    from buildsdk.transports import translate_transport_errors

    request_headers = [(key, value) for key, value in headers.items()]
    request_headers += [("Upgrade", "h2c"), ("Connection", "Upgrade"), ("Content-Length", "0")]
    request = http.build_request(
        "POST",
        _PATH,
        headers=request_headers,
        timeout=httpx.Timeout(_UPGRADE_TIMEOUT, read=_UPGRADE_TIMEOUT),
    )
    with translate_transport_errors(endpoint):
        response = await http.send(request, stream=True)
    if response.status_code == 101:
        return response
    try:
        with translate_transport_errors(endpoint):
            body = await response.aread()
    finally:
        await response.aclose()
    error = _protocol.error_from_response(
        response.status_code, response.headers, body, method="POST", path=_PATH
    )
    reason = (
        f"the engine has no BuildKit Control API (POST {_PATH} answered "
        f"{response.status_code}: {error.message}); it needs Docker Engine 18.09 or later "
        "with BuildKit (Podman has none)"
    )
    raise api_error_for_status(response.status_code, reason, method="POST", path=_PATH)


@contextlib.asynccontextmanager
async def open_control(
    http: httpx.AsyncClient, endpoint: Endpoint, headers: Mapping[str, str] | None = None
) -> AsyncIterator[AsyncControlChannel]:
    """Open a Control API channel over a new connection of `http` to `endpoint`.

    `headers` go on the upgrade request (the client's User-Agent and config.json headers).
    Raises an `APIError` naming what is missing when the engine has no `/grpc`; the channel
    and everything it started are closed when the block ends.
    """
    require_h2()
    response = await _upgrade(http, endpoint, headers or {})
    stream = response.extensions.get("network_stream")
    if stream is None:
        await response.aclose()
        raise StreamError(
            f"the engine at {endpoint} accepted POST {_PATH}, but the transport cannot hand "
            "over the upgraded connection"
        )
    channel = AsyncControlChannel(stream, str(endpoint))
    try:
        channel.start()
        yield channel
    finally:
        try:
            await asyncio.shield(channel.aclose())
        finally:
            with contextlib.suppress(Exception):
                await response.aclose()


class ControlChannel:
    """A Control API channel for sync code: the async channel on a private event loop in a
    thread of its own; `close()` (or leaving `with`) ends the calls, the socket and the
    thread.

    It reaches the engine at `endpoint` through `POST /grpc`, or, given `opener` (a
    function returning an async context manager that yields an `AsyncControlChannel`, such
    as `buildkit.remote.open_buildkitd`) and the `address` to name in errors, whatever that
    opens."""

    def __init__(
        self,
        endpoint: Endpoint | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        opener: Callable[[], AbstractAsyncContextManager[AsyncControlChannel]] | None = None,
        address: str | None = None,
    ) -> None:
        if (endpoint is None) == (opener is None):
            raise TypeError("give either an engine endpoint or an opener, not both")
        self._endpoint = endpoint
        self._address = address or str(endpoint)
        self._opener = opener
        self._headers = dict(headers or {})
        self._connect_timeout = connect_timeout
        self._env = env
        self._transport = transport
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: AsyncControlChannel | None = None
        self._stop: asyncio.Event | None = None
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, name="buildsdk-grpc", daemon=True)
        self._thread.start()
        try:
            self._ready.result()
        except BaseException:
            self.close()
            raise

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._run())
            loop.run_until_complete(loop.shutdown_asyncgens())
            # The ssh transport reads its pipe through the default executor's threads.
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    async def _run(self) -> None:
        import httpx

        from buildsdk import transports

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._opener is not None:
            await self._serve_opened(self._opener)
            return
        assert self._endpoint is not None
        try:
            if self._transport is not None:
                transport: httpx.AsyncBaseTransport = transports.BorrowedAsyncTransport(
                    self._transport
                )
                base_url = transports.base_url(self._endpoint)
            else:
                transport, base_url = transports.create_async_transport(
                    self._endpoint, connect_timeout=self._connect_timeout, env=self._env
                )
            async with (
                httpx.AsyncClient(transport=transport, base_url=base_url) as http,
                open_control(http, self._endpoint, self._headers) as channel,
            ):
                self._channel = channel
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            elif not isinstance(exc, Exception):
                raise

    async def _serve_opened(
        self, opener: Callable[[], AbstractAsyncContextManager[AsyncControlChannel]]
    ) -> None:
        assert self._stop is not None
        try:
            async with opener() as channel:
                self._channel = channel
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            elif not isinstance(exc, Exception):
                raise

    def run(self, function: Callable[[AsyncControlChannel], Awaitable[_T]]) -> _T:
        """Run `function(channel)` on the channel's event loop with the async channel and
        return its result: how sync code drives a session or a build over this channel."""
        channel = self._live()

        async def call() -> _T:
            return await function(channel)

        return self._run_call(call())

    def _live(self) -> AsyncControlChannel:
        channel = self._channel
        if channel is None or self._loop is None or not self._thread.is_alive():
            raise StreamError(f"the Control API channel to {self._address} is closed")
        return channel

    def _run_call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        loop = self._loop
        try:
            self._live()
            assert loop is not None
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except (StreamError, RuntimeError):
            # RuntimeError: the loop closed after the check.
            coroutine.close()
            raise StreamError(f"the Control API channel to {self._address} is closed") from None
        try:
            return future.result()
        except BaseException:
            # An interrupt in the caller's thread cancels the call on the loop.
            future.cancel()
            raise

    def unary(
        self,
        method: str,
        request: bytes,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> bytes:
        """Call `method` with one request and return its one reply (see the async twin)."""
        channel = self._live()
        return self._run_call(channel.unary(method, request, timeout=timeout, metadata=metadata))

    def server_stream(
        self,
        method: str,
        request: bytes,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> SyncServerStream:
        """Call `method` with one request; iterate over the replies. Closing the returned
        stream (or leaving its `with` block) before the end cancels the call."""
        stream = self._live().server_stream(method, request, timeout=timeout, metadata=metadata)
        return SyncServerStream(self, stream)

    def close(self) -> None:
        """End every call, the connection and the thread (bounded by a few seconds)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_CLOSE_TIMEOUT * 2)
        self._channel = None

    def __enter__(self) -> ControlChannel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncServerStream:
    """The replies of a server-streaming call for sync code; `close()` cancels it."""

    def __init__(self, owner: ControlChannel, stream: ServerStream) -> None:
        self._owner = owner
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            message = self._owner._run_call(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        return message

    def close(self) -> None:
        """Cancel the call if it has not ended."""
        with contextlib.suppress(StreamError):
            self._owner._run_call(self._stream.aclose())

    def __enter__(self) -> SyncServerStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
