"""BuildKit Control API messages, and `BuildOptions` as the `SolveRequest` of a Dockerfile build.

Why here, pure: `moby.buildkit.v1.Control` (reached through the engine's `POST /grpc`) takes
protobuf messages; this module describes them and encodes/decodes them by hand on
`buildsdk._protobuf`, so the runtime needs no `protobuf` package and no generated code. The
gRPC calls live elsewhere and only move these bytes.

Messages are frozen dataclasses. Each declares its fields once (`.proto` name, number, kind)
and three generic walkers use that table: `encode()` writes protobuf's canonical form (fields
in number order, defaults left out, map entries sorted by key, which is what Go's
deterministic marshalling does; buildx itself sends maps in Go's random order, which the
engine does not care about), `decode()` keeps the fields it knows and skips the others, and
`to_json()` gives protobuf's JSON with the .proto field names (as
`json_format.MessageToDict(m, preserving_proto_field_name=True)`: int64 as strings, timestamps
as RFC 3339, defaults omitted). Fields nobody here sends or reads are not modelled and are
skipped when decoding: `SolveRequest.Definition` (2), `FrontendInputs` (10), `SourcePolicy`
(12), `CacheOptions` 1-3 (deprecated). Field numbers are BuildKit v0.13's (reference:
buildkit-control.md §3, §13).

`solve_request(options, ref=…, session_id=…, engine=…)` is the direct path of reference §2:
one `Control/Solve` with the `dockerfile.v0` frontend, the frontend attributes buildx would
send (§4) and the exporters of §5, without buildx's LLBBridge round trip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Final, Literal, TypeVar

from buildsdk._annotations import annotation_attrs
from buildsdk._named_contexts import context_attrs, context_kind, parse_oci_layout
from buildsdk._protobuf import (
    WIRE_LEN,
    WIRE_VARINT,
    ProtobufError,
    as_int64,
    encode_tag,
    encode_varint,
    iter_fields,
)
from buildsdk._wire import go_json
from buildsdk.build import BuildOptions
from buildsdk.cache_backends import CacheEntry, InlineCache, LocalCache, RegistryCache
from buildsdk.errors import UnsupportedOption
from buildsdk.outputs import (
    BuildOutput,
    DockerOutput,
    ImageOutput,
    OCIOutput,
    Output,
    typed_outputs,
)

__all__ = [
    "DOCKERFILE_FRONTEND",
    "SNAPSHOTTER_LABEL",
    "BuildkitVersion",
    "CacheOptions",
    "CacheOptionsEntry",
    "DiskUsageRequest",
    "DiskUsageResponse",
    "Exporter",
    "GCPolicy",
    "ImageStore",
    "ListWorkersRequest",
    "ListWorkersResponse",
    "Platform",
    "PruneRequest",
    "SolveRequest",
    "SolveResponse",
    "StatusRequest",
    "UsageRecord",
    "WorkerRecord",
    "cache_exports",
    "cache_imports",
    "control_api_problems",
    "image_store",
    "solve_request",
]

DOCKERFILE_FRONTEND: Final = "dockerfile.v0"
"""The frontend the direct path names in `SolveRequest.Frontend` (buildx leaves it empty)."""
SNAPSHOTTER_LABEL: Final = "org.mobyproject.buildkit.worker.snapshotter"
"""The worker label buildx reads: present only when the engine uses the containerd store."""

ImageStore = Literal["containerd", "classic"]
"""The engine's image store, as `ListWorkers` tells it (see `image_store`)."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_M = TypeVar("_M", bound="_Message")

# -- the generic walkers ---------------------------------------------------------------------

_Kind = Literal["string", "bool", "int64", "map", "message", "strings", "messages", "timestamp"]


@dataclass(frozen=True)
class _Field:
    attr: str
    number: int
    kind: _Kind
    name: str  # the .proto field name, used by to_json
    message: type[_Message] | None = None
    tag: bytes = b""  # the encoded key, filled in by _spec


_SMALL: Final = tuple(bytes((size,)) for size in range(128))


def _encode_timestamp(value: datetime) -> bytes:
    if value.tzinfo is None:
        raise ProtobufError("timestamps must be timezone-aware datetimes")
    delta = value - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    nanos = delta.microseconds * 1000
    out = b""
    if seconds:
        out += encode_tag(1, WIRE_VARINT) + encode_varint(seconds)
    if nanos:
        out += encode_tag(2, WIRE_VARINT) + encode_varint(nanos)
    return out


