"""Fixtures that connect integration tests to the engines started by ``scripts/engines``.

Why: ``scripts/engines up`` writes every address and credential to one env file; that file
is the contract between the script and the tests. It is found through
``BUILDSDK_ENGINES_ENV``, else ``$BUILDSDK_ENGINES_DIR/env``, else ``.engines/env`` in the
repository. Variables of the same names in the environment win over the file, so the tests
can also run against engines started some other way.

Each engine has its own fixture that first checks the engine answers, so a missing Podman
only affects Podman tests. The Docker fixtures (``dockerd_http``, ``dockerd_client``, and the
``dockerd`` runners built on them) are parametrized over `DOCKER_MATRIX`: Docker 20.10,
Docker 26.1 with the classic image store and Docker 26.1 with the containerd image store.
Each test id names the engine (``docker20.10``, ``docker26.1``, ``docker26.1-containerd``) and
each carries its marker (``docker20``, ``docker26``, ``docker26_containerd``), so
``-m docker26`` runs one engine. The TLS dockerd and the ssh transport reach Docker 20.10
only: they test a transport, not an engine. When engines are required (``CI`` set, or
``BUILDSDK_REQUIRE_ENGINES=1``) an unreachable engine fails the test; otherwise it skips
with a hint on how to start the engines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
import socket
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from buildsdk.aio import AsyncClient
from buildsdk.auth import DockerConfig
from buildsdk.build import BuildOptions
from buildsdk.client import Client
from buildsdk.endpoint import TLSConfig
from buildsdk.errors import BuildSDKError
from buildsdk.results import BuildResult

__all__ = [
    "DOCKER_MATRIX",
    "ENGINE_CLIENTS",
    "REPO_ROOT",
    "DockerEngine",
    "Engines",
    "TLSFiles",
    "all_engines",
    "client_settings",
    "docker_engine",
    "docker_engine_of",
    "dockerd20_http",
    "dockerd_aclient",
    "dockerd_client",
    "dockerd_http",
    "dockerd_tls_aclient",
    "dockerd_tls_client",
    "dockerd_tls_http",
    "engines",
    "engines_on_matrix",
    "engines_unavailable",
    "load_engines",
    "podman_aclient",
    "podman_client",
    "podman_http",
    "registry_http",
    "ssh_aclient",
    "ssh_client",
    "unix_socket_path",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root, where ``scripts/engines`` lives."""

_START_HINT = (
    "start them with `scripts/engines up` (as root), or set BUILDSDK_ENGINES_ENV to an env "
    "file it wrote"
)
_TIMEOUT = httpx.Timeout(10.0, read=300.0)


def _required() -> bool:
    ci = os.environ.get("CI", "").strip().lower()
    if ci not in ("", "0", "false", "no"):
        return True
    return os.environ.get("BUILDSDK_REQUIRE_ENGINES", "").strip() == "1"


def engines_unavailable(message: str) -> NoReturn:
    """Fail the test when engines are required, else skip it; the message says what is missing."""
    if _required():
        pytest.fail(f"{message} (engines are required here: CI or BUILDSDK_REQUIRE_ENGINES=1)")
    pytest.skip(f"{message}; {_START_HINT}")


def unix_socket_path(host: str) -> str:
    """Return the filesystem path of a ``unix://`` engine address."""
    if not host.startswith("unix://"):
        raise ValueError(f"not a unix socket address: {host!r}")
    return host[len("unix://") :]


