"""The Control API messages of buildsdk.buildkit.solve against the official `protobuf` package.

The protobuf classes come from descriptors written from BuildKit's .proto files
(tests/control_protos.py). For random messages of every kind, buildsdk's bytes equal
protobuf's deterministic serialization (fields in number order, map entries sorted by key),
its JSON equals `MessageToDict(preserving_proto_field_name=True)`, and its decoder reads
protobuf's bytes back to the same message. Recorded answers of the engine (ListWorkers,
DiskUsage, Prune) decode to what the recording shows.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from buildsdk._protobuf import ProtobufError, field_bytes, field_string, field_varint
from buildsdk.buildkit.solve import (
    BuildkitVersion,
    CacheOptions,
    CacheOptionsEntry,
    DiskUsageRequest,
    DiskUsageResponse,
    Exporter,
    GCPolicy,
    ListWorkersRequest,
    ListWorkersResponse,
    Platform,
    PruneRequest,
    SolveRequest,
    SolveResponse,
    StatusRequest,
    UsageRecord,
    WorkerRecord,
    image_store,
)
from tests import VECTORS_DIR, examples
from tests.control_protos import control_classes

PB = control_classes()
CASES = {
    case["name"]: case
    for case in json.loads((VECTORS_DIR / "buildx_solve.json").read_text())["cases"]
}

_TEXT = st.text(st.characters(codec="utf-8"), max_size=8)


def _prefix_free(mapping: dict[str, str]) -> bool:
    return not any(a != b and b.startswith(a) for a in mapping for b in mapping)


# upb orders map keys differently from Go when one key is a prefix of another (see
# test_map_entries_are_sorted_by_key_as_go_sorts_them), so the byte comparison uses maps
# without such pairs; the JSON and decoding tests do not depend on the order.
_MAP = st.dictionaries(_TEXT, _TEXT, max_size=4).filter(_prefix_free)
_STRINGS = st.lists(_TEXT, max_size=3).map(tuple)
_INT64 = st.integers(-(2**63), 2**63 - 1)
_TIME = st.datetimes(
    min_value=datetime(1, 1, 1, 0, 0, 1),
    max_value=datetime(9999, 12, 31),
    timezones=st.just(timezone.utc),
)
_ENTRY = st.builds(CacheOptionsEntry, type=_TEXT, attrs=_MAP)
_PLATFORM = st.builds(
    Platform, architecture=_TEXT, os=_TEXT, variant=_TEXT, os_version=_TEXT, os_features=_STRINGS
)
_RECORD = st.builds(
    UsageRecord,
    id=_TEXT,
    mutable=st.booleans(),
    in_use=st.booleans(),
    size=_INT64,
    parent=_TEXT,
    created_at=st.none() | _TIME,
    last_used_at=st.none() | _TIME,
    usage_count=_INT64,
    description=_TEXT,
    record_type=_TEXT,
    shared=st.booleans(),
    parents=_STRINGS,
)
_WORKER = st.builds(
    WorkerRecord,
    id=_TEXT,
    labels=_MAP,
    platforms=st.lists(_PLATFORM, max_size=3).map(tuple),
    gc_policy=st.lists(
        st.builds(
            GCPolicy, all=st.booleans(), keep_duration=_INT64, keep_bytes=_INT64, filters=_STRINGS
        ),
        max_size=2,
    ).map(tuple),
    buildkit_version=st.none()
    | st.builds(BuildkitVersion, package=_TEXT, version=_TEXT, revision=_TEXT),
)

# Every message with a strategy for it, and its name in control.proto.
MESSAGES: dict[str, Any] = {
    "SolveRequest": st.builds(
        SolveRequest,
        ref=_TEXT,
        exporter_deprecated=_TEXT,
        exporter_attrs_deprecated=_MAP,
        session=_TEXT,
        frontend=_TEXT,
        frontend_attrs=_MAP,
        cache=st.none()
        | st.builds(
            CacheOptions,
            exports=st.lists(_ENTRY, max_size=2).map(tuple),
            imports=st.lists(_ENTRY, max_size=2).map(tuple),
        ),
        entitlements=_STRINGS,
        internal=st.booleans(),
        exporters=st.lists(st.builds(Exporter, type=_TEXT, attrs=_MAP), max_size=3).map(tuple),
    ),
    "SolveResponse": st.builds(SolveResponse, exporter_response=_MAP),
    "StatusRequest": st.builds(StatusRequest, ref=_TEXT),
    "ListWorkersRequest": st.builds(ListWorkersRequest, filter=_STRINGS),
    "ListWorkersResponse": st.builds(
        ListWorkersResponse, record=st.lists(_WORKER, max_size=2).map(tuple)
    ),
    "DiskUsageRequest": st.builds(DiskUsageRequest, filter=_STRINGS),
    "DiskUsageResponse": st.builds(
        DiskUsageResponse, record=st.lists(_RECORD, max_size=3).map(tuple)
    ),
    "UsageRecord": _RECORD,
    "PruneRequest": st.builds(
        PruneRequest,
        filter=_STRINGS,
        all=st.booleans(),
        keep_duration=_INT64,
        keep_bytes=_INT64,
    ),
}
_ANY = st.sampled_from(sorted(MESSAGES)).flatmap(
    lambda name: st.tuples(st.just(name), MESSAGES[name])
)


def _official(name: str, message: Any) -> Any:
    return json_format.ParseDict(message.to_json(), PB[name]())


@settings(max_examples=examples(600))
@given(_ANY)
def test_encoding_is_protobufs_deterministic_encoding(item: tuple[str, Any]) -> None:
    name, message = item
    assert message.encode() == _official(name, message).SerializeToString(deterministic=True)


@settings(max_examples=examples(600))
@given(_ANY)
def test_json_is_protobufs_json_with_proto_field_names(item: tuple[str, Any]) -> None:
    name, message = item
    official = PB[name].FromString(message.encode())
    expected = json_format.MessageToDict(official, preserving_proto_field_name=True)
    assert message.to_json() == expected


@settings(max_examples=examples(600))
@given(_ANY)
def test_decoding_protobufs_bytes_gives_the_message_back(item: tuple[str, Any]) -> None:
    name, message = item
    data = _official(name, message).SerializeToString()
    assert type(message).decode(data) == message


def test_map_entries_are_sorted_by_key_as_go_sorts_them() -> None:
    # Go (sort.Strings in gogo's deterministic marshalling, which BuildKit 0.13 uses) puts
    # "" < "Z" < "a" < "ab" < "é" in plain string order.
    keys = ("", "Z", "a", "ab", "é")
    request = SolveRequest(frontend_attrs={key: str(n) for n, key in enumerate(reversed(keys))})
    assert request.encode() == b"".join(
        field_bytes(7, field_string(1, key) + field_string(2, str(len(keys) - 1 - n)))
        for n, key in enumerate(keys)
    )
    # upb's deterministic mode puts a longer key before its prefix; buildsdk follows Go.
    official = PB["SolveRequest"]()
    official.FrontendAttrs.update({"a": "", "ab": ""})
    upb = official.SerializeToString(deterministic=True)
    assert upb.index(b"\x0a\x02ab") < upb.index(b"\x0a\x01a\x12")
    ours = SolveRequest(frontend_attrs={"a": "", "ab": ""}).encode()
    assert ours.index(b"\x0a\x01a\x12") < ours.index(b"\x0a\x02ab")


def test_an_empty_cache_is_sent_as_an_empty_message() -> None:
    # buildx always sends Cache (gogoproto nullable=false); `{}` in the recordings.
    assert SolveRequest(cache=CacheOptions()).encode() == b"\x42\x00"
    assert SolveRequest(cache=CacheOptions()).to_json() == {"Cache": {}}
    assert SolveRequest().encode() == b""


def test_decoders_skip_unknown_fields_and_refuse_wrong_wire_types() -> None:
    unknown = field_bytes(2, b"\x0a\x00") + field_varint(99, 7) + field_string(1, "r")
    assert SolveRequest.decode(unknown) == SolveRequest(ref="r")
    with pytest.raises(ProtobufError, match=r"SolveRequest\.Ref must be length-delimited"):
        SolveRequest.decode(field_varint(1, 5))
    with pytest.raises(ProtobufError, match=r"UsageRecord\.Size must be a varint"):
        UsageRecord.decode(field_string(4, "x"))
    with pytest.raises(ProtobufError, match="not UTF-8"):
        StatusRequest.decode(field_bytes(1, b"\xff"))
    with pytest.raises(ProtobufError):
        SolveResponse.decode(b"\x0a\x05\x0a")


def test_timestamps_are_datetimes_in_utc() -> None:
    when = datetime(2026, 12, 7, 5, 7, 34, 123456, tzinfo=timezone.utc)
    record = UsageRecord.decode(UsageRecord(created_at=when).encode())
    assert record.created_at == when
    assert record.to_json() == {"CreatedAt": "2026-12-07T05:07:34.123456Z"}
    with pytest.raises(ProtobufError, match="timezone-aware"):
        UsageRecord(created_at=datetime(2026, 1, 1)).encode()


# -- recorded answers ------------------------------------------------------------------------

_TS = "2026-12-07T05:07:34.500Z"


def _calls(case: str, method: str) -> list[dict[str, Any]]:
    return [c for c in CASES[case]["calls"] if c["path"] == f"/moby.buildkit.v1.Control/{method}"]


def _filled(value: Any) -> Any:
    """The recorded JSON with the `<TS>` placeholder replaced by a real timestamp."""
    return json.loads(json.dumps(value).replace('"<TS>"', f'"{_TS}"'))


@pytest.mark.parametrize(
    ("case", "method", "part", "message"),
    [
        ("inspect", "ListWorkers", "requests", ListWorkersRequest),
        ("inspect", "ListWorkers", "responses", ListWorkersResponse),
        ("classic_plain", "ListWorkers", "responses", ListWorkersResponse),
        ("du", "DiskUsage", "requests", DiskUsageRequest),
        ("du", "DiskUsage", "responses", DiskUsageResponse),
        ("prune", "Prune", "requests", PruneRequest),
        ("prune_one", "Prune", "requests", PruneRequest),
        ("prune_one", "Prune", "responses", UsageRecord),
    ],
)
def test_recorded_messages_decode_as_recorded(
    case: str, method: str, part: str, message: Any
) -> None:
    recorded = _filled(_calls(case, method)[0][part][0])
    recorded.pop("n_records", None)  # the recorder's count of records it left out
    data = json_format.ParseDict(recorded, PB[message.__name__]()).SerializeToString()
    decoded = message.decode(data)
    assert decoded.to_json() == recorded
    assert decoded.encode() == json_format.ParseDict(
        recorded, PB[message.__name__]()
    ).SerializeToString(deterministic=True)


def test_recorded_prune_and_du_requests_read_as_buildx_sent_them() -> None:
    du = DiskUsageRequest.decode(
        json_format.ParseDict(
            _calls("du", "DiskUsage")[0]["requests"][0], PB["DiskUsageRequest"]()
        ).SerializeToString()
    )
    assert du == DiskUsageRequest(filter=("",))
    prune = PruneRequest(filter=("",), keep_duration=3_600_000_000_000)
    assert prune.to_json() == _calls("prune", "Prune")[0]["requests"][0]


def test_the_workers_tell_the_image_store() -> None:
    def workers(case: str) -> ListWorkersResponse:
        recorded = _calls(case, "ListWorkers")[0]["responses"][0]
        official = json_format.ParseDict(recorded, PB["ListWorkersResponse"]())
        return ListWorkersResponse.decode(official.SerializeToString())

    containerd = workers("inspect")
    assert image_store(containerd) == "containerd"
    assert image_store(containerd.record) == "containerd"
    assert image_store(workers("classic_plain")) == "classic"
    assert containerd.record[0].platforms[2] == Platform(
        architecture="amd64", os="linux", variant="v2"
    )
    du = _calls("du", "DiskUsage")[0]["responses"][0]["record"][1]
    assert du["Shared"] is True
