"""`Client`: the synchronous door to an engine's build endpoints.

Everything protocol-shaped is decided in `_protocol` (shared with `AsyncClient`); this
module only moves bytes with httpx and keeps the connection pool. `BaseClient`
(`_base_client.py`) holds the state both clients share and that needs no socket: where the
engine is, which API version to speak, which credentials and proxies the Docker CLI's
configuration gives.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
import threading
from collections.abc import Generator, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Literal, NoReturn

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
from buildsdk.endpoint import (
    Endpoint,
    TLSConfig,
)
from buildsdk.errors import APIError, BuildSDKError, StreamError
from buildsdk.versions import ApiVersion

# Imported where they are used, so `from buildsdk import Client` does not pay for them:
# the prune and cache models by the prune methods, the session runtime when a build starts,
# the context tar (and .dockerignore) code when a build is sent, and `buildsdk.transports`
# (httpcore, and h2 when installed) when a client is made.
if TYPE_CHECKING:
    from typing_extensions import Self

    from buildsdk._control_build import SyncControlBuild
    from buildsdk._control_plan import Endpoint as BuildEndpoint
    from buildsdk.buildkit.solve import PruneRequest
    from buildsdk.cache import CachePruneOptions, CachePruneResult, CacheRecord
    from buildsdk.events import BuildEvent
    from buildsdk.prune import PruneOptions, PruneResult
    from buildsdk.results import BuildResult
    from buildsdk.session._runtime import SyncSession

__all__ = ["Build", "Client", "call", "send_build"]


class Client(BaseClient):
    """A synchronous client for an engine's build endpoints; one connection pool, thread-safe.

    The engine is found like the Docker CLI finds it (`host=`, `DOCKER_HOST`, docker
    contexts, TLS environment). The API version is negotiated on first use. `transport=`
    sends every request through the given httpx transport instead of the one made for the
    engine (e.g. `httpx.MockTransport` in tests). A BuildKit session runs on asyncio: it uses
    that transport too when it is also an async one, and connects to the engine otherwise.
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
        transport: httpx.BaseTransport | None = None,
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
            transport, base_url = transports.create_transport(
                self.endpoint, connect_timeout=CONNECT_TIMEOUT, env=self._env
            )
        else:
            base_url = transports.base_url(self.endpoint)
            # A session runs on asyncio: it can use the given transport when that is also an
            # async one (httpx.MockTransport is both).
            self._session_transport = (
                transports.BorrowedAsyncTransport(transport)
                if isinstance(transport, httpx.AsyncBaseTransport)
                else None
            )
        self._http = httpx.Client(transport=transport, base_url=base_url, timeout=None)
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection; the client cannot be used afterwards."""
        self._http.close()

    def _send(
        self,
        request: _protocol.Request,
        timeout: httpx.Timeout,
        *,
        content: Iterator[bytes] | None = None,
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
            return self._http.send(http_request, stream=True)

    def _check(self, request: _protocol.Request, response: httpx.Response) -> None:
        if not _protocol.is_error_status(response.status_code):
            return
        try:
            with transport_errors(self.endpoint):
                body = _read_capped(response)
        finally:
            response.close()
        raise _protocol.error_from_response(
            response.status_code,
            response.headers,
            body,
            method=request.method,
            path=request.path,
            url=_protocol.route_url(self.endpoint, request.path),
        )

    def _call(self, request: _protocol.Request, *, slow: bool = False) -> bytes:
        timeout = self._prune_timeout() if slow else self._short_timeout()
        response = self._send(request, timeout)
        self._check(request, response)
        try:
            with transport_errors(self.endpoint):
                return response.read()
        finally:
            response.close()

    def _send_build(self, plan: BuildPlan) -> httpx.Response:
        body = iter(plan.context) if plan.context is not None else None
        try:
            response = self._send(plan.request, self._build_timeout(plan), content=body)
        except StreamError as broken:
            if body is None:
                raise
            # The engine may have refused the query while the body was being sent, and the
            # answer been lost with the connection: ask again without a body.
            self._raise_rejection(plan.request, broken)
        self._check(plan.request, response)
        return response

    def _raise_rejection(self, request: _protocol.Request, broken: StreamError) -> NoReturn:
        probe = _protocol.upload_probe(request)
        try:
            response = self._send(probe, self._short_timeout(), content=None)
        except BuildSDKError:
            raise broken from None
        if not _protocol.probe_rejected(response.status_code):
            # Closing ends the empty build a good query started.
            response.close()
            raise broken
        try:
            self._check(probe, response)
        except APIError as rejected:
            raise rejected from broken
        raise broken

    def ping(self) -> _protocol.PingResult:
        """Ask the engine who it is (`HEAD /_ping`, then `GET` if HEAD is not answered)."""
        request = _protocol.ping_request(base_path=self.endpoint.base_path)
        response = self._send(request, self._short_timeout())
        response.close()
        if response.status_code == 200:
            return self._remember_ping(_protocol.parse_ping(response.headers))
        request = _protocol.ping_get_request(base_path=self.endpoint.base_path)
        response = self._send(request, self._short_timeout())
        if _protocol.ping_failed(response.status_code, response.headers):
            # Reads the body for the message (a proxy's page, a router's 404), then closes.
            self._check(request, response)
        response.close()
        return self._remember_ping(_protocol.parse_ping(response.headers))

    def api_version(self) -> ApiVersion:
        """The API version this client speaks, negotiated with the engine on first use."""
        if self._negotiated is None:
            with self._lock:
                if self._negotiated is None:
                    self._negotiated = self._negotiate_with(self.ping())
        return self._negotiated

    def version(self) -> _protocol.VersionInfo:
        """The engine's release, API range, OS and components (`GET /version`)."""
        request = _protocol.version_request(
            self.api_version(),
            base_path=self.endpoint.base_path,
        )
        body = self._call(request)
        return _protocol.VersionInfo.model_validate(_protocol.parse_json_object(body, "version"))

    def _endpoint_for(self, options: BuildOptions) -> BuildEndpoint:
        """The endpoint a build of `options` takes on this engine (`choose_endpoint`); asks
        `/_ping` only when negotiation has not asked it (a pinned API version)."""
        from buildsdk._control_plan import choose_endpoint

        chosen = choose_endpoint(options)
        if chosen == "grpc" or options.build_endpoint != "auto" or options.version != "2":
            return chosen
        spoken = self.api_version()
        ping = self._last_ping if self._last_ping is not None else self.ping()
        return choose_endpoint(options, engine_facts(ping, spoken))

    def _start_build(
        self, options: BuildOptions, stream: _protocol.BuildStream, sessions: list[SyncSession]
    ) -> httpx.Response:
        """Send a build of `options` (opening its session into `sessions` if it needs one)
        and return the engine's streaming answer, checked."""
        from buildsdk.session._runtime import open_session

        api_version = self.api_version()
        stream.use_api_version(api_version)
        sent = options
        if session_needs_of(self, options, api_version) is not None:
            session = open_session(self._session_target(), options, api_version)
            sessions.append(session)
            sent = session.options
        try:
            return self._send_build(describe(self, sent, api_version))
        except BaseException:
            _close_sessions(sessions)
            raise

    def _start_control(
        self, options: BuildOptions, stream: _protocol.BuildStream
    ) -> SyncControlBuild:
        """Start a build of `options` through the Control API on a private loop's thread;
        its events are read from the returned runner."""
        from buildsdk._control_build import ControlBuild, SyncControlBuild

        api_version = self.api_version()
        target = self._session_target()
        runner = SyncControlBuild(target)
        build = runner.start(
            lambda http: ControlBuild(
                http, target, options, api_version, stream, engine=self._image_store
            )
        )
        self._image_store = build.engine
        return runner

    def build(self, options: BuildOptions, *, keep_events: bool = True) -> Build:
        """Start describing a build; it is sent when the returned `Build` is entered or read.

        With `keep_events=False` the result keeps the log text but not every event, for
        very chatty builds.
        """
        return Build(self, options, keep_events=keep_events)

    def prune_builds(
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
        chosen = self.prune_endpoint(options, endpoint)
        control = engine_prune_request(options) if chosen == "grpc" else None
        if control is not None:
            pruned = self._prune_control(control)
            return PruneResult(
                caches_deleted=pruned.caches_deleted, space_reclaimed=pruned.space_reclaimed
            )
        request = _protocol.prune_request(
            options, self.api_version(), base_path=self.endpoint.base_path
        )
        body = self._call(request, slow=True)
        return PruneResult.from_json(_protocol.parse_json_object(body, "prune"))

    def prune_endpoint(
        self, options: PruneOptions, endpoint: Literal["auto", "build", "grpc"] = "auto"
    ) -> BuildEndpoint:
        """Where `prune_builds(options, endpoint=endpoint)` sends its prune on this engine
        ("build" or "grpc"); `"auto"` asks `/_ping`. Raises `ValueError` when `"grpc"` is
        pinned for options `Control/Prune` cannot carry."""
        from buildsdk.cache import prune_endpoint

        if endpoint != "auto":
            return prune_endpoint(options, None, endpoint)
        spoken = self.api_version()
        ping = self._last_ping if self._last_ping is not None else self.ping()
        return prune_endpoint(options, engine_facts(ping, spoken), endpoint)

    def cancel_build(self, build_id: str) -> None:
        """Ask the engine to stop the BuildKit build started with `build_id`."""
        request = _protocol.cancel_request(
            build_id, self.api_version(), base_path=self.endpoint.base_path
        )
        self._call(request)

    def disk_usage(self, filters: Mapping[str, str] | None = None) -> list[CacheRecord]:
        """List the engine's build cache through BuildKit's `Control/DiskUsage`, as
        `docker buildx du --filter KEY=VALUE` does (see `buildsdk.cache` for the filters).

        Needs the engine's `POST /grpc` (Docker 18.09+ with BuildKit) and the `session`
        extra; an engine without it raises `APIError`, a BuildKit error `GrpcCallError`.
        """
        from buildsdk.buildkit.control import CONTROL_DISK_USAGE, ControlChannel
        from buildsdk.cache import disk_usage_records, disk_usage_request

        request = disk_usage_request(filters)
        with ControlChannel(
            self.endpoint,
            headers=self._headers(),
            connect_timeout=CONNECT_TIMEOUT,
            env=self._env,
            transport=self._session_transport,
        ) as channel:
            reply = channel.unary(CONTROL_DISK_USAGE, request.encode())
        return disk_usage_records(reply)

    def prune_cache(self, options: CachePruneOptions | None = None) -> CachePruneResult:
        """Remove build cache through BuildKit's `Control/Prune`, as `docker buildx prune -f`
        does, and return every removed record.

        Unlike `prune_builds` (`POST /build/prune`, ids and a total only) each removed record
        comes back typed. Needs the engine's `POST /grpc`, like `disk_usage`.
        """
        from buildsdk.cache import prune_request

        request = prune_request(options)
        return self._prune_control(request)

    def _prune_control(self, request: PruneRequest) -> CachePruneResult:
        """Send `request` to `Control/Prune` and collect the removed records."""
        from buildsdk.buildkit.control import CONTROL_PRUNE, ControlChannel
        from buildsdk.cache import CachePruneResult, pruned_record

        with (
            ControlChannel(
                self.endpoint,
                headers=self._headers(),
                connect_timeout=CONNECT_TIMEOUT,
                env=self._env,
                transport=self._session_transport,
            ) as channel,
            channel.server_stream(CONTROL_PRUNE, request.encode()) as replies,
        ):
            records = [pruned_record(reply) for reply in replies]
        return CachePruneResult(records=records)


def send_build(client: Client, plan: BuildPlan) -> httpx.Response:
    """Send a described build on `client`; returns the engine's streaming answer once its
    status is checked (an error status raises `APIError`). For callers that read the raw
    answer themselves, as docker-py's compat layer does; the caller closes it."""
    return client._send_build(plan)


def endpoint_for(client: Client, options: BuildOptions) -> BuildEndpoint:
    """The endpoint `client.build(options)` would take on `client`'s engine ("build" or
    "grpc"), as `choose_endpoint` decides with the engine's `/_ping` facts."""
    return client._endpoint_for(options)


def call(client: Client, request: _protocol.Request, *, slow: bool = False) -> bytes:
    """Send a short request description on `client` and return the answer's body; an error
    status raises `APIError`. A `slow` call (a prune) has no read timeout."""
    return client._call(request, slow=slow)


class Build:
    """One build: an iterator of `BuildEvent` and a context manager.

    The request is sent when the `with` block is entered (or on first iteration); leaving
    the block or breaking out of the loop closes the connection, which stops the upload
    and, for the engine, cancels the build.
    """

    def __init__(self, client: Client, options: BuildOptions, *, keep_events: bool) -> None:
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
        self._control: SyncControlBuild | None = None
        self._response: httpx.Response | None = None
        self._events: Generator[BuildEvent, None, None] | None = None
        self._closed = False
        # Holds the open session, if any: the event generator shares this list, not `self`,
        # so a Build dropped after `break` is freed (and its connection closed) at once
        # instead of waiting for the garbage collector to break a cycle.
        self._sessions: list[SyncSession] = []

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        if self._events is not None:
            return
        if self._closed:
            raise StreamError("this build was closed; start a new one with client.build()")
        client = self._client
        if not self._control_api and client._endpoint_for(self.options) == "grpc":
            self._control_api = True
            self._stream = _protocol.BuildStream.for_options(
                self.options, keep_events=self._keep_events, control_api=True
            )
        if self._control_api:
            self._control = client._start_control(self.options, self._stream)
            self._events = _control_events(self._control)
            return
        response = client._start_build(self.options, self._stream, self._sessions)
        self._response = response
        self._events = _read_events(response, self._stream, client.endpoint, self._sessions)

    def __iter__(self) -> Iterator[BuildEvent]:
        return self

    def __next__(self) -> BuildEvent:
        self._start()
        assert self._events is not None
        return next(self._events)

    def result(self) -> BuildResult:
        """Read what is left and return the `BuildResult`, or raise `BuildError`."""
        self._start()
        assert self._events is not None
        for _ in self._events:
            pass
        result = self._stream.result()
        lookup = self._stream.image_lookup(base_path=self._client.endpoint.base_path)
        if lookup is not None:
            body = self._client._call(lookup)
            result = self._stream.resolve_image(_protocol.parse_json_object(body, "image inspect"))
        return result

    def close(self) -> None:
        """Stop reading and close the connection (the engine cancels a running build).

        May be called from another thread (a watchdog): the read blocked there then ends
        with `StreamError`, and that thread closes the response itself.
        """
        self._closed = True
        if self._control is not None:
            # Thread-safe: a read blocked in another thread then ends with StreamError.
            self._control.close()
        running = self._events is not None and (
            inspect.getgeneratorstate(self._events) == inspect.GEN_RUNNING
        )
        if running:
            # Closing a socket does not wake a recv() blocked on it in another thread, and
            # the generator cannot be closed while it runs; shutting the socket down does
            # wake the reader, whose own `finally` then closes the response.
            _shutdown_socket(self._response)
            return
        if self._response is not None:
            self._response.close()
        if self._events is not None:
            self._events.close()
        _close_sessions(self._sessions)


def _read_events(
    response: httpx.Response,
    stream: _protocol.BuildStream,
    endpoint: Endpoint,
    sessions: list[SyncSession],
) -> Generator[BuildEvent, None, None]:
    try:
        with transport_errors(endpoint):
            for chunk in response.iter_raw():
                yield from stream.feed(chunk)
        yield from stream.end()
    finally:
        response.close()
        _close_sessions(sessions)


def _control_events(runner: SyncControlBuild) -> Generator[BuildEvent, None, None]:
    try:
        while (event := runner.next_event()) is not None:
            yield event
    finally:
        runner.close()


def _close_sessions(sessions: list[SyncSession]) -> None:
    while sessions:
        sessions.pop().close()


def _shutdown_socket(response: httpx.Response | None) -> None:
    stream = response.extensions.get("network_stream") if response is not None else None
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) >= _protocol.ERROR_BODY_LIMIT:
            break
    return bytes(body)
