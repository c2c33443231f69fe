"""The sans-I/O layer both clients share: options in, request descriptions out; answers in,
typed results or errors out.

Nothing here touches a socket. `Client` and `AsyncClient` ask this module what to send
(`build_request`, `prune_request`, ...), move the bytes with httpx, and hand the answer
back (`parse_ping`, `error_from_response`, ...). Keeping every rule here means the two
clients cannot drift apart, and every rule can be tested without an engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from buildsdk._registry_auth import RegistryAuth, registry_config_header
from buildsdk._version import __version__
from buildsdk.build import BuildOptions
from buildsdk.endpoint import SSH_BASE_URL
from buildsdk.errors import APIError, StreamError, api_error_for_status
from buildsdk.proxy import merge_proxy_build_args
from buildsdk.versions import CANCEL_MIN_VERSION, ApiVersion, api_too_old

# Imported by the code that needs them, so that importing a client stays cheap: the event
# and result models (a dozen pydantic classes) when a build's stream is made; the prune
# models by whoever calls `prune_request`, which has them already.
if TYPE_CHECKING:
    from buildsdk.buildkit.failure import SolveFailure
    from buildsdk.endpoint import Endpoint
    from buildsdk.events import BuildEvent
    from buildsdk.prune import PruneOptions
    from buildsdk.results import BuildResult

__all__ = [
    "AUX_ID_MIN_VERSION",
    "ERROR_BODY_LIMIT",
    "USER_AGENT",
    "BuildStream",
    "PingResult",
    "Request",
    "VersionInfo",
    "build_request",
    "cancel_request",
    "common_headers",
    "error_from_response",
    "is_error_status",
    "parse_json_object",
    "parse_ping",
    "ping_failed",
    "ping_get_request",
    "ping_request",
    "probe_rejected",
    "prune_request",
    "route_url",
    "upload_probe",
    "version_request",
]

ERROR_BODY_LIMIT = 1024 * 1024
"""How much of an error body is read: the engine's messages are short, a proxy's page may not be."""

USER_AGENT = f"buildsdk/{__version__}"
"""The `User-Agent` every request carries."""

_IMAGE_EXPORTERS = frozenset({"moby", "image"})

AUX_ID_MIN_VERSION = ApiVersion(1, 30)
"""The first API version whose classic builder reports the built image's id (`aux.ID`)."""


@dataclass(frozen=True)
class Request:
    """What to send: method, path (with the version prefix), ordered query pairs, headers."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Names only: `X-Registry-Config` holds credentials and build args may hold proxy
        # passwords, and a repr ends up in tracebacks and error reporters' captured locals.
        params = [name for name, _ in self.params]
        return f"Request({self.method} {self.path}, params={params}, headers={list(self.headers)})"


class PingResult(BaseModel):
    """What `/_ping` says about the engine: its newest API version, OS and preferred builder."""

    model_config = ConfigDict(frozen=True)

    api_version: str | None = Field(description="The engine's newest API version.")
    os_type: str | None = Field(default=None, description="`linux` or `windows`.")
    experimental: bool = Field(default=False, description="Whether experimental mode is on.")
    builder_version: str | None = Field(
        default=None, description='The builder the engine recommends: "1" classic, "2" BuildKit.'
    )
    libpod_api_version: str | None = Field(
        default=None, description="Podman's own API version (`Libpod-API-Version`); None elsewhere."
    )


class VersionInfo(BaseModel):
    """The engine's `/version` answer; fields newer engines add are kept, not rejected."""

    # Few programs ask for the version, so pydantic builds the validator on first use.
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True, defer_build=True)

    version: str = Field(default="", alias="Version")
    api_version: str = Field(default="", alias="ApiVersion")
    min_api_version: str | None = Field(default=None, alias="MinAPIVersion")
    os: str = Field(default="", alias="Os")
    arch: str = Field(default="", alias="Arch")
    kernel_version: str | None = Field(default=None, alias="KernelVersion")
    components: list[dict[str, Any]] = Field(default_factory=list, alias="Components")


def common_headers(http_headers: Mapping[str, str]) -> dict[str, str]:
    """The headers every request carries: config.json's `HttpHeaders`, then `User-Agent`.

    The CLI sends the configured headers with every request, not only builds; they go
    first because our own User-Agent is not theirs to replace.
    """
    return {**http_headers, "User-Agent": USER_AGENT}


def ping_request(*, base_path: str = "") -> Request:
    """`HEAD /_ping`, unversioned, as the Go client sends it (clients fall back to GET)."""
    return Request("HEAD", f"{base_path}/_ping")


