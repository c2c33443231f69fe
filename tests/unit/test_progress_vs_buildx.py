"""`PlainProgress` prints what `docker buildx build --progress plain` printed on the same builds.

tests/fixtures/progress holds, for three builds (a fresh one, the same again from the cache,
and one whose RUN step fails), the text buildx 0.13.1 printed and the events buildsdk
received from the same engine right after it, each with the second it arrived (the fixture
README says how they were recorded). Replayed on a fake clock with the pacing `render` uses,
the renderer must print the same lines in the same order with the same numbers. What is
compared leaves out, as the issue allows, ids and timings: image ids, the seconds in
`DONE 0.4s` and on log lines, and a byte counter's unfinished lines (whether one is printed
depends on whether a print fell while the transfer ran). buildx's own first line (`#0
building with "default" instance using docker driver`) names a buildx builder and is not
part of BuildKit's progress.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from buildsdk.events import AnyBuildEvent, BuildEvent
from buildsdk.progress import PlainProgress

__all__ = ["normalize"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "progress"
_EVENT: TypeAdapter[BuildEvent] = TypeAdapter(AnyBuildEvent)
_COUNTS = re.compile(r"( [\d.]+[kMGTP]?B( / [\d.]+[kMGTP]?B)?)?$")


def normalize(text: str) -> list[str]:
    """The lines of a plain progress text without ids, timings and unfinished counters."""
    lines = [line for line in text.splitlines() if not line.startswith("#0 ")]
    while lines and not lines[0]:
        lines.pop(0)
    out = []
    for line in lines:
        line = re.sub(r"sha256:[0-9a-f]{64}", "sha256:<id>", line)
        line = re.sub(r"^(#\d+ )\d+\.\d+ ", r"\1<t> ", line)
        line = re.sub(r"^\d+\.\d+ ", "<t> ", line)
        line = re.sub(r" \d+\.\ds( done)?$", r"\1", line)
        out.append(line)
    finished = {
        _COUNTS.sub("", line.removesuffix(" done")) for line in out if line.endswith(" done")
    }
    return [
        line
        for line in out
        if line.endswith(" done")
        or not re.match(r"#\d+ ", line)
        or _COUNTS.sub("", line) not in finished
    ]


def replay(name: str) -> str:
    """Feed the recorded events to `PlainProgress` at their recorded times."""
    now = [0.0]
    out = io.StringIO()
    progress = PlainProgress(out, clock=lambda: now[0])
    next_tick = 0.15
    for line in (FIXTURES / f"{name}.events.jsonl").read_text().splitlines():
        row = json.loads(line)
        while next_tick < row["t"]:
            now[0] = next_tick
            progress.tick()
            next_tick += 0.15
        now[0] = row["t"]
        progress.feed(_EVENT.validate_python(row["event"]))
        next_tick = max(next_tick, row["t"] + 0.15)
    progress.close()
    return out.getvalue()


@pytest.mark.parametrize("name", ["ok", "cached", "fail"])
def test_plain_progress_matches_buildx_line_for_line(name: str) -> None:
    expected = (FIXTURES / f"{name}.buildx.txt").read_text()
    assert normalize(replay(name)) == normalize(expected)


def test_the_comparison_keeps_what_a_reader_sees() -> None:
    # The normalisation hides timings only: a repeated step, a lost closing line or another
    # order of steps still differs.
    expected = normalize((FIXTURES / "ok.buildx.txt").read_text())
    assert len(expected) > 30
    assert "#4 [1/4] FROM docker.io/library/busybox:latest" in expected
    assert expected.count("#9 exporting to image") == 1
    assert "#9 naming to docker.io/library/progress-fixture:latest done" in expected
    assert expected[-1] == "#9 DONE"
    failed = normalize((FIXTURES / "fail.buildx.txt").read_text())
    command = (
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i; done; sleep 0.5;"
        " echo oops >&2; exit 3"
    )
    # The failed step's last ten lines between rules, then the error.
    assert failed[-14:] == [
        "------",
        f" > [3/4] RUN {command}:",
        *[f"<t> line {i}" for i in range(4, 13)],
        "<t> oops",
        "------",
        f"ERROR: failed to solve: executor failed running [/bin/sh -c {command}]: exit code: 3",
    ]


def test_without_pacing_steps_would_print_twice() -> None:
    # What the issue saw: printing every update as it comes repeats finished steps.
    out = io.StringIO()
    progress = PlainProgress(out, interval=0.0, clock=lambda: 0.0)
    for line in (FIXTURES / "ok.events.jsonl").read_text().splitlines():
        progress.feed(_EVENT.validate_python(json.loads(line)["event"]))
    progress.close()
    assert normalize(out.getvalue()) != normalize((FIXTURES / "ok.buildx.txt").read_text())
