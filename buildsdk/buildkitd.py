"""Clients for a standalone BuildKit daemon (`buildkitd`), as buildx's `remote` driver uses it.

Why separate classes and not `Client(endpoint)`: a `Client` speaks the Docker Engine API
(ping, version, `POST /build`, image inspect), none of which a buildkitd has; these clients
speak only BuildKit's Control API, straight to the daemon (`buildkit.remote.open_buildkitd`)
with the session inside `Control/Session`. A build runs the same `ControlBuild` the Docker
clients run on their Control API path, so its events and `BuildResult` are the same.

What differs from dockerd's BuildKit, as buildx's remote driver does it: an `ImageOutput` is
sent as BuildKit's `image` exporter (dockerd's is `moby`); a build with no `outputs` sends no
exporter (the result stays in the build cache) and warns; and the daemon is taken to support
what the containerd image store supports (OCI exports, cache export, attestations).
Each call opens its own connection and closes it when done.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Final

from typing_extensions import Self

from buildsdk._control_build import ControlBuild, Tunnel
from buildsdk._protocol import BuildStream
from buildsdk.build import BuildOptions, BuildOutput
from buildsdk.buildkit.remote import BuildkitdAddress, buildkitd_channel, open_buildkitd
from buildsdk.errors import StreamError

if TYPE_CHECKING:
    from buildsdk.auth import DockerConfig, RegistryAuth
    from buildsdk.buildkit.control import AsyncControlChannel, ControlChannel
    from buildsdk.cache import CachePruneOptions, CachePruneResult, CacheRecord
    from buildsdk.endpoint import TLSConfig
    from buildsdk.events import BuildEvent
    from buildsdk.results import BuildResult

__all__ = [
    "NO_OUTPUT_WARNING",
    "AsyncBuildkitBuild",
    "AsyncBuildkitClient",
    "BuildkitBuild",
    "BuildkitClient",
    "buildkitd_options",
]

NO_OUTPUT_WARNING: Final = (
    "No output specified with remote driver. Build result will only remain in the build "
    "cache. To push result image into registry use --push or to load image into docker use "
    "--load"
)
"""buildx's warning for a build without outputs on its `remote` driver, given the same way."""


def buildkitd_options(options: BuildOptions) -> BuildOptions:
    """`options` as a buildkitd build sends them: BuildKit (`version` "2"), no outputs
    meaning no exporter (warning `NO_OUTPUT_WARNING`). Raises `UnsupportedOption`, naming
    the field, for an option only dockerd's `POST /build` has (`version="1"` included)."""
    from buildsdk.buildkit.solve import control_api_problems

    update: dict[str, object] = {}
    if "version" not in options.model_fields_set:
        update["version"] = "2"
    problems = control_api_problems(options.model_copy(update=update), engine="containerd")
    if problems:
        raise problems[0]
    if not options.outputs:
        warnings.warn(NO_OUTPUT_WARNING, UserWarning, stacklevel=3)
        # `cacheonly` is sent as no exporter at all, which is what buildx sends here.
        update["outputs"] = (BuildOutput(type="cacheonly"),)
    return options.model_copy(update=update) if update else options


class _Settings:
    """Where the daemon is and what the session offers; shared by both clients."""

    def __init__(
        self,
        address: str | BuildkitdAddress,
        tls: TLSConfig | None,
        server_name: str | None,
        connect_timeout: float,
        env: Mapping[str, str] | None,
        credentials: Mapping[str, RegistryAuth] | None,
        docker_config: Callable[[], DockerConfig] | None,
    ) -> None:
        self.address = (
            address if isinstance(address, BuildkitdAddress) else BuildkitdAddress.parse(address)
        )
        self.tls = tls
        self.server_name = server_name
        self.connect_timeout = connect_timeout
        self.env = env
        self.credentials = credentials
        self.docker_config = docker_config

    def open(self) -> contextlib.AbstractAsyncContextManager[AsyncControlChannel]:
        return open_buildkitd(
            self.address,
            tls=self.tls,
            server_name=self.server_name,
            connect_timeout=self.connect_timeout,
        )

    def channel(self) -> ControlChannel:
        return buildkitd_channel(
            self.address,
            tls=self.tls,
            server_name=self.server_name,
            connect_timeout=self.connect_timeout,
        )

    def control_build(
        self, channel: AsyncControlChannel, options: BuildOptions, stream: BuildStream
    ) -> ControlBuild:
        tunnel = Tunnel(
            channel,
            env=self.env,
            credentials=self.credentials,
            docker_config=self.docker_config,
            image_exporter="image",
        )
        # A buildkitd's workers carry no dockerd label; it has what the containerd store has.
        return ControlBuild(None, None, options, None, stream, engine="containerd", tunnel=tunnel)


