"""`benchmarks/run --quick` still runs to the end and prints every table row.

Why: benchmark scripts are run by hand, rarely, so nothing else notices when an API they
use changes. This runs the quick mode (every comparison once, small inputs, one build per
client on the real dockerd) and checks that each table and each row is there with a
measured time. No timing is asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import REPO_ROOT, Engines

pytestmark = [pytest.mark.engine, pytest.mark.dockerd, pytest.mark.slow]

RUN = REPO_ROOT / "benchmarks" / "run"

# Every table the quick run prints (its title starts with the key), and its rows.
EXPECTED: dict[str, list[str]] = {
    "Context upload: repository-shaped tree": [
        "GNU tar into a pipe (floor)",
        "buildsdk (Client script)",
        "buildsdk build (command)",
        "docker build (CLI, legacy)",
        "docker-py APIClient.build",
    ],
    "Context upload: tiny files": [
        "GNU tar into a pipe (floor)",
        "buildsdk (Client script)",
        "buildsdk build (command)",
        "docker build (CLI, legacy)",
        "docker-py APIClient.build",
    ],
    "Context upload: huge files": [
        "GNU tar into a pipe (floor)",
        "buildsdk (Client script)",
        "buildsdk build (command)",
        "docker build (CLI, legacy)",
        "docker-py APIClient.build",
    ],
    "Event stream: classic, one message per piece": [
        "buildsdk EventDecoder (sync)",
        "buildsdk EventDecoder (async generator)",
        "docker-py json_stream",
    ],
    "Event stream: classic, 64 KiB pieces": [
        "buildsdk EventDecoder (sync)",
        "buildsdk EventDecoder (async generator)",
        "docker-py json_stream",
    ],
    "Event stream: BuildKit, one message per piece": [
        "buildsdk EventDecoder (sync)",
        "buildsdk EventDecoder (async generator)",
        "docker-py json_stream",
        "docker-py json_stream + protobuf decode",
    ],
    "Event stream: BuildKit, 64 KiB pieces": [
        "buildsdk EventDecoder (sync)",
        "buildsdk EventDecoder (async generator)",
        "docker-py json_stream",
        "docker-py json_stream + protobuf decode",
    ],
    "Start-up: import, whole process": [
        "python -c pass (floor)",
        "import buildsdk",
        "from buildsdk import Client, BuildOptions",
        "import docker",
        "import and make a buildsdk Client",
        "import and make a docker-py APIClient",
    ],
    "Start-up: build options to request, per call": [
        "buildsdk BuildOptions + build_request",
        "docker-py build()",
    ],
    "Start-up: time to the first request": [
        "buildsdk build",
        "docker build (CLI, legacy)",
        "docker-py script",
    ],
    "Start-up: whole build on the discarding endpoint": [
        "buildsdk build",
        "docker build (CLI, legacy)",
        "docker-py script",
    ],
    "End to end on dockerd 20.10: big context": [
        "buildsdk (classic)",
        "docker build (CLI, legacy)",
        "docker-py APIClient.build",
        "buildsdk (BuildKit)",
    ],
    "Concurrency: 2 builds at once": [
        "buildsdk: one AsyncClient",
        "docker-py: a thread per build",
    ],
}

# Targets the summary judges from the quick run's tables (concurrency with 8 and 16
# builds and the 100-step build run in the full mode only).
QUICK_TARGETS = [
    "Context upload, repository tree: buildsdk vs docker build",
    "Context upload, repository tree: buildsdk vs docker-py",
    "Context upload, tiny files: buildsdk vs docker build",
    "Context upload, huge files: buildsdk vs docker build",
    "Context upload, huge files: buildsdk peak RSS",
    "Events, classic stream: buildsdk (sync) vs docker-py json_stream",
    "Events, classic stream: buildsdk (async) vs docker-py json_stream",
    "Events, BuildKit stream: buildsdk (sync) vs docker-py json_stream",
    "Start-up: import buildsdk vs import docker",
    "Start-up: from buildsdk import Client, BuildOptions vs import docker",
    "Start-up: import and make a client, buildsdk vs docker-py",
    "End to end, big context: buildsdk vs docker build",
]

# Rows that say why they have no number, by design.
SKIPPED = {"docker-py (BuildKit)", "docker buildx build"}

_TIME = re.compile(r"^\d+(\.\d+)? (s|ms|µs)$")


def _tables(text: str) -> dict[str, dict[str, list[str]]]:
    """Title -> row name -> cells, from the markdown the run printed."""
    tables: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("### "):
            current = tables.setdefault(line[4:], {})
        elif line.startswith("| ") and current is not None:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] != "contender":
                current[cells[0]] = cells[1:]
    return tables


def test_tables_parse_rows_and_titles() -> None:
    text = "### T (x)\n\n| contender | median |\n|---|---|\n| a | 1.5 s |\n| b | skipped |\n"
    assert _tables(text) == {"T (x)": {"a": ["1.5 s"], "b": ["skipped"]}}


@pytest.mark.skipif(sys.platform != "linux", reason="the benchmarks measure Linux tools")
def test_quick_run_prints_every_row(engines: Engines, tmp_path: Path) -> None:
    if engines.dockerd_host is None:
        pytest.fail("dockerd is not configured: the quick run needs it")
    for tool in ("docker", "tar"):
        assert shutil.which(tool), f"{tool} is needed by the benchmarks"
    out = tmp_path / "tables.md"
    env = {
        **os.environ,
        "BUILDSDK_DOCKERD_HOST": engines.dockerd_host,
        "BUILDSDK_DOCKERD_NETWORK": engines.dockerd_network,
    }
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--output", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout
    tables = _tables(printed)
    assert _tables(out.read_text()) == tables, "--output must hold the printed tables"
    for prefix, rows in EXPECTED.items():
        matching = [title for title in tables if title.startswith(prefix)]
        assert len(matching) == 1, f"table {prefix!r} missing from:\n{printed}"
        table = tables[matching[0]]
        for row in rows:
            assert row in table, f"row {row!r} missing from table {matching[0]!r}"
            median = table[row][0]
            assert _TIME.match(median), f"{matching[0]} / {row}: median {median!r}"
        for row, cells in table.items():
            if row not in rows:
                assert row in SKIPPED, f"unexpected row {row!r} in {matching[0]!r}"
                assert cells[0] == "skipped"
    # The summary of targets: every one whose rows the quick run measures, each judged.
    targets = tables["Targets"]
    for label in QUICK_TARGETS:
        assert label in targets, f"target {label!r} missing from the summary"
        assert targets[label][-1] in ("yes", "**no**")
    assert "Machine:" in printed
    assert re.search(r"Total time: \d+ s; load average at end: [\d. ]+\.", printed)
