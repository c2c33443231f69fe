"""Build-cache records as text, the way `docker buildx du` and `docker buildx prune` print them.

Why a module of its own: buildx 0.13 writes its tables through Go's `text/tabwriter` with
tabs as padding (minimum width 1, tab stops every 8 columns, one cell of padding), and it
flushes the writer at chosen points, which decides which lines share column widths: the
`du` table is one block, its summary another; `prune` flushes after every row, so only the
header and the first row share widths. `tabwrite` reproduces the writer's layout and the
renderers flush where buildx does. Sizes use the Docker CLI's decimal units
(`progress.human_size`), ages go-units' `HumanDuration`.

One difference is known: `Created at` shows microseconds, since Python's `datetime` keeps no
nanoseconds (buildx prints up to nine digits, trailing zeros trimmed, as Go's `time.String`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Final

from buildsdk.cache import CacheRecord
from buildsdk.progress import human_size

__all__ = ["disk_usage_text", "go_time", "human_duration", "prune_text", "tabwrite"]

_TAB_WIDTH: Final = 8
_PADDING: Final = 1
_MIN_WIDTH: Final = 1


def tabwrite(text: str) -> str:
    """Lay out tab-separated `text` as Go's `tabwriter.NewWriter(w, 1, 8, 1, '\\t', 0)` does
    between two flushes: each column block padded with tabs to a common tab stop."""
    rows = text.split("\n")
    cells = [row.split("\t") for row in rows]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(start: int, end: int) -> None:
        for index in range(start, end):
            line = cells[index]
            for column, cell in enumerate(line):
                out.append(cell)
                if column < len(widths):
                    width = -(-widths[column] // _TAB_WIDTH) * _TAB_WIDTH
                    out.append("\t" * -(-(width - len(cell)) // _TAB_WIDTH))
            if index < len(cells) - 1:
                out.append("\n")

    def layout(start: int, end: int) -> None:
        column = len(widths)
        this = start
        while this < end:
            if column >= len(cells[this]) - 1:
                this += 1
                continue
            # A cell in this column starts a block: lines before it are done.
            write_lines(start, this)
            start = this
            width = _MIN_WIDTH
            while this < end and column < len(cells[this]) - 1:
                width = max(width, len(cells[this][column]) + _PADDING)
                this += 1
            widths.append(width)
            layout(start, this)
            widths.pop()
            start = this
        write_lines(start, end)

    layout(0, len(cells))
    return "".join(out)


def human_duration(age: timedelta) -> str:
    """Say how long `age` is as go-units' `HumanDuration` does: `5 seconds`, `About an hour`."""
    seconds = int(age.total_seconds())
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = int(age.total_seconds() / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(age.total_seconds() / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(age.total_seconds() / 3600) // 24 // 365} years"


def go_time(value: datetime | None) -> str:
    """Write a UTC time as Go's `time.Time.String` does (`2026-12-07 10:04:05.12 +0000 UTC`);
    no time is Go's zero time."""
    if value is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    value = value.astimezone(timezone.utc)
    fraction = f".{value.microsecond:06d}".rstrip("0") if value.microsecond else ""
    return value.strftime("%Y-%m-%d %H:%M:%S") + fraction + " +0000 UTC"


def _ago(value: datetime | None, now: datetime) -> str:
    return "" if value is None else human_duration(now - value) + " ago"


def _header() -> str:
    return "ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\n"


def _row(record: CacheRecord, now: datetime) -> str:
    record_id = record.id + ("*" if record.mutable else "")
    size = human_size(record.size) + ("*" if record.shared else "")
    reclaimable = "true" if record.reclaimable else "false"
    return f"{record_id:<40}\t{reclaimable:<5}\t{size:<10}\t{_ago(record.last_used_at, now)}\n"


def _verbose(records: Iterable[CacheRecord], now: datetime) -> str:
    lines: list[str] = []
    for record in records:
        pairs = [("ID", record.id)]
        if record.parents:
            pairs.append(("Parent", ",".join(record.parents)))
        pairs += [
            ("Created at", go_time(record.created_at)),
            ("Mutable", _go_bool(record.mutable)),
            ("Reclaimable", _go_bool(record.reclaimable)),
            ("Shared", _go_bool(record.shared)),
            ("Size", human_size(record.size)),
        ]
        if record.description:
            pairs.append(("Description", record.description))
        pairs.append(("Usage count", str(record.usage_count)))
        if record.last_used_at is not None:
            pairs.append(("Last used", _ago(record.last_used_at, now)))
        if record.record_type:
            pairs.append(("Type", record.record_type))
        lines += [f"{key}:\t{value}\n" for key, value in pairs]
        lines.append("\n")
    return tabwrite("".join(lines))


def _go_bool(value: bool) -> str:
    return "true" if value else "false"


def disk_usage_text(
    records: Sequence[CacheRecord],
    *,
    verbose: bool = False,
    filtered: bool = False,
    now: datetime | None = None,
) -> str:
    """What `docker buildx du` prints for `records` (in the order given): the table, or
    `--verbose`'s blocks, then, unless a filter was given, the `Reclaimable:`/`Total:` lines
    (and `Shared:`/`Private:` when some size is shared)."""
    now = now or datetime.now(timezone.utc)
    out = ""
    if records:
        if verbose:
            out += _verbose(records, now)
        else:
            out += tabwrite(_header() + "".join(_row(record, now) for record in records))
    if not filtered:
        total = sum(record.size for record in records if record.size > 0)
        reclaimable = sum(
            record.size for record in records if record.size > 0 and record.reclaimable
        )
        shared = sum(record.size for record in records if record.shared)
        summary = ""
        if shared > 0:
            summary += f"Shared:\t{human_size(shared)}\n"
            summary += f"Private:\t{human_size(total - shared)}\n"
        summary += f"Reclaimable:\t{human_size(reclaimable)}\nTotal:\t{human_size(total)}\n"
        out += tabwrite(summary)
    return out


def prune_text(
    records: Sequence[CacheRecord], *, verbose: bool = False, now: datetime | None = None
) -> str:
    """What `docker buildx prune -f` prints for the removed `records`: a row (or a verbose
    block) per record as it arrived, then `Total:` with the space reclaimed."""
    now = now or datetime.now(timezone.utc)
    out = ""
    for index, record in enumerate(records):
        if verbose:
            out += _verbose([record], now)
        else:
            # buildx flushes after every row: only the header and the first row align.
            out += tabwrite((_header() if index == 0 else "") + _row(record, now))
    total = sum(record.size for record in records)
    return out + tabwrite(f"Total:\t{human_size(total)}\n")
