"""Serving a session: the asyncio loop around `GrpcServerConnection` and the call objects
handlers see.

Why asyncio for both clients: a session must read the connection at all times (the engine's
health check gets no answer otherwise and drops the session after 10 s), write replies as
flow control allows, and run several long calls at once (file sync, ssh forwarding). One
event loop does that without locks around the h2 state machine, and the same code serves
`AsyncClient` (a task on the caller's loop) and `Client` (a private loop in a thread).

One reader task feeds incoming bytes to the protocol and starts a task per call; one writer
task sends whatever the protocol has queued. Health checks are answered by the reader itself,
so a busy handler can never delay them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

from buildsdk._grpc import server as _grpc
from buildsdk._grpc.status import GrpcError, Status
from buildsdk.session._messages import HealthCheckResponse

__all__ = ["Call", "GrpcError", "Handler", "SessionServer", "Stream"]

logger = logging.getLogger("buildsdk.session")

HEALTH_CHECK: Final = "/grpc.health.v1.Health/Check"
_HIGH_WATER: Final = 1024 * 1024
_READ_SIZE: Final = 256 * 1024


class Stream(Protocol):
    """The byte stream a session runs on (httpcore's async network streams fit)."""

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read up to `max_bytes`; b"" at the end of the stream."""
        ...

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write all of `buffer`."""
        ...

    async def aclose(self) -> None:
        """Close the stream."""
        ...


class Call:
    """One gRPC call as a handler sees it: its metadata, incoming messages and replies."""

    def __init__(
        self,
        server: SessionServer,
        stream_id: int,
        method: str,
        metadata: Mapping[str, tuple[str, ...]],
    ) -> None:
        self._server = server
        self.stream_id = stream_id
        self.method = method
        self.metadata = metadata
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()

    def first(self, key: str) -> str | None:
        """The first value of a metadata key, or None."""
        values = self.metadata.get(key)
        return values[0] if values else None

    async def recv(self) -> bytes | None:
        """The next request message, or None once the engine sent its last one."""
        return await self._inbox.get()

    async def recv_one(self) -> bytes:
        """The single request message of a unary call (empty if none was sent)."""
        message = await self.recv()
        return message if message is not None else b""

    async def send(self, message: bytes) -> None:
        """Queue a reply message; waits while too much is queued for flow control."""
        await self._server._send(self.stream_id, message)


Handler = Callable[[Call], Awaitable[None]]
"""A coroutine serving one call: reads with `recv`, replies with `send`, raises `GrpcError`."""


class SessionServer:
    """Serves gRPC calls from the engine over one upgraded connection until it closes."""

    def __init__(self, stream: Stream, handlers: Mapping[str, Handler]) -> None:
        self._stream = stream
        self._handlers = dict(handlers)
        self._protocol = _grpc.GrpcServerConnection()
        self._calls: dict[int, Call] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake_writer = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = False
        self._stopping = False
        self.error: BaseException | None = None

    async def serve(self) -> None:
        """Answer calls until the engine hangs up or the task is cancelled; then clean up."""
        writer = asyncio.ensure_future(self._writer())
        try:
            self._wake_writer.set()
            while True:
                data = await self._stream.read(_READ_SIZE)
                if not data:
                    break
                self._dispatch(self._protocol.receive_data(data))
                self._wake_writer.set()
                if self._protocol.closed:
                    break
        except (OSError, Exception) as exc:
            if not self._closing:
                self.error = exc
                logger.debug("session connection failed: %r", exc)
        finally:
            self._closing = True
            for task in list(self._tasks):
                task.cancel()
            writer.cancel()
            await asyncio.gather(*self._tasks, writer, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._stream.aclose()

    def _dispatch(self, events: list[_grpc.GrpcEvent]) -> None:
        for event in events:
            if isinstance(event, _grpc.CallStarted):
                self._start_call(event)
            elif isinstance(event, _grpc.MessageReceived):
                call = self._calls.get(event.stream_id)
                if call is not None:
                    call._inbox.put_nowait(event.message)
            elif isinstance(event, _grpc.CallEnded):
                call = self._calls.get(event.stream_id)
                if call is not None:
                    call._inbox.put_nowait(None)
            elif isinstance(event, _grpc.CallReset):
                self._cancel_call(event.stream_id)
            elif isinstance(event, _grpc.WindowOpened):
                self._wake_writer.set()

    def _start_call(self, event: _grpc.CallStarted) -> None:
        if event.method == HEALTH_CHECK:
            # Answered here, by the reader: no handler can hold it up.
            self._protocol.send_message(event.stream_id, HealthCheckResponse().encode())
            self._protocol.finish(event.stream_id, Status.OK)
            return
        handler = self._handlers.get(event.method)
        if handler is None:
            self._protocol.finish(
                event.stream_id, Status.UNIMPLEMENTED, f"unknown method {event.method}"
            )
            return
        call = Call(self, event.stream_id, event.method, event.metadata)
        self._calls[event.stream_id] = call
        task = asyncio.ensure_future(self._run(handler, call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancel_call(self, stream_id: int) -> None:
        call = self._calls.pop(stream_id, None)
        if call is None:
            return
        for task in list(self._tasks):
            if getattr(task, "_buildsdk_stream", None) == stream_id:
                task.cancel()

    async def _run(self, handler: Handler, call: Call) -> None:
        task = asyncio.current_task()
        if task is not None:
            task._buildsdk_stream = call.stream_id  # type: ignore[attr-defined]
        status, message = Status.OK, ""
        try:
            await handler(call)
        except GrpcError as exc:
            status, message = exc.status, exc.message
        except asyncio.CancelledError:
            status, message = Status.CANCELLED, "cancelled"
            raise
        except Exception as exc:
            logger.debug("session handler %s failed", call.method, exc_info=True)
            status, message = Status.INTERNAL, f"{type(exc).__name__}: {exc}"
        finally:
            self._calls.pop(call.stream_id, None)
            self._protocol.finish(call.stream_id, status, message)
            self._wake_writer.set()

    async def _send(self, stream_id: int, message: bytes) -> None:
        protocol = self._protocol
        if not protocol.is_open(stream_id):
            raise GrpcError(Status.CANCELLED, "the engine ended this call")
        protocol.send_message(stream_id, message)
        self._wake_writer.set()
        while protocol.is_open(stream_id) and protocol.buffered(stream_id) > _HIGH_WATER:
            self._room.clear()
            await self._room.wait()
            if protocol.buffered(stream_id) > _HIGH_WATER:
                # Still full: flow control is closed; wait for the engine's WINDOW_UPDATE,
                # which wakes the writer, which wakes us.
                continue

    async def _writer(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            data = self._protocol.data_to_send()
            # Producers waiting for their queue to drain look again.
            self._room.set()
            if data:
                await self._stream.write(data)
            if self._stopping:
                await self._halt_reading()
                return

    async def _halt_reading(self) -> None:
        # The read is ended by shutting the socket down (or closing a stream that has no
        # socket, such as an ssh process), never by cancelling it: a cancelled read on
        # anyio's unix socket stream can race with the socket becoming readable.
        sock = self._stream_socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            return
        with contextlib.suppress(Exception):
            await self._stream.aclose()

    def _stream_socket(self) -> socket.socket | None:
        get_extra_info = getattr(self._stream, "get_extra_info", None)
        if get_extra_info is None:
            return None
        sock = get_extra_info("socket")
        return sock if isinstance(sock, socket.socket) else None

    @property
    def stopping(self) -> bool:
        """Whether `stop()` was called (else an end of `serve()` means the session died)."""
        return self._stopping

    def stop(self) -> None:
        """Say GOAWAY, then end the connection; `serve()` returns soon after."""
        if self._stopping:
            return
        self._stopping = True
        self._closing = True
        self._protocol.close()
        self._wake_writer.set()
