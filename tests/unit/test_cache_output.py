"""`buildsdk du` / `buildsdk cache-prune` text against what buildx 0.13.1 printed.

The expected strings are `docker buildx du` and `docker buildx du --verbose` output captured
on Docker 26.1.5 (containerd store) for a two-step COPY build, tabs and all; the records are
the ones that engine gave, with `now` three seconds after their last use (buildx printed
"3 seconds ago"). tests/integration/test_cache_vs_buildx.py compares against a live buildx.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildsdk import CacheRecord
from buildsdk._cache_output import (
    disk_usage_text,
    go_time,
    human_duration,
    prune_text,
    tabwrite,
)
from tests import examples

_USED = datetime(2026, 12, 7, 10, 7, 12, 100000, tzinfo=timezone.utc)
_NOW = _USED + timedelta(seconds=3)


def _record(record_id: str, created: str, size: int, **fields: object) -> CacheRecord:
    return CacheRecord(
        id=record_id,
        created_at=datetime.fromisoformat(created),
        last_used_at=_USED,
        size=size,
        usage_count=1,
        **fields,  # type: ignore[arg-type]
    )


RECORDS = [
    _record(
        "o40pvlcc31t3j1335kwse3nv4",
        "2026-12-07T10:07:11.789817+00:00",
        1_069_056,
        shared=True,
        record_type="regular",
    ),
    _record(
        "vp952n0blm6lzwu1lxh1wiups",
        "2026-12-07T10:07:11.799598+00:00",
        8192,
        mutable=True,
        description="local source for context",
        record_type="source.local",
    ),
    _record(
        "n47vfiehyxlss6wpxjbcxjg5x",
        "2026-12-07T10:07:12.070211+00:00",
        8192,
        parents=["o40pvlcc31t3j1335kwse3nv4"],
        shared=True,
        description="[2/3] COPY a.txt /a.txt",
        record_type="regular",
    ),
]

DU_TABLE = (
    "ID\t\t\t\t\t\tRECLAIMABLE\tSIZE\t\tLAST ACCESSED\n"
    "o40pvlcc31t3j1335kwse3nv4               \ttrue \t\t1.069MB*  \t3 seconds ago\n"
    "vp952n0blm6lzwu1lxh1wiups*              \ttrue \t\t8.192kB   \t3 seconds ago\n"
    "n47vfiehyxlss6wpxjbcxjg5x               \ttrue \t\t8.192kB*  \t3 seconds ago\n"
    "Shared:\t\t1.077MB\n"
    "Private:\t8.192kB\n"
    "Reclaimable:\t1.085MB\n"
    "Total:\t\t1.085MB\n"
)

DU_VERBOSE_FIRST = (
    "ID:\t\to40pvlcc31t3j1335kwse3nv4\n"
    "Created at:\t2026-12-07 10:07:11.789817 +0000 UTC\n"
    "Mutable:\tfalse\n"
    "Reclaimable:\ttrue\n"
    "Shared:\t\ttrue\n"
    "Size:\t\t1.069MB\n"
    "Usage count:\t1\n"
    "Last used:\t3 seconds ago\n"
    "Type:\t\tregular\n"
    "\n"
)


def test_du_table_as_buildx_prints_it() -> None:
    assert disk_usage_text(RECORDS, now=_NOW) == DU_TABLE


def test_du_verbose_as_buildx_prints_it() -> None:
    text = disk_usage_text(RECORDS, verbose=True, now=_NOW)
    assert text.startswith(DU_VERBOSE_FIRST)
    assert "ID:\t\tn47vfiehyxlss6wpxjbcxjg5x\nParent:\t\to40pvlcc31t3j1335kwse3nv4\n" in text
    assert "Description:\t[2/3] COPY a.txt /a.txt\n" in text
    assert text.endswith(
        "\nShared:\t\t1.077MB\nPrivate:\t8.192kB\nReclaimable:\t1.085MB\nTotal:\t\t1.085MB\n"
    )


def test_du_with_a_filter_has_no_summary_and_an_empty_cache_no_table() -> None:
    assert disk_usage_text(RECORDS[:1], filtered=True, now=_NOW) == (
        "ID\t\t\t\t\t\tRECLAIMABLE\tSIZE\t\tLAST ACCESSED\n"
        "o40pvlcc31t3j1335kwse3nv4               \ttrue \t\t1.069MB*  \t3 seconds ago\n"
    )
    assert disk_usage_text([], now=_NOW) == "Reclaimable:\t0B\nTotal:\t\t0B\n"
    assert disk_usage_text([], filtered=True) == ""


def test_in_use_records_are_not_reclaimable() -> None:
    busy = RECORDS[1].model_copy(update={"in_use": True})
    text = disk_usage_text([busy], now=_NOW)
    assert "\tfalse\t\t8.192kB   \t" in text
    assert "Reclaimable:\t0B\nTotal:\t\t8.192kB\n" in text


def test_prune_aligns_only_the_header_with_the_first_row() -> None:
    # buildx flushes its tabwriter after every row, so later rows have their own widths.
    pruned = [r.model_copy(update={"shared": False, "record_type": ""}) for r in RECORDS[:2]]
    assert prune_text(pruned, now=_NOW) == (
        "ID\t\t\t\t\t\tRECLAIMABLE\tSIZE\t\tLAST ACCESSED\n"
        "o40pvlcc31t3j1335kwse3nv4               \ttrue \t\t1.069MB   \t3 seconds ago\n"
        "vp952n0blm6lzwu1lxh1wiups*              \ttrue \t8.192kB   \t3 seconds ago\n"
        "Total:\t1.077MB\n"
    )
    assert prune_text([]) == "Total:\t0B\n"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59.9, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (5399, "About an hour"),
        (5400, "2 hours"),
        (47 * 3600, "47 hours"),
        (48 * 3600, "2 days"),
        (14 * 86400, "2 weeks"),
        (60 * 86400, "2 months"),
        (730 * 86400, "2 years"),
    ],
)
def test_human_duration_as_go_units(seconds: float, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


def test_go_time() -> None:
    assert go_time(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=timezone.utc)) == (
        "2026-01-02 03:04:05.12 +0000 UTC"
    )
    assert go_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == (
        "2026-01-02 03:04:05 +0000 UTC"
    )
    assert go_time(None) == "0001-01-01 00:00:00 +0000 UTC"


def _expand(line: str) -> str:
    return line.expandtabs(8)


_CELL = st.text("abcdefghij xyz", max_size=20)


@settings(max_examples=examples(300))
@given(st.lists(st.lists(_CELL, min_size=2, max_size=4), min_size=1, max_size=6))
def test_tabwrite_lines_up_every_column_of_a_block(rows: list[list[str]]) -> None:
    # Rows of equal cell count form one block per column: after expanding tabs to 8-column
    # stops, every cell of a column starts at the same position, at least one space after
    # the widest cell before it.
    width = min(len(row) for row in rows)
    rows = [row[:width] for row in rows]
    out = tabwrite("".join("\t".join(row) + "\n" for row in rows))
    lines = out.split("\n")[:-1]
    assert len(lines) == len(rows)
    starts: list[set[int]] = [set() for _ in range(width)]
    for line, row in zip(lines, rows, strict=True):
        assert line.replace("\t", "") == "".join(row)
        expanded = _expand(line)
        position = 0
        for column, cell in enumerate(row):
            starts[column].add(position)
            assert expanded[position : position + len(cell)] == cell
            if column < width - 1:
                widest = max(len(r[column]) for r in rows)
                stop = -(-(widest + 1) // 8) * 8
                position += stop
    assert all(len(s) == 1 for s in starts)
