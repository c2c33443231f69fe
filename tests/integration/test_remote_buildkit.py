"""Control API channels to buildkitd-style addresses, and builds whose session rides on
`Control/Session`, against real engines.

The daemon is `buildkitd_standin.StandIn`: dockerd's own BuildKit behind a mutual-TLS tcp
port and a unix socket (no buildkitd binary exists here). Each test runs with the async
channel (`open_buildkitd` on the test's loop) and the sync one (`buildkitd_channel` from a
worker thread). What is asserted is what the user gets: the engine's workers, the image
the engine holds after the build, the typed errors of a failing build and of refused TLS.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx
import pytest

from buildsdk import BuildOptions, transports
from buildsdk._grpc.status import Status
from buildsdk.buildkit.control import (
    CONTROL_LIST_WORKERS,
    CONTROL_SESSION,
    AsyncControlChannel,
    ControlChannel,
    open_control,
)
from buildsdk.buildkit.direct import SolveOutcome, solve_dockerfile, solve_dockerfile_sync
from buildsdk.buildkit.remote import buildkitd_channel, open_buildkitd
from buildsdk.buildkit.solve import ListWorkersRequest, ListWorkersResponse
from buildsdk.endpoint import TLSConfig, resolve_endpoint
from buildsdk.errors import BuildError, EngineUnreachable, StreamError
from buildsdk.outputs import LocalOutput
from buildsdk.session._runtime import control_session_metadata
from buildsdk.session._tunnel import ControlSessionStream
from tests.integration.buildkitd_standin import Pki, StandIn, free_port, make_pki
from tests.integration.conftest import DockerEngine, Engines, unix_socket_path

pytestmark = [pytest.mark.anyio, pytest.mark.dockerd]

SNAPSHOTTER = "org.mobyproject.buildkit.worker.snapshotter"
_T = TypeVar("_T")


@pytest.fixture
def anyio_backend() -> str:
    """The channels run on asyncio."""
    return "asyncio"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made for these tests."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def standin(docker_engine: DockerEngine, pki: Pki, tmp_path: Path) -> Iterator[StandIn]:
    """A buildkitd stand-in in front of the matrix engine."""
    socket_path = unix_socket_path(docker_engine.host)
    with StandIn(socket_path, pki, tmp_path / "buildkitd.sock").running() as daemon:
        yield daemon


@pytest.fixture(params=("async", "sync"))
def flavor(request: pytest.FixtureRequest) -> str:
    """`async` (open_buildkitd) or `sync` (buildkitd_channel in a worker thread)."""
    return str(request.param)


def _tls(pki: Pki, **changes: Any) -> TLSConfig:
    settings: dict[str, Any] = {
        "ca_cert": pki.ca,
        "client_cert": pki.client_cert,
        "client_key": pki.client_key,
    }
    settings.update(changes)
    return TLSConfig(**settings)


async def _with_channel(
    flavor: str,
    address: str,
    tls: TLSConfig | None,
    use: Callable[[AsyncControlChannel], Awaitable[_T]],
    *,
    server_name: str | None = None,
) -> _T:
    """Open a channel of `flavor` to `address` and run `use` with its async channel (for
    the sync flavour: opened, driven through `ControlChannel.run` and closed in a thread)."""
    if flavor == "async":
        async with open_buildkitd(address, tls=tls, server_name=server_name) as channel:
            return await use(channel)

    def run() -> _T:
        with buildkitd_channel(address, tls=tls, server_name=server_name) as channel:
            return channel.run(use)

    return await anyio.to_thread.run_sync(run)


async def _labels(channel: AsyncControlChannel) -> list[dict[str, str]]:
    reply = await channel.unary(CONTROL_LIST_WORKERS, ListWorkersRequest().encode())
    return [dict(worker.labels) for worker in ListWorkersResponse.decode(reply).record]


def _context(tmp_path: Path, dockerfile: str, hello: str = "hello\n") -> Path:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    (context / "hello.txt").write_text(hello)
    return context


async def _build(
    flavor: str, address: str, tls: TLSConfig | None, options: BuildOptions
) -> SolveOutcome:
    if flavor == "async":
        async with open_buildkitd(address, tls=tls, server_name="buildkitd.test") as channel:
            return await solve_dockerfile(channel, options)

    def run() -> SolveOutcome:
        with buildkitd_channel(address, tls=tls, server_name="buildkitd.test") as channel:
            return solve_dockerfile_sync(channel, options)

    return await anyio.to_thread.run_sync(run)


def _image(dockerd_http: httpx.Client, tag: str) -> dict[str, Any]:
    response = dockerd_http.get(f"/images/{tag}/json")
    assert response.status_code == 200, response.text
    image: dict[str, Any] = response.json()
    return image


async def test_list_workers_over_mutual_tls(
    standin: StandIn, pki: Pki, docker_engine: DockerEngine, flavor: str
) -> None:
    labels = await _with_channel(flavor, standin.tcp_address, _tls(pki), _labels)
    assert labels
    assert any(SNAPSHOTTER in worker for worker in labels) == docker_engine.containerd_store
    assert standin.upgrades == 1


async def test_list_workers_over_a_unix_socket(standin: StandIn, flavor: str) -> None:
    labels = await _with_channel(flavor, standin.unix_address, None, _labels)
    assert labels


async def test_list_workers_over_plain_tcp(standin: StandIn, flavor: str) -> None:
    labels = await _with_channel(flavor, standin.plain_address, None, _labels)
    assert labels


async def test_server_name_is_checked(standin: StandIn, pki: Pki, flavor: str) -> None:
    # The certificate names buildkitd.test and 127.0.0.1, not localhost.
    address = standin.tcp_address.replace("127.0.0.1", "localhost")
    with pytest.raises(EngineUnreachable, match="TLS handshake failed") as caught:
        await _with_channel(flavor, address, _tls(pki), _labels)
    assert "CERTIFICATE_VERIFY_FAILED (Hostname mismatch" in str(caught.value)
    assert await _with_channel(flavor, address, _tls(pki), _labels, server_name="buildkitd.test")


async def test_a_daemon_signed_by_another_ca_is_refused(
    standin: StandIn, pki: Pki, flavor: str
) -> None:
    with pytest.raises(EngineUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        await _with_channel(flavor, standin.tcp_address, _tls(pki, ca_cert=pki.other_ca), _labels)
    assert standin.upgrades == 0
    # Only an explicit verify=False skips the check.
    unchecked = _tls(pki, ca_cert=None, verify=False)
    assert await _with_channel(flavor, standin.tcp_address, unchecked, _labels)


async def test_the_daemon_refuses_a_client_without_its_certificate(
    standin: StandIn, pki: Pki, flavor: str
) -> None:
    refusals: tuple[TLSConfig, ...] = (
        TLSConfig(ca_cert=pki.ca),
        _tls(pki, client_cert=pki.other_client_cert, client_key=pki.other_client_key),
    )
    for tls in refusals:
        # Under TLS 1.3 the daemon checks the client's certificate after the client's side
        # of the handshake is over, so the refusal reaches the user at the first call.
        with pytest.raises(StreamError) as caught:
            await _with_channel(flavor, standin.tcp_address, tls, _labels)
        assert str(caught.value).startswith(f"{CONTROL_LIST_WORKERS} on {standin.tcp_address}: ")
    assert standin.upgrades == 0


async def test_nothing_listening_is_unreachable(flavor: str, pki: Pki) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(EngineUnreachable, match="is buildkitd running") as caught:
        await _with_channel(flavor, address, _tls(pki), _labels)
    assert caught.value.address == address


async def test_a_build_through_the_tunnelled_session(
    standin: StandIn,
    pki: Pki,
    docker_engine: DockerEngine,
    engines: Engines,
    dockerd_http: httpx.Client,
    flavor: str,
    tmp_path: Path,
) -> None:
    marker = uuid.uuid4().hex[:12]
    tag = f"buildsdk-remote-test:{marker}"
    context = _context(
        tmp_path,
        f"FROM {engines.base_image}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n"
        f"LABEL marker={marker}\n",
        # A fresh file, so RUN is not a cache hit and prints it.
        hello=f"hello from the tunnel {marker}\n",
    )
    # The test engines have no bridge network: RUN steps use the host's.
    options = BuildOptions(path=context, tag=tag, network_mode=engines.dockerd_network)
    try:
        outcome = await _build(flavor, standin.tcp_address, _tls(pki), options)
        image = _image(dockerd_http, tag)
        assert image["Config"]["Labels"]["marker"] == marker
        if docker_engine.is_20:
            # BuildKit 0.8 answers with the image ID alone.
            assert outcome.exporter_response == {"containerimage.digest": image["Id"]}
        else:
            assert outcome.exporter_response["image.name"] == f"docker.io/library/{tag}"
        logs = b"".join(getattr(event, "data", b"") for event in outcome.events)
        assert f"hello from the tunnel {marker}".encode() in logs
    finally:
        dockerd_http.delete(f"/images/{tag}")


async def test_a_failing_build_raises_build_error_with_the_log(
    standin: StandIn, pki: Pki, engines: Engines, flavor: str, tmp_path: Path
) -> None:
    context = _context(tmp_path, f"FROM {engines.base_image}\nRUN echo about to fail && exit 3\n")
    with pytest.raises(BuildError) as caught:
        await _build(
            flavor,
            standin.tcp_address,
            _tls(pki),
            BuildOptions(path=context, network_mode=engines.dockerd_network),
        )
    assert "exit code: 3" in caught.value.message
    assert "about to fail" in caught.value.log


async def test_an_export_is_written_through_the_tunnel_and_the_channel_stays_open(
    standin: StandIn, pki: Pki, engines: Engines, flavor: str, tmp_path: Path
) -> None:
    """A `local` export comes back through the tunnelled session's FileSend, as on the
    clients' path; the build leaves the caller's channel open for more calls."""
    marker = uuid.uuid4().hex[:12]
    context = _context(
        tmp_path,
        f"FROM {engines.base_image}\nCOPY hello.txt /out/hello.txt\n",
        hello=f"exported {marker}\n",
    )
    out = tmp_path / "out"
    options = BuildOptions(path=context, outputs=[LocalOutput(dest=out)])

    async def build_then_list(channel: AsyncControlChannel) -> list[dict[str, str]]:
        outcome = await solve_dockerfile(channel, options)
        assert outcome.events
        return await _labels(channel)

    assert await _with_channel(flavor, standin.tcp_address, _tls(pki), build_then_list)
    assert (out / "out" / "hello.txt").read_text() == f"exported {marker}\n"


async def test_the_engine_path_takes_the_tunnelled_session_too(
    docker_engine: DockerEngine,
    engines: Engines,
    dockerd_http: httpx.Client,
    tmp_path: Path,
) -> None:
    """The same build on dockerd's own `/grpc`, with no `/session` connection."""
    marker = uuid.uuid4().hex[:12]
    tag = f"buildsdk-remote-test:{marker}"
    context = _context(tmp_path, f"FROM {engines.base_image}\nLABEL marker={marker}\n")
    endpoint = resolve_endpoint(docker_engine.host, env={})
    transport, base_url = transports.create_async_transport(endpoint, env={})
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url=base_url) as http,
            open_control(http, endpoint) as channel,
        ):
            await solve_dockerfile(channel, BuildOptions(path=context, tag=tag))
        assert _image(dockerd_http, tag)["Config"]["Labels"]["marker"] == marker
    finally:
        dockerd_http.delete(f"/images/{tag}")


