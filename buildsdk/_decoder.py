"""The decoder that turns the engine's build-stream bytes into events (`events.py`).

Theory of operation. `POST /build` answers with a stream of JSON objects, each ended by
`"\\r\\n"` (a JSON text never contains a raw newline, so lines are messages). The bytes
arrive in arbitrary pieces: a message may be split across reads, a read may hold hundreds
of messages, a multi-byte UTF-8 character may be cut in two. The decoder here is sans-I/O:
`feed(bytes)` returns whatever complete messages the bytes finish, `flush()` says whether
the stream ended cleanly.

Framing (`_Framer`) is one implementation shared by `MessageDecoder` (raw JSON objects, for
code that wants the engine's dicts) and `EventDecoder` (typed events). Its fast path splits on
`b"\\n"` and decodes each line whole; only when a line is not a single JSON value (several
objects with no newline between them, which the engine never sends but a proxy might) does it
fall back to scanning objects one after another. A piece that ends in `}` without a newline
is also tried, so a stream with no separators at all still yields events as they arrive.

Messages come from `json.loads`, so their shapes are checked here with cheap `type()` tests
and the events are built with `events.trusted()`, without re-validation; a message whose
shape is not the expected one becomes an `UnknownEvent`. BuildKit's progress arrives as
`moby.buildkit.trace` aux payloads, decoded by `buildkit/status.py`.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable
from typing import Any

from buildsdk.buildkit.status import decode_trace
from buildsdk.errors import StreamError
from buildsdk.events import (
    AuxEvent,
    BuildEvent,
    ErrorEvent,
    ImageIdEvent,
    ProgressDetail,
    StatusEvent,
    UnknownEvent,
    log_event,
    trusted,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "EventDecoder",
    "MessageDecoder",
    "RawMessages",
    "event_from_message",
]


def _opt_int(value: object) -> int | None:
    return value if type(value) is int else None


def _progress_detail(value: object) -> ProgressDetail | None:
    if type(value) is not dict:
        return None
    hidecounts = value.get("hidecounts")
    units = value.get("units")
    return trusted(
        ProgressDetail,
        {
            "current": _opt_int(value.get("current")),
            "total": _opt_int(value.get("total")),
            "start": _opt_int(value.get("start")),
            "hidecounts": hidecounts if type(hidecounts) is bool else None,
            "units": units if type(units) is str else None,
        },
    )


def _error_event(msg: dict[str, Any]) -> BuildEvent:
    message: object = None
    code: object = None
    detail = msg.get("errorDetail")
    if type(detail) is dict:
        message = detail.get("message")
        code = detail.get("code")
    if type(message) is not str or not message:
        message = msg.get("error")
    if type(message) is not str:
        return trusted(UnknownEvent, {"kind": "unknown", "raw": msg})
    return trusted(
        ErrorEvent, {"kind": "error", "message": message, "code": _opt_int(code), "source": ""}
    )


def _aux_events(msg: dict[str, Any], out: list[BuildEvent]) -> None:
    aux = msg["aux"]
    ident = msg.get("id")
    if ident is not None and type(ident) is not str:
        out.append(trusted(UnknownEvent, {"kind": "unknown", "raw": msg}))
        return
    if ident == "moby.buildkit.trace" and type(aux) is str:
        out.extend(decode_trace(aux))
        return
    if (ident is None or ident == "moby.image.id") and type(aux) is dict:
        image_id = aux.get("ID")
        if type(image_id) is str:
            out.append(trusted(ImageIdEvent, {"kind": "image_id", "image_id": image_id}))
            return
    out.append(trusted(AuxEvent, {"kind": "aux", "id": ident, "aux": aux}))


def _append_events(msg: dict[str, Any], out: list[BuildEvent]) -> None:
    # Order of the checks follows how often each shape occurs in real streams.
    text = msg.get("stream")
    if type(text) is str and len(msg) == 1:
        out.append(log_event(text))
    elif "aux" in msg:
        _aux_events(msg, out)
    elif "errorDetail" in msg or "error" in msg:
        out.append(_error_event(msg))
    elif type(msg.get("status")) is str:
        ident = msg.get("id")
        progress = msg.get("progress")
        out.append(
            trusted(
                StatusEvent,
                {
                    "kind": "status",
                    "status": msg["status"],
                    "id": ident if type(ident) is str else None,
                    "progress_detail": _progress_detail(msg.get("progressDetail")),
                    "progress": progress if type(progress) is str else None,
                },
            )
        )
    elif type(text) is str:
        out.append(log_event(text))
    else:
        out.append(trusted(UnknownEvent, {"kind": "unknown", "raw": msg}))


def event_from_message(msg: dict[str, Any]) -> list[BuildEvent]:
    """Turn one decoded engine message into events (a BuildKit trace holds several).

    Raises `StreamError` only when a `moby.buildkit.trace` payload cannot be decoded; any other
    unexpected shape becomes an `UnknownEvent`.
    """
    out: list[BuildEvent] = []
    _append_events(msg, out)
    return out


_EXCERPT = 80

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The longest message the decoders buffer while waiting for its end (64 MiB); beyond it
the stream is refused with `StreamError`, so a broken engine or proxy cannot exhaust memory.
The engine's largest messages (BuildKit traces of a busy step) stay well under it."""


