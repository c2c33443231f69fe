"""Build events, and the decoder that turns the engine's response bytes into them.

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

Typed events are pydantic models (frozen; unknown keys ignored), but validating every one
of a hundred thousand log lines would cost more than reading them. Messages come from
`json.loads`, so their shapes are checked here with cheap `type()` tests and the models are
built without re-validation; anything whose shape is not the expected one becomes an
`UnknownEvent` instead of an error, so a newer engine never breaks a build.

JSON form: each event has a `kind` field, so `event.model_dump_json()` is self-describing and
`AnyBuildEvent` parses it back. `bytes` fields (BuildKit log data, warning texts) are standard
base64 in JSON, as in BuildKit's own `SolveStatus` JSON, because log data is arbitrary bytes
that may end in the middle of a UTF-8 character.
"""

from __future__ import annotations

import base64
import json
import json.scanner
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from buildsdk.errors import StreamError

__all__ = [
    "MAX_MESSAGE_BYTES",
    "AnyBuildEvent",
    "AuxEvent",
    "BuildEvent",
    "ErrorEvent",
    "EventDecoder",
    "ImageIdEvent",
    "LogEvent",
    "MessageDecoder",
    "Position",
    "ProgressDetail",
    "ProgressGroup",
    "Range",
    "SourceInfo",
    "StatusEvent",
    "UnknownEvent",
    "VertexEvent",
    "VertexLogEvent",
    "VertexStatusEvent",
    "VertexWarningEvent",
    "event_from_message",
]


class _Model(BaseModel):
    # JSON input accepts both base64 alphabets; output is written by `_Bytes` below.
    # The decoder builds events without validating them (`_trusted`), so a build never needs
    # their validators: pydantic makes them on first use (`model_validate`, `model_dump`,
    # JSON schema) rather than for every event class at import.
    model_config = ConfigDict(
        frozen=True, extra="ignore", val_json_bytes="base64", defer_build=True
    )


def _standard_base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


# Bytes written to JSON as standard base64 with padding (pydantic's own choice is the URL-safe
# alphabet), the encoding Go gives `[]byte` and so BuildKit's `SolveStatus` JSON.
_Bytes = Annotated[bytes, PlainSerializer(_standard_base64, return_type=str, when_used="json")]


class BuildEvent(_Model):
    """Base class of everything a build stream yields; `kind` names the concrete type."""

    kind: str
    """The event type's name in JSON (`"log"`, `"vertex"`, …); each subclass fixes it."""


class ProgressDetail(_Model):
    """Structured progress of a status line (`progressDetail`): bytes done, total, start time."""

    current: int | None = None
    total: int | None = None
    start: int | None = None
    hidecounts: bool | None = None
    units: str | None = None


class LogEvent(BuildEvent):
    """Text the classic builder printed (`stream`): step headers, `RUN` output, tag lines.

    `RUN` output on stderr arrives wrapped in `"\\x1b[91m"` … `"\\x1b[0m"`, as the engine sends it.
    """

    kind: Literal["log"] = "log"
    text: str


class StatusEvent(BuildEvent):
    """A progress line (`status`): base-image pull steps or "Downloading context"."""

    kind: Literal["status"] = "status"
    status: str
    id: str | None = None
    progress_detail: ProgressDetail | None = None
    progress: str | None = None


class ImageIdEvent(BuildEvent):
    """The id of a built image (`aux.ID`, or the `moby.image.id` aux of BuildKit and squash).

    The classic builder reports one per stage of a multi-stage build, in order, and the
    last is the build's result (as `BuildResult.image_id`); BuildKit reports the result only.
    """

    kind: Literal["image_id"] = "image_id"
    image_id: str
    """The image id, `sha256:<64 hex digits>`."""


class AuxEvent(BuildEvent):
    """An out-of-band `aux` payload this package does not model; `aux` is the engine's JSON."""

    kind: Literal["aux"] = "aux"
    id: str | None = None
    aux: Any = None


