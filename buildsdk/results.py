"""The outcome of a build, collected from its events.

`ResultCollector` is sans-I/O: the client hands it every event as it yields it, then calls
`finish()` once the stream has ended. It decides success the way the engine reports it, never
by reading log text:

- failure: an `ErrorEvent` (the engine's `errorDetail`); else a BuildKit vertex that reported
  an error while no image id arrived (the stream broke off after the failing step);
- the image id: the last `ImageIdEvent` (classic `aux.ID`, BuildKit's `moby.image.id`). With
  `q=1` the engine sends nothing but `{"stream": "sha256:<64 hex>\\n"}`, so a stream message
  of exactly that shape is accepted as the id when it is the last log message and no aux id
  came; arbitrary log text is never searched (docker-py's "Successfully built" regex matches
  pip's "Successfully built cffi").

The log is text for people. Classic builds: the `stream` texts as sent, plus status lines
that are not progress ticks (`"<id>: <status>"`). BuildKit builds: what
`docker buildx build --progress plain` prints, printed in one pass at the end so that it does
not depend on timing (`buildsdk.progress.PlainProgress` with `interval=None`): one section
per step that ran, in the order the steps finished and numbered in that order (`#N <name>`,
its status and output lines, then `#N DONE 0.2s`, `#N CACHED` or `#N ERROR: <error>`); a
failed build ends with the failed step's last ten lines and `ERROR: failed to solve: …`, so
the last lines of the log are about the failure. Warnings: classic `[Warning] ` lines
(prefix removed) and BuildKit warnings' short texts.

With `keep_events=False` the collector keeps no event objects: memory grows with the log
text only.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field

from buildsdk.errors import BuildError
from buildsdk.events import (
    BuildEvent,
    ErrorEvent,
    ImageIdEvent,
    LogEvent,
    StatusEvent,
    VertexEvent,
    VertexLogEvent,
    VertexStatusEvent,
    VertexWarningEvent,
)
from buildsdk.progress import PlainProgress

__all__ = ["BuildResult", "PlatformImage", "ResultCollector", "exporter_image_id"]

_QUIET_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}\n")
# BuildKit sends no code field: the exit status is only in the text that ends its message
# ("... did not complete successfully: exit code: 1", "executor failed running [...]: exit
# code: 3"), as the runner formats it (buildkit's solver/llbsolver, every version since 0.6).
_EXIT_CODE = re.compile(r"exit code: (\d+)\Z")
_WARNING_PREFIX = "[Warning] "
# The tasks BuildKit's image exporter reports per platform, in platform order
# (exporter/containerimage writer, every version since 0.10); "exporting attestation
# manifest" and "exporting manifest list" do not match.
_EXPORTED = re.compile(r"exporting (manifest|config) (sha256:[0-9a-f]{64})")
# What runc prints when the kernel refuses a binary of another architecture (ENOEXEC).
_EXEC_FORMAT_ERROR = b"exec format error"


class PlatformImage(BaseModel):
    """One platform's image in the index of a multi-platform build: its manifest and config
    digests, as the engine's image exporter reported them."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    platform: str
    """The platform as requested, e.g. `linux/386`."""
    manifest_digest: str
    """The digest of this platform's image manifest (an entry of the index)."""
    config_digest: str
    """The digest of this platform's image config."""


class BuildResult(BaseModel):
    """A finished, successful build: the image id, its tags, the log, warnings and timing."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    image_id: str
    """The image id as the engine reported it (`sha256:…`); empty when no image was expected."""
    tags: tuple[str, ...] = ()
    """The tags requested for the build, in the order given."""
    log: str = ""
    """The build output as text (see the module documentation for its format)."""
    warnings: tuple[str, ...] = ()
    """Warnings the engine reported, in order."""
    duration: float = 0.0
    """Seconds from sending the request to the end of the stream."""
    events_count: int = 0
    """How many events the build stream produced."""
    exporter_response: dict[str, str] = Field(default_factory=dict)
    """The Control API's `ExporterResponse` as the engine sent it (empty on `POST /build`)."""
    image_digest: str = ""
    """`containerimage.digest`: the image's manifest (or index) digest; Control API only."""
    config_digest: str = ""
    """`containerimage.config.digest`: the image config's digest, when the engine gave it."""
    image_name: str = ""
    """`image.name`: the names the image was stored or pushed under, comma-joined."""
    descriptor: dict[str, Any] | None = None
    """`containerimage.descriptor` decoded: the OCI descriptor of the manifest or index."""
    build_ref: str = ""
    """The Control API build's reference (`SolveRequest.Ref`); empty on `POST /build`."""
    platform_images: tuple[PlatformImage, ...] = ()
    """Per platform of a Control API build with `platform` set, in the order given: the
    manifest and config the engine's image exporter wrote (containerd image store); empty
    when the engine did not report one of each per platform (classic store, local/tar
    outputs)."""

    def metadata(self) -> dict[str, Any]:
        """What `docker buildx build --metadata-file` writes: the exporter response with the
        descriptor decoded, plus `buildx.build.ref` (`default/default/<ref>`)."""
        from buildsdk.buildkit.metadata import metadata_from_exporter

        if not self.build_ref:
            return dict(self.exporter_response)
        return metadata_from_exporter(self.exporter_response, ref=self.build_ref)

    def with_exporter_response(self, response: Mapping[str, str], ref: str) -> BuildResult:
        """This result completed with a Solve's exporter `response`: the image id is the
        config digest when present, else the image digest, as buildx's `--iidfile` has it."""
        config = response.get(_CONFIG_DIGEST, "")
        digest = response.get(_DIGEST, "")
        return self.model_copy(
            update={
                "image_id": exporter_image_id(response) or self.image_id,
                "exporter_response": dict(response),
                "image_digest": digest,
                "config_digest": config,
                "image_name": response.get(_NAME, ""),
                "descriptor": _decode_descriptor(response.get(_DESCRIPTOR)),
                "build_ref": ref,
            }
        )


