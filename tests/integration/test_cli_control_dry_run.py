"""`buildsdk build --endpoint grpc --dry-run --format json` against Docker 26.1 on both image
stores: the engine is asked only what buildx asks before a build (`/_ping`, and
`Control/ListWorkers` for the image store), the printed Solve follows the store, and
nothing is built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildsdk.session.content import REF_NAME
from tests import VECTORS_DIR
from tests.integration.conftest import DockerEngine, Engines, docker_engine_of

__all__: list[str] = []

pytestmark = [pytest.mark.engine]

STORES = [
    pytest.param("dockerd26", marks=pytest.mark.docker26, id="docker26.1"),
    pytest.param(
        "dockerd26-containerd", marks=pytest.mark.docker26_containerd, id="docker26.1-containerd"
    ),
]
TAG = "buildsdk-dry-run-grpc:1"


def _run(host: str, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path / "config"),
    }
    return subprocess.run(
        [sys.executable, "-m", "buildsdk", "build", "-H", host, *flags, str(tmp_path)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _image_exists(host: str, name: str) -> bool:
    with httpx.Client(transport=httpx.HTTPTransport(uds=host.removeprefix("unix://"))) as http:
        return http.get(f"http://engine/images/{name}/json").status_code == 200


@pytest.mark.parametrize("service", STORES)
def test_control_dry_run_prints_the_solve_for_the_engine_s_store(
    engines: Engines, tmp_path: Path, service: str
) -> None:
    engine = docker_engine_of(engines, service)
    (tmp_path / "Dockerfile").write_text(f"FROM {engines.base_image}\nRUN false\n")
    done = _run(
        engine.host, tmp_path, "--endpoint", "grpc", "--dry-run", "--format", "json", "-t", TAG
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    printed: dict[str, Any] = json.loads(line)
    assert set(printed) == {"endpoint", "solve", "session"}
    assert printed["endpoint"] == "grpc"
    solve = printed["solve"]
    assert solve["Exporters"] == [{"Type": "moby", "Attrs": {"name": TAG}}]
    assert solve["Session"] != solve["Ref"]
    # The default provenance attestation exists only where the store can keep it.
    attrs = solve["FrontendAttrs"]
    assert ("attest:provenance" in attrs) is engine.containerd_store
    assert "/moby.filesync.v1.FileSync/DiffCopy" in printed["session"]["methods"]
    assert len(printed["session"]["shared_key"]) == 64
    assert not _image_exists(engine.host, TAG)


@pytest.mark.parametrize("service", STORES)
def test_oci_export_is_refused_only_on_the_classic_store(
    engines: Engines, tmp_path: Path, service: str
) -> None:
    engine = docker_engine_of(engines, service)
    (tmp_path / "Dockerfile").write_text(f"FROM {engines.base_image}\n")
    flags = ("--endpoint", "grpc", "--dry-run", "--format", "json", "-t", TAG)
    done = _run(engine.host, tmp_path, *flags, "-o", f"type=oci,dest={tmp_path / 'o.tar'}")
    if engine.containerd_store:
        assert done.returncode == 0, done.stderr
        printed = json.loads(done.stdout)
        assert printed["solve"]["Exporters"] == [{"Type": "oci", "Attrs": {"name": TAG}}]
        assert "/moby.filesync.v1.FileSend/DiffCopy" in printed["session"]["methods"]
        assert not (tmp_path / "o.tar").exists()
    else:
        assert done.returncode == 2
        assert done.stdout == ""
        assert "OCI exporter is not supported for the docker driver." in done.stderr


@pytest.mark.parametrize("service", STORES)
def test_post_build_json_dry_run_names_its_endpoint(
    engines: Engines, tmp_path: Path, service: str
) -> None:
    engine = docker_engine_of(engines, service)
    (tmp_path / "Dockerfile").write_text(f"FROM {engines.base_image}\n")
    # Pinned to POST /build: this test is about that endpoint's dry run.
    done = _run(
        engine.host, tmp_path, "--dry-run", "--format", "json", "-t", TAG, "--endpoint", "build"
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["endpoint"] == "build"
    assert printed["path"] == f"/v{engine.api}/build"
    # Docker 26 prefers BuildKit, which the command follows as docker build does.
    assert ["version", "2"] in printed["query"]
    # Left to "auto", that BuildKit build takes the Control API there, as docker build does.
    done = _run(engine.host, tmp_path, "--dry-run", "--format", "json", "-t", TAG)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["endpoint"] == "grpc"


@dataclass(frozen=True)
class MetadataBuild:
    """One `buildsdk build -t ... --iidfile ... --metadata-file ...` run, and what it left."""

    engine: DockerEngine
    tag: str
    metadata: dict[str, Any]
    iid: str
    image_id: str


@pytest.fixture
def metadata_build(
    engines: Engines, tmp_path: Path
) -> Iterator[Callable[[str, str], MetadataBuild]]:
    """Build a one-label image through `--endpoint` on `service`, writing the iidfile and
    the metadata file; every image it tagged is removed afterwards."""
    tagged: list[tuple[str, str]] = []

    def build(service: str, endpoint: str) -> MetadataBuild:
        engine = docker_engine_of(engines, service)
        context = tmp_path / f"ctx-{endpoint}-{service}"
        context.mkdir()
        (context / "Dockerfile").write_text(
            f"FROM {engines.base_image}\nLABEL case={endpoint}-{service}\n"
        )
        tag = f"buildsdk-metadata-{endpoint}-{service}:1"
        metadata_file, iidfile = tmp_path / "metadata.json", tmp_path / "iid"
        tagged.append((engine.host, tag))
        done = _run(
            engine.host,
            context,
            "--endpoint",
            endpoint,
            "--progress",
            "plain",
            "-t",
            tag,
            "--iidfile",
            str(iidfile),
            "--metadata-file",
            str(metadata_file),
        )
        assert done.returncode == 0, done.stderr
        with _engine_http(engine.host) as http:
            image_id = http.get(f"http://engine/images/{tag}/json").json()["Id"]
        metadata = json.loads(metadata_file.read_text())
        return MetadataBuild(engine, tag, metadata, iidfile.read_text(), image_id)

    yield build
    for host, tag in tagged:
        with _engine_http(host) as http:
            http.delete(f"http://engine/images/{tag}")


def _engine_http(host: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=host.removeprefix("unix://")))


@pytest.mark.parametrize("service", STORES)
def test_metadata_file_of_a_post_build_build_holds_the_built_image(
    metadata_build: Callable[[str, str], MetadataBuild], service: str
) -> None:
    built = metadata_build(service, "build")
    assert built.metadata == {
        # The image ID is the config digest on the classic store, the index's on
        # containerd's, as buildx names them.
        (
            "containerimage.digest"
            if built.engine.containerd_store
            else "containerimage.config.digest"
        ): built.image_id,
        "image.name": f"docker.io/library/{built.tag}",
    }
    assert built.iid == built.image_id


@pytest.mark.parametrize("service", STORES)
def test_a_control_api_build_writes_buildx_s_metadata_file(
    metadata_build: Callable[[str, str], MetadataBuild], service: str
) -> None:
    built = metadata_build(service, "grpc")
    metadata = built.metadata
    # The exporter response as buildx writes it: the image's digests and name, the
    # build's Ref after buildx's builder/node prefix.
    assert metadata["image.name"] == f"docker.io/library/{built.tag}"
    assert metadata["buildx.build.ref"].startswith("default/default/")
    assert len(metadata["buildx.build.ref"]) == len("default/default/") + 25
    assert built.image_id in (
        metadata.get("containerimage.config.digest"),
        metadata["containerimage.digest"],
    )
    if built.engine.containerd_store:
        assert isinstance(metadata["containerimage.descriptor"], dict)
    assert built.iid == (
        metadata.get("containerimage.config.digest") or metadata["containerimage.digest"]
    )


# buildx's flags of the recorded platform and attestation cases (buildx_solve.json), and
# what the command's dry run must print for them: the recorded Solve on the containerd
# store, buildx's refusal on the classic store.
_BUILDX_CASES = {
    "multi_platform": ("--platform", "linux/amd64,linux/386", "-t", "multi:1"),
    "attest_sbom_prov": ("--sbom=true", "--provenance=mode=max"),
    "no_attest": ("--provenance=false", "--endpoint", "grpc"),
}
_CLASSIC_REFUSALS = {
    "multi_platform": "Multi-platform build is not supported for the docker driver.",
    "attest_sbom_prov": "Attestation is not supported for the docker driver.",
}


@pytest.mark.parametrize("case", sorted(_BUILDX_CASES))
@pytest.mark.parametrize("service", STORES)
def test_platform_and_attestation_flags_print_buildx_s_solve(
    engines: Engines, tmp_path: Path, service: str, case: str
) -> None:
    engine = docker_engine_of(engines, service)
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\n")
    (tmp_path / "a.txt").write_text("a\n")
    done = _run(engine.host, tmp_path, "--dry-run", "--format", "json", *_BUILDX_CASES[case])
    if not engine.containerd_store and case in _CLASSIC_REFUSALS:
        assert done.returncode == 2
        assert done.stdout == ""
        assert _CLASSIC_REFUSALS[case] in done.stderr
        return
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["endpoint"] == "grpc"
    solve = printed["solve"]
    vectors = json.loads((VECTORS_DIR / "buildx_solve.json").read_text(encoding="utf-8"))
    (recorded,) = [
        call["requests"][0]
        for vector in vectors["cases"]
        if vector["name"] == case
        for call in vector["calls"]
        if call["path"].endswith("Control/Solve") and not call["requests"][0].get("Internal")
    ]
    expected = dict(recorded["FrontendAttrs"])
    if not engine.containerd_store:
        # --provenance=false on the classic store: there was no default to turn off.
        assert "attest:provenance" not in expected
    assert solve["FrontendAttrs"] == expected
    assert solve["Exporters"] == recorded["Exporters"]
    assert not _image_exists(engine.host, "multi:1")


@pytest.mark.parametrize("service", STORES)
def test_cache_flags_are_printed_and_refused_on_the_classic_store(
    engines: Engines, tmp_path: Path, service: str
) -> None:
    engine = docker_engine_of(engines, service)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {engines.base_image}\n")
    source, dest = tmp_path / "from", tmp_path / "to"
    source.mkdir()
    digest = "sha256:" + "5e" * 32
    manifest = {"digest": digest, "size": 1, "annotations": {REF_NAME: "latest"}}
    (source / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
    flags = ("--dry-run", "--format", "json", "--cache-to", f"type=local,dest={dest},mode=max")
    done = _run(engine.host, context, *flags, "--cache-from", f"type=local,src={source}")
    if not engine.containerd_store:
        assert done.returncode == 2
        assert done.stdout == ""
        assert "Cache export is not supported for the docker driver." in done.stderr
        return
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    # A cache export needs the Control API, which the command takes without --endpoint.
    assert printed["endpoint"] == "grpc"
    imported = {"Type": "local", "Attrs": {"digest": digest, "src": str(source)}}
    assert printed["solve"]["Cache"] == {
        "Exports": [{"Type": "local", "Attrs": {"dest": str(dest), "mode": "max"}}],
        "Imports": [imported],
    }
    assert json.loads(printed["solve"]["FrontendAttrs"]["cache-imports"]) == [imported]
    assert "/containerd.services.content.v1.Content/Write" in printed["session"]["methods"]
    assert not dest.exists()
