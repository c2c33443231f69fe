"""Build-cache options, requests and records (`buildsdk.cache`) against buildx's recordings.

The `du`, `prune` and `prune_one` cases of buildx_solve.json are `docker buildx du` /
`docker buildx prune` runs: their argv, read by `buildsdk du` / `buildsdk cache-prune`, must
give the very request buildx sent, and the recorded answers must read as typed records.
"""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from buildsdk import CachePruneOptions, CachePruneResult, CacheRecord
from buildsdk._control_plan import EngineFacts
from buildsdk.buildkit.solve import DiskUsageResponse, PruneRequest, UsageRecord
from buildsdk.cache import (
    buildkit_filters,
    disk_usage_records,
    disk_usage_request,
    engine_prune_request,
    parse_go_duration,
    prune_endpoint,
    prune_request,
    pruned_record,
)
from buildsdk.cli import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, main, parse_args
from buildsdk.prune import PruneOptions
from buildsdk.versions import ApiVersion
from tests import VECTORS_DIR, examples
from tests.control_protos import control_classes

PB = control_classes()
CASES = {c["name"]: c for c in json.loads((VECTORS_DIR / "buildx_solve.json").read_text())["cases"]}
_TS = "2026-12-07T05:07:34.500Z"


def _call(case: str) -> dict[str, Any]:
    (call,) = [c for c in CASES[case]["calls"] if c["via"] == "/grpc"]
    found: dict[str, Any] = call
    return found


def _options_from_argv(argv: list[str]) -> tuple[str, CachePruneOptions]:
    """Read a recorded `docker buildx du|prune ...` argv with buildsdk's own parser."""
    assert argv[:2] == ["docker", "buildx"]
    command = {"du": "du", "prune": "cache-prune"}[argv[2]]
    args = parse_args([command, *argv[3:]])
    filters = dict(item.split("=", 1) for item in args.filter)
    if command == "du":
        return command, CachePruneOptions(filters=filters)
    fields: dict[str, Any] = {"all": args.all, "filters": filters}
    if args.keep_storage is not None:
        fields["keep_storage"] = args.keep_storage
    assert args.force
    return command, CachePruneOptions(**fields)


@pytest.mark.parametrize("case", ["du", "prune", "prune_one"])
def test_recorded_argv_gives_the_request_buildx_sent(case: str) -> None:
    command, options = _options_from_argv(CASES[case]["argv"])
    if command == "du":
        sent = disk_usage_request(options.filters).to_json()
    else:
        sent = prune_request(options).to_json()
    assert sent == _call(case)["requests"][0]


def test_recorded_requests_are_the_bytes_buildx_sent() -> None:
    recorded = json_format.ParseDict(_call("prune_one")["requests"][0], PB["PruneRequest"]())
    options = CachePruneOptions(all=True, filters={"id": "<ID_1>"})
    assert prune_request(options).encode() == recorded.SerializeToString(deterministic=True)
    du = json_format.ParseDict(_call("du")["requests"][0], PB["DiskUsageRequest"]())
    assert disk_usage_request().encode() == du.SerializeToString(deterministic=True)


def test_reference_table_of_prune_flags() -> None:
    # buildkit-control.md §13: `--all --keep-storage 10mb`.
    request = prune_request(CachePruneOptions(all=True, keep_storage="10mb"))
    assert request.to_json() == {"filter": [""], "all": True, "keepBytes": "10485760"}


def _encoded(message: str, value: dict[str, Any]) -> bytes:
    filled = json.loads(json.dumps(value).replace('"<TS>"', f'"{_TS}"'))
    filled.pop("n_records", None)
    data: bytes = json_format.ParseDict(filled, PB[message]()).SerializeToString()
    return data


def test_recorded_disk_usage_reads_as_typed_records_largest_first() -> None:
    records = disk_usage_records(_encoded("DiskUsageResponse", _call("du")["responses"][0]))
    assert [(r.id, r.size) for r in records] == [
        ("<ID_2>", 8294),
        ("<ID_4>", 8192),
        ("<ID_1>", 8192),
    ]
    copy = records[0]
    assert copy == CacheRecord(
        id="<ID_2>",
        parents=["<ID_3>"],
        created_at=datetime(2026, 12, 7, 5, 7, 34, 500000, tzinfo=timezone.utc),
        last_used_at=datetime(2026, 12, 7, 5, 7, 34, 500000, tzinfo=timezone.utc),
        shared=True,
        size=8294,
        description="[2/3] COPY a.txt /a.txt",
        usage_count=1,
        record_type="regular",
    )
    assert copy.reclaimable
    assert records[1].mutable
    assert records[1].record_type == "source.local"


