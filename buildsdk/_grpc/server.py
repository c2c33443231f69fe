"""The server side of gRPC over HTTP/2, sans-I/O: bytes in, call events out; replies in, bytes out.

Theory of operation: after `POST /session` is upgraded, the engine is the HTTP/2 client and
the gRPC caller, and buildsdk answers. `GrpcServerConnection` wraps `h2`'s state machine
and adds what gRPC puts on top of HTTP/2: the request's method and metadata, the
length-prefixed message framing (one message may span DATA frames, one DATA frame may hold
several messages), the reply headers, and the trailers that carry `grpc-status`.

It does no I/O. The caller feeds what the socket delivered to `receive_data()`, acts on the
returned events, queues replies with `send_message()` / `finish()`, and writes whatever
`data_to_send()` returns. Replies wait in a per-call buffer until HTTP/2 flow control lets
them out; `buffered()` tells a producer when to slow down, and a `WindowOpened` event when
the engine granted more room. Received data is acknowledged as soon as it is delivered,
because every session service reads its requests promptly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from buildsdk._grpc.framing import (
    FramingError,
    MessageDeframer,
    encode_grpc_message,
    frame_message,
    parse_timeout,
)
from buildsdk._grpc.h2conn import InboundFrames
from buildsdk._grpc.status import Status

__all__ = [
    "CallEnded",
    "CallReset",
    "CallStarted",
    "ConnectionEnded",
    "GrpcEvent",
    "GrpcServerConnection",
    "MessageReceived",
    "WindowOpened",
]

_RECEIVE_WINDOW: Final = 4 * 1024 * 1024
_RESERVED_HEADERS: Final = frozenset(
    {"content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "user-agent"}
)


@dataclass(frozen=True)
class CallStarted:
    """The engine opened a call: its stream, method path, metadata and deadline (seconds)."""

    stream_id: int
    method: str
    metadata: Mapping[str, tuple[str, ...]]
    timeout: float | None


@dataclass(frozen=True)
class MessageReceived:
    """One whole gRPC request message arrived on a call."""

    stream_id: int
    message: bytes


@dataclass(frozen=True)
class CallEnded:
    """The engine half-closed a call: no more request messages will come."""

    stream_id: int


@dataclass(frozen=True)
class CallReset:
    """The engine cancelled a call (RST_STREAM) or broke its framing; stop working on it."""

    stream_id: int


@dataclass(frozen=True)
class WindowOpened:
    """The engine granted more flow-control room: queued replies can go out."""


@dataclass(frozen=True)
class ConnectionEnded:
    """The engine sent GOAWAY: the session is over."""

    error_code: int


GrpcEvent = CallStarted | MessageReceived | CallEnded | CallReset | WindowOpened | ConnectionEnded
"""Everything `receive_data()` can report."""


@dataclass
class _Call:
    inbound: MessageDeframer = field(default_factory=MessageDeframer)
    outbound: bytearray = field(default_factory=bytearray)
    headers_sent: bool = False
    trailers: list[tuple[str, str]] | None = None
    done: bool = False
    receiving: bool = True


class GrpcServerConnection:
    """The server side of one HTTP/2 connection that carries gRPC calls (see module doc)."""

    def __init__(self) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _RECEIVE_WINDOW,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000,
            },
        )
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(_RECEIVE_WINDOW)
        self._calls: dict[int, _Call] = {}
        self._inbound = InboundFrames(server=True)
        self.closed = False

    # -- input --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[GrpcEvent]:
        """Feed bytes read from the connection; return the gRPC events they complete.

        A protocol error ends the connection (GOAWAY is queued) and is reported as
        `ConnectionEnded`.
        """
        events: list[GrpcEvent] = []
        opened = False
        limit = self._h2.max_inbound_frame_size
        for segment in self._inbound.split(data, self._takes_data, limit):
            if isinstance(segment, tuple):
                events.extend(self._messages(*segment))
                continue
            try:
                h2_events = self._h2.receive_data(segment)
            except h2.exceptions.ProtocolError:
                self._h2.close_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
                self.closed = True
                return [*events, ConnectionEnded(int(h2.errors.ErrorCodes.PROTOCOL_ERROR))]
            for event in h2_events:
                if isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                    opened = True
                events.extend(self._translate(event))
        if opened:
            events.append(WindowOpened())
        return events

    def _takes_data(self, stream_id: int) -> bool:
        """Whether a DATA frame on `stream_id` may bypass h2: the call is open both ways."""
        call = self._calls.get(stream_id)
        return call is not None and call.receiving and not self.closed

    def _translate(self, event: h2.events.Event) -> list[GrpcEvent]:
        if isinstance(event, h2.events.RequestReceived):
            return self._started(event)
        if isinstance(event, h2.events.DataReceived):
            return self._data(event)
        if isinstance(event, h2.events.StreamEnded) and event.stream_id is not None:
            ended = self._calls.get(event.stream_id)
            if ended is not None:
                ended.receiving = False
                return [CallEnded(event.stream_id)]
            return []
        if isinstance(event, h2.events.StreamReset) and event.stream_id is not None:
            call = self._calls.pop(event.stream_id, None)
            return [CallReset(event.stream_id)] if call is not None else []
        if isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True
            return [ConnectionEnded(int(event.error_code or 0))]
        return []

    def _started(self, event: h2.events.RequestReceived) -> list[GrpcEvent]:
        stream_id = event.stream_id
        assert stream_id is not None
        method = ""
        timeout: float | None = None
        metadata: dict[str, list[str]] = {}
        for raw_name, raw_value in event.headers or ():
            name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
            if name == ":path":
                method = value
            elif name == "grpc-timeout":
                timeout = parse_timeout(value)
            elif not name.startswith(":") and name not in _RESERVED_HEADERS:
                metadata.setdefault(name, []).append(value)
        self._calls[stream_id] = _Call()
        frozen = {name: tuple(values) for name, values in metadata.items()}
        return [CallStarted(stream_id, method, frozen, timeout)]

    def _data(self, event: h2.events.DataReceived) -> list[GrpcEvent]:
        stream_id = event.stream_id
        assert stream_id is not None
        if event.flow_controlled_length:
            self._h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
        return self._messages(stream_id, event.data or b"")

    def _messages(self, stream_id: int, data: bytes) -> list[GrpcEvent]:
        call = self._calls.get(stream_id)
        if call is None:
            return []
        try:
            messages = call.inbound.feed(data)
        except FramingError as exc:
            self.finish(stream_id, Status.RESOURCE_EXHAUSTED, str(exc))
            return [CallReset(stream_id)]
        return [MessageReceived(stream_id, message) for message in messages]

    # -- output -------------------------------------------------------------------------

    def send_message(self, stream_id: int, message: bytes) -> None:
        """Queue one reply message on a call (the reply headers go first, once)."""
        call = self._calls.get(stream_id)
        if call is None or call.trailers is not None:
            return
        self._ensure_headers(stream_id, call)
        # Flushed by data_to_send(): small messages queued together share DATA frames.
        call.outbound += frame_message(message)

    def finish(self, stream_id: int, status: int, message: str = "") -> None:
        """End a call with `status` (trailers after any queued messages).

        With no message sent yet this is a trailers-only reply, as gRPC sends errors.
        """
        call = self._calls.get(stream_id)
        if call is None or call.trailers is not None:
            return
        trailers = [("grpc-status", str(status))]
        if message:
            trailers.append(("grpc-message", encode_grpc_message(message)))
        if not call.headers_sent and not call.outbound:
            call.headers_sent = True
            call.trailers = []
            headers = [(":status", "200"), ("content-type", "application/grpc"), *trailers]
            self._send_headers(stream_id, headers, end_stream=True)
            self._forget(stream_id)
            return
        call.trailers = trailers

    def buffered(self, stream_id: int) -> int:
        """Bytes queued on a call that flow control has not let out yet."""
        call = self._calls.get(stream_id)
        return len(call.outbound) if call is not None else 0

    def is_open(self, stream_id: int) -> bool:
        """Whether the call still exists (not finished by us, not reset by the engine)."""
        return stream_id in self._calls

    def close(self) -> None:
        """Queue a GOAWAY: no new calls; the caller closes the socket after writing."""
        if not self.closed:
            self.closed = True
            self._h2.close_connection()

    def data_to_send(self) -> bytes:
        """The bytes to write to the connection now (may be empty).

        Queued replies go out here, as far as flow control allows.
        """
        self._flush_pending()
        return self._h2.data_to_send() + self._inbound.window_updates(self._calls)

    # -- internals ----------------------------------------------------------------------

    def _ensure_headers(self, stream_id: int, call: _Call) -> None:
        if not call.headers_sent:
            call.headers_sent = True
            headers = [(":status", "200"), ("content-type", "application/grpc")]
            self._send_headers(stream_id, headers, end_stream=False)

    def _send_headers(
        self, stream_id: int, headers: list[tuple[str, str]], *, end_stream: bool
    ) -> None:
        try:
            self._h2.send_headers(stream_id, headers, end_stream=end_stream)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._forget(stream_id)

    def _forget(self, stream_id: int) -> None:
        self._calls.pop(stream_id, None)

    def _flush_pending(self) -> bool:
        """Move queued reply bytes into h2 as far as flow control allows.

        Returns True when some call's buffer shrank.
        """
        progressed = False
        for stream_id, call in list(self._calls.items()):
            while call.outbound:
                try:
                    window = self._h2.local_flow_control_window(stream_id)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    self._forget(stream_id)
                    break
                size = min(window, self._h2.max_outbound_frame_size, len(call.outbound))
                if size <= 0:
                    break
                chunk = bytes(call.outbound[:size])
                try:
                    self._h2.send_data(stream_id, chunk)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    self._forget(stream_id)
                    break
                del call.outbound[:size]
                progressed = True
            if stream_id in self._calls and not call.outbound and call.trailers:
                self._send_headers(stream_id, call.trailers, end_stream=True)
                self._forget(stream_id)
                progressed = True
        return progressed