def _decode_timestamp(data: bytes) -> datetime:
    seconds = 0
    nanos = 0
    for number, wire, value in iter_fields(data):
        if number == 1:
            seconds = as_int64(_varint(value, wire, "Timestamp.seconds"))
        elif number == 2:
            nanos = as_int64(_varint(value, wire, "Timestamp.nanos"))
    try:
        # Python keeps microseconds; the nanoseconds below them are dropped.
        return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise ProtobufError(f"timestamp {seconds}s is out of range") from None


def _timestamp_json(value: datetime) -> str:
    utc = value.astimezone(timezone.utc)
    # Not strftime: it writes years before 1000 without the leading zeros RFC 3339 needs.
    text = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    )
    micros = utc.microsecond
    if micros:
        # protobuf's JSON writes 3, 6 or 9 fraction digits, the fewest that are exact.
        text += f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"
    return text + "Z"


def _varint(value: int | bytes, wire: int, what: str) -> int:
    if wire != WIRE_VARINT or isinstance(value, bytes):
        raise ProtobufError(f"{what} must be a varint")
    return value


def _len(value: int | bytes, wire: int, what: str) -> bytes:
    if wire != WIRE_LEN or not isinstance(value, bytes):
        raise ProtobufError(f"{what} must be length-delimited")
    return value


def _text(value: int | bytes, wire: int, what: str) -> str:
    try:
        return _len(value, wire, what).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtobufError(f"{what} is not UTF-8") from None


def _prefixed(data: bytes) -> bytes:
    """`data` after its length as a varint (one byte below 128, the common case)."""
    size = len(data)
    return (_SMALL[size] if size < 128 else encode_varint(size)) + data


def _encode(message: _Message) -> bytes:
    # The profile of a build-sized SolveRequest is all per-field calls, so the keys are
    # precomputed (`_Field.tag`) and lengths are written inline rather than through
    # `field_bytes`/`field_string`.
    out: list[bytes] = []
    append = out.append
    for spec in message.SPEC:
        value = getattr(message, spec.attr)
        kind = spec.kind
        tag = spec.tag
        if kind == "string":
            if value:
                append(tag)
                append(_prefixed(value.encode()))
        elif kind == "map":
            for key in sorted(value):
                # Map entries always carry both key and value, even empty ones, as Go and
                # upb write them.
                entry = b"\x0a" + _prefixed(key.encode()) + b"\x12" + _prefixed(value[key].encode())
                append(tag)
                append(_prefixed(entry))
        elif kind == "bool":
            if value:
                append(tag)
                append(b"\x01")
        elif kind == "int64":
            if value:
                append(tag)
                append(encode_varint(value))
        elif kind == "message":
            if value is not None:
                append(tag)
                append(_prefixed(value.encode()))
        elif kind == "timestamp":
            if value is not None:
                append(tag)
                append(_prefixed(_encode_timestamp(value)))
        elif kind == "strings":
            for item in value:
                append(tag)
                append(_prefixed(item.encode()))
        else:
            for item in value:
                append(tag)
                append(_prefixed(item.encode()))
    return b"".join(out)


def _decode(cls: type[_M], data: bytes) -> _M:
    specs = cls.BY_NUMBER
    values: dict[str, Any] = {}
    for number, wire, value in iter_fields(data):
        spec = specs.get(number)
        if spec is None:
            continue
        what = f"{cls.__name__}.{spec.name}"
        kind = spec.kind
        if kind == "string":
            values[spec.attr] = _text(value, wire, what)
        elif kind == "bool":
            values[spec.attr] = _varint(value, wire, what) != 0
        elif kind == "int64":
            values[spec.attr] = as_int64(_varint(value, wire, what))
        elif kind == "map":
            key, text = _decode_entry(_len(value, wire, what), what)
            values.setdefault(spec.attr, {})[key] = text
        elif kind == "message":
            assert spec.message is not None
            values[spec.attr] = spec.message.decode(_len(value, wire, what))
        elif kind == "timestamp":
            values[spec.attr] = _decode_timestamp(_len(value, wire, what))
        elif kind == "strings":
            values.setdefault(spec.attr, []).append(_text(value, wire, what))
        else:
            assert spec.message is not None
            item = spec.message.decode(_len(value, wire, what))
            values.setdefault(spec.attr, []).append(item)
    for spec in cls.SPEC:
        if spec.kind in ("strings", "messages") and spec.attr in values:
            values[spec.attr] = tuple(values[spec.attr])
    return cls(**values)


