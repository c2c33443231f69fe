"""`Client` and `AsyncClient` against `httpx.MockTransport`: what goes on the wire and how
answers are read, without an engine.

The transport factory each client module imported is replaced by one returning a
`MockTransport`, so everything above the socket (request building, negotiation, stream
reading, error mapping) runs for real. Every scenario runs with both clients.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest

from buildsdk.aio import AsyncBuild, AsyncClient
from buildsdk.auth import DockerConfig
from buildsdk.build import BuildOptions
from buildsdk.client import Build, Client
from buildsdk.errors import (
    BadRequest,
    BuildError,
    NotFound,
    ServerError,
    StreamError,
    UnsupportedEngine,
)
from buildsdk.prune import PruneOptions, PruneResult
from buildsdk.results import BuildResult
from buildsdk.versions import MAX_API_VERSION, ApiVersion

__all__: list[str] = []

pytestmark = pytest.mark.anyio

_STREAMS = Path(__file__).resolve().parents[1] / "fixtures" / "streams"

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


_HANDLER: list[Handler] = []


@pytest.fixture
def mock_engine() -> Iterator[Callable[[Handler], None]]:
    """Route the requests of every client made with `_settings()` to `handler`."""

    def install(handler: Handler) -> None:
        _HANDLER[:] = [handler]

    yield install
    _HANDLER.clear()


def _settings(**extra: Any) -> dict[str, Any]:
    config = DockerConfig({}, env={}, detect_default_store=False)
    settings: dict[str, Any] = {"host": "unix:///mock/docker.sock", "config": config, "env": {}}
    if _HANDLER:
        # httpx.MockTransport is both a sync and an async transport.
        settings["transport"] = httpx.MockTransport(_HANDLER[0])
    return {**settings, **extra}


class _Recorder:
    """A fake engine: answers /_ping and /version, records every request, serves a body."""

    def __init__(self, *, api_version: str | None = "1.41", head_ok: bool = True) -> None:
        self.api_version = api_version
        self.head_ok = head_ok
        self.requests: list[httpx.Request] = []
        self.build_answer: Callable[[httpx.Request], httpx.Response] = lambda r: _stream(
            {"aux": {"ID": "sha256:" + "a" * 64}}
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        headers = {"Api-Version": self.api_version} if self.api_version else {}
        path = request.url.path
        if path == "/_ping":
            if request.method == "HEAD" and not self.head_ok:
                return httpx.Response(404, json={"message": "page not found"})
            return httpx.Response(200, headers={**headers, "OSType": "linux"}, text="OK")
        if path.endswith("/version"):
            version = {"ApiVersion": self.api_version} if self.api_version else {}
            return httpx.Response(200, headers=headers, json=version)
        if path.endswith("/build"):
            return self.build_answer(request)
        if path.endswith("/build/prune"):
            return httpx.Response(200, json={"CachesDeleted": None, "SpaceReclaimed": 0})
        if path.endswith("/build/cancel"):
            return httpx.Response(200)
        return httpx.Response(404, json={"message": "page not found"})

    def calls(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]


async def _both(
    sync: Callable[[Client], Any], asynchronous: Callable[[AsyncClient], Any], **settings: Any
) -> tuple[Any, Any]:
    """Run one scenario with `Client` and with `AsyncClient`; return both outcomes."""
    with Client(**_settings(**settings)) as sync_client:
        first = sync(sync_client)
    async with AsyncClient(**_settings(**settings)) as async_client:
        second = await asynchronous(async_client)
    return first, second


# -- the mirror ------------------------------------------------------------------------------


def _public_and_dunder(cls: type) -> list[str]:
    renames = {"__aenter__": "__enter__", "__aexit__": "__exit__", "__aiter__": "__iter__"}
    renames["__anext__"] = "__next__"
    names = [n for n in vars(cls) if not n.startswith("_") or n.startswith("__")]
    names = [renames.get(n, n) for n in names if n not in ("__doc__", "__module__")]
    return [n for n in names if n not in ("__dict__", "__weakref__", "__annotations__")]


@pytest.mark.parametrize(("sync_cls", "async_cls"), [(Client, AsyncClient), (Build, AsyncBuild)])
def test_async_classes_mirror_the_sync_ones(sync_cls: type, async_cls: type) -> None:
    assert _public_and_dunder(async_cls) == _public_and_dunder(sync_cls)
    for name in _public_and_dunder(sync_cls):
        if name.startswith("__"):
            continue
        sync_params = inspect.signature(getattr(sync_cls, name)).parameters
        async_params = inspect.signature(getattr(async_cls, name)).parameters
        assert list(sync_params) == list(async_params), name


# -- ping and negotiation --------------------------------------------------------------------


async def test_ping_falls_back_to_get_when_head_is_refused(
    mock_engine: Callable[[Handler], None],
) -> None:
    engine = _Recorder(head_ok=False)
    mock_engine(engine)

    async def aping(c: AsyncClient) -> Any:
        return await c.ping()

    sync_ping, async_ping = await _both(lambda c: c.ping(), aping)
    assert sync_ping == async_ping
    assert sync_ping.api_version == "1.41"
    assert sync_ping.os_type == "linux"
    assert engine.calls() == ["HEAD /_ping", "GET /_ping"] * 2


@pytest.mark.parametrize(
    ("server", "expected"),
    [("1.41", ApiVersion(1, 41)), ("1.99", MAX_API_VERSION), (None, MAX_API_VERSION)],
)
async def test_negotiation_takes_the_lower_version_once(
    mock_engine: Callable[[Handler], None], server: str | None, expected: ApiVersion
) -> None:
    engine = _Recorder(api_version=server)
    mock_engine(engine)

    def sync(c: Client) -> ApiVersion:
        c.version()
        c.version()
        return c.api_version()

    async def asynchronous(c: AsyncClient) -> ApiVersion:
        await c.version()
        await c.version()
        return await c.api_version()

    assert await _both(sync, asynchronous) == (expected, expected)
    assert (
        engine.calls()
        == ["HEAD /_ping", f"GET /v{expected}/version", f"GET /v{expected}/version"] * 2
    )


async def test_an_engine_older_than_supported_is_a_clear_error(
    mock_engine: Callable[[Handler], None],
) -> None:
    mock_engine(_Recorder(api_version="1.20"))
    with Client(**_settings()) as c, pytest.raises(UnsupportedEngine, match=r"1\.20.*1\.24"):
        c.api_version()
    async with AsyncClient(**_settings()) as ac:
        with pytest.raises(UnsupportedEngine, match=r"1\.20.*1\.24"):
            await ac.api_version()


async def test_a_closed_build_cannot_be_started_again(
    mock_engine: Callable[[Handler], None], tmp_path: Path
) -> None:
    mock_engine(_Recorder())
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    options = BuildOptions(path=tmp_path)
    with Client(**_settings()) as c:
        build = c.build(options)
        build.close()
        with pytest.raises(StreamError, match="this build was closed"):
            build.result()
    async with AsyncClient(**_settings()) as ac:
        abuild = ac.build(options)
        await abuild.close()
        with pytest.raises(StreamError, match="this build was closed"):
            await abuild.result()


async def test_a_pinned_version_never_pings(mock_engine: Callable[[Handler], None]) -> None:
    engine = _Recorder()
    mock_engine(engine)

    async def asynchronous(c: AsyncClient) -> None:
        await c.cancel_build("b1")

    await _both(lambda c: c.cancel_build("b1"), asynchronous, env={"DOCKER_API_VERSION": "1.40"})
    assert engine.calls() == ["POST /v1.40/build/cancel"] * 2
    assert all(r.url.params["id"] == "b1" for r in engine.requests)


async def test_prune_sends_its_query(mock_engine: Callable[[Handler], None]) -> None:
    engine = _Recorder()
    mock_engine(engine)
    options = PruneOptions(all=True, filters={"type": "regular"})

    async def asynchronous(c: AsyncClient) -> Any:
        return await c.prune_builds(options)

    first, second = await _both(lambda c: c.prune_builds(options), asynchronous)
    assert first == second
    assert first.caches_deleted == []
    prunes = [r for r in engine.requests if r.url.path == "/v1.41/build/prune"]
    assert [list(r.url.params.multi_items()) for r in prunes] == [
        [("all", "1"), ("filters", '{"type":{"regular":true}}')]
    ] * 2


# -- build streams ---------------------------------------------------------------------------


class _Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body delivered in the given pieces, as a slow engine would."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self._pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


def _stream(*messages: dict[str, Any]) -> httpx.Response:
    """A 200 build answer streamed like an engine's: one JSON message per line."""
    body = b"".join(json.dumps(m).encode() + b"\r\n" for m in messages)
    return httpx.Response(200, headers={"Content-Type": "application/json"}, stream=_Chunks([body]))