def ping_get_request(*, base_path: str = "") -> Request:
    """`GET /_ping`, for engines and proxies that do not answer `HEAD /_ping` with 200."""
    return Request("GET", f"{base_path}/_ping")


def ping_failed(status_code: int, headers: Mapping[str, str]) -> bool:
    """Whether a `GET /_ping` answer is an error rather than the engine's facts.

    A GET that fails with 500 still carries the headers that matter, as the Go client
    relies on; only an answer without them is an error.
    """
    return status_code != 200 and not any(k.lower() == "api-version" for k in headers)


def parse_ping(headers: Mapping[str, str]) -> PingResult:
    """Read the engine's facts from the headers of a `/_ping` answer (HEAD or GET)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return PingResult(
        api_version=lowered.get("api-version") or None,
        os_type=lowered.get("ostype") or None,
        experimental=lowered.get("docker-experimental", "").lower() == "true",
        builder_version=lowered.get("builder-version") or None,
        libpod_api_version=lowered.get("libpod-api-version") or None,
    )


def _versioned(base_path: str, api_version: ApiVersion, endpoint: str) -> str:
    return f"{base_path}/v{api_version}{endpoint}"


def version_request(api_version: ApiVersion, *, base_path: str = "") -> Request:
    """`GET /version`: the engine's release, API range, OS and components."""
    return Request("GET", _versioned(base_path, api_version, "/version"))


def build_request(
    options: BuildOptions,
    api_version: ApiVersion,
    *,
    dockerfile: str | None = None,
    credentials: Mapping[str, RegistryAuth] | None = None,
    proxy_args: Mapping[str, str] | None = None,
    extra_headers: Mapping[str, str] | None = None,
    base_path: str = "",
) -> Request:
    """Describe `POST /build` for `options` as the Docker CLI sends it.

    `dockerfile` is the name the packed context chose (for a Dockerfile outside the
    context or from memory); `credentials` become `X-Registry-Config`; `proxy_args` are
    merged into the build args unless the user set the same names or turned proxies off.
    Raises `UnsupportedOption` when `api_version` or the builder cannot honour an option.
    """
    if options.use_config_proxy and proxy_args:
        merged = merge_proxy_build_args(options.buildargs, proxy_args)
        options = options.model_copy(update={"buildargs": merged})
    params = options.to_query(api_version, dockerfile=dockerfile)
    headers = common_headers(extra_headers or {})
    if not options.is_remote or options.fileobj is not None:
        headers["Content-Type"] = "application/x-tar"
    if options.custom_context and options.encoding:
        # The engine sniffs compression from magic bytes; the header is only informative,
        # but a custom tar's encoding is the one fact we cannot see ourselves.
        headers["Content-Encoding"] = options.encoding
    headers["X-Registry-Config"] = registry_config_header(dict(credentials or {}))
    return Request("POST", _versioned(base_path, api_version, "/build"), tuple(params), headers)


def upload_probe(request: Request) -> Request:
    """The same `POST /build` without a body, to ask why the engine cut an upload short.

    The engine checks the query before it reads the body and answers a bad parameter with
    400 at once, then closes the connection while the client may still be uploading. A
    client that is writing at that moment may see only the broken connection: asyncio, for
    one, drops what the socket had received when a write fails. Sending the same query with
    an empty body gets the engine's verdict again, cheaply and without side effects: a bad
    query is rejected the same way, a good one starts a build of an empty context, which
    the caller ends at once by closing the connection.
    """
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-encoding"}
    return Request(request.method, request.path, request.params, headers)


def is_error_status(status_code: int) -> bool:
    """Whether an answer with this status is an error rather than the engine's result.

    A redirect is an error too, as in the Go client: the answer is not the engine's.
    """
    return status_code >= 300


def probe_rejected(status_code: int) -> bool:
    """Whether the `upload_probe` answer is the engine's verdict on the query.

    Only a 4xx is. A 2xx means the query is fine, so the upload really broke; a 5xx is
    the empty body's own verdict (classic dockerd: "Cannot locate specified Dockerfile"),
    not the reason the upload broke.
    """
    return 400 <= status_code < 500


def prune_request(
    options: PruneOptions, api_version: ApiVersion, *, base_path: str = ""
) -> Request:
    """Describe `POST /build/prune` for `options` in `api_version`."""
    params = options.to_query(api_version)
    return Request("POST", _versioned(base_path, api_version, "/build/prune"), tuple(params))


