"""The client side of gRPC over HTTP/2, sans-I/O: calls out, bytes out; bytes in, events out.

Theory of operation: after `POST /grpc` is upgraded, buildsdk is the HTTP/2 client and the
engine's BuildKit controller answers. `GrpcClientConnection` wraps `h2`'s client state
machine and adds gRPC: `start_call()` sends the request headers (method path, deadline,
metadata), `send_message()` queues length-prefixed messages, `end_call()` half-closes and
`cancel()` resets the stream with CANCEL. What the engine sends comes back from
`receive_data()` as `ResponseStarted`, `ResponseMessage` and, exactly once per call,
`CallFinished` with the status from the trailers (or from a trailers-only answer, a reset,
a non-gRPC answer or the end of the connection).

It does no I/O: the caller writes whatever `data_to_send()` returns. Requests wait in a
per-call buffer until HTTP/2 flow control lets them out; `buffered()` tells a sender when to
slow down and `SendWindowOpened` when the engine granted more room. Received data is
acknowledged when it is delivered (the caller queues messages itself), PINGs and SETTINGS
are acknowledged by `h2`.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Mapping, Sequence
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
    decode_grpc_message,
    encode_timeout,
    frame_message,
)
from buildsdk._grpc.h2conn import InboundFrames
from buildsdk._grpc.status import RpcStatus, Status, decode_status_details, status_from_http

__all__ = [
    "CallFinished",
    "CallLimitReached",
    "ConnectionClosed",
    "GrpcClientConnection",
    "GrpcClientEvent",
    "Metadata",
    "ResponseMessage",
    "ResponseStarted",
    "SendWindowOpened",
]

_RECEIVE_WINDOW: Final = 4 * 1024 * 1024
_RESERVED: Final = frozenset(
    {"content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "user-agent"}
)
_METADATA_NAME: Final = re.compile(r"[0-9a-z_.-]+")
_STREAM_ERRORS: Final = (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError)
_STATUS_HEADERS: Final = frozenset({"grpc-status", "grpc-message", "grpc-status-details-bin"})

Metadata = Sequence[tuple[str, str | bytes]]
"""Call metadata: lower-case names; values of names ending in `-bin` are bytes."""


class CallLimitReached(Exception):
    """The engine's MAX_CONCURRENT_STREAMS is reached: no new call until one ends."""


@dataclass(frozen=True)
class ResponseStarted:
    """The engine answered a call with response headers (its custom metadata here)."""

    stream_id: int
    metadata: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class ResponseMessage:
    """One whole response message arrived on a call."""

    stream_id: int
    message: bytes


@dataclass(frozen=True)
class CallFinished:
    """A call ended: `code` 0 is success; `details` is the decoded `grpc-status-details-bin`
    (None when the engine sent none, or sent one that is not a `google.rpc.Status`).

    Reported once per call, also for calls ended by a reset, a broken answer or the end of
    the connection (then with the status gRPC prescribes for that case).
    """

    stream_id: int
    code: int
    message: str
    details: RpcStatus | None = None
    trailers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SendWindowOpened:
    """The engine granted more flow-control room: queued requests can go out."""


@dataclass(frozen=True)
class ConnectionClosed:
    """The engine sent GOAWAY or broke the protocol: no new calls can start."""

    error_code: int
    last_stream_id: int
    reason: str


GrpcClientEvent = (
    ResponseStarted | ResponseMessage | CallFinished | SendWindowOpened | ConnectionClosed
)
"""Everything `receive_data()` can report."""


@dataclass
class _Call:
    method: str
    outbound: bytearray = field(default_factory=bytearray)
    half_close: bool = False
    local_end_sent: bool = False
    headers_received: bool = False
    deframer: MessageDeframer = field(default_factory=MessageDeframer)


def _pairs(headers: Sequence[tuple[bytes | str, bytes | str]] | None) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for raw_name, raw_value in headers or ():
        name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode("utf-8", "replace") if isinstance(raw_value, bytes) else raw_value
        pairs.append((name, value))
    return pairs


