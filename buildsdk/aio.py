"""`AsyncClient`: the asynchronous mirror of `Client`.

Same methods in the same order as `client.py`; a diff of the two shows `async`, `await`,
the async iterator protocol and two deliberate differences. Credential helpers and file
reads, which block, run in worker threads so the event loop keeps serving other builds.
Only the sync `Build.close` has to wake a read blocked in another thread; here a task is
cancelled instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Literal, NoReturn

import anyio
import httpx

from buildsdk import _protocol
from buildsdk._base_client import (
    CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    BaseClient,
    describe,
    engine_facts,
    session_needs_of,
    transport_errors,
)
from buildsdk._build_plan import BuildPlan
from buildsdk.auth import DockerConfig, RegistryAuth
from buildsdk.build import BuildOptions
from buildsdk.endpoint import Endpoint, TLSConfig
from buildsdk.errors import APIError, BuildSDKError, StreamError
from buildsdk.versions import ApiVersion

# Imported where they are used, as in client.py: the prune models by `prune_builds`, the
# session runtime when a build starts, `buildsdk.transports` when a client is made.
if TYPE_CHECKING:
    from typing_extensions import Self

    from buildsdk._control_build import ControlBuild
    from buildsdk._control_plan import Endpoint as BuildEndpoint
    from buildsdk.buildkit.solve import PruneRequest
    from buildsdk.cache import CachePruneOptions, CachePruneResult, CacheRecord
    from buildsdk.events import BuildEvent
    from buildsdk.prune import PruneOptions, PruneResult
    from buildsdk.results import BuildResult
    from buildsdk.session._runtime import AsyncSession

__all__ = ["AsyncBuild", "AsyncClient"]


class AsyncClient(BaseClient):
    """An asyncio client for an engine's build endpoints; one connection pool.

    The engine is found like the Docker CLI finds it (`host=`, `DOCKER_HOST`, docker
    contexts, TLS environment). The API version is negotiated on first use. `transport=`
    sends every request, BuildKit sessions included, through the given httpx transport
    instead of the one made for the engine (e.g. `httpx.MockTransport` in tests).
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        tls: TLSConfig | bool | None = None,
        context: str | None = None,
        api_version: str | ApiVersion | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        credentials: Mapping[str, RegistryAuth] | None = None,
        config: DockerConfig | None = None,
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            host,
            tls=tls,
            context=context,
            api_version=api_version,
            timeout=timeout,
            credentials=credentials,
            config=config,
            env=env,
        )
        # Imported here, not with this module: it imports httpcore (and h2 when installed).
        from buildsdk import transports

        if transport is None:
            # env= also decides the proxy of a tcp engine (HTTPS_PROXY, NO_PROXY), as for
            # the CLI.
            transport, base_url = transports.create_async_transport(
                self.endpoint, connect_timeout=CONNECT_TIMEOUT, env=self._env
            )
        else:
            base_url = transports.base_url(self.endpoint)
        self._http = httpx.AsyncClient(transport=transport, base_url=base_url, timeout=None)
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every pooled connection; the client cannot be used afterwards."""
        await self._http.aclose()

    async def _send(
        self,
        request: _protocol.Request,
        timeout: httpx.Timeout,
        *,
        content: AsyncIterator[bytes] | None = None,
    ) -> httpx.Response:
        http_request = self._http.build_request(
            request.method,
            request.path,
            params=list(request.params),
            headers={**self._headers(), **request.headers},
            content=content,
            timeout=timeout,
        )
        with transport_errors(self.endpoint):
            return await self._http.send(http_request, stream=True)

    async def _check(self, request: _protocol.Request, response: httpx.Response) -> None:
        if not _protocol.is_error_status(response.status_code):
            return
        try:
            with transport_errors(self.endpoint):
                body = await _read_capped(response)
        finally:
            await response.aclose()
        raise _protocol.error_from_response(
            response.status_code,
            response.headers,
            body,
            method=request.method,
            path=request.path,
            url=_protocol.route_url(self.endpoint, request.path),
        )

    async def _call(self, request: _protocol.Request, *, slow: bool = False) -> bytes:
        timeout = self._prune_timeout() if slow else self._short_timeout()
        response = await self._send(request, timeout)
        await self._check(request, response)
        try:
            with transport_errors(self.endpoint):
                return await response.aread()
        finally:
            await response.aclose()

    async def _send_build(self, plan: BuildPlan) -> httpx.Response:
        body = plan.context.__aiter__() if plan.context is not None else None
        try:
            response = await self._send(plan.request, self._build_timeout(plan), content=body)
        except StreamError as broken:
            if body is None:
                raise
            # The engine may have refused the query while the body was being sent, and the
            # answer been lost with the connection: ask again without a body.
            await self._raise_rejection(plan.request, broken)
        await self._check(plan.request, response)
        return response

    async def _raise_rejection(self, request: _protocol.Request, broken: StreamError) -> NoReturn:
        probe = _protocol.upload_probe(request)
        try:
            response = await self._send(probe, self._short_timeout(), content=None)
        except BuildSDKError:
            raise broken from None
        if not _protocol.probe_rejected(response.status_code):
            # Closing ends the empty build a good query started.
            await response.aclose()
            raise broken
        try:
            await self._check(probe, response)
        except APIError as rejected:
            raise rejected from broken
        raise broken

    async def ping(self) -> _protocol.PingResult:
        """Ask the engine who it is (`HEAD /_ping`, then `GET` if HEAD is not answered)."""
        request = _protocol.ping_request(base_path=self.endpoint.base_path)
        response = await self._send(request, self._short_timeout())
        await response.aclose()
        if response.status_code == 200:
            return self._remember_ping(_protocol.parse_ping(response.headers))
        request = _protocol.ping_get_request(base_path=self.endpoint.base_path)
        response = await self._send(request, self._short_timeout())
        if _protocol.ping_failed(response.status_code, response.headers):
            # Reads the body for the message (a proxy's page, a router's 404), then closes.
            await self._check(request, response)
        await response.aclose()
        return self._remember_ping(_protocol.parse_ping(response.headers))

    async def api_version(self) -> ApiVersion:
        """The API version this client speaks, negotiated with the engine on first use."""
        if self._negotiated is None:
            async with self._lock:
                if self._negotiated is None:
                    self._negotiated = self._negotiate_with(await self.ping())
        return self._negotiated

    async def version(self) -> _protocol.VersionInfo:
        """The engine's release, API range, OS and components (`GET /version`)."""
        request = _protocol.version_request(
            await self.api_version(),
            base_path=self.endpoint.base_path,
        )
        body = await self._call(request)
        return _protocol.VersionInfo.model_validate(_protocol.parse_json_object(body, "version"))

    async def _endpoint_for(self, options: BuildOptions) -> BuildEndpoint:
        """The endpoint a build of `options` takes on this engine (`choose_endpoint`); asks
        `/_ping` only when negotiation has not asked it (a pinned API version)."""
        from buildsdk._control_plan import choose_endpoint

        chosen = choose_endpoint(options)
        if chosen == "grpc" or options.build_endpoint != "auto" or options.version != "2":
            return chosen
        spoken = await self.api_version()
        ping = self._last_ping if self._last_ping is not None else await self.ping()
        return choose_endpoint(options, engine_facts(ping, spoken))

    async def _start_build(
        self, options: BuildOptions, stream: _protocol.BuildStream, sessions: list[AsyncSession]
    ) -> httpx.Response:
        """Send a build of `options` (opening its session into `sessions` if it needs one)
        and return the engine's streaming answer, checked."""
        from buildsdk.session._runtime import open_async_session

        api_version = await self.api_version()
        stream.use_api_version(api_version)
        sent = options
        # Reading the Docker configuration may block.
        if await anyio.to_thread.run_sync(session_needs_of, self, options, api_version):
            session = await open_async_session(
                self._http, self._session_target(), options, api_version
            )
            sessions.append(session)
            sent = session.options
        try:
            # Reading .dockerignore, walking the tree and running credential helpers block.
            plan = await anyio.to_thread.run_sync(describe, self, sent, api_version)
            return await self._send_build(plan)
        except BaseException:
            await _close_sessions(sessions)
            raise

    async def _start_control(
        self, options: BuildOptions, stream: _protocol.BuildStream
    ) -> ControlBuild:
        """Start a build of `options` through the Control API on this loop; its events are
        read from the returned build."""
        from buildsdk._control_build import ControlBuild

        api_version = await self.api_version()
        build = ControlBuild(
            self._http,
            self._session_target(),
            options,
            api_version,
            stream,
            engine=self._image_store,
        )
        await build.start()
        self._image_store = build.engine
        return build

    def build(self, options: BuildOptions, *, keep_events: bool = True) -> AsyncBuild:
        """Start describing a build; it is sent when the returned `AsyncBuild` is entered or read.

        With `keep_events=False` the result keeps the log text but not every event, for
        very chatty builds.
        """
        return AsyncBuild(self, options, keep_events=keep_events)

    async def prune_builds(
        self,
        options: PruneOptions | None = None,
        *,
        endpoint: Literal["auto", "build", "grpc"] = "build",
    ) -> PruneResult:
        """Remove build cache and report what was reclaimed: through `POST /build/prune`
        (`endpoint="build"`, the default), BuildKit's `Control/Prune` (`"grpc"`), or the latter
        where the engine offers it and every option maps to it (`"auto"`, see
        `buildsdk.cache.prune_endpoint`)."""
        from buildsdk.cache import engine_prune_request
        from buildsdk.prune import PruneOptions, PruneResult

        options = options or PruneOptions()
        chosen = await self.prune_endpoint(options, endpoint)
        control = engine_prune_request(options) if chosen == "grpc" else None
        if control is not None:
            pruned = await self._prune_control(control)
            return PruneResult(
                caches_deleted=pruned.caches_deleted, space_reclaimed=pruned.space_reclaimed
            )
        request = _protocol.prune_request(
            options, await self.api_version(), base_path=self.endpoint.base_path
        )
        body = await self._call(request, slow=True)
        return PruneResult.from_json(_protocol.parse_json_object(body, "prune"))

    async def prune_endpoint(
        self, options: PruneOptions, endpoint: Literal["auto", "build", "grpc"] = "auto"
    ) -> BuildEndpoint:
        """Where `prune_builds(options, endpoint=endpoint)` sends its prune on this engine
        ("build" or "grpc"); `"auto"` asks `/_ping`. Raises `ValueError` when `"grpc"` is
        pinned for options `Control/Prune` cannot carry."""
        from buildsdk.cache import prune_endpoint

        if endpoint != "auto":
            return prune_endpoint(options, None, endpoint)
        spoken = await self.api_version()
        ping = self._last_ping if self._last_ping is not None else await self.ping()
        return prune_endpoint(options, engine_facts(ping, spoken), endpoint)

    async def cancel_build(self, build_id: str) -> None:
        """Ask the engine to stop the BuildKit build started with `build_id`."""
        request = _protocol.cancel_request(
            build_id, await self.api_version(), base_path=self.endpoint.base_path
        )
        await self._call(request)

    async def disk_usage(self, filters: Mapping[str, str] | None = None) -> list[CacheRecord]:
        """List the engine's build cache through BuildKit's `Control/DiskUsage`, as
        `docker buildx du --filter KEY=VALUE` does (see `buildsdk.cache` for the filters).

        Needs the engine's `POST /grpc` (Docker 18.09+ with BuildKit) and the `session`
        extra; an engine without it raises `APIError`, a BuildKit error `GrpcCallError`.
        """
        from buildsdk.buildkit.control import CONTROL_DISK_USAGE, open_control
        from buildsdk.cache import disk_usage_records, disk_usage_request

        request = disk_usage_request(filters)
        async with open_control(self._http, self.endpoint, self._headers()) as channel:
            reply = await channel.unary(CONTROL_DISK_USAGE, request.encode())
        return disk_usage_records(reply)

    async def prune_cache(self, options: CachePruneOptions | None = None) -> CachePruneResult:
        """Remove build cache through BuildKit's `Control/Prune`, as `docker buildx prune -f`
        does, and return every removed record.

        Unlike `prune_builds` (`POST /build/prune`, ids and a total only) each removed record
        comes back typed. Needs the engine's `POST /grpc`, like `disk_usage`.
        """
        from buildsdk.cache import prune_request

        request = prune_request(options)
        return await self._prune_control(request)

    async def _prune_control(self, request: PruneRequest) -> CachePruneResult:
        """Send `request` to `Control/Prune` and collect the removed records."""
        from buildsdk.buildkit.control import CONTROL_PRUNE, open_control
        from buildsdk.cache import CachePruneResult, pruned_record

        async with (
            open_control(self._http, self.endpoint, self._headers()) as channel,
            channel.server_stream(CONTROL_PRUNE, request.encode()) as replies,
        ):
            records = [pruned_record(reply) async for reply in replies]
        return CachePruneResult(records=records)


