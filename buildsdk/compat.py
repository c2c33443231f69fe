"""docker-py's build API on top of buildsdk: change one import, keep the calling code.

Why this module exists: most code that builds images from Python calls docker-py's
`APIClient.build(...)` / `prune_builds(...)` or `docker.from_env().images.build(...)`.
`APIClient` and `DockerClient` here take the same constructor arguments and the same build
and prune parameters (names, order, defaults) and return what docker-py returns: a
generator of the engine's JSON messages as `bytes`, or as dicts with `decode=True`, the
prune dict, `(Image, log iterator)` from `images.build`. Underneath, every build goes
through the typed client, so the request and the context tar are the Docker CLI's and
options are validated before anything is sent.

When docker-py is installed, compat replaces the build calls and nothing else: every other
`APIClient` method and `DockerClient` attribute (`inspect_image`, `containers`, …) is
docker-py's own, on the same engine, and every error compat raises is also the
`docker.errors` class docker-py raises in that situation (see `buildsdk._compat_errors`),
so `except docker.errors.APIError:` keeps working. Without docker-py, builds, prunes and
image lookups work and the errors are buildsdk's.

What deliberately differs from docker-py (each also in docs/migrating-from-docker-py.md):

* Values docker-py sends unchecked (a non-string build arg, a malformed platform) are
  refused before anything is sent, with `InvalidArgument` (a `DockerException`, not the
  engine's `APIError`); a missing Dockerfile or unreadable file is a `ContextError` (a
  `DockerException`) before the upload, where docker-py lets the engine report it.
* Without `decode`, every item is exactly one message as the engine sent it (ending in
  `\\r\\n`), never a piece of one or several glued together as docker-py's chunk-aligned
  items can be.
* `fileobj` together with a local `path` sends that Dockerfile with the directory as
  context (docker-py ignores `path`); a `StringIO` Dockerfile works; an out-of-context
  `dockerfile` is sent as the CLI sends it, never in the URL; `.dockerignore` follows the
  CLI's rules.
* `version=None` negotiates the API version on first use (docker-py 7 asks the engine while
  the client is made, so an engine that is down fails the constructor there), and
  `base_url=None` finds the engine as the Docker CLI does (`DOCKER_HOST`, contexts) instead
  of always using `/var/run/docker.sock`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, overload
from urllib.parse import quote

import httpx
import pydantic

from buildsdk import _compat_errors, _protocol
from buildsdk import errors as _errors
from buildsdk._base_client import describe
from buildsdk._compat_errors import (
    DOCKER_PY,
    ArgumentTypeError,
    BuildError,
    InvalidArgument,
    TLSParameterError,
)
from buildsdk._decoder import MessageDecoder, RawMessages, event_from_message
from buildsdk.auth import DockerConfig
from buildsdk.build import REMOTE_PREFIXES, BuildOptions
from buildsdk.client import Client, call, send_build
from buildsdk.endpoint import ConfigError, Endpoint, TLSConfig
from buildsdk.prune import PruneFilters, PruneOptions
from buildsdk.results import ResultCollector
from buildsdk.transports import translate_transport_errors

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self, Unpack

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "DOCKER_PY",
    "APIClient",
    "ArgumentTypeError",
    "BuildError",
    "BuildKwargs",
    "DockerClient",
    "Image",
    "ImageCollection",
    "InvalidArgument",
    "TLSParameterError",
    "from_env",
]

_T = TypeVar("_T")

DEFAULT_TIMEOUT_SECONDS = 60
"""docker-py's default timeout for calls other than build, in seconds."""

_BOOLEAN_FILTERS = frozenset({"inuse", "shared", "private"})

# build()'s flags: docker-py sends whatever it is given, so `nocache=1` works there.
_FLAGS = (
    "quiet",
    "nocache",
    "rm",
    "custom_context",
    "pull",
    "forcerm",
    "gzip",
    "squash",
    "use_config_proxy",
)


