"""Build-cache pruning: `POST /build/prune` options and its report.

Why the encoder knows about versions: the endpoint exists from API 1.31, takes parameters
from 1.39, and in 1.48 renamed `keep-storage` to `reserved-space` while adding
`max-used-space` and `min-free-space`. Engines silently ignore parameters newer than the
request's API version, so a prune that was meant to keep 10 GB could remove everything;
`PruneOptions.to_query` refuses such options instead.

`keep_storage` and `reserved_space` are the same knob under its old and new name (the
amount of cache to keep). Either may be given; it is sent as `keep-storage` below API 1.48
and as `reserved-space` from 1.48 on, as the Go client does. Giving both with different
values is an error.

Filters are sent in the engine's current JSON shape, `{"key": {"value": true}}`, except the
boolean keys `inuse`, `shared` and `private`, which the engine only understands as a bare
key with an empty value set (`{"inuse": {}}`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from buildsdk._units import parse_size
from buildsdk._wire import go_json
from buildsdk.versions import (
    PRUNE_MIN_VERSION,
    PRUNE_PARAM_MIN_VERSION,
    ApiVersion,
    api_too_old,
)

__all__ = ["PruneFilters", "PruneOptions", "PruneResult"]

_RENAMED_IN: Final = ApiVersion(1, 48)
_GO_DURATION_RE: Final = re.compile(
    r"^(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$|^0$", re.ASCII
)
# Unix seconds[.nanos], or a date / RFC 3339 time as the engine's timestamp parser takes.
_TIMESTAMP_RE: Final = re.compile(
    r"^\d+(?:\.\d{1,9})?$|^\d{4}-\d{2}-\d{2}(?:[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?$", re.ASCII
)
_PARAM_OPTION: Final = {
    "all": "all",
    "filters": "filters",
    "keep-storage": "keep_storage",
    "reserved-space": "reserved_space",
    "max-used-space": "max_used_space",
    "min-free-space": "min_free_space",
}


def _go_duration(value: timedelta) -> str:
    """Write a positive timedelta the way Go's `time.Duration.String` would (`24h0m0s`)."""
    micros = value // timedelta(microseconds=1)
    seconds, micro = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    fraction = f".{micro:06d}".rstrip("0") if micro else ""
    if hours:
        return f"{hours}h{minutes}m{secs}{fraction}s"
    if minutes:
        return f"{minutes}m{secs}{fraction}s"
    return f"{secs}{fraction}s"


class PruneFilters(BaseModel):
    """Which build-cache records to prune; every given filter must match (AND)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    until: str | None = Field(
        default=None,
        description="Only records last used before this: a Go duration ('24h') or a timestamp.",
    )
    id: str | None = Field(default=None, description="Record ID (a regular expression).")
    parent: str | None = Field(default=None, description="Parent record ID.")
    type: str | None = Field(
        default=None,
        description="Record type: internal, frontend, source.local, source.git.checkout, "
        "exec.cachemount or regular.",
    )
    description: str | None = Field(default=None, description="Record description.")
    inuse: bool = Field(default=False, description="Only records in use.")
    shared: bool = Field(default=False, description="Only shared records.")
    private: bool = Field(default=False, description="Only private records.")

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            until: str | timedelta | None = None,
            id: str | None = None,
            parent: str | None = None,
            type: str | None = None,
            description: str | None = None,
            inuse: bool = False,
            shared: bool = False,
            private: bool = False,
        ) -> None: ...

    @field_validator("until", mode="before")
    @classmethod
    def _until_text(cls, value: object) -> object:
        if isinstance(value, timedelta):
            if value <= timedelta(0):
                raise ValueError(f"until must be a positive duration, got {value}")
            return _go_duration(value)
        return value

    @field_validator("until")
    @classmethod
    def _until_format(cls, value: str | None) -> str | None:
        if value is not None and not (_GO_DURATION_RE.match(value) or _TIMESTAMP_RE.match(value)):
            raise ValueError(
                "until must be a Go duration such as '24h' or '1h30m', a Unix timestamp, or a "
                f"date/RFC 3339 time, got {value!r}"
            )
        return value

    @field_validator("id", "parent", "type", "description")
    @classmethod
    def _plain_value(cls, value: str | None, info: ValidationInfo) -> str | None:
        # The engine pastes values into a comma-separated filter expression unquoted.
        if value is not None and (not value or "," in value or '"' in value):
            raise ValueError(
                f"filter {info.field_name} must be a non-empty value without ',' or '\"' "
                "(the engine cannot quote them)"
            )
        return value

    def to_engine(self) -> dict[str, dict[str, bool]]:
        """The engine's filter JSON object, keys sorted as Go marshals a map."""
        filters: dict[str, dict[str, bool]] = {}
        for key in ("description", "id", "inuse", "parent", "private", "shared", "type", "until"):
            value = getattr(self, key)
            if value is True:
                filters[key] = {}
            elif isinstance(value, str):
                filters[key] = {value: True}
        return filters


