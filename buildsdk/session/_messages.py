"""The protobuf messages a BuildKit session exchanges, encoded and decoded by hand.

Why by hand: the session services need a dozen small messages, and the runtime must not
depend on the `protobuf` package. Each message is a frozen dataclass with `encode()` and a
`decode()` class method built on `buildsdk._protobuf`; unknown fields are skipped, as
protobuf's compatibility rules ask. The field numbers are BuildKit's (secrets, auth,
sshforward) and fsutil's (`types.Packet`, `types.Stat`); tests compare every encoding with
the official `protobuf` package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from buildsdk._protobuf import (
    WIRE_LEN,
    WIRE_VARINT,
    as_int64,
    encode_varint,
    field_bytes,
    field_string,
    field_varint,
    iter_fields,
    read_bytes,
    read_text,
    read_varint,
)

__all__ = [
    "PACKET_DATA",
    "PACKET_ERR",
    "PACKET_FIN",
    "PACKET_REQ",
    "PACKET_STAT",
    "BytesMessage",
    "CheckAgentRequest",
    "CredentialsRequest",
    "CredentialsResponse",
    "GetSecretRequest",
    "GetSecretResponse",
    "HealthCheckResponse",
    "Packet",
    "Stat",
]

PACKET_STAT = 0
"""fsutil packet type: one file's metadata (an empty STAT ends the list)."""
PACKET_REQ = 1
"""fsutil packet type: the receiver asks for the contents of the file with this ID."""
PACKET_DATA = 2
"""fsutil packet type: a piece of a file's contents (empty: the file is complete)."""
PACKET_FIN = 3
"""fsutil packet type: the transfer is over."""
PACKET_ERR = 4
"""fsutil packet type: the other side failed; `data` says why."""


def _map_entry(data: bytes, what: str) -> tuple[str, bytes]:
    key = ""
    value = b""
    for number, _wire, item in iter_fields(data):
        if number == 1:
            key = read_text(item, f"{what} key")
        elif number == 2:
            value = read_bytes(item, f"{what} value")
    return key, value


def _encode_map(number: int, mapping: Mapping[str, bytes]) -> bytes:
    # Entries sorted by key and with both fields always written, as protobuf's
    # deterministic mode writes them; readers accept any order and omitted fields.
    out = bytearray()
    for key in sorted(mapping):
        entry = field_string(1, key) + field_bytes(2, mapping[key])
        out += field_bytes(number, entry)
    return bytes(out)


@dataclass(frozen=True)
class GetSecretRequest:
    """`moby.buildkit.secrets.v1.GetSecretRequest`: which secret the build wants."""

    id: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        out = field_string(1, self.id) if self.id else b""
        encoded = {key: value.encode() for key, value in self.annotations.items()}
        return out + _encode_map(2, encoded)

    @classmethod
    def decode(cls, data: bytes) -> GetSecretRequest:
        """Read the message from protobuf bytes (`ProtobufError` when malformed)."""
        ident = ""
        annotations: dict[str, str] = {}
        for number, _wire, value in iter_fields(data):
            if number == 1:
                ident = read_text(value, "ID")
            elif number == 2:
                key, raw = _map_entry(read_bytes(value, "annotations"), "annotations")
                annotations[key] = raw.decode("utf-8", "replace")
        return cls(ident, annotations)


@dataclass(frozen=True)
class GetSecretResponse:
    """`moby.buildkit.secrets.v1.GetSecretResponse`: the secret's bytes."""

    data: bytes = b""

    def __repr__(self) -> str:
        return f"GetSecretResponse(data=<{len(self.data)} bytes>)"

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        return field_bytes(1, self.data) if self.data else b""


@dataclass(frozen=True)
class CredentialsRequest:
    """`moby.filesync.v1.CredentialsRequest`: the registry host the engine logs in to."""

    host: str = ""

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        return field_string(1, self.host) if self.host else b""

    @classmethod
    def decode(cls, data: bytes) -> CredentialsRequest:
        """Read the message from protobuf bytes (`ProtobufError` when malformed)."""
        host = ""
        for number, _wire, value in iter_fields(data):
            if number == 1:
                host = read_text(value, "Host")
        return cls(host)


@dataclass(frozen=True)
class CredentialsResponse:
    """`moby.filesync.v1.CredentialsResponse`: user name and password (or identity token)."""

    username: str = ""
    secret: str = ""

    def __repr__(self) -> str:
        return f"CredentialsResponse(username={self.username!r}, secret='**********')"

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        out = field_string(1, self.username) if self.username else b""
        return out + (field_string(2, self.secret) if self.secret else b"")


@dataclass(frozen=True)
class CheckAgentRequest:
    """`moby.sshforward.v1.CheckAgentRequest`: does the client forward this agent ID?"""

    id: str = ""

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        return field_string(1, self.id) if self.id else b""

    @classmethod
    def decode(cls, data: bytes) -> CheckAgentRequest:
        """Read the message from protobuf bytes (`ProtobufError` when malformed)."""
        ident = ""
        for number, _wire, value in iter_fields(data):
            if number == 1:
                ident = read_text(value, "ID")
        return cls(ident)


