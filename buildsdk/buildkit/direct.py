"""One Dockerfile build on a Control API channel, its session tunnelled through `Control/Session`.

Why: this is the build a standalone buildkitd can run (it has no `/session` endpoint), and
the smallest complete use of the channel, the session tunnel and `solve_request`
together: `ListWorkers` (which image store), the session as a `Control/Session` call,
`Control/Status` read while `Control/Solve` runs, then the session closed. It works on any
channel: `open_control` (dockerd's `/grpc`) or `open_buildkitd`. The clients' own Control
API builds are expected to take the same steps.

What is not here: the default export is `solve_request`'s (dockerd's `moby` exporter, which
a standalone buildkitd does not have: give `outputs` for one), and no LLBBridge round trip
(reference buildkit-control.md §2, "simpler path").
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from buildsdk.build import BuildOptions
from buildsdk.buildkit.control import (
    CONTROL_LIST_WORKERS,
    CONTROL_SOLVE,
    CONTROL_STATUS,
    AsyncControlChannel,
    ControlChannel,
)
from buildsdk.buildkit.solve import (
    ListWorkersRequest,
    ListWorkersResponse,
    SolveResponse,
    StatusRequest,
    control_api_problems,
    image_store,
    solve_request,
)
from buildsdk.buildkit.status import decode_status_response
from buildsdk.errors import BuildError, GrpcCallError
from buildsdk.events import BuildEvent
from buildsdk.progress import PlainProgress
from buildsdk.session._runtime import open_control_session

if TYPE_CHECKING:
    from buildsdk.auth import DockerConfig, RegistryAuth

__all__ = ["SolveOutcome", "solve_dockerfile", "solve_dockerfile_sync"]

_BASE36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_STATUS_GRACE: Final = 10.0


@dataclass(frozen=True)
class SolveOutcome:
    """A finished build: the daemon's `ExporterResponse` (e.g. `containerimage.digest`,
    `image.name`) and the progress events `Control/Status` sent."""

    exporter_response: Mapping[str, str]
    events: list[BuildEvent] = field(default_factory=list)


def _ref() -> str:
    return "".join(secrets.choice(_BASE36) for _ in range(25))


def _log(events: list[BuildEvent]) -> str:
    out = io.StringIO()
    progress = PlainProgress(out, interval=None)
    for event in events:
        progress.feed(event)
    progress.close()
    return out.getvalue()


async def _read_status(channel: AsyncControlChannel, ref: str, events: list[BuildEvent]) -> None:
    async with channel.server_stream(CONTROL_STATUS, StatusRequest(ref).encode()) as stream:
        async for message in stream:
            events.extend(decode_status_response(message))


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
    workers = ListWorkersResponse.decode(
        await channel.unary(CONTROL_LIST_WORKERS, ListWorkersRequest().encode())
    )
    engine = image_store(workers)
    problems = control_api_problems(options, engine=engine)
    if problems:
        raise problems[0]
    session = await open_control_session(
        channel, options, env=env, credentials=credentials, docker_config=docker_config
    )
    events: list[BuildEvent] = []
    try:
        session_id = session.options.session_id
        assert session_id is not None
        ref = _ref()
        request = solve_request(session.options, ref=ref, session_id=session_id, engine=engine)
        status = asyncio.ensure_future(_read_status(channel, ref, events))
        try:
            reply = await channel.unary(CONTROL_SOLVE, request.encode())
        except GrpcCallError as exc:
            # The Status stream still ends on its own after a failure, with the failed step.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(status), _STATUS_GRACE)
            raise BuildError(exc.message, code=exc.code, log=_log(events), events=events) from exc
        finally:
            if not status.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(status), _STATUS_GRACE)
            status.cancel()
            await asyncio.gather(status, return_exceptions=True)
    finally:
        await session.aclose()
    return SolveOutcome(dict(SolveResponse.decode(reply).exporter_response), events)


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
