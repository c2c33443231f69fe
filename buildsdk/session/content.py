"""The session's content store: containerd's `content.v1.Content` service on OCI layout directories.

Why: a `local` cache and an OCI layout directory output (`type=oci,tar=false`) live on the
client, and BuildKit reads and writes them through the session as a containerd content store
(reference buildkit-control.md §5, §6.3). Each call names its store with the metadata
`buildkit-attachable-store-id` (`local:<dir>` for a cache, `export` for the layout output);
the directory is an OCI layout, its blobs in `blobs/sha256/<hex>`.

What the engine calls is served: `Info` (size and times of a blob), `Read` (a blob from an
offset, in chunks), `Write` (a bidirectional stream: STAT, WRITE, COMMIT; one reply per
request) and `Abort`/`Status` of a write in progress (none outlives its call here, so
those answer NotFound). `Update`, `Delete`, `List` and `ListStatuses` are announced, as
buildx announces them, and answered Unimplemented. A write lands in a temporary file beside
the blobs and is renamed into place only when its size and digest match what the engine
expected; a write that ends otherwise leaves nothing behind. Writing a blob the store has
is answered AlreadyExists, as containerd answers.

The index: before a build the client reads the digest of a cache to import from
`<src>/index.json` (`read_cache_digest`, the manifest named `latest` or the cache's `tag`);
after it, it records the exported cache manifest (ExporterResponse `cache.manifest`) in
`<dest>/index.json` (`write_cache_index`), and for a layout output the image's descriptor
(`containerimage.descriptor`) and `oci-layout` (`write_layout_index`), as buildx does.

An `oci-layout://` named context is a store the engine only reads: before the build its
tag is resolved in `index.json` (`oci_layout_digests`), and a `Write` to its store is
refused (PermissionDenied), so the engine cannot change the directory.

The messages are written by hand on `buildsdk._protobuf`, with containerd's field numbers.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, TYPE_CHECKING, Any, Final

from buildsdk._grpc.status import GrpcError, Status
from buildsdk._named_contexts import OCILayoutRef, context_kind, parse_oci_layout
from buildsdk._protobuf import (
    ProtobufError,
    as_int64,
    field_bytes,
    field_string,
    field_varint,
    iter_fields,
    read_bytes,
    read_text,
    read_varint,
)
from buildsdk.build import BuildOptions
from buildsdk.cache_backends import LocalCache, is_sha256_digest
from buildsdk.errors import ContextError, ExportError

if TYPE_CHECKING:
    from buildsdk.session._server import Call

__all__ = [
    "CONTENT_METHODS",
    "INDEX_MEDIA_TYPE",
    "REF_NAME",
    "STORE_ID_KEY",
    "WRITE_COMMIT",
    "WRITE_STAT",
    "WRITE_WRITE",
    "ContentService",
    "ContentStore",
    "Info",
    "InfoRequest",
    "InfoResponse",
    "ReadContentRequest",
    "ReadContentResponse",
    "WriteContentRequest",
    "WriteContentResponse",
    "cache_digests",
    "finish_content_stores",
    "oci_layout_digests",
    "read_cache_digest",
    "resolve_oci_layout",
    "write_cache_index",
    "write_cache_indexes",
    "write_layout_index",
]

_SERVICE: Final = "/containerd.services.content.v1.Content/"
INFO: Final = _SERVICE + "Info"
READ: Final = _SERVICE + "Read"
WRITE: Final = _SERVICE + "Write"
ABORT: Final = _SERVICE + "Abort"
STATUS: Final = _SERVICE + "Status"
CONTENT_METHODS: Final = tuple(
    _SERVICE + name
    for name in (
        "Info",
        "Update",
        "Delete",
        "Status",
        "ListStatuses",
        "Abort",
        "List",
        "Read",
        "Write",
    )
)
"""The methods the session announces for the content store, in buildx's order."""
STORE_ID_KEY: Final = "buildkit-attachable-store-id"
"""The metadata key that names the content store a call is for."""
INDEX_MEDIA_TYPE: Final = "application/vnd.oci.image.index.v1+json"
REF_NAME: Final = "org.opencontainers.image.ref.name"
"""The annotation that names a manifest in an OCI layout's index.json."""

