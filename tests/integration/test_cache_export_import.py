"""Cache export and import through the Control API on Docker 26.1 with the containerd store.

What a user sees is asserted: a build exports its cache (to a local directory, through the
session's content store; to the authenticated test registry; inline in a pushed image), the
engine's build cache is then pruned (`Client.prune_cache(all)`), and a second build that
imports the cache shows every step of the Dockerfile as CACHED in its vertex events. Each
Dockerfile writes a fresh id, so no earlier run's cache can answer for it. Sync and async.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from buildsdk import AsyncClient, BuildOptions, CachePruneOptions, Client, RegistryAuth
from buildsdk.cache_backends import LocalCache, RegistryCache
from buildsdk.events import BuildEvent, VertexEvent
from buildsdk.outputs import ImageOutput
from buildsdk.results import BuildResult
from tests.integration.conftest import (
    DockerEngine,
    Engines,
    client_settings,
    docker_engine_of,
    engines_on_matrix,
    engines_unavailable,
)

pytestmark = [pytest.mark.engine, pytest.mark.dockerd, pytest.mark.docker26_containerd]

FLAVORS = ("sync", "async")
_STEP = re.compile(r"^\[\d+/\d+\] (COPY|RUN) ")


@pytest.fixture
def engine(all_engines: Engines) -> DockerEngine:
    return docker_engine_of(all_engines, "dockerd26-containerd")


@pytest.fixture
def engines(all_engines: Engines, engine: DockerEngine) -> Engines:
    return engines_on_matrix(all_engines, engine)


@pytest.fixture
def context(tmp_path: Path, engines: Engines) -> Path:
    root = tmp_path / "context"
    root.mkdir()
    (root / "Dockerfile").write_text(
        f"FROM {engines.base_image}\n"
        "COPY greeting.txt /greeting.txt\n"
        f"RUN echo {uuid.uuid4().hex} > /built\n"
        "RUN cat /built /greeting.txt > /both\n"
    )
    (root / "greeting.txt").write_text(f"hello {uuid.uuid4().hex}\n")
    return root


@pytest.fixture
def http(engine: DockerEngine) -> Iterator[httpx.Client]:
    path = engine.host.removeprefix("unix://")
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://docker") as client:
        yield client


def _options(engines: Engines, context: Path, **extra: Any) -> BuildOptions:
    return BuildOptions(
        path=str(context),
        version="2",
        network_mode=engines.dockerd_network,
        build_endpoint="grpc",
        **extra,
    )


Built = tuple[BuildResult, list[BuildEvent]]


def _build_then_prune_then_build(
    flavor: str, settings: dict[str, Any], first: BuildOptions, second: BuildOptions
) -> tuple[Built, Built, int]:
    """Build `first`, remove all build cache, build `second`; return each build's result and
    the events it streamed, and the count of records the prune removed."""
    everything = CachePruneOptions(all=True)
    if flavor == "sync":
        with Client(**settings) as client:
            build = client.build(first)
            one = ([*build], build)
            pruned = client.prune_cache(everything)
            build = client.build(second)
            two = ([*build], build)
            return (one[1].result(), one[0]), (two[1].result(), two[0]), len(pruned.records)

    async def main() -> tuple[Built, Built, int]:
        async with AsyncClient(**settings) as client:
            results: list[Built] = []
            pruned = None
            for options in (first, second):
                build = client.build(options)
                events = [event async for event in build]
                results.append((await build.result(), events))
                if pruned is None:
                    pruned = await client.prune_cache(everything)
        assert pruned is not None
        return results[0], results[1], len(pruned.records)

    return asyncio.run(main())


def _steps(built: Built) -> dict[str, bool]:
    """Each Dockerfile step (COPY, RUN) by name: whether its last report was CACHED."""
    steps: dict[str, bool] = {}
    for event in built[1]:
        if isinstance(event, VertexEvent) and _STEP.match(event.name):
            steps[event.name] = event.cached
    return steps


def _assert_ran_then_cached(one: Built, two: Built, pruned: int) -> None:
    assert pruned > 0
    first, second = _steps(one), _steps(two)
    assert len(first) == 3, first
    assert not any(first.values()), first
    assert second == dict.fromkeys(first, True)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_local_cache_makes_every_step_cached_after_a_prune(
    flavor: str, engines: Engines, engine: DockerEngine, context: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    settings = client_settings(engines, "dockerd", engine)
    first = _options(engines, context, cache_to=[LocalCache(dest=str(cache), mode="max")])
    second = _options(engines, context, cache_from=[f"type=local,src={cache}"])
    one, two, pruned = _build_then_prune_then_build(flavor, settings, first, second)
    _assert_ran_then_cached(one, two, pruned)
    result = one[0]
    index = json.loads((cache / "index.json").read_text())
    (manifest,) = index["manifests"]
    assert manifest["annotations"] == {"org.opencontainers.image.ref.name": "latest"}
    assert json.loads(result.metadata()["cache.manifest"])["digest"] == manifest["digest"]
    blob = cache / "blobs" / "sha256" / manifest["digest"].removeprefix("sha256:")
    assert blob.stat().st_size == manifest["size"]
    assert not [p for p in (cache / "blobs" / "sha256").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_registry_cache_with_a_login_makes_every_step_cached_after_a_prune(
    flavor: str, engines: Engines, engine: DockerEngine, context: Path
) -> None:
    if not (engines.registry and engines.registry_user and engines.registry_password):
        engines_unavailable("the registry was not started (no BUILDSDK_REGISTRY)")
    registry, user, password = engines.registry, engines.registry_user, engines.registry_password
    ref = f"{registry}/private/cache-{uuid.uuid4().hex[:8]}:buildcache"
    settings = client_settings(engines, "dockerd", engine)
    settings["credentials"] = {registry: RegistryAuth(username=user, password=SecretStr(password))}
    first = _options(engines, context, cache_to=[RegistryCache(ref=ref, mode="max")])
    second = _options(engines, context, cache_from=[f"type=registry,ref={ref}"])
    one, two, pruned = _build_then_prune_then_build(flavor, settings, first, second)
    _assert_ran_then_cached(one, two, pruned)
    repository, _, tag = ref.removeprefix(f"{registry}/").partition(":")
    response = httpx.head(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        auth=(user, password),
    )
    assert response.status_code == 200
    assert (
        response.headers["Docker-Content-Digest"]
        == json.loads(one[0].metadata()["cache.manifest"])["digest"]
    )
    assert password not in one[0].log + two[0].log


@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_inline_cache_in_a_pushed_image_makes_every_step_cached_after_a_prune(
    flavor: str, engines: Engines, engine: DockerEngine, context: Path, http: httpx.Client
) -> None:
    if not (engines.registry and engines.registry_user and engines.registry_password):
        engines_unavailable("the registry was not started (no BUILDSDK_REGISTRY)")
    registry, user, password = engines.registry, engines.registry_user, engines.registry_password
    name = f"{registry}/private/inline-{uuid.uuid4().hex[:8]}:1"
    settings = client_settings(engines, "dockerd", engine)
    settings["credentials"] = {registry: RegistryAuth(username=user, password=SecretStr(password))}
    pushed = ImageOutput(name=(name,), push=True)
    first = _options(engines, context, cache_to=["type=inline"], outputs=[pushed])
    # A plain reference in cache_from: a registry import, as buildx reads `--cache-from ref`.
    second = _options(engines, context, cache_from=[name])
    try:
        one, two, pruned = _build_then_prune_then_build(flavor, settings, first, second)
    finally:
        http.delete(f"/images/{quote(name, safe='')}", params={"force": "1"})
    _assert_ran_then_cached(one, two, pruned)
