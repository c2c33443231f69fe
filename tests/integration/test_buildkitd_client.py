"""`BuildkitClient` and `AsyncBuildkitClient` against the buildkitd stand-in.

The daemon is `buildkitd_standin.StandIn`: dockerd's own BuildKit behind a mutual-TLS tcp
port (no buildkitd binary exists here). What is asserted is what the user gets: the files a
`local` and a `tar` output wrote, the cache records, the typed error of a failing `RUN`
with its Dockerfile excerpt, the refusal of a daemon certificate from another CA.
"""

from __future__ import annotations

import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from buildsdk import BuildOptions
from buildsdk.buildkitd import NO_OUTPUT_WARNING, AsyncBuildkitClient, BuildkitClient
from buildsdk.cache import CachePruneOptions, CacheRecord
from buildsdk.endpoint import TLSConfig
from buildsdk.errors import BuildError, EngineUnreachable
from buildsdk.outputs import LocalOutput, TarOutput
from buildsdk.results import BuildResult
from tests.integration.buildkitd_standin import Pki, StandIn, make_pki
from tests.integration.conftest import DockerEngine, Engines, unix_socket_path

pytestmark = [pytest.mark.anyio, pytest.mark.dockerd]


@pytest.fixture
def anyio_backend() -> str:
    """The clients run on asyncio."""
    return "asyncio"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made for these tests."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def standin(docker_engine: DockerEngine, pki: Pki, tmp_path: Path) -> Iterator[StandIn]:
    """A buildkitd stand-in in front of the matrix engine."""
    with StandIn(unix_socket_path(docker_engine.host), pki, tmp_path / "bk.sock").running() as d:
        yield d


@pytest.fixture(params=("async", "sync"))
def flavor(request: pytest.FixtureRequest) -> str:
    """`async` (AsyncBuildkitClient) or `sync` (BuildkitClient in a worker thread)."""
    return str(request.param)


def _tls(pki: Pki, **changes: Any) -> TLSConfig:
    settings: dict[str, Any] = {
        "ca_cert": pki.ca,
        "client_cert": pki.client_cert,
        "client_key": pki.client_key,
    }
    settings.update(changes)
    return TLSConfig(**settings)


async def _build(flavor: str, address: str, tls: TLSConfig, options: BuildOptions) -> BuildResult:
    if flavor == "async":
        async with AsyncBuildkitClient(address, tls=tls) as client:
            return await client.build(options).result()

    def run() -> BuildResult:
        with BuildkitClient(address, tls=tls) as client, client.build(options) as build:
            return build.result()

    return await anyio.to_thread.run_sync(run)


async def _disk_usage(flavor: str, address: str, tls: TLSConfig) -> list[CacheRecord]:
    if flavor == "async":
        return await AsyncBuildkitClient(address, tls=tls).disk_usage()
    return await anyio.to_thread.run_sync(lambda: BuildkitClient(address, tls=tls).disk_usage())


def _context(tmp_path: Path, dockerfile: str, hello: str = "hello\n") -> Path:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    (context / "hello.txt").write_text(hello)
    return context


async def test_a_build_writes_a_local_and_a_tar_output(
    standin: StandIn,
    pki: Pki,
    docker_engine: DockerEngine,
    engines: Engines,
    flavor: str,
    tmp_path: Path,
) -> None:
    marker = uuid.uuid4().hex[:12]
    context = _context(
        tmp_path,
        f"FROM {engines.base_image}\nCOPY hello.txt /out/hello.txt\n",
        hello=f"exported {marker}\n",
    )
    out, archive = tmp_path / "out", tmp_path / "out.tar"
    outputs: list[LocalOutput | TarOutput] = [LocalOutput(dest=out), TarOutput(dest=archive)]
    if docker_engine.is_20:
        # BuildKit 0.8 reads only the first exporter of a Solve: one build per output.
        for output in outputs:
            options = BuildOptions(path=context, outputs=[output])
            result = await _build(flavor, standin.tcp_address, _tls(pki), options)
    else:
        options = BuildOptions(path=context, outputs=outputs)
        result = await _build(flavor, standin.tcp_address, _tls(pki), options)
    assert (out / "out" / "hello.txt").read_text() == f"exported {marker}\n"
    with tarfile.open(archive) as tar:
        member = tar.extractfile("out/hello.txt")
        assert member is not None
        assert member.read() == f"exported {marker}\n".encode()
    assert result.events_count > 0
    assert standin.upgrades == (len(outputs) if docker_engine.is_20 else 1)


