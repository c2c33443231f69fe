"""Build options: what a `POST /build` request asks for, validated before anything is sent.

Why this module is careful: the engine reads most build parameters leniently (an invalid
integer becomes 0, an unknown isolation mode fails only on Windows, BuildKit silently drops
half of the classic builder's knobs) and reports many mistakes only after the whole build
context was uploaded. `BuildOptions` checks every value when it is constructed, and
`BuildOptions.to_query` refuses options the chosen API version or builder would ignore.

The query it produces is the one the Go client (and so `docker build`) sends: keys sorted
as `url.Values.Encode` sorts them, only non-default values, booleans as `1`/`0`, repeated
`t`/`extrahosts`/`securityopt`, and JSON values written byte for byte as Go's
`json.Marshal` writes them (map keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped,
other non-ASCII text kept as UTF-8).

Where docker-py and the CLI differ, the CLI wins: `rm` defaults to true (docker-py sends
`rm=False` unless told otherwise), `False` booleans are not sent at all, and `shmsize=0`
or `squash=False` are not silently dropped but mean what they say.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Final,
    Literal,
    Protocol,
    TypeVar,
    runtime_checkable,
)

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from buildsdk._annotations import parse_annotations
from buildsdk._named_contexts import (
    context_kind,
    context_name,
    parse_oci_layout,
    url_has_credentials,
)
from buildsdk._reference import validate_build_tag, validate_image_reference
from buildsdk._session_options import BuildSecret, SSHForward
from buildsdk._units import INT64_MAX, parse_size
from buildsdk._wire import go_json, query_string
from buildsdk.cache_backends import (
    CacheEntry,
    InlineCache,
    LocalCache,
    RegistryCache,
    parse_cache,
)
from buildsdk.errors import UnsupportedOption
from buildsdk.outputs import (
    BuildOutput,
    DockerOutput,
    ImageOutput,
    LocalOutput,
    OCIOutput,
    TarOutput,
    parse_output,
)
from buildsdk.versions import BUILD_PARAM_MIN_VERSION, ApiVersion, api_too_old

__all__ = [
    "REMOTE_PREFIXES",
    "BuildOptions",
    "BuildOutput",
    "ContainerLimits",
    "Readable",
    "Ulimit",
    "go_json",
    "query_string",
]

REMOTE_PREFIXES: Final = ("http://", "https://", "git://", "github.com/", "git@")
"""A `path` starting with one of these is a remote context sent as `remote`, as docker-py."""

_ULIMIT_NAMES: Final = frozenset(
    {
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    }
)
_INT64_MIN: Final = -(2**63)
_LINUX_MIN_MEMORY: Final = 6 * 1024 * 1024
_CPUSET_RE: Final = re.compile(r"^\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*$", re.ASCII)
_PLATFORM_PART_RE: Final = re.compile(r"^[A-Za-z0-9_-]+$", re.ASCII)
_PLATFORM_OS_RE: Final = re.compile(r"^[A-Za-z0-9_-]+(?:\([A-Za-z0-9_.-]*\))?$", re.ASCII)
_TOKEN_RE: Final = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", re.ASCII)
_ULIMIT_INT_RE: Final = re.compile(r"^[+-]?\d+$", re.ASCII)
_HOST_GATEWAY: Final = "host-gateway"
_BUILDKIT_NETWORK_MODES: Final = frozenset({"default", "host", "none"})
_BUILDKIT_LIMITS_API: Final = ApiVersion(1, 42)
"""BuildKit honours `ulimits` and `shmsize` from Docker Engine 23.0 (API 1.42) on: moby commit
b899db6 ("builder: enable shm-size and ulimit for buildkit", merged with moby/moby#43239, first
released in v23.0.0) fixed moby/moby#41997. Older engines accept and ignore them (checked on
dockerd 20.10); 26.1 applies them (checked on dockerd 26.1.5, both image stores)."""
_CACHEONLY_BROKEN_API: Final = ApiVersion(1, 45)
"""From Docker Engine 26.0 (API 1.45) `POST /build` turns a `cacheonly` output into a BuildKit
exporter named "" (moby commit 59ad169, "builder-next: Adjust to source changes"), which
BuildKit 0.13 refuses with a 500 ("exporter \"\" could not be found") after the whole context
was uploaded. `docker build` on 26 goes through buildx and the Control API, which sends no
exporter at all for it."""
# Query parameter -> the option name a user wrote, for error messages.
_PARAM_OPTION: Final = {
    "t": "tag",
    "q": "quiet",
    "cachefrom": "cache_from",
    "networkmode": "network_mode",
    "extrahosts": "extra_hosts",
    "session": "session_id",
    "buildid": "build_id",
    "cgroupparent": "cgroup_parent",
    "securityopt": "security_opt",
    "shmsize": "shmsize",
}
_NULL_BUILDARGS_MIN_VERSION: Final = ApiVersion(1, 25)
_CONTROL_ONLY: Final = ("annotations", "no_cache_filter", "allow")
"""Fields only the Control API carries: `POST /build` has no parameter for them."""


@runtime_checkable
class Readable(Protocol):
    """Anything with a `read()` method: an open file, `io.BytesIO`, `io.StringIO`, ..."""

    def read(self, size: int = -1, /) -> bytes | str:
        """Read up to `size` bytes or characters (all when -1)."""
        ...


def _sorted_map(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Return a dict with the keys in Go's map-marshalling order (byte-wise sorted)."""
    return {key: mapping[key] for key in sorted(mapping)}


def _int64(value: int, field: str) -> int:
    """Check that `value` fits Go's int64, which is how the engine reads it."""
    if not _INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{field} must fit in a 64-bit signed integer, got {value}")
    return value


class Ulimit(BaseModel):
    """A resource limit for the build's RUN containers (`--ulimit nofile=1024:2048`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str = Field(description="Limit name as in `ulimit(1)`: nofile, nproc, core, ...")
    soft: int = Field(description="Soft limit; must not exceed `hard` unless `hard` is -1.")
    hard: int = Field(description="Hard limit; -1 means unlimited.")

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        if value not in _ULIMIT_NAMES:
            allowed = ", ".join(sorted(_ULIMIT_NAMES))
            raise ValueError(f"ulimit name {value!r} is not known; allowed: {allowed}")
        return value

    @field_validator("soft", "hard")
    @classmethod
    def _fits(cls, value: int) -> int:
        return _int64(value, "ulimit values")

    @model_validator(mode="after")
    def _soft_not_above_hard(self) -> Ulimit:
        if self.hard != -1 and self.soft > self.hard:
            raise ValueError(
                f"ulimit {self.name}: soft limit must be less than or equal to hard limit: "
                f"{self.soft} > {self.hard}"
            )
        return self

    @classmethod
    def parse(cls, value: str) -> Ulimit:
        """Parse the CLI form `name=soft[:hard]` (`"nofile=1024:2048"`, `"nproc=512"`)."""
        name, sep, limits = value.partition("=")
        if not sep:
            raise ValueError(f"invalid ulimit {value!r}: expected name=soft[:hard]")
        parts = limits.split(":")
        if len(parts) > 2 or not all(_ULIMIT_INT_RE.match(part) for part in parts):
            raise ValueError(
                f"invalid ulimit {value!r}: expected name=soft[:hard] with integer limits"
            )
        soft = int(parts[0])
        hard = int(parts[1]) if len(parts) == 2 else soft
        return cls(name=name, soft=soft, hard=hard)

    def to_engine(self) -> dict[str, Any]:
        """The engine's JSON shape, in Go field order: `{"Name":..,"Hard":..,"Soft":..}`."""
        return {"Name": self.name, "Hard": self.hard, "Soft": self.soft}


