"""Build-cache records, and pruning them, through BuildKit's Control API.

Why beside `prune.py`: `POST /build/prune` only answers with ids and a total, while BuildKit's
`Control/DiskUsage` and `Control/Prune` (reached through the engine's `POST /grpc`, as
`docker buildx du` and `docker buildx prune` do) describe every record: size, parents, use,
times, type. This module is the pure half: the options, buildx's translation of its
`--filter KEY=VALUE` flags into BuildKit's filter strings, and the typed records; the clients
only send the messages of `buildkit/solve.py` and read the replies.

buildx's filter translation (0.13, reference buildkit-control.md §13): `until` (or its older
name `unused-for`) is not a filter but a Go duration sent as `keepDuration`; `id=X` becomes
the regular-expression match `id~=X`; every other `key=value` becomes `key==value`; the
terms are joined with commas into one string, so no filter is `[""]`. buildx walks a Go map,
in random order; the terms here keep the order they were given in. `docker buildx du` drops
`until` without using it, and so does `disk_usage_request`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from buildsdk._units import INT64_MAX, parse_size
from buildsdk.buildkit.solve import DiskUsageRequest, DiskUsageResponse, PruneRequest, UsageRecord

if TYPE_CHECKING:
    from buildsdk._control_plan import Endpoint, EngineFacts
    from buildsdk.prune import PruneOptions

__all__ = [
    "CachePruneOptions",
    "CachePruneResult",
    "CacheRecord",
    "buildkit_filters",
    "disk_usage_records",
    "disk_usage_request",
    "engine_prune_request",
    "parse_go_duration",
    "prune_endpoint",
    "prune_request",
    "pruned_record",
]

_UNTIL_KEYS: Final = ("until", "unused-for")
_DURATION_TERM_RE: Final = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}


def parse_go_duration(text: str) -> int:
    """Return the nanoseconds in a Go duration such as `"24h"`, `"1h30m"` or `"1.5s"`.

    Raises `ValueError` for what Go's `time.ParseDuration` refuses (no unit, an unknown
    unit, more than an int64 of nanoseconds).
    """
    body = text
    sign = 1
    if body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    pos = 0
    while pos < len(body):
        match = _DURATION_TERM_RE.match(body, pos)
        if match is None or (not match.group(1) and not match.group(2)):
            raise ValueError(f"invalid duration {text!r}: expected numbers with units ns..h")
        whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
        scale = _UNIT_NS[unit]
        total += int(whole or "0") * scale
        if fraction:
            # Go truncates the fraction after scaling, as integer arithmetic here does.
            total += int(fraction) * scale // 10 ** len(fraction)
        if total > INT64_MAX + (sign < 0):
            raise ValueError(f"invalid duration {text!r}: out of range")
        pos = match.end()
    return sign * total


def buildkit_filters(filters: Mapping[str, str]) -> tuple[tuple[str, ...], int]:
    """Translate buildx's `--filter` pairs into BuildKit's filter list and keep duration (ns).

    `{}` gives `([""], 0)`; `{"type": "regular"}` gives `(["type==regular"], 0)`;
    `{"until": "1h"}` gives `([""], 3600000000000)`. Raises `ValueError` for an empty key,
    both `until` and `unused-for`, or an `until` that is no Go duration.
    """
    given = [key for key in _UNTIL_KEYS if key in filters]
    if len(given) > 1:
        raise ValueError('conflicting filters "until" and "unused-for"')
    keep_duration = 0
    if given:
        try:
            keep_duration = parse_go_duration(filters[given[0]])
        except ValueError as exc:
            raise ValueError(
                f"{given[0]!r} filter expects a duration (e.g., '24h'): {exc}"
            ) from None
    terms: list[str] = []
    for key, value in filters.items():
        if not key:
            raise ValueError("a filter needs a key (KEY=VALUE)")
        if key in given:
            continue
        terms.append(f"id~={value}" if key == "id" else f"{key}=={value}")
    return (",".join(terms),), keep_duration


def disk_usage_request(filters: Mapping[str, str] | None = None) -> DiskUsageRequest:
    """The `Control/DiskUsage` request `docker buildx du --filter ...` sends for `filters`."""
    filter_list, _ = buildkit_filters(filters or {})
    return DiskUsageRequest(filter=filter_list)


class CachePruneOptions(BaseModel):
    """What `Control/Prune` removes: `docker buildx prune`'s `--all`, `--filter` and
    `--keep-storage`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    all: bool = Field(
        default=False,
        description="Also remove shared, internal and frontend records (buildx --all).",
    )
    filters: dict[str, str] = Field(
        default_factory=dict,
        description="buildx's KEY=VALUE filters: until (a Go duration), id, type, "
        "description, parents, inuse, shared, private, ...",
    )
    keep_storage: int = Field(
        default=0,
        ge=0,
        description="Bytes of cache to keep (an int or a size such as '10mb', binary units).",
    )

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            all: bool = False,
            filters: Mapping[str, str] = ...,
            keep_storage: int | str = 0,
        ) -> None: ...

    @field_validator("keep_storage", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            return parse_size(value)
        return value

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: dict[str, str]) -> dict[str, str]:
        buildkit_filters(value)
        return value


def prune_request(options: CachePruneOptions | None = None) -> PruneRequest:
    """The `Control/Prune` request `docker buildx prune -f` sends for `options`."""
    options = options or CachePruneOptions()
    filter_list, keep_duration = buildkit_filters(options.filters)
    return PruneRequest(
        filter=filter_list,
        all=options.all,
        keep_duration=keep_duration,
        keep_bytes=options.keep_storage,
    )