WRITE_STAT: Final = 0
"""`WriteAction.STAT`: report the write's progress."""
WRITE_WRITE: Final = 1
"""`WriteAction.WRITE`: append `data` at `offset`."""
WRITE_COMMIT: Final = 2
"""`WriteAction.COMMIT`: check size and digest, then make the blob visible."""

logger = logging.getLogger("buildsdk")

_CHUNK: Final = 1024 * 1024
_CACHE_MANIFEST: Final = "cache.manifest"
_DESCRIPTOR: Final = "containerimage.descriptor"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


# -- messages --------------------------------------------------------------------------------


def _int64(value: int | bytes, what: str) -> int:
    return as_int64(read_varint(value, what))


def _int64_field(number: int, value: int) -> bytes:
    # Negative int64 values take ten bytes on the wire (two's complement).
    return field_varint(number, value & 0xFFFFFFFFFFFFFFFF) if value else b""


def _timestamp(number: int, value: datetime | None) -> bytes:
    if value is None:
        return b""
    delta = value - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    nanos = delta.microseconds * 1000
    body = _int64_field(1, seconds) + (field_varint(2, nanos) if nanos else b"")
    return field_bytes(number, body)


def _read_timestamp(data: bytes) -> datetime:
    seconds = nanos = 0
    for number, _wire, value in iter_fields(data):
        if number == 1:
            seconds = _int64(value, "seconds")
        elif number == 2:
            nanos = _int64(value, "nanos")
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


@dataclass(frozen=True)
class InfoRequest:
    """`InfoRequest{digest=1}`."""

    digest: str = ""

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        return field_string(1, self.digest) if self.digest else b""

    @classmethod
    def decode(cls, data: bytes) -> InfoRequest:
        """Read the message (`ProtobufError` when malformed)."""
        digest = ""
        for number, _wire, value in iter_fields(data):
            if number == 1:
                digest = read_text(value, "digest")
        return cls(digest)


@dataclass(frozen=True)
class Info:
    """`Info{digest=1, size=2, created_at=3, updated_at=4}` (labels, 5, are not kept)."""

    digest: str = ""
    size: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        out = field_string(1, self.digest) if self.digest else b""
        out += _int64_field(2, self.size)
        return out + _timestamp(3, self.created_at) + _timestamp(4, self.updated_at)

    @classmethod
    def decode(cls, data: bytes) -> Info:
        """Read the message (`ProtobufError` when malformed)."""
        fields: dict[str, Any] = {}
        for number, _wire, value in iter_fields(data):
            if number == 1:
                fields["digest"] = read_text(value, "digest")
            elif number == 2:
                fields["size"] = _int64(value, "size")
            elif number == 3:
                fields["created_at"] = _read_timestamp(read_bytes(value, "created_at"))
            elif number == 4:
                fields["updated_at"] = _read_timestamp(read_bytes(value, "updated_at"))
        return cls(**fields)


@dataclass(frozen=True)
class InfoResponse:
    """`InfoResponse{info=1}`."""

    info: Info = field(default_factory=Info)

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        return field_bytes(1, self.info.encode())

    @classmethod
    def decode(cls, data: bytes) -> InfoResponse:
        """Read the message (`ProtobufError` when malformed)."""
        info = Info()
        for number, _wire, value in iter_fields(data):
            if number == 1:
                info = Info.decode(read_bytes(value, "info"))
        return cls(info)


