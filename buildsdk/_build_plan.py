"""One pure description of a build: what `POST /build` sends, decided once.

Why this module exists: the clients, docker-py's compat layer and the command's dry run
each used to assemble a build from private steps of the base client (refuse what the API
cannot carry, decide on a session, pack the context, look up credentials, build the
query and headers). `describe_build` is the one place that does it; they read the
resulting `BuildPlan` and only move its bytes.

Nothing here touches a socket. Describing a build reads what the Docker CLI reads before it
sends: `.dockerignore` and the Dockerfile's presence (the tar itself streams later, when
`BuildPlan.context` is iterated) and, for the classic builder, config.json's credentials
and their helpers. A build that needs a BuildKit session is described once its session is
open, because the session's id (and, for a session context transfer, the context itself)
are part of what is sent; `session_needs` is the decision taken before it opens, and a
dry run reads it from `BuildPlan.session`.

A build sent through BuildKit's Control API (`POST /grpc`) is a `ControlPlan`, made by
`describe_control_build`: the `SolveRequest`, the `Ref` its status is asked under, and the
session that must serve it (its id, the methods it announces, its shared key). Its random
ids are drawn when it is described, so a dry run prints the ids a build would send.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, cast

from buildsdk import _protocol
from buildsdk._registry_auth import RegistryAuth, merge_credentials
from buildsdk.auth import DockerConfig, buildkit_auth_warning
from buildsdk.build import BuildOptions
from buildsdk.proxy import proxy_build_args
from buildsdk.versions import ApiVersion

# Imported by the code that needs them, so that importing a client stays cheap: the context
# packer when a build is described, the session rules when a BuildKit build is.
if TYPE_CHECKING:
    from buildsdk.buildkit.solve import ImageStore, SolveRequest
    from buildsdk.context import BuildContext

__all__ = [
    "BuildPlan",
    "ControlPlan",
    "SessionNeeds",
    "describe_build",
    "describe_control_build",
    "session_needs",
]


@dataclass(frozen=True)
class SessionNeeds:
    """What a BuildKit session opened for a build would serve the engine."""

    secrets: tuple[str, ...] = ()
    """The ids of the secrets it serves."""
    ssh: tuple[str, ...] = ()
    """The ids of the ssh agents or keys it forwards."""
    context: bool = False
    """Whether the context goes through the session (`remote=client-session`, no body)."""
    export: bool = False
    """Whether the session receives an export the client writes (a `local` or `tar` output
    with a `dest`, handed over through `FileSend`)."""
    optional: bool = True
    """Whether an engine without sessions gets the build anyway, without one: true when the
    session would only serve registry logins or an automatic context transfer."""

    def served(self) -> list[str]:
        """What the session serves, in words (registry logins when nothing else)."""
        words = [f"secret {secret}" for secret in self.secrets]
        words += [f"ssh {forward}" for forward in self.ssh]
        if self.context:
            words.append("the context (sent with remote=client-session and no body)")
        if self.export:
            words.append("the export to its dest (a local output is sent without dest)")
        return words or ["registry logins"]


@dataclass(frozen=True)
class BuildPlan:
    """Everything a `POST /build` of one build sends: the request, its body and what
    decided them. Made by `describe_build`; sending it is a client's only job."""

    options: BuildOptions
    """The options as sent (with a session's id once one was opened)."""
    api_version: ApiVersion
    """The API version the request is written in."""
    request: _protocol.Request
    """Method, path, ordered query pairs and every header, as the Docker CLI sends them."""
    context: BuildContext | None
    """The body: the context tar, streamed when iterated; None when the engine fetches a
    remote context itself."""
    session: SessionNeeds | None
    """What a BuildKit session must serve before the request is sent; None when none is
    needed (or the options already name the session they use)."""
    credentials: Mapping[str, RegistryAuth] = field(default_factory=dict, repr=False)
    """The registry credentials `X-Registry-Config` carries (none for BuildKit, which
    asks a session instead)."""
    warnings: tuple[str, ...] = ()
    """Things the user should know that do not stop the build (a client logs them)."""

    @property
    def read_timeout(self) -> float | None:
        """Seconds the engine may stay silent during the build; None waits for ever."""
        # A build may print nothing for a long time (a slow RUN); only the user knows how
        # long is too long, so the read timeout is theirs and off by default.
        return self.options.timeout


def session_needs(
    options: BuildOptions,
    api_version: ApiVersion,
    *,
    config: DockerConfig,
    credentials: Mapping[str, RegistryAuth],
) -> SessionNeeds | None:
    """Whether a build of `options` needs a BuildKit session, and what it would serve.

    Options `api_version` or the builder cannot carry raise `UnsupportedOption` first, so
    no session is ever opened for a build the engine would refuse.
    """
    refused = options.unsupported(api_version)
    if refused:
        raise refused[0]
    # The session rules import the session package; a classic build never needs them.
    if options.version != "2" or options.session_id is not None:
        return None
    from buildsdk.session._runtime import (
        needs_session,
        session_is_optional,
        session_transfer,
        written_by_client,
    )

    if not needs_session(options, config=config, credentials=credentials):
        return None
    return SessionNeeds(
        secrets=tuple(secret.id for secret in options.secrets),
        ssh=tuple(forward.id for forward in options.ssh),
        context=session_transfer(options),
        export=written_by_client(options),
        optional=session_is_optional(options),
    )


