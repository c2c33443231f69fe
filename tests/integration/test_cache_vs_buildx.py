"""Build-cache records and pruning equal what `docker buildx du` / `docker buildx prune` report.

On each Docker engine of the matrix, a few builds by buildx 0.13.1 (the docker driver)
leave cache records; `Client.disk_usage` / `AsyncClient.disk_usage` must return the records
buildx lists, rendered to the very text buildx prints, and pruning one record by id through
buildsdk must remove what buildx would and report it as buildx does. Two things differ by
nature and are normalised: ages ("3 seconds ago") depend on when each command ran, and
buildx prints creation times with nanoseconds where a Python `datetime` keeps microseconds.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from buildsdk import AsyncClient, CachePruneOptions, CachePruneResult, CacheRecord, Client
from buildsdk._cache_output import disk_usage_text, prune_text
from tests.integration.conftest import (
    DockerEngine,
    Engines,
    client_settings,
    engines_unavailable,
)

pytestmark = [pytest.mark.engine, pytest.mark.dockerd]

REPO_ROOT = Path(__file__).resolve().parents[2]
FLAVORS = ("sync", "async")
_AGE = re.compile(
    r"(?:Less than a second|\d+ seconds?|About a minute|\d+ minutes|About an hour"
    r"|\d+ (?:hours|days|weeks|months|years)) ago"
)
_CREATED = re.compile(r"(\d\d:\d\d:\d\d)\.(\d+)( \+0000 UTC)")


def _micro(match: re.Match[str]) -> str:
    digits = match.group(2)[:6].rstrip("0")
    return match.group(1) + (f".{digits}" if digits else "") + match.group(3)


def normal(text: str) -> str:
    """Text with ages replaced and creation times cut to microseconds (see the docstring)."""
    return _CREATED.sub(_micro, _AGE.sub("<AGE> ago", text))


@dataclass
class Buildx:
    """The Docker CLI 26.1 with buildx 0.13.1, on one engine, in a config of its own."""

    docker: Path
    env: dict[str, str]
    work: Path

    def run(self, *args: str) -> str:
        """Run `docker ARGS`; return its stdout (a failure fails the test with stderr)."""
        done = subprocess.run(
            [str(self.docker), *args],
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
        return done.stdout

    def build(self) -> None:
        """Build a new context (fresh source and copy records each time) with buildx."""
        context = self.work / f"ctx-{uuid.uuid4().hex[:8]}"
        context.mkdir()
        (context / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\n")
        (context / "a.txt").write_text(uuid.uuid4().hex)
        self.run("buildx", "build", "-q", str(context))

    def buildsdk(self, *args: str) -> str:
        """Run `python -m buildsdk ARGS` from this checkout on the same engine."""
        done = subprocess.run(
            [sys.executable, "-m", "buildsdk", *args],
            env={**self.env, "PYTHONPATH": str(REPO_ROOT)},
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"buildsdk {' '.join(args)}: {done.stderr}"
        return done.stdout


@pytest.fixture
def buildx(all_engines: Engines, docker_engine: DockerEngine, tmp_path: Path) -> Buildx:
    """buildx on the matrix engine, with a config directory that links its plugin."""
    cli, config = all_engines.docker26_cli, all_engines.docker26_config
    if cli is None or config is None or not cli.is_file():
        engines_unavailable(
            "the Docker CLI 26.1 was not unpacked (scripts/engines up docker26-cli)"
        )
    own = tmp_path / "config"
    own.mkdir()
    (own / "cli-plugins").symlink_to(config / "cli-plugins")
    (own / "config.json").write_text("{}")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(own),
        "DOCKER_HOST": docker_engine.host,
        "LANG": "C.UTF-8",
    }
    return Buildx(cli, env, tmp_path)


@pytest.fixture
def settings(all_engines: Engines, docker_engine: DockerEngine) -> dict[str, Any]:
    """`Client`/`AsyncClient` keyword arguments for the matrix engine."""
    return client_settings(all_engines, "dockerd", docker_engine)


def disk_usage(
    settings: dict[str, Any], flavor: str, filters: Mapping[str, str] | None = None
) -> list[CacheRecord]:
    """`disk_usage` through `Client` or `AsyncClient`."""
    if flavor == "sync":
        with Client(**settings) as client:
            return client.disk_usage(filters)

    async def run() -> list[CacheRecord]:
        async with AsyncClient(**settings) as client:
            return await client.disk_usage(filters)

    return asyncio.run(run())


def prune_cache(
    settings: dict[str, Any], flavor: str, options: CachePruneOptions
) -> CachePruneResult:
    """`prune_cache` through `Client` or `AsyncClient`."""
    if flavor == "sync":
        with Client(**settings) as client:
            return client.prune_cache(options)

    async def run() -> CachePruneResult:
        async with AsyncClient(**settings) as client:
            return await client.prune_cache(options)

    return asyncio.run(run())


def as_pruned(record: CacheRecord) -> CacheRecord:
    """A record as `Control/Prune` streams it: BuildKit leaves out its type and sharing."""
    return record.model_copy(update={"shared": False, "record_type": ""})


@pytest.mark.parametrize("flavor", FLAVORS)
def test_disk_usage_equals_buildx_du(buildx: Buildx, settings: dict[str, Any], flavor: str) -> None:
    buildx.build()
    records = disk_usage(settings, flavor)
    assert len(records) >= 2
    assert all(isinstance(r.created_at, datetime) and r.size >= 0 for r in records)
    assert normal(buildx.run("buildx", "du", "--verbose")) == normal(
        disk_usage_text(records, verbose=True)
    )
    assert normal(buildx.run("buildx", "du")) == normal(disk_usage_text(records))

    local = disk_usage(settings, flavor, {"type": "source.local"})
    assert local
    assert {r.record_type for r in local} == {"source.local"}
    assert normal(buildx.run("buildx", "du", "--filter", "type=source.local")) == normal(
        disk_usage_text(local, filtered=True)
    )


def test_buildsdk_du_prints_what_buildx_du_prints(buildx: Buildx) -> None:
    buildx.build()
    for args in ([], ["--verbose"], ["--filter", "type=source.local"]):
        assert normal(buildx.buildsdk("du", *args)) == normal(buildx.run("buildx", "du", *args))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_prune_by_id_equals_buildx_prune(
    buildx: Buildx, settings: dict[str, Any], flavor: str
) -> None:
    buildx.build()
    buildx.build()
    before = {r.id: r for r in disk_usage(settings, flavor)}
    # Local-source records have no children, so removing one by id removes only it.
    leaves = [r for r in before.values() if r.record_type == "source.local" and r.reclaimable]
    assert len(leaves) >= 3, before
    first, second, third = leaves[:3]

    text = buildx.run("buildx", "prune", "-f", "-a", "--filter", f"id={first.id}")
    assert normal(text) == normal(prune_text([as_pruned(first)]))

    result = prune_cache(settings, flavor, CachePruneOptions(all=True, filters={"id": second.id}))
    assert result.records == [as_pruned(second)]
    assert result.caches_deleted == [second.id]
    assert result.space_reclaimed == second.size

    text = buildx.buildsdk("cache-prune", "-f", "-a", "--filter", f"id={third.id}")
    assert normal(text) == normal(prune_text([as_pruned(third)]))

    after = {r.id for r in disk_usage(settings, flavor)}
    assert after == set(before) - {first.id, second.id, third.id}
    assert not {first.id, second.id, third.id} & set(buildx.run("buildx", "du").split())


@pytest.mark.parametrize("flavor", FLAVORS)
def test_prune_keeping_recent_cache_removes_nothing_as_buildx(
    buildx: Buildx, settings: dict[str, Any], flavor: str
) -> None:
    buildx.build()
    before = disk_usage(settings, flavor)
    recent = CachePruneOptions(filters={"until": "240h"}, keep_storage="1g")
    assert prune_cache(settings, flavor, recent) == CachePruneResult(records=[])
    args = ["-f", "--filter", "until=240h", "--keep-storage", "1g"]
    assert buildx.buildsdk("cache-prune", *args) == "Total:\t0B\n"
    assert buildx.run("buildx", "prune", *args) == "Total:\t0B\n"
    assert {r.id for r in disk_usage(settings, flavor)} == {r.id for r in before}
