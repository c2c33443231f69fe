"""Which endpoint a build takes, and what a Control API build needs before it is sent.

Why beside `_build_plan`: a build reaches the engine either as `POST /build` (described by
`describe_build`) or as one `Control/Solve` (described by `describe_control_build`) with a
session serving the context, the Dockerfile, secrets, ssh, registry logins and the exports
the client writes. Which of the two a build takes is decided here (`choose_endpoint`, a pure
function of the options and the engine's `/_ping` facts), once, for both clients;
`check_control` refuses what the Control API path or the engine's image store cannot do
before a session is opened, and lists the exports the session's `FileSend` receives,
numbered as the `SolveRequest`'s exporters. Nothing here touches a socket.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from buildsdk._named_contexts import oci_layout_stores
from buildsdk.build import BuildOptions, BuildOutput
from buildsdk.buildkit.solve import ImageStore, control_api_problems
from buildsdk.cache_backends import local_stores
from buildsdk.errors import UnsupportedOption
from buildsdk.outputs import (
    BinaryWriter,
    DockerOutput,
    ImageOutput,
    LocalOutput,
    OCIOutput,
    TarOutput,
    typed_outputs,
)
from buildsdk.versions import ApiVersion

if TYPE_CHECKING:
    from buildsdk.session.filesend import ExportReceiver

__all__ = [
    "CONTROL_API_DEFAULT_VERSION",
    "EXPORT_STORE",
    "Endpoint",
    "EngineFacts",
    "Export",
    "check_control",
    "check_layouts",
    "choose_endpoint",
    "content_stores",
    "control_reasons",
    "layout_directories",
    "read_only_stores",
    "session_options",
]

Endpoint = Literal["build", "grpc"]
"""The two ways a build reaches the engine: `POST /build`, or the Control API."""


def control_reasons(options: BuildOptions) -> list[str]:
    """Why `options` need the Control API, in words: the outputs `POST /build` cannot carry
    (an oci or docker archive, push in an image output, several outputs), several platforms,
    attestations, named build contexts, the fields only the Control API has (annotations,
    no_cache_filter, allow), a cache export, a typed cache import. Empty: `/build` can carry
    the build."""
    reasons: list[str] = []
    outputs = typed_outputs(options.outputs, lenient=True)
    if len(outputs) > 1:
        reasons.append(f"{len(outputs)} outputs (POST /build exports one)")
    for output in outputs:
        if isinstance(output, OCIOutput):
            reasons.append("an OCI archive or layout output")
        elif isinstance(output, DockerOutput):
            reasons.append("a Docker archive output")
        elif isinstance(output, ImageOutput) and output.push:
            reasons.append("push in an image output")
    if len(options.platforms) > 1:
        reasons.append(f"{len(options.platforms)} platforms (POST /build builds one)")
    if any(value is not None for value in options.attestations().values()):
        reasons.append("attestations (provenance, sbom)")
    if options.build_contexts:
        reasons.append("named build contexts")
    if options.annotations:
        reasons.append("annotations")
    if options.no_cache_filter:
        reasons.append("no_cache_filter")
    if options.allow:
        reasons.append("entitlements (allow)")
    if options.cache_to:
        reasons.append("a cache export (cache_to)")
    if len(options.cache_refs) < len(options.cache_from):
        reasons.append("a typed cache import (cache_from)")
    return reasons


CONTROL_API_DEFAULT_VERSION = ApiVersion(1, 42)
"""The engine API version (Docker 23) from which `"auto"` sends BuildKit builds through the
Control API, as `docker build` does from that release on."""


@dataclass(frozen=True)
class EngineFacts:
    """What choosing a build's endpoint needs to know of the engine and the client."""

    api_version: ApiVersion | None
    """The API version spoken: the engine's newest (`/_ping`'s `API-Version`), or the
    client's pinned one when lower; None when the engine gave none."""
    podman: bool = False
    """Whether the engine is Podman (`/_ping` answers with `Libpod-API-Version`)."""
    session: bool = True
    """Whether the client can serve a session (the `session` extra is installed)."""

    @property
    def offers_control_api(self) -> bool:
        """Whether `"auto"` may send a BuildKit build here through the Control API: Docker
        with API 1.42 or newer (Docker 23+) and a client that can serve its session."""
        return (
            self.session
            and not self.podman
            and self.api_version is not None
            and self.api_version >= CONTROL_API_DEFAULT_VERSION
        )


