"""The project's performance targets, read off the tables of one run: one line each, met or not.

Why a summary: the README shows one table a reader can take in at a glance; the detailed
tables stay below it. Each target names the table and the two rows it compares, so the
summary can never say something the detailed tables do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from _common import Series, Table

__all__ = ["TARGETS", "Target", "summary"]


@dataclass(frozen=True)
class Target:
    """One claim: `row` compared with `versus` in the table whose title starts with `table`.

    `kind` is "time" (ratio of median wall times, met when <= `limit`), "rate" (speed-up,
    met when >= `limit`) or "rss" (peak RSS of `row` in MiB, met when < `limit`).
    """

    label: str
    table: str
    row: str
    versus: str
    kind: str
    limit: float


TARGETS = [
    Target(
        "Context upload, repository tree: buildsdk vs docker build",
        "Context upload: repository-shaped tree",
        "buildsdk (Client script)",
        "docker build (CLI, legacy)",
        "time",
        1.0,
    ),
    Target(
        "Context upload, repository tree: buildsdk vs docker-py",
        "Context upload: repository-shaped tree",
        "buildsdk (Client script)",
        "docker-py APIClient.build",
        "time",
        0.5,
    ),
    Target(
        "Context upload, tiny files: buildsdk vs docker build",
        "Context upload: tiny files",
        "buildsdk (Client script)",
        "docker build (CLI, legacy)",
        "time",
        1.0,
    ),
    Target(
        "Context upload, huge files: buildsdk vs docker build",
        "Context upload: huge files",
        "buildsdk (Client script)",
        "docker build (CLI, legacy)",
        "time",
        1.0,
    ),
    Target(
        "Context upload, huge files: buildsdk peak RSS",
        "Context upload: huge files",
        "buildsdk (Client script)",
        "",
        "rss",
        64,
    ),
    Target(
        "Events, classic stream: buildsdk (sync) vs docker-py json_stream",
        "Event stream: classic, one message per piece",
        "buildsdk EventDecoder (sync)",
        "docker-py json_stream",
        "rate",
        3.0,
    ),
    Target(
        "Events, classic stream: buildsdk (async) vs docker-py json_stream",
        "Event stream: classic, one message per piece",
        "buildsdk EventDecoder (async generator)",
        "docker-py json_stream",
        "rate",
        3.0,
    ),
    Target(
        "Events, BuildKit stream: buildsdk (sync) vs docker-py json_stream",
        "Event stream: BuildKit, one message per piece",
        "buildsdk EventDecoder (sync)",
        "docker-py json_stream",
        "rate",
        3.0,
    ),
    Target(
        "Start-up: import buildsdk vs import docker",
        "Start-up: import, whole process",
        "import buildsdk",
        "import docker",
        "time",
        1.0,
    ),
    Target(
        "Start-up: from buildsdk import Client, BuildOptions vs import docker",
        "Start-up: import, whole process",
        "from buildsdk import Client, BuildOptions",
        "import docker",
        "time",
        1.0,
    ),
    Target(
        "Start-up: import and make a client, buildsdk vs docker-py",
        "Start-up: import, whole process",
        "import and make a buildsdk Client",
        "import and make a docker-py APIClient",
        "time",
        1.0,
    ),
    Target(
        "End to end, big context: buildsdk vs docker build",
        "End to end on dockerd 20.10: big context",
        "buildsdk (classic)",
        "docker build (CLI, legacy)",
        "time",
        1.05,
    ),
    Target(
        "End to end, 100 chatty steps: buildsdk vs docker build",
        "End to end on dockerd 20.10: 100 chatty",
        "buildsdk (classic)",
        "docker build (CLI, legacy)",
        "time",
        1.05,
    ),
    Target(
        "Concurrency, 8 builds: one AsyncClient vs docker-py threads",
        "Concurrency: 8 builds",
        "buildsdk: one AsyncClient",
        "docker-py: a thread per build",
        "time",
        1.0,
    ),
    Target(
        "Concurrency, 16 builds: one AsyncClient vs docker-py threads",
        "Concurrency: 16 builds",
        "buildsdk: one AsyncClient",
        "docker-py: a thread per build",
        "time",
        1.0,
    ),
    Target(
        "Control API, rebuild with one file changed: buildsdk vs docker buildx build",
        "Control API on Docker 26.1: rebuild with one file changed",
        "buildsdk (Client script)",
        "docker buildx build",
        "time",
        1.0,
    ),
    Target(
        "Control API, --output type=local of ~300 MB: buildsdk vs docker buildx build",
        "Control API on Docker 26.1: --output type=local",
        "buildsdk (Client script)",
        "docker buildx build",
        "time",
        1.1,
    ),
    Target(
        "Control API, 8 builds at once: one AsyncClient vs 8 buildx processes",
        "Control API on Docker 26.1: 8 concurrent builds",
        "buildsdk: one AsyncClient",
        "docker buildx build: 8 processes",
        "time",
        1.0,
    ),
]
"""What the project promises about speed and memory, in the order of the README."""


def _find(tables: Sequence[Table], prefix: str, name: str) -> Series | None:
    for table in tables:
        if table.title.startswith(prefix):
            for row in table.rows:
                if row.name == name and row.samples:
                    return row
    return None


def summary(tables: Sequence[Table]) -> str:
    """A markdown table of every target whose rows were measured in this run."""
    lines = [
        "### Targets",
        "",
        "| target | measured (wall) | measured (CPU) | goal | met |",
        "|---|---|---|---|---|",
    ]
    for target in TARGETS:
        row = _find(tables, target.table, target.row)
        if row is None:
            continue
        if target.kind == "rss":
            mib = row.peak_rss / (1 << 20)
            cells = [f"{mib:.0f} MiB", "", f"< {target.limit:.0f} MiB", _yes(mib < target.limit)]
        else:
            other = _find(tables, target.table, target.versus)
            if other is None:
                continue
            if target.kind == "rate":
                wall = other.median / row.median
                cpu = other.cpu / row.cpu if row.cpu and other.cpu else 0.0
                goal = f">= {target.limit:g}x faster"
                met = wall >= target.limit
            else:
                wall = row.median / other.median
                cpu = row.cpu / other.cpu if row.cpu and other.cpu else 0.0
                goal = f"<= {target.limit:g}x the time"
                met = wall <= target.limit
            cells = [f"{wall:.2f}x", f"{cpu:.2f}x" if cpu else "-", goal, _yes(met)]
        lines.append("| " + " | ".join([target.label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"
