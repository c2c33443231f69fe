"""`BaseClient`: what `Client` and `AsyncClient` share and that needs no socket.

Where the engine is, which API version to speak, the timeouts and the Docker CLI's
configuration. A build is described by `describe` (the pure `_build_plan.describe_build`
fed with this client's configuration, credentials and address); `Client`, `AsyncClient`,
compat and the command's dry run all use it. Both client modules subclass `BaseClient`;
neither imports the other, and the session runtime is handed a `SessionTarget`, not a
client.

Making a client adds one filter to the `httpx` logger, which masks URL passwords: httpx
logs every request's URL at INFO, and a build's query can carry proxy credentials.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import httpx

from buildsdk import _protocol
from buildsdk._build_plan import BuildPlan, SessionNeeds, describe_build, session_needs
from buildsdk.auth import DockerConfig, RegistryAuth
from buildsdk.build import BuildOptions
from buildsdk.endpoint import (
    DEFAULT_CONNECT_TIMEOUT,
    SSH_BASE_URL,
    Endpoint,
    TLSConfig,
    api_version_from_env,
    resolve_endpoint,
)
from buildsdk.errors import UnsupportedEngine
from buildsdk.versions import ApiVersion, negotiate

if TYPE_CHECKING:
    from buildsdk._control_plan import EngineFacts
    from buildsdk.buildkit.solve import ImageStore
    from buildsdk.session._runtime import SessionTarget

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "BaseClient",
    "describe",
    "engine_facts",
    "session_needs_of",
    "transport_errors",
]

logger = logging.getLogger("buildsdk")

DEFAULT_TIMEOUT = 60.0
"""Seconds the short calls (ping, version, cancel) may take; builds have no read timeout."""

CONNECT_TIMEOUT = DEFAULT_CONNECT_TIMEOUT
"""Seconds a connection may take to open, for every call (as the CLI's ssh ConnectTimeout)."""


class _RedactURLPasswords(logging.Filter):
    """Replaces URL passwords with `***` in the arguments of httpx's log records."""

    # A proxy build arg (`http://user:secret@proxy:3128`) travels in the build's query
    # string, as the Docker CLI sends it, and httpx logs every request's URL at INFO. Both
    # the plain form and the query-encoded one (`%2F%2Fuser%3Asecret%40`) are covered.
    _PLAIN = re.compile(r'(//[^/@:\s"]*):[^/@\s"]*@')
    _ENCODED = re.compile(
        r"(%2F%2F(?:(?!%22|%3A|%40)[^&\s/])*)%3A(?:(?!%22|%40)[^&\s/])*%40", re.IGNORECASE
    )

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's arguments in place; never drop the record."""
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact(arg) for arg in record.args)
        return True

    def _redact(self, arg: object) -> object:
        if not isinstance(arg, (str, httpx.URL)):
            return arg
        text = str(arg)
        redacted = self._ENCODED.sub(r"\1%3A%2A%2A%2A%40", self._PLAIN.sub(r"\1:***@", text))
        return arg if redacted == text else redacted


_URL_PASSWORDS = _RedactURLPasswords()