@dataclass(frozen=True)
class ReadContentRequest:
    """`ReadContentRequest{digest=1, offset=2, size=3}`; size 0 reads to the end."""

    digest: str = ""
    offset: int = 0
    size: int = 0

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        out = field_string(1, self.digest) if self.digest else b""
        return out + _int64_field(2, self.offset) + _int64_field(3, self.size)

    @classmethod
    def decode(cls, data: bytes) -> ReadContentRequest:
        """Read the message (`ProtobufError` when malformed)."""
        digest, offset, size = "", 0, 0
        for number, _wire, value in iter_fields(data):
            if number == 1:
                digest = read_text(value, "digest")
            elif number == 2:
                offset = _int64(value, "offset")
            elif number == 3:
                size = _int64(value, "size")
        return cls(digest, offset, size)


@dataclass(frozen=True)
class ReadContentResponse:
    """`ReadContentResponse{offset=1, data=2}`: one chunk of a blob."""

    offset: int = 0
    data: bytes = b""

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        return _int64_field(1, self.offset) + (field_bytes(2, self.data) if self.data else b"")

    @classmethod
    def decode(cls, data: bytes) -> ReadContentResponse:
        """Read the message (`ProtobufError` when malformed)."""
        offset, payload = 0, b""
        for number, _wire, value in iter_fields(data):
            if number == 1:
                offset = _int64(value, "offset")
            elif number == 2:
                payload = read_bytes(value, "data")
        return cls(offset, payload)


@dataclass(frozen=True)
class WriteContentRequest:
    """`WriteContentRequest{action=1, ref=2, total=3, expected=4, offset=5, data=6}`
    (labels, 7, are not kept)."""

    action: int = WRITE_STAT
    ref: str = ""
    total: int = 0
    expected: str = ""
    offset: int = 0
    data: bytes = b""

    def __repr__(self) -> str:
        return (
            f"WriteContentRequest(action={self.action}, ref={self.ref!r}, total={self.total}, "
            f"expected={self.expected!r}, offset={self.offset}, data=<{len(self.data)} bytes>)"
        )

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        out = field_varint(1, self.action) if self.action else b""
        out += field_string(2, self.ref) if self.ref else b""
        out += _int64_field(3, self.total)
        out += field_string(4, self.expected) if self.expected else b""
        out += _int64_field(5, self.offset)
        return out + (field_bytes(6, self.data) if self.data else b"")

    @classmethod
    def decode(cls, data: bytes) -> WriteContentRequest:
        """Read the message (`ProtobufError` when malformed)."""
        fields: dict[str, Any] = {}
        for number, _wire, value in iter_fields(data):
            if number == 1:
                fields["action"] = _int64(value, "action")
            elif number == 2:
                fields["ref"] = read_text(value, "ref")
            elif number == 3:
                fields["total"] = _int64(value, "total")
            elif number == 4:
                fields["expected"] = read_text(value, "expected")
            elif number == 5:
                fields["offset"] = _int64(value, "offset")
            elif number == 6:
                fields["data"] = read_bytes(value, "data")
        return cls(**fields)


@dataclass(frozen=True)
class WriteContentResponse:
    """`WriteContentResponse{action=1, started_at=2, updated_at=3, offset=4, total=5,
    digest=6}`: the write's progress after one request."""

    action: int = WRITE_STAT
    started_at: datetime | None = None
    updated_at: datetime | None = None
    offset: int = 0
    total: int = 0
    digest: str = ""

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        out = field_varint(1, self.action) if self.action else b""
        out += _timestamp(2, self.started_at) + _timestamp(3, self.updated_at)
        out += _int64_field(4, self.offset) + _int64_field(5, self.total)
        return out + (field_string(6, self.digest) if self.digest else b"")

    @classmethod
    def decode(cls, data: bytes) -> WriteContentResponse:
        """Read the message (`ProtobufError` when malformed)."""
        fields: dict[str, Any] = {}
        for number, _wire, value in iter_fields(data):
            if number == 1:
                fields["action"] = _int64(value, "action")
            elif number == 2:
                fields["started_at"] = _read_timestamp(read_bytes(value, "started_at"))
            elif number == 3:
                fields["updated_at"] = _read_timestamp(read_bytes(value, "updated_at"))
            elif number == 4:
                fields["offset"] = _int64(value, "offset")
            elif number == 5:
                fields["total"] = _int64(value, "total")
            elif number == 6:
                fields["digest"] = read_text(value, "digest")
        return cls(**fields)


