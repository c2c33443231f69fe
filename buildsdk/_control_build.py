"""Running one build through BuildKit's Control API, for `Client` and `AsyncClient`.

Theory of operation: a `ControlBuild` opens a Control API channel (`POST /grpc`), asks
`ListWorkers` which image store the engine has (once per client: the client keeps the
answer), checks the options against it before anything else is opened, opens the build's
session on `/session` (context and Dockerfile through `FileSync`, secrets, ssh, registry
logins, and a `FileSend` receiver per export the client writes), then runs `Control/Status`
and `Control/Solve` side by side. Given a `Tunnel` instead of a client's connection, the
same steps run on a channel opened by someone else (`open_control`, or `open_buildkitd` for
a standalone buildkitd, which has no `/session`) with the session served inside a
`Control/Session` call on that channel (`buildkit.direct.solve_dockerfile` runs it so).
Status replies become events (`decode_status_response`) fed to the build's `BuildStream`,
the same collector the `POST /build` path feeds, so iteration, `result()`, `keep_events`
and the log behave alike. Solve's answer (the exporter
response) or its failure (`buildkit.failure`) ends the stream.

`AsyncClient` runs it on its own loop. `Client` runs the same coroutines on a private event
loop in a thread (`SyncControlBuild`), as the session runtime does: there is one
implementation. Closing a build resets the Solve stream (RST_STREAM: BuildKit cancels the
build), closes the session at once, then the channel (a `Tunnel`'s channel is left to its
owner); nothing else outlives it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from buildsdk._build_plan import ControlPlan, describe_control_build
from buildsdk._control_plan import check_control, content_stores, session_options
from buildsdk.buildkit.failure import solve_failure
from buildsdk.buildkit.solve import (
    ImageStore,
    ListWorkersRequest,
    ListWorkersResponse,
    SolveResponse,
    StatusRequest,
    image_store,
)
from buildsdk.errors import GrpcCallError, StreamError

if TYPE_CHECKING:
    import httpx

    from buildsdk import _protocol
    from buildsdk.auth import DockerConfig, RegistryAuth
    from buildsdk.build import BuildOptions
    from buildsdk.buildkit.control import AsyncControlChannel
    from buildsdk.events import BuildEvent
    from buildsdk.session._runtime import AsyncSession, SessionTarget
    from buildsdk.session.filesend import ExportReceiver
    from buildsdk.versions import ApiVersion

__all__ = ["ControlBuild", "SyncControlBuild", "Tunnel"]

logger = logging.getLogger("buildsdk")

_STATUS_GRACE: Final = 5.0
"""Seconds the status stream may go on after Solve answered (it ends right after)."""
_CLOSE_TIMEOUT: Final = 10.0
_T = TypeVar("_T")


@dataclass(frozen=True)
class Tunnel:
    """Where a `ControlBuild` runs when no client's connection is given: on `channel` (its
    owner closes it), with the session served through `Control/Session` on it."""

    channel: AsyncControlChannel
    env: Mapping[str, str] | None = None
    """Where the session reads secrets and ssh sockets named by environment variables."""
    credentials: Mapping[str, RegistryAuth] | None = None
    """Registry logins the session hands to the daemon, by registry host."""
    docker_config: Callable[[], DockerConfig] | None = None
    """The Docker CLI configuration whose credentials the session also offers."""
    image_exporter: str = "moby"
    """The exporter an `ImageOutput` is sent as: `image` on a standalone buildkitd."""


class ControlBuild:
    """One build through `Control/Solve` on the running event loop: `start()`, then
    `next_event()` until it returns None, then the `BuildStream`'s result; `aclose()` at any
    time cancels it.

    A client gives `http`, `target` and `api_version` (its own channel and `/session`); a
    caller with a channel of its own gives `tunnel` and None for those three.
    """

    def __init__(
        self,
        http: httpx.AsyncClient | None,
        target: SessionTarget | None,
        options: BuildOptions,
        api_version: ApiVersion | None,
        stream: _protocol.BuildStream,
        *,
        engine: ImageStore | None = None,
        tunnel: Tunnel | None = None,
    ) -> None:
        if tunnel is None and (http is None or target is None or api_version is None):
            raise ValueError("a ControlBuild needs http, target and api_version, or a tunnel")
        self._http = http
        self._target = target
        self._options = options
        self._api_version = api_version
        self._tunnel = tunnel
        self._stream = stream
        self.engine = engine
        """The engine's image store (asked with `ListWorkers` when not given)."""
        self.plan: ControlPlan | None = None
        """The build as described once its session was open."""
        self._stack = contextlib.AsyncExitStack()
        self._session: AsyncSession | None = None
        self._queue: asyncio.Queue[list[BuildEvent] | None] = asyncio.Queue()
        self._buffer: deque[BuildEvent] = deque()
        self._tasks: list[asyncio.Task[Any]] = []
        self._error: BaseException | None = None
        self._done = False
        self._closed = False

    async def start(self) -> None:
        """Open the channel and the session and start Status and Solve; raises what stops
        the build before it runs (`UnsupportedOption`, an `APIError` from an engine without
        `/grpc`, a refused session)."""
        from buildsdk.buildkit.control import CONTROL_LIST_WORKERS
        from buildsdk.session._runtime import new_session_id

        try:
            channel = await self._channel()
            if self.engine is None:
                answer = await channel.unary(CONTROL_LIST_WORKERS, ListWorkersRequest().encode())
                self.engine = image_store(ListWorkersResponse.decode(answer))
            if self._options.cache_from:
                from buildsdk.session.content import cache_digests

                self._options = await asyncio.to_thread(cache_digests, self._options)
            if self._options.build_contexts:
                from buildsdk.session.content import oci_layout_digests

                self._options = await asyncio.to_thread(oci_layout_digests, self._options)
            exports = check_control(self._options, engine=self.engine)
            receivers = {export.index: export.receiver() for export in exports}
            self._session = await self._open_session(channel, receivers)
            session_id = self._session.options.session_id
            assert session_id is not None
            options = self._options.model_copy(update={"session_id": session_id})
            self.plan = describe_control_build(
                options,
                engine=self.engine,
                session_id=session_id,
                ref=new_session_id(),
                image_exporter=self._tunnel.image_exporter if self._tunnel else "moby",
            )
            status = asyncio.ensure_future(self._status(channel, self.plan))
            solve = asyncio.ensure_future(self._solve(channel, self.plan))
            self._tasks = [solve, status, asyncio.ensure_future(self._finish(solve, status))]
        except BaseException:
            await self.aclose()
            raise

    async def _channel(self) -> AsyncControlChannel:
        from buildsdk.buildkit.control import open_control

        if self._tunnel is not None:
            return self._tunnel.channel
        assert self._http is not None
        assert self._target is not None
        return await self._stack.enter_async_context(
            open_control(self._http, self._target.endpoint, self._target.headers)
        )

    async def _open_session(
        self, channel: AsyncControlChannel, receivers: Mapping[int, ExportReceiver]
    ) -> AsyncSession:
        from buildsdk.session._runtime import open_async_session, open_control_session

        options = session_options(self._options)
        tunnel = self._tunnel
        if tunnel is not None:
            return await open_control_session(
                channel,
                options,
                env=tunnel.env,
                credentials=tunnel.credentials,
                docker_config=tunnel.docker_config,
                receivers=receivers,
            )
        assert self._http is not None
        assert self._target is not None
        assert self._api_version is not None
        return await open_async_session(
            self._http, self._target, options, self._api_version, receivers=receivers
        )

    async def _status(self, channel: AsyncControlChannel, plan: ControlPlan) -> None:
        from buildsdk.buildkit.control import CONTROL_STATUS
        from buildsdk.buildkit.status import decode_status_response

        request = StatusRequest(ref=plan.ref).encode()
        async with channel.server_stream(CONTROL_STATUS, request) as replies:
            async for message in replies:
                self._queue.put_nowait(self._stream.take(decode_status_response(message)))

    async def _solve(self, channel: AsyncControlChannel, plan: ControlPlan) -> SolveResponse:
        from buildsdk.buildkit.control import CONTROL_SOLVE

        return SolveResponse.decode(await channel.unary(CONTROL_SOLVE, plan.solve.encode()))

    async def _finish(self, solve: asyncio.Task[SolveResponse], status: asyncio.Task[None]) -> None:
        assert self.plan is not None
        ref = self.plan.ref
        try:
            try:
                response = await solve
            except GrpcCallError as failed:
                # Status still delivers the failed step (its name, its last lines).
                await asyncio.wait({status}, timeout=_STATUS_GRACE)
                failure = solve_failure(failed.message, failed.details)
                # The error is an event too, as on `POST /build`: renderers print it and
                # its excerpt.
                self._queue.put_nowait(self._stream.end_solve(None, ref=ref, failure=failure))
            else:
                await asyncio.wait({status}, timeout=_STATUS_GRACE)
                if content_stores(self._options):
                    from buildsdk.session.content import finish_content_stores

                    await asyncio.to_thread(
                        finish_content_stores, self._options, response.exporter_response
                    )
                self._queue.put_nowait(self._stream.end_solve(response.exporter_response, ref=ref))
            if status.done() and not status.cancelled() and status.exception() is not None:
                logger.debug("the build's status stream broke: %s", status.exception())
        except BaseException as exc:
            self._error = exc
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            status.cancel()
            self._done = True
            self._queue.put_nowait(None)
            await self._end_session()

    async def _end_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.aclose()

    async def next_event(self) -> BuildEvent | None:
        """The next event, or None when the build ended (its result is then in the stream).

        Raises `StreamError` when the engine or the connection went away, or the build was
        closed.
        """
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._closed:
                raise StreamError("this build was closed")
            batch = await self._queue.get()
            if batch is None:
                self._queue.put_nowait(None)
                if self._error is not None:
                    raise self._error
                if self.closed and not self._done:
                    # Closed from elsewhere (another task, a watchdog thread) while waiting.
                    raise StreamError("this build was closed")
                return None
            self._buffer.extend(batch)

    @property
    def closed(self) -> bool:
        """Whether `aclose` was called (by the owner, another task or another thread)."""
        return self._closed

    async def aclose(self) -> None:
        """Cancel the build if it runs (RST_STREAM on Solve), close the session at once,
        then the channel (unless it was given in a `Tunnel`); waits for every task it
        started."""
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT)
        await self._end_session()
        await self._stack.aclose()
        self._queue.put_nowait(None)
        for task in tasks:
            if task.done() and not task.cancelled():
                # Seen here so that asyncio does not log them: the caller got the outcome.
                task.exception()


