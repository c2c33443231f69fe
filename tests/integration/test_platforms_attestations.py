"""Multi-platform builds and attestations through BuildKit's Control API on real engines.

Each test runs on every Docker engine of the matrix with `Client` and `AsyncClient`. On the
containerd image store the image is pushed to the test registry and read back over HTTP, as
a user would check it: the index and its platforms, the per-platform digests the result
reports, the attestation manifests (`vnd.docker.reference.type: attestation-manifest`) and
the provenance predicate in them. On the classic store the same options are refused with
buildx's words before anything is built. The SBOM scanner image cannot be pulled here
(no Docker Hub), and a program of another architecture cannot run (no emulator): both
failures must say so.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from buildsdk import BuildError, BuildOptions, RegistryAuth
from buildsdk.errors import UnsupportedOption
from buildsdk.outputs import ImageOutput
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
INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ", ".join(
    (
        INDEX,
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
ATTESTATION = "attestation-manifest"
SLSA = "https://slsa.dev/provenance/v0.2"


@pytest.fixture
def engines(all_engines: Engines, docker_engine: DockerEngine) -> Engines:
    """Every test here runs on each Docker engine of the matrix."""
    return engines_on_matrix(all_engines, docker_engine)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """Files only (FROM scratch): nothing runs, so linux/386 builds without an emulator."""
    root = tmp_path / "context"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\n")
    (root / "a.txt").write_text("a\n")
    return root


def _options(engines: Engines, context: Path, **extra: Any) -> BuildOptions:
    return BuildOptions(
        path=str(context), version="2", network_mode=engines.dockerd_network, **extra
    )


class _Registry:
    """The test registry as a user reads it: manifests and blobs over HTTP with the login."""

    def __init__(self, engines: Engines, docker_engine: DockerEngine) -> None:
        if not (engines.registry and engines.registry_user and engines.registry_password):
            engines_unavailable("the registry was not started (no BUILDSDK_REGISTRY)")
        self.host = engines.registry
        self.auth = (engines.registry_user, engines.registry_password)
        self.repository = f"private/platforms-{uuid.uuid4().hex[:8]}"
        self.settings = client_settings(engines, "dockerd", docker_engine)
        self.settings["credentials"] = {
            self.host: RegistryAuth(username=self.auth[0], password=SecretStr(self.auth[1]))
        }

    def name(self, tag: str) -> str:
        return f"{self.host}/{self.repository}:{tag}"

    def manifest(self, reference: str) -> tuple[dict[str, Any], str]:
        response = httpx.get(
            f"http://{self.host}/v2/{self.repository}/manifests/{reference}",
            headers={"Accept": ACCEPT},
            auth=self.auth,
        )
        assert response.status_code == 200, response.text
        return response.json(), response.headers["Docker-Content-Digest"]

    def blob(self, digest: str) -> dict[str, Any]:
        response = httpx.get(
            f"http://{self.host}/v2/{self.repository}/blobs/{digest}",
            auth=self.auth,
            follow_redirects=True,
        )
        assert response.status_code == 200, response.text
        blob: dict[str, Any] = response.json()
        return blob

    def provenance(self, attestation: dict[str, Any]) -> dict[str, Any]:
        """The provenance statement an attestation manifest of the index carries."""
        manifest, _ = self.manifest(attestation["digest"])
        (layer,) = manifest["layers"]
        assert layer["mediaType"] == "application/vnd.in-toto+json"
        assert layer["annotations"]["in-toto.io/predicate-type"] == SLSA
        return self.blob(layer["digest"])


def _forget(http: httpx.Client, *names: str) -> None:
    for name in names:
        http.delete(f"/images/{quote(name, safe='')}", params={"force": "1"})


def _split(index: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The index's images by platform, and its attestation manifests."""
    images: dict[str, str] = {}
    attestations: list[dict[str, Any]] = []
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("vnd.docker.reference.type") == ATTESTATION:
            attestations.append(entry)
        else:
            platform = entry["platform"]
            images[f"{platform['os']}/{platform['architecture']}"] = entry["digest"]
    return images, attestations


@pytest.mark.parametrize("flavor", FLAVORS)
def test_two_platforms_pushed_give_an_index_with_both_and_their_provenance(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    dockerd_http: httpx.Client,
    context: Path,
) -> None:
    registry = _Registry(engines, docker_engine)
    name = registry.name("1")
    options = _options(
        engines,
        context,
        platform=["linux/amd64", "linux/386"],
        outputs=[ImageOutput(name=(name,), push=True)],
    )
    if not docker_engine.containerd_store:
        with pytest.raises(UnsupportedOption) as info:
            build_result(flavor, registry.settings, options)
        assert str(info.value).startswith(
            "Multi-platform build is not supported for the docker driver.\n"
        )
        assert info.value.option == "platform"
        return
    try:
        result = build_result(flavor, registry.settings, options)
    finally:
        _forget(dockerd_http, name)
    index, digest = registry.manifest("1")
    assert index["mediaType"] == INDEX
    assert digest == result.image_digest
    assert result.descriptor is not None
    assert result.descriptor["mediaType"] == INDEX
    images, attestations = _split(index)
    assert images == {image.platform: image.manifest_digest for image in result.platform_images}
    assert [image.platform for image in result.platform_images] == ["linux/amd64", "linux/386"]
    for image in result.platform_images:
        manifest, _ = registry.manifest(image.manifest_digest)
        assert manifest["config"]["digest"] == image.config_digest
        config = registry.blob(image.config_digest)
        assert f"{config['os']}/{config['architecture']}" == image.platform
    # The engine's default: min provenance for each platform's image.
    assert sorted(a["annotations"]["vnd.docker.reference.digest"] for a in attestations) == sorted(
        images.values()
    )
    statement = registry.provenance(attestations[0])
    assert "buildConfig" not in statement["predicate"]
    assert registry.auth[1] not in repr(result)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("provenance", ["max", False])
