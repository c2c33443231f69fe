"""The session's hand-written protobuf messages against the official `protobuf` package.

The message classes are built at runtime from descriptors written here from BuildKit's and
fsutil's .proto files (same package, names and field numbers), so no generated code is
needed. Every message is encoded by both sides and decoded across, including random ones.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from buildsdk._protobuf import ProtobufError
from buildsdk.session._messages import (
    PACKET_DATA,
    PACKET_FIN,
    PACKET_REQ,
    BytesMessage,
    CheckAgentRequest,
    CredentialsRequest,
    CredentialsResponse,
    GetSecretRequest,
    GetSecretResponse,
    HealthCheckResponse,
    Packet,
    Stat,
)

_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "int64": _F.TYPE_INT64,
    "uint32": _F.TYPE_UINT32,
    "enum": _F.TYPE_ENUM,
    "message": _F.TYPE_MESSAGE,
}


def _file(
    name: str, package: str, messages: dict[str, list[tuple[Any, ...]]], enums: Any = None
) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")
    for enum_name, values in (enums or {}).items():
        enum = proto.enum_type.add(name=enum_name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        for field in fields:
            field_name, number, kind = field[:3]
            type_name = field[3] if len(field) > 3 else None
            repeated = len(field) > 4 and field[4]
            entry = message.field.add(
                name=field_name,
                number=number,
                type=_TYPES[kind],
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if type_name:
                entry.type_name = type_name
        if message_name in _MAP_ENTRIES:
            message.options.map_entry = True
    return proto


_MAP_ENTRIES = {"AnnotationsEntry", "XattrsEntry"}


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    files = [
        _file(
            "secrets.proto",
            "moby.buildkit.secrets.v1",
            {
                "AnnotationsEntry": [("key", 1, "string"), ("value", 2, "string")],
                "GetSecretRequest": [
                    ("ID", 1, "string"),
                    (
                        "annotations",
                        2,
                        "message",
                        ".moby.buildkit.secrets.v1.AnnotationsEntry",
                        True,
                    ),
                ],
                "GetSecretResponse": [("data", 1, "bytes")],
            },
        ),
        _file(
            "auth.proto",
            "moby.filesync.v1",
            {
                "CredentialsRequest": [("Host", 1, "string")],
                "CredentialsResponse": [("Username", 1, "string"), ("Secret", 2, "string")],
            },
        ),
        _file(
            "ssh.proto",
            "moby.sshforward.v1",
            {"BytesMessage": [("data", 1, "bytes")], "CheckAgentRequest": [("ID", 1, "string")]},
        ),
        _file(
            "health.proto",
            "grpc.health.v1",
            {"HealthCheckResponse": [("status", 1, "enum", ".grpc.health.v1.ServingStatus")]},
            enums={"ServingStatus": [("UNKNOWN", 0), ("SERVING", 1), ("NOT_SERVING", 2)]},
        ),
        _file(
            "fsutil.proto",
            "fsutil.types",
            {
                "XattrsEntry": [("key", 1, "string"), ("value", 2, "bytes")],
                "Stat": [
                    ("path", 1, "string"),
                    ("mode", 2, "uint32"),
                    ("uid", 3, "uint32"),
                    ("gid", 4, "uint32"),
                    ("size", 5, "int64"),
                    ("modTime", 6, "int64"),
                    ("linkname", 7, "string"),
                    ("devmajor", 8, "int64"),
                    ("devminor", 9, "int64"),
                    ("xattrs", 10, "message", ".fsutil.types.XattrsEntry", True),
                ],
                "Packet": [
                    ("type", 1, "enum", ".fsutil.types.PacketType"),
                    ("stat", 2, "message", ".fsutil.types.Stat"),
                    ("ID", 3, "uint32"),
                    ("data", 4, "bytes"),
                ],
            },
            enums={
                "PacketType": [
                    ("PACKET_STAT", 0),
                    ("PACKET_REQ", 1),
                    ("PACKET_DATA", 2),
                    ("PACKET_FIN", 3),
                    ("PACKET_ERR", 4),
                ]
            },
        ),
    ]
    # Map fields need their entry types nested inside the message that uses them.
    for proto in files:
        for entry_name, owner in (
            ("AnnotationsEntry", "GetSecretRequest"),
            ("XattrsEntry", "Stat"),
        ):
            entries = [m for m in proto.message_type if m.name == entry_name]
            if not entries:
                continue
            entry = entries[0]
            owner_message = next(m for m in proto.message_type if m.name == owner)
            nested = owner_message.nested_type.add()
            nested.CopyFrom(entry)
            proto.message_type.remove(entry)
            for field in owner_message.field:
                if field.type_name.endswith("." + entry_name):
                    field.type_name = f".{proto.package}.{owner}.{entry_name}"
        pool.Add(proto)
    names = {
        "GetSecretRequest": "moby.buildkit.secrets.v1.GetSecretRequest",
        "GetSecretResponse": "moby.buildkit.secrets.v1.GetSecretResponse",
        "CredentialsRequest": "moby.filesync.v1.CredentialsRequest",
        "CredentialsResponse": "moby.filesync.v1.CredentialsResponse",
        "BytesMessage": "moby.sshforward.v1.BytesMessage",
        "CheckAgentRequest": "moby.sshforward.v1.CheckAgentRequest",
        "HealthCheckResponse": "grpc.health.v1.HealthCheckResponse",
        "Stat": "fsutil.types.Stat",
        "Packet": "fsutil.types.Packet",
    }
    return {
        short: message_factory.GetMessageClass(pool.FindMessageTypeByName(full))
        for short, full in names.items()
    }


PB = _classes()


def _official(name: str, **fields: Any) -> bytes:
    message = PB[name](**fields)
    return bytes(message.SerializeToString(deterministic=True))


def test_secret_request_decodes_what_protobuf_encodes() -> None:
    data = _official("GetSecretRequest", ID="npm_token", annotations={"b": "2", "a": "1"})
    assert GetSecretRequest.decode(data) == GetSecretRequest("npm_token", {"a": "1", "b": "2"})
    assert GetSecretRequest("npm_token", {"a": "1", "b": "2"}).encode() == data


def test_secret_response_and_repr_hides_data() -> None:
    assert GetSecretResponse(b"s3cr3t").encode() == _official("GetSecretResponse", data=b"s3cr3t")
    assert "s3cr3t" not in repr(GetSecretResponse(b"s3cr3t"))


def test_credentials_messages() -> None:
    data = _official("CredentialsRequest", Host="registry-1.docker.io")
    assert CredentialsRequest.decode(data).host == "registry-1.docker.io"
    response = CredentialsResponse("me", "pw")
    assert response.encode() == _official("CredentialsResponse", Username="me", Secret="pw")
    assert "pw" not in repr(response)
    assert CredentialsResponse().encode() == b""


def test_ssh_and_health_messages() -> None:
    assert CheckAgentRequest.decode(_official("CheckAgentRequest", ID="default")).id == "default"
    assert BytesMessage(b"\x00\x00\x00\x01\x0b").encode() == _official(
        "BytesMessage", data=b"\x00\x00\x00\x01\x0b"
    )
    assert (
        HealthCheckResponse().encode() == b"\x08\x01" == _official("HealthCheckResponse", status=1)
    )


def test_packets_of_every_kind() -> None:
    stat = Stat(
        path="dir/file",
        mode=0o644,
        size=5,
        mod_time=1_700_000_000_123_456_789,
        xattrs={"user.a": b"\x00\xff"},
    )
    official = _official(
        "Packet",
        type=0,
        stat=PB["Stat"](
            path="dir/file",
            mode=0o644,
            size=5,
            modTime=1_700_000_000_123_456_789,
            xattrs={"user.a": b"\x00\xff"},
        ),
    )
    assert Packet(stat=stat).encode() == official
    assert Packet.decode(official) == Packet(stat=stat)
    for kind, ident, data in ((PACKET_REQ, 7, b""), (PACKET_DATA, 7, b"abc"), (PACKET_FIN, 0, b"")):
        wire = _official("Packet", type=kind, ID=ident, data=data)
        assert Packet(kind, id=ident, data=data).encode() == wire
        assert Packet.decode(wire) == Packet(kind, id=ident, data=data)
    # The end of the STAT list is an empty message.
    assert Packet().encode() == b""


def test_directory_mode_uses_go_file_mode_bits() -> None:
    stat = Stat(path="d", mode=(1 << 31) | 0o755)
    wire = stat.encode()
    assert PB["Stat"].FromString(wire).mode == (1 << 31) | 0o755


def test_malformed_messages_raise_protobuf_error() -> None:
    with pytest.raises(ProtobufError):
        Packet.decode(b"\x0a\x05ab")
    with pytest.raises(ProtobufError):
        CredentialsRequest.decode(b"\x08\x01")  # Host given as a varint


_text = st.text(max_size=40)
_u32 = st.integers(0, 2**32 - 1)
_i64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def _stats(draw: st.DrawFn) -> Stat:
    return Stat(
        path=draw(_text),
        mode=draw(_u32),
        uid=draw(_u32),
        gid=draw(_u32),
        size=draw(_i64),
        mod_time=draw(_i64),
        linkname=draw(_text),
        devmajor=draw(st.integers(0, 2**31)),
        devminor=draw(st.integers(0, 2**31)),
        xattrs=draw(st.dictionaries(_text, st.binary(max_size=8), max_size=3)),
    )


@given(_stats(), st.integers(0, 4), _u32, st.binary(max_size=64), st.booleans())
def test_packet_round_trips_against_protobuf(
    stat: Stat, kind: int, ident: int, data: bytes, with_stat: bool
) -> None:
    packet = Packet(kind, stat if with_stat else None, ident, data)
    ours = packet.encode()
    fields: dict[str, Any] = {"type": kind, "ID": ident, "data": data}
    if with_stat:
        fields["stat"] = PB["Stat"](
            path=stat.path,
            mode=stat.mode,
            uid=stat.uid,
            gid=stat.gid,
            size=stat.size,
            modTime=stat.mod_time,
            linkname=stat.linkname,
            devmajor=stat.devmajor,
            devminor=stat.devminor,
            xattrs=dict(stat.xattrs),
        )
    official = PB["Packet"](**fields)
    # Map entries may come in any order, so messages are compared, not bytes.
    assert PB["Packet"].FromString(ours) == official
    assert Packet.decode(official.SerializeToString()) == packet
    assert Packet.decode(ours) == packet


@given(_text, st.dictionaries(_text, _text, max_size=4))
def test_secret_request_round_trips_against_protobuf(
    ident: str, annotations: dict[str, str]
) -> None:
    wire = _official("GetSecretRequest", ID=ident, annotations=annotations)
    assert GetSecretRequest.decode(wire) == GetSecretRequest(ident, annotations)
    ours = GetSecretRequest(ident, annotations).encode()
    assert PB["GetSecretRequest"].FromString(ours) == PB["GetSecretRequest"].FromString(wire)