@dataclass(frozen=True)
class BytesMessage:
    """`moby.sshforward.v1.BytesMessage`: a chunk of a forwarded byte stream."""

    data: bytes = b""

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        return field_bytes(1, self.data) if self.data else b""

    @classmethod
    def decode(cls, data: bytes) -> BytesMessage:
        """Read the message from protobuf bytes (`ProtobufError` when malformed)."""
        payload = b""
        for number, _wire, value in iter_fields(data):
            if number == 1:
                payload = read_bytes(value, "data")
        return cls(payload)


@dataclass(frozen=True)
class HealthCheckResponse:
    """`grpc.health.v1.HealthCheckResponse`; status 1 is SERVING."""

    SERVING: ClassVar[int] = 1
    status: int = SERVING

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        return field_varint(1, self.status) if self.status else b""


@dataclass(frozen=True)
class Stat:
    """fsutil `types.Stat`: one entry of a synced directory.

    `mode` is a Go `os.FileMode` (directory 1<<31, symlink 1<<27, ...), not a Unix mode;
    `mod_time` is in nanoseconds since the epoch.
    """

    path: str = ""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mod_time: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: Mapping[str, bytes] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The message's protobuf bytes (proto3: zero values are not written)."""
        # A context sync encodes one Stat per entry, tens of thousands per build: the keys
        # are spelled out (fields 1-9 have one-byte keys) and the parts joined once.
        parts: list[bytes] = []
        # File names are bytes on Linux; Python keeps undecodable ones as surrogate
        # escapes, which go back out as the original bytes (as Go sends them).
        if self.path:
            path = self.path.encode("utf-8", "surrogateescape")
            parts += (b"\x0a", encode_varint(len(path)), path)
        if self.mode:
            parts += (b"\x10", encode_varint(self.mode))
        if self.uid:
            parts += (b"\x18", encode_varint(self.uid))
        if self.gid:
            parts += (b"\x20", encode_varint(self.gid))
        if self.size:
            parts += (b"\x28", encode_varint(self.size))
        if self.mod_time:
            parts += (b"\x30", encode_varint(self.mod_time))
        if self.linkname:
            linkname = self.linkname.encode("utf-8", "surrogateescape")
            parts += (b"\x3a", encode_varint(len(linkname)), linkname)
        if self.devmajor:
            parts += (b"\x40", encode_varint(self.devmajor))
        if self.devminor:
            parts += (b"\x48", encode_varint(self.devminor))
        if self.xattrs:
            parts.append(_encode_map(10, self.xattrs))
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> Stat:
        """Read the message from protobuf bytes (`ProtobufError` when malformed)."""
        values: dict[str, object] = {}
        xattrs: dict[str, bytes] = {}
        names = {2: "mode", 3: "uid", 4: "gid", 5: "size", 6: "mod_time", 8: "devmajor"}
        names[9] = "devminor"
        for number, wire, value in iter_fields(data):
            if number == 1 and wire == WIRE_LEN:
                values["path"] = read_text(value, "path")
            elif number == 7 and wire == WIRE_LEN:
                values["linkname"] = read_text(value, "linkname")
            elif number == 10 and wire == WIRE_LEN:
                key, raw = _map_entry(read_bytes(value, "xattrs"), "xattrs")
                xattrs[key] = raw
            elif number in names and wire == WIRE_VARINT:
                raw_number = read_varint(value, names[number])
                # size and modTime are int64; the mode, ids and devices are uint32.
                signed = number in (5, 6)
                values[names[number]] = as_int64(raw_number) if signed else raw_number
        return cls(xattrs=xattrs, **values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Packet:
    """fsutil `types.Packet`: one message of the DiffCopy stream."""

    type: int = PACKET_STAT
    stat: Stat | None = None
    id: int = 0
    data: bytes = b""

    def encode(self) -> bytes:
        """The message's protobuf bytes."""
        if self.type == PACKET_STAT and self.stat is not None and not self.id and not self.data:
            # The common case of a context sync: a STAT packet is its stat, length-prefixed.
            entry = self.stat.encode()
            return b"\x12" + encode_varint(len(entry)) + entry
        out = bytearray()
        if self.type:
            out += field_varint(1, self.type)
        if self.stat is not None:
            out += field_bytes(2, self.stat.encode())
        if self.id:
            out += field_varint(3, self.id)
        if self.data:
            out += field_bytes(4, self.data)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Packet:
        """Read the message from protobuf bytes (`ProtobufError` when malformed)."""
        kind = PACKET_STAT
        stat: Stat | None = None
        ident = 0
        payload = b""
        for number, _wire, value in iter_fields(data):
            if number == 1:
                kind = read_varint(value, "Type")
            elif number == 2:
                stat = Stat.decode(read_bytes(value, "stat"))
            elif number == 3:
                ident = read_varint(value, "ID") & 0xFFFFFFFF
            elif number == 4:
                payload = read_bytes(value, "data")
        return cls(kind, stat, ident, payload)