class SyncControlBuild:
    """A `ControlBuild` for sync code: the same coroutines on a private event loop in a
    thread of its own; `close()` ends the build, its connections and the thread."""

    def __init__(self, target: SessionTarget) -> None:
        self._target = target
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="buildsdk-control", daemon=True
        )
        self._http: httpx.AsyncClient | None = None
        self.build: ControlBuild | None = None
        """The running build, once `start` made it."""
        self._ended = False
        self._thread.start()

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError:
            coroutine.close()
            raise StreamError("this build was closed") from None
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._ended:
                # `close()` from another thread (a watchdog) ended the loop under the read.
                raise StreamError("this build was closed") from None
            raise
        except BaseException:
            # An interrupt in the caller's thread cancels what runs on the loop.
            future.cancel()
            raise

    def start(self, make: Callable[[httpx.AsyncClient], ControlBuild]) -> ControlBuild:
        """Make the build with `make` (given the loop's HTTP client) and start it."""
        try:
            return self._run(self._start(make))
        except BaseException:
            self.close()
            raise

    async def _start(self, make: Callable[[httpx.AsyncClient], ControlBuild]) -> ControlBuild:
        import httpx

        from buildsdk import transports

        target = self._target
        if target.transport is not None:
            transport: httpx.AsyncBaseTransport = target.transport
            base_url = transports.base_url(target.endpoint)
        else:
            transport, base_url = transports.create_async_transport(
                target.endpoint, connect_timeout=target.connect_timeout, env=target.env
            )
        self._http = httpx.AsyncClient(transport=transport, base_url=base_url)
        self.build = make(self._http)
        await self.build.start()
        return self.build

    def next_event(self) -> BuildEvent | None:
        """The next event, or None at the end (see `ControlBuild.next_event`)."""
        build = self.build
        if build is None or self._ended:
            raise StreamError("this build was closed")
        return self._run(build.next_event())

    async def _shutdown(self) -> None:
        try:
            if self.build is not None:
                await self.build.aclose()
            if self._http is not None:
                await self._http.aclose()
        finally:
            # Done on the loop's own thread: the caller's thread may be running a loop of
            # its own (sync code called from async code), where run_until_complete fails.
            loop = asyncio.get_running_loop()
            await loop.shutdown_asyncgens()
            # open_async_session reads the configuration in the default executor's threads.
            await loop.shutdown_default_executor()

    def close(self) -> None:
        """Cancel the build if it runs and end the loop's thread (bounded: a stuck engine
        cannot hang the caller). Safe to call from another thread and more than once."""
        if self._ended:
            return
        self._ended = True
        loop = self._loop
        if not loop.is_closed() and self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(BaseException):
                future.result(_CLOSE_TIMEOUT * 2)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not threading.current_thread():
            self._thread.join(_CLOSE_TIMEOUT)
        if not self._thread.is_alive() and not loop.is_closed():
            loop.close()
