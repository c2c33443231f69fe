"""docker-py's build API on top of buildsdk: change one import, keep the calling code.

Why this module exists: most code that builds images from Python calls docker-py's
`APIClient.build(...)` / `prune_builds(...)` or `client.images.build(...)`. `APIClient` here
takes the same constructor arguments and the same build and prune parameters (names,
order, defaults) and returns what docker-py returns: a generator of the engine's JSON
messages as `bytes`, or as dicts with `decode=True`, and the prune dict. Underneath, every
call goes through the typed client, so the request and the context tar are the Docker
CLI's, options are validated before anything is sent, and errors are buildsdk's.

What deliberately differs from docker-py (each also in docs/migrating-from-docker-py.md):

* Bad options raise before the request is sent: `pydantic.ValidationError` (a `ValueError`)
  instead of docker-py's `TypeError`/`DockerException`, `UnsupportedOption` instead of
  `InvalidVersion`, `ContextError` for an unreadable context or a missing Dockerfile.
* HTTP errors are `buildsdk.APIError` subclasses, raised on the first iteration as
  docker-py raises its `APIError`. A build that fails while running still answers 200, so
  its error message is yielded like every other message and nothing is raised, exactly as
  in docker-py; `images_build` raises `BuildError` for it.
* Without `decode`, every item is exactly one message as the engine sent it (ending in
  `\\r\\n`), never a piece of one or several glued together as docker-py's chunk-aligned
  items can be.
* `fileobj` together with a local `path` sends that Dockerfile with the directory as
  context (docker-py ignores `path`); an out-of-context `dockerfile` is sent as the CLI
  sends it, never in the URL; `.dockerignore` follows the CLI's rules.
* `version=None` negotiates the API version with the engine (docker-py pins 1.45, which
  older engines refuse) and `base_url=None` finds the engine as the Docker CLI does
  (`DOCKER_HOST`, contexts) instead of always using `/var/run/docker.sock`.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Literal, TypedDict, overload

import httpx

from buildsdk import _protocol
from buildsdk import errors as _errors
from buildsdk._decoder import MessageDecoder, event_from_message
from buildsdk.auth import DockerConfig
from buildsdk.build import REMOTE_PREFIXES, BuildOptions
from buildsdk.client import Client
from buildsdk.config import TLSConfig
from buildsdk.prune import PruneFilters, PruneOptions
from buildsdk.results import ResultCollector
from buildsdk.transports import translate_transport_errors

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self, Unpack

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "APIClient",
    "BuildError",
    "BuildKwargs",
]

DEFAULT_TIMEOUT_SECONDS = 60
"""docker-py's default timeout for calls other than build, in seconds."""

_BOOLEAN_FILTERS = frozenset({"inuse", "shared", "private"})


class BuildError(_errors.BuildError):
    """A failed `images_build`: `buildsdk.BuildError` plus docker-py's `msg` and `build_log`.

    `build_log` is every message the engine sent, as dicts, in order (docker-py gives an
    iterator over the same dicts).
    """

    def __init__(
        self,
        reason: str,
        build_log: Sequence[dict[str, Any]],
        *,
        code: int | None = None,
        log: str = "",
        events: Sequence[Any] = (),
    ) -> None:
        super().__init__(reason, code=code, log=log, events=events)
        self.msg = reason
        """The engine's error message (docker-py's name for it)."""
        self.build_log = list(build_log)
        """Every message of the build, decoded, in stream order."""


class BuildKwargs(TypedDict, total=False):
    """The keyword arguments of docker-py's `build()`, for `APIClient.images_build(**kwargs)`."""

    path: str | None
    tag: str | Sequence[str] | None
    quiet: bool
    fileobj: IO[bytes] | IO[str] | None
    nocache: bool
    rm: bool
    timeout: float | None
    custom_context: bool
    encoding: str | None
    pull: bool
    forcerm: bool
    dockerfile: str | None
    container_limits: Mapping[str, int | str] | None
    decode: bool
    buildargs: Mapping[str, str | None] | None
    gzip: bool
    shmsize: int | str | None
    labels: Mapping[str, str] | None
    cache_from: Sequence[str] | None
    target: str | None
    network_mode: str | None
    squash: bool | None
    extra_hosts: Mapping[str, str] | Sequence[str] | str | None
    platform: str | None
    isolation: str | None
    use_config_proxy: bool


