"""The ssh transport against a real sshd whose `docker system dial-stdio` reaches dockerd.

`scripts/engines up` starts the sshd and writes BUILDSDK_SSH_HOST (ssh://root@127.0.0.1:PORT)
and BUILDSDK_SSH_CONFIG (an ssh client config with the key and known_hosts) to its env file;
the `engines` fixture reads them. The transport is given that config the way a user would
give theirs: through the BUILDSDK_SSH_CONFIG variable seen by `resolve_endpoint`.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile

import httpx
import pytest

from buildsdk.endpoint import Endpoint, resolve_endpoint
from buildsdk.errors import EngineUnreachable
from buildsdk.transports import (
    SSH_BASE_URL,
    create_async_transport,
    create_transport,
    translate_transport_errors,
)
from tests.integration.conftest import Engines, engines_unavailable, unix_socket_path

pytestmark = [pytest.mark.engine, pytest.mark.ssh]


def _ssh(engines: Engines, address: str | None = None) -> Endpoint:
    if engines.ssh_host is None or engines.ssh_config is None:
        engines_unavailable("sshd was not started (no BUILDSDK_SSH_HOST / BUILDSDK_SSH_CONFIG)")
    env = {"BUILDSDK_SSH_CONFIG": str(engines.ssh_config)}
    return resolve_endpoint(address or engines.ssh_host, env=env)


def _context() -> bytes:
    buffer = io.BytesIO()
    dockerfile = b"FROM scratch\nLABEL org.example.transport=ssh\n"
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    return buffer.getvalue()


def test_ping_and_build_over_ssh(engines: Engines) -> None:
    endpoint = _ssh(engines)
    transport, base_url = create_transport(endpoint, connect_timeout=10)
    assert base_url == SSH_BASE_URL
    with (
        httpx.Client(transport=transport, base_url=base_url, timeout=60) as client,
        translate_transport_errors(endpoint),
    ):
        ping = client.get("/_ping")
        assert (ping.status_code, ping.text) == (200, "OK")
        assert ping.headers["Api-Version"]
        version = client.get("/v1.41/version").json()
        assert version["ApiVersion"]
        build = client.post(
            "/v1.41/build",
            params={"t": "buildsdk-ssh-transport:latest", "rm": "1"},
            content=_context(),
            headers={"Content-Type": "application/x-tar"},
        )
        assert build.status_code == 200
        messages = [json.loads(line) for line in build.text.splitlines() if line.strip()]
        assert not [m for m in messages if "error" in m]
        inspect = client.get("/v1.41/images/buildsdk-ssh-transport:latest/json").json()
        assert inspect["Config"]["Labels"] == {"org.example.transport": "ssh"}


def test_async_ping_over_ssh(engines: Engines) -> None:
    endpoint = _ssh(engines)

    async def main() -> tuple[int, str, int]:
        transport, base_url = create_async_transport(endpoint, connect_timeout=10)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=60) as client:
            with translate_transport_errors(endpoint):
                ping = await client.get("/_ping")
                images = await client.get("/v1.41/images/json")
            return ping.status_code, ping.text, images.status_code

    assert asyncio.run(main()) == (200, "OK", 200)


def test_remote_socket_path_is_passed_to_docker(engines: Engines) -> None:
    if engines.dockerd_host is None:
        engines_unavailable("dockerd was not started (no BUILDSDK_DOCKERD_HOST)")
    base = _ssh(engines).host
    endpoint = _ssh(engines, base + unix_socket_path(engines.dockerd_host))
    assert endpoint.ssh is not None
    assert endpoint.ssh.socket_path == unix_socket_path(engines.dockerd_host)
    transport, base_url = create_transport(endpoint, connect_timeout=10)
    with httpx.Client(transport=transport, base_url=base_url, timeout=60) as client:
        assert client.get("/_ping").text == "OK"
    missing = _ssh(engines, base + "/nonexistent/docker.sock")
    transport, base_url = create_transport(missing, connect_timeout=10)
    with (
        httpx.Client(transport=transport, base_url=base_url, timeout=60) as client,
        pytest.raises(EngineUnreachable) as caught,
        translate_transport_errors(missing),
    ):
        client.get("/_ping")
    assert "/nonexistent/docker.sock" in caught.value.reason


def test_refused_login_reports_what_ssh_said(engines: Engines) -> None:
    endpoint = _ssh(engines)
    assert endpoint.ssh is not None
    # sshd only lets root in; the config file sets User root, but -l wins over it.
    other = endpoint.model_copy(update={"ssh": endpoint.ssh.model_copy(update={"user": "nobody"})})
    transport, base_url = create_transport(other, connect_timeout=10)
    with (
        httpx.Client(transport=transport, base_url=base_url, timeout=60) as client,
        pytest.raises(EngineUnreachable) as caught,
        translate_transport_errors(other),
    ):
        client.get("/_ping")
    assert "Permission denied" in caught.value.reason
    assert "ssh exited with status 255" in caught.value.reason
