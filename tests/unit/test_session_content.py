"""The session's content store: its messages against `protobuf`, and the service as the engine
calls it (recorded shapes of buildx_solve.json cache_local_1/2), and the cache index.json."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given, settings
from hypothesis import strategies as st

from buildsdk._control_plan import content_stores
from buildsdk._grpc.status import Status
from buildsdk.build import BuildOptions
from buildsdk.buildkit.solve import solve_request
from buildsdk.cache_backends import LocalCache
from buildsdk.errors import ExportError
from buildsdk.session._runtime import session_methods
from buildsdk.session.content import (
    CONTENT_METHODS,
    WRITE_COMMIT,
    WRITE_STAT,
    WRITE_WRITE,
    ContentService,
    Info,
    InfoRequest,
    InfoResponse,
    ReadContentRequest,
    ReadContentResponse,
    WriteContentRequest,
    WriteContentResponse,
    cache_digests,
    finish_content_stores,
    read_cache_digest,
    write_cache_index,
    write_cache_indexes,
    write_layout_index,
)
from tests import examples
from tests.unit.test_session_grpc import _serve_and_call

HERE = str(Path(__file__).resolve().parent)
SERVICE = "/containerd.services.content.v1.Content/"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# -- the messages against the official protobuf package ---------------------------------------

_F = descriptor_pb2.FieldDescriptorProto


def _classes() -> dict[str, Any]:
    proto = descriptor_pb2.FileDescriptorProto(
        name="content.proto", package="containerd.services.content.v1", syntax="proto3"
    )
    ts = ".containerd.services.content.v1.Ts"
    messages: dict[str, list[tuple[str, int, int, str]]] = {
        "Ts": [("seconds", 1, _F.TYPE_INT64, ""), ("nanos", 2, _F.TYPE_INT32, "")],
        "Info": [
            ("digest", 1, _F.TYPE_STRING, ""),
            ("size", 2, _F.TYPE_INT64, ""),
            ("created_at", 3, _F.TYPE_MESSAGE, ts),
            ("updated_at", 4, _F.TYPE_MESSAGE, ts),
        ],
        "InfoRequest": [("digest", 1, _F.TYPE_STRING, "")],
        "InfoResponse": [("info", 1, _F.TYPE_MESSAGE, ".containerd.services.content.v1.Info")],
        "ReadContentRequest": [
            ("digest", 1, _F.TYPE_STRING, ""),
            ("offset", 2, _F.TYPE_INT64, ""),
            ("size", 3, _F.TYPE_INT64, ""),
        ],
        "ReadContentResponse": [("offset", 1, _F.TYPE_INT64, ""), ("data", 2, _F.TYPE_BYTES, "")],
        "WriteContentRequest": [
            ("action", 1, _F.TYPE_INT32, ""),
            ("ref", 2, _F.TYPE_STRING, ""),
            ("total", 3, _F.TYPE_INT64, ""),
            ("expected", 4, _F.TYPE_STRING, ""),
            ("offset", 5, _F.TYPE_INT64, ""),
            ("data", 6, _F.TYPE_BYTES, ""),
        ],
        "WriteContentResponse": [
            ("action", 1, _F.TYPE_INT32, ""),
            ("started_at", 2, _F.TYPE_MESSAGE, ts),
            ("updated_at", 3, _F.TYPE_MESSAGE, ts),
            ("offset", 4, _F.TYPE_INT64, ""),
            ("total", 5, _F.TYPE_INT64, ""),
            ("digest", 6, _F.TYPE_STRING, ""),
        ],
    }
    for name, fields in messages.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, type_name in fields:
            entry = message.field.add(
                name=field_name, number=number, type=kind, label=_F.LABEL_OPTIONAL
            )
            if type_name:
                entry.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"containerd.services.content.v1.{name}")
        )
        for name in messages
    }


PB = _classes()

_DIGEST = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())
_INT64 = st.integers(0, 2**63 - 1)
_TIME = st.none() | st.integers(0, 4_000_000_000_000_000).map(
    lambda us: EPOCH + timedelta(microseconds=us)
)


def _ts(when: datetime | None) -> Any:
    if when is None:
        return None
    delta = when - EPOCH
    return PB["Ts"](seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def _pb(name: str, **fields: Any) -> Any:
    return PB[name](**{key: value for key, value in fields.items() if value is not None})


@settings(max_examples=examples(200))
@given(_DIGEST | st.just(""), _INT64, _TIME, _TIME)
def test_info_response_round_trips_against_protobuf(
    digest: str, size: int, created: datetime | None, updated: datetime | None
) -> None:
    ours = InfoResponse(Info(digest, size, created, updated))
    official = _pb(
        "InfoResponse",
        info=_pb(
            "Info", digest=digest, size=size, created_at=_ts(created), updated_at=_ts(updated)
        ),
    )
    assert PB["InfoResponse"].FromString(ours.encode()) == official
    assert InfoResponse.decode(official.SerializeToString()) == ours


@settings(max_examples=examples(200))
@given(_DIGEST, _INT64, _INT64, st.binary(max_size=64))
def test_requests_and_reads_round_trip_against_protobuf(
    digest: str, offset: int, size: int, data: bytes
) -> None:
    wire = _pb("ReadContentRequest", digest=digest, offset=offset, size=size).SerializeToString()
    assert ReadContentRequest.decode(wire) == ReadContentRequest(digest, offset, size)
    assert ReadContentRequest(digest, offset, size).encode() == wire
    assert (
        InfoRequest.decode(_pb("InfoRequest", digest=digest).SerializeToString()).digest == digest
    )
    reply = ReadContentResponse(offset, data)
    assert PB["ReadContentResponse"].FromString(reply.encode()) == _pb(
        "ReadContentResponse", offset=offset, data=data
    )
    assert ReadContentResponse.decode(reply.encode()) == reply


@settings(max_examples=examples(200))
@given(
    st.sampled_from([WRITE_STAT, WRITE_WRITE, WRITE_COMMIT]),
    st.text(max_size=20),
    _INT64,
    _DIGEST | st.just(""),
    _INT64,
    st.binary(max_size=64),
    _TIME,
    _TIME,
)
def test_write_messages_round_trip_against_protobuf(
    action: int,
    ref: str,
    total: int,
    digest: str,
    offset: int,
    data: bytes,
    started: datetime | None,
    updated: datetime | None,
) -> None:
    request = WriteContentRequest(action, ref, total, digest, offset, data)
    official = _pb(
        "WriteContentRequest",
        action=action,
        ref=ref,
        total=total,
        expected=digest,
        offset=offset,
        data=data,
    )
    assert WriteContentRequest.decode(official.SerializeToString()) == request
    assert request.encode() == official.SerializeToString()
    reply = WriteContentResponse(action, started, updated, offset, total, digest)
    assert PB["WriteContentResponse"].FromString(reply.encode()) == _pb(
        "WriteContentResponse",
        action=action,
        started_at=_ts(started),
        updated_at=_ts(updated),
        offset=offset,
        total=total,
        digest=digest,
    )
    assert WriteContentResponse.decode(reply.encode()) == reply


def test_a_write_request_s_repr_hides_its_data() -> None:
    assert "secret" not in repr(WriteContentRequest(WRITE_WRITE, data=b"secret"))


# -- the service, as the engine calls it ------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _call(
    service: ContentService, method: str, messages: list[bytes], store: str
) -> tuple[list[bytes], tuple[int, str]]:
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [(SERVICE + method, messages, (("buildkit-attachable-store-id", store),))],
        )
    )
    return engine.messages(stream), engine.status(stream)


def _leftovers(root: Path) -> list[str]:
    return [name for name in os.listdir(root / "blobs" / "sha256") if name.startswith(".")]


def test_a_recorded_write_lands_the_blob_whole(tmp_path: Path) -> None:
    # The recorded sizes (1069130 = 1048576 + 20554) scaled down to the test engine's frame.
    data = os.urandom(12_130)
    digest = _digest(data)
    service = ContentService({f"local:{tmp_path}": str(tmp_path)})
    first, rest = data[:8_192], data[8_192:]
    # cache_local_1's first Write: STAT{ref,total,expected}, STAT, STAT, WRITE, WRITE, COMMIT.
    requests = [
        WriteContentRequest(WRITE_STAT, f"layer-{digest}", len(data), digest),
        WriteContentRequest(),
        WriteContentRequest(),
        WriteContentRequest(WRITE_WRITE, data=first),
        WriteContentRequest(WRITE_WRITE, offset=len(first), data=rest),
        WriteContentRequest(WRITE_COMMIT, total=len(data), expected=digest, offset=len(data)),
    ]
    replies, status = _call(service, "Write", [r.encode() for r in requests], f"local:{tmp_path}")
    assert status == (0, "")
    decoded = [WriteContentResponse.decode(m) for m in replies]
    assert [(r.action, r.offset, r.total) for r in decoded] == [
        (WRITE_STAT, 0, len(data)),
        (WRITE_STAT, 0, len(data)),
        (WRITE_STAT, 0, len(data)),
        (WRITE_WRITE, len(first), len(data)),
        (WRITE_WRITE, len(data), len(data)),
        (WRITE_COMMIT, len(data), len(data)),
    ]
    assert decoded[0].digest == _digest(b"")
    assert decoded[3].digest == _digest(first)
    assert decoded[-1].digest == digest
    assert (tmp_path / "blobs" / "sha256" / digest[7:]).read_bytes() == data
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("commit", "message"),
    [
        (WriteContentRequest(WRITE_COMMIT, expected=_digest(b"other")), "unexpected commit digest"),
        (WriteContentRequest(WRITE_COMMIT, total=99), "unexpected commit size 5, expected 99"),
    ],
)
def test_a_write_that_does_not_match_leaves_nothing(
    tmp_path: Path, commit: WriteContentRequest, message: str
) -> None:
    service = ContentService({"local:c": str(tmp_path)})
    requests = [
        WriteContentRequest(WRITE_STAT, "ref"),
        WriteContentRequest(WRITE_WRITE, data=b"hello"),
    ]
    _replies, status = _call(service, "Write", [r.encode() for r in [*requests, commit]], "local:c")
    assert status[0] == Status.FAILED_PRECONDITION
    assert message in status[1]
    assert os.listdir(tmp_path / "blobs" / "sha256") == []


def test_a_write_ended_early_leaves_nothing(tmp_path: Path) -> None:
    service = ContentService({"local:c": str(tmp_path)})
    requests = [WriteContentRequest(WRITE_STAT, "ref"), WriteContentRequest(WRITE_WRITE, data=b"x")]
    _replies, status = _call(service, "Write", [r.encode() for r in requests], "local:c")
    assert status == (0, "")
    assert os.listdir(tmp_path / "blobs" / "sha256") == []


def _store_with(tmp_path: Path, data: bytes) -> str:
    digest = _digest(data)
    (tmp_path / "blobs" / "sha256").mkdir(parents=True)
    (tmp_path / "blobs" / "sha256" / digest[7:]).write_bytes(data)
    return digest


def test_writing_a_blob_the_store_has_is_already_exists(tmp_path: Path) -> None:
    digest = _store_with(tmp_path, b"cached")
    service = ContentService({"local:c": str(tmp_path)})
    request = WriteContentRequest(WRITE_STAT, f"layer-{digest}", 6, digest)
    replies, status = _call(service, "Write", [request.encode()], "local:c")
    assert replies == []
    assert status == (Status.ALREADY_EXISTS, f"content {digest}: already exists")


def test_info_and_read_serve_a_blob(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    digest = _store_with(tmp_path, data)
    service = ContentService({"local:c": str(tmp_path)})
    replies, status = _call(service, "Info", [InfoRequest(digest).encode()], "local:c")
    assert status == (0, "")
    (reply,) = replies
    info = InfoResponse.decode(reply).info
    assert (info.digest, info.size) == (digest, len(data))
    replies, status = _call(service, "Read", [ReadContentRequest(digest).encode()], "local:c")
    chunks = [ReadContentResponse.decode(m) for m in replies]
    assert status == (0, "")
    assert b"".join(c.data for c in chunks) == data
    assert [c.offset for c in chunks] == [0, 1 << 20, 2 << 20, 3 << 20]
    replies, _ = _call(service, "Read", [ReadContentRequest(digest, 7, 10).encode()], "local:c")
    assert [ReadContentResponse.decode(m) for m in replies] == [ReadContentResponse(7, data[7:17])]


@pytest.mark.parametrize(
    ("method", "message", "store", "status"),
    [
        ("Info", InfoRequest(_digest(b"none")).encode(), "local:c", Status.NOT_FOUND),
        ("Read", ReadContentRequest(_digest(b"none")).encode(), "local:c", Status.NOT_FOUND),
        ("Info", InfoRequest(_digest(b"none")).encode(), "local:other", Status.NOT_FOUND),
        ("Info", InfoRequest("sha256:../../etc").encode(), "local:c", Status.INVALID_ARGUMENT),
        ("Update", b"", "local:c", Status.UNIMPLEMENTED),
        ("Abort", b"", "local:c", Status.NOT_FOUND),
    ],
)
def test_what_the_store_cannot_answer(
    tmp_path: Path, method: str, message: bytes, store: str, status: int
) -> None:
    service = ContentService({"local:c": str(tmp_path)})
    assert set(service.handlers()) == set(CONTENT_METHODS)
    replies, (code, _text) = _call(service, method, [message], store)
    assert (replies, code) == ([], status)


# -- index.json and the session ---------------------------------------------------------------


def test_the_index_names_the_exported_manifest_and_keeps_others(tmp_path: Path) -> None:
    one, two = _digest(b"1"), _digest(b"2")
    descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json", "size": 1}
    assert read_cache_digest(str(tmp_path)) is None
    write_cache_index(str(tmp_path), {**descriptor, "digest": one})
    write_cache_index(str(tmp_path), {**descriptor, "digest": one}, "v1")
    write_cache_index(str(tmp_path), {**descriptor, "digest": two})
    assert read_cache_digest(str(tmp_path)) == two
    assert read_cache_digest(str(tmp_path), "v1") == one
    assert read_cache_digest(str(tmp_path), "v2") is None
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [
        "v1",
        "latest",
    ]
    assert [name for name in os.listdir(tmp_path) if name != "index.json"] == []


def test_an_import_without_an_index_is_dropped_and_one_with_it_gets_its_digest(
    tmp_path: Path,
) -> None:
    options = BuildOptions(
        path=HERE, version="2", cache_from=[f"type=local,src={tmp_path}"], cache_to="type=inline"
    )
    assert cache_digests(options) == options
    request = solve_request(options, ref="r", session_id="s", engine="containerd").to_json()
    assert "Imports" not in request["Cache"]
    assert "cache-imports" not in request["FrontendAttrs"]
    digest = _digest(b"manifest")
    write_cache_index(str(tmp_path), {"digest": digest, "size": 8})
    resolved = cache_digests(options)
    assert resolved.cache_from == (LocalCache(src=str(tmp_path), digest=digest),)
    request = solve_request(resolved, ref="r", session_id="s", engine="containerd").to_json()
    assert request["Cache"]["Imports"] == [
        {"Type": "local", "Attrs": {"digest": digest, "src": str(tmp_path)}}
    ]


def test_cache_indexes_are_written_from_the_exporter_response(tmp_path: Path) -> None:
    options = BuildOptions(path=HERE, version="2", cache_to=f"type=local,dest={tmp_path}")
    digest = _digest(b"m")
    manifest = json.dumps({"mediaType": "x", "digest": digest, "size": 1})
    write_cache_indexes(options, {"cache.manifest": manifest})
    assert read_cache_digest(str(tmp_path)) == digest
    with pytest.raises(ExportError, match=r"cache\.manifest"):
        write_cache_indexes(options, {})


def test_a_local_cache_session_announces_the_content_store_as_buildx_does() -> None:
    options = BuildOptions(path=HERE, version="2", cache_to="type=local,dest=c")
    methods = session_methods(options, control_api=True)
    assert tuple(m for m in methods if m.startswith(SERVICE)) == CONTENT_METHODS
    inline = BuildOptions(path=HERE, version="2", cache_to="type=inline")
    assert not set(CONTENT_METHODS) & set(session_methods(inline, control_api=True))


def test_an_oci_layout_output_is_the_export_store_and_gets_index_and_layout(
    tmp_path: Path,
) -> None:
    options = BuildOptions(
        path=HERE, version="2", outputs=[f"type=oci,dest={tmp_path},tar=false"], tag="a:1"
    )
    assert content_stores(options) == {"export": str(tmp_path)}
    assert set(CONTENT_METHODS) <= set(session_methods(options, control_api=True))
    descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json", "size": 855}
    descriptor["digest"] = _digest(b"index")
    response = {
        "containerimage.descriptor": base64.b64encode(json.dumps(descriptor).encode()).decode(),
        "image.name": "docker.io/library/a:1",
    }
    finish_content_stores(options, response)
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert read_cache_digest(str(tmp_path), "docker.io/library/a:1") == descriptor["digest"]
    with pytest.raises(ExportError, match="containerimage"):
        write_layout_index(str(tmp_path), {})
