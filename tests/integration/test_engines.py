"""First real-engine tests: each engine from ``scripts/engines`` builds a Dockerfile with RUN.

These talk raw HTTP (httpx) to the engines, so they check the test engines themselves, not
the SDK: a two-line Dockerfile ``FROM busybox`` + ``RUN echo hello > /hello`` goes through
``POST /build``, the stream must name the new image, the image must exist, and a container
created from it must hold ``/hello`` with ``hello``. The registry and sshd tests check
authentication and ``docker system dial-stdio`` the way the SDK will use them.
"""

from __future__ import annotations

import base64
import io
import json
import ssl
import subprocess
import tarfile
from typing import Any

import httpx
import pytest

from tests.integration.conftest import DockerEngine, Engines

__all__: list[str] = []

_DOCKERFILE = b"FROM busybox\nRUN echo hello > /hello\n"


def _context_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _build(
    client: httpx.Client, params: dict[str, str], *, fails: bool = False
) -> list[dict[str, Any]]:
    response = client.post(
        "/build",
        params={"nocache": "1", "rm": "1", **params},
        content=_context_tar({"Dockerfile": _DOCKERFILE}),
        headers={"Content-Type": "application/x-tar"},
    )
    assert response.status_code == 200, response.text
    messages = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    errors = [m for m in messages if "error" in m or "errorDetail" in m]
    assert bool(errors) is fails, errors
    return messages


def _image_id(messages: list[dict[str, Any]]) -> str:
    ids = [
        m["aux"]["ID"]
        for m in messages
        if isinstance(m.get("aux"), dict) and isinstance(m["aux"].get("ID"), str)
    ]
    assert len(ids) == 1, messages
    image_id: str = ids[0]
    assert image_id.startswith("sha256:"), ids
    return image_id


def _read_file(client: httpx.Client, image: str, path: str) -> bytes:
    """Read one file out of an image through a created (never started) container."""
    created = client.post("/containers/create", json={"Image": image, "Cmd": ["true"]})
    assert created.status_code == 201, created.text
    container = created.json()["Id"]
    try:
        archive = client.get(f"/containers/{container}/archive", params={"path": path})
        assert archive.status_code == 200, archive.text
        with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
            member = tar.extractfile(path.rsplit("/", 1)[-1])
            assert member is not None
            return member.read()
    finally:
        client.delete(f"/containers/{container}", params={"force": "1"})


def _assert_built(client: httpx.Client, messages: list[dict[str, Any]]) -> None:
    image = _image_id(messages)
    inspected = client.get(f"/images/{image}/json")
    assert inspected.status_code == 200, inspected.text
    assert inspected.json()["Id"] == image
    assert _read_file(client, image, "/hello") == b"hello\n"


@pytest.mark.dockerd
def test_dockerd_classic_build_runs_a_step(dockerd_http: httpx.Client, engines: Engines) -> None:
    messages = _build(dockerd_http, {"version": "1", "networkmode": engines.dockerd_network})
    steps = [m["stream"] for m in messages if "stream" in m]
    assert any("RUN echo hello > /hello" in s for s in steps), steps
    _assert_built(dockerd_http, messages)


@pytest.mark.dockerd
def test_dockerd_buildkit_build_runs_a_step(
    dockerd_http: httpx.Client, engines: Engines, docker_engine: DockerEngine
) -> None:
    messages = _build(
        dockerd_http,
        {"version": "2", "networkmode": engines.dockerd_network},
        fails=docker_engine.containerd_store,
    )
    if docker_engine.containerd_store:
        # moby/moby#47717: on the containerd image store BuildKit cannot read a context
        # uploaded as a tar without a session (buildsdk sends BuildKit contexts through one).
        assert "failed to read downloaded context" in messages[-1]["error"], messages
        return
    assert any(m.get("id") == "moby.image.id" for m in messages), messages
    assert any(m.get("id") == "moby.buildkit.trace" for m in messages), messages
    _assert_built(dockerd_http, messages)


@pytest.mark.dockerd_tls
@pytest.mark.parametrize("version", ["1", "2"])
def test_tls_dockerd_builds_over_mutual_tls(
    dockerd_tls_http: httpx.Client, engines: Engines, version: str
) -> None:
    assert dockerd_tls_http.base_url.scheme == "https"
    messages = _build(
        dockerd_tls_http, {"version": version, "networkmode": engines.dockerd_network}
    )
    _assert_built(dockerd_tls_http, messages)