def _odd_pieces(body: bytes, seed: int) -> list[bytes]:
    pieces, position, step = [], 0, seed
    while position < len(body):
        step = (step * 7 + 3) % 23 + 1  # 1..23 bytes, cutting UTF-8 and \r\n apart
        pieces.append(body[position : position + step])
        position += step
    return pieces


def _build_of(body_pieces: list[bytes], engine: _Recorder) -> None:
    engine.build_answer = lambda request: httpx.Response(
        200, headers={"Content-Type": "application/json"}, stream=_Chunks(body_pieces)
    )


async def _build_both(tmp_path: Path) -> tuple[Any, Any]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    options = BuildOptions(path=tmp_path)

    def sync(c: Client) -> Any:
        try:
            return c.build(options).result()
        except BuildError as exc:
            return exc

    async def asynchronous(c: AsyncClient) -> Any:
        try:
            return await c.build(options).result()
        except BuildError as exc:
            return exc

    return await _both(sync, asynchronous)


@pytest.mark.parametrize(
    "name", sorted(p.name for p in _STREAMS.glob("*.jsonl")) or ["<no recorded streams>"]
)
@pytest.mark.parametrize("seed", [1, 5])
async def test_recorded_streams_read_the_same_in_odd_pieces(
    mock_engine: Callable[[Handler], None], tmp_path: Path, name: str, seed: int
) -> None:
    body = (_STREAMS / name).read_bytes()
    engine = _Recorder()
    mock_engine(engine)
    _build_of([body], engine)
    whole = await _build_both(tmp_path / "whole")
    _build_of(_odd_pieces(body, seed), engine)
    pieces = await _build_both(tmp_path / "pieces")

    def outcome(value: BuildResult | BuildError) -> tuple[str, ...]:
        if isinstance(value, BuildError):
            return ("error", value.message, value.log, str(len(value.events)))
        return ("ok", value.image_id, value.log, str(value.events_count), *value.warnings)

    assert len({outcome(v) for v in (*whole, *pieces)}) == 1


