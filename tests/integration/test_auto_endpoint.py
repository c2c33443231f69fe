"""`build_endpoint="auto"` on real engines: the path it takes, and that users read the same.

A BuildKit build with the default endpoint goes through the Control API on Docker 26.1 (both
image stores), as `docker build` does there, and through `POST /build` on Docker 20.10 and
Podman. The same build pinned to `POST /build` is the reference: the stored image's config,
the kinds of events, the `ImageIdEvent`, the files of a local export and the `BuildError` of
a failing step must match (what differs inherently is documented in docs/guides/buildkit.md).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from buildsdk import AsyncClient, BuildError, BuildOptions, Client
from buildsdk.events import BuildEvent, ImageIdEvent
from buildsdk.outputs import LocalOutput
from buildsdk.results import BuildResult
from tests.integration.conftest import (
    DockerEngine,
    Engines,
    client_settings,
    engines_on_matrix,
)

pytestmark = [pytest.mark.engine, pytest.mark.dockerd]

FLAVORS = ("sync", "async")


@pytest.fixture
def engines(all_engines: Engines, docker_engine: DockerEngine) -> Engines:
    """Every test here runs on each Docker engine of the matrix."""
    return engines_on_matrix(all_engines, docker_engine)


def _run(
    flavor: str, settings: dict[str, Any], options: BuildOptions
) -> tuple[list[BuildEvent], BuildResult]:
    if flavor == "sync":
        with Client(**settings) as client:
            build = client.build(options)
            events = list(build)
            return events, build.result()

    async def main() -> tuple[list[BuildEvent], BuildResult]:
        async with AsyncClient(**settings) as client:
            build = client.build(options)
            events = [event async for event in build]
            return events, await build.result()

    return asyncio.run(main())


@pytest.fixture
def context(tmp_path: Path, engines: Engines) -> Path:
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "Dockerfile").write_text(
        f"FROM {engines.base_image} AS base\n"
        "RUN echo base > /base\n"
        "FROM base AS final\n"
        "ARG GREETING=unset\n"
        'LABEL stage="final"\n'
        "RUN --mount=type=secret,id=token cat /run/secrets/token > /token\n"
        "RUN echo $GREETING > /greeting\n"
        'CMD ["cat", "/greeting"]\n'
        "FROM base AS unused\n"
        "RUN echo unused > /unused\n"
    )
    (tmp_path / "token.txt").write_text("s3cret\n")
    return root


@pytest.fixture
def tags(dockerd_http: httpx.Client) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:10]
    names = {"auto": f"buildsdk-auto:{suffix}", "build": f"buildsdk-auto:{suffix}-build"}
    yield names
    for name in names.values():
        dockerd_http.delete(f"/images/{quote(name, safe='')}", params={"force": "1"})


def _options(engines: Engines, context: Path, endpoint: str, **extra: Any) -> BuildOptions:
    return BuildOptions(
        path=str(context),
        version="2",
        network_mode=engines.dockerd_network,
        buildargs={"GREETING": "hello"},
        labels={"built-by": "buildsdk"},
        target="final",
        secrets=[f"id=token,src={context.parent / 'token.txt'}"],
        build_endpoint=endpoint,  # type: ignore[arg-type]
        **extra,
    )


@pytest.mark.parametrize("flavor", FLAVORS)
def test_auto_takes_the_path_docker_build_takes_and_builds_the_same_image(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    dockerd_http: httpx.Client,
    context: Path,
    tags: dict[str, str],
) -> None:
    settings = client_settings(engines, "dockerd", docker_engine)
    # Without buildx's default attestation the containerd store keeps the same image on both
    # paths; with it (the default) the image is an index and its id differs, as documented.
    extra: dict[str, Any] = {"provenance": False} if docker_engine.containerd_store else {}
    runs = {
        endpoint: _run(
            flavor, settings, _options(engines, context, endpoint, tag=tags[endpoint], **extra)
        )
        for endpoint in ("auto", "build")
    }
    (auto_events, auto), (build_events, build) = runs["auto"], runs["build"]

    # The Control API (its build ref) on Docker 23+, POST /build on Docker 20.10.
    assert bool(auto.build_ref) == (not docker_engine.is_20)
    assert build.build_ref == ""
    assert {type(e) for e in auto_events} == {type(e) for e in build_events}
    for events, result in runs.values():
        assert [e.image_id for e in events if isinstance(e, ImageIdEvent)] == [result.image_id]
        assert result.tags == (tags["auto"] if result is auto else tags["build"],)
        assert "/greeting" in result.log

    inspected = {
        endpoint: dockerd_http.get(f"/images/{quote(tag, safe='')}/json").json()
        for endpoint, tag in tags.items()
    }
    assert inspected["auto"]["Id"] == inspected["build"]["Id"]
    assert inspected["auto"]["Config"] == inspected["build"]["Config"]
    assert inspected["auto"]["Config"]["Labels"] == {"stage": "final", "built-by": "buildsdk"}
    if not docker_engine.containerd_store:
        # The classic store: the image id is the config digest on both paths.
        assert auto.image_id == build.image_id == inspected["auto"]["Id"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_local_export_writes_the_same_files_through_either_path(
    flavor: str, engines: Engines, docker_engine: DockerEngine, context: Path, tmp_path: Path
) -> None:
    settings = client_settings(engines, "dockerd", docker_engine)
    written: dict[str, dict[str, str]] = {}
    for endpoint in ("auto", "build"):
        dest = tmp_path / f"out-{endpoint}"
        events, result = _run(
            flavor,
            settings,
            _options(engines, context, endpoint, outputs=[LocalOutput(dest=str(dest))]),
        )
        assert bool(result.build_ref) == (endpoint == "auto" and not docker_engine.is_20)
        assert result.image_id == ""
        assert not [e for e in events if isinstance(e, ImageIdEvent)]
        written[endpoint] = {
            name: (dest / name).read_text() for name in ("base", "token", "greeting")
        }
    assert (
        written["auto"]
        == written["build"]
        == {
            "base": "base\n",
            "token": "s3cret\n",
            "greeting": "hello\n",
        }
    )


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_failing_step_raises_the_same_build_error_through_either_path(
    flavor: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    root = tmp_path / "ctx-fail"
    root.mkdir()
    (root / "Dockerfile").write_text(f"FROM {engines.base_image}\nRUN echo one\nRUN exit 3\n")
    settings = client_settings(engines, "dockerd", docker_engine)
    errors: dict[str, BuildError] = {}
    for endpoint in ("auto", "build"):
        options = BuildOptions(
            path=str(root),
            version="2",
            network_mode=engines.dockerd_network,
            nocache=True,
            build_endpoint=endpoint,
        )
        with pytest.raises(BuildError) as info:
            _run(flavor, settings, options)
        errors[endpoint] = info.value
    auto, build = errors["auto"], errors["build"]
    assert auto.code == build.code == 3
    assert auto.message == build.message
    assert auto.message.endswith("exit code: 3")
    if not docker_engine.is_20:
        # What the Control API adds: the failing step and the Dockerfile excerpt.
        assert auto.step == "[3/3] RUN exit 3"
        assert "RUN exit 3" in auto.source


@pytest.mark.podman
def test_podman_keeps_post_build(all_engines: Engines, tmp_path: Path) -> None:
    settings = client_settings(all_engines, "podman")
    (tmp_path / "Dockerfile").write_text(f"FROM {all_engines.base_image}\nRUN echo podman\n")
    options = BuildOptions(
        path=str(tmp_path), version="2", network_mode=all_engines.podman_network, nocache=True
    )
    events, result = _run("sync", settings, options)
    assert result.build_ref == ""
    assert [e.image_id for e in events if isinstance(e, ImageIdEvent)] == [result.image_id]