# -- the store -------------------------------------------------------------------------------


def _decode(kind: type[Any], message: bytes) -> Any:
    try:
        return kind.decode(message)
    except ProtobufError as exc:
        raise GrpcError(Status.INVALID_ARGUMENT, f"malformed {kind.__name__}: {exc}") from None


def _checked(digest: str) -> str:
    if not is_sha256_digest(digest):
        raise GrpcError(Status.INVALID_ARGUMENT, f"unsupported digest {digest!r}")
    return digest


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ContentStore:
    """An OCI layout directory as a content store: blobs in `blobs/sha256/<hex>`."""

    root: str

    def blob_path(self, digest: str) -> str:
        """Where the blob of a (checked) sha256 digest lives."""
        return os.path.join(self.root, "blobs", "sha256", _checked(digest)[len("sha256:") :])

    def info(self, digest: str) -> Info:
        """The blob's size and times; NotFound when the store does not have it."""
        try:
            st = os.stat(self.blob_path(digest))
        except FileNotFoundError:
            raise GrpcError(Status.NOT_FOUND, f"content {digest}: not found") from None
        when = datetime.fromtimestamp(st.st_mtime, timezone.utc)
        return Info(digest, st.st_size, when, when)

    def open(self, digest: str) -> IO[bytes]:
        """The blob, open for reading; NotFound when the store does not have it."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise GrpcError(Status.NOT_FOUND, f"content {digest}: not found") from None


@dataclass
class _Ingest:
    """One write in progress: a temporary file beside the blobs and its running digest."""

    store: ContentStore
    handle: IO[bytes]
    temp: str
    total: int = 0
    expected: str = ""
    offset: int = 0
    started_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    hasher: Any = field(default_factory=hashlib.sha256)
    committed: bool = False

    def reply(self, action: int) -> bytes:
        return WriteContentResponse(
            action=action,
            started_at=self.started_at,
            updated_at=self.updated_at,
            offset=self.offset,
            total=self.total,
            digest="sha256:" + self.hasher.hexdigest(),
        ).encode()

    def append(self, request: WriteContentRequest) -> None:
        if not request.data:
            return
        if request.offset != self.offset:
            raise GrpcError(
                Status.INVALID_ARGUMENT,
                f"write at offset {request.offset}, but {self.offset} bytes were written",
            )
        self.handle.write(request.data)
        self.hasher.update(request.data)
        self.offset += len(request.data)
        self.updated_at = _now()

    def commit(self, request: WriteContentRequest) -> None:
        total = request.total or self.total
        expected = request.expected or self.expected
        digest = "sha256:" + self.hasher.hexdigest()
        if total and total != self.offset:
            raise GrpcError(
                Status.FAILED_PRECONDITION,
                f"unexpected commit size {self.offset}, expected {total}",
            )
        if expected and expected != digest:
            raise GrpcError(
                Status.FAILED_PRECONDITION,
                f"unexpected commit digest {digest}, expected {expected}",
            )
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.temp, self.store.blob_path(digest))
        self.committed = True
        self.total = self.offset

    def discard(self) -> None:
        self.handle.close()
        if not self.committed:
            with contextlib.suppress(OSError):
                os.unlink(self.temp)


class ContentService:
    """Answers `content.v1.Content` calls on the stores named by `buildkit-attachable-store-id`."""

    def __init__(self, stores: Mapping[str, str], read_only: Collection[str] = ()) -> None:
        self.stores = {store_id: ContentStore(root) for store_id, root in stores.items()}
        self.read_only = frozenset(read_only)

    def handlers(self) -> dict[str, object]:
        """The gRPC methods this service answers (all of `CONTENT_METHODS`)."""
        handlers: dict[str, object] = dict.fromkeys(CONTENT_METHODS, self.unimplemented)
        handlers.update(
            {
                INFO: self.info,
                READ: self.read,
                WRITE: self.write,
                ABORT: self.not_in_progress,
                STATUS: self.not_in_progress,
            }
        )
        return handlers

    def _store(self, call: Call) -> ContentStore:
        store_id = call.first(STORE_ID_KEY) or ""
        store = self.stores.get(store_id)
        if store is None:
            raise GrpcError(Status.NOT_FOUND, f"content store {store_id!r} not found")
        return store

    async def info(self, call: Call) -> None:
        """Reply with a blob's size and times."""
        store = self._store(call)
        request: InfoRequest = _decode(InfoRequest, await call.recv_one())
        await call.send(InfoResponse(store.info(request.digest)).encode())

    async def read(self, call: Call) -> None:
        """Stream a blob, or its part from `offset` of `size` bytes, in chunks."""
        store = self._store(call)
        request: ReadContentRequest = _decode(ReadContentRequest, await call.recv_one())
        if request.offset < 0 or request.size < 0:
            raise GrpcError(Status.INVALID_ARGUMENT, "offset and size must not be negative")
        with store.open(request.digest) as handle:
            handle.seek(request.offset)
            offset = request.offset
            left = request.size or None
            while left is None or left > 0:
                chunk = handle.read(_CHUNK if left is None else min(_CHUNK, left))
                if not chunk:
                    break
                await call.send(ReadContentResponse(offset, chunk).encode())
                offset += len(chunk)
                if left is not None:
                    left -= len(chunk)

    async def write(self, call: Call) -> None:
        """Take one blob through STAT, WRITE and COMMIT requests, one reply each."""
        store = self._store(call)
        store_id = call.first(STORE_ID_KEY) or ""
        if store_id in self.read_only:
            raise GrpcError(Status.PERMISSION_DENIED, f"content store {store_id!r} is read-only")
        ingest: _Ingest | None = None
        try:
            while (message := await call.recv()) is not None:
                request: WriteContentRequest = _decode(WriteContentRequest, message)
                if ingest is None:
                    ingest = self._begin(store, request)
                if request.action == WRITE_STAT:
                    pass
                elif request.action == WRITE_WRITE:
                    ingest.append(request)
                elif request.action == WRITE_COMMIT and not ingest.committed:
                    ingest.append(request)
                    ingest.commit(request)
                elif request.action != WRITE_COMMIT:
                    raise GrpcError(Status.INVALID_ARGUMENT, f"unknown action {request.action}")
                await call.send(ingest.reply(request.action))
        except OSError as exc:
            raise GrpcError(Status.INTERNAL, f"cannot write {store.root}: {exc}") from None
        finally:
            if ingest is not None:
                ingest.discard()

    @staticmethod
    def _begin(store: ContentStore, request: WriteContentRequest) -> _Ingest:
        if request.expected and os.path.exists(store.blob_path(request.expected)):
            raise GrpcError(Status.ALREADY_EXISTS, f"content {request.expected}: already exists")
        directory = os.path.join(store.root, "blobs", "sha256")
        os.makedirs(directory, exist_ok=True)
        temp = os.path.join(directory, f".ingest-{secrets.token_hex(8)}")
        handle = open(temp, "xb")  # noqa: SIM115 - closed by _Ingest.discard
        return _Ingest(store, handle, temp, total=request.total, expected=request.expected)

    async def not_in_progress(self, call: Call) -> None:
        """`Abort`/`Status`: no write outlives its call here, so none is in progress."""
        await call.recv_one()
        raise GrpcError(Status.NOT_FOUND, "no write in progress under that ref")

    async def unimplemented(self, call: Call) -> None:
        """`Update`, `Delete`, `List`, `ListStatuses`: BuildKit does not call them."""
        raise GrpcError(Status.UNIMPLEMENTED, f"{call.method} is not served by this client")


