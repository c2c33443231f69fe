"""BuildKit through both clients: typed trace events, and every way of stopping a build.

A build is "stopped" only when the engine stops it: each test here runs
`RUN sleep <unique number>` and watches this host's process table (build steps are ordinary
processes in other namespaces) until that `sleep` is gone.
"""

from __future__ import annotations

import gc
import random
import re
import time
from pathlib import Path

import anyio
import pytest

from buildsdk.aio import AsyncClient
from buildsdk.build import BuildOptions
from buildsdk.client import Client
from buildsdk.events import BuildEvent, LogEvent, VertexEvent, VertexLogEvent
from buildsdk.outputs import ImageOutput
from tests.integration.client.conftest import (
    Runner,
    inspect_image,
    processes_running,
    unique_tag,
)
from tests.integration.conftest import Engines

__all__: list[str] = []

pytestmark = [pytest.mark.anyio, pytest.mark.dockerd]

_STOP_WITHIN = 10.0
"""Seconds the engine may take to stop a step once asked (it takes well under one here)."""


def _sleeper(tmp_path: Path, network: str) -> tuple[BuildOptions, str]:
    """A context whose RUN prints a marker, then sleeps for a number no other test uses.

    The marker is quoted in two pieces so that the step's header line, which repeats the
    command, does not contain it: only the command's output does.
    """
    needle = f"sleep {random.randint(300_000, 999_999)}"
    (tmp_path / "Dockerfile").write_text(f'FROM busybox\nRUN echo "ready""-to-sleep" && {needle}\n')
    options = BuildOptions(
        path=tmp_path,
        tag=unique_tag("sleeper"),
        version="2",
        nocache=True,
        network_mode=network,
    )
    return options, needle


def _sleeping(event: BuildEvent) -> bool:
    if isinstance(event, VertexLogEvent):
        return b"ready-to-sleep" in event.data
    return isinstance(event, LogEvent) and "ready-to-sleep" in event.text


def _wait_running(needle: str) -> None:
    """Wait until a process runs `needle` (the marker is printed just before it starts)."""
    deadline = time.monotonic() + _STOP_WITHIN
    while not processes_running(needle):
        assert time.monotonic() < deadline, f"{needle!r} never started"
        time.sleep(0.05)


def _wait_gone(needle: str) -> None:
    """Wait until no process runs `needle`; fail after `_STOP_WITHIN` seconds.

    It blocks: the tests call it once nothing else needs their event loop.
    """
    started = time.monotonic()
    while processes_running(needle):
        waited = time.monotonic() - started
        assert waited < _STOP_WITHIN, f"{needle!r} still runs {waited:.1f}s after the stop"
        time.sleep(0.1)


