"""BuildKit's Control API on real engines, through `POST /grpc`, with the sync and async channel.

Each test runs twice: once with `open_control` on the test's event loop, once with the
sync `ControlChannel` called from a worker thread (as a threaded application would). The
replies are read with `buildsdk._protobuf` only as far as the assertion needs; what is
asserted is what the engine answered (worker labels, status codes, error details) and what
the user gets (the typed error, a channel that still works after a cancelled call). The
bidirectional `Control/Session` tunnel has no sync twin and is tested async only.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from buildsdk import transports
from buildsdk._grpc.status import Status
from buildsdk._protobuf import field_string, iter_fields
from buildsdk.buildkit.control import (
    CONTROL_DISK_USAGE,
    CONTROL_LIST_WORKERS,
    CONTROL_SESSION,
    CONTROL_SOLVE,
    CONTROL_STATUS,
    AsyncControlChannel,
    ControlChannel,
    open_control,
)
from buildsdk.endpoint import Endpoint, resolve_endpoint
from buildsdk.errors import GrpcCallError, NotFound, StreamError
from tests.integration.conftest import DockerEngine, Engines, client_settings

pytestmark = [pytest.mark.anyio]

FLAVORS = ("async", "sync")
SNAPSHOTTER = "org.mobyproject.buildkit.worker.snapshotter"
HOST_GATEWAY = "org.mobyproject.buildkit.worker.moby.host-gateway-ip"


@pytest.fixture
def anyio_backend() -> str:
    """The channel runs on asyncio (its sync twin on a private asyncio loop)."""
    return "asyncio"


class Channel:
    """One flavour of the channel behind the same awaitable methods."""

    def __init__(self, flavor: str, endpoint: Endpoint, env: Mapping[str, str] | None) -> None:
        self.flavor = flavor
        self.endpoint = endpoint
        self.env = env
        self._stack = AsyncExitStack()
        self._async: AsyncControlChannel | None = None
        self._sync: ControlChannel | None = None

    async def __aenter__(self) -> Channel:
        if self.flavor == "async":
            transport, base_url = transports.create_async_transport(self.endpoint, env=self.env)
            try:
                http = await self._stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url=base_url)
                )
                control = open_control(http, self.endpoint)
                self._async = await self._stack.enter_async_context(control)
            except BaseException:
                await self._stack.aclose()
                raise
        else:
            self._sync = await anyio.to_thread.run_sync(
                lambda: ControlChannel(self.endpoint, env=self.env)
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sync is not None:
            await anyio.to_thread.run_sync(self._sync.close)
        await self._stack.aclose()

    async def unary(self, method: str, request: bytes, **kwargs: Any) -> bytes:
        if self._async is not None:
            return await self._async.unary(method, request, **kwargs)
        assert self._sync is not None
        sync = self._sync
        return await anyio.to_thread.run_sync(lambda: sync.unary(method, request, **kwargs))

    async def stream(self, method: str, request: bytes, **kwargs: Any) -> list[bytes]:
        """Every reply of a server stream."""
        if self._async is not None:
            return [m async for m in self._async.server_stream(method, request, **kwargs)]
        assert self._sync is not None
        sync = self._sync

        def read() -> list[bytes]:
            with sync.server_stream(method, request, **kwargs) as stream:
                return list(stream)

        return await anyio.to_thread.run_sync(read)

    async def abandon_stream(self, method: str, request: bytes, after: float) -> None:
        """Start a server stream, wait `after` seconds for nothing, then leave it."""
        if self._async is not None:
            async with self._async.server_stream(method, request) as stream:
                with anyio.move_on_after(after):
                    async for _ in stream:
                        pytest.fail("the stream of an unknown ref sent a message")
            return
        assert self._sync is not None
        sync = self._sync

        def start_and_leave() -> None:
            with sync.server_stream(method, request):
                time.sleep(after)

        await anyio.to_thread.run_sync(start_and_leave)


def _endpoint(settings: Mapping[str, Any]) -> tuple[Endpoint, Mapping[str, str] | None]:
    env = settings.get("env")
    endpoint = resolve_endpoint(settings["host"], tls=settings.get("tls"), env=env or {})
    return endpoint, env


@pytest.fixture(params=FLAVORS)
def flavor(request: pytest.FixtureRequest) -> str:
    """`async` (open_control) or `sync` (ControlChannel in a worker thread)."""
    return str(request.param)


@pytest.fixture
def docker(engines: Engines, docker_engine: DockerEngine, flavor: str) -> Callable[[], Channel]:
    """A factory of channels to the matrix dockerd, in the test's flavour."""
    endpoint, env = _endpoint(client_settings(engines, "dockerd", docker_engine))
    return lambda: Channel(flavor, endpoint, env)


