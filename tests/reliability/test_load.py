"""Many builds at once on one client: every result right, nothing leaked, memory bounded.

16 threads share one `Client`, and 64 tasks share one `AsyncClient`, against the real
dockerd. Each build has its own context whose `RUN` prints a distinct token, so a mixed-up
stream (one build's log or image id delivered to another) cannot go unnoticed: each
result's log must hold its own token and no other, and its image id must be the one the
engine tagged. Afterwards open file descriptors and threads are back to where they
started, and traced Python memory stayed bounded.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from buildsdk.aio import AsyncClient
from buildsdk.build import BuildOptions
from buildsdk.client import Client
from buildsdk.results import BuildResult
from tests.integration.conftest import Engines
from tests.reliability.conftest import Measure, clean_config

pytestmark = [pytest.mark.dockerd, pytest.mark.slow]

_PEAK_LIMIT = 64 * 1024 * 1024
"""Traced Python memory allowed at the peak of a run of concurrent builds."""


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settled(start_fds: int, start_threads: int, timeout: float = 30.0) -> tuple[int, int]:
    """Wait for worker threads to wind down; return the fd and thread counts reached."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        fds, threads = _fds(), threading.active_count()
        if (fds <= start_fds and threads <= start_threads) or time.monotonic() > deadline:
            return fds, threads
        time.sleep(0.2)


def _contexts(root: Path, count: int, run_id: str, base_image: str) -> list[Path]:
    paths = []
    for i in range(count):
        path = root / f"ctx{i}"
        path.mkdir()
        (path / "Dockerfile").write_text(
            f"FROM {base_image}\nCOPY payload /payload\nRUN echo token-{run_id}-{i}\n"
        )
        (path / "payload").write_bytes(os.urandom(4096) + str(i).encode())
        paths.append(path)
    return paths


def _options(path: Path, tag: str, network: str) -> BuildOptions:
    return BuildOptions(path=str(path), tag=[tag], network_mode=network, rm=True, forcerm=True)


def _check_results(
    results: list[BuildResult], tags: list[str], run_id: str, dockerd_http: httpx.Client
) -> None:
    for i, (result, tag) in enumerate(zip(results, tags, strict=True)):
        token = f"token-{run_id}-{i}\n"
        assert token in result.log, f"build {i} lacks its own output"
        others = [line for line in result.log.splitlines() if f"token-{run_id}-" in line]
        assert all(line.endswith(f"token-{run_id}-{i}") for line in others), others
        inspected = dockerd_http.get(f"/images/{tag}/json")
        assert inspected.status_code == 200, inspected.text
        assert inspected.json()["Id"] == result.image_id
    assert len({r.image_id for r in results}) == len(results)


@pytest.fixture
def cleanup_tags(dockerd_http: httpx.Client) -> Iterator[list[str]]:
    """Tags the test creates; removed from dockerd afterwards."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        dockerd_http.delete(f"/images/{tag}", params={"force": "1"})


def test_sixteen_threads_one_client(
    engines: Engines,
    dockerd_http: httpx.Client,
    tmp_path: Path,
    cleanup_tags: list[str],
    measure: Measure,
) -> None:
    assert engines.dockerd_host is not None
    run_id = uuid.uuid4().hex[:10]
    count = 16
    contexts = _contexts(tmp_path, count, run_id, engines.base_image)
    tags = [f"buildsdk-load:{run_id}-t{i}" for i in range(count)]
    cleanup_tags.extend(tags)

    gc.collect()
    start_fds, start_threads = _fds(), threading.active_count()
    tracemalloc.start()
    started = time.monotonic()
    try:
        with (
            Client(engines.dockerd_host, env={}, config=clean_config()) as client,
            ThreadPoolExecutor(max_workers=count) as pool,
        ):
            futures = [
                pool.submit(
                    lambda i: client.build(
                        _options(contexts[i], tags[i], engines.dockerd_network)
                    ).result(),
                    i,
                )
                for i in range(count)
            ]
            results = [f.result(timeout=180) for f in futures]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started

    _check_results(results, tags, run_id, dockerd_http)
    fds, threads = _settled(start_fds, start_threads)
    assert fds <= start_fds, f"{fds - start_fds} file descriptors leaked"
    assert threads <= start_threads, f"{threads - start_threads} threads left running"
    assert peak < _PEAK_LIMIT, f"peak traced memory {peak / 1e6:.1f} MB"
    measure.record(
        "16 concurrent builds, threads, one Client",
        f"all right; peak {peak / 1e6:.1f} MB; fds/threads back",
        elapsed,
    )


def test_sixty_four_tasks_one_async_client(
    engines: Engines,
    dockerd_http: httpx.Client,
    tmp_path: Path,
    cleanup_tags: list[str],
    measure: Measure,
) -> None:
    assert engines.dockerd_host is not None
    host = engines.dockerd_host
    run_id = uuid.uuid4().hex[:10]
    count = 64
    contexts = _contexts(tmp_path, count, run_id, engines.base_image)
    tags = [f"buildsdk-load:{run_id}-a{i}" for i in range(count)]
    cleanup_tags.extend(tags)

    async def main() -> list[BuildResult]:
        async with AsyncClient(host, env={}, config=clean_config()) as client:
            builds = [
                client.build(_options(contexts[i], tags[i], engines.dockerd_network)).result()
                for i in range(count)
            ]
            return list(await asyncio.wait_for(asyncio.gather(*builds), 600))

    gc.collect()
    start_fds, start_threads = _fds(), threading.active_count()
    tracemalloc.start()
    started = time.monotonic()
    try:
        results = asyncio.run(main())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started

    _check_results(results, tags, run_id, dockerd_http)
    fds, threads = _settled(start_fds, start_threads)
    assert fds <= start_fds, f"{fds - start_fds} file descriptors leaked"
    assert threads <= start_threads, f"{threads - start_threads} threads left running"
    assert peak < _PEAK_LIMIT, f"peak traced memory {peak / 1e6:.1f} MB"
    measure.record(
        "64 concurrent builds, tasks, one AsyncClient",
        f"all right; peak {peak / 1e6:.1f} MB; fds/threads back",
        elapsed,
    )


def test_repeated_failures_leak_nothing(
    engines: Engines, dockerd_http: httpx.Client, tmp_path: Path
) -> None:
    """Builds that fail (bad Dockerfile, failing RUN, early close) return their sockets."""
    assert engines.dockerd_host is not None
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Dockerfile").write_text("FROM scratch\nNOSUCHINSTRUCTION x\n")
    failing = tmp_path / "failing"
    failing.mkdir()
    (failing / "Dockerfile").write_text(f"FROM {engines.base_image}\nRUN exit 3\n")
    gc.collect()
    start_fds = _fds()
    with Client(engines.dockerd_host, env={}, config=clean_config()) as client:
        for _ in range(5):
            for path in (bad, failing):
                build = client.build(
                    BuildOptions(path=str(path), network_mode=engines.dockerd_network)
                )
                with pytest.raises(Exception) as info:
                    build.result()
                assert type(info.value).__name__ in ("BuildError", "BadRequest")
            with client.build(
                BuildOptions(path=str(failing), network_mode=engines.dockerd_network)
            ) as build:
                next(iter(build))  # leave early: the connection must be closed, not kept
    fds, _ = _settled(start_fds, threading.active_count())
    assert fds <= start_fds, f"{fds - start_fds} file descriptors leaked"
