"""PruneOptions serialize per API version; PruneResult reads the engine's report."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from buildsdk.build import query_string
from buildsdk.errors import UnsupportedOption
from buildsdk.prune import PruneFilters, PruneOptions, PruneResult


def test_no_options_send_nothing() -> None:
    assert PruneOptions().to_query("1.31") == []
    assert PruneOptions().to_query("1.51") == []


def test_prune_needs_api_1_31() -> None:
    with pytest.raises(UnsupportedOption) as info:
        PruneOptions().to_query("1.30")
    assert str(info.value) == (
        "build cache pruning needs API version 1.31 or newer; the engine speaks 1.30"
    )
    assert (info.value.option, info.value.required, info.value.given) == ("prune", "1.31", "1.30")


def test_all_filters_and_sizes() -> None:
    opts = PruneOptions(
        all=True,
        filters=PruneFilters(until="24h", type="exec.cachemount", inuse=True, private=True),
        keep_storage="10g",
    )
    assert opts.to_query("1.47") == [
        ("all", "1"),
        (
            "filters",
            '{"inuse":{},"private":{},"type":{"exec.cachemount":true},"until":{"24h":true}}',
        ),
        ("keep-storage", "10737418240"),
    ]


def test_keep_storage_is_reserved_space_from_1_48() -> None:
    for opts in (PruneOptions(keep_storage="1g"), PruneOptions(reserved_space="1g")):
        assert opts.to_query("1.47") == [("keep-storage", "1073741824")]
        assert opts.to_query("1.48") == [("reserved-space", "1073741824")]


def test_keep_storage_and_reserved_space_are_one_knob() -> None:
    assert PruneOptions(keep_storage=5, reserved_space=5).to_query("1.51") == [
        ("reserved-space", "5")
    ]
    with pytest.raises(ValidationError) as info:
        PruneOptions(keep_storage=5, reserved_space=6)
    assert info.value.errors()[0]["msg"] == (
        "Value error, keep_storage and reserved_space are the same setting (renamed in API "
        "1.48); give only one of them"
    )


def test_new_space_options_from_1_48() -> None:
    opts = PruneOptions(max_used_space="20g", min_free_space="5g")
    assert opts.to_query("1.48") == [
        ("max-used-space", "21474836480"),
        ("min-free-space", "5368709120"),
    ]
    with pytest.raises(UnsupportedOption) as info:
        opts.to_query("1.47")
    assert str(info.value) == (
        "prune option max_used_space (query parameter 'max-used-space') needs API version 1.48 "
        "or newer; the engine speaks 1.47"
    )
    assert (info.value.required, info.value.given) == ("1.48", "1.47")


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"all": True}, "all"),
        ({"filters": {"until": "1h"}}, "filters"),
        ({"keep_storage": 1}, "keep_storage"),
        ({"reserved_space": 1}, "keep_storage"),  # sent as keep-storage before 1.48
    ],
)
def test_parameters_need_api_1_39(kwargs: dict[str, Any], option: str) -> None:
    opts = PruneOptions(**kwargs)
    with pytest.raises(UnsupportedOption) as info:
        opts.to_query("1.38")
    assert (info.value.option, info.value.required) == (option, "1.39")
    assert opts.to_query("1.39")


def test_zero_sizes_are_the_default_and_not_sent() -> None:
    assert PruneOptions(keep_storage=0, max_used_space="0").to_query("1.48") == []


def test_boolean_filters_are_bare_keys() -> None:
    filters = PruneFilters(inuse=True, shared=True)
    assert filters.to_engine() == {"inuse": {}, "shared": {}}
    assert PruneOptions(filters=filters).to_query("1.44") == [
        ("filters", '{"inuse":{},"shared":{}}')
    ]


def test_empty_filters_are_not_sent() -> None:
    assert PruneOptions(filters=PruneFilters()).to_query("1.44") == []


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=24), "24h0m0s"),
        (timedelta(minutes=90), "1h30m0s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(minutes=2, microseconds=10), "2m0.00001s"),
        ("10m", "10m"),
        ("1h30m", "1h30m"),
        ("1.5h", "1.5h"),
        ("1700000000", "1700000000"),
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02", "2024-01-02"),
    ],
)
def test_until_forms(value: str | timedelta, text: str) -> None:
    assert PruneFilters(until=value).until == text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"until": "yesterday"},
            "until must be a Go duration such as '24h' or '1h30m', a Unix timestamp, or a "
            "date/RFC 3339 time, got 'yesterday'",
        ),
        ({"until": "-1h"}, "until must be a Go duration"),
        ({"until": timedelta(0)}, "until must be a positive duration, got 0:00:00"),
        (
            {"id": "a,b"},
            "filter id must be a non-empty value without ',' or '\"' "
            "(the engine cannot quote them)",
        ),
        ({"description": 'say "hi"'}, "filter description must be a non-empty value"),
        ({"type": ""}, "filter type must be a non-empty value"),
        ({"inuse": "yes"}, "Input should be a valid boolean"),
        ({"label": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_filter_rules(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        PruneFilters(**kwargs)
    assert message in info.value.errors()[0]["msg"]


def test_filters_from_a_mapping() -> None:
    opts = PruneOptions(filters={"until": "1h", "shared": True})
    assert opts.filters == PruneFilters(until="1h", shared=True)
    with pytest.raises(ValidationError, match="filters: until: Value error, until must be"):
        PruneOptions(filters={"until": "soon"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_storage": -1}, "keep_storage: size must not be negative, got -1"),
        ({"max_used_space": "lots"}, "max_used_space: invalid size 'lots'"),
        ({"min_free_space": True}, "Input should be a valid integer"),
        ({"all": 1}, "Input should be a valid boolean"),
    ],
)
def test_option_rules(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        PruneOptions(**kwargs)
    assert message in info.value.errors()[0]["msg"]


def test_result_parses_the_engine_report() -> None:
    result = PruneResult.from_json({"CachesDeleted": ["a", "b"], "SpaceReclaimed": 1024})
    assert (result.caches_deleted, result.space_reclaimed) == (["a", "b"], 1024)


def test_result_with_nothing_deleted() -> None:
    result = PruneResult.from_json(json.loads('{"CachesDeleted":null,"SpaceReclaimed":0}'))
    assert (result.caches_deleted, result.space_reclaimed) == ([], 0)
    assert PruneResult.from_json({}) == PruneResult()


def test_result_refuses_garbage() -> None:
    with pytest.raises(ValidationError):
        PruneResult.from_json({"CachesDeleted": "a", "SpaceReclaimed": 1})
    with pytest.raises(ValidationError):
        PruneResult.from_json({"CachesDeleted": [], "SpaceReclaimed": -1})


_VALUES = st.from_regex(r"\A[a-z0-9.:_-]{1,12}\Z")
_FILTERS = st.builds(
    PruneFilters,
    until=st.none() | st.sampled_from(["1h", "24h", "10m30s", "1700000000"]),
    id=st.none() | _VALUES,
    parent=st.none() | _VALUES,
    type=st.none() | _VALUES,
    description=st.none() | _VALUES,
    inuse=st.booleans(),
    shared=st.booleans(),
    private=st.booleans(),
)


@given(
    all_=st.booleans(),
    filters=st.none() | _FILTERS,
    keep=st.none() | st.integers(0, 2**50),
    max_used=st.none() | st.integers(0, 2**50),
    min_free=st.none() | st.integers(0, 2**50),
    minor=st.integers(31, 56),
)
def test_prune_query_reads_back(
    all_: bool,
    filters: PruneFilters | None,
    keep: int | None,
    max_used: int | None,
    min_free: int | None,
    minor: int,
) -> None:
    opts = PruneOptions(
        all=all_,
        filters=filters,
        reserved_space=keep,
        max_used_space=max_used,
        min_free_space=min_free,
    )
    # Parameters in the order the query is built; the first one too new is reported.
    wanted = [(all_, 39), (filters and filters.to_engine(), 39), (keep, 39)]
    wanted += [(max_used, 48), (min_free, 48)]
    too_new = [required for value, required in wanted if value and minor < required]
    if too_new:
        with pytest.raises(UnsupportedOption, match=f"needs API version 1.{too_new[0]} "):
            opts.to_query(f"1.{minor}")
        return
    pairs = opts.to_query(f"1.{minor}")
    read = dict(parse_qsl(query_string(pairs), keep_blank_values=True))
    assert (read.get("all") == "1") is all_
    keep_key = "reserved-space" if minor >= 48 else "keep-storage"
    assert int(read.get(keep_key, "0")) == (keep or 0)
    assert int(read.get("max-used-space", "0")) == (max_used or 0)
    assert int(read.get("min-free-space", "0")) == (min_free or 0)
    engine_filters = json.loads(read.get("filters", "{}"))
    rebuilt = PruneFilters.model_validate(
        {key: next(iter(values)) if values else True for key, values in engine_filters.items()}
    )
    assert rebuilt == (filters or PruneFilters())


_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(
    junk=st.dictionaries(st.sampled_from(sorted(PruneOptions.model_fields)), _JUNK, max_size=3),
    minor=st.integers(24, 56),
)
def test_no_input_raises_anything_but_validation_or_unsupported(
    junk: dict[str, Any], minor: int
) -> None:
    with contextlib.suppress(ValidationError, UnsupportedOption):
        PruneOptions(**junk).to_query(f"1.{minor}")


@given(st.dictionaries(st.text(max_size=16), _JUNK, max_size=3))
def test_result_parsing_raises_only_validation_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(ValidationError):
        PruneResult.from_json(data)
