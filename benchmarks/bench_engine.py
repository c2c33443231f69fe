"""End to end on a real engine, and concurrent builds.

The same builds go through buildsdk, docker-py and `docker build` (legacy builder) to the
real dockerd that `scripts/engines` runs, each a whole process, all with `--no-cache` so
every run does the same work: a big context with a trivial Dockerfile (upload-bound), and
a Dockerfile of chatty `RUN` steps (engine- and stream-bound). BuildKit is measured for
buildsdk only: docker-py cannot ask for it, and the Docker CLI needs the buildx plugin for
it, which is not installed here.

Concurrency: N builds of small distinct contexts at once, through one `AsyncClient`
(asyncio) versus a thread per build with its own docker-py `APIClient`; in-process, wall
time until the last build finished.

Every image made is removed afterwards (by ID, nothing else on the engine is touched).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from _common import PYTHON, Sample, Series, Table, engine_host, run_process
from _common import scratch_dir as _scratch
from bench_context import _env
from trees import make_huge

__all__ = ["BUILDSDK_SCRIPT", "DOCKER_PY_SCRIPT", "run"]

BUILDSDK_SCRIPT = """
import sys
from buildsdk import BuildOptions, Client
host, path, version, network, iidfile = sys.argv[1:6]
options = BuildOptions(path=path, nocache=True, rm=True, network_mode=network, version=version)
with Client(host) as client, client.build(options, keep_events=False) as build:
    for _ in build:
        pass
    result = build.result()
open(iidfile, "w").write(result.image_id)
"""
"""One build through buildsdk, following its events; writes the image ID to a file."""

DOCKER_PY_SCRIPT = """
import sys
import docker
host, path, network, iidfile = sys.argv[1:5]
client = docker.APIClient(base_url=host)
image = None
for msg in client.build(path=path, nocache=True, rm=True, network_mode=network, decode=True):
    if "error" in msg:
        sys.exit(msg["error"])
    aux = msg.get("aux")
    if isinstance(aux, dict) and "ID" in aux:
        image = aux["ID"]
open(iidfile, "w").write(image)
"""
"""The same build through docker-py's APIClient."""

_CHATTY = "RUN for i in $(seq 1 200); do echo line $i; done\n"
_MIB = 1 << 20