class ErrorEvent(BuildEvent):
    """The engine reported that the build failed (`errorDetail`, or the older `error`)."""

    kind: Literal["error"] = "error"
    message: str
    code: int | None = None


class ProgressGroup(_Model):
    """BuildKit's grouping of vertices shown as one line (`pb.ProgressGroup`)."""

    id: str = ""
    name: str = ""
    weak: bool = False


class VertexEvent(BuildEvent):
    """A BuildKit vertex (one step of the build graph) was added, started, finished or failed.

    The engine sends a vertex again whenever it changes, always whole: first announced
    (`started` None), then running, then finished (`completed` set). A step may run more
    than once (a cache check, then the work), each run with its own `started`; docker's
    printers merge the runs. `buildsdk.progress` turns these events into docker's output.
    """

    kind: Literal["vertex"] = "vertex"
    digest: str
    """The vertex's id (`sha256:…` of its LLB definition); other events point to it by this."""
    inputs: list[str] = Field(default_factory=list)
    """Digests of the vertices this one depends on."""
    name: str = ""
    """What docker prints for the step: `[2/3] RUN make`, `[internal] load build context`."""
    cached: bool = False
    """The result came from the build cache: the step did not run (`CACHED`)."""
    started: datetime | None = None
    """When this run of the step started (engine clock, UTC); None while it is only queued."""
    completed: datetime | None = None
    """When this run finished, successfully or not; None while it runs."""
    error: str = ""
    """Why the step failed; empty when it did not. Ends with `context canceled` for a step
    stopped because another failed."""
    progress_group: ProgressGroup | None = None
    """The group docker shows this step in, as one line, if any."""


class VertexStatusEvent(BuildEvent):
    """Progress of one task inside a BuildKit vertex (a layer download, a file transfer)."""

    kind: Literal["vertex_status"] = "vertex_status"
    id: str
    """The task, as docker prints it: `transferring context:`, `sha256:…` for a layer."""
    vertex: str = ""
    """The digest of the `VertexEvent` this task belongs to."""
    name: str = ""
    """A short name of the task's kind (`transferring`, `extracting`)."""
    current: int = 0
    """Units done so far (bytes, for transfers)."""
    total: int = 0
    """Units in all, or 0 when unknown."""
    timestamp: datetime | None = None
    """When the engine sent this update."""
    started: datetime | None = None
    """When the task started; docker shows no task that has not."""
    completed: datetime | None = None
    """When the task finished; None while it runs."""


class VertexLogEvent(BuildEvent):
    """Output of a BuildKit vertex: `data` as written, `stream` 1 for stdout and 2 for stderr."""

    kind: Literal["vertex_log"] = "vertex_log"
    vertex: str
    """The digest of the `VertexEvent` whose output this is."""
    stream: int = 0
    """1 for stdout, 2 for stderr."""
    data: _Bytes = b""
    """The bytes as written: a chunk may end inside a line or inside a UTF-8 character."""
    timestamp: datetime | None = None
    """When the output was written (docker prints it as seconds since the step started)."""


class Position(_Model):
    """A position in a source file (`pb.Position`): line and character, both from 1."""

    line: int = 0
    character: int = 0


class Range(_Model):
    """A span of a source file (`pb.Range`)."""

    start: Position = Field(default_factory=Position)
    end: Position = Field(default_factory=Position)


class SourceInfo(_Model):
    """The source file a warning points into (`pb.SourceInfo`; the LLB definition is dropped)."""

    filename: str = ""
    data: _Bytes = b""
    language: str = ""


class VertexWarningEvent(BuildEvent):
    """A warning BuildKit attached to a vertex (BuildKit >= 0.10): `short` text, `detail` lines."""

    kind: Literal["vertex_warning"] = "vertex_warning"
    vertex: str = ""
    level: int = 0
    short: _Bytes = b""
    detail: list[_Bytes] = Field(default_factory=list)
    url: str = ""
    info: SourceInfo | None = None
    ranges: list[Range] = Field(default_factory=list)