@dataclass(frozen=True)
class TLSFiles:
    """The client side of a TLS engine: CA certificate, client certificate and its key."""

    ca: Path
    cert: Path
    key: Path

    def ssl_context(self) -> ssl.SSLContext:
        """Build a client SSL context that trusts only the CA and presents the client cert."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


@dataclass(frozen=True)
class Engines:
    """Where the test engines are and how to authenticate; ``None`` for one not started."""

    env_file: Path | None
    state_dir: Path | None
    services: tuple[str, ...]
    base_image: str
    dockerd_host: str | None
    dockerd_network: str
    dockerd_tls_host: str | None
    dockerd_tls: TLSFiles | None
    podman_host: str | None
    podman_network: str
    dockerd26_host: str | None
    dockerd26_containerd_host: str | None
    docker26_cli: Path | None
    buildx013: Path | None
    docker26_config: Path | None
    registry: str | None
    registry_user: str | None
    registry_password: str | None = field(repr=False)
    registry_image: str | None
    ssh_host: str | None
    ssh_config: Path | None
    ssh_key: Path | None

    @classmethod
    def from_mapping(cls, values: Mapping[str, str], env_file: Path | None) -> Engines:
        """Read the ``BUILDSDK_*`` keys that ``scripts/engines up`` writes."""

        def text(key: str) -> str | None:
            value = values.get(key, "").strip()
            return value or None

        def path(key: str) -> Path | None:
            value = text(key)
            return Path(value) if value else None

        ca, cert, key = (
            path("BUILDSDK_DOCKERD_TLS_CA"),
            path("BUILDSDK_DOCKERD_TLS_CERT"),
            path("BUILDSDK_DOCKERD_TLS_KEY"),
        )
        return cls(
            env_file=env_file,
            state_dir=path("BUILDSDK_ENGINES_DIR"),
            services=tuple((text("BUILDSDK_ENGINES_SERVICES") or "").split()),
            base_image=text("BUILDSDK_BASE_IMAGE") or "busybox:latest",
            dockerd_host=text("BUILDSDK_DOCKERD_HOST"),
            dockerd_network=text("BUILDSDK_DOCKERD_NETWORK") or "host",
            dockerd_tls_host=text("BUILDSDK_DOCKERD_TLS_HOST"),
            dockerd_tls=TLSFiles(ca, cert, key) if ca and cert and key else None,
            podman_host=text("BUILDSDK_PODMAN_HOST"),
            podman_network=text("BUILDSDK_PODMAN_NETWORK") or "host",
            dockerd26_host=text("BUILDSDK_DOCKERD26_HOST"),
            dockerd26_containerd_host=text("BUILDSDK_DOCKERD26_CONTAINERD_HOST"),
            docker26_cli=path("BUILDSDK_DOCKER26_CLI"),
            buildx013=path("BUILDSDK_BUILDX013"),
            docker26_config=path("BUILDSDK_DOCKER26_CONFIG"),
            registry=text("BUILDSDK_REGISTRY"),
            registry_user=text("BUILDSDK_REGISTRY_USER"),
            registry_password=text("BUILDSDK_REGISTRY_PASSWORD"),
            registry_image=text("BUILDSDK_REGISTRY_IMAGE"),
            ssh_host=text("BUILDSDK_SSH_HOST"),
            ssh_config=path("BUILDSDK_SSH_CONFIG"),
            ssh_key=path("BUILDSDK_SSH_KEY"),
        )


def _env_file_path(environ: Mapping[str, str]) -> Path:
    if environ.get("BUILDSDK_ENGINES_ENV"):
        return Path(environ["BUILDSDK_ENGINES_ENV"])
    if environ.get("BUILDSDK_ENGINES_DIR"):
        return Path(environ["BUILDSDK_ENGINES_DIR"]) / "env"
    return REPO_ROOT / ".engines" / "env"


def _parse_env_file(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "export":
            words = words[1:]
        for word in words:
            key, sep, value = word.partition("=")
            if sep:
                values[key] = value
    return values


def load_engines(environ: Mapping[str, str] | None = None) -> Engines | None:
    """Load the engine description from the env file and environment, or ``None`` if absent."""
    env = os.environ if environ is None else environ
    env_file = _env_file_path(env)
    values: dict[str, str] = {}
    found: Path | None = None
    if env_file.is_file():
        values.update(_parse_env_file(env_file.read_text()))
        found = env_file
    values.update({k: v for k, v in env.items() if k.startswith("BUILDSDK_") and v})
    engines = Engines.from_mapping(values, found)
    if not any(
        (
            engines.dockerd_host,
            engines.dockerd_tls_host,
            engines.podman_host,
            engines.registry,
            engines.dockerd26_host,
            engines.dockerd26_containerd_host,
        )
    ):
        return None
    return engines


def _check_unix_socket(host: str, what: str) -> str:
    # httpcore leaks the socket when a unix-socket connect fails, which filterwarnings=error
    # turns into an unrelated-looking error later; so try the connect ourselves first.
    path = unix_socket_path(host)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(5.0)
            probe.connect(path)
    except OSError as exc:
        engines_unavailable(f"{what} does not answer: {exc}")
    return path


def _ping(client: httpx.Client, what: str) -> None:
    try:
        response = client.get("/_ping", timeout=10.0)
    except httpx.TransportError as exc:
        engines_unavailable(f"{what} does not answer: {exc!r}")
    if response.status_code != 200 or response.text != "OK":
        engines_unavailable(f"{what} answered /_ping with {response.status_code}")


def _unix_http(host: str, what: str, name: str) -> Iterator[httpx.Client]:
    # A raw client on an engine's unix socket, checked to answer /_ping; `name` is the
    # placeholder host of its URLs.
    transport = httpx.HTTPTransport(uds=_check_unix_socket(host, what))
    with httpx.Client(transport=transport, base_url=f"http://{name}", timeout=_TIMEOUT) as client:
        _ping(client, what)
        yield client


@pytest.fixture(scope="session")
def all_engines() -> Engines:
    """The engines described by the env file of ``scripts/engines up``."""
    loaded = load_engines()
    if loaded is None:
        engines_unavailable(f"no engines configured (no env file at {_env_file_path(os.environ)})")
    return loaded


@pytest.fixture(scope="session")
def engines(all_engines: Engines) -> Engines:
    """The engines of ``scripts/engines up``; a module whose tests all run on the Docker matrix
    overrides it with `engines_on_matrix`, so ``dockerd_host`` is the matrix engine's."""
    return all_engines