async def test_buildkit_events_name_the_steps_and_carry_the_run_output(
    dockerd: Runner, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo to-stdout && echo to-stderr >&2\n")
    options = BuildOptions(path=tmp_path, version="2", network_mode=dockerd.network, nocache=True)
    run = await dockerd.build(options)
    result = run.ok()

    names = {e.digest: e.name for e in run.events if isinstance(e, VertexEvent) and e.name}
    run_step = "[2/2] RUN echo to-stdout && echo to-stderr >&2"
    # BuildKit 0.8 (Docker 20.10) names the base as written; 0.13 (Docker 26.1) adds the tag,
    # and on the containerd image store also the digest the image resolved to.
    base = "[1/2] FROM docker.io/library/busybox"
    assert dockerd.docker is not None
    if dockerd.docker.is_20:
        assert base in names.values()
    elif dockerd.docker.containerd_store:
        assert [
            n
            for n in names.values()
            if re.fullmatch(re.escape(base) + r":latest@sha256:[0-9a-f]{64}", n)
        ]
    else:
        assert f"{base}:latest" in names.values()
    assert run_step in names.values()
    run_digest = next(d for d, name in names.items() if name == run_step)
    logs = [e for e in run.events if isinstance(e, VertexLogEvent) and e.vertex == run_digest]
    assert b"".join(e.data for e in logs if e.stream == 1) == b"to-stdout\n"
    assert b"".join(e.data for e in logs if e.stream == 2) == b"to-stderr\n"
    finished = [e for e in run.events if isinstance(e, VertexEvent) and e.digest == run_digest]
    assert finished[-1].completed is not None
    assert finished[-1].error == ""
    # The log is numbered like `docker buildx build --progress plain`: the FROM step finished
    # first, so its number is lower; output lines carry their offset in the step.
    lines = result.log.splitlines()
    number = next(line.split()[0] for line in lines if line.endswith(run_step))
    from_number = next(line.split()[0] for line in lines if "[1/2] FROM" in line)
    assert int(from_number[1:]) < int(number[1:])
    assert re.search(rf"^{number} \d\.\d{{3}} to-stdout$", result.log, re.MULTILINE)
    assert re.search(rf"^{number} \d\.\d{{3}} to-stderr$", result.log, re.MULTILINE)


async def test_a_typed_image_output_names_the_image(dockerd: Runner, tmp_path: Path) -> None:
    # POST /build sends it as the `moby` exporter with a `name` attribute and no `t`.
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL typed=output\n")
    name = unique_tag("typed-output")
    options = BuildOptions(
        path=tmp_path,
        version="2",
        network_mode=dockerd.network,
        outputs=[ImageOutput(name=(name,))],
    )
    assert not options.tag
    (await dockerd.build(options)).ok()
    assert inspect_image(dockerd.raw, name)["Config"]["Labels"] == {"typed": "output"}


async def test_cancel_build_stops_a_running_buildkit_build(dockerd: Runner, tmp_path: Path) -> None:
    options, needle = _sleeper(tmp_path, dockerd.network)
    build_id = f"buildsdk-test-{random.getrandbits(48):x}"
    options = options.model_copy(update={"build_id": build_id})
    sleeping = anyio.Event()
    runs = []

    async def build() -> None:
        runs.append(await dockerd.build(options, watch=(sleeping, _sleeping)))
        sleeping.set()  # a build that ended on its own must not leave the test waiting

    async with anyio.create_task_group() as group:
        group.start_soon(build)
        with anyio.fail_after(120):
            await sleeping.wait()
        assert not runs, runs[0].error or runs[0].result
        _wait_running(needle)
        cancelled_at = time.monotonic()
        await dockerd.cancel(build_id)
    ended_after = time.monotonic() - cancelled_at

    error = runs[0].failed()
    assert ended_after < _STOP_WITHIN
    assert "cancel" in error.message
    assert "ready-to-sleep" in error.log
    _wait_gone(needle)
    assert dockerd.raw.get(f"/images/{options.tag[0]}/json").status_code == 404


def test_leaving_the_with_block_stops_the_build_sync(
    dockerd_client: Client, engines: Engines, tmp_path: Path
) -> None:
    for builder in ("1", "2"):
        options, needle = _sleeper(tmp_path, engines.dockerd_network)
        options = options.model_copy(update={"version": builder})
        with dockerd_client.build(options) as build:
            for event in build:
                if _sleeping(event):
                    _wait_running(needle)
                    break
        _wait_gone(needle)


async def test_leaving_the_async_with_block_stops_the_build(
    dockerd_aclient: AsyncClient, engines: Engines, tmp_path: Path
) -> None:
    for builder in ("1", "2"):
        options, needle = _sleeper(tmp_path, engines.dockerd_network)
        options = options.model_copy(update={"version": builder})
        async with dockerd_aclient.build(options) as build:
            async for event in build:
                if _sleeping(event):
                    _wait_running(needle)
                    break
        _wait_gone(needle)


async def test_cancelling_the_task_stops_the_build(
    dockerd_aclient: AsyncClient, engines: Engines, tmp_path: Path
) -> None:
    options, needle = _sleeper(tmp_path, engines.dockerd_network)
    sleeping = anyio.Event()

    async def build() -> None:
        async with dockerd_aclient.build(options) as running:
            async for event in running:
                if _sleeping(event):
                    sleeping.set()
        sleeping.set()

    async with anyio.create_task_group() as group:
        group.start_soon(build)
        with anyio.fail_after(120):
            await sleeping.wait()
        _wait_running(needle)
        group.cancel_scope.cancel()
    _wait_gone(needle)
    # The client is still usable after a cancelled build.
    assert (await dockerd_aclient.ping()).api_version


def test_breaking_out_of_the_loop_stops_the_build_sync(
    dockerd_client: Client, engines: Engines, tmp_path: Path
) -> None:
    options, needle = _sleeper(tmp_path, engines.dockerd_network)
    # Without a with block: dropping the Build must close it at once, not at the next
    # garbage collection (disabled here to prove it).
    gc.disable()
    try:
        for event in dockerd_client.build(options):
            if _sleeping(event):
                _wait_running(needle)
                break
        _wait_gone(needle)
    finally:
        gc.enable()


async def test_breaking_out_of_the_async_loop_stops_the_build(
    dockerd_aclient: AsyncClient, engines: Engines, tmp_path: Path
) -> None:
    options, needle = _sleeper(tmp_path, engines.dockerd_network)
    gc.disable()
    try:
        async for event in dockerd_aclient.build(options):
            if _sleeping(event):
                _wait_running(needle)
                break
        # asyncio closes an abandoned async generator on its loop: give it a turn.
        for _ in range(100):
            await anyio.sleep(0.05)
            if not processes_running(needle):
                break
        _wait_gone(needle)
    finally:
        gc.enable()