def _ref() -> str:
    """A fresh build reference: BuildKit refuses a ref a recent job still holds."""
    return f"buildsdk{uuid.uuid4().hex[:17]}"


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    """The length-delimited fields of a message (all this test reads)."""
    fields = []
    for number, _, value in iter_fields(data):
        assert isinstance(value, bytes), number
        fields.append((number, value))
    return fields


def _workers(reply: bytes) -> list[tuple[str, dict[str, str], list[str]]]:
    """ListWorkersResponse{record=1 WorkerRecord{ID=1, Labels=2 map<string,string>,
    platforms=3 Platform{Architecture=1, OS=2}}} as (ID, labels, ["os/arch"])."""
    workers = []
    for number, record in _fields(reply):
        assert number == 1
        worker_id, labels, platforms = "", {}, []
        for field, value in _fields(record):
            if field == 1:
                worker_id = value.decode()
            elif field == 2:
                pair = dict(_fields(value))
                labels[pair.get(1, b"").decode()] = pair.get(2, b"").decode()
            elif field == 3:
                platform = dict(_fields(value))
                platforms.append(f"{platform[2].decode()}/{platform[1].decode()}")
        workers.append((worker_id, labels, platforms))
    return workers


@pytest.mark.dockerd
async def test_list_workers_reports_the_image_store(
    docker: Callable[[], Channel], docker_engine: DockerEngine
) -> None:
    async with docker() as channel:
        reply = await channel.unary(CONTROL_LIST_WORKERS, b"", timeout=30)
    [(worker_id, labels, platforms)] = _workers(reply)
    assert "linux/amd64" in platforms
    if docker_engine.containerd_store:
        # What buildx reads to allow oci/docker exports (reference §2 step 4).
        assert labels[SNAPSHOTTER] == "overlayfs"
        assert labels["org.mobyproject.buildkit.worker.executor"] == "containerd"
    elif docker_engine.is_20:
        # BuildKit 0.8 in Docker 20.10 labels its one worker not at all.
        assert (worker_id, labels) == ("moby", {})
    else:
        assert SNAPSHOTTER not in labels
        assert HOST_GATEWAY in labels


@pytest.mark.dockerd
async def test_disk_usage_answers_with_usage_records(docker: Callable[[], Channel]) -> None:
    async with docker() as channel:
        reply = await channel.unary(CONTROL_DISK_USAGE, field_string(1, ""))
    # DiskUsageResponse{record=1 UsageRecord{ID=1, ...}}: every record has an ID.
    for number, record in _fields(reply):
        assert number == 1
        ids = [value for field, _, value in iter_fields(record) if field == 1]
        assert ids, record
        assert isinstance(ids[0], bytes)
        assert ids[0]


@pytest.mark.dockerd
async def test_unknown_method_is_unimplemented(docker: Callable[[], Channel]) -> None:
    async with docker() as channel:
        with pytest.raises(GrpcCallError) as info:
            await channel.unary("/moby.buildkit.v1.Control/NoSuchMethod", b"")
        assert info.value.code == Status.UNIMPLEMENTED
        assert info.value.code_name == "UNIMPLEMENTED"
        assert "NoSuchMethod" in info.value.message
        # The connection carries on after a failed call.
        assert await channel.unary(CONTROL_LIST_WORKERS, b"")


@pytest.mark.dockerd
async def test_status_of_an_unknown_ref_ends_at_its_deadline(
    docker: Callable[[], Channel],
) -> None:
    async with docker() as channel:
        started = time.monotonic()
        with pytest.raises(GrpcCallError) as info:
            await channel.stream(CONTROL_STATUS, field_string(1, "buildsdk-no-such-ref"), timeout=1)
        elapsed = time.monotonic() - started
        assert info.value.code == Status.DEADLINE_EXCEEDED
        assert 0.9 < elapsed < 5
        assert await channel.unary(CONTROL_LIST_WORKERS, b"")


@pytest.mark.dockerd
async def test_a_unary_deadline_expires(docker: Callable[[], Channel]) -> None:
    # A Solve naming a session nobody opened waits 10 s for it (reference §15).
    request = (
        field_string(1, _ref())
        + field_string(5, "buildsdk-no-such-session")
        + field_string(6, "dockerfile.v0")
    )
    async with docker() as channel:
        started = time.monotonic()
        with pytest.raises(GrpcCallError) as info:
            await channel.unary(CONTROL_SOLVE, request, timeout=1.5)
        assert info.value.code == Status.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 5


@pytest.mark.dockerd
async def test_leaving_a_server_stream_cancels_it(docker: Callable[[], Channel]) -> None:
    async with docker() as channel:
        started = time.monotonic()
        await channel.abandon_stream(CONTROL_STATUS, field_string(1, "buildsdk-abandoned"), 0.5)
        assert time.monotonic() - started < 5
        assert await channel.unary(CONTROL_LIST_WORKERS, b"")


