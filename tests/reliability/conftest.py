"""Fixtures of the reliability suite: the fault engine, a watchdog and the time-to-error log.

Why a watchdog: the point of this suite is that nothing hangs, so a hang must fail loudly
instead of stalling CI. Every test runs under `faulthandler.dump_traceback_later`, which
prints every thread's stack and exits the run if the test outlives its bound.

Why a time log: docs/reliability.md reports how long each failure takes to reach the user.
Tests record (case, what the user gets, seconds) with the `measure` fixture; the numbers are
printed at the end of the run and written as JSON to `$BUILDSDK_RELIABILITY_TIMES` when set
(`tests/reliability/report_times.py` turns them into the table of the document).
"""

from __future__ import annotations

import faulthandler
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from buildsdk.auth import DockerConfig
from tests.integration.conftest import (
    DockerEngine,
    Engines,
    all_engines,
    docker_engine_of,
    dockerd_http,
    dockerd_tls_http,
    engines,
    podman_http,
)
from tests.reliability.fault_engine import FaultEngine

__all__ = [
    "TEST_BOUND",
    "Measure",
    "Timing",
    "all_engines",
    "clean_config",
    "docker_engine",
    "dockerd_http",
    "dockerd_tls_http",
    "engines",
    "expect_error",
    "fault_engine",
    "measure",
    "podman_http",
    "pytest_terminal_summary",
    "short_tmp",
    "watchdog",
]


@pytest.fixture(scope="session")
def docker_engine(all_engines: Engines) -> DockerEngine:
    """Docker 20.10 only: these tests measure failure handling of the client, not an engine."""
    return docker_engine_of(all_engines, "dockerd")


TEST_BOUND = 420.0
"""Seconds any one test may take before the watchdog dumps all stacks and ends the run."""

_E = TypeVar("_E", bound=BaseException)


@dataclass(frozen=True)
class Timing:
    """One measured case: what happened, what the user got, and how long it took."""

    case: str
    outcome: str
    seconds: float


_TIMINGS: list[Timing] = []


class Measure:
    """Records how long a failure took to reach the user, for the suite's report."""

    def record(self, case: str, outcome: str, seconds: float) -> None:
        """Remember one measured case."""
        _TIMINGS.append(Timing(case, outcome, seconds))

    def error(self, case: str, error: BaseException, seconds: float) -> None:
        """Remember a case whose outcome is `error`: its type and message, paths made generic."""
        text = re.sub(r"/tmp/bsr-[^/\s'\"]+", "/tmp/…", str(error))
        text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
        self.record(case, f"{type(error).__name__}: {text}", seconds)


@pytest.fixture
def measure() -> Measure:
    """The recorder of measured times (see the module doc)."""
    return Measure()


def expect_error(
    kind: type[_E], call: Callable[[], object], *, bound: float = 10.0
) -> tuple[_E, float]:
    """Run `call`, which must raise `kind` within `bound` seconds; return it and the time."""
    started = time.monotonic()
    with pytest.raises(kind) as info:
        call()
    elapsed = time.monotonic() - started
    assert elapsed < bound, f"{kind.__name__} took {elapsed:.1f}s (bound {bound}s)"
    return info.value, elapsed


def clean_config() -> DockerConfig:
    """A Docker CLI configuration with nothing in it: no credentials, proxies or headers."""
    return DockerConfig({}, env={}, detect_default_store=False)


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    """Dump every stack and end the run if a test outlives `TEST_BOUND`."""
    faulthandler.dump_traceback_later(TEST_BOUND, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A fresh directory with a short path (unix socket paths are limited to 108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="bsr-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fault_engine(short_tmp: Path) -> Iterator[FaultEngine]:
    """A running fault engine (unix socket and TCP), closed after the test."""
    engine = FaultEngine(short_tmp)
    try:
        yield engine
    finally:
        engine.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the measured times of this run and write them where the report script asks."""
    if not _TIMINGS:
        return
    terminalreporter.section("reliability: time to error")
    for timing in _TIMINGS:
        terminalreporter.write_line(f"{timing.seconds:8.3f}s  {timing.case}  ->  {timing.outcome}")
    target = os.environ.get("BUILDSDK_RELIABILITY_TIMES")
    if target:
        Path(target).write_text(
            json.dumps([t.__dict__ for t in _TIMINGS], indent=1), encoding="utf-8"
        )
