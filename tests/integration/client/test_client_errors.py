"""Failures as users meet them, through both clients: a failing step, an engine that refuses
a parameter in the middle of a large upload, an engine that cannot be reached or trusted."""

from __future__ import annotations

import random
import tarfile
import time
from pathlib import Path
from typing import Any, Literal

import pytest

from buildsdk.aio import AsyncClient
from buildsdk.build import BuildOptions
from buildsdk.client import Client
from buildsdk.endpoint import TLSConfig
from buildsdk.errors import BadRequest, EngineTimeout, EngineUnreachable
from buildsdk.events import ErrorEvent
from tests.integration.client.conftest import Runner, processes_running
from tests.integration.conftest import Engines, client_settings

__all__: list[str] = []

pytestmark = pytest.mark.anyio

Builder = Literal["1", "2"]

_UPLOAD = 300 * 1024 * 1024


class _CountingTar:
    """A tar archive of `size` zero bytes plus a Dockerfile, generated as it is read.

    It counts what was read, so a test can tell how much of the upload was sent before the
    client stopped. Nothing is held in memory or written to disk.
    """

    def __init__(self, size: int) -> None:
        dockerfile = b"FROM busybox\n"
        head = tarfile.TarInfo("Dockerfile")
        head.size = len(dockerfile)
        blob = tarfile.TarInfo("blob")
        blob.size = size
        self._parts: list[tuple[bytes, int]] = [
            (head.tobuf(format=tarfile.USTAR_FORMAT), 0),
            (dockerfile + b"\0" * (-len(dockerfile) % 512), 0),
            (blob.tobuf(format=tarfile.USTAR_FORMAT), 0),
            (b"", size + (-size % 512) + 1024),  # the zeros, then the two end blocks
        ]
        self.read_bytes = 0

    def read(self, size: int = -1, /) -> bytes:
        while self._parts:
            data, zeros = self._parts[0]
            if data:
                take = data if size < 0 else data[:size]
                self._parts[0] = (data[len(take) :], zeros)
            else:
                take = b"\0" * (zeros if size < 0 else min(size, zeros))
                self._parts[0] = (b"", zeros - len(take))
            if not self._parts[0][0] and not self._parts[0][1]:
                self._parts.pop(0)
            if take:
                self.read_bytes += len(take)
                return take
        return b""


@pytest.mark.parametrize("builder", ["1", "2"])
@pytest.mark.dockerd
async def test_failing_run_raises_build_error_with_the_commands_output(
    dockerd: Runner, tmp_path: Path, builder: Builder
) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nRUN echo 'output before failing' && echo 'to stderr' >&2 && exit 3\n"
    )
    options = BuildOptions(
        path=tmp_path, version=builder, network_mode=dockerd.network, nocache=True
    )
    error = (await dockerd.build(options)).failed()

    assert "output before failing" in error.log
    assert "to stderr" in error.log
    assert error.events
    if builder == "1":
        assert error.message == (
            "The command '/bin/sh -c echo 'output before failing' && echo 'to stderr' >&2 && "
            "exit 3' returned a non-zero code: 3"
        )
        assert error.code == 3
        assert isinstance(error.events[-1], ErrorEvent)
    else:
        assert "exit code: 3" in error.message


async def _refused_upload(runner: Runner) -> None:
    body = _CountingTar(_UPLOAD)
    # Linux engines refuse any isolation but "default" before reading the body.
    options = BuildOptions(fileobj=body, custom_context=True, isolation="hyperv")
    await runner.api_version()  # negotiate first: only the build is timed
    started = time.monotonic()
    with pytest.raises(BadRequest) as refused:
        await runner.build(options)
    seconds = time.monotonic() - started

    assert refused.value.status_code == 400
    # moby lower-cased the first letter of its errors after 20.10.
    old = runner.docker is None or runner.docker.is_20
    word = "Unsupported" if old else "unsupported"
    assert refused.value.message == f'{word} isolation: "hyperv"'
    assert seconds < 10, f"the refusal took {seconds:.1f}s"
    assert body.read_bytes < _UPLOAD // 3, f"{body.read_bytes} bytes were read for the upload"


@pytest.mark.dockerd
async def test_refused_during_a_300mb_upload_unix(dockerd: Runner) -> None:
    await _refused_upload(dockerd)


@pytest.mark.dockerd_tls
async def test_refused_during_a_300mb_upload_tls(dockerd_tls: Runner) -> None:
    await _refused_upload(dockerd_tls)


@pytest.mark.ssh
async def test_refused_during_a_300mb_upload_ssh(ssh: Runner) -> None:
    await _refused_upload(ssh)


@pytest.mark.dockerd_tls
def test_wrong_ca_is_a_clear_error_sync(engines: Engines, tmp_path: Path) -> None:
    settings = _with_wrong_ca(engines, tmp_path)
    with Client(**settings) as client, pytest.raises(EngineUnreachable) as unreachable:
        client.ping()
    _assert_untrusted(unreachable.value, settings["host"])


@pytest.mark.dockerd_tls
async def test_wrong_ca_is_a_clear_error_async(engines: Engines, tmp_path: Path) -> None:
    settings = _with_wrong_ca(engines, tmp_path)
    async with AsyncClient(**settings) as client:
        with pytest.raises(EngineUnreachable) as unreachable:
            await client.ping()
    _assert_untrusted(unreachable.value, settings["host"])


def _with_wrong_ca(engines: Engines, tmp_path: Path) -> dict[str, Any]:
    settings = client_settings(engines, "dockerd_tls")
    tls: TLSConfig = settings["tls"]
    # A CA that did not sign the engine's certificate: the client's own certificate.
    wrong = tmp_path / "wrong-ca.pem"
    assert tls.client_cert is not None
    wrong.write_bytes(tls.client_cert.read_bytes())
    settings["tls"] = tls.model_copy(update={"ca_cert": wrong})
    return settings


def _assert_untrusted(error: EngineUnreachable, host: object) -> None:
    assert error.address == host
    assert "certificate" in str(error).lower()
    assert error.hint is not None
    assert "not trusted" in error.hint


def test_missing_socket_names_the_address_sync(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/no-engine.sock"
    with Client(host) as client, pytest.raises(EngineUnreachable) as unreachable:
        client.ping()
    assert unreachable.value.address == host
    assert host in str(unreachable.value)


async def test_missing_socket_names_the_address_async(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/no-engine.sock"
    async with AsyncClient(host) as client:
        with pytest.raises(EngineUnreachable) as unreachable:
            await client.ping()
    assert unreachable.value.address == host
    assert host in str(unreachable.value)


@pytest.mark.dockerd
async def test_build_timeout_bounds_a_silent_step(dockerd: Runner, tmp_path: Path) -> None:
    # The classic builder prints nothing while a step runs: only BuildOptions.timeout ends it,
    # and the connection it closes makes the engine stop the step.
    needle = f"sleep {random.randint(300_000, 999_999)}"
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\nRUN {needle}\n")
    options = BuildOptions(path=tmp_path, timeout=1.5, network_mode=dockerd.network, nocache=True)
    started = time.monotonic()
    with pytest.raises(EngineTimeout, match="read timeout"):
        await dockerd.build(options)
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while processes_running(needle):
        assert time.monotonic() < deadline, f"{needle!r} still runs after the timeout"
        time.sleep(0.1)