_DIGEST = "containerimage.digest"
_CONFIG_DIGEST = "containerimage.config.digest"
_DESCRIPTOR = "containerimage.descriptor"
_NAME = "image.name"


def exporter_image_id(response: Mapping[str, str]) -> str:
    """The image id a Solve's exporter `response` names: the config digest when present,
    else the image digest (an index's, on the containerd store), as buildx's `--iidfile`
    has it; empty when the exporters made no image."""
    return response.get(_CONFIG_DIGEST, "") or response.get(_DIGEST, "")


def _decode_descriptor(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        decoded = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return None
    return decoded if isinstance(decoded, dict) else None


class ResultCollector:
    """Accumulates the events of one build and turns them into a `BuildResult` or `BuildError`.

    `tags` are reported back in the result; with `keep_events=False` no events are kept (and
    `BuildError.events` is empty); with `expect_image=False` (an `outputs` export that
    produces no image) a missing image id is not an error.
    """

    def __init__(
        self,
        tags: Sequence[str] = (),
        keep_events: bool = True,
        *,
        expect_image: bool = True,
    ) -> None:
        self._tags = (tags,) if isinstance(tags, str) else tuple(tags)
        self._keep_events = keep_events
        self._expect_image = expect_image
        self._events: list[BuildEvent] = []
        self._count = 0
        self._text: list[str] = []
        # BuildKit's part of the log: printed in one pass when asked for, with a fixed clock
        # so that nothing in it depends on when events arrived.
        self._buildkit_out = io.StringIO()
        self._buildkit = PlainProgress(self._buildkit_out, interval=None, clock=lambda: 0.0)
        self._buildkit_seen = False
        self._buildkit_log: str | None = None
        self._warnings: list[str] = []
        self._image_id: str | None = None
        self._quiet_id: str | None = None
        self._error: ErrorEvent | None = None
        self._vertex_error: str | None = None
        self._step: str | None = None
        self._failed_step: str | None = None
        self._source = ""
        self._hint = ""
        self._foreign_binary: set[str] = set()
        # The image exporter's tasks, in the order they started: per platform one
        # "exporting manifest <digest>" and one "exporting config <digest>".
        self._exported: dict[str, tuple[str, str]] = {}

    @property
    def events(self) -> list[BuildEvent]:
        """The events added so far (empty when `keep_events` is false)."""
        return list(self._events)

    @property
    def image_id(self) -> str | None:
        """The image id reported so far, if any."""
        return self._image_id if self._image_id is not None else self._quiet_id

    def add(self, event: BuildEvent) -> None:
        """Take one event into account, in stream order."""
        self._count += 1
        if self._keep_events:
            self._events.append(event)
        if isinstance(event, LogEvent):
            text = event.text
            self._text.append(text)
            self._quiet_id = text[:-1] if _QUIET_IMAGE_ID.fullmatch(text) else None
            if _WARNING_PREFIX in text:
                self._warnings.extend(
                    line[len(_WARNING_PREFIX) :]
                    for line in text.splitlines()
                    if line.startswith(_WARNING_PREFIX)
                )
        elif isinstance(event, (VertexLogEvent, VertexStatusEvent)):
            self._feed_buildkit(event)
            if isinstance(event, VertexLogEvent) and _EXEC_FORMAT_ERROR in event.data:
                self._foreign_binary.add(event.vertex)
            elif isinstance(event, VertexStatusEvent) and (found := _EXPORTED.fullmatch(event.id)):
                self._exported.setdefault(event.id, (found.group(1), found.group(2)))
        elif isinstance(event, VertexEvent):
            self._feed_buildkit(event)
            if event.error and self._vertex_error is None:
                self._vertex_error = event.error
                self._failed_step = event.name or None
        elif isinstance(event, ImageIdEvent):
            self._image_id = event.image_id
        elif isinstance(event, ErrorEvent):
            if self._error is None:
                self._error = event
            self._buildkit.feed(event)
        elif isinstance(event, VertexWarningEvent):
            self._feed_buildkit(event)
            self._warnings.append(event.short.decode("utf-8", "replace"))
        elif isinstance(event, StatusEvent):
            detail = event.progress_detail
            if detail is None or detail.current is None:
                self._text.append(
                    f"{event.id}: {event.status}\n" if event.id else f"{event.status}\n"
                )

    def platform_images(self, platforms: Sequence[str]) -> tuple[PlatformImage, ...]:
        """The image of each of `platforms` (in the order the engine built them, which is
        the order given), read from the image exporter's tasks; empty unless the engine
        reported exactly one manifest and one config per platform."""
        manifests = [digest for kind, digest in self._exported.values() if kind == "manifest"]
        configs = [digest for kind, digest in self._exported.values() if kind == "config"]
        if not platforms or not len(manifests) == len(configs) == len(platforms):
            return ()
        return tuple(
            PlatformImage(platform=platform, manifest_digest=manifest, config_digest=config)
            for platform, manifest, config in zip(platforms, manifests, configs, strict=True)
        )

    def ran_foreign_binary(self, vertex: str | None) -> bool:
        """Whether step `vertex` (any step when None) printed `exec format error`: the
        kernel refused a program built for another architecture."""
        return vertex in self._foreign_binary if vertex is not None else bool(self._foreign_binary)

    def fail_solve(
        self, message: str, code: int | None, *, vertex: str | None, source: str, hint: str = ""
    ) -> ErrorEvent:
        """Record a failed Control API Solve: its message and exit code, the failing step's
        digest (named from the vertices seen; else the first step that failed) and the
        Dockerfile excerpt buildx prints; return the `ErrorEvent` that ends the build.
        `hint`, when given, is a line `BuildError`'s message adds after the engine's."""
        # Engines before BuildKit 0.9 name no vertex: the first step that failed is it.
        named = self._buildkit.vertex_name(vertex) if vertex is not None else None
        self._step = named or self._failed_step
        self._source = source
        self._hint = hint
        event = ErrorEvent(message=message, code=code, source=source)
        self.add(event)
        return event

    def _feed_buildkit(self, event: BuildEvent) -> None:
        self._buildkit_seen = True
        self._buildkit.feed(event)

    def log(self) -> str:
        """The log as text (see the module documentation): BuildKit's steps, or the classic
        builder's text. BuildKit's part is printed once, when first asked for."""
        if not self._buildkit_seen:
            return "".join(self._text)
        if self._buildkit_log is None:
            self._buildkit.close()
            self._buildkit_log = self._buildkit_out.getvalue()
        return self._buildkit_log

    def finish(self, duration: float) -> BuildResult:
        """Return the result of the finished build, or raise `BuildError` if it failed.

        Raises `BuildError` with the engine's message and code when the engine reported an
        error (under BuildKit the code is the `exit code: N` that ends the message), with
        the vertex's error when a BuildKit step failed and no image followed, and with a
        message saying so when no image id was received.
        """
        image_id = self.image_id
        if self._error is not None:
            self._fail(self._error.message, self._error.code)
        if image_id is None and self._vertex_error is not None:
            self._fail(self._vertex_error, None)
        if image_id is None and self._expect_image:
            self._fail(
                "the build stream ended without reporting an image id"
                " (the engine sent no aux ID, moby.image.id or quiet-mode id)",
                None,
            )
        warnings = list(self._warnings)
        if image_id is not None and self._vertex_error is not None:
            # The image was produced, so the step that reported an error did not fail the build
            # (BuildKit reports e.g. a failed cache import on its vertex and carries on).
            warnings.append(self._vertex_error)
        return BuildResult(
            image_id=image_id or "",
            tags=self._tags,
            log=self.log(),
            warnings=tuple(warnings),
            duration=duration,
            events_count=self._count,
        )

    def _fail(self, message: str, code: int | None) -> NoReturn:
        if code is None:
            found = _EXIT_CODE.search(message)
            code = int(found.group(1)) if found else None
        raise BuildError(
            f"{message}\n{self._hint}" if self._hint else message,
            code=code,
            log=self.log(),
            events=self._events,
            step=self._step,
            source=self._source,
        )
