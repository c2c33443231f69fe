"""The same core build on every kind of engine address, and API version negotiation.

Podman's Docker-compatible API, a dockerd behind mutual TLS, and dockerd reached through
`ssh://` (`docker system dial-stdio`) must all give the result a local dockerd gives: the
build argument seen by `RUN`, a file copied from the context, labels, and every tag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from buildsdk.build import BuildOptions
from buildsdk.errors import BadRequest, UnsupportedOption
from buildsdk.versions import MAX_API_VERSION, ApiVersion
from tests.integration.client.conftest import (
    Runner,
    RunnerFactory,
    image_files,
    inspect_image,
    unique_tag,
)

__all__: list[str] = []

pytestmark = pytest.mark.anyio

Builder = Literal["1", "2"]


async def _core_build(runner: Runner, tmp_path: Path, builder: Builder) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\n"
        "ARG WHO=nobody\n"
        'RUN mkdir /out && echo "built for $WHO" > /out/who\n'
        "COPY ctx.txt /out/ctx.txt\n"
    )
    (tmp_path / "ctx.txt").write_text(f"context of {runner.engine}\n")
    tags = [unique_tag(f"core-{runner.engine}"), unique_tag(f"core-{runner.engine}")]
    options = BuildOptions(
        path=tmp_path,
        tag=tags,
        version=builder,
        buildargs={"WHO": runner.engine},
        labels={"org.example.engine": runner.engine},
        network_mode=runner.network,
        nocache=True,
    )
    result = (await runner.build(options)).ok()

    assert result.image_id.startswith("sha256:")
    assert result.tags == tuple(tags)
    assert image_files(runner.raw, result.image_id) == {
        "who": f"built for {runner.engine}\n",
        "ctx.txt": f"context of {runner.engine}\n",
    }
    for tag in tags:
        image = inspect_image(runner.raw, tag)
        # Podman reports ids without the algorithm prefix.
        assert result.image_id.endswith(image["Id"].removeprefix("sha256:"))
        assert image["Config"]["Labels"]["org.example.engine"] == runner.engine


@pytest.mark.podman
async def test_core_build_on_podman(podman: Runner, tmp_path: Path) -> None:
    await _core_build(podman, tmp_path, "1")


@pytest.mark.dockerd_tls
@pytest.mark.parametrize("builder", ["1", "2"])
async def test_core_build_on_tls_dockerd(
    dockerd_tls: Runner, tmp_path: Path, builder: Builder
) -> None:
    await _core_build(dockerd_tls, tmp_path, builder)


@pytest.mark.ssh
@pytest.mark.parametrize("builder", ["1", "2"])
async def test_core_build_over_ssh(ssh: Runner, tmp_path: Path, builder: Builder) -> None:
    await _core_build(ssh, tmp_path, builder)


@pytest.mark.dockerd
async def test_ping_version_and_negotiation(dockerd: Runner) -> None:
    ping = await dockerd.ping()
    version = await dockerd.version()

    assert ping.os_type == "linux"
    assert ping.api_version == version.api_version
    assert version.min_api_version is not None
    assert ApiVersion.parse(version.min_api_version) <= ApiVersion.parse(version.api_version)
    assert version.os == "linux"
    assert version.version
    negotiated = await dockerd.api_version()
    assert negotiated == min(ApiVersion.parse(version.api_version), MAX_API_VERSION)


@pytest.mark.podman
async def test_podman_answers_ping_and_version(podman: Runner) -> None:
    ping = await podman.ping()
    version = await podman.version()
    assert ping.api_version == version.api_version
    assert any(c.get("Name") == "Podman Engine" for c in version.components), version


@pytest.mark.dockerd
async def test_explicit_pin_is_the_version_on_the_wire(
    dockerd_with: RunnerFactory, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    async with dockerd_with(api_version="1.99") as runner:
        assert await runner.api_version() == ApiVersion(1, 99)
        with pytest.raises(BadRequest) as refused:
            await runner.version()
    assert "client version 1.99 is too new" in refused.value.message
    assert refused.value.path == "/v1.99/version"

    async with dockerd_with(api_version="1.30") as runner:
        # 1.30 predates BuildKit (`version`, 1.38): refused before anything is sent.
        with pytest.raises(UnsupportedOption) as unsupported:
            await runner.build(BuildOptions(path=tmp_path, version="2"))
        assert unsupported.value.option == "version"
        # 1.30 is the oldest version whose engines report the image id (`aux.ID`).
        assert (await runner.build(BuildOptions(path=tmp_path))).ok().image_id


@pytest.mark.dockerd
async def test_docker_api_version_env_pins_the_version(
    dockerd_with: RunnerFactory, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL pinned=yes\n")
    async with dockerd_with(env={"DOCKER_API_VERSION": "v1.30"}) as runner:
        assert await runner.api_version() == ApiVersion(1, 30)
        result = (await runner.build(BuildOptions(path=tmp_path, nocache=True))).ok()
    labels = inspect_image(runner.raw, result.image_id)["Config"]["Labels"]
    assert labels == {"pinned": "yes"}

    async with dockerd_with(env={"DOCKER_API_VERSION": "1.99"}) as runner:
        with pytest.raises(BadRequest, match="too new"):
            await runner.build(BuildOptions(path=tmp_path))


@pytest.mark.dockerd
async def test_before_api_1_30_the_image_id_comes_from_the_tag(
    dockerd_with: RunnerFactory, tmp_path: Path
) -> None:
    # Engines before API 1.30 send no aux.ID: a successful build must still succeed.
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL old=api\n")
    tag = unique_tag("old-api")
    async with dockerd_with(api_version="1.29") as runner:
        tagged = (await runner.build(BuildOptions(path=tmp_path, tag=tag))).ok()
        untagged = (await runner.build(BuildOptions(path=tmp_path))).ok()
    assert tagged.image_id == inspect_image(runner.raw, tag)["Id"]
    assert untagged.image_id == ""
    assert any("API 1.29" in warning for warning in untagged.warnings), untagged.warnings
    runner.raw.delete(f"/images/{tag}", params={"force": "1"})