def cancel_request(build_id: str, api_version: ApiVersion, *, base_path: str = "") -> Request:
    """Describe `POST /build/cancel?id=…`, which stops a BuildKit build started with `build_id`."""
    if not build_id:
        raise ValueError("build_id must be a non-empty string")
    gate = api_too_old("build_id", "cancelling a build", CANCEL_MIN_VERSION, api_version)
    if gate is not None:
        raise gate
    return Request("POST", _versioned(base_path, api_version, "/build/cancel"), (("id", build_id),))


def route_url(endpoint: Endpoint, path: str) -> str:
    """The URL the Go client names in its errors for `path` on `endpoint` (no query string).

    A socket's path is percent-encoded into the host, as in docker's
    `http://%2Fvar%2Frun%2Fdocker.sock/_ping`; an ssh engine is the CLI's dummy host.
    The query is left out on purpose: a build's carries proxy build args and their passwords.
    """
    if endpoint.scheme in ("unix", "npipe"):
        return f"http://{quote(endpoint.socket_path, safe='')}{path}"
    if endpoint.scheme == "ssh":
        return f"{SSH_BASE_URL}{path}"
    hostname, port = endpoint.tcp_address
    netloc = f"[{hostname}]:{port}" if ":" in hostname else f"{hostname}:{port}"
    return f"{'https' if endpoint.tls is not None else 'http'}://{netloc}{path}"