def _docker_py_url(endpoint: Endpoint) -> str:
    """The start of the URLs docker-py would use for `endpoint` (for error responses)."""
    if endpoint.scheme != "tcp":
        return "http+docker://localhost"
    address = endpoint.host[len("tcp://") :]
    if endpoint.base_path and address.endswith(endpoint.base_path):
        address = address[: -len(endpoint.base_path)]
    return ("https://" if endpoint.tls is not None else "http://") + address


@contextlib.contextmanager
def _docker_py_errors(base_url: str) -> Iterator[None]:
    """Re-raise buildsdk errors as compat raises them (also docker-py's classes)."""
    try:
        yield
    except _errors.BuildSDKError as exc:
        twin = _compat_errors.translate(exc, base_url)
        if twin is exc:
            raise
        raise twin  # noqa: B904 - translate() keeps the original's cause and traceback


def _translated(stream: Iterator[_T], base_url: str) -> Iterator[_T]:
    """`stream`, with the errors raised while it is read translated like `_docker_py_errors`."""
    with _docker_py_errors(base_url):
        yield from stream


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


def _docker_py_tls(tls: object) -> object:
    """`tls` as docker-py takes it: a buildsdk `TLSConfig` becomes a `docker.tls.TLSConfig`."""
    if not isinstance(tls, TLSConfig):
        return tls
    docker_tls: Any = importlib.import_module("docker.tls")
    cert = None
    if tls.client_cert is not None:
        cert = (str(tls.client_cert), str(tls.client_key or tls.client_cert))
    ca_cert = str(tls.ca_cert) if tls.ca_cert is not None else None
    return docker_tls.TLSConfig(client_cert=cert, ca_cert=ca_cert, verify=tls.verify)


def _docker_py_api_client(endpoint: Endpoint, args: Mapping[str, Any]) -> Any:
    """docker-py's own `APIClient` for `endpoint`, made from compat's constructor arguments."""
    docker: Any = importlib.import_module("docker")
    kwargs = dict(args)
    if kwargs["base_url"] is None:
        # compat found the engine as the CLI does; docker-py must talk to that same engine.
        kwargs["base_url"] = endpoint.host
        if endpoint.tls is not None:
            kwargs["tls"] = endpoint.tls
    kwargs["tls"] = _docker_py_tls(kwargs["tls"])
    if endpoint.scheme == "ssh":
        kwargs["use_ssh_client"] = True  # compat always runs the ssh client
    return docker.APIClient(**kwargs)