def _host_and_tls(base_url: str | None, tls: object) -> tuple[str | None, TLSConfig | bool | None]:
    """Translate docker-py's `base_url` and `tls` into `Client`'s `host` and `tls`."""
    converted = _convert_tls(tls)
    if base_url is None:
        # docker-py would use the default socket; the CLI's lookup finds that socket too
        # when nothing else is configured, and honours DOCKER_HOST and contexts otherwise.
        return None, converted if tls else None
    host = base_url.strip()
    if host.startswith("http+unix://"):
        host = "unix://" + host[len("http+unix://") :]
    elif host.startswith("https://"):
        host = "tcp://" + host[len("https://") :]
        if converted is False:
            converted = True
    elif host.startswith("http://"):
        host = "tcp://" + host[len("http://") :]
    return host, converted


def _convert_tls(tls: object) -> TLSConfig | bool:
    """Accept `False`/`True`, a buildsdk `TLSConfig`, or a docker-py `docker.tls.TLSConfig`."""
    if isinstance(tls, TLSConfig):
        return tls
    if isinstance(tls, bool):
        return tls
    if tls is None:
        return False
    if not all(hasattr(tls, name) for name in ("cert", "ca_cert", "verify")):
        raise TypeError(
            "tls must be a bool, a buildsdk.TLSConfig or a docker.tls.TLSConfig, "
            f"got {type(tls).__name__}"
        )
    cert = getattr(tls, "cert", None)
    ca_cert = getattr(tls, "ca_cert", None)
    verify = getattr(tls, "verify", None)
    client_cert, client_key = cert if cert else (None, None)
    if isinstance(verify, str):
        # docker-py lets `verify` name the CA file itself.
        return TLSConfig.model_validate(
            {"ca_cert": verify, "client_cert": client_cert, "client_key": client_key}
        )
    # docker-py skips verification unless asked; buildsdk verifies unless told not to,
    # so only an explicit `verify=False` turns it off (see the migration guide).
    return TLSConfig.model_validate(
        {
            "ca_cert": ca_cert,
            "client_cert": client_cert,
            "client_key": client_key,
            "verify": verify is not False,
        }
    )


def _prune_filters(filters: Mapping[str, Any] | None) -> PruneFilters | None:
    """Read docker-py's `{name: value | [value] | bool}` filters into `PruneFilters`."""
    if filters is None:
        return None
    values: dict[str, Any] = {}
    for name, value in filters.items():
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(items) != 1:
            raise ValueError(
                f"filter {name!r} takes exactly one value here, got {len(items)}: give one "
                "value per filter (every given filter must match)"
            )
        item = items[0]
        if name in _BOOLEAN_FILTERS and isinstance(item, str) and item in ("true", "false"):
            item = item == "true"
        values[name] = item
    return PruneFilters.model_validate(values)


def _raise_on_first_next(error: Exception) -> Iterator[Any]:
    """A generator that raises `error` when first advanced, as docker-py's stream does."""
    # The loop only exists so that this function is a generator whose body mypy can reach.
    for failure in (error,):
        raise failure
    yield from ()


def _raw_messages(response: httpx.Response, client: Client) -> Iterator[bytes]:
    """Yield the body one message at a time, each with its line ending, bytes unchanged."""
    try:
        with translate_transport_errors(client.endpoint):
            pending = bytearray()
            for piece in response.iter_raw():
                pending += piece
                start = 0
                while (end := pending.find(b"\n", start)) != -1:
                    yield bytes(pending[start : end + 1])
                    start = end + 1
                del pending[:start]
            if pending.strip():
                yield bytes(pending)
    finally:
        response.close()


