"""buildx's `--annotation`, `--no-cache-filter` and `--allow` through the Control API, on
Docker 26.1 with each image store, read as a user reads them: the annotations in the OCI
archive the build wrote and in the image the engine stored (exported with `docker save`'s
`GET /images/get`), which steps the second build ran and which came from the cache, the
error a build asking for `security.insecure` gets, and what `buildsdk build --dry-run
--format json` prints for the flags."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildsdk import AsyncClient, BuildError, BuildOptions, Client
from buildsdk.events import BuildEvent, VertexEvent
from buildsdk.outputs import ImageOutput, OCIOutput
from buildsdk.results import BuildResult
from tests.integration.conftest import DockerEngine, Engines, client_settings, docker_engine_of

pytestmark = [pytest.mark.engine, pytest.mark.dockerd]

STORES = [
    pytest.param("dockerd26", marks=pytest.mark.docker26, id="docker26.1"),
    pytest.param(
        "dockerd26-containerd", marks=pytest.mark.docker26_containerd, id="docker26.1-containerd"
    ),
]
FLAVORS = ("sync", "async")
INSECURE_REFUSED = (
    "granting entitlement security.insecure is not allowed by build daemon configuration"
)


def _build(
    flavor: str, settings: dict[str, Any], options: BuildOptions
) -> tuple[BuildResult, list[BuildEvent]]:
    events: list[BuildEvent] = []
    if flavor == "sync":
        with Client(**settings) as client, client.build(options) as build:
            events.extend(build)
            return build.result(), events

    async def main() -> BuildResult:
        async with AsyncClient(**settings) as client, client.build(options) as build:
            events.extend([event async for event in build])
            return await build.result()

    return asyncio.run(main()), events


def _options(engines: Engines, context: Path, **extra: Any) -> BuildOptions:
    return BuildOptions(
        path=str(context), version="2", network_mode=engines.dockerd_network, **extra
    )


def _blob(archive: tarfile.TarFile, digest: str) -> dict[str, Any]:
    member = archive.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
    assert member is not None
    loaded: dict[str, Any] = json.load(member)
    return loaded


def _index(archive: tarfile.TarFile) -> dict[str, Any]:
    member = archive.extractfile("index.json")
    assert member is not None
    loaded: dict[str, Any] = json.load(member)
    return loaded


@pytest.mark.docker26_containerd
@pytest.mark.parametrize("flavor", FLAVORS)
def test_annotations_are_in_the_oci_archive(engines: Engines, tmp_path: Path, flavor: str) -> None:
    docker = docker_engine_of(engines, "dockerd26-containerd")
    (tmp_path / "Dockerfile").write_text(f"FROM {engines.base_image}\nRUN echo {flavor} > /f\n")
    archive_path = tmp_path / "oci.tar"
    options = _options(
        engines,
        tmp_path,
        outputs=[OCIOutput(dest=str(archive_path))],
        annotations=[
            "org.example.manifest=m",
            # A single-platform archive has no index of its own: BuildKit applies only the
            # annotations without a platform to it.
            "manifest-descriptor:org.example.descriptor=d",
            "manifest[linux/arm64]:org.example.other=o",
        ],
    )
    assert options.build_endpoint == "auto"  # annotations choose the Control API themselves
    _build(flavor, client_settings(engines, "dockerd", docker), options)
    with tarfile.open(archive_path) as archive:
        (descriptor,) = _index(archive)["manifests"]
        assert descriptor["annotations"]["org.example.descriptor"] == "d"
        manifest = _blob(archive, descriptor["digest"])
    assert manifest["annotations"] == {"org.example.manifest": "m"}


@pytest.mark.docker26_containerd
def test_annotations_are_in_the_image_the_engine_stored(engines: Engines, tmp_path: Path) -> None:
    docker = docker_engine_of(engines, "dockerd26-containerd")
    name = f"buildsdk-annotated:{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(f"FROM {engines.base_image}\nRUN echo stored > /f\n")
    options = _options(
        engines,
        tmp_path,
        outputs=[ImageOutput(name=(name,))],
        annotations={
            "org.example.k": "v",
            "manifest-descriptor[linux/amd64]:org.example.d": "w",
            "manifest-descriptor[linux/arm64]:org.example.other": "o",
        },
    )
    result, _ = _build("sync", client_settings(engines, "dockerd", docker), options)
    saved = tmp_path / "saved.tar"
    uds = docker.host.removeprefix("unix://")
    with httpx.Client(transport=httpx.HTTPTransport(uds=uds), timeout=60) as http:
        inspected = http.get(f"http://engine/images/{name}/json").json()
        with http.stream("GET", "http://engine/images/get", params={"names": name}) as response:
            assert response.status_code == 200
            saved.write_bytes(response.read())
        http.delete(f"http://engine/images/{name}")
    assert inspected["Id"] == result.image_digest
    with tarfile.open(saved) as archive:
        (top,) = _index(archive)["manifests"]
        # The containerd store keeps an index (the image manifest and its attestation), so
        # annotations for the built platform apply, and those for another do not.
        image_index = _blob(archive, top["digest"])
        image = next(
            entry
            for entry in image_index["manifests"]
            if entry.get("platform", {}).get("os") != "unknown"
        )
        assert image["annotations"] == {"org.example.d": "w"}
        assert _blob(archive, image["digest"])["annotations"] == {"org.example.k": "v"}


_STAGES = """\
FROM {base} AS base
RUN echo base-{nonce} > /b
FROM base AS test
RUN echo test-{nonce} > /t
FROM {base}
COPY --from=test /t /t
"""


def _ran(events: list[BuildEvent], marker: str) -> bool:
    """Whether the step whose name holds `marker` ran (True) or came from the cache."""
    runs = [e for e in events if isinstance(e, VertexEvent) and marker in e.name]
    assert runs, f"no step {marker!r} in {[e.name for e in events if isinstance(e, VertexEvent)]}"
    return not any(run.cached for run in runs)


@pytest.mark.parametrize("service", STORES)
def test_no_cache_filter_reruns_only_that_stage(
    engines: Engines, tmp_path: Path, service: str
) -> None:
    docker = docker_engine_of(engines, service)
    nonce = uuid.uuid4().hex[:8]
    (tmp_path / "Dockerfile").write_text(_STAGES.format(base=engines.base_image, nonce=nonce))
    settings = client_settings(engines, "dockerd", docker)
    _, first = _build("sync", settings, _options(engines, tmp_path))
    assert _ran(first, f"echo base-{nonce}")
    assert _ran(first, f"echo test-{nonce}")
    _, again = _build("sync", settings, _options(engines, tmp_path))
    assert not _ran(again, f"echo base-{nonce}")
    assert not _ran(again, f"echo test-{nonce}")
    _, filtered = _build("async", settings, _options(engines, tmp_path, no_cache_filter="test"))
    assert not _ran(filtered, f"echo base-{nonce}")
    assert _ran(filtered, f"echo test-{nonce}")


@pytest.mark.parametrize("service", STORES)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_entitlement_the_engine_does_not_grant_is_refused_in_its_words(
    engines: Engines, tmp_path: Path, service: str, flavor: str
) -> None:
    docker = docker_engine_of(engines, service)
    (tmp_path / "Dockerfile").write_text(f"FROM {engines.base_image}\nRUN true\n")
    options = _options(engines, tmp_path, allow=["security.insecure"])
    with pytest.raises(BuildError) as info:
        _build(flavor, client_settings(engines, "dockerd", docker), options)
    assert str(info.value) == INSECURE_REFUSED


def _dry_run(docker: DockerEngine, tmp_path: Path, *flags: str) -> dict[str, Any]:
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path / "config"),
    }
    argv = ["build", "-H", docker.host, "--dry-run", "--format", "json", *flags, str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "buildsdk", *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed: dict[str, Any] = json.loads(done.stdout)
    return printed


@pytest.mark.parametrize("service", STORES)
def test_the_json_dry_run_shows_the_flags(engines: Engines, tmp_path: Path, service: str) -> None:
    docker = docker_engine_of(engines, service)
    (tmp_path / "Dockerfile").write_text(f"FROM {engines.base_image}\n")
    printed = _dry_run(
        docker,
        tmp_path,
        "-o",
        "type=image,name=flags:1",
        "--annotation",
        "manifest[linux/amd64]:k=v",
        "--no-cache-filter",
        "base",
        "--allow",
        "security.insecure",
    )
    assert printed["endpoint"] == "grpc"
    solve = printed["solve"]
    assert solve["Exporters"] == [
        {"Type": "moby", "Attrs": {"annotation-manifest[linux/amd64].k": "v", "name": "flags:1"}}
    ]
    assert solve["FrontendAttrs"]["no-cache"] == "base"
    assert solve["Entitlements"] == ["security.insecure"]