class UnknownEvent(BuildEvent):
    """A message this package does not recognise; `raw` is the engine's JSON object as sent."""

    kind: Literal["unknown"] = "unknown"
    raw: dict[str, Any]


AnyBuildEvent = Annotated[
    LogEvent
    | StatusEvent
    | ImageIdEvent
    | AuxEvent
    | ErrorEvent
    | VertexEvent
    | VertexStatusEvent
    | VertexLogEvent
    | VertexWarningEvent
    | UnknownEvent,
    Field(discriminator="kind"),
]
"""Every concrete event type, discriminated by `kind`: `TypeAdapter(AnyBuildEvent)` reads the
JSON that `model_dump_json()` writes."""


_M = TypeVar("_M", bound=BaseModel)
_new = object.__new__
# The setters of pydantic's instance slots, called directly: cheaper than
# `object.__setattr__`, which has to find them by name for every event.
_model_slots: dict[str, Any] = dict(BaseModel.__dict__)
_set_dict = _model_slots["__dict__"].__set__
_set_fields_set = _model_slots["__pydantic_fields_set__"].__set__
_set_extra = _model_slots["__pydantic_extra__"].__set__
_set_private = _model_slots["__pydantic_private__"].__set__


def _trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    # What `model_construct` does, minus its per-field default handling: callers pass every
    # field, already type-checked. Its result is pinned equal to validated models by tests.
    obj = _new(cls)
    _set_dict(obj, values)
    _set_fields_set(obj, set(values))
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


def _log_event(text: str) -> LogEvent:
    # `_trusted` unrolled for the one event that makes up nearly all of a classic stream.
    obj = _new(LogEvent)
    _set_dict(obj, {"kind": "log", "text": text})
    _set_fields_set(obj, {"kind", "text"})
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


def _opt_int(value: object) -> int | None:
    return value if type(value) is int else None


def _progress_detail(value: object) -> ProgressDetail | None:
    if type(value) is not dict:
        return None
    hidecounts = value.get("hidecounts")
    units = value.get("units")
    return _trusted(
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
        return _trusted(UnknownEvent, {"kind": "unknown", "raw": msg})
    return _trusted(ErrorEvent, {"kind": "error", "message": message, "code": _opt_int(code)})


def _aux_events(msg: dict[str, Any], out: list[BuildEvent]) -> None:
    aux = msg["aux"]
    ident = msg.get("id")
    if ident is not None and type(ident) is not str:
        out.append(_trusted(UnknownEvent, {"kind": "unknown", "raw": msg}))
        return
    if ident == "moby.buildkit.trace" and type(aux) is str:
        out.extend(_buildkit.decode_trace(aux))
        return
    if (ident is None or ident == "moby.image.id") and type(aux) is dict:
        image_id = aux.get("ID")
        if type(image_id) is str:
            out.append(_trusted(ImageIdEvent, {"kind": "image_id", "image_id": image_id}))
            return
    out.append(_trusted(AuxEvent, {"kind": "aux", "id": ident, "aux": aux}))


def _append_events(msg: dict[str, Any], out: list[BuildEvent]) -> None:
    # Order of the checks follows how often each shape occurs in real streams.
    text = msg.get("stream")
    if type(text) is str and len(msg) == 1:
        out.append(_log_event(text))
    elif "aux" in msg:
        _aux_events(msg, out)
    elif "errorDetail" in msg or "error" in msg:
        out.append(_error_event(msg))
    elif type(msg.get("status")) is str:
        ident = msg.get("id")
        progress = msg.get("progress")
        out.append(
            _trusted(
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
        out.append(_log_event(text))
    else:
        out.append(_trusted(UnknownEvent, {"kind": "unknown", "raw": msg}))


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


class _Framer:
    """Cuts a byte stream into decoded JSON messages; the one framing implementation."""

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


# buildkit.py builds the Vertex* models defined above, so it is imported only once they exist,
# and as a module so that importing buildkit.py first (which imports this module) also works.
import buildsdk.buildkit as _buildkit  # noqa: E402