def engines_on_matrix(all_engines: Engines, docker_engine: DockerEngine) -> Engines:
    """`all_engines` with ``dockerd_host`` pointing at `docker_engine`."""
    return dataclasses.replace(all_engines, dockerd_host=docker_engine.host)


@dataclass(frozen=True)
class DockerEngine:
    """One Docker Engine of the test matrix: its service name, test id, address and version."""

    service: str
    id: str
    host: str
    version: tuple[int, int]
    containerd_store: bool
    api: str
    """The newest API version the engine speaks."""

    @property
    def is_20(self) -> bool:
        """Tell whether this is Docker 20.10, whose BuildKit (0.8) words some errors differently."""
        return self.version < (23, 0)


DOCKER_MATRIX = (
    ("dockerd", "docker20.10", "BUILDSDK_DOCKERD_HOST", (20, 10), False, "1.41"),
    ("dockerd26", "docker26.1", "BUILDSDK_DOCKERD26_HOST", (26, 1), False, "1.45"),
    (
        "dockerd26-containerd",
        "docker26.1-containerd",
        "BUILDSDK_DOCKERD26_CONTAINERD_HOST",
        (26, 1),
        True,
        "1.45",
    ),
)
"""The Docker engines every Docker test runs on: service, id, env key, version, containerd
image store or not, API version."""

_MATRIX_MARKS = {
    "dockerd": pytest.mark.docker20,
    "dockerd26": pytest.mark.docker26,
    "dockerd26-containerd": pytest.mark.docker26_containerd,
}


def docker_engine_of(engines: Engines, service: str) -> DockerEngine:
    """The `DockerEngine` of one matrix service; unavailable ones skip/fail."""
    for name, ident, key, version, containerd, api in DOCKER_MATRIX:
        if name != service:
            continue
        host = {
            "dockerd": engines.dockerd_host,
            "dockerd26": engines.dockerd26_host,
            "dockerd26-containerd": engines.dockerd26_containerd_host,
        }[name]
        if host is None:
            engines_unavailable(f"{name} was not started (no {key})")
        return DockerEngine(name, ident, host, version, containerd, api)
    raise ValueError(f"no Docker engine {service!r} in the matrix")


@pytest.fixture(
    scope="session",
    params=[pytest.param(m[0], id=m[1], marks=_MATRIX_MARKS[m[0]]) for m in DOCKER_MATRIX],
)
def docker_engine(request: pytest.FixtureRequest, all_engines: Engines) -> DockerEngine:
    """The Docker engine of the matrix this test runs on (one test per engine)."""
    return docker_engine_of(all_engines, request.param)