def _decoded_messages(response: httpx.Response, client: Client) -> Iterator[dict[str, Any]]:
    """Yield the body's JSON messages as dicts; a cut-off or non-JSON body is `StreamError`."""
    decoder = MessageDecoder()
    try:
        with translate_transport_errors(client.endpoint):
            for piece in response.iter_raw():
                yield from decoder.feed(piece)
        yield from decoder.flush()
    finally:
        response.close()


class APIClient:
    """docker-py's `docker.APIClient`, for building: `build`, `prune_builds`, `images_build`.

    Constructor arguments are docker-py's. `base_url` may be `unix://`, `http+unix://`,
    `tcp://`, `http(s)://` or `ssh://`; `tls` is `False`/`True`, a `buildsdk.TLSConfig` or a
    `docker.tls.TLSConfig`; `version` pins the API version, `None` or `"auto"` negotiates it;
    `credstore_env` is added to the environment of credential helpers. `ssh://` always runs
    the `ssh` client (docker-py's `use_ssh_client=True`); `num_pools` and `max_pool_size`
    are accepted and not needed.
    """

    def __init__(
        self,
        base_url: str | None = None,
        version: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        tls: object = False,
        user_agent: str | None = None,
        num_pools: int | None = None,
        credstore_env: Mapping[str, str] | None = None,
        use_ssh_client: bool = False,
        max_pool_size: int | None = None,
    ) -> None:
        host, tls_setting = _host_and_tls(base_url, tls)
        pinned = None if version in (None, "auto") else version
        config = DockerConfig.load(credstore_env=credstore_env) if credstore_env else None
        self._credstore_env = credstore_env
        self.base_url = base_url
        """The `base_url` as given; the address in use is `client.endpoint`."""
        self.timeout = timeout
        """Timeout of calls other than build and prune, in seconds."""
        self.credstore_env = dict(credstore_env) if credstore_env else None
        """Extra environment for credential helpers, as given."""
        self._user_agent = user_agent
        self._client = Client(
            host, tls=tls_setting, api_version=pinned, timeout=timeout, config=config
        )

    @property
    def client(self) -> Client:
        """The typed `buildsdk.Client` underneath, for moving code over one call at a time."""
        return self._client

    @property
    def api_version(self) -> str:
        """The API version in use (negotiated with the engine on first use unless pinned)."""
        return str(self._client.api_version())

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
        """Close the connections; the client cannot be used afterwards."""
        self._client.close()

    def _refresh_credentials(self) -> None:
        # docker-py reads config.json again before a build when the copy it holds has no
        # credentials, so a `docker login` made after the client was created still counts.
        if not self._client.docker_config.contains_auth:
            self._client._config = DockerConfig.load(credstore_env=self._credstore_env)

    def _with_user_agent(self, request: _protocol.Request) -> _protocol.Request:
        if self._user_agent is None:
            return request
        headers = {**request.headers, "User-Agent": self._user_agent}
        return dataclasses.replace(request, headers=headers)

    @overload
    def build(
        self,
        path: str | None = None,
        tag: str | Sequence[str] | None = None,
        quiet: bool = False,
        fileobj: IO[bytes] | IO[str] | None = None,
        nocache: bool = False,
        rm: bool = False,
        timeout: float | None = None,
        custom_context: bool = False,
        encoding: str | None = None,
        pull: bool = False,
        forcerm: bool = False,
        dockerfile: str | None = None,
        container_limits: Mapping[str, int | str] | None = None,
        decode: Literal[False] = False,
        buildargs: Mapping[str, str | None] | None = None,
        gzip: bool = False,
        shmsize: int | str | None = None,
        labels: Mapping[str, str] | None = None,
        cache_from: Sequence[str] | None = None,
        target: str | None = None,
        network_mode: str | None = None,
        squash: bool | None = None,
        extra_hosts: Mapping[str, str] | Sequence[str] | str | None = None,
        platform: str | None = None,
        isolation: str | None = None,
        use_config_proxy: bool = True,
    ) -> Iterator[bytes]: ...

    @overload
    def build(
        self,
        path: str | None = None,
        tag: str | Sequence[str] | None = None,
        quiet: bool = False,
        fileobj: IO[bytes] | IO[str] | None = None,
        nocache: bool = False,
        rm: bool = False,
        timeout: float | None = None,
        custom_context: bool = False,
        encoding: str | None = None,
        pull: bool = False,
        forcerm: bool = False,
        dockerfile: str | None = None,
        container_limits: Mapping[str, int | str] | None = None,
        *,
        decode: Literal[True],
        buildargs: Mapping[str, str | None] | None = None,
        gzip: bool = False,
        shmsize: int | str | None = None,
        labels: Mapping[str, str] | None = None,
        cache_from: Sequence[str] | None = None,
        target: str | None = None,
        network_mode: str | None = None,
        squash: bool | None = None,
        extra_hosts: Mapping[str, str] | Sequence[str] | str | None = None,
        platform: str | None = None,
        isolation: str | None = None,
        use_config_proxy: bool = True,
    ) -> Iterator[dict[str, Any]]: ...

    @overload
    def build(
        self,
        path: str | None = None,
        tag: str | Sequence[str] | None = None,
        quiet: bool = False,
        fileobj: IO[bytes] | IO[str] | None = None,
        nocache: bool = False,
        rm: bool = False,
        timeout: float | None = None,
        custom_context: bool = False,
        encoding: str | None = None,
        pull: bool = False,
        forcerm: bool = False,
        dockerfile: str | None = None,
        container_limits: Mapping[str, int | str] | None = None,
        *,
        decode: bool,
        buildargs: Mapping[str, str | None] | None = None,
        gzip: bool = False,
        shmsize: int | str | None = None,
        labels: Mapping[str, str] | None = None,
        cache_from: Sequence[str] | None = None,
        target: str | None = None,
        network_mode: str | None = None,
        squash: bool | None = None,
        extra_hosts: Mapping[str, str] | Sequence[str] | str | None = None,
        platform: str | None = None,
        isolation: str | None = None,
        use_config_proxy: bool = True,
    ) -> Iterator[bytes] | Iterator[dict[str, Any]]: ...

    def build(
        self,
        path: str | None = None,
        tag: str | Sequence[str] | None = None,
        quiet: bool = False,
        fileobj: IO[bytes] | IO[str] | None = None,
        nocache: bool = False,
        rm: bool = False,
        timeout: float | None = None,
        custom_context: bool = False,
        encoding: str | None = None,
        pull: bool = False,
        forcerm: bool = False,
        dockerfile: str | None = None,
        container_limits: Mapping[str, int | str] | None = None,
        decode: bool = False,
        buildargs: Mapping[str, str | None] | None = None,
        gzip: bool = False,
        shmsize: int | str | None = None,
        labels: Mapping[str, str] | None = None,
        cache_from: Sequence[str] | None = None,
        target: str | None = None,
        network_mode: str | None = None,
        squash: bool | None = None,
        extra_hosts: Mapping[str, str] | Sequence[str] | str | None = None,
        platform: str | None = None,
        isolation: str | None = None,
        use_config_proxy: bool = True,
    ) -> Iterator[bytes] | Iterator[dict[str, Any]]:
        """Build an image as docker-py's `APIClient.build` does; returns its message stream.

        The context is packed and uploaded during this call (as in docker-py); the returned
        generator reads the engine's answer: `bytes` messages, or dicts with `decode=True`.
        A failed build yields the engine's error message and raises nothing. Raises
        `pydantic.ValidationError` for bad options and `ContextError`/`UnsupportedOption`
        before sending; an HTTP error is raised as `APIError` on the first iteration.
        """
        options = self._options(
            path=path,
            tag=tag,
            quiet=quiet,
            fileobj=fileobj,
            nocache=nocache,
            rm=rm,
            timeout=timeout,
            custom_context=custom_context,
            encoding=encoding,
            pull=pull,
            forcerm=forcerm,
            dockerfile=dockerfile,
            container_limits=container_limits,
            buildargs=buildargs,
            gzip=gzip,
            shmsize=shmsize,
            labels=labels,
            cache_from=cache_from,
            target=target,
            network_mode=network_mode,
            squash=squash,
            extra_hosts=extra_hosts,
            platform=platform,
            isolation=isolation,
            use_config_proxy=use_config_proxy,
        )
        client = self._client
        self._refresh_credentials()
        # docker-py's keywords cannot ask for BuildKit, so no build here needs a session.
        request, context = client._prepare_build(options, client.api_version())
        request = self._with_user_agent(request)
        body = iter(context) if context is not None else None
        try:
            response = client._send_build(request, client._build_timeout(options), body)
        except _errors.APIError as exc:
            return _raise_on_first_next(exc)
        stream: Iterator[bytes] | Iterator[dict[str, Any]]
        if decode:
            stream = _decoded_messages(response, client)
        else:
            stream = _raw_messages(response, client)
        # A stream that is dropped without being read must still free its connection.
        weakref.finalize(stream, response.close)
        return stream

    @staticmethod
    def _options(**kwargs: Any) -> BuildOptions:
        """docker-py's keywords -> `BuildOptions`, with docker-py's silent no-ops kept silent."""
        path = kwargs["path"]
        fileobj = kwargs["fileobj"]
        remote = isinstance(path, str) and path.startswith(REMOTE_PREFIXES)
        if fileobj is not None and (kwargs["custom_context"] or remote):
            # docker-py sends only fileobj then and ignores path.
            kwargs["path"] = None
        if not (kwargs["gzip"] and kwargs["encoding"] is not None):
            # docker-py ignores gzip for a custom or remote context, and an encoding for a
            # context it packs itself (the engine detects compression anyway).
            if kwargs["custom_context"] or (remote and fileobj is None):
                kwargs["gzip"] = False
            if not kwargs["custom_context"]:
                kwargs["encoding"] = None
        if not kwargs["shmsize"]:
            kwargs["shmsize"] = None  # docker-py drops a zero shmsize
        if kwargs["tag"] is None:
            kwargs["tag"] = ()
        return BuildOptions(**kwargs)

    def images_build(self, **kwargs: Unpack[BuildKwargs]) -> tuple[str, list[dict[str, Any]]]:
        """Build like docker-py's `client.images.build(**kwargs)`: wait for the end.

        Returns the image id (`sha256:…`) and every message of the log as dicts (docker-py
        returns an `Image` and an iterator over the same dicts). Raises this module's
        `BuildError` (with `build_log`) when the build fails or reports no image.
        """
        kwargs["decode"] = True
        tag = kwargs.get("tag")
        tags: Sequence[str] = () if tag is None else ((tag,) if isinstance(tag, str) else tag)
        collector = ResultCollector(tags)
        log: list[dict[str, Any]] = []
        for message in self.build(**kwargs):
            assert isinstance(message, dict)
            log.append(message)
            for event in event_from_message(message):
                collector.add(event)
        try:
            result = collector.finish(0.0)
        except _errors.BuildError as exc:
            raise BuildError(
                exc.message, log, code=exc.code, log=exc.log, events=exc.events
            ) from None
        return result.image_id, log

    def prune_builds(
        self,
        filters: Mapping[str, Any] | None = None,
        keep_storage: int | None = None,
        all: bool | None = None,
    ) -> dict[str, Any]:
        """Remove build cache like docker-py's `prune_builds`; returns the engine's dict.

        The dict has `CachesDeleted` (a list of record ids, or None) and `SpaceReclaimed`
        (bytes). `filters` take one value each (`{"until": "24h"}`, `{"inuse": True}`).
        Raises `UnsupportedOption` when the engine's API version is too old for an option.
        """
        options = PruneOptions(
            all=bool(all),
            filters=_prune_filters(filters),
            keep_storage=keep_storage,
        )
        client = self._client
        request = _protocol.prune_request(
            options, client.api_version(), base_path=client.endpoint.base_path
        )
        request = self._with_user_agent(request)
        # docker-py gives prune its 60 s default; pruning a large cache takes longer, so
        # like a build it has no read timeout here.
        body = client._call(request, client._prune_timeout())
        return _protocol.parse_json_object(body, "prune")