class BaseClient:
    """State and decisions shared by `Client` and `AsyncClient`; no network I/O here."""

    def __init__(
        self,
        host: str | None = None,
        *,
        tls: TLSConfig | bool | None = None,
        context: str | None = None,
        api_version: str | ApiVersion | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        credentials: Mapping[str, RegistryAuth] | None = None,
        config: DockerConfig | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._env = env
        self.endpoint: Endpoint = resolve_endpoint(host, tls=tls, context=context, env=env)
        pinned = api_version if api_version is not None else api_version_from_env(env)
        self._pinned = ApiVersion.parse(pinned) if pinned is not None else None
        self._negotiated: ApiVersion | None = self._pinned
        self._timeout = timeout
        self._credentials = dict(credentials or {})
        self._config = config
        # A transport a sync client's session borrows (set by `Client` when it was given
        # one that is also async); otherwise a session connects on its own.
        self._session_transport: httpx.AsyncBaseTransport | None = None
        # The engine's image store, asked once with ListWorkers by the first Control API
        # build (it only changes when the engine restarts with another configuration).
        self._image_store: ImageStore | None = None
        # The engine's last `/_ping` answer: which endpoint an "auto" build takes depends on
        # it, and negotiating the API version has usually asked already.
        self._last_ping: _protocol.PingResult | None = None
        # Adding the same filter again is a no-op.
        logging.getLogger("httpx").addFilter(_URL_PASSWORDS)

    @property
    def docker_config(self) -> DockerConfig:
        """The Docker CLI configuration this client uses (read on first use)."""
        if self._config is None:
            self._config = DockerConfig.load(self._env)
        return self._config

    def _short_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self._timeout, connect=CONNECT_TIMEOUT)

    def _build_timeout(self, plan: BuildPlan) -> httpx.Timeout:
        return httpx.Timeout(None, connect=CONNECT_TIMEOUT, read=plan.read_timeout)

    def _prune_timeout(self) -> httpx.Timeout:
        # Pruning a large cache takes long; it has no read timeout, like a build.
        return httpx.Timeout(None, connect=CONNECT_TIMEOUT)

    def _remember_ping(self, ping: _protocol.PingResult) -> _protocol.PingResult:
        self._last_ping = ping
        return ping

    def _negotiate_with(self, ping: _protocol.PingResult) -> ApiVersion:
        # Only called while nothing is negotiated, so never for a pinned version.
        try:
            return negotiate(ping.api_version)
        except ValueError as exc:
            raise UnsupportedEngine(str(exc)) from None

    def _proxy_host(self) -> str:
        # config.json keys per-engine proxies by the host string the CLI's client reports,
        # which for ssh is the dummy URL it speaks HTTP to.
        if self.endpoint.scheme == "ssh":
            return SSH_BASE_URL
        return self.endpoint.host

    def _headers(self) -> dict[str, str]:
        return _protocol.common_headers(self.docker_config.http_headers)

    def _session_target(self) -> SessionTarget:
        """What a BuildKit session of this client's builds needs of it."""
        from buildsdk.session._runtime import SessionTarget

        return SessionTarget(
            endpoint=self.endpoint,
            env=self._env,
            headers=self._headers(),
            docker_config=lambda: self.docker_config,
            credentials=self._credentials,
            connect_timeout=CONNECT_TIMEOUT,
            transport=self._session_transport,
        )


def engine_facts(ping: _protocol.PingResult, spoken: ApiVersion | None = None) -> EngineFacts:
    """What choosing a build's endpoint needs, from the engine's `/_ping` answer, the API
    version the client speaks (`spoken`: a version pinned below the engine's makes the
    client behave as that older one) and whether this installation can serve a session."""
    from buildsdk._control_plan import EngineFacts
    from buildsdk.session import h2_available

    try:
        api_version = ApiVersion.parse(ping.api_version) if ping.api_version else None
    except ValueError:
        api_version = None
    if api_version is not None and spoken is not None:
        api_version = min(api_version, spoken)
    return EngineFacts(
        api_version=api_version,
        podman=ping.libpod_api_version is not None,
        session=h2_available(),
    )


def describe(
    client: BaseClient,
    options: BuildOptions,
    api_version: ApiVersion,
    *,
    config: DockerConfig | None = None,
) -> BuildPlan:
    """`describe_build` with `client`'s Docker configuration (or `config`), the credentials
    it was given and its engine's address; logs the plan's warnings."""
    plan = describe_build(
        options,
        api_version,
        config=config if config is not None else client.docker_config,
        credentials=client._credentials,
        proxy_host=client._proxy_host(),
        base_path=client.endpoint.base_path,
    )
    for warning in plan.warnings:
        logger.warning(warning)
    return plan


def session_needs_of(
    client: BaseClient, options: BuildOptions, api_version: ApiVersion
) -> SessionNeeds | None:
    """`session_needs` with `client`'s Docker configuration and the credentials it was given."""
    return session_needs(
        options, api_version, config=client.docker_config, credentials=client._credentials
    )


def transport_errors(endpoint: Endpoint) -> contextlib.AbstractContextManager[None]:
    """Translate the transport's exceptions into buildsdk's (`translate_transport_errors`)."""
    # Imported here: it imports httpcore, which a client loads only when it is made, and
    # costs nothing after that.
    from buildsdk.transports import translate_transport_errors

    return translate_transport_errors(endpoint)