# -- index.json ------------------------------------------------------------------------------


def _read_index(directory: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(directory, "index.json"), encoding="utf-8") as handle:
            index = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ExportError(f"could not read {directory}/index.json: {exc}") from None
    if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
        raise ExportError(f"{directory}/index.json is not an OCI image index")
    return index


def read_cache_digest(directory: str, tag: str | None = None) -> str | None:
    """The digest of the manifest named `tag` (`latest`) in `<directory>/index.json`; None
    when the file or the name is missing (buildx then drops the import with a warning)."""
    index = _read_index(directory)
    name = tag or "latest"
    for manifest in (index or {}).get("manifests", []):
        annotations = manifest.get("annotations") if isinstance(manifest, dict) else None
        if isinstance(annotations, dict) and annotations.get(REF_NAME) == name:
            digest = manifest.get("digest")
            if isinstance(digest, str) and is_sha256_digest(digest):
                return digest
    return None


def resolve_oci_layout(value: str) -> OCILayoutRef:
    """`oci-layout://DIR[:TAG][@DIGEST]` with its digest, as buildx resolves it: a given
    digest is kept; else the manifest named TAG (`latest`) in `DIR/index.json`, else the only
    manifest there. Raises `ContextError` naming the directory when the index is missing or
    unreadable or nothing matches."""
    ref = parse_oci_layout(value)
    if ref.digest is not None:
        return ref
    try:
        index = _read_index(ref.directory)
    except ExportError as exc:
        raise ContextError(f"oci-layout reference {value!r}: {exc}", ref.directory) from None
    if index is None:
        raise ContextError(
            f"oci-layout reference {value!r}: {ref.directory}/index.json not found "
            "(not an OCI layout directory)",
            ref.directory,
        )
    manifests = [m for m in index.get("manifests", []) if isinstance(m, dict)]
    named = [
        m
        for m in manifests
        if isinstance(m.get("annotations"), dict) and m["annotations"].get(REF_NAME) == ref.tag
    ]
    chosen = named[0] if named else manifests[0] if len(manifests) == 1 else None
    digest = chosen.get("digest") if chosen is not None else None
    if not isinstance(digest, str):
        names = sorted(
            str(m["annotations"][REF_NAME])
            for m in manifests
            if isinstance(m.get("annotations"), dict) and REF_NAME in m["annotations"]
        )
        raise ContextError(
            f"oci-layout reference {value!r} could not be resolved: no manifest named "
            f"{ref.tag!r} in {ref.directory}/index.json (names there: "
            f"{', '.join(names) or 'none'})",
            ref.directory,
        )
    if not is_sha256_digest(digest):
        raise ContextError(
            f"oci-layout reference {value!r}: {ref.directory}/index.json names digest "
            f"{digest!r}, not a sha256 digest",
            ref.directory,
        )
    return OCILayoutRef(ref.directory, ref.tag, digest)