def choose_endpoint(options: BuildOptions, engine: EngineFacts | None = None) -> Endpoint:
    """The endpoint a build of `options` takes: the pinned one; for `"auto"` the Control API
    when `control_reasons` names something `POST /build` cannot carry, or when `engine`
    offers it (`EngineFacts.offers_control_api`) to a BuildKit build (`version="2"`) whose
    every option the Control API carries and that names no session of its own; else
    `POST /build`. Without `engine` (not asked
    yet) only the first rule takes the Control API."""
    if options.build_endpoint != "auto":
        return options.build_endpoint
    if control_reasons(options):
        return "grpc"
    if engine is None or not engine.offers_control_api or options.version != "2":
        return "build"
    if options.session_id is not None:
        # A session the caller opened for POST /build; a Solve names the one it opens.
        return "build"
    # The store-specific refusals only concern what POST /build cannot carry either (they
    # are control reasons), so the containerd store's list is the one that matters here.
    return "build" if control_api_problems(options, engine="containerd") else "grpc"


@dataclass(frozen=True)
class Export:
    """One export the client writes, handed over through the session's `FileSend`."""

    index: int
    """Its index among the `SolveRequest`'s exporters (the engine names it so)."""
    type: str
    """The exporter: `local`, `tar`, `oci` or `docker`."""
    dest: str | None
    """The file or directory written (`"-"`: standard output); None for a stream given by
    the caller."""
    stream: BinaryWriter | None = field(default=None, repr=False)
    """The binary stream written when `dest` is None."""

    def receiver(self) -> ExportReceiver:
        """A new receiver that writes this export (a directory, a file, standard output for
        `"-"`, or the stream), chosen as for `POST /build`; raises `ExportError` for a file
        dest that is a directory or a `"-"` that is a terminal."""
        from buildsdk.session.filesend import export_receiver

        if self.dest is not None:
            return export_receiver(self.type, self.dest)
        assert self.stream is not None
        return export_receiver(self.type, self.stream)


def _exports(options: BuildOptions) -> tuple[Export, ...]:
    exports: list[Export] = []
    index = 0
    for output in typed_outputs(options.outputs, lenient=True):
        if isinstance(output, BuildOutput) and output.type == "cacheonly":
            # No exporter is sent for it, so it takes no index.
            continue
        if isinstance(output, OCIOutput) and not output.tar:
            # Written through the session's content store (`content_stores`), not FileSend.
            index += 1
            continue
        if isinstance(output, (LocalOutput, TarOutput, OCIOutput, DockerOutput)):
            dest = output.dest
            if isinstance(dest, (str, os.PathLike)):
                exports.append(Export(index, output.type, os.fspath(dest)))
            else:
                exports.append(Export(index, output.type, None, dest))
        index += 1
    return tuple(exports)


EXPORT_STORE: Final = "export"
"""The content store id BuildKit writes an OCI layout directory output into."""


def layout_directories(options: BuildOptions) -> list[str]:
    """The directories of the OCI layout outputs (`OCIOutput(tar=False)`) of `options`."""
    return [
        os.fspath(output.dest)
        for output in typed_outputs(options.outputs, lenient=True)
        if isinstance(output, OCIOutput)
        and not output.tar
        and isinstance(output.dest, (str, os.PathLike))
    ]


def check_layouts(options: BuildOptions) -> None:
    """Refuse a second OCI layout directory output: BuildKit writes every one of them into
    the session content store it names `export`, so one is all a session can tell apart."""
    count = len(layout_directories(options))
    if count > 1:
        raise UnsupportedOption(
            "outputs",
            "one OCI layout directory output per build: BuildKit writes each into the same "
            "session content store",
            given=f"{count} OCI layout directories",
        )


def content_stores(options: BuildOptions) -> dict[str, str]:
    """The content stores a Control API build's session serves, store id to directory: one
    `local:<dir>` per local cache directory, `export` for an OCI layout output and one
    `oci:<id>` per oci-layout named context."""
    stores = local_stores(*options.cache_to, *options.cache_from)
    layouts = layout_directories(options)
    if layouts:
        stores[EXPORT_STORE] = layouts[0]
    stores.update(oci_layout_stores(options.build_contexts))
    return stores


def read_only_stores(options: BuildOptions) -> frozenset[str]:
    """The store ids among `content_stores` the engine may only read: the oci-layout named
    contexts' directories."""
    return frozenset(oci_layout_stores(options.build_contexts))


def session_options(options: BuildOptions) -> BuildOptions:
    """The options a Control API build's session is opened for: the context and Dockerfile
    always go through it (a Solve has no body)."""
    return options.model_copy(update={"context_transfer": "session"})


def check_control(options: BuildOptions, *, engine: ImageStore) -> tuple[Export, ...]:
    """Raise the first reason `options` cannot be built through the Control API on an engine
    with image store `engine` (`control_api_problems`, push on the classic store, an OCI
    layout directory), before a session is opened; else return the exports the client
    writes."""
    problems = control_api_problems(options, engine=engine)
    if problems:
        raise problems[0]
    check_layouts(options)
    if engine == "classic" and any(
        isinstance(output, ImageOutput) and output.push
        for output in typed_outputs(options.outputs, lenient=True)
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