@pytest.mark.dockerd_tls
def test_tls_dockerd_refuses_a_client_without_certificate(
    dockerd_tls_http: httpx.Client, engines: Engines
) -> None:
    assert engines.dockerd_tls is not None
    # Trusts the server, but presents no client certificate: --tlsverify must say no.
    context = ssl.create_default_context(cafile=str(engines.dockerd_tls.ca))
    with (
        httpx.Client(base_url=dockerd_tls_http.base_url, verify=context, timeout=10.0) as client,
        pytest.raises(httpx.TransportError) as refused,
    ):
        client.get("/_ping")
    assert "certificate" in str(refused.value).lower()


@pytest.mark.podman
def test_podman_build_runs_a_step(podman_http: httpx.Client, engines: Engines) -> None:
    messages = _build(podman_http, {"networkmode": engines.podman_network})
    steps = [m["stream"] for m in messages if "stream" in m]
    assert any("RUN echo hello > /hello" in s for s in steps), steps
    _assert_built(podman_http, messages)


def _registry_auth(engines: Engines, password: str) -> str:
    assert engines.registry is not None
    assert engines.registry_user is not None
    payload = {
        "username": engines.registry_user,
        "password": password,
        "serveraddress": engines.registry,
    }
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.registry
def test_registry_requires_its_generated_credentials(
    registry_http: httpx.Client, engines: Engines
) -> None:
    assert engines.registry_user is not None
    assert engines.registry_password is not None
    anonymous = registry_http.get("/v2/")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    wrong = registry_http.get("/v2/", auth=(engines.registry_user, "not-the-password"))
    assert wrong.status_code == 401
    right = registry_http.get("/v2/", auth=(engines.registry_user, engines.registry_password))
    assert right.status_code == 200


@pytest.mark.registry
def test_registry_holds_the_private_busybox(registry_http: httpx.Client, engines: Engines) -> None:
    assert engines.registry_user is not None
    assert engines.registry_password is not None
    assert engines.registry_image == f"{engines.registry}/private/busybox:latest"
    manifest = registry_http.head(
        "/v2/private/busybox/manifests/latest",
        auth=(engines.registry_user, engines.registry_password),
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert manifest.status_code == 200
    assert manifest.headers["docker-content-digest"].startswith("sha256:")


@pytest.mark.registry
@pytest.mark.dockerd
def test_dockerd_pulls_the_private_image_only_with_credentials(
    dockerd_http: httpx.Client,
    registry_http: httpx.Client,
    engines: Engines,
    docker_engine: DockerEngine,
) -> None:
    assert engines.registry is not None
    assert engines.registry_password is not None
    repository = f"{engines.registry}/private/busybox"
    params = {"fromImage": repository, "tag": "latest"}
    denied = dockerd_http.post(
        "/images/create", params=params, headers={"X-Registry-Auth": _registry_auth(engines, "x")}
    )
    denied_text = denied.text
    assert denied.status_code != 200 or '"error' in denied_text, denied_text
    if docker_engine.containerd_store:
        # containerd's resolver words the refusal itself.
        assert "401 Unauthorized" in denied_text, denied_text
    else:
        assert "no basic auth credentials" in denied_text or "unauthorized" in denied_text
    pulled = dockerd_http.post(
        "/images/create",
        params=params,
        headers={"X-Registry-Auth": _registry_auth(engines, engines.registry_password)},
    )
    assert pulled.status_code == 200, pulled.text
    assert '"error' not in pulled.text, pulled.text
    try:
        inspected = dockerd_http.get(f"/images/{repository}:latest/json")
        assert inspected.status_code == 200, inspected.text
    finally:
        dockerd_http.delete(f"/images/{repository}:latest")


@pytest.mark.ssh
def test_ssh_dial_stdio_reaches_dockerd(engines: Engines) -> None:
    if engines.ssh_config is None or engines.ssh_host is None:
        pytest.skip("sshd was not started (no BUILDSDK_SSH_CONFIG)")
    request = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
    try:
        done = subprocess.run(
            [
                "ssh",
                "-F",
                str(engines.ssh_config),
                engines.ssh_host,
                "--",
                "docker",
                "system",
                "dial-stdio",
            ],
            input=request,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no ssh client installed")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), done.stdout
    assert b"\r\nApi-Version: " in head
    assert body == b"OK"