async def _disk_usage(
    channel: AsyncControlChannel, filters: Mapping[str, str] | None
) -> list[CacheRecord]:
    from buildsdk.buildkit.control import CONTROL_DISK_USAGE
    from buildsdk.cache import disk_usage_records, disk_usage_request

    reply = await channel.unary(CONTROL_DISK_USAGE, disk_usage_request(filters).encode())
    return disk_usage_records(reply)


async def _prune(
    channel: AsyncControlChannel, options: CachePruneOptions | None
) -> CachePruneResult:
    from buildsdk.buildkit.control import CONTROL_PRUNE
    from buildsdk.cache import CachePruneResult, prune_request, pruned_record

    async with channel.server_stream(CONTROL_PRUNE, prune_request(options).encode()) as replies:
        records = [pruned_record(reply) async for reply in replies]
    return CachePruneResult(records=records)


class AsyncBuildkitClient:
    """An async client for a buildkitd at `unix:///path` or `tcp://host:port` (`tls`: mutual
    TLS, verification on unless `TLSConfig(verify=False)`)."""

    def __init__(
        self,
        address: str | BuildkitdAddress,
        *,
        tls: TLSConfig | None = None,
        server_name: str | None = None,
        connect_timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
        credentials: Mapping[str, RegistryAuth] | None = None,
        docker_config: Callable[[], DockerConfig] | None = None,
    ) -> None:
        self._settings = _Settings(
            address, tls, server_name, connect_timeout, env, credentials, docker_config
        )

    @property
    def address(self) -> BuildkitdAddress:
        """The daemon's address."""
        return self._settings.address

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
        """Nothing stays open between calls; kept so the client reads like `AsyncClient`."""

    def build(self, options: BuildOptions, *, keep_events: bool = True) -> AsyncBuildkitBuild:
        """Start a build of `options` (sent when iterated or entered): the events and
        `BuildResult` of `AsyncClient.build` on the Control API. Raises `UnsupportedOption`
        (by field name) for options only dockerd's `POST /build` has."""
        return AsyncBuildkitBuild(self._settings, buildkitd_options(options), keep_events)

    async def disk_usage(self, filters: Mapping[str, str] | None = None) -> list[CacheRecord]:
        """The daemon's build cache records (`Control/DiskUsage`, as `buildctl du`)."""
        async with self._settings.open() as channel:
            return await _disk_usage(channel, filters)

    async def prune_cache(self, options: CachePruneOptions | None = None) -> CachePruneResult:
        """Remove build cache (`Control/Prune`, as `buildctl prune`); returns what went."""
        async with self._settings.open() as channel:
            return await _prune(channel, options)


class AsyncBuildkitBuild:
    """One buildkitd build: an async iterator of `BuildEvent` and an async context manager;
    closing it cancels the build and closes its connection."""

    def __init__(self, settings: _Settings, options: BuildOptions, keep_events: bool) -> None:
        self._settings = settings
        self.options = options
        self._stream = BuildStream.for_options(options, keep_events=keep_events, control_api=True)
        self._stack = contextlib.AsyncExitStack()
        self._build: ControlBuild | None = None
        self._closed = False
        self._done = False

    async def _start(self) -> ControlBuild:
        if self._build is not None:
            return self._build
        if self._closed:
            raise StreamError("this build was closed; start a new one with client.build()")
        try:
            channel = await self._stack.enter_async_context(self._settings.open())
            build = self._settings.control_build(channel, self.options, self._stream)
            self._build = build
            self._stack.push_async_callback(build.aclose)
            await build.start()
        except BaseException:
            await self.close()
            raise
        return build

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

    def __aiter__(self) -> AsyncIterator[BuildEvent]:
        return self

    async def __anext__(self) -> BuildEvent:
        if self._done:
            raise StopAsyncIteration
        build = await self._start()
        event = await build.next_event()
        if event is None:
            self._done = True
            await self.close()
            raise StopAsyncIteration
        return event

    async def result(self) -> BuildResult:
        """Read what is left and return the `BuildResult`, or raise `BuildError`."""
        async for _ in self:
            pass
        return self._stream.result()

    async def close(self) -> None:
        """Cancel the build if it runs and close its connection."""
        self._closed = True
        await self._stack.aclose()


