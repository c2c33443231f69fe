"""Builds through BuildKit's Control API (`Control/Solve` on `POST /grpc`) on real engines.

Every test runs on each Docker engine of the matrix (20.10, 26.1 classic store, 26.1
containerd store) with `Client` and `AsyncClient`. What is asserted is what a user gets:
the image the engine stored (inspected through the Engine API and compared with the one
`POST /build` makes from the same Dockerfile), the files written, the digest the registry
holds after a push, the error of a failing step (compared with what `docker buildx build`
0.13.1 printed for the same Dockerfile, recorded in `buildx_solve.json`), and that closing
a running build returns at once and leaves no thread behind.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import json
import os
import re
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from buildsdk import AsyncClient, BuildError, BuildOptions, Client, RegistryAuth
from buildsdk.errors import ExportError, StreamError, UnsupportedOption
from buildsdk.events import VertexLogEvent
from buildsdk.outputs import DockerOutput, ImageOutput, LocalOutput, OCIOutput, TarOutput
from tests import VECTORS_DIR
from tests.integration.conftest import (
    DockerEngine,
    Engines,
    build_result,
    client_settings,
    engines_on_matrix,
    engines_unavailable,
)

pytestmark = [pytest.mark.engine, pytest.mark.dockerd]

FLAVORS = ("sync", "async")


@pytest.fixture
def engines(all_engines: Engines, docker_engine: DockerEngine) -> Engines:
    """Every test here runs on each Docker engine of the matrix."""
    return engines_on_matrix(all_engines, docker_engine)


def _options(engines: Engines, context: Path, **extra: Any) -> BuildOptions:
    return BuildOptions(
        path=str(context),
        version="2",
        network_mode=engines.dockerd_network,
        build_endpoint="grpc",
        **extra,
    )


@pytest.fixture
def context(tmp_path: Path, engines: Engines) -> Path:
    root = tmp_path / "context"
    root.mkdir()
    (root / "Dockerfile").write_text(
        f"FROM {engines.base_image}\n"
        "LABEL org.example.flavour=control\n"
        "COPY greeting.txt /greeting.txt\n"
        "RUN echo built > /built\n"
        'CMD ["cat", "/greeting.txt"]\n'
    )
    (root / "greeting.txt").write_text("hello\n")
    return root


def _inspect(http: httpx.Client, name: str) -> dict[str, Any]:
    response = http.get(f"/images/{quote(name, safe='')}/json")
    assert response.status_code == 200, response.text
    inspected: dict[str, Any] = response.json()
    return inspected


def _forget(http: httpx.Client, *names: str) -> None:
    for name in names:
        http.delete(f"/images/{quote(name, safe='')}", params={"force": "1"})


@pytest.fixture
def tags(dockerd_http: httpx.Client) -> Iterator[list[str]]:
    """Two fresh tags, removed from the engine afterwards."""
    suffix = uuid.uuid4().hex[:10]
    names = [f"buildsdk-control:{suffix}", f"buildsdk-control:{suffix}-b"]
    yield names
    _forget(dockerd_http, *names, f"buildsdk-control-legacy:{suffix}")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_image_equals_the_one_post_build_makes(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    dockerd_http: httpx.Client,
    context: Path,
    tags: list[str],
) -> None:
    settings = client_settings(engines, "dockerd", docker_engine)
    result = build_result(flavor, settings, _options(engines, context, tag=tags))
    legacy_tag = tags[0].replace("buildsdk-control:", "buildsdk-control-legacy:")
    legacy = BuildOptions(
        path=str(context),
        version="2",
        network_mode=engines.dockerd_network,
        tag=legacy_tag,
        build_endpoint="build",
    )
    build_result(flavor, settings, legacy)

    grpc_image = _inspect(dockerd_http, tags[0])
    build_image = _inspect(dockerd_http, legacy_tag)
    for key in ("Cmd", "Labels", "Env", "Entrypoint", "WorkingDir"):
        assert grpc_image["Config"][key] == build_image["Config"][key], key
    assert grpc_image["Config"]["Labels"]["org.example.flavour"] == "control"
    assert grpc_image["RootFS"]["Layers"] == build_image["RootFS"]["Layers"]
    # Both tags name the image, and the result names what the engine stored.
    assert _inspect(dockerd_http, tags[1])["Id"] == grpc_image["Id"]
    assert result.image_id == grpc_image["Id"]
    assert result.tags == tuple(tags)
    if not docker_engine.is_20:
        assert result.image_name.split(",") == [f"docker.io/library/{tag}" for tag in tags]
        assert result.image_digest
        assert result.metadata()["buildx.build.ref"] == f"default/default/{result.build_ref}"
    assert "#" in result.log
    assert "DONE" in result.log


@pytest.mark.parametrize("flavor", FLAVORS)
def test_local_and_tar_outputs_are_written_by_the_client(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    context: Path,
    tmp_path: Path,
) -> None:
    settings = client_settings(engines, "dockerd", docker_engine)
    out = tmp_path / "out"
    build_result(flavor, settings, _options(engines, context, outputs=[LocalOutput(dest=out)]))
    assert (out / "greeting.txt").read_text() == "hello\n"
    assert (out / "built").read_text() == "built\n"

    archive = tmp_path / "out.tar"
    build_result(flavor, settings, _options(engines, context, outputs=[TarOutput(dest=archive)]))
    with tarfile.open(archive) as tar:
        member = tar.extractfile("greeting.txt")
        assert member is not None
        assert member.read() == b"hello\n"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_tar_to_dash_is_standard_output_and_a_directory_dest_is_refused(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    context: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same rules as `POST /build` (tests/integration/test_session_exports.py).
    class Stdout:
        buffer = io.BytesIO()

    settings = client_settings(engines, "dockerd", docker_engine)
    monkeypatch.setattr("sys.stdout", Stdout())
    build_result(flavor, settings, _options(engines, context, outputs=["type=tar,dest=-"]))
    with tarfile.open(fileobj=io.BytesIO(Stdout.buffer.getvalue())) as tar:
        member = tar.extractfile("greeting.txt")
        assert member is not None
        assert member.read() == b"hello\n"

    taken = tmp_path / "taken"
    taken.mkdir()
    with pytest.raises(ExportError, match="is a directory, not a file"):
        build_result(flavor, settings, _options(engines, context, outputs=[TarOutput(dest=taken)]))
    assert list(taken.iterdir()) == []


def _manifest_of_archive(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted(tar.getnames())


@pytest.mark.parametrize("flavor", FLAVORS)
def test_oci_and_docker_archives_on_the_containerd_store_else_buildx_s_refusal(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    context: Path,
    tmp_path: Path,
) -> None:
    settings = client_settings(engines, "dockerd", docker_engine)
    oci = tmp_path / "image.oci.tar"
    options = _options(engines, context, outputs=[OCIOutput(dest=oci, name=("oci:1",))])
    if not docker_engine.containerd_store:
        with pytest.raises(UnsupportedOption, match="OCI exporter is not supported"):
            build_result(flavor, settings, options)
        assert not oci.exists()
        return
    result = build_result(flavor, settings, options)
    with tarfile.open(oci) as tar:
        assert "oci-layout" in tar.getnames()
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert index["manifests"][0]["digest"] == result.image_digest
    assert result.image_name == "docker.io/library/oci:1"

    # Two exports in one Solve: an OCI archive to a file, a Docker archive to a stream.
    stream = io.BytesIO()
    both = tmp_path / "both.oci.tar"
    build_result(
        flavor,
        settings,
        _options(engines, context, outputs=[OCIOutput(dest=both), DockerOutput(dest=stream)]),
    )
    with tarfile.open(both) as tar:
        assert "index.json" in tar.getnames()
    with tarfile.open(fileobj=io.BytesIO(stream.getvalue())) as tar:
        assert "manifest.json" in tar.getnames()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_push_puts_the_digest_of_the_result_in_the_registry(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    dockerd_http: httpx.Client,
    context: Path,
) -> None:
    if not (engines.registry and engines.registry_user and engines.registry_password):
        engines_unavailable("the registry was not started (no BUILDSDK_REGISTRY)")
    if not docker_engine.containerd_store:
        options = _options(engines, context, outputs=[ImageOutput(name=("r/a:1",), push=True)])
        with pytest.raises(UnsupportedOption, match="containerd image store"):
            build_result(flavor, client_settings(engines, "dockerd", docker_engine), options)
        return
    registry, user, password = engines.registry, engines.registry_user, engines.registry_password
    repository = f"private/control-{uuid.uuid4().hex[:8]}"
    name = f"{registry}/{repository}:1"
    settings = client_settings(engines, "dockerd", docker_engine)
    settings["credentials"] = {registry: RegistryAuth(username=user, password=SecretStr(password))}
    options = _options(engines, context, outputs=[ImageOutput(name=(name,), push=True)])
    try:
        result = build_result(flavor, settings, options)
    finally:
        _forget(dockerd_http, name)
    accept = ", ".join(
        (
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        )
    )
    response = httpx.head(
        f"http://{registry}/v2/{repository}/manifests/1",
        headers={"Accept": accept},
        auth=(user, password),
    )
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == result.image_digest
    assert password not in repr(result)
    assert password not in json.dumps(result.metadata())


def _recorded_failure() -> list[str]:
    vectors = json.loads((VECTORS_DIR / "buildx_solve.json").read_text())
    case = next(case for case in vectors["cases"] if case["name"] == "fail_run")
    tail: list[str] = case["stderr_tail"]
    return tail


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_failing_run_gives_exit_code_step_and_buildx_s_excerpt(
    flavor: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    # The Dockerfile of the recorded `docker buildx build` case (ctx-fail).
    root = tmp_path / "ctx-fail"
    root.mkdir()
    (root / "Dockerfile").write_text(f"FROM {engines.base_image}\nRUN echo about to fail; exit 3\n")
    settings = client_settings(engines, "dockerd", docker_engine)
    with pytest.raises(BuildError) as info:
        build_result(flavor, settings, _options(engines, root))
    error = info.value
    recorded = _recorded_failure()
    assert error.code == 3
    assert error.step == "[2/2] RUN echo about to fail; exit 3"
    if docker_engine.is_20:
        # BuildKit 0.8 words the failure its own way.
        assert error.message == (
            "executor failed running [/bin/sh -c echo about to fail; exit 3]: exit code: 3"
        )
        return
    assert error.message == recorded[-1].removeprefix("ERROR: failed to solve: ")
    assert error.source.splitlines() == recorded[5:11]
    lines = error.log.splitlines()
    # buildx's last lines, but for the step's timestamp (`0.045 about to fail`).
    assert lines[-len(recorded) :][:3] == recorded[:3]
    assert lines[-len(recorded) + 3].endswith(" about to fail")
    assert lines[-len(recorded) + 4 :] == recorded[4:]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settled_fds(before: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gc.collect()
        if _fds() <= before:
            return True
        time.sleep(0.1)
    return False


def _threads() -> set[str]:
    return {thread.name for thread in threading.enumerate() if thread.name.startswith("buildsdk")}


@pytest.mark.parametrize("flavor", FLAVORS)
def test_closing_a_running_build_cancels_it_at_once_and_leaves_nothing(
    flavor: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    root = tmp_path / "ctx-sleep"
    root.mkdir()
    marker = uuid.uuid4().hex
    (root / "Dockerfile").write_text(
        f"FROM {engines.base_image}\nRUN echo sleeping {marker}; sleep 60\n"
    )
    settings = client_settings(engines, "dockerd", docker_engine)
    options = _options(engines, root)
    before = _threads()
    gc.collect()
    fds_before = _fds()

    def running(event: object) -> bool:
        return isinstance(event, VertexLogEvent) and marker.encode() in event.data

    if flavor == "sync":
        with Client(**settings) as client:
            build = client.build(options)
            for event in build:
                if running(event):
                    break
            started = time.monotonic()
            build.close()
            closed_in = time.monotonic() - started
    else:

        async def main() -> float:
            async with AsyncClient(**settings) as client:
                build = client.build(options)
                async for event in build:
                    if running(event):
                        break
                started = time.monotonic()
                await build.close()
                return time.monotonic() - started

        closed_in = asyncio.run(main())
    assert closed_in < 5
    assert _threads() <= before
    assert _settled_fds(fds_before), "the closed build left file descriptors open"


_STEP_TIME = re.compile(r"^(#\d+ )?\d+\.\d+ ", re.MULTILINE)


def _failure_tail(text: str) -> list[str]:
    """From the failed step's `#N ERROR:` line to the end, step timestamps blanked."""
    lines = _STEP_TIME.sub(r"\1T ", text).splitlines()
    start = max(i for i, line in enumerate(lines) if re.match(r"#\d+ ERROR: ", line))
    return [re.sub(r"^#\d+ ", "#N ", line) for line in lines[start:]]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_failing_run_ends_the_log_as_docker_buildx_build_prints_it(
    flavor: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    if engines.docker26_config is None or engines.docker26_cli is None:
        engines_unavailable(
            "the Docker CLI 26.1 was not unpacked (scripts/engines up docker26-cli)"
        )
    root = tmp_path / "ctx-fail"
    root.mkdir()
    (root / "Dockerfile").write_text(
        f"FROM {engines.base_image}\nLABEL x=y\nRUN echo one; echo about to fail; exit 7\n"
        'CMD ["true"]\n'
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(engines.docker26_config),
        "DOCKER_HOST": docker_engine.host,
        "LANG": "C.UTF-8",
    }
    argv = [str(engines.docker26_cli), "buildx", "build", "--progress", "plain"]
    argv += ["--network", engines.dockerd_network, str(root)]
    printed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert printed.returncode == 1, printed.stderr

    settings = client_settings(engines, "dockerd", docker_engine)
    with pytest.raises(BuildError) as info:
        build_result(flavor, settings, _options(engines, root))
    assert info.value.code == 7
    assert _failure_tail(info.value.log) == _failure_tail(printed.stderr)


def test_a_watchdog_thread_closing_a_sync_build_ends_the_blocked_read(
    engines: Engines, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    root = tmp_path / "ctx-sleep"
    root.mkdir()
    (root / "Dockerfile").write_text(f"FROM {engines.base_image}\nRUN sleep 60\n")
    settings = client_settings(engines, "dockerd", docker_engine)
    before = _threads()
    with Client(**settings) as client:
        build = client.build(_options(engines, root))
        watchdog = threading.Timer(3.0, build.close)
        started = time.monotonic()
        watchdog.start()
        with pytest.raises(StreamError, match="closed"):
            build.result()
        watchdog.join()
    assert time.monotonic() - started < 10
    assert _threads() <= before


@pytest.fixture
def private_base(engines: Engines, dockerd_http: httpx.Client) -> Iterator[str]:
    """The base image pushed to the test registry under a fresh name (through the Engine
    API's push), with no local copy left: a build from it needs the registry login."""
    if not (engines.registry and engines.registry_user and engines.registry_password):
        engines_unavailable("the registry was not started (no BUILDSDK_REGISTRY)")
    repository = f"{engines.registry}/private/control-base-{uuid.uuid4().hex[:8]}"
    name = f"{repository}:1"
    tagged = dockerd_http.post(
        f"/images/{quote(engines.base_image, safe='')}/tag", params={"repo": repository, "tag": "1"}
    )
    assert tagged.status_code == 201, tagged.text
    auth = {"username": engines.registry_user, "password": engines.registry_password}
    header = base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()
    pushed = dockerd_http.post(
        f"/images/{quote(repository, safe='')}/push",
        params={"tag": "1"},
        headers={"X-Registry-Auth": header},
        timeout=120,
    )
    assert pushed.status_code == 200, pushed.text
    assert '"error"' not in pushed.text, pushed.text
    _forget(dockerd_http, name)
    yield name
    _forget(dockerd_http, name)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_session_serves_secrets_and_registry_logins(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    private_base: str,
    tmp_path: Path,
) -> None:
    assert engines.registry
    assert engines.registry_user
    assert engines.registry_password
    root = tmp_path / "ctx-secret"
    root.mkdir()
    (root / "Dockerfile").write_text(
        f"FROM {private_base}\nRUN --mount=type=secret,id=token cp /run/secrets/token /token-copy\n"
    )
    settings = client_settings(engines, "dockerd", docker_engine)
    settings["credentials"] = {
        engines.registry: RegistryAuth(
            username=engines.registry_user, password=SecretStr(engines.registry_password)
        )
    }
    settings["env"] = {"BUILD_TOKEN": "s3cr3t-value"}
    out = tmp_path / "out"
    options = _options(
        engines,
        root,
        secrets=["id=token,env=BUILD_TOKEN"],
        outputs=[LocalOutput(dest=out)],
    )
    result = build_result(flavor, settings, options)
    assert (out / "token-copy").read_text() == "s3cr3t-value"
    assert "s3cr3t-value" not in result.log
    assert engines.registry_password not in result.log