async def test_build_request_carries_the_context_and_cli_headers(
    mock_engine: Callable[[Handler], None], tmp_path: Path
) -> None:
    engine = _Recorder()
    bodies: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return _stream({"aux": {"ID": "sha256:" + "b" * 64}})

    engine.build_answer = answer
    mock_engine(engine)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    first, second = await _build_both(tmp_path)
    assert first.image_id == second.image_id == "sha256:" + "b" * 64
    builds = [r for r in engine.requests if r.url.path == "/v1.41/build"]
    assert len(builds) == 2
    for request in builds:
        assert request.headers["Content-Type"] == "application/x-tar"
        assert request.headers["User-Agent"].startswith("buildsdk/")
        assert request.headers["X-Registry-Config"] == "e30="  # {} in base64url
        assert list(request.url.params.multi_items()) == [
            ("dockerfile", "Dockerfile"),
            ("version", "1"),
        ]
    assert bodies[0] == bodies[1]
    assert b"Dockerfile" in bodies[0][:100]
    assert len(bodies[0]) % 512 == 0


async def test_a_proxy_password_reaches_the_engine_but_not_httpx_s_log(
    mock_engine: Callable[[Handler], None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = _Recorder()
    mock_engine(engine)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    proxy = {"default": {"httpProxy": "http://user:hunter2@proxy:3128"}}
    config = DockerConfig({"proxies": proxy}, env={}, detect_default_store=False)
    options = BuildOptions(path=tmp_path)
    caplog.set_level(logging.INFO, logger="httpx")

    async def abuild(c: AsyncClient) -> Any:
        return await c.build(options).result()

    await _both(lambda c: c.build(options).result(), abuild, config=config)
    builds = [r for r in engine.requests if r.url.path == "/v1.41/build"]
    # The Docker CLI sends proxy build args with their credentials, and so do we.
    assert all("user:hunter2@proxy" in dict(r.url.params)["buildargs"] for r in builds)
    logged = [unquote_plus(r.getMessage()) for r in caplog.records if r.name == "httpx"]
    assert sum("/v1.41/build?" in line for line in logged) == 2
    assert not [line for line in logged if "hunter2" in line]
    assert any("http://user:***@proxy:3128" in line for line in logged)


@pytest.mark.parametrize(
    ("status", "headers", "body", "error", "message"),
    [
        (
            400,
            {"Content-Type": "application/json"},
            b'{"message":"Unsupported isolation: \\"hyperv\\""}\n',
            BadRequest,
            'Unsupported isolation: "hyperv"',
        ),
        (500, {"Content-Type": "text/plain"}, b"proxy failed\n", ServerError, "proxy failed"),
        (
            502,
            {},
            b"",
            ServerError,
            "request returned Bad Gateway for API route and version "
            "http://%2Fmock%2Fdocker.sock/v1.41/build, "
            "check if the server supports the requested API version",
        ),
    ],
)
async def test_error_answers_to_a_build_carry_the_engines_message(
    mock_engine: Callable[[Handler], None],
    tmp_path: Path,
    status: int,
    headers: dict[str, str],
    body: bytes,
    error: type[Exception],
    message: str,
) -> None:
    engine = _Recorder()
    engine.build_answer = lambda request: httpx.Response(
        status, headers=headers, stream=_Chunks([body])
    )
    mock_engine(engine)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    options = BuildOptions(path=tmp_path)
    with Client(**_settings()) as c, pytest.raises(error) as sync_error:
        c.build(options).result()
    async with AsyncClient(**_settings()) as ac:
        with pytest.raises(error) as async_error:
            await ac.build(options).result()
    for raised in (sync_error.value, async_error.value):
        assert getattr(raised, "message", None) == message
        assert getattr(raised, "status_code", None) == status


@pytest.mark.parametrize("probe_status", [400, 200])
async def test_a_broken_upload_asks_the_engine_why(
    mock_engine: Callable[[Handler], None], tmp_path: Path, probe_status: int
) -> None:
    engine = _Recorder()
    sizes: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sizes.append(len(request.read()))
        if sizes[-1]:
            raise httpx.WriteError("Broken pipe")
        body = b'{"message":"squash needs experimental"}'
        return httpx.Response(
            probe_status, headers={"Content-Type": "application/json"}, stream=_Chunks([body])
        )

    engine.build_answer = answer
    mock_engine(engine)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    expected = BadRequest if probe_status == 400 else StreamError
    options = BuildOptions(path=tmp_path)
    with Client(**_settings()) as c, pytest.raises(expected) as sync_error:
        c.build(options).result()
    async with AsyncClient(**_settings()) as ac:
        with pytest.raises(expected) as async_error:
            await ac.build(options).result()
    for raised in (sync_error.value, async_error.value):
        if probe_status == 400:
            assert isinstance(raised, BadRequest)
            assert raised.message == "squash needs experimental"
            assert isinstance(raised.__cause__, StreamError)
        else:
            assert "Broken pipe" in str(raised)
    # Each client sent the context once, then the same query with an empty body.
    assert [size > 0 for size in sizes] == [True, False, True, False]
    builds = [r for r in engine.requests if r.url.path.endswith("/build")]
    assert builds[0].url.params == builds[1].url.params


@pytest.mark.parametrize(("exporter", "succeeds"), [("cacheonly", True), ("moby", False)])
async def test_only_image_exporters_must_report_an_image_id(
    mock_engine: Callable[[Handler], None], tmp_path: Path, exporter: str, succeeds: bool
) -> None:
    engine = _Recorder()
    engine.build_answer = lambda request: _stream({"stream": "exported\n"})
    mock_engine(engine)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    options = BuildOptions(path=tmp_path, version="2", outputs=[{"type": exporter}])
    with Client(**_settings()) as c:
        build = c.build(options)
        if succeeds:
            assert build.result().image_id == ""
        else:
            with pytest.raises(BuildError, match="without reporting an image id"):
                build.result()
    async with AsyncClient(**_settings()) as ac:
        abuild = ac.build(options)
        if succeeds:
            assert (await abuild.result()).log == "exported\n"
        else:
            with pytest.raises(BuildError, match="without reporting an image id"):
                await abuild.result()


async def test_an_old_engines_image_id_is_read_from_the_first_tag(
    mock_engine: Callable[[Handler], None], tmp_path: Path
) -> None:
    engine = _Recorder()
    engine.build_answer = lambda request: _stream({"stream": "Successfully built 0123456789ab\n"})
    inspected = "sha256:" + "c" * 64

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1.29/images/"):
            engine.requests.append(request)
            return httpx.Response(200, stream=_Chunks([json.dumps({"Id": inspected}).encode()]))
        return engine(request)

    mock_engine(answer)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    options = BuildOptions(path=tmp_path, tag=["first:1", "second:2"])

    async def asynchronous(c: AsyncClient) -> BuildResult:
        return await c.build(options).result()

    results = await _both(lambda c: c.build(options).result(), asynchronous, api_version="1.29")
    assert [r.image_id for r in results] == [inspected, inspected]
    assert engine.calls() == ["POST /v1.29/build", "GET /v1.29/images/first:1/json"] * 2


class _ClosingRecorder(httpx.MockTransport):
    """A mock transport that notes when it is closed."""

    def __init__(self, engine: _Recorder, closed: list[str]) -> None:
        super().__init__(engine)
        self.closed = closed

    def close(self) -> None:
        self.closed.append("sync")

    async def aclose(self) -> None:
        self.closed.append("async")


async def test_a_given_transport_carries_every_request_and_closes_with_its_client() -> None:
    engine = _Recorder()
    closed: list[str] = []
    with Client(**{**_settings(), "transport": _ClosingRecorder(engine, closed)}) as c:
        assert c.ping().api_version == "1.41"
        assert closed == []
    async with AsyncClient(**{**_settings(), "transport": _ClosingRecorder(engine, closed)}) as ac:
        assert (await ac.ping()).api_version == "1.41"
    assert closed == ["sync", "async"]
    assert engine.calls() == ["HEAD /_ping"] * 2


async def test_a_session_borrows_the_given_transport_without_closing_it() -> None:
    from buildsdk.transports import BorrowedAsyncTransport

    engine = _Recorder()
    closed: list[str] = []
    inner = _ClosingRecorder(engine, closed)
    async with httpx.AsyncClient(
        transport=BorrowedAsyncTransport(inner), base_url="http://engine"
    ) as http:
        assert (await http.head("/_ping")).status_code == 200
    assert closed == []
    assert engine.calls() == ["HEAD /_ping"]


# -- the Control API path ----------------------------------------------------------------------


async def test_a_pinned_control_api_build_on_an_engine_without_grpc_names_what_is_missing(
    mock_engine: Callable[[Handler], None],
) -> None:
    # Podman answers POST /grpc with 404, as this recorder does; nothing else is sent.
    recorder = _Recorder(api_version="1.41")
    mock_engine(recorder)
    options = BuildOptions(path=str(_STREAMS), version="2", build_endpoint="grpc")

    def sync(client: Client) -> Exception:
        with pytest.raises(NotFound) as info:
            client.build(options).result()
        return info.value

    async def asynchronous(client: AsyncClient) -> Exception:
        with pytest.raises(NotFound) as info:
            await client.build(options).result()
        return info.value

    for error in await _both(sync, asynchronous):
        assert "has no BuildKit Control API (POST /grpc answered 404" in str(error)
        assert "Podman has none" in str(error)
    assert [call for call in recorder.calls() if not call.endswith("/_ping")] == [
        "POST /grpc",
        "POST /grpc",
    ]
    assert not [t for t in threading.enumerate() if t.name.startswith("buildsdk")]


@pytest.mark.parametrize(
    ("api_version", "endpoint", "sent"),
    [
        ("1.45", "auto", "POST /grpc"),
        ("1.41", "auto", "POST /v1.41/build/prune"),
        ("1.45", "build", "POST /v1.45/build/prune"),
        ("1.41", "grpc", "POST /grpc"),
    ],
)
async def test_prune_auto_takes_control_prune_on_docker_23_and_later(
    mock_engine: Callable[[Handler], None], api_version: str, endpoint: Any, sent: str
) -> None:
    # The recorder has no POST /grpc (404), so a Control/Prune shows as that request.
    recorder = _Recorder(api_version=api_version)
    mock_engine(recorder)
    options = PruneOptions(all=True)

    def sync(client: Client) -> object:
        try:
            return client.prune_builds(options, endpoint=endpoint)
        except NotFound as exc:
            return exc

    async def asynchronous(client: AsyncClient) -> object:
        try:
            return await client.prune_builds(options, endpoint=endpoint)
        except NotFound as exc:
            return exc

    outcomes = await _both(sync, asynchronous)
    if sent == "POST /grpc":
        assert all(isinstance(outcome, NotFound) for outcome in outcomes)
    else:
        assert all(outcome == PruneResult() for outcome in outcomes)
    assert [call for call in recorder.calls() if not call.endswith("/_ping")] == [sent, sent]