class PruneOptions(BaseModel):
    """Options of `POST /build/prune`; sizes are bytes or Docker size strings (`"10g"`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    all: bool = Field(default=False, description="Remove all unused cache, not only dangling.")
    filters: PruneFilters | None = Field(default=None, description="Which records to prune.")
    keep_storage: int | None = Field(
        default=None, description="Cache to keep, in bytes (the name before API 1.48)."
    )
    reserved_space: int | None = Field(
        default=None, description="Cache to keep, in bytes (same as keep_storage)."
    )
    max_used_space: int | None = Field(
        default=None, description="Maximum cache size in bytes (API 1.48+)."
    )
    min_free_space: int | None = Field(
        default=None, description="Disk space to keep free, in bytes (API 1.48+)."
    )

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            all: bool = False,
            filters: PruneFilters | Mapping[str, Any] | None = None,
            keep_storage: int | str | None = None,
            reserved_space: int | str | None = None,
            max_used_space: int | str | None = None,
            min_free_space: int | str | None = None,
        ) -> None: ...

    @field_validator("filters", mode="before")
    @classmethod
    def _filters_model(cls, value: object) -> object:
        if not isinstance(value, Mapping):
            return value
        try:
            return PruneFilters.model_validate(dict(value))
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'value'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ValueError(f"filters: {details}") from None

    @field_validator(
        "keep_storage", "reserved_space", "max_used_space", "min_free_space", mode="before"
    )
    @classmethod
    def _bytes(cls, value: object, info: ValidationInfo) -> object:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, str)):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            raise ValueError(f"{info.field_name}: {exc}") from None

    @model_validator(mode="after")
    def _one_keep_knob(self) -> PruneOptions:
        both = self.keep_storage is not None and self.reserved_space is not None
        if both and self.keep_storage != self.reserved_space:
            raise ValueError(
                "keep_storage and reserved_space are the same setting (renamed in API 1.48); "
                "give only one of them"
            )
        return self

    def to_query(self, api_version: ApiVersion | str) -> list[tuple[str, str]]:
        """Return the query pairs of `POST /build/prune` for `api_version`, sorted by key.

        Zero sizes and `all=False` are not sent (they are the engine's defaults). Raises
        `UnsupportedOption` when the endpoint or an option needs a newer API version.
        """
        version = ApiVersion.parse(api_version)
        gate = api_too_old("prune", "build cache pruning", PRUNE_MIN_VERSION, version)
        if gate is not None:
            raise gate
        query: dict[str, str] = {}
        if self.all:
            query["all"] = "1"
        if self.filters is not None:
            filters = self.filters.to_engine()
            if filters:
                query["filters"] = go_json(filters)
        keep = self.reserved_space if self.reserved_space is not None else self.keep_storage
        if keep:
            query["reserved-space" if version >= _RENAMED_IN else "keep-storage"] = str(keep)
        if self.max_used_space:
            query["max-used-space"] = str(self.max_used_space)
        if self.min_free_space:
            query["min-free-space"] = str(self.min_free_space)
        for key in query:
            option = _PARAM_OPTION[key]
            what = f"prune option {option} (query parameter {key!r})"
            gate = api_too_old(option, what, PRUNE_PARAM_MIN_VERSION[key], version)
            if gate is not None:
                raise gate
        return sorted(query.items())


class PruneResult(BaseModel):
    """What a prune removed: the record IDs and the bytes freed."""

    model_config = ConfigDict(frozen=True, extra="allow")

    caches_deleted: list[str] = Field(default_factory=list, description="Removed record IDs.")
    space_reclaimed: int = Field(default=0, ge=0, description="Bytes freed.")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PruneResult:
        """Parse the engine's `{"CachesDeleted": [...] | null, "SpaceReclaimed": n}`."""
        deleted = data.get("CachesDeleted")
        return cls(
            caches_deleted=[] if deleted is None else deleted,
            space_reclaimed=data.get("SpaceReclaimed", 0),
        )