def test_provenance_attached_to_the_pushed_image_or_turned_off(
    flavor: str,
    provenance: str | bool,
    engines: Engines,
    docker_engine: DockerEngine,
    dockerd_http: httpx.Client,
    context: Path,
) -> None:
    registry = _Registry(engines, docker_engine)
    name = registry.name("p")
    options = _options(
        engines, context, provenance=provenance, outputs=[ImageOutput(name=(name,), push=True)]
    )
    if not docker_engine.containerd_store:
        if provenance:
            with pytest.raises(UnsupportedOption) as info:
                build_result(flavor, registry.settings, options)
            assert str(info.value).split("\n") == [
                "Attestation is not supported for the docker driver.",
                "Switch to a different driver, or turn on the containerd image store, and "
                "try again.",
                "Learn more at https://docs.docker.com/go/attestations/",
            ]
        else:
            # Nothing to turn off there: the build goes on to the classic store's own
            # refusal of a push through the Control API.
            with pytest.raises(UnsupportedOption, match="containerd image store"):
                build_result(flavor, registry.settings, options)
        return
    try:
        result = build_result(flavor, registry.settings, options)
    finally:
        _forget(dockerd_http, name)
    pushed, digest = registry.manifest("p")
    assert digest == result.image_digest
    if not provenance:
        # No attestation at all: a single image manifest, as with buildx --provenance=false.
        assert pushed["mediaType"] != INDEX
        assert result.config_digest == pushed["config"]["digest"]
        return
    images, attestations = _split(pushed)
    (attestation,) = attestations
    assert attestation["annotations"]["vnd.docker.reference.digest"] == images["linux/amd64"]
    statement = registry.provenance(attestation)
    assert statement["predicateType"] == SLSA
    # mode=max records the build's definition; the default min does not.
    assert "buildConfig" in statement["predicate"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_sbom_says_the_scanner_image_cannot_be_pulled(
    flavor: str, engines: Engines, docker_engine: DockerEngine, context: Path
) -> None:
    settings = client_settings(engines, "dockerd", docker_engine)
    options = _options(engines, context, sbom=True, provenance="max")
    if not docker_engine.containerd_store:
        with pytest.raises(UnsupportedOption, match="Attestation is not supported") as refused:
            build_result(flavor, settings, options)
        assert refused.value.option == "provenance"
        return
    with pytest.raises(BuildError) as info:
        build_result(flavor, settings, options)
    first, hint = str(info.value).split("\n")
    assert first.startswith(
        "failed to resolve source metadata for docker.io/docker/buildkit-syft-scanner:stable-1"
    )
    assert hint.startswith("sbom: the engine could not pull the SBOM scanner image")
    assert info.value.log.rstrip().endswith(f"ERROR: failed to solve: {first}")


def _aarch64_program(path: Path) -> None:
    """An ELF header of an AArch64 executable: the x86_64 kernel refuses to run it."""
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 183, 1, 0x400078, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0x80, 0x80, 0x1000)
    path.write_bytes(header + program + bytes(8))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_run_of_another_architecture_says_an_emulator_is_missing(
    flavor: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    _aarch64_program(tmp_path / "hello")
    (tmp_path / "hello").chmod(0o755)  # COPY keeps the mode (no --chmod: BuildKit 0.8 lacks it)
    (tmp_path / "Dockerfile").write_text('FROM scratch\nCOPY hello /hello\nRUN ["/hello"]\n')
    settings = client_settings(engines, "dockerd", docker_engine)
    options = BuildOptions(
        path=str(tmp_path),
        version="2",
        platform="linux/arm64",
        network_mode=engines.dockerd_network,
        build_endpoint="grpc",
    )
    with pytest.raises(BuildError) as info:
        build_result(flavor, settings, options)
    lines = str(info.value).split("\n")
    # BuildKit 0.8 (Docker 20.10) words it "executor failed running [/hello]: exit code: 1".
    assert lines[0].endswith("exit code: 1")
    assert lines[1].startswith("platform: a step ran a program built for another architecture")
    assert "linux/arm64" in lines[1]
    assert "exec format error" in info.value.log
    assert info.value.step == '[2/2] RUN ["/hello"]'
    assert info.value.code == 1