@pytest.fixture(scope="session")
def dockerd_http(docker_engine: DockerEngine) -> Iterator[httpx.Client]:
    """A raw httpx client on the matrix dockerd's unix socket; checked to answer /_ping."""
    host = docker_engine.host
    yield from _unix_http(host, f"{docker_engine.service} at {host}", "docker")


@pytest.fixture(scope="session")
def dockerd20_http(all_engines: Engines) -> Iterator[httpx.Client]:
    """A raw httpx client on Docker 20.10, the engine sshd's dial-stdio reaches."""
    if all_engines.dockerd_host is None:
        engines_unavailable("dockerd was not started (no BUILDSDK_DOCKERD_HOST)")
    yield from _unix_http(
        all_engines.dockerd_host, f"dockerd at {all_engines.dockerd_host}", "docker"
    )


@pytest.fixture(scope="session")
def dockerd_tls_http(all_engines: Engines) -> Iterator[httpx.Client]:
    """A raw httpx client speaking mutual TLS to the second dockerd; checked to answer."""
    if all_engines.dockerd_tls_host is None or all_engines.dockerd_tls is None:
        engines_unavailable("the TLS dockerd was not started (no BUILDSDK_DOCKERD_TLS_*)")
    if not all_engines.dockerd_tls_host.startswith("tcp://"):
        raise ValueError(f"TLS dockerd address is not tcp://: {all_engines.dockerd_tls_host!r}")
    base_url = "https://" + all_engines.dockerd_tls_host[len("tcp://") :]
    context = all_engines.dockerd_tls.ssl_context()
    with httpx.Client(base_url=base_url, verify=context, timeout=_TIMEOUT) as client:
        _ping(client, f"TLS dockerd at {all_engines.dockerd_tls_host}")
        yield client


@pytest.fixture(scope="session")
def podman_http(all_engines: Engines) -> Iterator[httpx.Client]:
    """A raw httpx client on Podman's Docker-compatible API socket; checked to answer."""
    if all_engines.podman_host is None:
        engines_unavailable("Podman was not started (no BUILDSDK_PODMAN_HOST)")
    yield from _unix_http(all_engines.podman_host, f"Podman at {all_engines.podman_host}", "podman")


@pytest.fixture(scope="session")
def registry_http(all_engines: Engines) -> Iterator[httpx.Client]:
    """A raw httpx client for the registry, without credentials; checked to answer /v2/."""
    if all_engines.registry is None:
        engines_unavailable("the registry was not started (no BUILDSDK_REGISTRY)")
    with httpx.Client(base_url=f"http://{all_engines.registry}", timeout=_TIMEOUT) as client:
        try:
            response = client.get("/v2/")
        except httpx.TransportError as exc:
            engines_unavailable(f"registry at {all_engines.registry} does not answer: {exc!r}")
        if response.status_code not in (200, 401):
            engines_unavailable(f"registry answered /v2/ with {response.status_code}")
        yield client


# --------------------------------------------------------------------------------------------
# buildsdk clients, one sync and one async per engine. They ignore the user's ~/.docker (an
# empty configuration: no credentials, proxies or headers), so a developer's setup cannot
# change what the tests send.

ENGINE_CLIENTS = ("dockerd", "dockerd_tls", "podman", "ssh")
"""The engines buildsdk clients are made for, by the name their fixtures start with."""


