"""One Dockerfile build on a Control API channel the caller opened, its session tunnelled
through `Control/Session`.

Why: this is the build a standalone buildkitd can run (it has no `/session` endpoint). It
is the clients' own Control API build (`_control_build.ControlBuild`, given a `Tunnel`) with
its events gathered into one answer: `ListWorkers` (which image store), the session as a
`Control/Session` call, `Control/Status` read while `Control/Solve` runs, then the session
closed. It works on any channel: `open_control` (dockerd's `/grpc`) or `open_buildkitd`.

What is not here: the default export is dockerd's `moby` exporter, which a standalone
buildkitd does not have (give `outputs` for one), and no LLBBridge round trip (reference
buildkit-control.md §2, "simpler path").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from buildsdk._control_build import ControlBuild, Tunnel
from buildsdk._protocol import BuildStream
from buildsdk.build import BuildOptions
from buildsdk.events import BuildEvent

if TYPE_CHECKING:
    from buildsdk.auth import DockerConfig, RegistryAuth
    from buildsdk.buildkit.control import AsyncControlChannel, ControlChannel

__all__ = ["SolveOutcome", "solve_dockerfile", "solve_dockerfile_sync"]


@dataclass(frozen=True)
class SolveOutcome:
    """A finished build: the daemon's `ExporterResponse` (e.g. `containerimage.digest`,
    `image.name`) and the progress events `Control/Status` sent."""

    exporter_response: Mapping[str, str]
    events: list[BuildEvent] = field(default_factory=list)


async def solve_dockerfile(
    channel: AsyncControlChannel,
    options: BuildOptions,
    *,
    env: Mapping[str, str] | None = None,
    credentials: Mapping[str, RegistryAuth] | None = None,
    docker_config: Callable[[], DockerConfig] | None = None,
) -> SolveOutcome:
    """Build `options` (a local context directory) with one `Control/Solve` on `channel`,
    serving the session through `Control/Session`; returns when the build and its export
    ended. `version` need not be given (this is BuildKit); an explicit "1" is refused.

    Raises `UnsupportedOption` (before anything is sent) for an option the Control API
    cannot carry, `BuildError` with the daemon's message and the plain-progress log when
    the build fails, `StreamError` when the connection breaks.
    """
    if "version" not in options.model_fields_set:
        # The builder is BuildKit here; only an explicit version="1" is refused.
        options = options.model_copy(update={"version": "2"})
    stream = BuildStream.for_options(options, control_api=True)
    tunnel = Tunnel(channel, env=env, credentials=credentials, docker_config=docker_config)
    build = ControlBuild(None, None, options, None, stream, tunnel=tunnel)
    events: list[BuildEvent] = []
    try:
        await build.start()
        while (event := await build.next_event()) is not None:
            events.append(event)
    finally:
        await build.aclose()
    return SolveOutcome(stream.result().exporter_response, events)


def solve_dockerfile_sync(
    channel: ControlChannel,
    options: BuildOptions,
    *,
    env: Mapping[str, str] | None = None,
    credentials: Mapping[str, RegistryAuth] | None = None,
    docker_config: Callable[[], DockerConfig] | None = None,
) -> SolveOutcome:
    """`solve_dockerfile` for sync code, run on the channel's own event loop."""
    return channel.run(
        lambda control: solve_dockerfile(
            control, options, env=env, credentials=credentials, docker_config=docker_config
        )
    )
