"""One pure description of a build sent through BuildKit's Control API (`POST /grpc`).

Why beside `_build_plan`: a build reaches the engine either as `POST /build` (described by
`describe_build`) or as one `Control/Solve` with a session serving the context, the
Dockerfile, secrets, ssh, registry logins and the exports the client writes. Which of the
two a build takes is decided here (`choose_endpoint`), and the Control API build is
described here (`describe_control` -> `ControlPlan`), so both clients and the command's dry
run read the same decision and the same request. Nothing here touches a socket; the
description is made once the engine's image store (`ListWorkers`) and the session's id are
known, because both are part of the `SolveRequest`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from buildsdk.build import BuildOptions, BuildOutput
from buildsdk.buildkit.solve import ImageStore, SolveRequest, control_api_problems, solve_request
from buildsdk.errors import UnsupportedOption
from buildsdk.outputs import (
    BinaryWriter,
    DockerOutput,
    ImageOutput,
    LocalOutput,
    OCIOutput,
    Output,
    TarOutput,
    output_from_entry,
)

if TYPE_CHECKING:
    from buildsdk.session.filesend import ExportReceiver

__all__ = [
    "ControlPlan",
    "Endpoint",
    "Export",
    "check_control",
    "choose_endpoint",
    "control_reasons",
    "describe_control",
    "session_options",
]

Endpoint = Literal["build", "grpc"]
"""The two ways a build reaches the engine: `POST /build`, or the Control API."""


def _typed(options: BuildOptions) -> list[Output | BuildOutput]:
    typed: list[Output | BuildOutput] = []
    for output in options.outputs:
        if isinstance(output, BuildOutput):
            try:
                typed.append(output_from_entry(output.type, output.attrs))
            except ValueError:
                typed.append(output)
        else:
            typed.append(output)
    return typed


def control_reasons(options: BuildOptions) -> list[str]:
    """Why `options` need the Control API, in words: the outputs `POST /build` cannot carry
    (an oci or docker archive, push in an image output, several outputs). Empty: `/build`
    can carry the build."""
    reasons: list[str] = []
    outputs = _typed(options)
    if len(outputs) > 1:
        reasons.append(f"{len(outputs)} outputs (POST /build exports one)")
    for output in outputs:
        if isinstance(output, OCIOutput):
            reasons.append("an OCI archive or layout output")
        elif isinstance(output, DockerOutput):
            reasons.append("a Docker archive output")
        elif isinstance(output, ImageOutput) and output.push:
            reasons.append("push in an image output")
    return reasons


def choose_endpoint(options: BuildOptions) -> Endpoint:
    """The endpoint a build of `options` takes: the pinned one, or for `"auto"` the Control
    API only when `control_reasons` names something `POST /build` cannot carry."""
    if options.build_endpoint != "auto":
        return options.build_endpoint
    return "grpc" if control_reasons(options) else "build"


@dataclass(frozen=True)
class Export:
    """One export the client writes, handed over through the session's `FileSend`."""

    index: int
    """Its index among the `SolveRequest`'s exporters (the engine names it so)."""
    type: str
    """The exporter: `local`, `tar`, `oci` or `docker`."""
    dest: str | None
    """The file or directory written; None for a stream given by the caller."""
    stream: BinaryWriter | None = field(default=None, repr=False)
    """The binary stream written when `dest` is None."""

    def receiver(self) -> ExportReceiver:
        """A new receiver that writes this export (a directory, a file or the stream)."""
        from buildsdk.session.filesend import DirectoryReceiver, FileReceiver, StreamReceiver

        if self.type == "local":
            assert self.dest is not None
            return DirectoryReceiver(self.dest)
        if self.dest is not None:
            return FileReceiver(self.dest)
        assert self.stream is not None
        return StreamReceiver(self.stream)


def _exports(options: BuildOptions) -> tuple[Export, ...]:
    exports: list[Export] = []
    index = 0
    for output in _typed(options):
        if isinstance(output, BuildOutput) and output.type == "cacheonly":
            # No exporter is sent for it, so it takes no index.
            continue
        if isinstance(output, OCIOutput) and not output.tar:
            raise UnsupportedOption(
                "outputs",
                "an OCI layout directory (oci with tar=False) needs the client's content "
                "store in the session, which buildsdk does not serve yet; write an OCI "
                "archive (tar=True) instead",
                given="oci tar=false",
            )
        if isinstance(output, (LocalOutput, TarOutput, OCIOutput, DockerOutput)):
            dest = output.dest
            if isinstance(dest, (str, os.PathLike)):
                exports.append(Export(index, output.type, os.fspath(dest)))
            else:
                exports.append(Export(index, output.type, None, dest))
        index += 1
    return tuple(exports)


def session_options(options: BuildOptions) -> BuildOptions:
    """The options a Control API build's session is opened for: the context and Dockerfile
    always go through it (a Solve has no body), and the exports are served separately."""
    return options.model_copy(update={"context_transfer": "session", "outputs": ()})


@dataclass(frozen=True)
class ControlPlan:
    """Everything a Control API build sends: the `SolveRequest`, on which image store, and
    what its session serves. Made by `describe_control`; sending it is a client's job."""

    options: BuildOptions
    """The options as given."""
    engine: ImageStore
    """The engine's image store, as `ListWorkers` told it."""
    ref: str
    """The build's reference: `SolveRequest.Ref`, also asked for in `Control/Status`."""
    request: SolveRequest
    """The `Control/Solve` request (frontend `dockerfile.v0`, attributes, exporters)."""
    exports: tuple[Export, ...] = ()
    """The exports the client writes, by exporter index."""
    secrets: tuple[str, ...] = ()
    """The ids of the secrets the session serves."""
    ssh: tuple[str, ...] = ()
    """The ids of the ssh agents or keys the session forwards."""

    def receivers(self) -> Mapping[int, ExportReceiver]:
        """A fresh receiver per export, keyed by exporter index, for the session."""
        return {export.index: export.receiver() for export in self.exports}


def check_control(options: BuildOptions, *, engine: ImageStore) -> tuple[Export, ...]:
    """Raise the first reason `options` cannot be built through the Control API on an engine
    with image store `engine` (see `describe_control`), before a session is opened; else
    return the exports the client will write."""
    problems = control_api_problems(options, engine=engine)
    if problems:
        raise problems[0]
    if engine == "classic" and any(
        isinstance(output, ImageOutput) and output.push for output in _typed(options)
    ):
        # The classic store's moby exporter only names the image: the push would be
        # silently skipped (buildx pushes through the Engine API itself in that case).
        raise UnsupportedOption(
            "outputs",
            "push through the Control API needs the containerd image store: the classic "
            "store's exporter does not push; build with a tag and push it with `docker push`",
            required="containerd image store",
            given="classic image store",
        )
    return _exports(options)


def describe_control(
    options: BuildOptions, *, engine: ImageStore, session_id: str, ref: str
) -> ControlPlan:
    """Describe the Control API build of `options` on an engine with image store `engine`,
    served by session `session_id`, under the reference `ref`.

    Raises `UnsupportedOption` for an option only `POST /build` has, a classic-store
    refusal (buildx's words) or an OCI layout directory; sends nothing.
    """
    problems = control_api_problems(options, engine=engine, session_id=session_id)
    if problems:
        raise problems[0]
    exports = _exports(options)
    request = solve_request(options, ref=ref, session_id=session_id, engine=engine)
    return ControlPlan(
        options=options,
        engine=engine,
        ref=ref,
        request=request,
        exports=exports,
        secrets=tuple(secret.id for secret in options.secrets),
        ssh=tuple(forward.id for forward in options.ssh),
    )