def client_settings(
    engines: Engines, name: str, docker: DockerEngine | None = None
) -> dict[str, Any]:
    """Keyword arguments of `Client`/`AsyncClient` for one engine; unavailable ones skip/fail.

    For ``"dockerd"`` the engine is `docker` (a matrix engine), else Docker 20.10.
    """
    settings: dict[str, Any] = {"config": DockerConfig({}, env={}, detect_default_store=False)}
    if name == "dockerd":
        if docker is None:
            docker = docker_engine_of(engines, "dockerd")
        _check_unix_socket(docker.host, f"{docker.service} at {docker.host}")
        settings["host"] = docker.host
    elif name == "dockerd_tls":
        if engines.dockerd_tls_host is None or engines.dockerd_tls is None:
            engines_unavailable("the TLS dockerd was not started (no BUILDSDK_DOCKERD_TLS_*)")
        files = engines.dockerd_tls
        settings["host"] = engines.dockerd_tls_host
        settings["tls"] = TLSConfig(ca_cert=files.ca, client_cert=files.cert, client_key=files.key)
    elif name == "podman":
        if engines.podman_host is None:
            engines_unavailable("Podman was not started (no BUILDSDK_PODMAN_HOST)")
        _check_unix_socket(engines.podman_host, f"Podman at {engines.podman_host}")
        settings["host"] = engines.podman_host
    elif name == "ssh":
        if engines.ssh_host is None or engines.ssh_config is None:
            engines_unavailable("sshd was not started (no BUILDSDK_SSH_HOST/BUILDSDK_SSH_CONFIG)")
        settings["host"] = engines.ssh_host
        settings["env"] = {"BUILDSDK_SSH_CONFIG": str(engines.ssh_config)}
    else:
        raise ValueError(f"no buildsdk client for engine {name!r}")
    return settings


def build_result(flavor: str, settings: dict[str, Any], options: BuildOptions) -> BuildResult:
    """Run one build with `Client` (flavor ``"sync"``) or `AsyncClient` (``"async"``) made
    from `settings`, and return its result."""
    if flavor == "sync":
        with Client(**settings) as client:
            return client.build(options).result()

    async def main() -> BuildResult:
        async with AsyncClient(**settings) as client:
            return await client.build(options).result()

    return asyncio.run(main())


def _client(engines: Engines, name: str, docker: DockerEngine | None = None) -> Iterator[Client]:
    with Client(**client_settings(engines, name, docker)) as client:
        try:
            client.ping()
        except BuildSDKError as exc:
            engines_unavailable(f"{name} does not answer buildsdk's ping: {exc}")
        yield client


async def _aclient(
    engines: Engines, name: str, docker: DockerEngine | None = None
) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(**client_settings(engines, name, docker)) as client:
        try:
            await client.ping()
        except BuildSDKError as exc:
            engines_unavailable(f"{name} does not answer buildsdk's ping: {exc}")
        yield client


@pytest.fixture(scope="session")
def dockerd_client(engines: Engines, docker_engine: DockerEngine) -> Iterator[Client]:
    """A buildsdk `Client` on the matrix dockerd (classic builder and BuildKit)."""
    yield from _client(engines, "dockerd", docker_engine)


@pytest.fixture(scope="session")
def dockerd_tls_client(engines: Engines) -> Iterator[Client]:
    """A buildsdk `Client` speaking mutual TLS to the second dockerd."""
    yield from _client(engines, "dockerd_tls")


@pytest.fixture(scope="session")
def podman_client(engines: Engines) -> Iterator[Client]:
    """A buildsdk `Client` on Podman's Docker-compatible API."""
    yield from _client(engines, "podman")


@pytest.fixture(scope="session")
def ssh_client(engines: Engines) -> Iterator[Client]:
    """A buildsdk `Client` reaching Docker 20.10 through `ssh://` (dial-stdio)."""
    yield from _client(engines, "ssh")


# Async clients belong to one event loop, so they live as long as one (anyio) test.


@pytest.fixture
async def dockerd_aclient(
    engines: Engines, docker_engine: DockerEngine
) -> AsyncIterator[AsyncClient]:
    """A buildsdk `AsyncClient` on the matrix dockerd."""
    async for client in _aclient(engines, "dockerd", docker_engine):
        yield client


@pytest.fixture
async def dockerd_tls_aclient(engines: Engines) -> AsyncIterator[AsyncClient]:
    """A buildsdk `AsyncClient` speaking mutual TLS to the second dockerd."""
    async for client in _aclient(engines, "dockerd_tls"):
        yield client


@pytest.fixture
async def podman_aclient(engines: Engines) -> AsyncIterator[AsyncClient]:
    """A buildsdk `AsyncClient` on Podman's Docker-compatible API."""
    async for client in _aclient(engines, "podman"):
        yield client


@pytest.fixture
async def ssh_aclient(engines: Engines) -> AsyncIterator[AsyncClient]:
    """A buildsdk `AsyncClient` reaching Docker 20.10 through `ssh://`."""
    async for client in _aclient(engines, "ssh"):
        yield client
