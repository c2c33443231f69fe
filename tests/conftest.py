"""Suite-wide rules for tests that need a real engine.

Why: CI must prove that the SDK works against real engines, so there a test that could not
reach its engine must not pass quietly as "skipped". Every test marked with an engine marker
(or living under tests/integration/) is also marked ``engine``; when ``CI`` is set, or
``BUILDSDK_REQUIRE_ENGINES=1``, a skipped ``engine`` test is reported as a failure, whatever
made it skip. Locally, without engines, such tests skip with a hint on how to start them.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests check what is computed, not how fast: hypothesis's 200 ms deadline per example
# fails them at random on a loaded 2-core machine (CI runs engines beside the suite), and
# speed is measured by benchmarks/ instead.
settings.register_profile("buildsdk", deadline=None)
settings.load_profile("buildsdk")

__all__ = [
    "ENGINE_MARKERS",
    "engines_required",
    "pytest_collection_modifyitems",
    "pytest_runtest_makereport",
]

ENGINE_MARKERS = (
    "dockerd",
    "dockerd_tls",
    "podman",
    "registry",
    "ssh",
    "docker20",
    "docker26",
    "docker26_containerd",
)
"""Markers that each name one engine from ``scripts/engines``; each implies ``engine``."""

_INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"


def engines_required() -> bool:
    """Tell whether an unreachable engine must fail tests (CI, or BUILDSDK_REQUIRE_ENGINES=1)."""
    ci = os.environ.get("CI", "").strip().lower()
    if ci not in ("", "0", "false", "no"):
        return True
    return os.environ.get("BUILDSDK_REQUIRE_ENGINES", "").strip() == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every engine-specific or integration test with the ``engine`` marker."""
    for item in items:
        in_integration = _INTEGRATION_DIR in Path(str(item.path)).resolve().parents
        specific = any(item.get_closest_marker(m) for m in ENGINE_MARKERS)
        if (in_integration or specific) and item.get_closest_marker("engine") is None:
            item.add_marker(pytest.mark.engine)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Turn a skipped ``engine`` test into a failure when engines are required."""
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("engine") is not None
        and engines_required()
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"engine test skipped while engines are required (CI or "
            f"BUILDSDK_REQUIRE_ENGINES=1): {reason}"
        )
    return report