def oci_layout_digests(options: BuildOptions) -> BuildOptions:
    """`options` with every `oci-layout://` named context resolved to
    `oci-layout://DIR:TAG@DIGEST` (`resolve_oci_layout`). Reads files; sends nothing."""
    contexts = dict(options.build_contexts)
    changed = False
    for name, value in contexts.items():
        if context_kind(value) == "oci-layout":
            resolved = resolve_oci_layout(value).value()
            changed = changed or resolved != value
            contexts[name] = resolved
    return options.model_copy(update={"build_contexts": contexts}) if changed else options


def write_cache_index(
    directory: str, descriptor: Mapping[str, Any], tag: str | None = None
) -> None:
    """Name `descriptor` `tag` (`latest`) in `<directory>/index.json`, replacing the manifest
    that had that name and keeping the others; written to a temporary file, then renamed."""
    name = tag or "latest"
    index = _read_index(directory) or {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE}
    kept = [
        manifest
        for manifest in index.get("manifests", [])
        if not (
            isinstance(manifest, dict)
            and isinstance(manifest.get("annotations"), dict)
            and manifest["annotations"].get(REF_NAME) == name
        )
    ]
    entry = dict(descriptor)
    entry["annotations"] = {**dict(entry.get("annotations") or {}), REF_NAME: name}
    index["manifests"] = [*kept, entry]
    temp = os.path.join(directory, f".index-{secrets.token_hex(8)}.json")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(temp, "x", encoding="utf-8") as handle:
            json.dump(index, handle, separators=(",", ":"))
        os.replace(temp, os.path.join(directory, "index.json"))
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise ExportError(f"cannot write {directory}/index.json: {exc.strerror or exc}") from None