_ModelT = TypeVar("_ModelT", bound=BaseModel)


def _nested(model: type[_ModelT], data: Mapping[Any, Any], field: str) -> _ModelT:
    """Validate a dict given for a nested model, reporting its errors under `field`."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'value'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ValueError(f"{field}: {details}") from None


def _size_or_none(value: object, field: str) -> object:
    """Turn a size string into bytes; leave None and type errors to pydantic."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, str)):
        return value
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


def _check_cpuset(value: str, field: str) -> str:
    """Check a cpuset list such as `0-3,5` (what the kernel and the engine accept)."""
    if not _CPUSET_RE.match(value):
        raise ValueError(
            f"{field} must be a list of CPU or memory node numbers and ranges such as "
            f"'0-3,5', got {value!r}"
        )
    for part in value.split(","):
        low, _, high = part.partition("-")
        if high and int(high) < int(low):
            raise ValueError(f"{field}: range {part!r} ends before it starts")
    return value


class ContainerLimits(BaseModel):
    """Resource limits for the classic builder's RUN containers (ignored by BuildKit).

    Accepts docker-py's `container_limits` keys (`memory`, `memswap`, `cpushares`,
    `cpusetcpus`) plus `cpuperiod`, `cpuquota` and `cpusetmems`. Sizes are bytes or Docker
    size strings (`"512m"`, binary units); `memswap=-1` means unlimited swap.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    memory: int | None = Field(default=None, description="Memory limit in bytes (>= 6 MiB).")
    memswap: int | None = Field(
        default=None, description="Memory plus swap in bytes (>= memory), or -1 for unlimited."
    )
    cpushares: int | None = Field(default=None, description="Relative CPU weight (> 0).")
    cpusetcpus: str | None = Field(default=None, description="CPUs to use, e.g. '0-3,5'.")
    cpuperiod: int | None = Field(
        default=None, description="CFS period in microseconds (1000 to 1000000)."
    )
    cpuquota: int | None = Field(
        default=None, description="CFS quota in microseconds: -1 (no limit) or >= 1000."
    )
    cpusetmems: str | None = Field(default=None, description="Memory nodes to use, e.g. '0'.")

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            memory: int | str | None = None,
            memswap: int | str | None = None,
            cpushares: int | None = None,
            cpusetcpus: str | None = None,
            cpuperiod: int | None = None,
            cpuquota: int | None = None,
            cpusetmems: str | None = None,
        ) -> None: ...

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_size(cls, value: object) -> object:
        return _size_or_none(value, "memory")

    @field_validator("memswap", mode="before")
    @classmethod
    def _memswap_size(cls, value: object) -> object:
        if value in (-1, "-1") and not isinstance(value, bool):
            return -1
        return _size_or_none(value, "memswap")

    @field_validator("memory")
    @classmethod
    def _memory_min(cls, value: int | None) -> int | None:
        if value is not None and value < _LINUX_MIN_MEMORY:
            raise ValueError(
                f"memory must be at least 6 MiB ({_LINUX_MIN_MEMORY} bytes), the engine's "
                f"minimum; got {value}"
            )
        return value

    @field_validator("memswap")
    @classmethod
    def _memswap_range(cls, value: int | None) -> int | None:
        if value is not None and value != -1 and value <= 0:
            raise ValueError(f"memswap must be a positive size or -1 (unlimited), got {value}")
        return value

    @field_validator("cpushares")
    @classmethod
    def _shares_positive(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError(f"cpushares must be a positive integer, got {value}")
        return value if value is None else _int64(value, "cpushares")

    @field_validator("cpuperiod")
    @classmethod
    def _period_range(cls, value: int | None) -> int | None:
        if value is not None and not 1000 <= value <= 1_000_000:
            raise ValueError(
                f"cpuperiod must be between 1000 and 1000000 microseconds, got {value}"
            )
        return value

    @field_validator("cpuquota")
    @classmethod
    def _quota_min(cls, value: int | None) -> int | None:
        # -1 is the kernel's "no limit", which the CLI passes through; the engine refuses
        # only positive quotas below 1 ms.
        if value is not None and value != -1 and value < 1000:
            raise ValueError(
                f"cpuquota must be -1 (no limit) or at least 1000 microseconds, got {value}"
            )
        return value if value is None else _int64(value, "cpuquota")

    @field_validator("cpusetcpus", "cpusetmems")
    @classmethod
    def _cpuset(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value is None else _check_cpuset(value, str(info.field_name))

    @model_validator(mode="after")
    def _swap_needs_memory(self) -> ContainerLimits:
        if self.memswap is not None and self.memswap != -1:
            if self.memory is None:
                raise ValueError("memswap needs memory to be set too (the engine refuses it)")
            if self.memswap < self.memory:
                raise ValueError(
                    f"memswap ({self.memswap}) must be at least memory ({self.memory}): it is "
                    "the limit of memory plus swap"
                )
        return self

    def query_pairs(self) -> list[tuple[str, str]]:
        """The query parameters these limits are sent as (unset limits are not sent)."""
        pairs: list[tuple[str, str]] = []
        for name in ("memory", "memswap", "cpushares", "cpuperiod", "cpuquota"):
            number = getattr(self, name)
            if number is not None:
                pairs.append((name, str(number)))
        for name in ("cpusetcpus", "cpusetmems"):
            text = getattr(self, name)
            if text is not None:
                pairs.append((name, text))
        return pairs

    def is_empty(self) -> bool:
        """True when no limit is set."""
        return all(getattr(self, name) is None for name in type(self).model_fields)


def _check_path(value: object) -> str | os.PathLike[str] | None:
    """Accept a remote URL or an existing directory, as str or path-like object."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        text = os.fspath(value)
        if not isinstance(text, str):
            raise ValueError("path must be a str path or URL, not a bytes path")
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(
            f"path must be a directory (str or os.PathLike) or a remote URL, "
            f"got {type(value).__name__}"
        )
    if not text:
        raise ValueError("path must not be empty: give a directory such as '.' or a remote URL")
    if isinstance(value, str) and value.startswith(REMOTE_PREFIXES):
        return value
    if not os.path.isdir(text):
        prefixes = ", ".join(REMOTE_PREFIXES)
        raise ValueError(
            f"path must be a directory or a remote URL starting with {prefixes}; "
            f"{text!r} is not a directory"
        )
    return value


