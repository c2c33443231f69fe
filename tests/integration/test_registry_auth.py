"""Classic builds `FROM` a private image on the authenticated registry from scripts/engines.

Credentials reach the engine in `X-Registry-Config` from each source the Docker CLI reads
(config.json `auths`, a credential helper on PATH) and from code; without them the engine's
refusal reaches the user as a `BuildError` that says so.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from buildsdk import AsyncClient, BuildError, BuildOptions, Client, RegistryAuth
from tests.integration.conftest import (
    REPO_ROOT,
    DockerEngine,
    Engines,
    engines_on_matrix,
    engines_unavailable,
)

pytestmark = [pytest.mark.engine, pytest.mark.dockerd, pytest.mark.registry]

HELPERS = REPO_ROOT / "tests" / "fixtures" / "credhelpers"


@pytest.fixture(scope="session")
def engines(all_engines: Engines, docker_engine: DockerEngine) -> Engines:
    """Every test here runs on each Docker engine of the matrix."""
    return engines_on_matrix(all_engines, docker_engine)


@pytest.fixture
def private(engines: Engines, dockerd_http: httpx.Client) -> Iterator[tuple[str, str, str]]:
    """(registry, user, password), with no local copy of the private image to fall back on."""
    if not (engines.registry and engines.registry_user and engines.registry_password):
        engines_unavailable("the registry was not started (no BUILDSDK_REGISTRY)")
    assert engines.registry_image is not None
    image = engines.registry_image

    def forget() -> None:
        response = dockerd_http.delete(f"/images/{quote(image, safe='')}", params={"force": "1"})
        assert response.status_code in (200, 404), response.text

    forget()
    yield engines.registry, engines.registry_user, engines.registry_password
    forget()


def _context(tmp_path: Path, registry: str) -> Path:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {registry}/private/busybox:latest\nLABEL pulled=with-credentials\n"
    )
    return context


def _env(tmp_path: Path, config: dict[str, object], **extra: str) -> dict[str, str]:
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps(config))
    return {
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(config_dir),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **extra,
    }


def _build(
    engines: Engines,
    tmp_path: Path,
    registry: str,
    *,
    env: dict[str, str],
    credentials: dict[str, RegistryAuth] | None = None,
) -> str:
    assert engines.dockerd_host is not None
    options = BuildOptions(path=_context(tmp_path, registry), pull=True, nocache=True)
    with Client(engines.dockerd_host, env=env, credentials=credentials) as client:
        return client.build(options).result().image_id


def test_credentials_from_config_json_auths(
    engines: Engines, private: tuple[str, str, str], tmp_path: Path
) -> None:
    registry, user, password = private
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    env = _env(tmp_path, {"auths": {registry: {"auth": auth}}})
    assert _build(engines, tmp_path, registry, env=env).startswith("sha256:")


def test_credentials_from_a_helper_on_path(
    engines: Engines, private: tuple[str, str, str], tmp_path: Path
) -> None:
    registry, user, password = private
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(HELPERS / "docker-credential-fake", bin_dir / "docker-credential-fake")
    store = tmp_path / "store.json"
    store.write_text(json.dumps({registry: {"Username": user, "Secret": password}}))
    calls = tmp_path / "calls.log"
    env = _env(
        tmp_path,
        {"credHelpers": {registry: "fake"}},
        FAKE_CREDHELPER_STORE=str(store),
        FAKE_CREDHELPER_LOG=str(calls),
    )
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    assert _build(engines, tmp_path, registry, env=env).startswith("sha256:")
    asked = [json.loads(line) for line in calls.read_text().splitlines()]
    assert {"action": "get", "stdin": registry} in asked


def test_credentials_given_in_code(
    engines: Engines, private: tuple[str, str, str], tmp_path: Path
) -> None:
    registry, user, password = private
    env = _env(tmp_path, {})
    given = {registry: RegistryAuth(username=user, password=SecretStr(password))}
    assert _build(engines, tmp_path, registry, env=env, credentials=given).startswith("sha256:")


def test_credentials_given_in_code_async(
    engines: Engines, private: tuple[str, str, str], tmp_path: Path
) -> None:
    registry, user, password = private
    host = engines.dockerd_host
    assert host is not None
    given = {registry: RegistryAuth(username=user, password=SecretStr(password))}
    options = BuildOptions(path=_context(tmp_path, registry), pull=True)

    async def main() -> str:
        async with AsyncClient(host, env=_env(tmp_path, {}), credentials=given) as client:
            result = await client.build(options).result()
        return result.image_id

    assert asyncio.run(main()).startswith("sha256:")


def test_without_credentials_the_engine_refuses(
    engines: Engines, private: tuple[str, str, str], tmp_path: Path
) -> None:
    registry, _user, password = private
    env = _env(tmp_path, {})
    with pytest.raises(BuildError) as info:
        _build(engines, tmp_path, registry, env=env)
    message = info.value.message.lower()
    assert "no basic auth credentials" in message or "unauthorized" in message, message
    assert password not in str(info.value) + info.value.log


def test_wrong_password_is_refused_and_not_repeated(
    engines: Engines, private: tuple[str, str, str], tmp_path: Path
) -> None:
    registry, user, _password = private
    wrong = "not-the-password-" + "x" * 8
    given = {registry: RegistryAuth(username=user, password=SecretStr(wrong))}
    with pytest.raises(BuildError) as info:
        _build(engines, tmp_path, registry, env=_env(tmp_path, {}), credentials=given)
    assert "unauthorized" in info.value.message.lower()
    assert wrong not in str(info.value) + info.value.log + repr(info.value.events)


def test_custom_context_tar_pulls_with_credentials(
    engines: Engines, private: tuple[str, str, str], tmp_path: Path
) -> None:
    registry, user, password = private
    dockerfile = f"FROM {registry}/private/busybox:latest\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buffer.seek(0)
    assert engines.dockerd_host is not None
    given = {registry: RegistryAuth(username=user, password=SecretStr(password))}
    options = BuildOptions(fileobj=buffer, custom_context=True, pull=True)
    with Client(engines.dockerd_host, env=_env(tmp_path, {}), credentials=given) as client:
        assert client.build(options).result().image_id.startswith("sha256:")