def _decode_entry(data: bytes, what: str) -> tuple[str, str]:
    key = ""
    value = ""
    for number, wire, item in iter_fields(data):
        if number == 1:
            key = _text(item, wire, f"{what} key")
        elif number == 2:
            value = _text(item, wire, f"{what} value")
    return key, value


def _to_json(message: _Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in message.SPEC:
        value = getattr(message, spec.attr)
        kind = spec.kind
        if kind in ("string", "bool"):
            if value:
                out[spec.name] = value
        elif kind == "int64":
            if value:
                out[spec.name] = str(value)
        elif kind == "map":
            if value:
                out[spec.name] = {key: value[key] for key in sorted(value)}
        elif kind == "message":
            if value is not None:
                out[spec.name] = value.to_json()
        elif kind == "timestamp":
            if value is not None:
                out[spec.name] = _timestamp_json(value)
        elif kind == "strings":
            if value:
                out[spec.name] = list(value)
        elif value:
            out[spec.name] = [item.to_json() for item in value]
    return out


class _Message:
    """Encoding, decoding and JSON for the dataclasses below, driven by their `SPEC`."""

    __slots__ = ()
    SPEC: ClassVar[tuple[_Field, ...]] = ()
    BY_NUMBER: ClassVar[Mapping[int, _Field]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.BY_NUMBER = {spec.number: spec for spec in cls.SPEC}

    def encode(self) -> bytes:
        """The message in protobuf's canonical binary form."""
        return _encode(self)

    @classmethod
    def decode(cls: type[_M], data: bytes) -> _M:
        """Read an encoded message; unknown fields are skipped, malformed ones `ProtobufError`."""
        return _decode(cls, data)

    def to_json(self) -> dict[str, Any]:
        """Protobuf JSON with the .proto field names (int64 as strings, defaults omitted)."""
        return _to_json(self)


def _spec(*fields: tuple[Any, ...]) -> tuple[_Field, ...]:
    specs = []
    for item in fields:
        spec = _Field(*item)
        wire = WIRE_VARINT if spec.kind in ("bool", "int64") else WIRE_LEN
        specs.append(replace(spec, tag=encode_tag(spec.number, wire)))
    return tuple(specs)


# -- the messages ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exporter(_Message):
    """`Exporter{Type=1, Attrs=2}`: one exporter of a solve (`moby`, `local`, `oci`, ...)."""

    type: str = ""
    attrs: Mapping[str, str] = field(default_factory=dict)

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(
        ("type", 1, "string", "Type"), ("attrs", 2, "map", "Attrs")
    )


@dataclass(frozen=True, slots=True)
class CacheOptionsEntry(_Message):
    """`CacheOptionsEntry{Type=1, Attrs=2}`: one cache import or export (`registry`, ...)."""

    type: str = ""
    attrs: Mapping[str, str] = field(default_factory=dict)

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(
        ("type", 1, "string", "Type"), ("attrs", 2, "map", "Attrs")
    )


@dataclass(frozen=True, slots=True)
class CacheOptions(_Message):
    """`CacheOptions{Exports=4, Imports=5}`; buildx always sends it, often empty."""

    exports: tuple[CacheOptionsEntry, ...] = ()
    imports: tuple[CacheOptionsEntry, ...] = ()

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(
        ("exports", 4, "messages", "Exports", CacheOptionsEntry),
        ("imports", 5, "messages", "Imports", CacheOptionsEntry),
    )


@dataclass(frozen=True, slots=True)
class SolveRequest(_Message):
    """`Control/Solve`'s request: the build, its frontend attributes, cache and exporters."""

    ref: str = ""
    exporter_deprecated: str = ""
    exporter_attrs_deprecated: Mapping[str, str] = field(default_factory=dict)
    session: str = ""
    frontend: str = ""
    frontend_attrs: Mapping[str, str] = field(default_factory=dict)
    cache: CacheOptions | None = None
    entitlements: tuple[str, ...] = ()
    internal: bool = False
    exporters: tuple[Exporter, ...] = ()

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(
        ("ref", 1, "string", "Ref"),
        ("exporter_deprecated", 3, "string", "ExporterDeprecated"),
        ("exporter_attrs_deprecated", 4, "map", "ExporterAttrsDeprecated"),
        ("session", 5, "string", "Session"),
        ("frontend", 6, "string", "Frontend"),
        ("frontend_attrs", 7, "map", "FrontendAttrs"),
        ("cache", 8, "message", "Cache", CacheOptions),
        ("entitlements", 9, "strings", "Entitlements"),
        ("internal", 11, "bool", "Internal"),
        ("exporters", 13, "messages", "Exporters", Exporter),
    )


@dataclass(frozen=True, slots=True)
class SolveResponse(_Message):
    """`Control/Solve`'s answer: the exporter response (image digest, name, descriptor, ...)."""

    exporter_response: Mapping[str, str] = field(default_factory=dict)

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(("exporter_response", 1, "map", "ExporterResponse"))


@dataclass(frozen=True, slots=True)
class StatusRequest(_Message):
    """`Control/Status`'s request: the `Ref` of the solve whose progress to stream."""

    ref: str = ""

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(("ref", 1, "string", "Ref"))


@dataclass(frozen=True, slots=True)
class Platform(_Message):
    """`pb.Platform`: an OS/architecture a worker can build for."""

    architecture: str = ""
    os: str = ""
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(
        ("architecture", 1, "string", "Architecture"),
        ("os", 2, "string", "OS"),
        ("variant", 3, "string", "Variant"),
        ("os_version", 4, "string", "OSVersion"),
        ("os_features", 5, "strings", "OSFeatures"),
    )


@dataclass(frozen=True, slots=True)
class GCPolicy(_Message):
    """`GCPolicy`: one of a worker's build-cache garbage collection rules."""

    all: bool = False
    keep_duration: int = 0
    keep_bytes: int = 0
    filters: tuple[str, ...] = ()

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(
        ("all", 1, "bool", "all"),
        ("keep_duration", 2, "int64", "keepDuration"),
        ("keep_bytes", 3, "int64", "keepBytes"),
        ("filters", 4, "strings", "filters"),
    )


@dataclass(frozen=True, slots=True)
class BuildkitVersion(_Message):
    """`BuildkitVersion`: what the engine says its BuildKit is (Debian builds say v0.0.0)."""

    package: str = ""
    version: str = ""
    revision: str = ""

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(
        ("package", 1, "string", "package"),
        ("version", 2, "string", "version"),
        ("revision", 3, "string", "revision"),
    )


@dataclass(frozen=True, slots=True)
class WorkerRecord(_Message):
    """`WorkerRecord`: a BuildKit worker; its labels tell the engine's image store."""

    id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    platforms: tuple[Platform, ...] = ()
    gc_policy: tuple[GCPolicy, ...] = ()
    buildkit_version: BuildkitVersion | None = None

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(
        ("id", 1, "string", "ID"),
        ("labels", 2, "map", "Labels"),
        ("platforms", 3, "messages", "platforms", Platform),
        ("gc_policy", 4, "messages", "GCPolicy", GCPolicy),
        ("buildkit_version", 5, "message", "BuildkitVersion", BuildkitVersion),
    )


@dataclass(frozen=True, slots=True)
class ListWorkersRequest(_Message):
    """`Control/ListWorkers`'s request (buildx sends no filter)."""

    filter: tuple[str, ...] = ()

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(("filter", 1, "strings", "filter"))


@dataclass(frozen=True, slots=True)
class ListWorkersResponse(_Message):
    """`Control/ListWorkers`'s answer: the engine's workers."""

    record: tuple[WorkerRecord, ...] = ()

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(("record", 1, "messages", "record", WorkerRecord))


@dataclass(frozen=True, slots=True)
class UsageRecord(_Message):
    """`UsageRecord`: one build-cache record, as `Control/DiskUsage` and `Control/Prune` list it."""

    id: str = ""
    mutable: bool = False
    in_use: bool = False
    size: int = 0
    parent: str = ""
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    usage_count: int = 0
    description: str = ""
    record_type: str = ""
    shared: bool = False
    parents: tuple[str, ...] = ()

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(
        ("id", 1, "string", "ID"),
        ("mutable", 2, "bool", "Mutable"),
        ("in_use", 3, "bool", "InUse"),
        ("size", 4, "int64", "Size"),
        ("parent", 5, "string", "Parent"),
        ("created_at", 6, "timestamp", "CreatedAt"),
        ("last_used_at", 7, "timestamp", "LastUsedAt"),
        ("usage_count", 8, "int64", "UsageCount"),
        ("description", 9, "string", "Description"),
        ("record_type", 10, "string", "RecordType"),
        ("shared", 11, "bool", "Shared"),
        ("parents", 12, "strings", "Parents"),
    )


@dataclass(frozen=True, slots=True)
class DiskUsageRequest(_Message):
    """`Control/DiskUsage`'s request; buildx sends `filter: [""]` when given no filter."""

    filter: tuple[str, ...] = ()

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(("filter", 1, "strings", "filter"))


@dataclass(frozen=True, slots=True)
class DiskUsageResponse(_Message):
    """`Control/DiskUsage`'s answer: every build-cache record."""

    record: tuple[UsageRecord, ...] = ()

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(("record", 1, "messages", "record", UsageRecord))


@dataclass(frozen=True, slots=True)
class PruneRequest(_Message):
    """`Control/Prune`'s request: filters, `all`, and what to keep (nanoseconds, bytes)."""

    filter: tuple[str, ...] = ()
    all: bool = False
    keep_duration: int = 0
    keep_bytes: int = 0

    SPEC: ClassVar[tuple[_Field, ...]] = _spec(
        ("filter", 1, "strings", "filter"),
        ("all", 2, "bool", "all"),
        ("keep_duration", 3, "int64", "keepDuration"),
        ("keep_bytes", 4, "int64", "keepBytes"),
    )


def image_store(workers: ListWorkersResponse | Sequence[WorkerRecord]) -> ImageStore:
    """Which image store the engine uses, read as buildx reads it from `ListWorkers`.

    A worker labelled `org.mobyproject.buildkit.worker.snapshotter` means the containerd
    store (oci/docker exports, cache export, multi-platform and attestations allowed);
    without it the classic store.
    """
    records = workers.record if isinstance(workers, ListWorkersResponse) else workers
    if any(SNAPSHOTTER_LABEL in record.labels for record in records):
        return "containerd"
    return "classic"


# -- BuildOptions -> SolveRequest ------------------------------------------------------------

_CLASSIC_HINT: Final = (
    "Switch to a different driver, or turn on the containerd image store, and try again."
)
_DEFAULT_PROVENANCE: Final = "mode=min,inline-only=true"
_NETWORK_MODES: Final = ("host", "none")
_PATH: Final = "the Control API (direct Solve) path"


def _refusal(option: str, reason: str) -> UnsupportedOption:
    return UnsupportedOption(
        option, f"{option} {reason} on {_PATH}", required="POST /build", given="Control API"
    )


def _classic_refusal(what: str, topic: str, option: str = "outputs") -> UnsupportedOption:
    # buildx's words for the docker driver without the containerd store (reference §12).
    return UnsupportedOption(
        option,
        f"{what} is not supported for the docker driver.\n{_CLASSIC_HINT}\n"
        f"Learn more at https://docs.docker.com/go/{topic}/",
        required="containerd image store",
        given="classic image store",
    )


_BUILD_ONLY: Final[tuple[tuple[str, Callable[[BuildOptions], bool], str], ...]] = (
    (
        "version",
        lambda o: o.version == "1",
        "= '1' asks for the classic builder, which is not there (BuildKit builds)",
    ),
    (
        "container_limits",
        lambda o: o.container_limits is not None,
        "(memory, CPU limits of RUN) has no BuildKit frontend attribute",
    ),
    ("squash", lambda o: bool(o.squash), "has no BuildKit frontend attribute"),
    (
        "isolation",
        lambda o: o.isolation not in (None, "default"),
        "is a Windows container setting BuildKit does not have",
    ),
    ("security_opt", lambda o: bool(o.security_opt), "has no BuildKit frontend attribute"),
    (
        "rm",
        lambda o: not o.rm,
        "= False keeps intermediate containers of the classic builder; BuildKit has none",
    ),
    (
        "forcerm",
        lambda o: o.forcerm,
        "removes intermediate containers of the classic builder; BuildKit has none",
    ),
    (
        "build_id",
        lambda o: o.build_id is not None,
        "names a build for POST /build/cancel; a Solve is cancelled by ending the call",
    ),
    (
        "remote",
        lambda o: o.remote_url is not None,
        "(a context the engine fetches) is not sent",
    ),
    (
        "custom_context",
        lambda o: o.custom_context,
        "(a ready-made tar) is not sent: the engine reads a directory through the session",
    ),
    (
        "fileobj",
        lambda o: o.fileobj is not None and not o.custom_context,
        "(a Dockerfile from a stream) is not sent: the session serves the Dockerfile from disk",
    ),
    (
        "gzip",
        lambda o: o.gzip,
        "compresses an uploaded tar; the session sends files, not a tar",
    ),
    (
        "context_transfer",
        lambda o: o.context_transfer == "tar",
        "= 'tar' uploads the context with the request; the session is the only way",
    ),
)


def control_api_problems(
    options: BuildOptions, *, engine: ImageStore, session_id: str | None = None
) -> list[UnsupportedOption]:
    """Every option `solve_request` refuses for `engine`, in one list (it raises the first)."""
    problems = [_refusal(name, reason) for name, given, reason in _BUILD_ONLY if given(options)]
    if options.path is None and options.remote_url is None and not problems:
        problems.append(_refusal("path", "is required (a local context directory)"))
    if session_id is not None and options.session_id not in (None, session_id):
        problems.append(
            _refusal("session_id", "differs from the session the request names; give it once")
        )
    unset = sorted(key for key, value in options.buildargs.items() if value is None)
    if unset:
        problems.append(
            _refusal(
                "buildargs", f"{', '.join(unset)} without a value (None) cannot be sent as text"
            )
        )
    mode = options.network_mode
    if mode not in (None, "default", *_NETWORK_MODES):
        # buildx's words (build/build.go), as `docker buildx build --network` prints them.
        problems.append(
            UnsupportedOption(
                "network_mode",
                f'network mode "{mode}" not supported by buildkit - you can define a custom '
                "network for your builder using the network driver-opt in buildx create",
                given=mode,
            )
        )
    if any(entry.endswith(":host-gateway") for entry in options.extra_hosts):
        problems.append(
            _refusal(
                "extra_hosts",
                "'host-gateway' needs the engine's gateway address, which its workers do not "
                "report",
            )
        )
    if engine == "classic" and len(options.platforms) > 1:
        problems.append(
            _classic_refusal("Multi-platform build", "build-multi-platform", "platform")
        )
    if engine == "classic":
        asked = [kind for kind, value in options.attestations().items() if value is not None]
        if asked:
            option = "attest" if options.attest else asked[0]
            problems.append(_classic_refusal("Attestation", "attestations", option))
    for name, value in options.build_contexts.items():
        if context_kind(value) == "oci-layout" and engine == "classic":
            # Docker 26.1's classic-store BuildKit has no oci-layout source: it would fail the
            # build with "unknown scheme oci-layout: not found"; buildx lets it.
            problems.append(
                UnsupportedOption(
                    "build_contexts",
                    f"build_contexts[{name!r}] = {value!r}: an oci-layout:// context needs the "
                    "containerd image store; the classic store's BuildKit has no oci-layout "
                    "source (load the image into the engine and use docker-image:// instead)",
                    required="containerd image store",
                    given="classic image store",
                )
            )
        elif context_kind(value) == "oci-layout" and parse_oci_layout(value).digest is None:
            problems.append(
                UnsupportedOption(
                    "build_contexts",
                    f"build_contexts[{name!r}] = {value!r}: an oci-layout:// context is sent "
                    "with its digest, read from DIR/index.json before the build; resolve it "
                    "first (buildsdk.session.content.oci_layout_digests)",
                    given="oci-layout",
                )
            )
    if engine == "classic" and any(not isinstance(c, InlineCache) for c in options.cache_to):
        # buildx's words (reference §12): the classic store has no cache exporter.
        problems.append(_classic_refusal("Cache export", "build-cache-backends", "cache_to"))
    for output in _outputs(options):
        if engine == "classic" and isinstance(output, OCIOutput):
            problems.append(_classic_refusal("OCI exporter", "build-exporters"))
        elif engine == "classic" and isinstance(output, DockerOutput):
            problems.append(_classic_refusal("Docker exporter", "build-exporters"))
        elif isinstance(output, ImageOutput) and output.push and not output.name:
            problems.append(UnsupportedOption("outputs", "tag is needed when pushing to registry"))
    return problems


def _outputs(options: BuildOptions) -> list[Output | BuildOutput]:
    # buildx exports to the image store when no output is given.
    return typed_outputs(options.outputs or (ImageOutput(),), names=options.tag)


def _exporters(options: BuildOptions, image_exporter: str = "moby") -> tuple[Exporter, ...]:
    exporters: list[Exporter] = []
    # buildx writes the annotations into the attributes of every output it was given
    # (BuildOptions refuses annotations without explicit outputs).
    annotations = annotation_attrs(options.annotations)
    for output in _outputs(options):
        if isinstance(output, BuildOutput):
            if output.type == "cacheonly":
                # buildx sends no exporter for cacheonly; the engine keeps only the cache.
                continue
            attrs = {**output.attrs, **annotations}
            exporters.append(Exporter(output.type, dict(sorted(attrs.items()))))
        else:
            attrs = {**output.exporter_attrs(), **annotations}
            # A standalone buildkitd names its image exporter `image`; dockerd's is `moby`.
            kind = image_exporter if isinstance(output, ImageOutput) else output.exporter_type
            exporters.append(Exporter(kind, dict(sorted(attrs.items()))))
    return tuple(exporters)


def _entitlements(options: BuildOptions) -> tuple[str, ...]:
    # buildx sends --allow as given, then network.host for --network host (even twice).
    granted = tuple(options.allow)
    return (*granted, "network.host") if options.network_mode == "host" else granted


_INLINE_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def _entry(cache: InlineCache | LocalCache | RegistryCache | CacheEntry | str) -> CacheOptionsEntry:
    if isinstance(cache, str):
        # A plain reference is a registry import, as buildx reads `--cache-from ref`.
        return CacheOptionsEntry("registry", {"ref": cache})
    return CacheOptionsEntry(cache.type, cache.cache_attrs())


def cache_imports(options: BuildOptions) -> tuple[CacheOptionsEntry, ...]:
    """`Cache.Imports` of `options`: plain references as registry imports, typed caches as
    they are; a local cache without a `digest` (its `index.json` was missing when the client
    looked) is left out, as buildx leaves it out."""
    return tuple(
        _entry(cache)
        for cache in options.cache_from
        if not (isinstance(cache, LocalCache) and cache.digest is None)
    )


def cache_exports(options: BuildOptions) -> tuple[CacheOptionsEntry, ...]:
    """`Cache.Exports` of `options`: `cache_to`, plus the `inline` export buildx adds for the
    build arg `BUILDKIT_INLINE_CACHE` set true."""
    exports = [_entry(cache) for cache in options.cache_to]
    inline = options.buildargs.get("BUILDKIT_INLINE_CACHE")
    if inline in _INLINE_TRUE and not any(entry.type == "inline" for entry in exports):
        exports.append(CacheOptionsEntry("inline", {}))
    return tuple(exports)


def _frontend_attrs(options: BuildOptions, engine: ImageStore) -> dict[str, str]:
    attrs: dict[str, str] = {
        "filename": os.path.basename(options.dockerfile or "Dockerfile"),
        "image-resolve-mode": "pull" if options.pull else "local",
    }
    if options.target is not None:
        attrs["target"] = options.target
    for key, value in options.buildargs.items():
        attrs[f"build-arg:{key}"] = value or ""
    for key, value in options.labels.items():
        attrs[f"label:{key}"] = value
    if options.platform is not None:
        attrs["platform"] = options.platform
    if options.extra_hosts:
        attrs["add-hosts"] = ",".join(
            "=".join(entry.split(":", 1)) for entry in options.extra_hosts
        )
    if options.shmsize is not None:
        attrs["shm-size"] = str(options.shmsize)
    if options.ulimits:
        attrs["ulimit"] = ",".join(
            f"{u.name}={u.soft}:{u.hard}" for u in sorted(options.ulimits, key=lambda u: u.name)
        )
    if options.network_mode in _NETWORK_MODES:
        attrs["force-network-mode"] = options.network_mode
    if options.no_cache_filter:
        attrs["no-cache"] = ",".join(options.no_cache_filter)
    if options.nocache:
        # buildx lets --no-cache win over --no-cache-filter: every stage runs uncached.
        attrs["no-cache"] = ""
    if options.cgroup_parent is not None:
        attrs["cgroup-parent"] = options.cgroup_parent
    imports = cache_imports(options)
    if imports:
        attrs["cache-imports"] = go_json(
            [{"Type": entry.type, "Attrs": dict(entry.attrs)} for entry in imports]
        )
    attrs.update(context_attrs(options.build_contexts))
    attestations = options.attestations()
    for kind, value in attestations.items():
        if value is not None:
            attrs[f"attest:{kind}"] = value
    if engine == "containerd" and "provenance" not in attestations:
        # buildx's default provenance attestation, unless provenance was given (False turns
        # it off); the classic store cannot store it.
        attrs["attest:provenance"] = _DEFAULT_PROVENANCE
    return {key: attrs[key] for key in sorted(attrs)}


def solve_request(
    options: BuildOptions,
    *,
    ref: str,
    session_id: str,
    engine: ImageStore,
    image_exporter: str = "moby",
) -> SolveRequest:
    """The `SolveRequest` of a Dockerfile build on the direct path (one Solve, no LLBBridge).

    `ref` names the build (the same value goes into `StatusRequest.Ref`), `session_id` is the
    session that serves the context, Dockerfile, secrets, ssh and outputs, and `engine` is
    the image store `image_store()` read from `ListWorkers`. Raises `UnsupportedOption` for
    an option this path cannot honour (all of them: `control_api_problems`).

    | BuildOptions field | on this path |
    |---|---|
    | `path` | the local context directory, served through the session (required) |
    | `dockerfile` | `filename` = its base name; the session serves its directory |
    | `target`, `platform`, `cgroup_parent` | `target`, `platform`, `cgroup-parent` |
    | several `platform`s | `platform` = `a,b` (comma list); refused on the classic store |
    | `provenance`, `sbom`, `attest` | `attest:<type>` as buildx; refused on the classic store |
    | `buildargs`, `labels` | `build-arg:K`, `label:K` (a build arg without value: refused) |
    | `extra_hosts` | `add-hosts` = `h=ip,...` (`host-gateway`: refused) |
    | `shmsize`, `ulimits` | `shm-size` (bytes), `ulimit` = `name=soft:hard,...` |
    | `network_mode` host | `force-network-mode` = host, entitlement `network.host` |
    | `network_mode` none, default | `force-network-mode` = none; nothing |
    | `network_mode` other | refused with buildx's words |
    | `nocache`, `pull` | `no-cache` = ""; `image-resolve-mode` = pull (else local) |
    | `cache_from` | `Cache.Imports` and `cache-imports` JSON (a reference: registry) |
    | `cache_to` | `Cache.Exports` (not inline: refused on the classic store) |
    | `tag`, `outputs` | `Exporters` (§5); tags name unnamed image/oci/docker exports |
    | oci/docker `outputs` | refused on the classic store with buildx's words |
    | `secrets`, `ssh`, `session_id` | served by the session; no attribute |
    | `quiet`, `timeout`, `decode` | the client's business; nothing sent |
    | `use_config_proxy` | the caller merges proxy build args into `buildargs` first |
    | `version='1'`, `container_limits`, `squash` | refused: only `POST /build` has them |
    | `isolation`, `security_opt`, `rm=False` | refused: only `POST /build` has them |
    | `forcerm`, `build_id`, `remote` | refused: only `POST /build` has them |
    | `custom_context`, `fileobj`, `gzip` | refused: only `POST /build` has them |
    | `context_transfer='tar'` | refused: only `POST /build` has it |
    | `build_contexts` | `context:NAME` (directory: `local:NAME`; else as given), `frontend.caps` |
    | `build_contexts` `oci-layout://` | `oci-layout://<store id>:TAG@DIGEST` (classic: refused) |
    | `no_cache_filter` | `no-cache` = the stages comma-joined (`nocache` wins: "") |
    | `allow` | `Entitlements`, as given, before `network.host` of `network_mode` host |
    | `annotations` | every exporter's `annotation[-TYPE[PLATFORM]].KEY` attributes |

    On the containerd store the request also carries buildx's default
    `attest:provenance` = `mode=min,inline-only=true`, unless `provenance` or an `attest`
    entry of type provenance says otherwise (`provenance=False` sends none).

    `image_exporter` is the exporter type an `ImageOutput` is sent as: `moby` (dockerd's
    BuildKit) or `image` (a standalone buildkitd).
    """
    problems = control_api_problems(options, engine=engine, session_id=session_id)
    if problems:
        raise problems[0]
    exporters = _exporters(options, image_exporter)
    return SolveRequest(
        ref=ref,
        # Engines before BuildKit 0.13 read only the single deprecated exporter fields.
        exporter_deprecated=exporters[0].type if exporters else "",
        exporter_attrs_deprecated=dict(exporters[0].attrs) if exporters else {},
        session=session_id,
        frontend=DOCKERFILE_FRONTEND,
        frontend_attrs=_frontend_attrs(options, engine),
        cache=CacheOptions(exports=cache_exports(options), imports=cache_imports(options)),
        entitlements=_entitlements(options),
        exporters=exporters,
    )