def _check_readable(value: object) -> Readable | None:
    """Accept a file-like object (anything with a callable `read`)."""
    if value is None:
        return None
    if not callable(getattr(value, "read", None)):
        raise ValueError(
            "fileobj must be a readable file-like object (with a read() method), "
            f"got {type(value).__name__}"
        )
    return value  # type: ignore[return-value]  # checked structurally just above


_PathField = Annotated[
    str | os.PathLike[str] | None,
    PlainValidator(_check_path),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]}),
]
_FileField = Annotated[Readable | None, PlainValidator(_check_readable), SkipJsonSchema()]
_AnyOutput = BuildOutput | ImageOutput | LocalOutput | TarOutput | OCIOutput | DockerOutput
_CacheImport = LocalCache | RegistryCache | CacheEntry
_CacheExport = InlineCache | LocalCache | RegistryCache | CacheEntry


def _go_bool(text: str) -> bool | None:
    """`text` as Go's strconv.ParseBool reads it, or None when it is not a boolean."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _parse_attest(entry: str) -> tuple[str, bool]:
    """The type of one `--attest` entry and whether it is enabled, by buildx's rules."""
    kind = ""
    enabled = True
    for item in entry.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"attestation {entry!r}: invalid value {item!r} (want key=value)")
        key = key.strip().lower()
        if key == "type":
            kind = value
        elif key == "disabled":
            flag = _go_bool(value)
            if flag is None:
                raise ValueError(f"attestation {entry!r}: invalid value {item!r}")
            enabled = not flag
    if not kind:
        raise ValueError(f"attestation {entry!r}: attestation type not specified")
    return kind, enabled


def _str_tuple(value: object, field: str, what: str) -> object:
    """Turn one string or a sequence of strings into a tuple; refuse anything else."""
    if isinstance(value, str):
        return (value,)
    if value is None:
        return ()
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return tuple(value)
    raise ValueError(
        f"{field} must be {what} (a string or a sequence of strings), got {type(value).__name__}"
    )


def _cache_text(item: str) -> str | LocalCache | RegistryCache | CacheEntry:
    """A `cache_from` string: an image reference as given, or buildx's CSV read."""
    if "=" not in item:
        return item
    parsed = parse_cache(item)
    if isinstance(parsed, InlineCache):
        raise ValueError("cache_from: an inline cache is exported only (use cache_to)")
    return parsed


def _parsed_tuple(value: object, field: str, what: str, parse: Callable[[str], object]) -> object:
    """`_str_tuple`, with each string item read by `parse` (models given as such stay)."""
    items = _str_tuple(value, field, what)
    if not isinstance(items, tuple):
        return items
    return tuple(parse(item) if isinstance(item, str) else item for item in items)


def _not_empty(value: str | None, field: str) -> str | None:
    """Refuse empty strings in lists and names where they cannot mean anything."""
    if value is not None and not value:
        raise ValueError(f"{field} must not be empty")
    return value


def _check_host(entry: str) -> str:
    """Normalise one extra host to `host:ip` (also accepting `host=ip`) and check the IP."""
    host, sep, ip = entry.partition("=")
    if not sep:
        host, sep, ip = entry.partition(":")
    if not sep or not host or ":" in host:
        raise ValueError(
            f"extra_hosts entry {entry!r} must be 'host:ip' (or 'host=ip'), e.g. 'db:10.0.0.2'"
        )
    if ip != _HOST_GATEWAY:
        if len(ip) > 2 and ip[0] == "[" and ip[-1] == "]":
            ip = ip[1:-1]
        try:
            if "%" in ip:
                raise ValueError(ip)
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(
                f"extra_hosts entry {entry!r}: {ip!r} is not an IPv4 or IPv6 address "
                f"or {_HOST_GATEWAY!r}"
            ) from None
    return f"{host}:{ip}"