def _status_text(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return f"status {status_code}"


def error_from_response(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str = "",
    path: str = "",
    url: str = "",
) -> APIError:
    """Turn an HTTP error answer into the fitting `APIError`, with the engine's own message.

    Like the Go client, the JSON `message` is used when the body is JSON; otherwise the
    body text itself (cut to `ERROR_BODY_LIMIT`). Without a body the message is the Go
    client's sentence, naming the status and `url` (or `path`): "request returned Not Found
    for API route and version …". A 3xx is "unexpected redirect in response", as the Go
    client says (a proxy in the way; the Location is not repeated, it may carry credentials).
    """
    if 300 <= status_code < 400:
        return api_error_for_status(
            status_code, "unexpected redirect in response", method=method, path=path
        )
    body = body[:ERROR_BODY_LIMIT]
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    message = ""
    if "json" in content_type.lower() or body.lstrip().startswith(b"{"):
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            message = data["message"]
    if not message:
        message = body.decode("utf-8", "replace").strip()
    if not message:
        # Nothing but the status came back: most likely not an engine at all (a proxy, a
        # wrong port), so the words are docker's, which users search for.
        message = (
            f"request returned {_status_text(status_code)} for API route and version "
            f"{url or path}, check if the server supports the requested API version"
        )
    return api_error_for_status(status_code, message, method=method, path=path)


def parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    """Decode a JSON object answer; anything else is a `StreamError` naming `what`."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise StreamError(f"the engine's {what} answer is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StreamError(f"the engine's {what} answer is not a JSON object")
    return data


class BuildStream:
    """The life of one build's response: bytes in, events out, a result or `BuildError` at
    the end. Both clients feed it whatever the transport delivers."""

    def __init__(
        self, tags: Sequence[str], *, keep_events: bool = True, expect_image: bool = True
    ) -> None:
        from buildsdk._decoder import EventDecoder
        from buildsdk.results import ResultCollector

        self._decoder = EventDecoder()
        self._tags = tuple(tags)
        self._keep_events = keep_events
        self._expect_image = expect_image
        self._collector = ResultCollector(tags, keep_events=keep_events, expect_image=expect_image)
        self._started = time.monotonic()
        self._finished: BuildResult | None = None
        self._ended = False
        self._legacy: ApiVersion | None = None
        self._exporter_response: dict[str, str] | None = None
        self._solve_ref = ""
        # What a failed Solve's hint needs to know about the build (set by for_options).
        self._platforms: tuple[str, ...] = ()
        self._sbom = False

    @classmethod
    def for_options(
        cls, options: BuildOptions, *, keep_events: bool = True, control_api: bool = False
    ) -> BuildStream:
        """The stream of a build of `options`: its tags, and whether an image id must come.

        Only the `moby` and `image` exporters make an image; a build exporting to
        `cacheonly`, `local` or `tar` succeeds without reporting one. A `control_api` build
        gets its image id from Solve's exporter response, not from the events.
        """
        expect_image = not control_api and (
            not options.outputs or options.outputs[0].type in _IMAGE_EXPORTERS
        )
        stream = cls(options.tag, keep_events=keep_events, expect_image=expect_image)
        stream._platforms = options.platforms
        stream._sbom = options.attestations().get("sbom") is not None
        return stream

    def use_api_version(self, api_version: ApiVersion) -> None:
        """Adapt to the API version the build is sent in; call it before feeding any byte.

        Engines before API 1.30 report no image id (`aux.ID` came with 1.30). Their
        successful build is then not an error: the id is looked up by the first tag once the
        stream ended (`image_lookup`), and an untagged build's result says in its warnings
        that the engine did not tell.
        """
        if api_version < AUX_ID_MIN_VERSION and self._expect_image:
            from buildsdk.results import ResultCollector

            self._legacy = api_version
            self._collector = ResultCollector(
                self._tags, keep_events=self._keep_events, expect_image=False
            )

    def image_lookup(self, *, base_path: str = "") -> Request | None:
        """`GET /images/{first tag}/json` when a successful old-engine build needs its id."""
        if self._legacy is None or not self._tags or self.result().image_id:
            return None
        return Request("GET", _versioned(base_path, self._legacy, f"/images/{self._tags[0]}/json"))

    def resolve_image(self, inspected: Mapping[str, Any]) -> BuildResult:
        """Complete the result with the `Id` of the engine's image inspect answer."""
        image_id = inspected.get("Id")
        if not isinstance(image_id, str) or not image_id:
            raise StreamError("the engine's image inspect answer has no Id")
        self._finished = self.result().model_copy(update={"image_id": image_id})
        return self._finished

    def feed(self, data: bytes) -> list[BuildEvent]:
        """Decode a piece of the response body into the events it completes."""
        events = self._decoder.feed(data)
        for event in events:
            self._collector.add(event)
        return events

    def take(self, events: list[BuildEvent]) -> list[BuildEvent]:
        """Take events already decoded (a Control API build's `Control/Status` replies)."""
        for event in events:
            self._collector.add(event)
        return events

    def end_solve(
        self,
        response: Mapping[str, str] | None,
        *,
        ref: str,
        failure: SolveFailure | None = None,
    ) -> list[BuildEvent]:
        """A Control API build ended: with its exporter `response`, or with `failure`.
        Returns the last events: the image's `ImageIdEvent` when an exporter made one, or a
        failure's `ErrorEvent` (with its Dockerfile excerpt)."""
        self._ended = True
        self._solve_ref = ref
        self._exporter_response = dict(response) if response is not None else None
        if failure is None:
            from buildsdk.events import ImageIdEvent
            from buildsdk.results import exporter_image_id

            image_id = exporter_image_id(response or {})
            if not image_id:
                return []
            # The same last event as `POST /build`'s `aux.ID`, so readers of the events see
            # the image whichever endpoint built it.
            event = ImageIdEvent(image_id=image_id)
            self._collector.add(event)
            return [event]
        from buildsdk.buildkit.failure import failure_hint

        hint = failure_hint(
            failure.message,
            platforms=self._platforms,
            sbom=self._sbom,
            foreign_binary=self._collector.ran_foreign_binary(failure.vertex),
        )
        return [
            self._collector.fail_solve(
                failure.message,
                failure.exit_code,
                vertex=failure.vertex,
                source=failure.source,
                hint=hint,
            )
        ]

    def end(self) -> list[BuildEvent]:
        """The body ended: return the last events (a partial message is a `StreamError`)."""
        if self._ended:
            return []
        self._ended = True
        events = self._decoder.flush()
        for event in events:
            self._collector.add(event)
        return events

    def result(self) -> BuildResult:
        """The build's result, or `BuildError` with the whole log when it failed.

        Raises `StreamError` when the body was not read to its end (the build was closed).
        """
        if not self._ended:
            raise StreamError("the build's stream was closed before it ended")
        if self._finished is None:
            result = self._collector.finish(time.monotonic() - self._started)
            if self._legacy is not None and not self._tags and not result.image_id:
                warning = (
                    f"the engine speaks API {self._legacy}, which does not report the id of "
                    f"the image it built (API {AUX_ID_MIN_VERSION} does); tag the build to get it"
                )
                result = result.model_copy(update={"warnings": (*result.warnings, warning)})
            if self._exporter_response is not None:
                result = result.with_exporter_response(self._exporter_response, self._solve_ref)
                images = self._collector.platform_images(self._platforms)
                if images:
                    result = result.model_copy(update={"platform_images": images})
            self._finished = result
        return self._finished
