"""Opening, running and closing one build's session, for `Client` and `AsyncClient`.

A session is a second connection to the engine: `POST /session` upgraded to HTTP/2, on
which the engine calls buildsdk back while the build runs on the first connection. Both
clients use the same asyncio server (`SessionServer`): `AsyncClient` runs it as a task on
its loop, over a connection of its own pool; `Client` runs it on a private event loop in a
thread, over one async connection made for it. The build request is sent only once the
engine accepted the session (101), and the session is closed when the build's stream ends
or the build is closed or cancelled; nothing it opened outlives it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import secrets as _random
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from buildsdk._named_contexts import local_dirs
from buildsdk.build import BuildOptions, BuildOutput
from buildsdk.errors import APIError, SessionError, api_error_for_status
from buildsdk.session import h2_available, require_h2

# Clients import this module for every build, but only a build with a session runs the
# asyncio server: asyncio (and concurrent.futures) are imported by the code that opens,
# runs and closes a session, so a build without one never imports them.
if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import Future

    import httpx

    from buildsdk.auth import DockerConfig, RegistryAuth
    from buildsdk.buildkit.control import AsyncControlChannel
    from buildsdk.endpoint import Endpoint
    from buildsdk.session._server import Handler, SessionServer
    from buildsdk.session.filesend import ExportReceiver
    from buildsdk.session.filesync import FileSyncService
    from buildsdk.versions import ApiVersion

__all__ = [
    "AsyncSession",
    "SessionTarget",
    "SyncSession",
    "client_exports",
    "control_session_metadata",
    "needs_session",
    "new_session_id",
    "open_async_session",
    "open_control_session",
    "open_session",
    "session_is_optional",
    "session_methods",
    "session_transfer",
    "shared_key",
    "written_by_client",
]

logger = logging.getLogger("buildsdk.session")

_BASE36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_UPGRADE_TIMEOUT: Final = 30.0
_CLOSE_TIMEOUT: Final = 5.0


def needs_session(
    options: BuildOptions,
    *,
    config: DockerConfig | None = None,
    credentials: Mapping[str, RegistryAuth] | None = None,
) -> bool:
    """Whether a build of `options` gets a session: a BuildKit build with secrets, ssh or a
    session context transfer; or, when `h2` is installed, one that may need a registry login
    (credentials in code or in the Docker configuration). A build that names its own
    `session_id` gets none."""
    if options.version != "2" or options.session_id is not None:
        return False
    if options.secrets or options.ssh or session_transfer(options):
        return True
    if written_by_client(options):
        return True
    has_auth = bool(credentials) or (config is not None and config.contains_auth)
    return has_auth and h2_available()


def session_transfer(options: BuildOptions) -> bool:
    """Whether a build of `options` sends its context through a session: asked for with
    `context_transfer="session"`, or chosen by `"auto"` for a BuildKit build of a local
    directory (uncompressed, without a session of the caller's own) when `h2` is installed."""
    if options.context_transfer != "auto":
        return options.context_transfer == "session"
    return (
        options.version == "2"
        and options.session_id is None
        and options.path is not None
        and options.remote_url is None
        and not options.custom_context
        and not options.gzip
        and h2_available()
    )


def session_is_optional(options: BuildOptions) -> bool:
    """Whether a build of `options` goes on without a session on an engine that has none:
    true when the session would only serve registry logins or an automatic context transfer."""
    return not (
        options.secrets
        or options.ssh
        or options.context_transfer == "session"
        or written_by_client(options)
    )


_CLIENT_EXPORTERS: Final = ("local", "tar")
# What the Control API hands over through FileSend when a generic output names a dest.
_ARCHIVE_EXPORTERS: Final = ("local", "tar", "oci", "docker")


def written_by_client(options: BuildOptions) -> bool:
    """Whether a BuildKit build of `options` has an output the client writes: `local` or
    `tar` with a `dest`, which the engine hands over through the session (`FileSend`)."""
    from buildsdk.outputs import LocalOutput, TarOutput

    return options.version == "2" and any(
        isinstance(output, (LocalOutput, TarOutput))
        or (
            isinstance(output, BuildOutput)
            and output.type in _CLIENT_EXPORTERS
            and "dest" in output.attrs
        )
        for output in options.outputs
    )


def client_exports(
    options: BuildOptions,
) -> tuple[tuple[BuildOutput, ...], dict[int, ExportReceiver]]:
    """The outputs to send and a receiver per export the client writes, as the Docker CLI
    (20.10) does on `POST /build`: `local` loses its `dest` (it is the client's directory);
    `tar` keeps it (the engine ignores it); `dest="-"` is standard output. Typed outputs
    (`buildsdk.outputs`) are sent in the generic shape the engine reads. The receivers are
    chosen by `filesend.export_receiver`, as for a Control API build."""
    from buildsdk.outputs import LocalOutput, TarOutput
    from buildsdk.session.filesend import export_receiver

    outputs: list[BuildOutput] = []
    receivers: dict[int, ExportReceiver] = {}
    for index, output in enumerate(options.outputs):
        if isinstance(output, LocalOutput):
            outputs.append(BuildOutput(type="local", attrs=output.exporter_attrs()))
            receivers[index] = export_receiver("local", os.fspath(output.dest))
            continue
        if isinstance(output, TarOutput):
            target = output.dest
            if isinstance(target, (str, os.PathLike)):
                path = os.fspath(target)
                attrs = {**output.exporter_attrs(), "dest": path}
                receivers[index] = export_receiver("tar", path)
            else:
                attrs = {**output.exporter_attrs(), "dest": "-"}
                receivers[index] = export_receiver("tar", target)
            outputs.append(BuildOutput(type="tar", attrs=attrs))
            continue
        if not isinstance(output, BuildOutput):
            outputs.append(BuildOutput(type=output.exporter_type, attrs=output.exporter_attrs()))
            continue
        dest = output.attrs.get("dest")
        if output.type not in _CLIENT_EXPORTERS or dest is None:
            outputs.append(output)
            continue
        if output.type == "local":
            attrs = {key: value for key, value in output.attrs.items() if key != "dest"}
            outputs.append(output.model_copy(update={"attrs": attrs}))
            receivers[index] = export_receiver("local", dest)
            continue
        outputs.append(output)
        receivers[index] = export_receiver(output.type, dest)
    return tuple(outputs), receivers


def new_session_id() -> str:
    """A fresh random id in BuildKit's own shape (25 base-36 characters), for a session or a
    build's `Ref`."""
    # The engine accepts any unique string; BuildKit's shape keeps its logs familiar.
    return "".join(_random.choice(_BASE36) for _ in range(25))


def session_methods(options: BuildOptions, *, control_api: bool = False) -> tuple[str, ...]:
    """The gRPC methods a session for `options` exposes, in the order its headers list them.

    Secrets, ssh and registry auth always; `FileSend` when the client writes an export;
    `FileSync` when the context goes through the session. With `control_api`, exports are
    read as the Control API hands them over (`oci` and `docker` files through `FileSend`
    too), and a local cache adds the content store's methods. Health checks are answered
    without being announced, as the engine asks anyway.
    """
    from buildsdk.session.auth import AUTH_METHODS
    from buildsdk.session.filesend import FILE_SEND
    from buildsdk.session.filesync import DIFF_COPY
    from buildsdk.session.secrets import GET_SECRET
    from buildsdk.session.ssh import CHECK_AGENT, FORWARD_AGENT

    methods = [GET_SECRET, CHECK_AGENT, FORWARD_AGENT, *AUTH_METHODS]
    if control_api:
        sends = any(
            output.session_service == "FileSend"
            if not isinstance(output, BuildOutput)
            else output.type in _ARCHIVE_EXPORTERS and "dest" in output.attrs
            for output in options.outputs
        )
    else:
        sends = written_by_client(options)
    if sends:
        methods.append(FILE_SEND)
    from buildsdk._control_plan import content_stores

    if control_api and content_stores(options):
        from buildsdk.session.content import CONTENT_METHODS

        methods.extend(CONTENT_METHODS)
    directory = options.path
    if session_transfer(options) and directory is not None and options.remote_url is None:
        methods.append(DIFF_COPY)
    return tuple(methods)


def shared_key(directory: str) -> str:
    """The key the engine caches a synced directory under: stable per machine and path, so a
    rebuild of the same directory transfers only what changed."""
    node = socket.gethostname()
    return hashlib.sha256(f"buildsdk:{node}:{os.path.abspath(directory)}".encode()).hexdigest()


@dataclass
class _Plan:
    """What one session serves and how it is announced; made before any byte is sent."""

    session_id: str
    name: str
    key: str
    handlers: dict[str, Handler]
    options: BuildOptions
    optional: bool = False
    """Opened only for registry logins or an automatic context transfer: an engine without
    sessions gets the build without one."""
    fallback: BuildOptions | None = None
    """The build to send when an optional session is refused (None: `options` as given)."""
    files: FileSyncService | None = None
    """The context transfer, whose listing ahead `close()` stops when the session ends."""

    def close(self) -> None:
        """Stop what the plan started ahead of the engine's requests (the context listing)."""
        if self.files is not None:
            self.files.close()


def _plan(
    options: BuildOptions,
    *,
    env: Mapping[str, str] | None,
    credentials: Mapping[str, RegistryAuth],
    lookup: Callable[[str], RegistryAuth | None],
    receivers: Mapping[int, ExportReceiver] | None = None,
) -> _Plan:
    require_h2()
    from buildsdk.session.auth import AuthService
    from buildsdk.session.secrets import SecretsService
    from buildsdk.session.ssh import SSHService

    handlers: dict[str, Any] = {}
    secrets_service = SecretsService(options.secrets, env)
    secrets_service.check()
    handlers.update(secrets_service.handlers())
    handlers.update(SSHService(options.ssh, env).handlers())
    handlers.update(AuthService(credentials, lookup).handlers())
    directory = os.fspath(options.path) if isinstance(options.path, os.PathLike) else options.path
    local = directory is not None and options.remote_url is None
    name = os.path.basename(os.path.abspath(directory)) if local and directory else "buildsdk"
    # A header value: the engine only shows the name, so anything but printable ASCII goes.
    name = "".join(c if " " < c < "\x7f" else "_" for c in name) or "buildsdk"
    key = shared_key(directory) if local and directory else new_session_id()
    session_id = new_session_id()
    update: dict[str, object] = {"session_id": session_id}
    if receivers is not None:
        from buildsdk._control_plan import content_stores, read_only_stores

        stores = content_stores(options)
        if stores:
            from buildsdk.session.content import ContentService

            handlers.update(ContentService(stores, read_only_stores(options)).handlers())
        # A Control API build: the exports are numbered as its Solve's exporters.
        if receivers:
            from buildsdk.session.filesend import FileSendService

            handlers.update(FileSendService(receivers).handlers())
    elif written_by_client(options):
        from buildsdk.session.filesend import FileSendService

        outputs, made = client_exports(options)
        handlers.update(FileSendService(made).handlers())
        update["outputs"] = outputs
    updated = options.model_copy(update=update)
    fallback: BuildOptions | None = None
    files: FileSyncService | None = None
    if session_transfer(options) and local and directory is not None:
        from buildsdk.session.filesync import FileSyncService

        data: bytes | None = None
        if options.fileobj is not None:
            raw = options.fileobj.read()
            data = raw.encode("utf-8") if isinstance(raw, str) else raw
            # Read once: a tar upload after a refused session needs the same Dockerfile.
            fallback = options.model_copy(update={"fileobj": io.BytesIO(data)})
        service = FileSyncService.for_build(
            directory,
            options.dockerfile,
            dockerfile_data=data,
            named=local_dirs(options.build_contexts),
        )
        handlers.update(service.handlers())
        service.list_context_ahead()
        files = service
        updated = options.model_copy(
            update={
                **update,
                "path": None,
                "remote": "client-session",
                "dockerfile": service.dockerfile_name,
                "fileobj": None,
            }
        )
    # The announced methods are `session_methods`' list, so what a dry run prints is what
    # the headers carry (a KeyError here is a service missing from one of the two).
    control_api = receivers is not None
    handlers = {
        method: handlers[method] for method in session_methods(options, control_api=control_api)
    }
    optional = session_is_optional(options)
    return _Plan(session_id, name, key, handlers, updated, optional, fallback, files)


def _headers(plan: _Plan, base: Mapping[str, str]) -> list[tuple[str, str]]:
    headers = [(key, value) for key, value in base.items()]
    headers += [
        ("Upgrade", "h2c"),
        ("Connection", "Upgrade"),
        ("Content-Length", "0"),
        ("X-Docker-Expose-Session-Uuid", plan.session_id),
        ("X-Docker-Expose-Session-Name", plan.name),
        ("X-Docker-Expose-Session-Sharedkey", plan.key),
    ]
    # One header line per method: the engine does not split a comma-joined value.
    headers += [("X-Docker-Expose-Session-Grpc-Method", method) for method in plan.handlers]
    return headers


async def _upgrade(
    http: httpx.AsyncClient, endpoint: Endpoint, path: str, headers: list[tuple[str, str]]
) -> httpx.Response:
    import httpx

    from buildsdk import _protocol
    from buildsdk.transports import translate_transport_errors

    request = http.build_request(
        "POST", path, headers=headers, timeout=httpx.Timeout(_UPGRADE_TIMEOUT, read=None)
    )
    with translate_transport_errors(endpoint):
        response = await http.send(request, stream=True)
    if response.status_code != 101:
        try:
            with translate_transport_errors(endpoint):
                body = await response.aread()
        finally:
            await response.aclose()
        if response.status_code < 400:
            raise SessionError(
                f"the engine did not open a BuildKit session (HTTP {response.status_code})"
            )
        error = _protocol.error_from_response(
            response.status_code, response.headers, body, method="POST", path=path
        )
        if response.status_code in (404, 405, 501):
            # Podman and engines without BuildKit have no /session endpoint.
            raise _refused(
                response.status_code,
                f"the engine does not support BuildKit sessions ({error.message}); secrets, "
                "ssh, registry logins under BuildKit, context_transfer='session' and local "
                "or tar outputs with a dest need dockerd with BuildKit",
                method="POST",
                path=path,
            )
        raise error
    return response


async def _serve(
    http: httpx.AsyncClient,
    endpoint: Endpoint,
    path: str,
    plan: _Plan,
    headers: Mapping[str, str],
    ready: asyncio.Future[SessionServer],
) -> None:
    from buildsdk.session._server import SessionServer

    try:
        response = await _upgrade(http, endpoint, path, _headers(plan, headers))
    except BaseException as exc:
        plan.close()
        if not ready.done():
            ready.set_exception(exc)
        raise
    try:
        stream = response.extensions["network_stream"]
        server = SessionServer(stream, plan.handlers)
        ready.set_result(server)
        await server.serve()
        if not server.stopping:
            # The engine then fails the build with its own words ("no active session..."),
            # which do not say why; this does.
            reason = f": {server.error}" if server.error is not None else " (the engine hung up)"
            logger.warning("the BuildKit session ended before its build%s", reason)
    finally:
        plan.close()
        with contextlib.suppress(Exception):
            await response.aclose()


class _SessionRefused(Exception):
    """The engine has no /session endpoint; `error` is what the user sees if it matters."""

    def __init__(self, error: APIError) -> None:
        super().__init__(str(error))
        self.error = error


def _refused(status_code: int, message: str, *, method: str, path: str) -> _SessionRefused:
    return _SessionRefused(api_error_for_status(status_code, message, method=method, path=path))


def _session_path(base_path: str, api_version: ApiVersion) -> str:
    return f"{base_path}/v{api_version}/session"


@dataclass(frozen=True)
class SessionTarget:
    """What a session needs of the client whose build it serves: where the engine is, how
    to reach it, the headers every request carries, and the user's credentials."""

    endpoint: Endpoint
    env: Mapping[str, str] | None
    headers: Mapping[str, str]
    docker_config: Callable[[], DockerConfig]
    """The client's Docker CLI configuration, read on first call (it may read files)."""
    credentials: Mapping[str, RegistryAuth]
    connect_timeout: float
    transport: httpx.AsyncBaseTransport | None = None
    """For a sync client's session: a transport to borrow instead of connecting anew."""


def _plan_for(
    target: SessionTarget,
    options: BuildOptions,
    receivers: Mapping[int, ExportReceiver] | None = None,
) -> _Plan:
    return _plan(
        options,
        env=target.env,
        credentials=target.credentials,
        lookup=target.docker_config().credentials_for,
        receivers=receivers,
    )


async def _stop(task: asyncio.Task[None], ready: asyncio.Future[SessionServer]) -> None:
    """End a session task: politely (GOAWAY, socket shut down), by cancelling if stuck."""
    import asyncio

    if ready.done() and not ready.cancelled() and ready.exception() is None:
        ready.result().stop()
        done, _ = await asyncio.wait({task}, timeout=_CLOSE_TIMEOUT)
        if done:
            return
    task.cancel()
    await asyncio.wait({task}, timeout=_CLOSE_TIMEOUT)
    if task.done() and not task.cancelled():
        # Already raised to the caller through `ready`; marked as seen here.
        task.exception()


class AsyncSession:
    """A running session of an `AsyncClient` build; `aclose()` ends it."""

    def __init__(
        self,
        options: BuildOptions,
        task: asyncio.Task[None] | None,
        ready: asyncio.Future[SessionServer] | None,
    ) -> None:
        self.options = options
        self._task = task
        self._ready = ready

    async def aclose(self) -> None:
        """Say GOAWAY, close the session's connection and wait for its tasks to end."""
        import asyncio

        if self._task is not None and self._ready is not None:
            await asyncio.shield(_stop(self._task, self._ready))


async def open_async_session(
    http: httpx.AsyncClient,
    target: SessionTarget,
    options: BuildOptions,
    api_version: ApiVersion,
    *,
    receivers: Mapping[int, ExportReceiver] | None = None,
) -> AsyncSession:
    """Open a session for a build of `options` over a connection of `http`'s pool; returns
    once the engine accepted it. `receivers` (by exporter index) take the exports the
    engine hands over, instead of those `client_exports` makes for `POST /build`."""
    import asyncio

    plan = await asyncio.to_thread(_plan_for, target, options, receivers)
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[SessionServer] = loop.create_future()
    path = _session_path(target.endpoint.base_path, api_version)
    task = asyncio.ensure_future(
        _serve(http, target.endpoint, path, plan, dict(target.headers), ready)
    )
    session = AsyncSession(plan.options, task, ready)
    try:
        await ready
    except _SessionRefused as exc:
        await session.aclose()
        if plan.optional:
            # Only offered for registry logins (which this engine cannot ask for anyway)
            # or an automatic context transfer (a tar upload does the same).
            logger.debug("the engine has no BuildKit sessions; building without one")
            return AsyncSession(plan.fallback or options, None, None)
        raise exc.error from None
    except BaseException:
        await session.aclose()
        raise
    return session


class SyncSession:
    """A running session of a `Client` build, served by a thread; `close()` ends it."""

    def __init__(self, plan: _Plan) -> None:
        from concurrent.futures import Future

        self.options = plan.options
        self._plan = plan
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._server_ready: asyncio.Future[SessionServer] | None = None
        self._ready: Future[None] = Future()
        self._thread: threading.Thread | None = None

    def _main(self, target: SessionTarget, path: str) -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        # A loop of our own with an executor of our own, shut down in order: asyncio.run's
        # default-executor shutdown races with the session's cancellation.
        loop = asyncio.new_event_loop()
        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="buildsdk-session")
        loop.set_default_executor(executor)
        try:
            loop.run_until_complete(self._run(target, path))
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            loop.close()

    async def _run(self, target: SessionTarget, path: str) -> None:
        import asyncio

        import httpx

        from buildsdk import transports

        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[SessionServer] = self._loop.create_future()
        try:
            if target.transport is not None:
                transport = target.transport
                base_url = transports.base_url(target.endpoint)
            else:
                transport, base_url = transports.create_async_transport(
                    target.endpoint, connect_timeout=target.connect_timeout, env=target.env
                )
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
                headers = dict(target.headers)
                self._task = asyncio.ensure_future(
                    _serve(http, target.endpoint, path, self._plan, headers, ready)
                )
                self._server_ready = ready
                try:
                    await ready
                except BaseException as exc:
                    await asyncio.gather(self._task, return_exceptions=True)
                    self._ready.set_exception(exc)
                    return
                self._ready.set_result(None)
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)

    def start(self, target: SessionTarget, api_version: ApiVersion) -> None:
        """Start the thread and wait until the engine accepted the session."""
        path = _session_path(target.endpoint.base_path, api_version)
        self._thread = threading.Thread(
            target=self._main, args=(target, path), name="buildsdk-session", daemon=True
        )
        self._thread.start()
        try:
            self._ready.result()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End the session and wait for its thread (bounded: a stuck engine cannot hang us)."""
        import asyncio

        loop, task, ready = self._loop, self._task, self._server_ready
        if loop is not None and task is not None and ready is not None and not task.done():
            stop = _stop(task, ready)
            try:
                asyncio.run_coroutine_threadsafe(stop, loop)
            except RuntimeError:
                # The loop already ended: the session is over.
                stop.close()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(_CLOSE_TIMEOUT)


def open_session(
    target: SessionTarget, options: BuildOptions, api_version: ApiVersion
) -> SyncSession:
    """Open a session for a build of `options` on a connection of its own; returns once the
    engine accepted it."""
    plan = _plan_for(target, options)
    session = SyncSession(plan)
    try:
        session.start(target, api_version)
    except _SessionRefused as exc:
        if plan.optional:
            # Only offered for registry logins (which this engine cannot ask for anyway)
            # or an automatic context transfer (a tar upload does the same).
            logger.debug("the engine has no BuildKit sessions; building without one")
            session.options = plan.fallback or options
            return session
        raise exc.error from None
    return session


def _no_credentials(_registry: str) -> RegistryAuth | None:
    return None


def control_session_metadata(
    session_id: str, name: str, key: str, methods: list[str]
) -> list[tuple[str, str]]:
    """The request metadata announcing a session on `Control/Session`: the headers a
    `/session` upgrade carries, lower-cased, one `x-docker-expose-session-grpc-method` per
    method."""
    metadata = [
        ("x-docker-expose-session-uuid", session_id),
        ("x-docker-expose-session-name", name),
        ("x-docker-expose-session-sharedkey", key),
    ]
    metadata += [("x-docker-expose-session-grpc-method", method) for method in methods]
    return metadata


async def _serve_tunnel(server: SessionServer, plan: _Plan) -> None:
    try:
        await server.serve()
    finally:
        plan.close()
    if not server.stopping:
        reason = f": {server.error}" if server.error is not None else " (the daemon hung up)"
        logger.warning("the BuildKit session ended before its build%s", reason)


async def open_control_session(
    channel: AsyncControlChannel,
    options: BuildOptions,
    *,
    env: Mapping[str, str] | None = None,
    credentials: Mapping[str, RegistryAuth] | None = None,
    docker_config: Callable[[], DockerConfig] | None = None,
    receivers: Mapping[int, ExportReceiver] | None = None,
) -> AsyncSession:
    """Open the session of a Control API build of `options` as a `Control/Session` call on
    `channel` (no `/session` connection: what a standalone buildkitd needs). `receivers`
    (by exporter index) take the exports the daemon hands over, as for `open_async_session`.

    It serves what a `/session` session would (secrets, ssh, registry logins from
    `credentials` and `docker_config`, outputs the client writes) and always the context
    directory and Dockerfile. The returned session's `options` carry its `session_id` (and
    the outputs to send) for `solve_request`; `aclose()` ends it. The session runs as tasks
    on the caller's event loop, which must be the channel's.
    """
    import asyncio

    from buildsdk.buildkit.control import CONTROL_SESSION
    from buildsdk.session._server import SessionServer
    from buildsdk.session._tunnel import ControlSessionStream

    lookup = docker_config().credentials_for if docker_config is not None else _no_credentials
    # On the Control API the daemon reads the context and the Dockerfile only through the
    # session, so the transfer is forced whatever `context_transfer` says.
    served = options.model_copy(update={"context_transfer": "session", "version": "2"})
    plan = await asyncio.to_thread(
        _plan, served, env=env, credentials=credentials or {}, lookup=lookup, receivers=receivers
    )
    metadata = control_session_metadata(plan.session_id, plan.name, plan.key, list(plan.handlers))
    try:
        call = await channel.stream(CONTROL_SESSION, metadata=metadata)
    except BaseException:
        plan.close()
        raise
    server = SessionServer(ControlSessionStream(call), plan.handlers)
    ready: asyncio.Future[SessionServer] = asyncio.get_running_loop().create_future()
    ready.set_result(server)
    task = asyncio.ensure_future(_serve_tunnel(server, plan))
    solve_options = options.model_copy(
        update={"session_id": plan.session_id, "outputs": plan.options.outputs}
    )
    return AsyncSession(solve_options, task, ready)