def describe_build(
    options: BuildOptions,
    api_version: ApiVersion,
    *,
    config: DockerConfig,
    credentials: Mapping[str, RegistryAuth] | None = None,
    proxy_host: str = "",
    base_path: str = "",
) -> BuildPlan:
    """Describe the `POST /build` of `options` in `api_version`, as the Docker CLI sends it.

    `config` is the Docker CLI configuration (credentials, proxies, `HttpHeaders`);
    `credentials` given in code win over its own; `proxy_host` is the engine's address as
    config.json's per-engine `proxies` name it; `base_path` prefixes every path. Raises
    `UnsupportedOption` for options the engine cannot carry and `ContextError` for a context
    that cannot be packed; sends nothing.
    """
    given = dict(credentials or {})
    session = session_needs(options, api_version, config=config, credentials=given)
    context: BuildContext | None = None
    if not options.is_remote or options.fileobj is not None:
        from buildsdk.context import prepare_context

        context = prepare_context(
            path=None if options.is_remote else options.path,
            dockerfile=options.dockerfile,
            fileobj=cast("IO[bytes] | IO[str] | None", options.fileobj),
            custom_context=options.custom_context,
            gzip=options.gzip,
        )
    warnings: tuple[str, ...] = ()
    if options.version == "2":
        # BuildKit ignores X-Registry-Config: running credential helpers for it would cost
        # time and could fail for nothing. Say so when credentials exist and no session
        # will answer the engine's questions for them.
        warning = buildkit_auth_warning(options.version, config=config, credentials=given)
        if warning and options.session_id is None and session is None:
            warnings = (warning,)
        sent: dict[str, RegistryAuth] = {}
    else:
        sent = merge_credentials(config.all_credentials(), given)
    request = _protocol.build_request(
        options,
        api_version,
        dockerfile=context.dockerfile if context is not None else None,
        credentials=sent,
        proxy_args=proxy_build_args(config.proxies, proxy_host),
        extra_headers=config.http_headers,
        base_path=base_path,
    )
    return BuildPlan(
        options=options,
        api_version=api_version,
        request=request,
        context=context,
        session=session,
        credentials=sent,
        warnings=warnings,
    )


@dataclass(frozen=True)
class ControlPlan:
    """Everything a Control API build of one build sends: the `SolveRequest` and the session
    that serves it. Made by `describe_control_build`; sending it is a client's only job."""

    options: BuildOptions
    """The options as described (the context always goes through the session)."""
    engine: ImageStore
    """The engine's image store, which decides the exporters and the attestations."""
    ref: str
    """The build's `Ref`: `SolveRequest.Ref` and `StatusRequest.Ref`."""
    solve: SolveRequest
    """The `Control/Solve` request (the direct path: one Solve, `dockerfile.v0`)."""
    session_id: str
    """The id the session announces and `SolveRequest.Session` names."""
    session_methods: tuple[str, ...]
    """The gRPC methods the session announces, in the order of its headers."""
    shared_key: str
    """The key the engine caches the synced context under."""

    def to_json(self) -> dict[str, Any]:
        """The plan as `buildsdk build --dry-run --format json` prints it."""
        return {
            "endpoint": "grpc",
            "solve": self.solve.to_json(),
            "session": {"methods": list(self.session_methods), "shared_key": self.shared_key},
        }


def describe_control_build(
    options: BuildOptions,
    *,
    engine: ImageStore,
    ref: str | None = None,
    session_id: str | None = None,
    image_exporter: str = "moby",
) -> ControlPlan:
    """Describe the Control API build of `options` on an engine with image store `engine`
    (`image_exporter`: see `solve_request`).

    `ref` and `session_id` default to fresh random ids in BuildKit's shape. Raises
    `UnsupportedOption` for what this path cannot carry (`control_api_problems`, and more
    than one OCI layout directory output); reads no file and sends nothing.
    """
    from buildsdk._control_plan import check_layouts
    from buildsdk.buildkit.solve import solve_request
    from buildsdk.session._runtime import new_session_id, session_methods, shared_key

    check_layouts(options)

    ref = ref or new_session_id()
    session_id = session_id or new_session_id()
    solve = solve_request(
        options, ref=ref, session_id=session_id, engine=engine, image_exporter=image_exporter
    )
    # Only a session can bring the context to the Control API (no tar upload there).
    served = options
    if options.context_transfer == "auto":
        served = options.model_copy(update={"context_transfer": "session"})
    directory = options.path
    return ControlPlan(
        options=served,
        engine=engine,
        ref=ref,
        solve=solve,
        session_id=session_id,
        session_methods=session_methods(served, control_api=True),
        shared_key=shared_key(os.fspath(directory)) if directory is not None else "",
    )
