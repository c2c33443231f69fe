"""`prune_builds` through both clients on dockerd's BuildKit cache.

Each test builds a step of known size (`head -c 2000000 /dev/zero`) with a unique file name,
finds its cache record through the engine's own `GET /system/df`, and prunes it by id, so
the assertions are exact and other cache stays put, except in the test of a bare `all`. On
the containerd image store a record is a little larger than its file (see `_cached_step`).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from buildsdk.build import BuildOptions
from buildsdk.prune import PruneOptions
from tests.integration.client.conftest import Runner

__all__: list[str] = []

pytestmark = [pytest.mark.anyio, pytest.mark.dockerd]

_SIZE = 2_000_000


async def _cached_step(runner: Runner, tmp_path: Path) -> dict[str, Any]:
    """Build a BuildKit step of `_SIZE` bytes and return its cache record from /system/df."""
    marker = uuid.uuid4().hex
    (tmp_path / "Dockerfile").write_text(
        f"FROM busybox\nRUN head -c {_SIZE} /dev/zero > /blob-{marker}\n"
    )
    options = BuildOptions(path=tmp_path, version="2", network_mode=runner.network)
    (await runner.build(options)).ok()
    usage = runner.raw.get("/system/df")
    assert usage.status_code == 200, usage.text
    records = [r for r in usage.json()["BuildCache"] or [] if marker in r["Description"]]
    assert len(records) == 1, records
    record: dict[str, Any] = records[0]
    assert runner.docker is not None
    if runner.docker.containerd_store:
        # The overlayfs snapshotter reports the disk usage of the step's upper directory:
        # the file plus a few blocks of directory and metadata (about 25 KB here).
        assert _SIZE < record["Size"] < _SIZE + 64 * 1024, record
    else:
        assert record["Size"] == _SIZE
    return record


async def test_prune_by_id_filter_needs_all_for_a_shared_record(
    dockerd: Runner, tmp_path: Path
) -> None:
    record = await _cached_step(dockerd, tmp_path)
    # The step's layer is also the image's, so the record is shared: only `all` removes it.
    assert record["Shared"] is True

    kept = await dockerd.prune(PruneOptions(filters={"id": record["ID"]}))
    assert kept.caches_deleted == []
    assert kept.space_reclaimed == 0

    pruned = await dockerd.prune(PruneOptions(all=True, filters={"id": record["ID"]}))
    assert pruned.caches_deleted == [record["ID"]]
    assert pruned.space_reclaimed == record["Size"]


async def test_prune_keep_storage_keeps_a_cache_smaller_than_it(
    dockerd: Runner, tmp_path: Path
) -> None:
    record = await _cached_step(dockerd, tmp_path)
    options = PruneOptions(all=True, keep_storage="1000g", filters={"id": record["ID"]})
    kept = await dockerd.prune(options)
    assert kept.caches_deleted == []
    pruned = await dockerd.prune(options.model_copy(update={"keep_storage": None}))
    assert pruned.caches_deleted == [record["ID"]]


async def test_prune_all_after_buildkit_builds_reclaims_space(
    dockerd: Runner, tmp_path: Path
) -> None:
    record = await _cached_step(dockerd, tmp_path)
    pruned = await dockerd.prune(PruneOptions(all=True))
    assert record["ID"] in pruned.caches_deleted
    assert pruned.space_reclaimed >= _SIZE
    usage = dockerd.raw.get("/system/df").json()["BuildCache"] or []
    assert record["ID"] not in {r["ID"] for r in usage}


@pytest.mark.parametrize("endpoint", ["auto", "grpc"])
async def test_prune_through_control_prune_removes_the_record_and_reports_it(
    dockerd: Runner, tmp_path: Path, endpoint: Any
) -> None:
    record = await _cached_step(dockerd, tmp_path)
    # The same options as through POST /build/prune above: Control/Prune (pinned, or what
    # "auto" takes on Docker 23+) honours the id filter and `all` alike.
    kept = await dockerd.prune(PruneOptions(filters={"id": record["ID"]}), endpoint=endpoint)
    assert kept.caches_deleted == []
    assert kept.space_reclaimed == 0
    options = PruneOptions(all=True, filters={"id": record["ID"]})
    pruned = await dockerd.prune(options, endpoint=endpoint)
    assert pruned.caches_deleted == [record["ID"]]
    assert pruned.space_reclaimed == record["Size"]
    usage = dockerd.raw.get("/system/df").json()["BuildCache"] or []
    assert record["ID"] not in {r["ID"] for r in usage}