def test_recorded_prune_stream_reads_as_the_result() -> None:
    record = pruned_record(_encoded("UsageRecord", _call("prune_one")["responses"][0]))
    result = CachePruneResult(records=[record])
    assert result.caches_deleted == ["<ID_1>"]
    assert result.space_reclaimed == 20602
    assert record.parents == ["<ID_2>"]
    assert record.record_type == ""
    assert not record.shared
    dumped = result.model_dump(mode="json")
    assert dumped["space_reclaimed"] == 20602
    assert dumped["caches_deleted"] == ["<ID_1>"]


def test_ties_in_size_are_ordered_by_id_descending() -> None:
    response = DiskUsageResponse(
        record=(UsageRecord(id="a", size=5), UsageRecord(id="c", size=5), UsageRecord(id="b"))
    )
    assert [r.id for r in disk_usage_records(response.encode())] == ["c", "a", "b"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ([""], 0)),
        ({"type": "regular"}, (["type==regular"], 0)),
        ({"id": "abc"}, (["id~=abc"], 0)),
        ({"until": "1h"}, ([""], 3_600_000_000_000)),
        ({"unused-for": "90m"}, ([""], 5_400_000_000_000)),
        (
            {"type": "regular", "until": "1.5s", "id": "x", "inuse": "true"},
            (["type==regular,id~=x,inuse==true"], 1_500_000_000),
        ),
        ({"description": "a=b"}, (["description==a=b"], 0)),
    ],
)
def test_buildx_filter_translation(
    filters: dict[str, str], expected: tuple[list[str], int]
) -> None:
    filter_list, keep = buildkit_filters(filters)
    assert (list(filter_list), keep) == expected


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"until": "1h", "unused-for": "2h"}, 'conflicting filters "until" and "unused-for"'),
        ({"until": "24"}, "'until' filter expects a duration (e.g., '24h')"),
        ({"unused-for": "soon"}, "'unused-for' filter expects a duration"),
        ({"": "x"}, "a filter needs a key"),
    ],
)
def test_bad_filters_are_refused_before_connecting(filters: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        buildkit_filters(filters)
    with pytest.raises(ValidationError, match=re.escape(message)):
        CachePruneOptions(filters=filters)


def test_options_are_strict_and_sizes_are_binary() -> None:
    assert CachePruneOptions(keep_storage="1g").keep_storage == 1 << 30
    assert CachePruneOptions(keep_storage=512).keep_storage == 512
    with pytest.raises(ValidationError):
        CachePruneOptions(keep_storage="-1")
    with pytest.raises(ValidationError):
        CachePruneOptions(keep=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("1h", 3_600_000_000_000),
        ("1h30m", 5_400_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("300ms", 300_000_000),
        ("-1.5h", -5_400_000_000_000),
        ("2h45m10.5s", 9_910_500_000_000),
        ("1µs", 1_000),
        ("1us1ns", 1_001),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    "text", ["", "1", "h", "1d", "1h 2m", ".s", "1.5", "-", "+", "9999999999h"]
)
def test_go_duration_refusals(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


_UNITS = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000, "ms": 1_000_000}


@settings(max_examples=examples(300))
@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(_UNITS))), min_size=1))
def test_go_duration_sums_its_terms(terms: list[tuple[int, str]]) -> None:
    text = "".join(f"{number}{unit}" for number, unit in terms)
    assert parse_go_duration(text) == sum(number * _UNITS[unit] for number, unit in terms)


_KEYS = st.text("abcdefghijklmnopqrstuvwxyz.-", min_size=1, max_size=12).filter(
    lambda key: key not in ("until", "unused-for")
)


@settings(max_examples=examples(300))
@given(st.dictionaries(_KEYS, st.text(st.characters(blacklist_characters=","), max_size=12)))
def test_every_filter_becomes_one_term_in_order(filters: dict[str, str]) -> None:
    (joined,), keep = buildkit_filters(filters)
    assert keep == 0
    terms = joined.split(",") if filters else [""]
    assert len(terms) == max(len(filters), 1)
    for term, (key, value) in zip(terms, filters.items(), strict=False):
        assert term == (f"id~={value}" if key == "id" else f"{key}=={value}")


# -- the command line, before it connects -----------------------------------------------------