async def test_disk_usage_lists_and_prune_cache_removes_the_cache_a_build_left(
    standin: StandIn, pki: Pki, engines: Engines, flavor: str, tmp_path: Path
) -> None:
    context = _context(
        tmp_path, f"FROM {engines.base_image}\nCOPY hello.txt /hello.txt\n", uuid.uuid4().hex
    )
    options = BuildOptions(path=context, outputs=[LocalOutput(dest=tmp_path / "out")])
    await _build(flavor, standin.tcp_address, _tls(pki), options)
    before = {record.id for record in await _disk_usage(flavor, standin.tcp_address, _tls(pki))}
    assert before
    everything = CachePruneOptions(all=True)
    if flavor == "async":
        pruned = await AsyncBuildkitClient(standin.tcp_address, tls=_tls(pki)).prune_cache(
            everything
        )
    else:
        client = BuildkitClient(standin.tcp_address, tls=_tls(pki))
        pruned = await anyio.to_thread.run_sync(lambda: client.prune_cache(everything))
    removed = {record.id for record in pruned.records}
    assert removed
    assert removed <= before
    after = {record.id for record in await _disk_usage(flavor, standin.tcp_address, _tls(pki))}
    assert not removed & after


async def test_no_output_warns_as_buildx_and_exports_nothing(
    standin: StandIn, pki: Pki, engines: Engines, flavor: str, tmp_path: Path
) -> None:
    context = _context(tmp_path, f"FROM {engines.base_image}\nCOPY hello.txt /hello.txt\n")
    options = BuildOptions(path=context, tag="never-exported:1")
    with pytest.warns(UserWarning, match="No output specified with remote driver"):
        result = await _build(flavor, standin.tcp_address, _tls(pki), options)
    assert result.exporter_response.get("image.name") is None
    assert result.image_name == ""
    assert NO_OUTPUT_WARNING.startswith("No output specified with remote driver.")


async def test_a_failing_run_raises_build_error_with_its_source(
    standin: StandIn,
    pki: Pki,
    docker_engine: DockerEngine,
    engines: Engines,
    flavor: str,
    tmp_path: Path,
) -> None:
    context = _context(tmp_path, f"FROM {engines.base_image}\nRUN echo about to fail && exit 3\n")
    options = BuildOptions(
        path=context,
        network_mode=engines.dockerd_network,
        outputs=[LocalOutput(dest=tmp_path / "out")],
    )
    with pytest.raises(BuildError) as caught:
        await _build(flavor, standin.tcp_address, _tls(pki), options)
    assert "exit code: 3" in caught.value.message
    assert "about to fail" in caught.value.log
    if docker_engine.is_20:
        # BuildKit 0.8 sends no source location with the error.
        assert caught.value.source == ""
    else:
        assert "RUN echo about to fail && exit 3" in caught.value.source


async def test_tls_verification_is_on_by_default(
    standin: StandIn, pki: Pki, engines: Engines, flavor: str, tmp_path: Path
) -> None:
    context = _context(tmp_path, f"FROM {engines.base_image}\n")
    options = BuildOptions(path=context, outputs=[LocalOutput(dest=tmp_path / "out")])
    wrong_ca = _tls(pki, ca_cert=pki.other_ca)
    with pytest.raises(EngineUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        await _build(flavor, standin.tcp_address, wrong_ca, options)
    with pytest.raises(EngineUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        await _disk_usage(flavor, standin.tcp_address, wrong_ca)
    assert standin.upgrades == 0