def cache_digests(options: BuildOptions) -> BuildOptions:
    """`options` with the digest of every local cache import read from its `index.json`.

    An import whose index or name is missing keeps no digest, so `solve_request` leaves it
    out, as buildx does on a first run (it logs a warning). Reads files; sends nothing.
    """
    imports: list[object] = []
    changed = False
    for cache in options.cache_from:
        if isinstance(cache, LocalCache) and cache.digest is None:
            digest = read_cache_digest(cache.directory, cache.tag)
            if digest is None:
                logger.warning(
                    "local cache import at %s not found: no manifest named %s in its index.json",
                    cache.directory,
                    cache.tag or "latest",
                )
            else:
                cache = cache.model_copy(update={"digest": digest})
                changed = True
        imports.append(cache)
    return options.model_copy(update={"cache_from": tuple(imports)}) if changed else options


def write_cache_indexes(options: BuildOptions, exporter_response: Mapping[str, str]) -> None:
    """After a build, record the exported cache manifest (`cache.manifest` of the exporter
    response) in the `index.json` of every local cache export of `options`, as buildx does.
    Raises `ExportError` when the response has no manifest or the file cannot be written."""
    exports = [cache for cache in options.cache_to if isinstance(cache, LocalCache)]
    if not exports:
        return
    raw = exporter_response.get(_CACHE_MANIFEST)
    try:
        descriptor = json.loads(raw) if raw is not None else None
    except ValueError:
        descriptor = None
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
        raise ExportError(
            f"the engine exported the cache without a usable {_CACHE_MANIFEST} in its response"
        )
    for cache in exports:
        write_cache_index(cache.directory, descriptor, cache.tag)


def write_layout_index(directory: str, exporter_response: Mapping[str, str]) -> None:
    """After a build, finish an OCI layout directory output as buildx does: name the image's
    descriptor (`containerimage.descriptor`) in `<directory>/index.json` after each name of
    `image.name` (`latest` when unnamed), and write `oci-layout`. Raises `ExportError` when
    the response has no descriptor or a file cannot be written."""
    raw = exporter_response.get(_DESCRIPTOR, "")
    try:
        descriptor = json.loads(base64.b64decode(raw, validate=True)) if raw else None
    except ValueError:
        descriptor = None
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
        raise ExportError(f"the engine exported the image without a usable {_DESCRIPTOR}")
    names = [name for name in exporter_response.get("image.name", "").split(",") if name]
    for name in names or ["latest"]:
        write_cache_index(directory, descriptor, name)
    temp = os.path.join(directory, f".oci-layout-{secrets.token_hex(8)}")
    try:
        with open(temp, "x", encoding="utf-8") as handle:
            json.dump({"imageLayoutVersion": "1.0.0"}, handle, separators=(",", ":"))
        os.replace(temp, os.path.join(directory, "oci-layout"))
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise ExportError(f"cannot write {directory}/oci-layout: {exc.strerror or exc}") from None


def finish_content_stores(options: BuildOptions, exporter_response: Mapping[str, str]) -> None:
    """After a successful Control API build, write what the client owes its content stores:
    the local caches' and the OCI layout output's `index.json` (`write_cache_indexes`,
    `write_layout_index`)."""
    from buildsdk._control_plan import layout_directories

    write_cache_indexes(options, exporter_response)
    for directory in layout_directories(options):
        write_layout_index(directory, exporter_response)