class BuildkitClient:
    """The sync client for a buildkitd (see `AsyncBuildkitClient`); each call runs on a
    channel with its own event loop thread."""

    def __init__(
        self,
        address: str | BuildkitdAddress,
        *,
        tls: TLSConfig | None = None,
        server_name: str | None = None,
        connect_timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
        credentials: Mapping[str, RegistryAuth] | None = None,
        docker_config: Callable[[], DockerConfig] | None = None,
    ) -> None:
        self._settings = _Settings(
            address, tls, server_name, connect_timeout, env, credentials, docker_config
        )

    @property
    def address(self) -> BuildkitdAddress:
        """The daemon's address."""
        return self._settings.address

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
        """Nothing stays open between calls; kept so the client reads like `Client`."""

    def build(self, options: BuildOptions, *, keep_events: bool = True) -> BuildkitBuild:
        """Start a build of `options` (sent when iterated or entered); see
        `AsyncBuildkitClient.build`."""
        return BuildkitBuild(self._settings, buildkitd_options(options), keep_events)

    def disk_usage(self, filters: Mapping[str, str] | None = None) -> list[CacheRecord]:
        """The daemon's build cache records (`Control/DiskUsage`, as `buildctl du`)."""
        with self._settings.channel() as channel:
            return channel.run(lambda control: _disk_usage(control, filters))

    def prune_cache(self, options: CachePruneOptions | None = None) -> CachePruneResult:
        """Remove build cache (`Control/Prune`, as `buildctl prune`); returns what went."""
        with self._settings.channel() as channel:
            return channel.run(lambda control: _prune(control, options))


class BuildkitBuild:
    """One buildkitd build for sync code: an iterator of `BuildEvent` and a context manager;
    closing it cancels the build and closes its connection."""

    def __init__(self, settings: _Settings, options: BuildOptions, keep_events: bool) -> None:
        self._settings = settings
        self.options = options
        self._stream = BuildStream.for_options(options, keep_events=keep_events, control_api=True)
        self._channel: ControlChannel | None = None
        self._build: ControlBuild | None = None
        self._closed = False
        self._done = False

    def _start(self) -> tuple[ControlChannel, ControlBuild]:
        if self._channel is not None and self._build is not None:
            return self._channel, self._build
        if self._closed:
            raise StreamError("this build was closed; start a new one with client.build()")
        try:
            self._channel = channel = self._settings.channel().__enter__()

            async def start(control: AsyncControlChannel) -> ControlBuild:
                build = self._settings.control_build(control, self.options, self._stream)
                self._build = build
                await build.start()
                return build

            return channel, channel.run(start)
        except BaseException:
            self.close()
            raise

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

    def __iter__(self) -> Iterator[BuildEvent]:
        return self

    def __next__(self) -> BuildEvent:
        if self._done:
            raise StopIteration
        channel, build = self._start()
        event = channel.run(lambda _control: build.next_event())
        if event is None:
            self._done = True
            self.close()
            raise StopIteration
        return event

    def result(self) -> BuildResult:
        """Read what is left and return the `BuildResult`, or raise `BuildError`."""
        for _ in self:
            pass
        return self._stream.result()

    def close(self) -> None:
        """Cancel the build if it runs and close its connection."""
        self._closed = True
        channel, self._channel = self._channel, None
        build, self._build = self._build, None
        if channel is None:
            return
        try:
            if build is not None:
                with contextlib.suppress(StreamError):
                    channel.run(lambda _control: build.aclose())
        finally:
            channel.close()