class CacheRecord(BaseModel):
    """One build-cache record as BuildKit describes it (what `docker buildx du --verbose`
    shows); sizes in bytes, times in UTC."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: str = Field(description="The record's id.")
    parents: list[str] = Field(default_factory=list, description="Ids of the records below it.")
    created_at: datetime | None = Field(default=None, description="When it was made.")
    last_used_at: datetime | None = Field(default=None, description="When a build last used it.")
    mutable: bool = Field(default=False, description="A mutable record (buildx marks it '*').")
    in_use: bool = Field(default=False, description="In use by a running build: not reclaimable.")
    shared: bool = Field(
        default=False, description="Its data is also used by an image (buildx marks the size '*')."
    )
    size: int = Field(default=0, description="Size in bytes.")
    description: str = Field(default="", description="What made it, e.g. '[2/3] COPY a /a'.")
    usage_count: int = Field(default=0, description="How many times builds used it.")
    record_type: str = Field(
        default="",
        description="regular, source.local, internal, frontend, exec.cachemount, "
        "source.git.checkout (empty when the engine does not say).",
    )

    @property
    def reclaimable(self) -> bool:
        """Whether pruning could remove it now (it is not in use), as buildx's column says."""
        return not self.in_use

    @classmethod
    def from_usage(cls, record: UsageRecord) -> CacheRecord:
        """Make the public record of a decoded `UsageRecord`. Like BuildKit's own client it
        reads `Parents` only, not the single `Parent` that engines before BuildKit 0.10 sent."""
        return cls(
            id=record.id,
            parents=list(record.parents),
            created_at=record.created_at,
            last_used_at=record.last_used_at,
            mutable=record.mutable,
            in_use=record.in_use,
            shared=record.shared,
            size=record.size,
            description=record.description,
            usage_count=record.usage_count,
            record_type=record.record_type,
        )


def disk_usage_records(reply: bytes) -> list[CacheRecord]:
    """Read `Control/DiskUsage`'s reply into records, largest first (ties: id descending),
    the order BuildKit's Go client gives `docker buildx du`."""
    records = [CacheRecord.from_usage(item) for item in DiskUsageResponse.decode(reply).record]
    records.sort(key=lambda record: record.id, reverse=True)
    records.sort(key=lambda record: record.size, reverse=True)
    return records


def pruned_record(reply: bytes) -> CacheRecord:
    """Read one message of `Control/Prune`'s reply stream (a removed record)."""
    return CacheRecord.from_usage(UsageRecord.decode(reply))


class CachePruneResult(BaseModel):
    """What `Control/Prune` removed: one record per deleted cache entry, in the engine's order."""

    model_config = ConfigDict(frozen=True, extra="allow")

    records: list[CacheRecord] = Field(default_factory=list, description="The removed records.")

    @computed_field(description="Ids of the removed records.")  # type: ignore[prop-decorator]
    @property
    def caches_deleted(self) -> list[str]:
        """Ids of the removed records (as `PruneResult.caches_deleted`)."""
        return [record.id for record in self.records]

    @computed_field(description="Bytes reclaimed: the sum of the removed records' sizes.")  # type: ignore[prop-decorator]
    @property
    def space_reclaimed(self) -> int:
        """Bytes reclaimed: the sum of the removed records' sizes (buildx's `Total:`)."""
        return sum(record.size for record in self.records)


def engine_prune_request(options: PruneOptions) -> PruneRequest | None:
    """The `Control/Prune` request Docker itself makes of `POST /build/prune`'s `options`, or
    None when an option has no `Control/Prune` field (`max_used_space`, `min_free_space`,
    an `until` timestamp rather than a Go duration)."""
    if options.max_used_space or options.min_free_space:
        return None
    filters = options.filters
    keep_duration = 0
    terms: list[str] = []
    if filters is not None:
        if filters.until is not None:
            try:
                keep_duration = parse_go_duration(filters.until)
            except ValueError:
                return None
        for key, values in filters.to_engine().items():
            if key == "until":
                continue
            # As the engine translates its filters: a flag-like key bare, `id` a regular
            # expression match, every other key an equality.
            for value in values or [None]:
                if value is None:
                    terms.append(key)
                else:
                    terms.append(f"id~={value}" if key == "id" else f"{key}=={value}")
    keep = options.reserved_space if options.reserved_space is not None else options.keep_storage
    return PruneRequest(
        filter=(",".join(terms),),
        all=options.all,
        keep_duration=keep_duration,
        keep_bytes=keep or 0,
    )


def prune_endpoint(
    options: PruneOptions,
    engine: EngineFacts | None,
    endpoint: Literal["auto", "build", "grpc"] = "auto",
) -> Endpoint:
    """Where a prune of `options` goes: `"grpc"` (`Control/Prune`) when pinned, or for
    `"auto"` when `engine` offers the Control API (Docker 23+, not Podman) and every option
    maps to it (`engine_prune_request`); else `"build"` (`POST /build/prune`).

    Raises `ValueError` when `"grpc"` is pinned for options `Control/Prune` cannot carry.
    """
    if endpoint == "grpc":
        if engine_prune_request(options) is None:
            raise ValueError(
                "Control/Prune has no max-used-space, min-free-space or until timestamp: "
                "use the build endpoint (POST /build/prune) for them"
            )
        return "grpc"
    if endpoint == "build":
        return "build"
    if engine is None or not engine.offers_control_api:
        return "build"
    return "grpc" if engine_prune_request(options) is not None else "build"