class _Images:
    """Collects the IDs of images the benchmark made, to remove them at the end."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.ids: set[str] = set()
        self.count = 0

    def iidfile(self) -> str:
        self.count += 1
        return str(self.scratch / f"iid-{self.count}")

    def collect(self) -> None:
        for path in self.scratch.glob("iid-*"):
            text = path.read_text().strip()
            if text:
                self.ids.add(text)
            path.unlink()

    def remove(self, host: str, env: dict[str, str]) -> None:
        self.collect()
        if self.ids:
            subprocess.run(
                ["docker", "image", "rm", "--force", *sorted(self.ids)],
                env={**env, "DOCKER_HOST": host},
                capture_output=True,
                check=False,
            )


def _contenders(
    host: str, path: Path, network: str, env: dict[str, str], images: _Images
) -> list[tuple[str, Callable[[], Sample]]]:
    docker_env = {**env, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"}

    def buildsdk() -> Sample:
        argv = [PYTHON, "-c", BUILDSDK_SCRIPT, host, str(path), "1", network, images.iidfile()]
        return run_process(argv, env=env)

    def docker_py() -> Sample:
        argv = [PYTHON, "-c", DOCKER_PY_SCRIPT, host, str(path), network, images.iidfile()]
        return run_process(argv, env=env)

    def cli() -> Sample:
        argv = ["docker", "build", "--no-cache", "--rm", "--network", network]
        argv += ["--iidfile", images.iidfile(), str(path)]
        return run_process(argv, env=docker_env)

    return [
        ("buildsdk (classic)", buildsdk),
        ("docker build (CLI, legacy)", cli),
        ("docker-py APIClient.build", docker_py),
    ]


def _buildkit(host: str, path: Path, network: str, env: dict[str, str], images: _Images) -> Sample:
    argv = [PYTHON, "-c", BUILDSDK_SCRIPT, host, str(path), "2", network, images.iidfile()]
    return run_process(argv, env=env)


def _tolerant(fn: Callable[[], Sample], row: Series) -> None:
    """Run one build; a failure is noted on the row (and printed) instead of ending the run.

    The engine is shared with whatever else runs on the machine; one failed build should
    cost one sample, not the whole benchmark run.
    """
    try:
        row.samples.append(fn())
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1][:200]
        print(f"[engine] {row.name}: build failed: {last}", file=sys.stderr, flush=True)
        row.failures.append(last)


def _end_to_end(
    host: str, scratch: Path, env: dict[str, str], quick: bool, images: _Images
) -> list[Table]:
    network = os.environ.get("BUILDSDK_DOCKERD_NETWORK", "host")
    big = scratch / "big-context"
    make_huge(big, count=2 if quick else 25, size=2 * _MIB if quick else 8 * _MIB)
    (big / "Dockerfile").write_text("FROM busybox:latest\nLABEL benchmark=big-context\n")
    steps = 2 if quick else 100
    chatty = scratch / "chatty-context"
    chatty.mkdir()
    (chatty / "Dockerfile").write_text("FROM busybox:latest\n" + _CHATTY * steps)
    cases = [
        (f"big context ({'4' if quick else '210'} MB), trivial Dockerfile", big, 1 if quick else 5),
        (f"{steps} chatty RUN steps (200 lines each)", chatty, 1),
    ]
    if quick:
        # One end-to-end build per contender is enough to prove the scripts still work.
        cases = cases[:1]
    tables = []
    for title, path, repeat in cases:
        print(f"[engine] {title} ...", file=sys.stderr, flush=True)
        table = Table(f"End to end on dockerd 20.10: {title}", "docker build (CLI, legacy)")
        contenders = _contenders(host, path, network, env, images)
        contenders.append(
            ("buildsdk (BuildKit)", partial(_buildkit, host, path, network, env, images))
        )
        rows = [Series(name) for name, _ in contenders]
        for _ in range(repeat):
            for (_, fn), row in zip(contenders, rows, strict=True):
                _tolerant(fn, row)
        for row in rows:
            table.add(row)
        table.add(Series("docker-py (BuildKit)", note="docker-py cannot request BuildKit"))
        table.add(Series("docker buildx build", note="the buildx plugin is not installed"))
        table.notes.append(
            f"Whole processes, no cache, {repeat} run(s) each, clients in turns. The "
            "BuildKit row is another builder doing the same Dockerfile: compare it with "
            "nothing but itself across versions."
            + (
                " One run each (about two minutes per build here): differences smaller than "
                "the engine's own run-to-run noise (often 10-20 % on a shared engine) are "
                "not significant."
                if repeat == 1 and not quick
                else ""
            )
        )
        table.print()
        tables.append(table)
        images.collect()
    return tables


def _write_small_contexts(scratch: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = scratch / f"small-{count}-{i}"
        path.mkdir()
        (path / "data.txt").write_bytes(os.urandom(16 * 1024))
        (path / "Dockerfile").write_text(
            f"FROM busybox:latest\nCOPY data.txt /data-{i}.txt\nLABEL build={i}\n"
        )
        paths.append(path)
    return paths


def _async_builds(host: str, paths: list[Path], network: str) -> tuple[Sample, list[str]]:
    from buildsdk import AsyncClient, BuildOptions

    async def main() -> list[str]:
        async with AsyncClient(host) as client:

            async def one(path: Path) -> str:
                options = BuildOptions(
                    path=str(path), nocache=True, rm=True, network_mode=network, version="1"
                )
                async with client.build(options) as build:
                    async for _ in build:
                        pass
                    return (await build.result()).image_id

            return list(await asyncio.gather(*(one(p) for p in paths)))

    cpu = time.process_time()
    start = time.perf_counter()
    ids = asyncio.run(main())
    return Sample(time.perf_counter() - start, cpu=time.process_time() - cpu), ids


def _threaded_builds(host: str, paths: list[Path], network: str) -> tuple[Sample, list[str]]:
    import docker

    def one(path: Path) -> str:
        client = docker.APIClient(base_url=host)
        image = ""
        try:
            for msg in client.build(
                path=str(path), nocache=True, rm=True, network_mode=network, decode=True
            ):
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                aux = msg.get("aux")
                if isinstance(aux, dict) and "ID" in aux:
                    image = aux["ID"]
        finally:
            client.close()
        return image

    cpu = time.process_time()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        ids = list(pool.map(one, paths))
    return Sample(time.perf_counter() - start, cpu=time.process_time() - cpu), ids


def _concurrency(host: str, scratch: Path, quick: bool, images: _Images) -> list[Table]:
    network = os.environ.get("BUILDSDK_DOCKERD_NETWORK", "host")
    tables = []
    for count in (2,) if quick else (8, 16):
        print(f"[engine] {count} concurrent builds ...", file=sys.stderr, flush=True)
        paths = _write_small_contexts(scratch, count)
        rows = [Series("buildsdk: one AsyncClient"), Series("docker-py: a thread per build")]
        runners = [_async_builds, _threaded_builds]
        for _ in range(1 if quick else 5):
            for row, runner in zip(rows, runners, strict=True):
                try:
                    sample, ids = runner(host, paths, network)
                except Exception as exc:  # one failed round costs one sample, see _tolerant
                    message = f"{type(exc).__name__}: {str(exc)[:200]}"
                    print(f"[engine] {row.name}: {message}", file=sys.stderr, flush=True)
                    row.failures.append(message)
                    continue
                images.ids.update(i for i in ids if i)
                if len(set(ids)) != count or not all(ids):
                    row.failures.append(f"expected {count} distinct images, got {ids}")
                    continue
                row.samples.append(sample)
        table = Table(
            f"Concurrency: {count} builds at once on dockerd 20.10 (classic builder)",
            "docker-py: a thread per build",
        )
        for row in rows:
            table.add(row)
        table.notes.append(
            "Small distinct contexts (COPY of 16 KiB + LABEL), no cache; in-process wall time "
            "until the last build ended, and the client's CPU time for all builds; "
            f"{1 if quick else 5} run(s) each, in turns."
        )
        table.print()
        tables.append(table)
    return tables


def run(quick: bool, cache: Path | None) -> list[Table]:
    """Measure end-to-end builds and concurrency on the real engine; print the tables."""
    del cache
    host = engine_host()
    if host is None:
        print(
            "[engine] no engine: start one with `scripts/engines up` "
            "(or set BUILDSDK_DOCKERD_HOST)",
            file=sys.stderr,
        )
        table = Table("End to end and concurrency on a real engine", "docker build (CLI, legacy)")
        table.add(Series("all contenders", note="no engine running: skipped"))
        table.print()
        return [table]
    tables: list[Table] = []
    with _scratch("buildsdk-bench-engine-") as scratch:
        env = _env(scratch)
        images = _Images(scratch)
        try:
            tables += _end_to_end(host, scratch, env, quick, images)
            tables += _concurrency(host, scratch, quick, images)
        finally:
            images.remove(host, env)
            shutil.rmtree(scratch / "big-context", ignore_errors=True)
    return tables


def main() -> int:
    """Run this benchmark alone."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    run(args.quick, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
