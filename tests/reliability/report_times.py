"""Run the reliability suite and print the table of docs/reliability.md from its timings.

Usage: `.venv/bin/python -m tests.reliability.report_times [pytest args...]`. The suite
records, for every case, what the user got and how long it took (see conftest.py); this
script runs it with `BUILDSDK_RELIABILITY_TIMES` pointing at a temporary file and prints a
Markdown table headed by the machine, the engines' versions and the date, so the table in
the document can be regenerated rather than retyped.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["main", "markdown_table"]

_REPO = Path(__file__).resolve().parents[2]


def _version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "absent"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, {_version(['dockerd', '--version'])}, "
        f"{_version(['podman', '--version'])}"
    )


def _cell(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > 160:
        text = text[:157] + "..."
    return text.replace("|", "\\|")


def markdown_table(timings: list[dict[str, object]]) -> str:
    """Format recorded timings as a Markdown table (case, what the user gets, time)."""
    lines = ["| Case | What the user gets | Measured time |", "|---|---|---|"]
    for timing in timings:
        seconds = float(str(timing["seconds"]))
        shown = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
        lines.append(
            f"| {_cell(str(timing['case']))} | `{_cell(str(timing['outcome']))}` | {shown} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run the suite (extra pytest arguments in `argv`) and print the table; pytest's status."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "times.json"
        env = {**os.environ, "BUILDSDK_RELIABILITY_TIMES": str(target)}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "tests/reliability", *argv],
            cwd=_REPO,
            env=env,
            check=False,
        )
        timings = json.loads(target.read_text()) if target.exists() else []
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\nMeasured on {now}: {_machine()}\n")
    print(markdown_table(timings))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
