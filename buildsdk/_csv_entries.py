"""buildx's CSV entry syntax, shared by `--output` (`buildsdk.outputs`) and `--cache-to` /
`--cache-from` (`buildsdk.cache_backends`).

Both flags write one entry as a CSV line of `key=value` fields, one of them `type=`; BuildKit
reads boolean attributes with Go's `strconv.ParseBool`. The two modules word their errors
with their own noun (`what`: "output", "cache"), so the messages stay buildx's.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

__all__ = [
    "GenericEntry",
    "bool_attr",
    "compression_attrs",
    "csv_field",
    "csv_fields",
    "entry_attrs",
    "pop_bool",
    "pop_compression",
    "pop_compression_level",
    "validation_details",
]

_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def bool_attr(key: str, value: str) -> bool:
    """Read a boolean attribute as Go's `strconv.ParseBool`, which BuildKit uses."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{key} must be true or false, got {value!r}")


def pop_bool(attrs: dict[str, str], key: str) -> bool | None:
    """Remove `key` from `attrs` and read it as a boolean; None when it is absent."""
    value = attrs.pop(key, None)
    return None if value is None else bool_attr(key, value)


def pop_compression_level(attrs: dict[str, str]) -> int | None:
    """Remove `compression-level` from `attrs` and read it as a number; None when absent."""
    if "compression-level" not in attrs:
        return None
    level = attrs.pop("compression-level")
    if not level.isdigit():
        raise ValueError(f"compression-level must be a number, got {level!r}")
    return int(level)


def pop_compression(attrs: dict[str, str]) -> dict[str, Any]:
    """Remove the layer compression attributes the image and cache exporters share from
    `attrs`, as model fields: `compression`, `compression_level`, `force_compression`,
    `oci_mediatypes`."""
    fields: dict[str, Any] = {}
    if "compression" in attrs:
        fields["compression"] = attrs.pop("compression")
    level = pop_compression_level(attrs)
    if level is not None:
        fields["compression_level"] = level
    fields["force_compression"] = bool(pop_bool(attrs, "force-compression"))
    fields["oci_mediatypes"] = pop_bool(attrs, "oci-mediatypes")
    return fields


def compression_attrs(
    compression: str | None,
    compression_level: int | None,
    force_compression: bool,
    oci_mediatypes: bool | None,
) -> dict[str, str]:
    """The layer compression attributes as buildx sends them; unset ones are left out."""
    attrs: dict[str, str] = {}
    if compression is not None:
        attrs["compression"] = compression
    if compression_level is not None:
        attrs["compression-level"] = str(compression_level)
    if force_compression:
        attrs["force-compression"] = "true"
    if oci_mediatypes is not None:
        attrs["oci-mediatypes"] = "true" if oci_mediatypes else "false"
    return attrs


def csv_fields(value: str, what: str) -> list[str]:
    """The fields of one CSV line; `ValueError` naming `what` for bad quoting or more lines."""
    try:
        rows = list(csv.reader(io.StringIO(value, newline=""), strict=True))
    except csv.Error as exc:
        raise ValueError(f"invalid {what} {value!r}: {exc}") from None
    if len(rows) > 1:
        raise ValueError(f"invalid {what} {value!r}: one line expected")
    return rows[0] if rows else []


def entry_attrs(fields: list[str], what: str) -> tuple[str, dict[str, str]]:
    """The `type` and the other attributes of `key=value` fields, keys trimmed and
    lower-cased as buildx does; `ValueError` in buildx's words for a field without `=` or a
    missing type."""
    kind = ""
    attrs: dict[str, str] = {}
    for item in fields:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"invalid value {item}")
        key = key.strip().lower()
        if key == "type":
            kind = text
        else:
            attrs[key] = text
    if not kind:
        raise ValueError(f"type is required for {what}")
    return kind, attrs


def csv_field(key: str, value: str) -> str:
    """One `key=value` field, CSV-quoted when it holds a comma, a quote or a line break."""
    text = f"{key}={value}"
    if any(char in text for char in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def validation_details(exc: ValidationError) -> str:
    """A pydantic error as one line: `field: message` per error, joined by `; `."""
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])) or 'value'}: {error['msg']}" for error in exc.errors()
    )


class GenericEntry(BaseModel):
    """The `{type, attrs}` entry both flags fall back to for a type without a model of its
    own; a subclass declares the two fields with its own descriptions."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    type: str
    attrs: dict[str, str]

    # The message for an empty type, in the subclass's words.
    _EMPTY_TYPE: ClassVar[str] = "type must not be empty"

    @field_validator("type")
    @classmethod
    def _type_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError(cls._EMPTY_TYPE)
        return value

    @field_validator("attrs", mode="before")
    @classmethod
    def _attrs_dict(cls, value: object) -> object:
        return dict(value) if isinstance(value, Mapping) else value