def _excerpt(data: bytes | str) -> str:
    size = len(data)
    unit = "bytes" if isinstance(data, bytes) else "characters"
    if size <= _EXCERPT:
        return repr(data)
    return f"{data[:_EXCERPT]!r}... ({size} {unit})"


_JSON = json.JSONDecoder()
_raw_decode = _JSON.raw_decode
# The scanner behind `raw_decode` (the C one when available), called without its wrapper:
# per message, the wrapper's checks cost more than decoding a short line.
# (typeshed declares the scanner's context argument with the wrong type.)
_scan_once: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_JSON)  # type: ignore[arg-type]
_WS = " \t\r\n"


def _scan_objects(text: str) -> tuple[list[Any], str]:
    """Decode consecutive JSON values from `text`; return them and the undecodable rest."""
    values: list[Any] = []
    pos = 0
    end = len(text)
    while True:
        while pos < end and text[pos] in _WS:
            pos += 1
        if pos == end:
            return values, ""
        try:
            value, pos = _raw_decode(text, pos)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            return values, text[pos:]
        values.append(value)


class _Pending:
    """The bytes of a message not ended yet, capped at `MAX_MESSAGE_BYTES`; shared by every
    framer, so no reader of the stream can be made to buffer without bound."""

    __slots__ = ("_pending", "_pending_size")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._pending_size = 0

    def _keep(self, data: bytes) -> None:
        """Hold `data` until its message ends, refusing a message that grows without bound."""
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > MAX_MESSAGE_BYTES:
            head = self._pending[0][:_EXCERPT]
            self._pending = []
            self._pending_size = 0
            raise StreamError(
                f"the engine sent a message longer than {MAX_MESSAGE_BYTES // (1024 * 1024)} "
                f"MiB without ending it: {_excerpt(head)}..."
            )


