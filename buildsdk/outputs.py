"""Exporters: where a BuildKit build puts its result, one typed model per exporter type.

Why typed models: an exporter on the wire is a type and a map of strings
(`{"Type": "local", "Attrs": {...}}`), and buildx's `-o/--output` flag is a CSV line of the
same. Half of what a user writes there never reaches the engine: `dest` is where the *client*
writes what the engine streams back through the session (reference: buildkit-control.md §5),
and the docker driver turns `type=image`, `type=registry` and a `type=docker` without `dest`
into the engine's own image store (`moby`). Each model here knows both halves: the exporter
`exporter_type`/`exporter_attrs()` as buildx sends them, and what the client must serve for it
(`session_service`: FileSend for files and archives, the content store for an OCI layout
directory).

`parse_output("type=local,dest=out")` reads buildx's CSV syntax (keys trimmed and lower-cased,
values quoted as CSV when they hold a comma); `format_output()` writes it back, and
`parse_output(format_output(x)) == x` for every model. Values keep their meaning but not
always their spelling: a boolean given as `1` is written and sent as `true` (BuildKit reads
both with Go's `strconv.ParseBool`).

`BuildOutput`, the generic `{type, attrs}` entry, stays for exporters without a model here
(`cacheonly`, ...) and for the `POST /build` path, which sends its attributes verbatim.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Final, Literal, Protocol, runtime_checkable

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
    "BinaryWriter",
    "BuildOutput",
    "DockerOutput",
    "ImageOutput",
    "LocalOutput",
    "OCIOutput",
    "Output",
    "SessionService",
    "TarOutput",
    "format_output",
    "output_from_entry",
    "parse_output",
    "parse_outputs",
    "typed_outputs",
]

SessionService = Literal["FileSend", "Content"]
"""What the client serves for an exporter: `FileSend` (the engine streams files or an archive
to the client) or `Content` (the engine writes blobs into the client's content store)."""

_ANNOTATION: Final = "annotation."


@runtime_checkable
class BinaryWriter(Protocol):
    """A binary stream the client writes an archive to: an open `wb` file, `io.BytesIO`, ..."""

    def write(self, data: bytes, /) -> object:
        """Write `data` (the return value, a count for files, is not used)."""
        ...


def _check_dest_path(value: object) -> str | os.PathLike[str]:
    if isinstance(value, str):
        if not value:
            raise ValueError("dest must not be empty")
        return value
    if isinstance(value, os.PathLike) and isinstance(os.fspath(value), str):
        return value
    raise ValueError(f"dest must be a path (str or os.PathLike), got {type(value).__name__}")


def _check_dest(value: object) -> str | os.PathLike[str] | BinaryWriter:
    if isinstance(value, (str, os.PathLike)):
        return _check_dest_path(value)
    if isinstance(value, io.TextIOBase):
        raise ValueError(
            "dest must be a binary stream, got a text stream: open the file with 'wb' "
            "(for standard output use sys.stdout.buffer)"
        )
    if isinstance(value, BinaryWriter):
        return value
    raise ValueError(
        "dest must be a path (str or os.PathLike) or a binary stream with write(bytes), "
        f"got {type(value).__name__}"
    )


_DestPath = Annotated[
    str | os.PathLike[str],
    PlainValidator(_check_dest_path),
    WithJsonSchema({"type": "string"}),
]
_DestFileOrStream = Annotated[
    str | os.PathLike[str] | BinaryWriter,
    PlainValidator(_check_dest),
    WithJsonSchema({"type": "string", "description": "A path, or (from Python) a binary stream."}),
]


def _split_names(text: str) -> tuple[str, ...]:
    """Image names from the comma-joined `name` attribute."""
    return tuple(name for name in text.split(",") if name)


def _names(value: object) -> object:
    if isinstance(value, str):
        return _split_names(value)
    if isinstance(value, Sequence):
        return tuple(value)
    return value


def _check_attrs(attrs: dict[str, str], owned: Sequence[str]) -> dict[str, str]:
    for key in attrs:
        if not key:
            raise ValueError("attrs keys must not be empty")
        if key == "type" or key == "dest":
            raise ValueError(f"attrs must not set {key!r}: it is a field of the output")
        if key in owned or any(key.startswith(p) for p in owned if p.endswith(".")):
            raise ValueError(f"attrs must not set {key!r}: use the output's own field for it")
    return attrs


class _Exporter(BaseModel):
    """What every typed exporter model shares; see the subclasses."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    attrs: dict[str, str] = Field(
        default_factory=dict,
        description="Further exporter attributes, sent to BuildKit verbatim.",
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
        return _check_attrs(value, cls._OWNED)

    @property
    def exporter_type(self) -> str:
        """The exporter `Type` BuildKit gets (the docker driver's image store is `moby`)."""
        raise NotImplementedError

    @property
    def session_service(self) -> SessionService | None:
        """What the client must serve through the session for this exporter, if anything."""
        return None

    def _typed_attrs(self) -> dict[str, str]:
        return {}

    def exporter_attrs(self) -> dict[str, str]:
        """The exporter `Attrs` as buildx sends them, sorted by key (`dest` never included)."""
        merged = {**self.attrs, **self._typed_attrs()}
        return {key: merged[key] for key in sorted(merged)}

    def to_engine(self) -> dict[str, Any]:
        """The `POST /build` JSON shape: `{"Type":..,"Attrs":{...}}` with sorted keys."""
        return {"Type": self.exporter_type, "Attrs": self.exporter_attrs()}


class ImageOutput(_Exporter):
    """The engine's image store (`type=image`, `--load`), optionally pushed (`--push`).

    With the docker driver buildx sends this as the `moby` exporter; `name` holds the image
    names (empty: the build's tags are used, or the image stays dangling).
    """

    type: Literal["image"] = "image"
    name: tuple[str, ...] = Field(
        default=(), description="Image names (tags), sent comma-joined as `name`."
    )
    push: bool = Field(default=False, description="Push the image after the build (`push`).")
    compression: Literal["uncompressed", "gzip", "estargz", "zstd"] | None = Field(
        default=None, description="Layer compression (`compression`)."
    )
    compression_level: int | None = Field(
        default=None, description="Compression level (`compression-level`).", ge=0, le=22
    )
    force_compression: bool = Field(
        default=False, description="Recompress existing layers (`force-compression`)."
    )
    oci_mediatypes: bool | None = Field(
        default=None, description="Use OCI media types (`oci-mediatypes`); None = default."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Manifest annotations, sent as `annotation.<key>`.",
    )

    _OWNED: ClassVar[tuple[str, ...]] = (
        "name",
        "push",
        "compression",
        "compression-level",
        "force-compression",
        "oci-mediatypes",
        _ANNOTATION,
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name_tuple(cls, value: object) -> object:
        return _names(value)

    @field_validator("name")
    @classmethod
    def _name_items(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not item or "," in item:
                raise ValueError(f"name entries must be non-empty and without ',', got {item!r}")
        return value

    @field_validator("annotations", mode="before")
    @classmethod
    def _annotations_dict(cls, value: object) -> object:
        return dict(value) if isinstance(value, Mapping) else value

    @field_validator("annotations")
    @classmethod
    def _annotation_keys(cls, value: dict[str, str]) -> dict[str, str]:
        if "" in value:
            raise ValueError("annotations keys must not be empty")
        return value

    @property
    def exporter_type(self) -> str:
        """`moby`: the docker driver's name for the engine's image store."""
        return "moby"

    def _typed_attrs(self) -> dict[str, str]:
        attrs: dict[str, str] = {}
        if self.name:
            attrs["name"] = ",".join(self.name)
        if self.push:
            attrs["push"] = "true"
        attrs.update(
            compression_attrs(
                self.compression,
                self.compression_level,
                self.force_compression,
                self.oci_mediatypes,
            )
        )
        for key, value in self.annotations.items():
            attrs[_ANNOTATION + key] = value
        return attrs


class LocalOutput(_Exporter):
    """The build result's files, written into the directory `dest` (`type=local`)."""

    type: Literal["local"] = "local"
    dest: _DestPath = Field(description="Directory the client writes the files into.")

    @property
    def exporter_type(self) -> str:
        """`local`."""
        return "local"

    @property
    def session_service(self) -> SessionService | None:
        """`FileSend`: the engine streams the files to the client."""
        return "FileSend"


class TarOutput(_Exporter):
    """The build result's files as one tar archive, to a file or a stream (`type=tar`)."""

    type: Literal["tar"] = "tar"
    dest: _DestFileOrStream = Field(description="File path, or a binary stream to write to.")

    @property
    def exporter_type(self) -> str:
        """`tar`."""
        return "tar"

    @property
    def session_service(self) -> SessionService | None:
        """`FileSend`: the engine streams the archive to the client."""
        return "FileSend"


class OCIOutput(_Exporter):
    """An OCI image archive (`type=oci`), or with `tar=False` an OCI layout directory."""

    type: Literal["oci"] = "oci"
    dest: _DestFileOrStream = Field(
        description="File path or binary stream; a directory path when tar is False."
    )
    name: tuple[str, ...] = Field(default=(), description="Image names, sent as `name`.")
    tar: bool = Field(default=True, description="False: write an OCI layout directory.")

    _OWNED: ClassVar[tuple[str, ...]] = ("name", "tar")

    @field_validator("name", mode="before")
    @classmethod
    def _name_tuple(cls, value: object) -> object:
        return _names(value)

    @model_validator(mode="after")
    def _directory_is_a_path(self) -> OCIOutput:
        if not self.tar and not isinstance(self.dest, (str, os.PathLike)):
            raise ValueError("dest must be a directory path when tar is False, not a stream")
        return self

    @property
    def exporter_type(self) -> str:
        """`oci`."""
        return "oci"

    @property
    def session_service(self) -> SessionService | None:
        """`FileSend` for an archive, `Content` (the client's content store) for a directory."""
        return "FileSend" if self.tar else "Content"

    def _typed_attrs(self) -> dict[str, str]:
        attrs: dict[str, str] = {}
        if self.name:
            attrs["name"] = ",".join(self.name)
        if not self.tar:
            attrs["tar"] = "false"
        return attrs


class DockerOutput(_Exporter):
    """A `docker load`-able image archive written to a file or stream (`type=docker,dest=…`).

    `type=docker` without `dest` loads the image into the engine instead; `parse_output` turns
    it into an `ImageOutput`, as buildx does with the docker driver.
    """

    type: Literal["docker"] = "docker"
    dest: _DestFileOrStream = Field(description="File path, or a binary stream to write to.")
    name: tuple[str, ...] = Field(default=(), description="Image names, sent as `name`.")

    _OWNED: ClassVar[tuple[str, ...]] = ("name",)

    @field_validator("name", mode="before")
    @classmethod
    def _name_tuple(cls, value: object) -> object:
        return _names(value)

    @property
    def exporter_type(self) -> str:
        """`docker`."""
        return "docker"

    @property
    def session_service(self) -> SessionService | None:
        """`FileSend`: the engine streams the archive to the client."""
        return "FileSend"

    def _typed_attrs(self) -> dict[str, str]:
        return {"name": ",".join(self.name)} if self.name else {}


Output = Annotated[
    ImageOutput | LocalOutput | TarOutput | OCIOutput | DockerOutput,
    Field(discriminator="type"),
]
"""Any typed exporter model; the `type` field tells them apart."""


class BuildOutput(GenericEntry):
    """Where BuildKit exports the result (`{"Type": "moby", "Attrs": {...}}` on the wire)."""

    type: str = Field(description="Exporter: moby, cacheonly, local, tar, image, ...")
    attrs: dict[str, str] = Field(default_factory=dict, description="Exporter attributes.")

    _EMPTY_TYPE: ClassVar[str] = "outputs type must not be empty (e.g. 'moby', 'local', 'tar')"

    def to_engine(self) -> dict[str, Any]:
        """The engine's JSON shape: `{"Type":..,"Attrs":{...}}` with sorted attribute keys."""
        return {"Type": self.type, "Attrs": {key: self.attrs[key] for key in sorted(self.attrs)}}


def _image(attrs: dict[str, str], *, push: bool = False) -> ImageOutput:
    fields: dict[str, Any] = {}
    if "name" in attrs:
        fields["name"] = attrs.pop("name")
    pushed = pop_bool(attrs, "push")
    fields["push"] = push or bool(pushed)
    fields.update(pop_compression(attrs))
    annotated = [key for key in attrs if key.startswith(_ANNOTATION)]
    fields["annotations"] = {key[len(_ANNOTATION) :]: attrs.pop(key) for key in annotated}
    return ImageOutput(**fields, attrs=attrs)


def output_from_entry(kind: str, attrs: Mapping[str, str]) -> Output | BuildOutput:
    """Turn an exporter entry (a type and its attributes, `dest` included) into its model.

    `image`, `moby`, `registry` (pushed) and `docker` without `dest` become `ImageOutput`, as
    buildx's docker driver treats them; `local`, `tar`, `oci` and `docker` with `dest` their
    own model; any other type a generic `BuildOutput`. Raises `ValueError` naming the bad
    attribute.
    """
    rest = dict(attrs)
    try:
        if kind in ("image", "moby"):
            return _image(rest)
        if kind == "registry":
            return _image(rest, push=True)
        if kind == "docker" and "dest" not in rest:
            return _image(rest)
        if kind == "local":
            return LocalOutput(dest=rest.pop("dest", ""), attrs=rest)
        if kind == "tar":
            return TarOutput(dest=rest.pop("dest", ""), attrs=rest)
        if kind == "oci":
            dest = rest.pop("dest", "")
            name = _split_names(rest.pop("name", ""))
            tar = pop_bool(rest, "tar")
            return OCIOutput(dest=dest, name=name, tar=tar is not False, attrs=rest)
        if kind == "docker":
            name = _split_names(rest.pop("name", ""))
            return DockerOutput(dest=rest.pop("dest"), name=name, attrs=rest)
        return BuildOutput(type=kind, attrs=rest)
    except ValidationError as exc:
        raise ValueError(f"output type={kind}: {validation_details(exc)}") from None


def typed_outputs(
    outputs: Sequence[Output | BuildOutput],
    *,
    names: tuple[str, ...] = (),
    lenient: bool = False,
) -> list[Output | BuildOutput]:
    """The outputs with each generic entry turned into its model by `output_from_entry`,
    and, given `names` (the build's tags), every unnamed image, oci and docker export named
    so, as buildx names them. An entry whose attributes its model refuses raises
    `ValueError`, or with `lenient` stays generic (the engine will judge it)."""
    typed: list[Output | BuildOutput] = []
    for output in outputs:
        if isinstance(output, BuildOutput):
            try:
                output = output_from_entry(output.type, output.attrs)
            except ValueError:
                if not lenient:
                    raise
        if names and isinstance(output, (ImageOutput, OCIOutput, DockerOutput)) and not output.name:
            output = output.model_copy(update={"name": names})
        typed.append(output)
    return typed


def parse_output(value: str) -> Output | BuildOutput:
    """Read one buildx `-o/--output` value: `type=local,dest=out`, or a bare directory.

    The fields are CSV (quote a value that holds a comma: `"name=a:1,a:2"`); keys are trimmed
    and lower-cased as buildx does. A value without `=` is buildx's short form of
    `type=local,dest=<value>`. buildx's `-` (a tar on standard output) is refused: pass a
    `TarOutput(dest=sys.stdout.buffer)` instead. Raises `ValueError` with buildx's words.
    """
    fields = csv_fields(value, "output")
    if len(fields) == 1 and fields[0] == value and not value.startswith("type="):
        if value == "-":
            raise ValueError(
                "output '-' (a tar archive on standard output) needs a stream: use "
                "TarOutput(dest=sys.stdout.buffer)"
            )
        return LocalOutput(dest=value)
    kind, attrs = entry_attrs(fields, "output")
    return output_from_entry(kind, attrs)


def parse_outputs(
    values: Sequence[str], *, push: bool = False, load: bool = False
) -> tuple[Output | BuildOutput, ...]:
    """Read several `--output` values plus buildx's `--push` and `--load` shorthands.

    `--push` sets `push` on every image output, or adds `type=image,push=true`; `--load` adds
    `type=docker` (the engine's image store) unless one is there. buildx refuses them
    together, and so does this.
    """
    if push and load:
        raise ValueError("push and load may not be set together at the moment")
    outputs = [parse_output(value) for value in values if value]
    if push:
        images = [i for i, out in enumerate(outputs) if isinstance(out, ImageOutput)]
        for index in images:
            outputs[index] = outputs[index].model_copy(update={"push": True})
        if not images:
            outputs.append(ImageOutput(push=True))
    if load and not any(isinstance(out, ImageOutput) for out in outputs):
        outputs.append(ImageOutput())
    return tuple(outputs)


def format_output(output: Output | BuildOutput) -> str:
    """Write an output as a buildx `--output` value; `parse_output` reads it back equal.

    Equal as long as the attribute and annotation keys are ones buildx's syntax can carry:
    it lower-cases and trims every key. A `dest` that is a stream has no text form and raises
    `ValueError`.
    """
    if isinstance(output, BuildOutput):
        pairs = [("type", output.type), *sorted(output.attrs.items())]
    else:
        pairs = [("type", output.type)]
        dest = getattr(output, "dest", None)
        if dest is not None:
            if not isinstance(dest, (str, os.PathLike)):
                raise ValueError("an output whose dest is a stream has no --output form")
            pairs.append(("dest", os.fspath(dest)))
        pairs.extend(output.exporter_attrs().items())
    return ",".join(csv_field(key, value) for key, value in pairs)
