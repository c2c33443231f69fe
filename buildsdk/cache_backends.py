"""Cache backends: where a BuildKit build exports its cache and imports it from, one model per type.

Why typed models: on the wire a cache import or export is a type and a map of strings
(`CacheOptionsEntry{Type, Attrs}`, reference buildkit-control.md §7), and buildx's
`--cache-to` / `--cache-from` flags are a CSV line of the same, as `-o` is for outputs
(`buildsdk.outputs`). Some of it is the client's business: a `local` cache lives in a
directory of the client, which the engine reads and writes through the session's content
store (store id `local:<dir>`); the client finishes its `index.json` after the build and
resolves the digest to import from it before the build, as buildx does.

`parse_cache("type=local,dest=D,mode=max")` reads buildx's CSV syntax (keys trimmed and
lower-cased, values quoted as CSV when they hold a comma); a value without `=` is an image
reference, which buildx reads as `type=registry,ref=<value>`. `format_cache()` writes a model
back, and `parse_cache(format_cache(x)) == x`. Booleans are sent as `true`/`false` whatever
spelling Go's `strconv.ParseBool` accepted.

`CacheEntry`, the generic `{type, attrs}`, stays for backends without a model here (`gha`,
`s3`, `azblob`): its attributes are sent verbatim.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from buildsdk._csv_entries import (
    GenericEntry,
    compression_attrs,
    csv_field,
    csv_fields,
    entry_attrs,
    pop_bool,
    pop_compression,
    validation_details,
)

__all__ = [
    "CacheEntry",
    "InlineCache",
    "LocalCache",
    "RegistryCache",
    "TypedCache",
    "cache_from_entry",
    "format_cache",
    "is_sha256_digest",
    "local_stores",
    "parse_cache",
]

_DIGEST_HEX: Final = frozenset("0123456789abcdef")

Mode = Literal["min", "max"]
Compression = Literal["uncompressed", "gzip", "estargz", "zstd"]


def _check_path(value: object) -> str | os.PathLike[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value:
            raise ValueError("must not be empty")
        return value
    if isinstance(value, os.PathLike) and isinstance(os.fspath(value), str):
        return value
    raise ValueError(f"must be a path (str or os.PathLike), got {type(value).__name__}")


_Path = Annotated[
    str | os.PathLike[str] | None,
    PlainValidator(_check_path),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]}),
]


def is_sha256_digest(value: str) -> bool:
    """Whether `value` is `sha256:` and 64 lower-case hex digits (the only digests served)."""
    hex_part = value.removeprefix("sha256:")
    return len(value) == 71 and len(hex_part) == 64 and set(hex_part) <= _DIGEST_HEX


class _Cache(BaseModel):
    """What every cache model shares; see the subclasses."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    type: str = Field(description="The backend, as buildx's `type=`.")
    attrs: dict[str, str] = Field(
        default_factory=dict, description="Further attributes, sent to BuildKit verbatim."
    )

    # Attribute keys this model spells with its own fields; `attrs` may not set them.
    _OWNED: ClassVar[tuple[str, ...]] = ()

    @field_validator("attrs", mode="before")
    @classmethod
    def _attrs_dict(cls, value: object) -> object:
        return dict(value) if isinstance(value, Mapping) else value

    @field_validator("attrs")
    @classmethod
    def _attrs_free(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key or key == "type":
                raise ValueError(f"attrs must not set {key!r}")
            if key in cls._OWNED:
                raise ValueError(f"attrs must not set {key!r}: use the model's own field for it")
        return value

    def _typed_attrs(self) -> dict[str, str]:
        return {}

    def cache_attrs(self) -> dict[str, str]:
        """The entry's `Attrs` as buildx sends them, sorted by key."""
        merged = {**self.attrs, **self._typed_attrs()}
        return {key: merged[key] for key in sorted(merged)}

    def to_entry(self) -> dict[str, Any]:
        """The Go JSON shape of the entry, `{"Type":..,"Attrs":{...}}` (no Attrs when empty),
        as `cache-imports` carries it."""
        attrs = self.cache_attrs()
        return {"Type": self.type, "Attrs": attrs} if attrs else {"Type": self.type}


class _Layers(_Cache):
    """The layer and manifest attributes the local and registry backends share."""

    mode: Mode | None = Field(
        default=None, description="Export: `min` (the result's layers) or `max` (every step)."
    )
    compression: Compression | None = Field(
        default=None, description="Export: layer compression (`compression`)."
    )
    compression_level: int | None = Field(
        default=None, ge=0, le=22, description="Export: compression level (`compression-level`)."
    )
    force_compression: bool = Field(
        default=False, description="Export: recompress existing layers (`force-compression`)."
    )
    oci_mediatypes: bool | None = Field(
        default=None, description="Export: OCI media types (`oci-mediatypes`); None = default."
    )
    image_manifest: bool | None = Field(
        default=None,
        description="Export: the cache as an image manifest (`image-manifest`); None = default.",
    )

    _OWNED: ClassVar[tuple[str, ...]] = (
        "mode",
        "compression",
        "compression-level",
        "force-compression",
        "oci-mediatypes",
        "image-manifest",
    )

    def _layer_attrs(self) -> dict[str, str]:
        attrs: dict[str, str] = {}
        if self.mode is not None:
            attrs["mode"] = self.mode
        attrs.update(
            compression_attrs(
                self.compression,
                self.compression_level,
                self.force_compression,
                self.oci_mediatypes,
            )
        )
        if self.image_manifest is not None:
            attrs["image-manifest"] = "true" if self.image_manifest else "false"
        return attrs

    def _has_export_fields(self) -> bool:
        return bool(self._layer_attrs())


class InlineCache(_Cache):
    """The cache written into the image itself (`type=inline`); export only."""

    type: Literal["inline"] = "inline"


class LocalCache(_Layers):
    """A cache in a directory of the client (`type=local`): `dest` to export, `src` to import.

    The engine reads and writes it through the session's content store; it is an OCI layout
    (`blobs/sha256/…`, `index.json`) whose index names the cache manifest `tag`.
    """

    type: Literal["local"] = "local"
    dest: _Path = Field(default=None, description="Export: the directory written.")
    src: _Path = Field(default=None, description="Import: the directory read.")
    tag: str | None = Field(
        default=None, description="The name in index.json (`tag`); None = `latest`."
    )
    digest: str | None = Field(
        default=None,
        description="Import: the cache manifest's digest; None = read from src's index.json "
        "by the client before the build.",
    )

    _OWNED: ClassVar[tuple[str, ...]] = (*_Layers._OWNED, "dest", "src", "tag", "digest")

    @field_validator("tag")
    @classmethod
    def _tag_not_empty(cls, value: str | None) -> str | None:
        if value == "":
            raise ValueError("tag must not be empty")
        return value

    @field_validator("digest")
    @classmethod
    def _digest_grammar(cls, value: str | None) -> str | None:
        if value is not None and not is_sha256_digest(value):
            raise ValueError(f"digest must be sha256: and 64 hex digits, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_direction(self) -> LocalCache:
        if (self.dest is None) == (self.src is None):
            raise ValueError("a local cache needs exactly one of dest (export) or src (import)")
        if self.src is not None and self._has_export_fields():
            raise ValueError("mode, compression and manifest options apply to dest (export)")
        if self.dest is not None and self.digest is not None:
            raise ValueError("digest applies to src (import)")
        return self

    @property
    def directory(self) -> str:
        """The cache directory, `dest` or `src`, as given."""
        path = self.dest if self.dest is not None else self.src
        assert path is not None
        return os.fspath(path)

    @property
    def store_id(self) -> str:
        """The content store the engine names in `buildkit-attachable-store-id`."""
        return f"local:{self.directory}"

    def _typed_attrs(self) -> dict[str, str]:
        attrs = self._layer_attrs()
        if self.dest is not None:
            attrs["dest"] = os.fspath(self.dest)
        if self.src is not None:
            attrs["src"] = os.fspath(self.src)
        if self.tag is not None:
            attrs["tag"] = self.tag
        if self.digest is not None:
            attrs["digest"] = self.digest
        return attrs


class RegistryCache(_Layers):
    """A cache in a registry (`type=registry,ref=…`), pushed and pulled by the engine."""

    type: Literal["registry"] = "registry"
    ref: str = Field(description="The cache image reference (`ref`).")

    _OWNED: ClassVar[tuple[str, ...]] = (*_Layers._OWNED, "ref")

    @field_validator("ref")
    @classmethod
    def _ref_grammar(cls, value: str) -> str:
        from buildsdk._reference import validate_image_reference

        return validate_image_reference(value)

    def _typed_attrs(self) -> dict[str, str]:
        return {**self._layer_attrs(), "ref": self.ref}


class CacheEntry(GenericEntry):
    """A cache backend without a model here (`gha`, `s3`, `azblob`, …), sent verbatim."""

    type: str = Field(description="The backend: gha, s3, azblob, ...")
    attrs: dict[str, str] = Field(default_factory=dict, description="Its attributes.")

    _EMPTY_TYPE: ClassVar[str] = "cache type must not be empty (e.g. 'registry', 'local')"

    def cache_attrs(self) -> dict[str, str]:
        """The attributes, sorted by key."""
        return {key: self.attrs[key] for key in sorted(self.attrs)}

    def to_entry(self) -> dict[str, Any]:
        """The Go JSON shape `{"Type":..,"Attrs":{...}}` (no Attrs when empty)."""
        attrs = self.cache_attrs()
        return {"Type": self.type, "Attrs": attrs} if attrs else {"Type": self.type}


TypedCache = Annotated[InlineCache | LocalCache | RegistryCache, Field(discriminator="type")]
"""Any typed cache model; the `type` field tells them apart."""


def _errors(kind: str, exc: ValidationError) -> ValueError:
    return ValueError(f"cache type={kind}: {validation_details(exc)}")


def _layer_fields(attrs: dict[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "mode" in attrs:
        fields["mode"] = attrs.pop("mode")
    fields.update(pop_compression(attrs))
    fields["image_manifest"] = pop_bool(attrs, "image-manifest")
    return fields


def cache_from_entry(
    kind: str, attrs: Mapping[str, str]
) -> InlineCache | LocalCache | RegistryCache | CacheEntry:
    """Turn a cache entry (a type and its attributes) into its model; `CacheEntry` for a type
    without one. Raises `ValueError` naming the bad attribute."""
    rest = dict(attrs)
    try:
        if kind == "inline":
            return InlineCache(attrs=rest)
        if kind == "local":
            fields = _layer_fields(rest)
            for key in ("dest", "src", "tag", "digest"):
                if key in rest:
                    fields[key] = rest.pop(key)
            return LocalCache(**fields, attrs=rest)
        if kind == "registry":
            fields = _layer_fields(rest)
            return RegistryCache(ref=rest.pop("ref", ""), **fields, attrs=rest)
        return CacheEntry(type=kind, attrs=rest)
    except ValidationError as exc:
        raise _errors(kind, exc) from None


def parse_cache(value: str) -> InlineCache | LocalCache | RegistryCache | CacheEntry:
    """Read one buildx `--cache-to` / `--cache-from` value: `type=local,dest=D,mode=max`,
    or a bare image reference (`type=registry,ref=<value>`, as buildx reads it).

    The fields are CSV; keys are trimmed and lower-cased as buildx does. Raises `ValueError`
    with buildx's words for a field without `=` or a missing type.
    """
    if "=" not in value:
        try:
            return RegistryCache(ref=value)
        except ValidationError as exc:
            raise _errors("registry", exc) from None
    kind, attrs = entry_attrs(csv_fields(value, "cache"), "cache")
    return cache_from_entry(kind, attrs)


def local_stores(*caches: object) -> dict[str, str]:
    """The content stores the session serves for these caches: store id (`local:<dir>`) to
    directory, one per local cache directory."""
    return {cache.store_id: cache.directory for cache in caches if isinstance(cache, LocalCache)}


def format_cache(cache: InlineCache | LocalCache | RegistryCache | CacheEntry) -> str:
    """Write a cache model as a buildx `--cache-to`/`--cache-from` value; `parse_cache` reads
    it back equal (as long as the `attrs` keys are lower-case and untrimmed-safe, which is
    all buildx's syntax can carry)."""
    pairs = [("type", cache.type), *cache.cache_attrs().items()]
    return ",".join(csv_field(key, value) for key, value in pairs)