class RawMessages(_Pending):
    """Cuts a byte stream into its messages as the engine sent them: each line's bytes with
    their line ending, unparsed (docker-py's `decode=False`), under the same cap."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        """Return the lines `data` completes, each with its `\\n`."""
        lines = data.split(b"\n")
        rest = lines.pop()
        if lines:
            if self._pending:
                self._pending.append(lines[0])
                lines[0] = b"".join(self._pending)
                self._pending = []
                self._pending_size = 0
            lines = [line + b"\n" for line in lines]
        if rest:
            self._keep(rest)
        return lines

    def flush(self) -> list[bytes]:
        """The stream ended: the last line if it has more than whitespace."""
        data = b"".join(self._pending)
        self._pending = []
        self._pending_size = 0
        return [data] if data.strip() else []


class _Framer(_Pending):
    """Cuts a byte stream into decoded JSON messages; the one JSON framing implementation."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        newline = data.rfind(b"\n")
        if newline == len(data) - 1 and not self._pending and data.find(b"\n") == newline:
            # The common case: the engine flushes each message as its own chunk.
            try:
                text = data.decode("utf-8")
                value, end = _scan_once(text, 0)
            except (StopIteration, ValueError, RecursionError):
                pass
            else:
                if type(value) is dict and text[end:].isspace():
                    return [value]
        if newline < 0:
            if data:
                self._keep(data)
                if data.rstrip()[-1:] == b"}":
                    return self._try_unterminated()
            return []
        head = data[:newline]
        if self._pending:
            self._pending.append(head)
            head = b"".join(self._pending)
            self._pending = []
            self._pending_size = 0
        if newline + 1 < len(data):
            self._keep(data[newline + 1 :])
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StreamError(
                f"the engine sent bytes that are not UTF-8: {_excerpt(head)}"
            ) from exc
        messages: list[dict[str, Any]] = []
        append = messages.append
        scan = _scan_once
        for line in text.split("\n"):
            # The engine's lines are one object and a "\r": decode in place, no copy of the line.
            try:
                value, end = scan(line, 0)
            except (StopIteration, ValueError, RecursionError):
                if line and not line.isspace():
                    self._line_fallback(line, messages)
                continue
            if type(value) is not dict:
                raise StreamError(
                    f"the engine sent a message that is not a JSON object: {_excerpt(line)}"
                )
            if end != len(line) and not line[end:].isspace():
                self._line_fallback(line, messages)
                continue
            append(value)
        return messages

    def _line_fallback(self, line: str, messages: list[dict[str, Any]]) -> None:
        values, rest = _scan_objects(line)
        if rest:
            raise StreamError(f"the engine sent something that is not JSON: {_excerpt(line)}")
        for value in values:
            if type(value) is not dict:
                raise StreamError(
                    f"the engine sent a message that is not a JSON object: {_excerpt(line)}"
                )
            messages.append(value)

    def _try_unterminated(self) -> list[dict[str, Any]]:
        # Only reached when a piece ends in "}" with no newline in it: the engine always ends
        # messages with "\r\n", so this serves streams that never separate their messages.
        joined = b"".join(self._pending)
        try:
            text = joined.decode("utf-8")
        except UnicodeDecodeError:
            return []
        values, rest = _scan_objects(text)
        messages = [value for value in values if type(value) is dict]
        if len(messages) != len(values):
            raise StreamError(
                f"the engine sent a message that is not a JSON object: {_excerpt(text)}"
            )
        if messages:
            kept = rest.encode("utf-8")
            self._pending = [kept] if kept else []
            self._pending_size = len(kept)
        return messages

    def flush(self) -> list[dict[str, Any]]:
        if not self._pending:
            return []
        data = b"".join(self._pending)
        self._pending = []
        self._pending_size = 0
        if not data.strip():
            return []
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if data.lstrip()[:1] == b"{":
                raise StreamError(
                    f"stream ended in the middle of a message: {_excerpt(data)}"
                ) from exc
            raise StreamError(
                f"the engine sent bytes that are not UTF-8: {_excerpt(data)}"
            ) from exc
        values, rest = _scan_objects(text)
        if rest:
            if rest.lstrip()[:1] == "{":
                raise StreamError(f"stream ended in the middle of a message: {_excerpt(rest)}")
            raise StreamError(f"the engine sent something that is not JSON: {_excerpt(rest)}")
        messages: list[dict[str, Any]] = []
        for value in values:
            if type(value) is not dict:
                raise StreamError(
                    f"the engine sent a message that is not a JSON object: {_excerpt(text)}"
                )
            messages.append(value)
        return messages


class MessageDecoder:
    """Sans-I/O decoder of the response stream into the engine's raw JSON objects, in order.

    `feed()` the bytes as they arrive and `flush()` once at the end of the stream; both raise
    `StreamError` when the bytes are not the engine's JSON messages.
    """

    __slots__ = ("_framer",)

    def __init__(self) -> None:
        self._framer = _Framer()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Return the messages that `data` completes (possibly none)."""
        return self._framer.feed(data)

    def flush(self) -> list[dict[str, Any]]:
        """Return the last messages at the end of the stream; a cut-off message is an error."""
        return self._framer.flush()


class EventDecoder:
    """Sans-I/O decoder of the response stream into `BuildEvent` objects, in order.

    `feed()` the bytes as they arrive and `flush()` once at the end of the stream. Raises
    `StreamError` for bytes that are not the engine's JSON messages, for an undecodable BuildKit
    trace, and (from `flush`) for a stream that ended in the middle of a message.
    """

    __slots__ = ("_framer",)

    def __init__(self) -> None:
        self._framer = _Framer()

    def feed(self, data: bytes) -> list[BuildEvent]:
        """Return the events that `data` completes (possibly none)."""
        return self._events(self._framer.feed(data))

    def flush(self) -> list[BuildEvent]:
        """Return the last events at the end of the stream; a cut-off message is an error."""
        return self._events(self._framer.flush())

    @staticmethod
    def _events(messages: list[dict[str, Any]]) -> list[BuildEvent]:
        out: list[BuildEvent] = []
        append_events = _append_events
        for msg in messages:
            append_events(msg, out)
        return out