class BuildOptions(BaseModel):
    """Everything `POST /build` can be asked, validated at construction.

    Every keyword of docker-py's `APIClient.build()` is accepted under the same name, so
    `BuildOptions(**kwargs)` works for existing code, plus the engine parameters docker-py
    lacks. The instance is immutable; `to_query()` turns it into the request's query.
    """

    # Inputs stay out of error texts: build args and labels may carry secrets.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, hide_input_in_errors=True)

    path: _PathField = Field(
        default=None,
        description="Context directory, or a remote context URL (http(s)://, git://, "
        "github.com/, git@) sent as `remote`.",
    )
    tag: tuple[str, ...] = Field(
        default=(), description="Image names to give the result (`t`, repeated)."
    )
    quiet: bool = Field(default=False, description="Suppress the build output (`q`).")
    fileobj: _FileField = Field(
        default=None,
        description="A Dockerfile to read (binary or text), or with custom_context a tar.",
    )
    nocache: bool = Field(default=False, description="Do not use the build cache.")
    rm: bool = Field(default=True, description="Remove intermediate containers (classic builder).")
    timeout: float | None = Field(
        default=None, description="HTTP read timeout for the build call, seconds; None = none."
    )
    custom_context: bool = Field(
        default=False, description="fileobj is the whole context, a (compressed) tar."
    )
    encoding: str | None = Field(
        default=None, description="Content-Encoding of a custom_context tar (e.g. gzip)."
    )
    pull: bool = Field(default=False, description="Always pull the base images.")
    forcerm: bool = Field(
        default=False, description="Always remove intermediate containers (classic builder)."
    )
    dockerfile: str | None = Field(
        default=None, description="Dockerfile path inside the context; None = 'Dockerfile'."
    )
    container_limits: ContainerLimits | None = Field(
        default=None, description="Resource limits of RUN containers (classic builder)."
    )
    decode: bool = Field(
        default=False, description="Accepted for docker-py compatibility; events are decoded."
    )
    buildargs: dict[str, str | None] = Field(
        default_factory=dict, description="Build-time variables; None = declared without value."
    )
    gzip: bool = Field(default=False, description="Compress the context with gzip.")
    shmsize: int | None = Field(
        default=None, description="Size of /dev/shm in bytes or as '64m' (> 0)."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the image.")
    cache_from: tuple[str | _CacheImport, ...] = Field(
        default=(),
        description="Cache sources: image references (POST /build's `cachefrom`; a registry "
        "import on the Control API), typed caches of buildsdk.cache_backends or buildx's "
        "--cache-from text (the Control API only).",
    )
    target: str | None = Field(default=None, description="Build stage to stop at.")
    network_mode: str | None = Field(
        default=None, description="Network of RUN: bridge, host, none, container:<id>, a name."
    )
    squash: bool | None = Field(
        default=None, description="Squash the new layers (experimental engines only)."
    )
    extra_hosts: tuple[str, ...] = Field(
        default=(), description="Extra /etc/hosts entries as 'host:ip' (ip may be host-gateway)."
    )
    platform: str | None = Field(
        default=None,
        description="Target platform os[/arch[/variant]]; several as a comma list or a "
        "sequence (BuildKit's Control API only: the result is an image index).",
    )
    isolation: Literal["default", "process", "hyperv"] | None = Field(
        default=None, description="Container isolation (Windows: process or hyperv)."
    )
    use_config_proxy: bool = Field(
        default=True, description="Add the proxies of config.json as build args."
    )
    remote: str | None = Field(
        default=None, description="A remote context (Git or HTTP(S) URL) sent as `remote`."
    )
    ulimits: tuple[Ulimit, ...] = Field(
        default=(), description="Resource limits of RUN containers."
    )
    cgroup_parent: str | None = Field(
        default=None, description="Parent cgroup of RUN containers (classic builder)."
    )
    security_opt: tuple[str, ...] = Field(
        default=(), description="Security options (Windows engines only)."
    )
    outputs: tuple[_AnyOutput, ...] = Field(
        default=(),
        description="At most one BuildKit exporter (needs version '2'): a typed model of "
        "buildsdk.outputs, a generic BuildOutput, or buildx's --output text.",
    )
    version: Literal["1", "2"] = Field(
        default="1", description="Builder: '1' classic, '2' BuildKit."
    )
    build_id: str | None = Field(
        default=None, description="An ID that lets POST /build/cancel stop this build."
    )
    session_id: str | None = Field(
        default=None, description="ID of an open BuildKit session (`session`)."
    )
    secrets: tuple[BuildSecret, ...] = Field(
        default=(),
        description="Secrets for `RUN --mount=type=secret` (BuildKit; served by a session).",
    )
    ssh: tuple[SSHForward, ...] = Field(
        default=(),
        description="ssh-agents or key files for `RUN --mount=type=ssh` (BuildKit; via a session).",
    )
    context_transfer: Literal["auto", "tar", "session"] = Field(
        default="auto",
        description="How a local context reaches BuildKit: 'tar' uploads it with the "
        "request; 'session' lets the engine pull only changed files through a session; "
        "'auto' uses a session for a BuildKit build of a local directory when the "
        "`session` extra is installed and the engine has sessions, else a tar.",
    )
    build_endpoint: Literal["auto", "build", "grpc"] = Field(
        default="auto",
        description="How the build reaches the engine: 'build' pins POST /build; 'grpc' "
        "pins BuildKit's Control API (Control/Solve through POST /grpc, with a session); "
        "'auto' takes the Control API for options POST /build cannot carry (an oci or "
        "docker archive output, push in an image output, several outputs, the fields only "
        "it carries), and for a BuildKit build on Docker 23+ (API 1.42) whose options it "
        "all carries, as docker build does; else POST /build (Podman, Docker 20.10, the "
        "classic builder).",
    )
    provenance: bool | str | None = Field(
        default=None,
        description="Provenance attestation as buildx's --provenance: True, False (also "
        "turns off the engine's default min provenance), 'min', 'max' or attributes such as "
        "'mode=max'; None = the default. Control API only.",
    )
    sbom: bool | str | None = Field(
        default=None,
        description="SBOM attestation as buildx's --sbom: True, False or attributes such as "
        "'generator=IMAGE'; the engine pulls the scanner image. Control API only.",
    )
    attest: tuple[str, ...] = Field(
        default=(),
        description="Attestations as buildx's --attest entries, e.g. "
        "'type=provenance,mode=max' or 'type=sbom,disabled=true'. Control API only.",
    )
    build_contexts: dict[str, str] = Field(
        default_factory=dict,
        description="Named contexts (buildx's --build-context), name to value: a local "
        "directory, 'docker-image://REF', a git URL or an https URL. Names are image-reference "
        "names, kept as buildx shortens them. They need the Control API. "
        "'oci-layout://DIR' (with ':TAG' and/or '@sha256:...') reads an OCI layout directory "
        "(containerd image store), its tag resolved in DIR/index.json.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="OCI annotations written by every output, as buildx's --annotation "
        "'[TYPE[PLATFORM]:]KEY' -> VALUE (TYPE manifest, index, manifest-descriptor, "
        "index-descriptor); needs explicit outputs and the Control API.",
    )
    no_cache_filter: tuple[str, ...] = Field(
        default=(),
        description="Build stages to run without the cache (buildx's --no-cache-filter; "
        "Control API).",
    )
    allow: tuple[Literal["network.host", "security.insecure"], ...] = Field(
        default=(),
        description="Entitlements to ask the engine for (buildx's --allow; Control API); "
        "the engine refuses those its configuration does not grant.",
    )
    cache_to: tuple[_CacheExport, ...] = Field(
        default=(),
        description="Cache exports (the Control API only): typed caches of "
        "buildsdk.cache_backends or buildx's --cache-to text.",
    )

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            path: str | os.PathLike[str] | None = None,
            tag: str | Sequence[str] | None = None,
            quiet: bool = False,
            fileobj: Readable | None = None,
            nocache: bool = False,
            rm: bool = True,
            timeout: float | None = None,
            custom_context: bool = False,
            encoding: str | None = None,
            pull: bool = False,
            forcerm: bool = False,
            dockerfile: str | None = None,
            container_limits: ContainerLimits | Mapping[str, int | str] | None = None,
            decode: bool = False,
            buildargs: Mapping[str, str | None] | None = None,
            gzip: bool = False,
            shmsize: int | str | None = None,
            labels: Mapping[str, str] | None = None,
            cache_from: str | Sequence[str | _CacheImport] | None = None,
            target: str | None = None,
            network_mode: str | None = None,
            squash: bool | None = None,
            extra_hosts: Mapping[str, str] | Sequence[str] | str | None = None,
            platform: str | Sequence[str] | None = None,
            isolation: Literal["default", "process", "hyperv"] | None = None,
            use_config_proxy: bool = True,
            remote: str | None = None,
            ulimits: Sequence[Ulimit | str | Mapping[str, Any]] | None = None,
            cgroup_parent: str | None = None,
            security_opt: str | Sequence[str] | None = None,
            outputs: Sequence[_AnyOutput | Mapping[str, Any] | str] | None = None,
            version: Literal["1", "2"] = "1",
            build_id: str | None = None,
            session_id: str | None = None,
            secrets: Sequence[BuildSecret | str | Mapping[str, Any]] | None = None,
            ssh: Sequence[SSHForward | str | Mapping[str, Any]] | str | None = None,
            context_transfer: Literal["auto", "tar", "session"] = "auto",
            build_endpoint: Literal["auto", "build", "grpc"] = "auto",
            provenance: bool | str | None = None,
            sbom: bool | str | None = None,
            attest: str | Sequence[str] | None = None,
            build_contexts: Mapping[str, str | os.PathLike[str]] | None = None,
            annotations: Mapping[str, str] | Sequence[str] | None = None,
            no_cache_filter: str | Sequence[str] | None = None,
            allow: Sequence[Literal["network.host", "security.insecure"]] | str | None = None,
            cache_to: str | Sequence[_CacheExport | str] | None = None,
        ) -> None: ...

    # -- field normalisation -------------------------------------------------------------

    @field_validator("tag", mode="before")
    @classmethod
    def _tag_tuple(cls, value: object) -> object:
        return _str_tuple(value, "tag", "one image name or several")

    @field_validator("tag")
    @classmethod
    def _tag_grammar(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_build_tag(item) for item in value)

    @field_validator("cache_from", mode="before")
    @classmethod
    def _cache_from_tuple(cls, value: object) -> object:
        # An image reference never holds '=': such text is buildx's --cache-from syntax.
        return _parsed_tuple(value, "cache_from", "image references", _cache_text)

    @field_validator("cache_from")
    @classmethod
    def _cache_from_grammar(
        cls, value: tuple[str | _CacheImport, ...]
    ) -> tuple[str | _CacheImport, ...]:
        for item in value:
            if isinstance(item, LocalCache) and item.src is None:
                raise ValueError("cache_from: a local cache is read from src, not dest")
        return tuple(
            validate_image_reference(item) if isinstance(item, str) else item for item in value
        )

    @field_validator("cache_to", mode="before")
    @classmethod
    def _cache_to_tuple(cls, value: object) -> object:
        return _parsed_tuple(value, "cache_to", "cache exports", parse_cache)

    @field_validator("cache_to")
    @classmethod
    def _cache_to_direction(cls, value: tuple[_CacheExport, ...]) -> tuple[_CacheExport, ...]:
        for item in value:
            if isinstance(item, LocalCache) and item.dest is None:
                raise ValueError("cache_to: a local cache is written to dest, not read from src")
        return value

    @field_validator("security_opt", mode="before")
    @classmethod
    def _security_opt_tuple(cls, value: object) -> object:
        return _str_tuple(value, "security_opt", "security options")

    @field_validator("security_opt")
    @classmethod
    def _security_opt_items(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            _not_empty(item, "security_opt entries")
        return value

    @field_validator("extra_hosts", mode="before")
    @classmethod
    def _extra_hosts_tuple(cls, value: object) -> object:
        if isinstance(value, Mapping):
            # docker-py's dict form, sorted as docker-py sends it.
            items = sorted(value.items(), key=lambda item: str(item[0]))
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in items):
                raise ValueError("extra_hosts as a mapping must map host names (str) to IPs (str)")
            return tuple(f"{host}:{ip}" for host, ip in items)
        return _str_tuple(value, "extra_hosts", "'host:ip' entries or a {host: ip} mapping")

    @field_validator("extra_hosts")
    @classmethod
    def _extra_hosts_check(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_host(item) for item in value)

    @field_validator("buildargs", "labels", mode="before")
    @classmethod
    def _mapping_dict(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return dict(value)
        raise ValueError(f"{info.field_name} must be a mapping of str to str")

    @field_validator("buildargs", "labels")
    @classmethod
    def _keys_not_empty(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "" in value:
            raise ValueError(f"{info.field_name} keys must not be empty")
        return value

    @field_validator("build_contexts", mode="before")
    @classmethod
    def _build_contexts_dict(cls, value: object) -> object:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError("build_contexts must be a mapping of names to paths or URLs")
        contexts: dict[str, str] = {}
        for raw_name, raw_value in value.items():
            if not isinstance(raw_name, str):
                raise ValueError("build_contexts names must be strings")
            given = os.fspath(raw_value) if isinstance(raw_value, os.PathLike) else raw_value
            if not isinstance(given, str) or not given:
                raise ValueError(
                    f"build_contexts[{raw_name!r}] must be a non-empty path or URL string"
                )
            name = context_name(raw_name)
            if name in contexts:
                # buildx would keep the last one silently; two values for one name is a mistake.
                raise ValueError(
                    f"build_contexts names {raw_name!r} and another name that both mean {name!r}"
                )
            if given.startswith("docker-image://"):
                validate_image_reference(given.removeprefix("docker-image://"))
            elif context_kind(given) == "oci-layout":
                parse_oci_layout(given)
            elif url_has_credentials(given):
                # The value travels in reprs, dry runs and the engine's logs.
                raise ValueError(
                    f"build_contexts[{raw_name!r}] carries credentials in its URL, which would "
                    "show in logs and reprs; remove them"
                )
            contexts[name] = given
        return contexts

    @field_validator("annotations", mode="before")
    @classmethod
    def _annotations_parsed(cls, value: object) -> object:
        if value is None:
            return {}
        if not isinstance(value, (str, Mapping, Sequence)) or isinstance(value, bytes):
            raise ValueError("annotations must be a mapping or a sequence of 'KEY=VALUE' texts")
        return parse_annotations(value)

    @field_validator("no_cache_filter", mode="before")
    @classmethod
    def _no_cache_filter_tuple(cls, value: object) -> object:
        return _str_tuple(value, "no_cache_filter", "stage names")

    @field_validator("no_cache_filter")
    @classmethod
    def _stage_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for stage in value:
            # The engine reads the stages as one comma-separated list.
            if not stage or "," in stage or stage != stage.strip():
                raise ValueError(
                    f"no_cache_filter stage names must be non-empty, without commas or "
                    f"surrounding spaces, got {stage!r}"
                )
        return value

    @field_validator("allow", mode="before")
    @classmethod
    def _allow_tuple(cls, value: object) -> object:
        return _str_tuple(value, "allow", "entitlement names")

    @field_validator("container_limits", mode="before")
    @classmethod
    def _limits_model(cls, value: object) -> object:
        if isinstance(value, Mapping):
            allowed = ", ".join(ContainerLimits.model_fields)
            unknown = sorted(str(key) for key in value if key not in ContainerLimits.model_fields)
            if unknown:
                raise ValueError(
                    f"container_limits has unknown keys {', '.join(unknown)}; allowed: {allowed}"
                )
            return _nested(ContainerLimits, value, "container_limits")
        return value

    @field_validator("container_limits")
    @classmethod
    def _no_empty_limits(cls, value: ContainerLimits | None) -> ContainerLimits | None:
        # No limit set is the same as no limits; BuildKit need not refuse it.
        return None if value is not None and value.is_empty() else value

    @field_validator("shmsize", mode="before")
    @classmethod
    def _shmsize_bytes(cls, value: object) -> object:
        return _size_or_none(value, "shmsize")

    @field_validator("shmsize")
    @classmethod
    def _shmsize_positive(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError(f"shmsize must be greater than 0 bytes, got {value}")
        return value

    @field_validator("ulimits", mode="before")
    @classmethod
    def _ulimits_models(cls, value: object) -> object:
        if value is None:
            return ()
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError(
                "ulimits must be a sequence of Ulimit objects or strings like 'nofile=1024:2048'"
            )
        items: list[object] = []
        for item in value:
            if isinstance(item, str):
                items.append(Ulimit.parse(item))
            elif isinstance(item, Mapping):
                items.append(_nested(Ulimit, item, "ulimits"))
            else:
                items.append(item)
        return tuple(items)

    @field_validator("ulimits")
    @classmethod
    def _ulimit_names_unique(cls, value: tuple[Ulimit, ...]) -> tuple[Ulimit, ...]:
        names = [ulimit.name for ulimit in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"ulimits sets {', '.join(duplicates)} more than once; give each once")
        return value

    @field_validator("secrets", mode="before")
    @classmethod
    def _secret_models(cls, value: object) -> object:
        if value is None:
            return ()
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise ValueError(
                "secrets must be a sequence of BuildSecret objects or strings like "
                "'id=token,src=./token.txt'"
            )
        items: list[object] = []
        for item in value:
            if isinstance(item, str):
                items.append(BuildSecret.parse(item))
            elif isinstance(item, Mapping):
                items.append(_nested(BuildSecret, item, "secrets"))
            else:
                items.append(item)
        return tuple(items)

    @field_validator("ssh", mode="before")
    @classmethod
    def _ssh_models(cls, value: object) -> object:
        if value is None:
            return ()
        if isinstance(value, str):
            value = (value,)
        if isinstance(value, (bytes, Mapping)) or not isinstance(value, Sequence):
            raise ValueError(
                "ssh must be a sequence of SSHForward objects or strings like 'default' or "
                "'id=/path/to/agent.sock'"
            )
        items: list[object] = []
        for item in value:
            if isinstance(item, str):
                items.append(SSHForward.parse(item))
            elif isinstance(item, Mapping):
                items.append(_nested(SSHForward, item, "ssh"))
            else:
                items.append(item)
        return tuple(items)

    @field_validator("secrets", "ssh")
    @classmethod
    def _ids_unique(
        cls, value: tuple[BuildSecret | SSHForward, ...], info: ValidationInfo
    ) -> tuple[BuildSecret | SSHForward, ...]:
        ids = [item.id for item in value]
        duplicates = sorted({ident for ident in ids if ids.count(ident) > 1})
        if duplicates:
            raise ValueError(
                f"{info.field_name} gives the id {', '.join(duplicates)} more than once"
            )
        return value

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs_models(cls, value: object) -> object:
        if value is None:
            return ()
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise ValueError("outputs must be a sequence of at most one output")
        return tuple(
            _nested(BuildOutput, item, "outputs")
            if isinstance(item, Mapping)
            else parse_output(item)
            if isinstance(item, str)
            else item
            for item in value
        )

    @field_validator("isolation", mode="before")
    @classmethod
    def _isolation_lower(cls, value: object) -> object:
        # The engine compares isolation modes case-insensitively.
        return value.lower() if isinstance(value, str) else value

    @field_validator("platform", mode="before")
    @classmethod
    def _platform_lower(cls, value: object) -> object:
        # Lower-cased as the Go client does before sending.
        if value == "":
            return None
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            # Several platforms travel as buildx sends them: one comma-joined attribute.
            if not all(isinstance(item, str) for item in value):
                raise ValueError("platform must be a string or a sequence of strings")
            value = ",".join(value) or None
        return value.lower() if isinstance(value, str) else value

    @field_validator("platform")
    @classmethod
    def _platform_grammar(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for item in value.split(","):
            parts = item.split("/")
            valid = 1 <= len(parts) <= 3 and bool(_PLATFORM_OS_RE.match(parts[0]))
            valid = valid and all(_PLATFORM_PART_RE.match(part) for part in parts[1:])
            if not valid:
                raise ValueError(
                    f"platform must be os[/arch[/variant]] such as 'linux/amd64' or "
                    f"'linux/arm64/v8', got {value!r}"
                )
        platforms = value.split(",")
        if len(set(platforms)) != len(platforms):
            raise ValueError(f"platform names a platform more than once: {value!r}")
        return value

    @field_validator("attest", mode="before")
    @classmethod
    def _attest_tuple(cls, value: object) -> object:
        return _str_tuple(value, "attest", "buildx --attest entries")

    @field_validator("provenance", "sbom", mode="before")
    @classmethod
    def _attestation_flag(cls, value: object, info: ValidationInfo) -> object:
        if value == "":
            return None
        if isinstance(value, str) and value.lower() in ("min", "max"):
            # A shorthand buildx lacks (it wants mode=min): the mode alone.
            return f"mode={value.lower()}"
        return value

    @field_validator("dockerfile", "target", "network_mode", "cgroup_parent", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker-py and the Go client both treat an empty string as "not given".
        return None if value == "" else value

    @field_validator("remote", "build_id", "session_id")
    @classmethod
    def _ids_not_empty(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _not_empty(value, str(info.field_name))

    @field_validator("encoding")
    @classmethod
    def _encoding_token(cls, value: str | None) -> str | None:
        if value is not None and not _TOKEN_RE.match(value):
            raise ValueError(
                f"encoding must be a Content-Encoding token such as 'gzip', got {value!r}"
            )
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_positive(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {value}")
        return value

    # -- rules between fields ---------------------------------------------------------------

    @model_validator(mode="after")
    def _one_output_on_post_build(self) -> BuildOptions:
        # POST /build refuses a second output; BuildKit's Control API exports to several.
        if len(self.outputs) > 1 and self.build_endpoint == "build":
            raise ValueError(
                f"outputs: POST /build (build_endpoint='build') exports to one output, got "
                f"{len(self.outputs)}; several need the Control API (build_endpoint 'auto' "
                "or 'grpc')"
            )
        return self

    @model_validator(mode="after")
    def _control_api_only(self) -> BuildOptions:
        # Parsed once here so that a malformed entry fails when the options are made.
        attestations = self.attestations()
        if self.build_endpoint != "build":
            return self
        wanted = [name for name, value in attestations.items() if value is not None]
        if len(self.platforms) > 1:
            wanted.insert(0, f"{len(self.platforms)} platforms")
        if wanted:
            raise ValueError(
                f"{', '.join(wanted)}: POST /build (build_endpoint='build') builds one platform "
                "without attestations; use the Control API (build_endpoint 'auto' or 'grpc')"
            )
        return self

    @model_validator(mode="after")
    def _named_contexts_need_control_api(self) -> BuildOptions:
        # POST /build has no parameter for them; BuildKit's frontend reads them from the
        # Control API's frontend attributes only.
        if self.build_contexts and self.build_endpoint == "build":
            raise ValueError(
                "build_contexts: POST /build (build_endpoint='build') cannot carry named "
                "contexts; they need the Control API (build_endpoint 'auto' or 'grpc')"
            )
        return self

    @model_validator(mode="after")
    def _control_api_fields(self) -> BuildOptions:
        if self.annotations and not self.outputs:
            # buildx writes annotations only into the outputs it was given and silently
            # drops them with its implicit default export; saying so beats a bare image.
            raise ValueError(
                "annotations are written by explicit outputs only (buildx drops them "
                "otherwise): give outputs, e.g. ['type=image'] or push"
            )
        pinned = [name for name in _CONTROL_ONLY if getattr(self, name)]
        if pinned and self.build_endpoint == "build":
            raise ValueError(
                f"{', '.join(pinned)}: POST /build (build_endpoint='build') cannot carry "
                "them; they need the Control API (build_endpoint 'auto' or 'grpc')"
            )
        return self

    @model_validator(mode="after")
    def _context_rules(self) -> BuildOptions:
        path_is_remote = isinstance(self.path, str) and self.path.startswith(REMOTE_PREFIXES)
        sources = [
            name
            for name, given in (
                ("path", self.path is not None),
                ("fileobj", self.fileobj is not None),
                ("remote", self.remote is not None),
            )
            if given
        ]
        dockerfile_with_dir = (
            sources == ["path", "fileobj"] and not path_is_remote and not self.custom_context
        )
        if not sources:
            raise ValueError(
                "one context source is required: path (a directory or remote URL), "
                "fileobj, or remote"
            )
        if len(sources) > 1 and not dockerfile_with_dir:
            raise ValueError(
                f"give exactly one context source, got {' and '.join(sources)}: path (a "
                "directory or remote URL), fileobj, or remote (fileobj may be combined with a "
                "local directory path to read the Dockerfile from it)"
            )
        if self.custom_context and self.fileobj is None:
            raise ValueError("custom_context needs fileobj: the tar archive to send")
        if self.encoding is not None and not self.custom_context:
            raise ValueError(
                "encoding is only allowed with custom_context (it labels the tar you give)"
            )
        if self.gzip and self.encoding is not None:
            raise ValueError("gzip and encoding are exclusive: gzip compresses the context itself")
        if self.gzip and (self.custom_context or self.remote_url is not None):
            raise ValueError(
                "gzip only applies to a context buildsdk packs; a custom_context or remote "
                "context is sent as given"
            )
        if self.context_transfer == "session" and (
            self.path is None or self.remote_url is not None or self.custom_context
        ):
            raise ValueError(
                "context_transfer='session' needs a local directory path (fileobj may give "
                "the Dockerfile): the engine pulls the files from it"
            )
        self._check_text()
        return self

    def _check_text(self) -> None:
        """Refuse strings that cannot be sent as UTF-8 (lone surrogates)."""
        for name in type(self).model_fields:
            bad = _find_unencodable(getattr(self, name))
            if bad is not None:
                # The value itself stays out of the message: it may be a secret build arg.
                raise ValueError(
                    f"{name} contains a lone surrogate character, which is not valid Unicode "
                    "text and cannot be sent"
                )

    # -- derived values -----------------------------------------------------------------

    @property
    def remote_url(self) -> str | None:
        """The URL sent as `remote`: the remote path or `remote`, or None for local contexts."""
        if self.remote is not None:
            return self.remote
        if isinstance(self.path, str) and self.path.startswith(REMOTE_PREFIXES):
            return self.path
        return None

    @property
    def platforms(self) -> tuple[str, ...]:
        """The target platforms, in the order given; empty when `platform` is unset."""
        return tuple(self.platform.split(",")) if self.platform else ()

    def attestations(self) -> dict[str, str | None]:
        """The attestations asked for, keyed by type, as buildx sends them: the frontend
        attribute `attest:<type>` gets the value; None means turned off (no attribute, and
        for provenance no engine default either). Raises ValueError for a malformed entry."""
        entries = list(self.attest)
        for kind, value in (("provenance", self.provenance), ("sbom", self.sbom)):
            if value is None:
                continue
            if isinstance(value, bool):
                entries.append(f"type={kind},disabled={str(not value).lower()}")
            elif (flag := _go_bool(value)) is not None:
                entries.append(f"type={kind},disabled={str(not flag).lower()}")
            else:
                entries.append(f"type={kind},{value}")
        out: dict[str, str | None] = {}
        for entry in entries:
            kind, enabled = _parse_attest(entry)
            if kind in out:
                raise ValueError(f"duplicate attestation field {kind}")
            out[kind] = entry if enabled else None
        return out

    @property
    def is_remote(self) -> bool:
        """True when the engine fetches the context itself (no context body is uploaded)."""
        return self.remote_url is not None

    # -- serialization ------------------------------------------------------------------

    def to_query(
        self, api_version: ApiVersion | str, *, dockerfile: str | None = None
    ) -> list[tuple[str, str]]:
        """Return the query pairs of `POST /build`, ordered as the Docker CLI sends them.

        `dockerfile` overrides the Dockerfile name (the context packer passes the name it
        gave a Dockerfile read from outside the context). Raises `UnsupportedOption` for an
        option `api_version` does not understand or the chosen builder ignores.
        """
        version = ApiVersion.parse(api_version)
        query = self._query(version, dockerfile)
        problems = self._builder_problems(version) + self._api_problems(version, query)
        if problems:
            raise problems[0]
        return [(key, value) for key in sorted(query) for value in query[key]]

    def unsupported(self, api_version: ApiVersion | str) -> list[UnsupportedOption]:
        """Every option the chosen builder or `api_version` cannot honour, in one list.

        `to_query` raises the first of them; this is for reporting them all at once.
        """
        version = ApiVersion.parse(api_version)
        query = self._query(version, None)
        return self._builder_problems(version) + self._api_problems(version, query)

    def _query(self, version: ApiVersion, dockerfile: str | None) -> dict[str, list[str]]:
        """The query parameters, unchecked, in the order they were added."""
        query: dict[str, list[str]] = {}

        def put(key: str, *values: str) -> None:
            query.setdefault(key, []).extend(values)

        if self.buildargs:
            put("buildargs", go_json(_sorted_map(self.buildargs)))
        if self.build_id is not None:
            put("buildid", self.build_id)
        refs = self.cache_refs
        if refs:
            put("cachefrom", go_json(list(refs)))
        if self.cgroup_parent is not None:
            put("cgroupparent", self.cgroup_parent)
        if self.container_limits is not None:
            for key, value in self.container_limits.query_pairs():
                put(key, value)
        name = dockerfile if dockerfile is not None else self.dockerfile
        if name:
            put("dockerfile", name)
        elif not self.custom_context:
            # The CLI names the default for directory contexts; for a ready-made archive
            # (`docker build - < ctx.tar`) it sends nothing and lets the engine look.
            put("dockerfile", "Dockerfile")
        if self.extra_hosts:
            put("extrahosts", *self.extra_hosts)
        if self.forcerm:
            put("forcerm", "1")
        if self.isolation is not None and self.isolation != "default":
            put("isolation", self.isolation)
        if self.labels:
            put("labels", go_json(_sorted_map(self.labels)))
        if self.network_mode is not None and self.network_mode != "default":
            put("networkmode", self.network_mode)
        if self.nocache:
            put("nocache", "1")
        if self.outputs:
            put("outputs", go_json([output.to_engine() for output in self.outputs]))
        if self.platform is not None:
            put("platform", self.platform)
        if self.pull:
            put("pull", "1")
        if self.quiet:
            put("q", "1")
        if self.remote_url is not None:
            put("remote", self.remote_url)
        if not self.rm:
            put("rm", "0")
        if self.security_opt:
            put("securityopt", *self.security_opt)
        if self.session_id is not None:
            put("session", self.session_id)
        if self.shmsize is not None:
            put("shmsize", str(self.shmsize))
        if self.squash:
            put("squash", "1")
        if self.tag:
            put("t", *self.tag)
        if self.target is not None:
            put("target", self.target)
        if self.ulimits:
            # The CLI keeps ulimits in a map and sends them sorted by name.
            ordered = sorted(self.ulimits, key=lambda ulimit: ulimit.name)
            put("ulimits", go_json([ulimit.to_engine() for ulimit in ordered]))
        put("version", self.version)
        return query

    def _api_problems(
        self, version: ApiVersion, query: dict[str, list[str]]
    ) -> list[UnsupportedOption]:
        """The parameters `version` does not understand."""
        problems: list[UnsupportedOption] = []
        for key in query:
            if key == "version" and self.version == "1":
                # The CLI sends version=1 to every engine; older ones ignore what they
                # do not know, and only have the classic builder anyway.
                continue
            required = BUILD_PARAM_MIN_VERSION.get(key)
            option = _PARAM_OPTION.get(key, key)
            what = f"{option} (query parameter {key!r})"
            if required is not None and (gate := api_too_old(option, what, required, version)):
                problems.append(gate)
        if None in self.buildargs.values() and (
            gate := api_too_old(
                "buildargs",
                "a build arg without a value (None)",
                _NULL_BUILDARGS_MIN_VERSION,
                version,
                consequence="which would read it as an empty string",
            )
        ):
            problems.append(gate)
        return problems

    @property
    def cache_refs(self) -> tuple[str, ...]:
        """The image references of `cache_from` (what POST /build's `cachefrom` carries)."""
        return tuple(item for item in self.cache_from if isinstance(item, str))

    def _builder_problems(self, api_version: ApiVersion) -> list[UnsupportedOption]:
        """The options the chosen builder would silently ignore on `api_version`."""
        problems: list[UnsupportedOption] = [
            UnsupportedOption(
                name,
                f"{name} cannot be sent on POST /build, which has no parameter for it; "
                "it needs the Control API (build_endpoint 'auto' or 'grpc')",
                required="Control API",
                given="POST /build",
            )
            for name in _CONTROL_ONLY
            if getattr(self, name)
        ]
        for option, given in (
            ("cache_to", bool(self.cache_to)),
            ("cache_from", len(self.cache_refs) < len(self.cache_from)),
        ):
            if given:
                problems.append(
                    UnsupportedOption(
                        option,
                        f"{option} with a typed cache needs BuildKit's Control API "
                        "(build_endpoint 'auto' or 'grpc'); POST /build carries only image "
                        "references in cachefrom",
                        required="Control API",
                        given="POST /build",
                    )
                )
        if self.version == "1":
            if self.outputs:
                problems.append(
                    self._unsupported_by_builder("outputs", "needs BuildKit: set version='2'", "2")
                )
            if self.remote == "client-session":
                problems.append(
                    self._unsupported_by_builder(
                        "remote", "'client-session' needs BuildKit: set version='2'", "2"
                    )
                )
            for option, is_set in (
                ("secrets", bool(self.secrets)),
                ("ssh", bool(self.ssh)),
                ("context_transfer", self.context_transfer == "session"),
            ):
                if is_set:
                    problems.append(
                        self._unsupported_by_builder(
                            option, "needs a BuildKit session: set version='2'", "2"
                        )
                    )
            return problems
        ignored: list[tuple[str, bool]] = [
            ("container_limits", self.container_limits is not None),
            ("rm", not self.rm),
            ("forcerm", self.forcerm),
            ("cgroup_parent", self.cgroup_parent is not None),
            ("isolation", self.isolation not in (None, "default")),
            ("squash", bool(self.squash)),
        ]
        for option, is_set in ignored:
            if is_set:
                problems.append(
                    self._unsupported_by_builder(
                        option, "is ignored by BuildKit: remove it or use version='1'", "1"
                    )
                )
        if api_version < _BUILDKIT_LIMITS_API:
            for option, is_set in (
                ("ulimits", bool(self.ulimits)),
                ("shmsize", self.shmsize is not None),
            ):
                if is_set:
                    problems.append(
                        self._unsupported_by_builder(
                            option,
                            f"is ignored by BuildKit before API {_BUILDKIT_LIMITS_API} (Docker "
                            f"Engine 23.0; this engine speaks {api_version}): remove it or use "
                            "version='1'",
                            "1",
                        )
                    )
        for output in self.outputs:
            service = None if isinstance(output, BuildOutput) else output.session_service
            # local and tar exports are written by the session's FileSend receivers on
            # this path too, as the Docker CLI does; the archives and layouts are not.
            if service is not None and output.type not in ("local", "tar"):
                problems.append(
                    UnsupportedOption(
                        "outputs",
                        f"outputs type {output.type!r} needs the client to serve {service} "
                        "through the BuildKit session, which buildsdk does only on the Control "
                        "API path, not on POST /build",
                        given="POST /build",
                    )
                )
        cache_only = [output.type for output in self.outputs] == ["cacheonly"]
        if cache_only and api_version >= _CACHEONLY_BROKEN_API:
            problems.append(
                UnsupportedOption(
                    "outputs",
                    "outputs type 'cacheonly' fails on Docker Engine 26 and later (API "
                    f"{_CACHEONLY_BROKEN_API}+; this engine speaks {api_version}): its POST "
                    "/build hands BuildKit an exporter without a name, which BuildKit refuses; "
                    "build without outputs, or use docker buildx, which sends no exporter",
                    given=str(api_version),
                )
            )
        if self.network_mode is not None and self.network_mode not in _BUILDKIT_NETWORK_MODES:
            problems.append(
                self._unsupported_by_builder(
                    "network_mode",
                    f"{self.network_mode!r} is not supported by BuildKit, which accepts only "
                    "default, host or none",
                    "1",
                )
            )
        return problems

    def _unsupported_by_builder(self, option: str, reason: str, required: str) -> UnsupportedOption:
        """The `UnsupportedOption` for an option the selected builder does not honour."""
        return UnsupportedOption(
            option,
            f"{option} {reason} (version={self.version!r})",
            required=f"version={required!r}",
            given=f"version={self.version!r}",
        )


def _find_unencodable(value: object) -> str | None:
    """Return the first string inside `value` that is not valid UTF-8 text, else None."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, tuple):
            stack.extend(item)
        elif isinstance(item, BaseModel):
            stack.extend(getattr(item, name) for name in type(item).model_fields)
        elif isinstance(item, os.PathLike):
            stack.append(os.fspath(item))
    return None