def test_a_sync_channel_runs_async_functions_on_its_loop(standin: StandIn, pki: Pki) -> None:
    with ControlChannel(
        opener=lambda: open_buildkitd(standin.unix_address), address=standin.unix_address
    ) as channel:
        assert channel.run(_labels)
    with pytest.raises(StreamError, match="is closed"):
        channel.run(_labels)


async def test_a_secret_is_served_through_the_tunnel(
    standin: StandIn,
    pki: Pki,
    engines: Engines,
    dockerd_http: httpx.Client,
    flavor: str,
    tmp_path: Path,
) -> None:
    """The tunnelled session serves what a /session one does: here a secret, which the
    RUN step compares with what it expects (a missing or different secret fails it)."""
    marker = uuid.uuid4().hex[:12]
    tag = f"buildsdk-remote-test:{marker}"
    secret = f"tunnelled-{marker}"
    context = _context(
        tmp_path,
        f"FROM {engines.base_image}\n"
        f'RUN --mount=type=secret,id=token test "$(cat /run/secrets/token)" = "{secret}"\n'
        f"LABEL marker={marker}\n",
    )
    options = BuildOptions(
        path=context,
        tag=tag,
        network_mode=engines.dockerd_network,
        secrets=[{"id": "token", "data": secret}],
    )
    try:
        outcome = await _build(flavor, standin.tcp_address, _tls(pki), options)
        assert _image(dockerd_http, tag)["Config"]["Labels"]["marker"] == marker
        assert outcome.events
    finally:
        dockerd_http.delete(f"/images/{tag}")


async def test_closing_the_tunnel_ends_the_session_with_status_ok(
    standin: StandIn, pki: Pki
) -> None:
    """Half-close, the daemon's inner GOAWAY, then grpc-status 0 (reference §15)."""
    metadata = control_session_metadata(
        f"buildsdk{uuid.uuid4().hex[:17]}", "buildsdk-test", "", ["/grpc.health.v1.Health/Check"]
    )
    async with open_buildkitd(standin.tcp_address, tls=_tls(pki)) as channel:
        call = await channel.stream(CONTROL_SESSION, metadata=metadata)
        stream = ControlSessionStream(call)
        # The daemon is the HTTP/2 client inside: its first bytes are the client preface.
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        first = b""
        with anyio.fail_after(10):
            while len(first) < len(preface):
                first += await stream.read(len(preface) - len(first))
        assert first == preface
        with anyio.fail_after(10):
            await stream.aclose()
        assert call.code == Status.OK