_NOWHERE = ["-H", "unix:///nonexistent/buildsdk-test.sock"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["du", "--filter", "type"], "invalid filter 'type': expected KEY=VALUE"),
        (["du", "--filter", "until=24"], "'until' filter expects a duration"),
        (
            ["cache-prune", "-f", "--filter", "type=a", "--filter", "type=b"],
            "filters expect only one value",
        ),
        (["cache-prune", "-f", "--keep-storage", "lots"], "invalid --keep-storage"),
    ],
)
def test_bad_cache_flags_are_usage_errors_before_connecting(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, *_NOWHERE]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_cache_prune_asks_first_and_stops_unless_told_yes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No engine listens at _NOWHERE: an answer other than y must end before connecting.
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    assert main(["cache-prune", "-a", *_NOWHERE]) == EXIT_OK
    assert capsys.readouterr().out == (
        "WARNING! This will remove all build cache. Are you sure you want to continue? [y/N] "
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert main(["cache-prune", *_NOWHERE]) == EXIT_UNREACHABLE
    assert capsys.readouterr().out == (
        "WARNING! This will remove all dangling build cache. Are you sure you want to "
        "continue? [y/N] "
    )


def test_dash_f_is_force_for_cache_prune_and_the_file_for_build() -> None:
    args = parse_args(["cache-prune", "-f", "--all"])
    assert args.force
    assert args.all
    assert parse_args(["build", "-f", "--all", "."]).file == "--all"


# -- `buildsdk prune` over Control/Prune ---------------------------------------------------


def _facts(api: str | None, *, podman: bool = False, session: bool = True) -> EngineFacts:
    version = ApiVersion.parse(api) if api is not None else None
    return EngineFacts(api_version=version, podman=podman, session=session)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (PruneOptions(), {"filter": [""]}),
        (
            PruneOptions(all=True, filters={"id": "abc", "type": "regular"}),
            {"filter": ["id~=abc,type==regular"], "all": True},
        ),
        (
            PruneOptions(filters={"until": "1h30m", "inuse": True, "parent": "p1"}),
            {"filter": ["inuse,parent==p1"], "keepDuration": "5400000000000"},
        ),
        (
            PruneOptions(filters={"until": timedelta(hours=24), "private": True}),
            {"filter": ["private"], "keepDuration": "86400000000000"},
        ),
        (PruneOptions(keep_storage="1mb"), {"filter": [""], "keepBytes": "1048576"}),
        (PruneOptions(reserved_space=5000), {"filter": [""], "keepBytes": "5000"}),
    ],
)
def test_engine_prune_request_translates_as_the_engine_does(
    options: PruneOptions, expected: dict[str, Any]
) -> None:
    request = engine_prune_request(options)
    assert request is not None
    assert request.to_json() == expected


@pytest.mark.parametrize(
    "options",
    [
        PruneOptions(max_used_space="1g"),
        PruneOptions(min_free_space=1),
        PruneOptions(filters={"until": "2026-01-01T00:00:00Z"}),
        PruneOptions(filters={"until": "1700000000"}),
    ],
)
def test_options_without_a_control_prune_field_stay_on_build_prune(options: PruneOptions) -> None:
    assert engine_prune_request(options) is None
    assert prune_endpoint(options, _facts("1.45")) == "build"
    with pytest.raises(ValueError, match="Control/Prune has no"):
        prune_endpoint(options, _facts("1.45"), "grpc")


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (_facts("1.45"), "grpc"),
        (_facts("1.42"), "grpc"),
        (_facts("1.41"), "build"),
        (_facts("1.41", podman=True), "build"),
        (_facts("1.45", podman=True), "build"),
        (_facts("1.45", session=False), "build"),
        (_facts(None), "build"),
        (None, "build"),
    ],
)
def test_auto_prunes_through_control_prune_where_the_engine_offers_it(
    facts: EngineFacts | None, expected: str
) -> None:
    options = PruneOptions(all=True, filters={"type": "regular"}, keep_storage=10)
    assert prune_endpoint(options, facts) == expected
    assert prune_endpoint(options, facts, "build") == "build"
    assert prune_endpoint(options, facts, "grpc") == "grpc"


_FILTER_VALUE = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=',"='), min_size=1
)


@settings(max_examples=200)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": _FILTER_VALUE,
            "parent": _FILTER_VALUE,
            "type": _FILTER_VALUE,
            "description": _FILTER_VALUE,
            "inuse": st.booleans(),
            "shared": st.booleans(),
            "private": st.booleans(),
            "until": st.integers(1, 10**6).map(lambda n: f"{n}s"),
        },
    )
)
def test_every_filter_becomes_one_term_and_until_the_keep_duration(
    filters: dict[str, Any],
) -> None:
    request = engine_prune_request(PruneOptions(filters=filters))
    assert request is not None
    terms = [term for term in request.filter[0].split(",") if term]
    expected = sorted(
        key if value is True else (f"id~={value}" if key == "id" else f"{key}=={value}")
        for key, value in filters.items()
        if key != "until" and value is not False
    )
    assert terms == expected
    until = filters.get("until")
    assert request.keep_duration == (int(until[:-1]) * 10**9 if until else 0)
    # The decoded message is the one encoded: nothing is lost on the wire.
    assert PruneRequest.decode(request.encode()) == request


def test_cli_prune_refuses_a_pinned_grpc_for_space_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["prune", "-H", "unix:///nowhere.sock", "--endpoint", "grpc", "--max-used-space", "1g"]
    assert main(argv) == EXIT_USAGE
    assert "Control/Prune has no max-used-space" in capsys.readouterr().err


def test_cli_prune_takes_endpoint_and_dry_run() -> None:
    args = parse_args(["prune", "--endpoint", "build", "--dry-run"])
    assert (args.endpoint, args.dry_run) == ("build", True)
    assert parse_args(["prune"]).endpoint == "auto"