def _prune_filters(filters: Mapping[str, Any] | None) -> PruneFilters | None:
    """Read docker-py's `{name: value | [value] | bool}` filters into `PruneFilters`."""
    if filters is None:
        return None
    values: dict[str, Any] = {}
    for name, value in filters.items():
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(items) != 1:
            raise InvalidArgument(
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
    messages = RawMessages()
    try:
        with translate_transport_errors(client.endpoint):
            for piece in response.iter_raw():
                yield from messages.feed(piece)
        yield from messages.flush()
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
    are accepted and not needed. With docker-py installed, every other `docker.APIClient`
    method (`inspect_image`, `create_container`, …) is docker-py's own, on the same engine;
    raises `TLSParameterError` for unusable TLS files.
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
        self._setup(
            base_url,
            version,
            timeout,
            tls,
            user_agent=user_agent,
            credstore_env=credstore_env,
            docker_py_args={
                "base_url": base_url,
                "version": version,
                "timeout": timeout,
                "tls": tls,
                "user_agent": user_agent,
                "credstore_env": credstore_env,
                "use_ssh_client": use_ssh_client,
            },
        )

    def _setup(
        self,
        base_url: str | None,
        version: str | None,
        timeout: float,
        tls: object,
        *,
        user_agent: str | None,
        credstore_env: Mapping[str, str] | None,
        docker_py_args: dict[str, Any],
        env: Mapping[str, str] | None = None,
    ) -> None:
        try:
            host, tls_setting = _host_and_tls(base_url, tls)
        except pydantic.ValidationError as exc:
            raise TLSParameterError(f"invalid TLS settings: {exc}") from exc
        if isinstance(tls_setting, TLSConfig):
            # docker-py checks the TLS files when the client is made; so does compat.
            try:
                tls_setting.ssl_context()
            except ConfigError as exc:
                raise TLSParameterError(str(exc)) from exc
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
        self._docker_py_args = docker_py_args
        self._docker_py: Any = None
        with _docker_py_errors(""):
            self._client = Client(
                host, tls=tls_setting, api_version=pinned, timeout=timeout, config=config, env=env
            )
        self._url = _docker_py_url(self._client.endpoint)
        # The configuration builds are described with: the client's, until a build finds it
        # without credentials and reads config.json again.
        self._config: DockerConfig | None = None

    def _docker_py_client(self) -> Any:
        """docker-py's own `APIClient` on the same engine, made on first use."""
        if self._docker_py is None:
            self._docker_py = _docker_py_api_client(self._client.endpoint, self._docker_py_args)
        return self._docker_py

    def __getattr__(self, name: str) -> Any:
        """Any other docker-py `APIClient` method, served by docker-py itself on the same engine.

        Only when docker-py is installed; compat replaces the build calls and nothing else.
        """
        if name.startswith("_") or not DOCKER_PY:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self._docker_py_client(), name)

    @property
    def client(self) -> Client:
        """The typed `buildsdk.Client` underneath, for moving code over one call at a time."""
        return self._client

    @property
    def api_version(self) -> str:
        """The API version in use (negotiated with the engine on first use unless pinned)."""
        with _docker_py_errors(self._url):
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
        if self._docker_py is not None:
            self._docker_py.close()

    def _docker_config(self) -> DockerConfig:
        # docker-py reads config.json again before a build when the copy it holds has no
        # credentials, so a `docker login` made after the client was created still counts.
        config = self._config if self._config is not None else self._client.docker_config
        if not config.contains_auth:
            config = DockerConfig.load(credstore_env=self._credstore_env)
        self._config = config
        return config

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
        A failed build yields the engine's error message and raises nothing. Bad arguments
        raise what docker-py raises (`TypeError`, `DockerException`; here `ArgumentTypeError`
        and `InvalidArgument`), an option too new for the engine `InvalidVersion`, and an
        HTTP error `APIError` on the first iteration; all are also buildsdk errors.
        """
        with _docker_py_errors(self._url):
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
            # docker-py's keywords cannot ask for BuildKit, so no build here needs a session.
            plan = describe(client, options, client.api_version(), config=self._docker_config())
            plan = dataclasses.replace(plan, request=self._with_user_agent(plan.request))
            try:
                response = send_build(client, plan)
            except _errors.APIError as exc:
                return _raise_on_first_next(_compat_errors.translate(exc, self._url))
        stream: Iterator[bytes] | Iterator[dict[str, Any]]
        if decode:
            stream = _translated(_decoded_messages(response, client), self._url)
        else:
            stream = _translated(_raw_messages(response, client), self._url)
        # A stream that is dropped without being read must still free its connection.
        weakref.finalize(stream, response.close)
        return stream

    @staticmethod
    def _options(**kwargs: Any) -> BuildOptions:
        """docker-py's keywords -> `BuildOptions`, refusing what docker-py refuses as it does.

        docker-py's own checks come first, in its order and with its exception classes;
        docker-py's silent no-ops stay silent; whatever else buildsdk refuses is
        `InvalidArgument` (docker-py would send it and get the engine's error).
        """
        path = kwargs["path"]
        fileobj = kwargs["fileobj"]
        if path is None and fileobj is None:
            raise ArgumentTypeError("Either path or fileobj needs to be provided.")
        if kwargs["gzip"] and kwargs["encoding"] is not None:
            raise InvalidArgument("Can not use custom encoding if gzip is enabled")
        for name in _FLAGS:
            value = kwargs[name]
            if isinstance(value, int) and not isinstance(value, bool):
                kwargs[name] = bool(value)  # docker-py sends 1 and 0 as given
        remote = isinstance(path, str) and path.startswith(REMOTE_PREFIXES)
        if kwargs["custom_context"]:
            if not fileobj:
                raise ArgumentTypeError("You must specify fileobj with custom_context")
        elif fileobj is None and not remote and not (isinstance(path, str) and os.path.isdir(path)):
            raise ArgumentTypeError("You must specify a directory to build in path")
        if fileobj is not None and (kwargs["custom_context"] or remote):
            # docker-py sends only fileobj then and ignores path.
            kwargs["path"] = None
        if isinstance(fileobj, (io.BytesIO, io.StringIO)) and not kwargs["custom_context"]:
            # docker-py reads an in-memory Dockerfile by value, wherever its position is, so
            # one BytesIO serves several builds. A custom context tar is read from the
            # current position in both, as requests sends a file.
            fileobj.seek(0)
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
        # docker-py only knows POST /build; its builds never follow the engine to BuildKit.
        kwargs["build_endpoint"] = "build"
        try:
            return BuildOptions(**kwargs)
        except pydantic.ValidationError as exc:
            raise InvalidArgument(str(exc)) from exc

    def images_build(self, **kwargs: Unpack[BuildKwargs]) -> tuple[str, list[dict[str, Any]]]:
        """Build like docker-py's `client.images.build(**kwargs)` and wait for the end.

        Returns the image id (`sha256:…`) and every message of the log as dicts
        (`DockerClient.images.build` returns an `Image` instead). Raises `BuildError` (with
        `build_log`; also docker-py's `BuildError`) when the build fails or reports no image.
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
        with _docker_py_errors(self._url):
            try:
                options = PruneOptions(
                    all=bool(all),
                    filters=_prune_filters(filters),
                    keep_storage=keep_storage,
                )
            except pydantic.ValidationError as exc:
                raise InvalidArgument(str(exc)) from exc
            client = self._client
            request = _protocol.prune_request(
                options, client.api_version(), base_path=client.endpoint.base_path
            )
            request = self._with_user_agent(request)
            # docker-py gives prune its 60 s default; pruning a large cache takes longer, so
            # like a build it has no read timeout here.
            body = call(client, request, slow=True)
            return _protocol.parse_json_object(body, "prune")


class Image:
    """A built image as `DockerClient.images.build` returns it when docker-py is not installed.

    `attrs` is the engine's `GET /images/{id}/json` answer; `id`, `short_id`, `tags` and
    `labels` read it as docker-py's `Image` does. With docker-py installed, builds return
    docker-py's own `Image` instead.
    """

    def __init__(self, attrs: Mapping[str, Any]) -> None:
        self.attrs: dict[str, Any] = dict(attrs)
        """The engine's description of the image."""

    @property
    def id(self) -> str:
        """The image id, `sha256:…`."""
        return str(self.attrs["Id"])

    @property
    def short_id(self) -> str:
        """The id cut to 12 hex digits, keeping its `sha256:` prefix."""
        return self.id[:19] if self.id.startswith("sha256:") else self.id[:12]

    @property
    def tags(self) -> list[str]:
        """The image's `name:tag` references, without `<none>:<none>`."""
        return [tag for tag in self.attrs.get("RepoTags") or [] if tag != "<none>:<none>"]

    @property
    def labels(self) -> dict[str, str]:
        """The image's labels (empty when it has none)."""
        return dict((self.attrs.get("Config") or {}).get("Labels") or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<Image: '{', '.join(self.tags)}'>"


class ImageCollection:
    """`DockerClient.images`: docker-py's image calls, with `build` done by buildsdk.

    With docker-py installed, every other attribute (`get`, `list`, `pull`, `remove`, …) is
    docker-py's own `ImageCollection`'s.
    """

    def __init__(self, client: DockerClient) -> None:
        self._client = client

    def build(self, **kwargs: Unpack[BuildKwargs]) -> tuple[Any, Iterator[dict[str, Any]]]:
        """Build like docker-py's `ImageCollection.build`: returns `(Image, log iterator)`.

        The `Image` is docker-py's when it is installed (so `client.containers.run(image)`
        takes it), else this module's `Image`; the iterator yields every message as a dict.
        Raises `BuildError` (with `build_log`) when the build fails.
        """
        image_id, log = self._client.api.images_build(**kwargs)
        return self.get(image_id), iter(log)

    def get(self, name: str) -> Any:
        """The image called `name` (an id or reference), as `build` returns it.

        Raises `NotFound` (docker-py's `ImageNotFound` when it is installed).
        """
        images = self._client._docker_images()
        if images is not None:
            return images.get(name)
        api = self._client.api
        client = api.client
        with _docker_py_errors(api._url):
            version = client.api_version()
            path = f"{client.endpoint.base_path}/v{version}/images/{quote(name, safe='')}/json"
            body = call(client, _protocol.Request("GET", path))
            return Image(_protocol.parse_json_object(body, "image inspect"))

    def __getattr__(self, name: str) -> Any:
        images = self._client._docker_images()
        if images is None or name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(images, name)


class DockerClient:
    """docker-py's `docker.DockerClient` with its builds done by buildsdk.

    Takes docker-py's arguments. `images.build` returns `(Image, iterator of dicts)` and
    `api` is this module's `APIClient`. With docker-py installed, everything that is not
    a build (`containers`, `images.get`, `volumes`, `networks`, …) is a docker-py
    `DockerClient` on the same engine, made on first use; without it only builds, image
    lookups and prunes are available.
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
        self.api = APIClient(
            base_url=base_url,
            version=version,
            timeout=timeout,
            tls=tls,
            user_agent=user_agent,
            num_pools=num_pools,
            credstore_env=credstore_env,
            use_ssh_client=use_ssh_client,
            max_pool_size=max_pool_size,
        )
        """The compat `APIClient` (docker-py's own for every call that is not a build)."""
        self.images = ImageCollection(self)
        """Image calls: `build` by buildsdk, the others by docker-py."""
        self._docker: Any = None

    @classmethod
    def from_env(
        cls,
        version: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_pool_size: int | None = None,
        environment: Mapping[str, str] | None = None,
        credstore_env: Mapping[str, str] | None = None,
        use_ssh_client: bool = False,
        use_context: bool = True,
    ) -> DockerClient:
        """A client for the engine the environment names, like `docker.from_env()`.

        `DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH` (read from `environment`,
        default `os.environ`), then the current Docker context, as the Docker CLI finds them
        (the context is always consulted: `use_context` is accepted for docker-py's sake, as
        is `max_pool_size`).
        """
        client = cls.__new__(cls)
        api = APIClient.__new__(APIClient)
        api._setup(
            None,
            version,
            timeout,
            None,
            user_agent=None,
            credstore_env=credstore_env,
            docker_py_args={
                "base_url": None,
                "version": version,
                "timeout": timeout,
                "tls": False,
                "user_agent": None,
                "credstore_env": credstore_env,
                "use_ssh_client": use_ssh_client,
            },
            env=environment,
        )
        client.api = api
        client.images = ImageCollection(client)
        client._docker = None
        return client

    def _docker_images(self) -> Any:
        """docker-py's `ImageCollection` on the same engine, or None without docker-py."""
        docker = self._docker_client()
        return None if docker is None else docker.images

    def _docker_client(self) -> Any:
        if not DOCKER_PY:
            return None
        if self._docker is None:
            docker: Any = importlib.import_module("docker")
            # docker-py's own APIClient (the one compat's api falls back to) under
            # docker-py's DockerClient, so models it returns work as they always have.
            outer = docker.DockerClient.__new__(docker.DockerClient)
            outer.api = self.api._docker_py_client()
            self._docker = outer
        return self._docker

    def prune_builds(self, **kwargs: Any) -> dict[str, Any]:
        """Remove build cache: `api.prune_builds(**kwargs)`."""
        return self.api.prune_builds(**kwargs)

    def __getattr__(self, name: str) -> Any:
        """docker-py's `DockerClient` attribute `name` (`containers`, `volumes`, `info`, …)."""
        docker = self._docker_client() if not name.startswith("_") else None
        if docker is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(docker, name)

    def close(self) -> None:
        """Close the connections of both clients."""
        self.api.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def from_env(**kwargs: Any) -> DockerClient:
    """`DockerClient.from_env(**kwargs)`, as `docker.from_env()`."""
    return DockerClient.from_env(**kwargs)