@pytest.mark.dockerd
async def test_a_failed_call_carries_the_engines_status_details(
    docker: Callable[[], Channel], docker_engine: DockerEngine
) -> None:
    request = field_string(1, _ref()) + field_string(6, "nosuch.v0")
    async with docker() as channel:
        with pytest.raises(GrpcCallError) as info:
            await channel.unary(CONTROL_SOLVE, request, timeout=30)
    assert info.value.code == Status.UNKNOWN
    assert info.value.message == "invalid frontend: nosuch.v0"
    if not docker_engine.is_20:
        # BuildKit 0.13 attaches its Go stack as JSON details; 0.8 (Docker 20.10) none.
        kinds = {detail.type_url for detail in info.value.details}
        assert "github.com/moby/buildkit/stack.Stack+json" in kinds
        assert all(detail.value.startswith(b"{") for detail in info.value.details)


@pytest.mark.dockerd_tls
async def test_list_workers_over_tls(engines: Engines, flavor: str) -> None:
    endpoint, env = _endpoint(client_settings(engines, "dockerd_tls"))
    assert endpoint.tls is not None
    async with Channel(flavor, endpoint, env) as channel:
        [(worker_id, _, platforms)] = _workers(await channel.unary(CONTROL_LIST_WORKERS, b""))
    # The TLS dockerd is Docker 20.10: one unlabelled worker.
    assert worker_id == "moby"
    assert "linux/amd64" in platforms


@pytest.mark.ssh
async def test_list_workers_over_ssh(engines: Engines, flavor: str) -> None:
    endpoint, env = _endpoint(client_settings(engines, "ssh"))
    assert endpoint.scheme == "ssh"
    async with Channel(flavor, endpoint, env) as channel:
        [(worker_id, _, _)] = _workers(await channel.unary(CONTROL_LIST_WORKERS, b""))
        with pytest.raises(GrpcCallError) as info:
            await channel.unary("/moby.buildkit.v1.Control/NoSuchMethod", b"")
    # ssh reaches Docker 20.10: one unlabelled worker.
    assert worker_id == "moby"
    assert info.value.code == Status.UNIMPLEMENTED


@pytest.mark.podman
async def test_podman_refuses_the_control_api(engines: Engines, flavor: str) -> None:
    endpoint, env = _endpoint(client_settings(engines, "podman"))
    with pytest.raises(NotFound) as info:
        async with Channel(flavor, endpoint, env):
            pytest.fail("Podman opened a Control API channel")
    assert info.value.status_code == 404
    assert "no BuildKit Control API" in info.value.message
    assert "POST /grpc" in str(info.value)


@pytest.mark.dockerd
def test_a_closed_sync_channel_refuses_calls_and_leaves_no_thread(
    engines: Engines, docker_engine: DockerEngine
) -> None:
    endpoint, env = _endpoint(client_settings(engines, "dockerd", docker_engine))
    # Threads of earlier tests may still be ending: only the ones started here count.
    before = set(threading.enumerate())
    channel = ControlChannel(endpoint, env=env)
    stream = channel.server_stream(CONTROL_STATUS, field_string(1, _ref()), timeout=30)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            list(stream)
        except BaseException as exc:  # handed to the test thread, which asserts on it
            outcome.append(exc)

    waiting = threading.Thread(target=read)
    waiting.start()
    time.sleep(0.3)
    channel.close()  # ends the stream another thread is reading
    waiting.join(5)
    assert not waiting.is_alive()
    [error] = outcome
    assert isinstance(error, StreamError)
    assert "the channel was closed" in str(error)
    assert [t for t in threading.enumerate() if t not in before and t is not waiting] == []
    with pytest.raises(StreamError, match="is closed"):
        channel.unary(CONTROL_LIST_WORKERS, b"")


@pytest.mark.dockerd
async def test_the_session_tunnel_is_a_bidirectional_call(
    engines: Engines, docker_engine: DockerEngine
) -> None:
    endpoint, env = _endpoint(client_settings(engines, "dockerd", docker_engine))
    transport, base_url = transports.create_async_transport(endpoint, env=env)
    metadata = [
        ("x-docker-expose-session-uuid", _ref()),
        ("x-docker-expose-session-name", "buildsdk-test"),
        ("x-docker-expose-session-sharedkey", ""),
        ("x-docker-expose-session-grpc-method", "/grpc.health.v1.Health/Check"),
    ]
    async with (
        httpx.AsyncClient(transport=transport, base_url=base_url) as http,
        open_control(http, endpoint) as channel,
        await channel.stream(CONTROL_SESSION, metadata=metadata) as call,
    ):
        # Inside the tunnel the engine is the HTTP/2 client: its first BytesMessage{data=1}
        # starts with the client preface (reference §15).
        first = await call.recv()
        assert first is not None
        [(number, data)] = _fields(first)
        assert number == 1
        assert data.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        # Half-closing ends the session: the engine says GOAWAY inside, then status OK.
        call.done_writing()
        with anyio.fail_after(10):
            rest = [message async for message in call]
        assert call.code == Status.OK
        assert rest