def _collect(pairs: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    collected: dict[str, list[str]] = {}
    for name, value in pairs:
        if not name.startswith(":"):
            collected.setdefault(name, []).append(value)
    return {name: tuple(values) for name, values in collected.items()}


def _encode_metadata(metadata: Metadata) -> list[tuple[str, str]]:
    encoded: list[tuple[str, str]] = []
    for name, value in metadata:
        if not _METADATA_NAME.fullmatch(name) or name.startswith("grpc-") or name in _RESERVED:
            raise ValueError(f"{name!r} cannot be sent as gRPC metadata")
        if name.endswith("-bin"):
            if not isinstance(value, bytes):
                raise ValueError(f"metadata {name!r} ends in -bin: its value must be bytes")
            encoded.append((name, base64.b64encode(value).rstrip(b"=").decode("ascii")))
            continue
        if not isinstance(value, str) or not all(" " <= c <= "~" for c in value):
            raise ValueError(f"metadata {name!r} must be printable ASCII text")
        encoded.append((name, value))
    return encoded


class GrpcClientConnection:
    """The client side of one HTTP/2 connection that carries gRPC calls (see module doc)."""

    def __init__(self, *, user_agent: str, authority: str = "localhost") -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _RECEIVE_WINDOW,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(_RECEIVE_WINDOW)
        self._user_agent = user_agent
        self._authority = authority
        self._calls: dict[int, _Call] = {}
        self._inbound = InboundFrames(server=False)
        self.closed = False
        """True once GOAWAY was sent or received: `start_call()` then refuses."""

    # -- calls --------------------------------------------------------------------------

    def start_call(
        self, method: str, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> int:
        """Send the request headers of a call to `method` (`/package.Service/Method`).

        Returns the call's stream id. Raises `ValueError` for a malformed method or metadata,
        `ConnectionError` once the connection is closing, `CallLimitReached` when the engine's
        limit of concurrent calls is reached.
        """
        if not method.startswith("/") or method.count("/") != 2:
            raise ValueError(f"a gRPC method path looks like /package.Service/Method: {method!r}")
        if self.closed:
            raise ConnectionError("the gRPC connection is closing; no new call can start")
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", self._authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", self._user_agent),
        ]
        if timeout is not None:
            headers.append(("grpc-timeout", encode_timeout(timeout)))
        headers += _encode_metadata(metadata or ())
        stream_id = self._h2.get_next_available_stream_id()
        try:
            self._h2.send_headers(stream_id, headers)
        except h2.exceptions.TooManyStreamsError:
            limit = self._h2.remote_settings.max_concurrent_streams
            raise CallLimitReached(
                f"the engine allows at most {limit} calls at once on one connection"
            ) from None
        self._calls[stream_id] = _Call(method)
        return stream_id

    def send_message(self, stream_id: int, message: bytes) -> None:
        """Queue one request message (sent by `data_to_send()` as flow control allows)."""
        call = self._calls.get(stream_id)
        if call is None:
            raise ValueError(f"call {stream_id} has ended")
        if call.half_close or call.local_end_sent:
            raise ValueError(f"call {stream_id} was already half-closed")
        call.outbound += frame_message(message)

    def end_call(self, stream_id: int) -> None:
        """Half-close a call: no more request messages (sent after the queued ones)."""
        call = self._calls.get(stream_id)
        if call is not None:
            call.half_close = True

    def cancel(self, stream_id: int) -> CallFinished | None:
        """Reset a call with RST_STREAM CANCEL; returns its `CallFinished` (None if it had
        already ended). Queued requests of the call are dropped."""
        call = self._calls.pop(stream_id, None)
        if call is None:
            return None
        with contextlib.suppress(*_STREAM_ERRORS):
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        return CallFinished(stream_id, Status.CANCELLED, "the call was cancelled")

    def buffered(self, stream_id: int) -> int:
        """Request bytes of a call that flow control has not let out yet."""
        call = self._calls.get(stream_id)
        return len(call.outbound) if call is not None else 0

    def is_open(self, stream_id: int) -> bool:
        """Whether the call has not finished yet."""
        return stream_id in self._calls

    def open_calls(self) -> list[int]:
        """The stream ids of every call that has not finished."""
        return list(self._calls)

    def close(self) -> None:
        """Queue a GOAWAY: the caller closes the socket after writing it."""
        if not self.closed:
            self.closed = True
            self._h2.close_connection()

    def connection_lost(self, reason: str) -> list[CallFinished]:
        """The socket ended: finish every open call with UNAVAILABLE and `reason`."""
        self.closed = True
        finished = [CallFinished(sid, Status.UNAVAILABLE, reason) for sid in self._calls]
        self._calls.clear()
        return finished

    # -- input --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[GrpcClientEvent]:
        """Feed bytes read from the connection; return the gRPC events they complete.

        A protocol error ends the connection (GOAWAY is queued): every open call finishes
        with INTERNAL and `ConnectionClosed` follows.
        """
        events: list[GrpcClientEvent] = []
        opened = False
        limit = self._h2.max_inbound_frame_size
        for segment in self._inbound.split(data, self._takes_data, limit):
            if isinstance(segment, tuple):
                events.extend(self._messages(*segment))
                continue
            try:
                h2_events = self._h2.receive_data(segment)
            except h2.exceptions.ProtocolError as exc:
                self._h2.close_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
                self.closed = True
                reason = f"the engine broke the HTTP/2 protocol: {exc}"
                events += [CallFinished(sid, Status.INTERNAL, reason) for sid in self._calls]
                self._calls.clear()
                code = int(h2.errors.ErrorCodes.PROTOCOL_ERROR)
                events.append(ConnectionClosed(code, 0, reason))
                return events
            for event in h2_events:
                if isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                    opened = True
                events.extend(self._translate(event))
        if opened:
            events.append(SendWindowOpened())
        return events

    def _takes_data(self, stream_id: int) -> bool:
        """Whether a DATA frame on `stream_id` may bypass h2: a call whose answer started."""
        call = self._calls.get(stream_id)
        return call is not None and call.headers_received and not self.closed

    def _translate(self, event: h2.events.Event) -> list[GrpcClientEvent]:
        stream_id = getattr(event, "stream_id", None)
        if isinstance(event, h2.events.ResponseReceived) and stream_id is not None:
            return self._response(stream_id, _pairs(event.headers), event.stream_ended)
        if isinstance(event, h2.events.DataReceived) and stream_id is not None:
            return self._data(stream_id, event)
        if isinstance(event, h2.events.TrailersReceived) and stream_id is not None:
            return self._trailers(stream_id, _pairs(event.headers))
        if isinstance(event, h2.events.StreamEnded) and stream_id is not None:
            # Trailers end a call before this arrives; an end without them is broken.
            return self._finish(
                stream_id, Status.INTERNAL, "the engine ended the call without a status"
            )
        if isinstance(event, h2.events.StreamReset) and stream_id is not None:
            return self._reset(stream_id, int(event.error_code or 0))
        if isinstance(event, h2.events.ConnectionTerminated):
            return self._goaway(event)
        return []

    def _response(
        self, stream_id: int, pairs: list[tuple[str, str]], ended: object
    ) -> list[GrpcClientEvent]:
        call = self._calls.get(stream_id)
        if call is None:
            return []
        call.headers_received = True
        status = next((value for name, value in pairs if name == ":status"), "")
        content_type = next((value for name, value in pairs if name == "content-type"), "")
        if status != "200":
            code = status_from_http(int(status)) if status.isdigit() else Status.UNKNOWN
            return self._finish(
                stream_id, code, f"the engine answered HTTP {status} to {call.method}", reset=True
            )
        if not content_type.startswith("application/grpc"):
            return self._finish(
                stream_id,
                Status.UNKNOWN,
                f"the engine answered {call.method} with "
                f"{content_type or 'no content type'}, not gRPC",
                reset=True,
            )
        if any(name == "grpc-status" for name, _ in pairs):
            # Trailers-only: the headers carry the status, and nothing else comes.
            return self._trailers(stream_id, pairs)
        if ended:
            return self._finish(
                stream_id, Status.INTERNAL, "the engine ended the call without a status"
            )
        metadata = {
            k: v for k, v in _collect(pairs).items() if k not in ("content-type", "trailer")
        }
        return [ResponseStarted(stream_id, metadata)]

    def _data(self, stream_id: int, event: h2.events.DataReceived) -> list[GrpcClientEvent]:
        if event.flow_controlled_length:
            with contextlib.suppress(*_STREAM_ERRORS):
                self._h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
        return self._messages(stream_id, event.data or b"")

    def _messages(self, stream_id: int, data: bytes) -> list[GrpcClientEvent]:
        call = self._calls.get(stream_id)
        if call is None:
            return []
        try:
            messages = call.deframer.feed(data)
        except FramingError as exc:
            return self._finish(stream_id, Status.RESOURCE_EXHAUSTED, str(exc), reset=True)
        return [ResponseMessage(stream_id, message) for message in messages]

    def _trailers(self, stream_id: int, pairs: list[tuple[str, str]]) -> list[GrpcClientEvent]:
        call = self._calls.get(stream_id)
        if call is None:
            return []
        trailers = _collect(pairs)
        raw_status = trailers.get("grpc-status", ("",))[0]
        message = decode_grpc_message(trailers.get("grpc-message", ("",))[0])
        if not raw_status.isdigit():
            code, message = Status.UNKNOWN, f"the engine sent no valid grpc-status ({raw_status!r})"
        else:
            code = int(raw_status)
        if code == Status.OK and call.deframer.pending:
            code, message = Status.INTERNAL, "the engine ended the call inside a message"
        details: RpcStatus | None = None
        raw_details = trailers.get("grpc-status-details-bin")
        if raw_details:
            try:
                details = decode_status_details(raw_details[0])
            except ValueError:
                details = None
        rest = {
            k: v for k, v in trailers.items() if k not in _STATUS_HEADERS and k != "content-type"
        }
        del self._calls[stream_id]
        return [CallFinished(stream_id, code, message, details, rest)]

    def _reset(self, stream_id: int, error_code: int) -> list[GrpcClientEvent]:
        # gRPC's mapping of HTTP/2 reset codes to statuses.
        if error_code == h2.errors.ErrorCodes.CANCEL:
            code = Status.CANCELLED
        elif error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
            code = Status.UNAVAILABLE
        elif error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM:
            code = Status.RESOURCE_EXHAUSTED
        elif error_code == h2.errors.ErrorCodes.INADEQUATE_SECURITY:
            code = Status.PERMISSION_DENIED
        else:
            code = Status.INTERNAL
        try:
            name = h2.errors.ErrorCodes(error_code).name
        except ValueError:
            name = str(error_code)
        return self._finish(stream_id, code, f"the engine reset the call ({name})")

    def _goaway(self, event: h2.events.ConnectionTerminated) -> list[GrpcClientEvent]:
        self.closed = True
        last = int(event.last_stream_id or 0)
        debug = (event.additional_data or b"").decode("utf-8", "replace")
        code = int(event.error_code or 0)
        reason = f"the engine closed the connection (GOAWAY {code}{': ' + debug if debug else ''})"
        events: list[GrpcClientEvent] = []
        # Calls the engine never started can be retried elsewhere; the others go on
        # unless the engine closed because of an error.
        for stream_id in list(self._calls):
            if stream_id > last or code != 0:
                events.extend(self._finish(stream_id, Status.UNAVAILABLE, reason))
        events.append(ConnectionClosed(code, last, reason))
        return events

    def _finish(
        self, stream_id: int, code: int, message: str, *, reset: bool = False
    ) -> list[GrpcClientEvent]:
        if self._calls.pop(stream_id, None) is None:
            return []
        if reset:
            with contextlib.suppress(*_STREAM_ERRORS):
                self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        return [CallFinished(stream_id, code, message)]

    # -- output -------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes to write to the connection now (may be empty).

        Queued requests and half-closes go out here, as far as flow control allows.
        """
        self._flush_pending()
        return self._h2.data_to_send() + self._inbound.window_updates(self._calls)

    def _flush_pending(self) -> None:
        for stream_id, call in list(self._calls.items()):
            while call.outbound:
                try:
                    window = self._h2.local_flow_control_window(stream_id)
                except _STREAM_ERRORS:
                    call.outbound.clear()
                    break
                size = min(window, self._h2.max_outbound_frame_size, len(call.outbound))
                if size <= 0:
                    break
                try:
                    self._h2.send_data(stream_id, bytes(call.outbound[:size]))
                except _STREAM_ERRORS:
                    call.outbound.clear()
                    break
                del call.outbound[:size]
            if call.half_close and not call.outbound and not call.local_end_sent:
                call.local_end_sent = True
                with contextlib.suppress(*_STREAM_ERRORS):
                    self._h2.end_stream(stream_id)