class AsyncBuild:
    """One build: an async iterator of `BuildEvent` and an async context manager.

    The request is sent when the `async with` block is entered (or on first iteration);
    leaving the block, breaking out of the loop or cancelling the task closes the
    connection, which stops the upload and, for the engine, cancels the build.
    """

    def __init__(self, client: AsyncClient, options: BuildOptions, *, keep_events: bool) -> None:
        from buildsdk._control_plan import choose_endpoint

        self._client = client
        self.options = options
        self._keep_events = keep_events
        # Provisional until the build starts: "auto" may still choose the Control API once
        # the engine says what it offers.
        self._control_api = choose_endpoint(options) == "grpc"
        self._stream = _protocol.BuildStream.for_options(
            options, keep_events=keep_events, control_api=self._control_api
        )
        self._control: ControlBuild | None = None
        self._response: httpx.Response | None = None
        self._events: AsyncGenerator[BuildEvent, None] | None = None
        self._closed = False
        # See `Build`: the event generator shares this list, not `self`.
        self._sessions: list[AsyncSession] = []

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _start(self) -> None:
        if self._events is not None:
            return
        if self._closed:
            raise StreamError("this build was closed; start a new one with client.build()")
        client = self._client
        if not self._control_api and await client._endpoint_for(self.options) == "grpc":
            self._control_api = True
            self._stream = _protocol.BuildStream.for_options(
                self.options, keep_events=self._keep_events, control_api=True
            )
        if self._control_api:
            self._control = await client._start_control(self.options, self._stream)
            self._events = _control_events(self._control)
            return
        response = await client._start_build(self.options, self._stream, self._sessions)
        self._response = response
        self._events = _read_events(response, self._stream, client.endpoint, self._sessions)

    def __aiter__(self) -> AsyncIterator[BuildEvent]:
        return self

    async def __anext__(self) -> BuildEvent:
        await self._start()
        assert self._events is not None
        return await self._events.__anext__()

    async def result(self) -> BuildResult:
        """Read what is left and return the `BuildResult`, or raise `BuildError`."""
        await self._start()
        assert self._events is not None
        async for _ in self._events:
            pass
        result = self._stream.result()
        lookup = self._stream.image_lookup(base_path=self._client.endpoint.base_path)
        if lookup is not None:
            body = await self._client._call(lookup)
            result = self._stream.resolve_image(_protocol.parse_json_object(body, "image inspect"))
        return result

    async def close(self) -> None:
        """Stop reading and close the connection (the engine cancels a running build)."""
        self._closed = True
        if self._control is not None:
            await self._control.aclose()
        if self._response is not None:
            await self._response.aclose()
        if self._events is not None:
            await self._events.aclose()
        await _close_sessions(self._sessions)


async def _read_events(
    response: httpx.Response,
    stream: _protocol.BuildStream,
    endpoint: Endpoint,
    sessions: list[AsyncSession],
) -> AsyncGenerator[BuildEvent, None]:
    try:
        with transport_errors(endpoint):
            async for chunk in response.aiter_raw():
                for event in stream.feed(chunk):
                    yield event
        for event in stream.end():
            yield event
    finally:
        await response.aclose()
        await _close_sessions(sessions)


async def _control_events(build: ControlBuild) -> AsyncGenerator[BuildEvent, None]:
    try:
        while (event := await build.next_event()) is not None:
            yield event
    finally:
        await build.aclose()


async def _close_sessions(sessions: list[AsyncSession]) -> None:
    while sessions:
        await sessions.pop().aclose()


async def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) >= _protocol.ERROR_BODY_LIMIT:
            break
    return bytes(body)
