"""Build events: the typed form of everything the engine's build stream reports.

Typed events are pydantic models (frozen; unknown keys ignored). Validating every one of a
hundred thousand log lines would cost more than reading them, so the decoders
(`_decoder.py` for the JSON stream, `buildkit/status.py` for BuildKit's traces) check shapes with
cheap `type()` tests and build the models with `trusted()`; anything whose shape is not the
expected one becomes an `UnknownEvent` instead of an error, so a newer engine never breaks a
build.

JSON form: each event has a `kind` field, so `event.model_dump_json()` is self-describing and
`AnyBuildEvent` parses it back. `bytes` fields (BuildKit log data, warning texts) are standard
base64 in JSON, as in BuildKit's own `SolveStatus` JSON, because log data is arbitrary bytes
that may end in the middle of a UTF-8 character.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

__all__ = [
    "AnyBuildEvent",
    "AuxEvent",
    "BuildEvent",
    "ErrorEvent",
    "ImageIdEvent",
    "LogEvent",
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
    "log_event",
    "trusted",
]


class _Model(BaseModel):
    # JSON input accepts both base64 alphabets; output is written by `_Bytes` below.
    # The decoder builds events without validating them (`trusted`), so a build never needs
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
    source: str = ""
    """The Dockerfile excerpt of the failing step, as buildx prints it above the error (a
    Control API build's error details carry it; empty otherwise)."""


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


def trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """Build `cls` from `values` without validation, for the stream decoders: they pass every
    field, already type-checked, and validating each of 100,000 events would cost more than
    reading them."""
    # What `model_construct` does, minus its per-field default handling. Its result is
    # pinned equal to validated models by tests.
    obj = _new(cls)
    _set_dict(obj, values)
    _set_fields_set(obj, set(values))
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


def log_event(text: str) -> LogEvent:
    """A `LogEvent` of `text`, built without validation: `trusted()` unrolled for the one
    event that makes up nearly all of a classic build's stream."""
    obj = _new(LogEvent)
    _set_dict(obj, {"kind": "log", "text": text})
    _set_fields_set(obj, {"kind", "text"})
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj
