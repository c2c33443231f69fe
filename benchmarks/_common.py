"""Shared machinery of the benchmarks: timing, peak memory, the fake engine, tables.

Whole-process measurements run the program under GNU time (`/usr/bin/time`), which
reports its peak resident set (for a shell pipeline, the largest of its processes) and its
CPU time (user + system, children included); the wall time is measured here around the
whole run. CPU time is shown because it hardly moves when other work loads the machine,
while wall time does. Clients are run in turns (A, B, C, A, B,
C, ...) after one warm-up round, so that slow drifts of the machine spread over all of
them equally.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BENCH_DIR",
    "PYTHON",
    "REPO",
    "Sample",
    "Series",
    "Table",
    "discard_server",
    "engine_host",
    "engines_setting",
    "machine",
    "run_process",
    "run_rounds",
    "scratch_dir",
]

BENCH_DIR = Path(__file__).resolve().parent
"""The benchmarks directory."""

REPO = BENCH_DIR.parent
"""The repository root (buildsdk is imported from here)."""

PYTHON = sys.executable
"""The interpreter every Python client runs with: the one running the benchmarks."""

_TIME = shutil.which("time", path="/usr/bin:/bin")


@dataclass(frozen=True)
class Sample:
    """One measured run: wall seconds, peak RSS in bytes, CPU seconds (0 when not measured)."""

    seconds: float
    peak_rss: int = 0
    cpu: float = 0.0


@dataclass
class Series:
    """The samples of one contender in one comparison."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    note: str = ""
    failures: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median wall time in seconds."""
        return statistics.median(s.seconds for s in self.samples)

    @property
    def low(self) -> float:
        """Fastest run in seconds."""
        return min(s.seconds for s in self.samples)

    @property
    def high(self) -> float:
        """Slowest run in seconds."""
        return max(s.seconds for s in self.samples)

    @property
    def cpu(self) -> float:
        """Median CPU time (user + system) in seconds; 0 when not measured."""
        return statistics.median(s.cpu for s in self.samples)

    @property
    def peak_rss(self) -> int:
        """Largest peak RSS over the runs, in bytes."""
        return max(s.peak_rss for s in self.samples)


def _fmt_seconds(value: float) -> str:
    if value >= 10:
        return f"{value:.1f} s"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.01:
        return f"{value * 1000:.0f} ms"
    if value >= 0.001:
        return f"{value * 1000:.2f} ms"
    return f"{value * 1e6:.1f} µs"


def _fmt_mib(value: int) -> str:
    return f"{value / (1 << 20):.0f} MiB" if value else "-"


@dataclass
class Table:
    """A printed comparison: rows of contenders, times relative to a reference row.

    `rate` turns a row into a throughput column (units per second) when set, e.g. messages
    per second: then ratios are throughput ratios (higher is better) instead of time ratios.
    """

    title: str
    reference: str
    rows: list[Series] = field(default_factory=list)
    rate: tuple[float, str] | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, series: Series) -> None:
        """Append a row."""
        self.rows.append(series)

    def _ref(self) -> Series | None:
        return next((r for r in self.rows if r.name == self.reference), None)

    def markdown(self) -> str:
        """The table as GitHub markdown, with its title and notes."""
        ref = self._ref()
        with_rss = any(r.peak_rss for r in self.rows if r.samples)
        with_cpu = any(r.cpu for r in self.rows if r.samples)
        head = ["contender", "median", "min-max"]
        if self.rate:
            head.append(self.rate[1])
        head.append(f"ratio to {self.reference}")
        if with_cpu:
            head += ["CPU (median)", "CPU ratio"]
        if with_rss:
            head.append("peak RSS")
        lines = [f"### {self.title}", "", "| " + " | ".join(head) + " |"]
        lines.append("|" + "---|" * len(head))
        for row in self.rows:
            if not row.samples:
                status = "failed" if row.failures else "skipped"
                cells = [row.name, status, "", *([""] if self.rate else []), row.note]
                if with_cpu:
                    cells += ["", ""]
                if with_rss:
                    cells.append("")
                lines.append("| " + " | ".join(cells) + " |")
                continue
            cells = [
                row.name,
                _fmt_seconds(row.median),
                f"{_fmt_seconds(row.low)} - {_fmt_seconds(row.high)}",
            ]
            if self.rate:
                cells.append(f"{self.rate[0] / row.median:,.0f}")
            if ref is not None and ref.samples:
                if self.rate:
                    cells.append(f"{ref.median / row.median:.2f}x")
                else:
                    cells.append(f"{row.median / ref.median:.2f}x")
            else:
                cells.append("-")
            if with_cpu:
                # GNU time counts CPU in 10 ms ticks: 0 means less than one tick.
                cells.append(_fmt_seconds(row.cpu) if row.cpu else "< 10 ms")
                if ref is not None and ref.samples and ref.cpu and row.cpu:
                    # Same direction as the wall-time ratio: throughput in rate tables.
                    ratio = ref.cpu / row.cpu if self.rate else row.cpu / ref.cpu
                    cells.append(f"{ratio:.2f}x")
                else:
                    cells.append("-")
            if with_rss:
                cells.append(_fmt_mib(row.peak_rss))
            lines.append("| " + " | ".join(cells) + " |")
        for row in self.rows:
            if row.failures:
                lines.append("")
                lines.append(
                    f"{row.name}: {len(row.failures)} run(s) failed and are not counted: "
                    + "; ".join(sorted(set(row.failures)))
                )
        for note in self.notes:
            lines.append("")
            lines.append(note)
        return "\n".join(lines) + "\n"

    def print(self) -> None:
        """Print the table to stdout, flushed."""
        print(self.markdown(), flush=True)


def run_process(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Sample:
    """Run a process to its end, discarding its output; return wall time and peak RSS.

    Peak RSS and CPU time (user + system, whole process and its children) come from
    GNU time, not from our own `wait4`: a child forked from this
    (large) Python process is charged with our pages until it execs, which would hide
    the measured program's own peak. Raises RuntimeError (with the tail of its stderr)
    when the process fails and `check` is set.
    """
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
        command = [_TIME, "-f", "%M %U %S", "-o", rss.name, *argv] if _TIME else list(argv)
        start = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        proc.wait()
        elapsed = time.perf_counter() - start
        if check and proc.returncode != 0:
            err.seek(0)
            tail = err.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"{argv[0]} exited with {proc.returncode}: {tail}")
        # GNU time prints "Command exited with non-zero status N" first when it did.
        fields = rss.read().splitlines()[-1:] or [""]
    try:
        peak_kib, user, system = fields[0].split()
        return Sample(elapsed, int(peak_kib) * 1024, float(user) + float(system))
    except ValueError:
        return Sample(elapsed)


def run_rounds(
    contenders: Sequence[tuple[str, Callable[[], Sample]]],
    repeat: int,
    *,
    warmup: bool = True,
) -> list[Series]:
    """Run every contender `repeat` times in turns, after one unrecorded warm-up round."""
    series = [Series(name) for name, _ in contenders]
    if warmup:
        for _, fn in contenders:
            fn()
    for _ in range(repeat):
        for (_, fn), out in zip(contenders, series, strict=True):
            out.samples.append(fn())
    return series


@contextlib.contextmanager
def discard_server(directory: Path) -> Iterator[tuple[str, Path]]:
    """Start the discarding fake engine; yield its `unix://` address and request log."""
    sock = directory / "engine.sock"
    log = directory / "requests.log"
    proc = subprocess.Popen(
        [PYTHON, str(BENCH_DIR / "discard_server.py"), str(sock), "--log", str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the discarding endpoint did not start")
        yield f"unix://{sock}", log
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed afterwards, whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def engine_host() -> str | None:
    """The real dockerd's address from the environment, or from `scripts/engines env`."""
    host = os.environ.get("BUILDSDK_DOCKERD_HOST")
    if host:
        return host
    script = REPO / "scripts" / "engines"
    if not script.exists():
        return None
    try:
        out = subprocess.run(
            [str(script), "env"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.startswith("export BUILDSDK_DOCKERD_HOST="):
            value = line.split("=", 1)[1].strip().strip("'\"")
            sock = value.removeprefix("unix://")
            if value.startswith("unix://") and not os.path.exists(sock):
                return None
            return value
    return None


def engines_setting(name: str) -> str | None:
    """One address or path `scripts/engines env` exports (`BUILDSDK_DOCKERD26_HOST`, ...),
    from the environment first; None when the engines do not provide it."""
    value = os.environ.get(name)
    if value:
        return value
    script = REPO / "scripts" / "engines"
    if not script.exists():
        return None
    try:
        out = subprocess.run(
            [str(script), "env"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.startswith(f"export {name}="):
            value = line.split("=", 1)[1].strip().strip("'\"")
            if value.startswith("unix://") and not os.path.exists(value.removeprefix("unix://")):
                return None
            return value
    return None


def machine() -> str:
    """One line describing this machine, for the table's caption."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem = f", {int(first.split()[1]) / (1 << 20):.0f} GiB RAM"
    return (
        f"{os.cpu_count()} x {cpu}{mem}, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )
