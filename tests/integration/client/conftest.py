"""Runners that drive one build scenario through `Client` and through `AsyncClient`.

Why: every acceptance scenario must hold for both clients, and writing each test twice would
let the copies drift. A test here is an async (anyio) test that asks for a runner fixture
such as ``dockerd``; the fixture is parametrized over ``sync`` and ``async``. The sync
runner calls the blocking `Client` in a worker thread (as an application with a thread pool
would), the async runner awaits `AsyncClient` on the test's event loop. Both return the same
`BuildRun`: every event in order, the result or the `BuildError`, and how long it took.

Behaviour that only one flavour has (leaving a ``with`` block, cancelling a task) is tested
separately in the test modules. The helpers at the bottom read what a build produced through
the engine's own API (image inspect, a created container's archive), never through buildsdk.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tarfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
import pytest

from buildsdk._protocol import PingResult, VersionInfo
from buildsdk.aio import AsyncClient
from buildsdk.build import BuildOptions
from buildsdk.client import Client
from buildsdk.errors import BuildError, BuildSDKError
from buildsdk.events import BuildEvent
from buildsdk.prune import PruneOptions, PruneResult
from buildsdk.results import BuildResult
from buildsdk.versions import ApiVersion
from tests.integration.conftest import DockerEngine, Engines, client_settings, engines_unavailable

__all__ = [
    "FLAVORS",
    "BuildRun",
    "HTTPFiles",
    "Runner",
    "RunnerFactory",
    "anyio_backend",
    "dockerd",
    "dockerd_tls",
    "dockerd_with",
    "http_files",
    "image_files",
    "inspect_image",
    "podman",
    "processes_running",
    "ssh",
    "unique_tag",
]

PruneEndpoint = Literal["auto", "build", "grpc"]
"""Where `prune_builds` sends a prune (its `endpoint` argument)."""

FLAVORS = ("sync", "async")
"""The two clients every shared scenario runs with."""

Watch = tuple[anyio.Event, Callable[[BuildEvent], bool]]
"""Set the event as soon as a build event matches the predicate (to act mid-build)."""


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio, the loop `AsyncClient` is written for."""
    return "asyncio"


@dataclass
class BuildRun:
    """What one build gave back: its events, its result or `BuildError`, and its duration."""

    events: list[BuildEvent]
    result: BuildResult | None
    error: BuildError | None
    seconds: float

    def ok(self) -> BuildResult:
        """The result of a build that must have succeeded (the error's log otherwise)."""
        assert self.error is None, f"{self.error}\n{self.error.log}"
        assert self.result is not None
        return self.result

    def failed(self) -> BuildError:
        """The error of a build that must have failed."""
        assert self.error is not None, f"the build succeeded: {self.result}"
        return self.error


@dataclass
class Runner:
    """One engine driven through one client flavour; subclasses move the calls."""

    flavor: str
    engine: str
    raw: httpx.Client
    network: str
    built: list[str] = field(default_factory=list)
    docker: DockerEngine | None = None
    """The matrix Docker engine for ``engine == "dockerd"``; ``None`` for the others."""

    async def build(self, options: BuildOptions, *, watch: Watch | None = None) -> BuildRun:
        """Run a build to its end; `BuildError` is returned in the run, other errors raise."""
        raise NotImplementedError

    async def prune(
        self, options: PruneOptions | None = None, *, endpoint: PruneEndpoint = "build"
    ) -> PruneResult:
        """`prune_builds(options, endpoint=endpoint)`."""
        raise NotImplementedError

    async def cancel(self, build_id: str) -> None:
        """`cancel_build(build_id)`."""
        raise NotImplementedError

    async def ping(self) -> PingResult:
        """`ping()`."""
        raise NotImplementedError

    async def version(self) -> VersionInfo:
        """`version()`."""
        raise NotImplementedError

    async def api_version(self) -> ApiVersion:
        """`api_version()`."""
        raise NotImplementedError

    def _record(self, run: BuildRun) -> BuildRun:
        if run.result is not None and run.result.image_id:
            self.built.append(run.result.image_id)
        return run


def _sync_build(
    client: Client, options: BuildOptions, on_event: Callable[[BuildEvent], None]
) -> BuildRun:
    started = time.monotonic()
    events: list[BuildEvent] = []
    try:
        with client.build(options) as build:
            for event in build:
                events.append(event)
                on_event(event)
            result = build.result()
    except BuildError as exc:
        return BuildRun(events, None, exc, time.monotonic() - started)
    return BuildRun(events, result, None, time.monotonic() - started)


@dataclass
class SyncRunner(Runner):
    """Drives `Client` from a worker thread."""

    client: Client | None = None

    def _client(self) -> Client:
        assert self.client is not None
        return self.client

    async def build(self, options: BuildOptions, *, watch: Watch | None = None) -> BuildRun:
        """Run the blocking build in a worker thread; `watch` is signalled across threads."""

        def on_event(event: BuildEvent) -> None:
            if watch is not None and not watch[0].is_set() and watch[1](event):
                anyio.from_thread.run_sync(watch[0].set)

        run = await anyio.to_thread.run_sync(_sync_build, self._client(), options, on_event)
        return self._record(run)

    async def prune(
        self, options: PruneOptions | None = None, *, endpoint: PruneEndpoint = "build"
    ) -> PruneResult:
        """`Client.prune_builds` in a worker thread."""
        client = self._client()
        return await anyio.to_thread.run_sync(
            functools.partial(client.prune_builds, options, endpoint=endpoint)
        )

    async def cancel(self, build_id: str) -> None:
        """`Client.cancel_build` in a worker thread (another one than the build's)."""
        await anyio.to_thread.run_sync(self._client().cancel_build, build_id)

    async def ping(self) -> PingResult:
        """`Client.ping` in a worker thread."""
        return await anyio.to_thread.run_sync(self._client().ping)

    async def version(self) -> VersionInfo:
        """`Client.version` in a worker thread."""
        return await anyio.to_thread.run_sync(self._client().version)

    async def api_version(self) -> ApiVersion:
        """`Client.api_version` in a worker thread."""
        return await anyio.to_thread.run_sync(self._client().api_version)


@dataclass
class AsyncRunner(Runner):
    """Drives `AsyncClient` on the test's event loop."""

    client: AsyncClient | None = None

    def _client(self) -> AsyncClient:
        assert self.client is not None
        return self.client

    async def build(self, options: BuildOptions, *, watch: Watch | None = None) -> BuildRun:
        """Run the build with `async with` / `async for`."""
        started = time.monotonic()
        events: list[BuildEvent] = []
        try:
            async with self._client().build(options) as build:
                async for event in build:
                    events.append(event)
                    if watch is not None and watch[1](event):
                        watch[0].set()
                result = await build.result()
        except BuildError as exc:
            return BuildRun(events, None, exc, time.monotonic() - started)
        return self._record(BuildRun(events, result, None, time.monotonic() - started))

    async def prune(
        self, options: PruneOptions | None = None, *, endpoint: PruneEndpoint = "build"
    ) -> PruneResult:
        """`AsyncClient.prune_builds`."""
        return await self._client().prune_builds(options, endpoint=endpoint)

    async def cancel(self, build_id: str) -> None:
        """`AsyncClient.cancel_build`."""
        await self._client().cancel_build(build_id)

    async def ping(self) -> PingResult:
        """`AsyncClient.ping`."""
        return await self._client().ping()

    async def version(self) -> VersionInfo:
        """`AsyncClient.version`."""
        return await self._client().version()

    async def api_version(self) -> ApiVersion:
        """`AsyncClient.api_version`."""
        return await self._client().api_version()


# Which raw httpx fixture sees the images an engine's builds produce: ssh reaches Docker
# 20.10, so its images are read through that dockerd's socket.
_RAW = {
    "dockerd": "dockerd_http",
    "dockerd_tls": "dockerd_tls_http",
    "podman": "podman_http",
    "ssh": "dockerd20_http",
}


async def _runner(
    request: pytest.FixtureRequest, engines: Engines, engine: str
) -> AsyncIterator[Runner]:
    flavor: str = request.param
    raw: httpx.Client = request.getfixturevalue(_RAW[engine])
    network = engines.podman_network if engine == "podman" else engines.dockerd_network
    docker: DockerEngine | None = None
    if engine == "dockerd":
        docker = request.getfixturevalue("docker_engine")
    runner: Runner
    if flavor == "sync":
        client: Client = request.getfixturevalue(f"{engine}_client")
        runner = SyncRunner(flavor, engine, raw, network, client=client, docker=docker)
        yield runner
    else:
        async with AsyncClient(**client_settings(engines, engine, docker)) as aclient:
            try:
                await aclient.ping()
            except BuildSDKError as exc:
                engines_unavailable(f"{engine} does not answer buildsdk's ping: {exc}")
            runner = AsyncRunner(flavor, engine, raw, network, client=aclient, docker=docker)
            yield runner
    # Images of finished tests are not needed (vfs storage keeps a full copy of each), but a
    # build that added nothing to its base has the base's id: that one must stay.
    base = raw.get(f"/images/{engines.base_image}/json")
    keep = {base.json()["Id"]} if base.status_code == 200 else set()
    for image in set(runner.built) - keep:
        raw.delete(f"/images/{image}", params={"force": "1"})


RunnerFactory = Callable[..., AbstractAsyncContextManager[Runner]]
"""Open a runner on one engine with client settings changed (`api_version=`, `env=`, ...)."""


@pytest.fixture(params=FLAVORS)
def dockerd_with(
    request: pytest.FixtureRequest, engines: Engines, docker_engine: DockerEngine
) -> RunnerFactory:
    """A factory of matrix-dockerd runners with extra client settings, in both flavours."""
    flavor: str = request.param
    raw: httpx.Client = request.getfixturevalue("dockerd_http")

    @contextlib.asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Runner]:
        settings = {**client_settings(engines, "dockerd", docker_engine), **overrides}
        network = engines.dockerd_network
        if flavor == "sync":
            with Client(**settings) as client:
                yield SyncRunner(
                    flavor, "dockerd", raw, network, client=client, docker=docker_engine
                )
        else:
            async with AsyncClient(**settings) as aclient:
                yield AsyncRunner(
                    flavor, "dockerd", raw, network, client=aclient, docker=docker_engine
                )

    return make


@pytest.fixture(params=FLAVORS)
async def dockerd(
    request: pytest.FixtureRequest, engines: Engines, docker_engine: DockerEngine
) -> AsyncIterator[Runner]:
    """The matrix dockerd (`docker_engine`), through `Client` and through `AsyncClient`."""
    async for runner in _runner(request, engines, "dockerd"):
        yield runner


@pytest.fixture(params=FLAVORS)
async def dockerd_tls(request: pytest.FixtureRequest, engines: Engines) -> AsyncIterator[Runner]:
    """The TLS dockerd, through `Client` and through `AsyncClient`."""
    async for runner in _runner(request, engines, "dockerd_tls"):
        yield runner


@pytest.fixture(params=FLAVORS)
async def podman(request: pytest.FixtureRequest, engines: Engines) -> AsyncIterator[Runner]:
    """Podman, through `Client` and through `AsyncClient`."""
    async for runner in _runner(request, engines, "podman"):
        yield runner


@pytest.fixture(params=FLAVORS)
async def ssh(request: pytest.FixtureRequest, engines: Engines) -> AsyncIterator[Runner]:
    """Docker 20.10 over `ssh://`, through `Client` and through `AsyncClient`."""
    async for runner in _runner(request, engines, "ssh"):
        yield runner


# --------------------------------------------------------------------------------------------
# Reading what a build produced, through the engine's API


def unique_tag(name: str) -> str:
    """A tag no other test run uses: `buildsdk-test/<name>:<random>`."""
    return f"buildsdk-test/{name}:{uuid.uuid4().hex[:12]}"


def inspect_image(raw: httpx.Client, image: str) -> dict[str, Any]:
    """`GET /images/{image}/json`; the image must exist."""
    answer = raw.get(f"/images/{image}/json")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def image_files(raw: httpx.Client, image: str, directory: str = "/out") -> dict[str, str]:
    """The text files under `directory` in `image`, by name relative to it.

    A container is created (never started) and the directory is read with
    `GET /containers/{id}/archive`, which Docker and Podman both serve.
    """
    created = raw.post("/containers/create", json={"Image": image, "Cmd": ["true"]})
    assert created.status_code == 201, created.text
    container = created.json()["Id"]
    try:
        archive = raw.get(f"/containers/{container}/archive", params={"path": directory})
        assert archive.status_code == 200, archive.text
    finally:
        raw.delete(f"/containers/{container}", params={"force": "1"})
    files: dict[str, str] = {}
    prefix = directory.rstrip("/").rsplit("/", 1)[-1] + "/"
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        for member in tar:
            reader = tar.extractfile(member) if member.isfile() else None
            if reader is not None:
                files[member.name.removeprefix(prefix)] = reader.read().decode()
    return files


def processes_running(needle: str) -> list[int]:
    """PIDs of processes on this host whose command line contains `needle`.

    Build steps run as ordinary processes of this host (in other namespaces), so a
    `RUN sleep <unique number>` can be watched to tell whether the engine still runs it.
    """
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------------------------
# A loopback HTTP server for remote contexts


@dataclass
class HTTPFiles:
    """Files served over HTTP on 127.0.0.1 (engines here share the host's network)."""

    root: Path
    base_url: str

    def url(self, name: str) -> str:
        """The URL of a file written under `root`."""
        return f"{self.base_url}/{name}"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def http_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HTTPFiles]:
    """A static file server on loopback for the engines to fetch remote contexts from."""
    root = tmp_path_factory.mktemp("served")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval: shutdown() waits for it (0.5 s by default) at every teardown.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield HTTPFiles(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
