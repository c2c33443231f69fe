"""Every script in examples/ runs as a newcomer would run it, against the real engines.

Each example is started as a subprocess with only what its usage text asks for in the
environment (DOCKER_HOST, BUILD_NETWORK, REGISTRY_USER/REGISTRY_PASSWORD) and an empty
Docker configuration, and its exit status and output are checked; what it built is read
back from the engine.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import REPO_ROOT, Engines, engines_unavailable

__all__: list[str] = []

EXAMPLES = REPO_ROOT / "examples"
SCRIPTS = sorted(path.name for path in EXAMPLES.glob("*.py"))
_IMAGE_ID = r"sha256:[0-9a-f]{64}"


def _run(
    script: str, *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )


def _base_env(config_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DOCKER_", "BUILDSDK_", "REGISTRY_", "BUILD_"))
    }
    env["DOCKER_CONFIG"] = str(config_dir)
    return env


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """An empty Docker configuration, so the developer's own cannot change the runs."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    return directory


@pytest.fixture
def engine_env(engines: Engines, config_dir: Path, dockerd20_http: httpx.Client) -> dict[str, str]:
    """The environment the usage texts ask for, pointing at the plain dockerd."""
    assert engines.dockerd_host is not None
    env = _base_env(config_dir)
    env["DOCKER_HOST"] = engines.dockerd_host
    env["BUILD_NETWORK"] = engines.dockerd_network
    return env


def _image(dockerd20_http: httpx.Client, name: str) -> dict[str, object]:
    response = dockerd20_http.get(f"/images/{name}/json")
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def test_every_example_is_covered() -> None:
    assert SCRIPTS == [
        "async_parallel.py",
        "buildkit_build.py",
        "minimal_build.py",
        "private_base_image.py",
        "prune_cache.py",
        "stream_progress.py",
    ]


@pytest.mark.parametrize("script", SCRIPTS)
def test_usage_text_on_bad_arguments(script: str, config_dir: Path) -> None:
    # Wrong arguments print the usage and exit 2 without touching an engine.
    env = _base_env(config_dir)
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    result = _run(script, "--bogus", "extra", "arguments", env=env, timeout=60)
    assert result.returncode == 2
    assert "Usage" in result.stdout + result.stderr or "usage" in result.stdout + result.stderr
    assert "DOCKER_HOST" in result.stdout + result.stderr


@pytest.mark.engine
@pytest.mark.dockerd
def test_minimal_build(engine_env: dict[str, str], dockerd20_http: httpx.Client) -> None:
    result = _run("minimal_build.py", env=engine_env)
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(
        rf"built ({_IMAGE_ID}) as buildsdk-example:minimal in [0-9.]+s\n", result.stdout
    )
    assert match, result.stdout
    image = _image(dockerd20_http, "buildsdk-example:minimal")
    assert image["Id"] == match.group(1)


@pytest.mark.engine
@pytest.mark.dockerd
def test_minimal_build_reports_a_failed_build(engine_env: dict[str, str], tmp_path: Path) -> None:
    context = tmp_path / "broken"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo about to fail && exit 3\n")
    result = _run("minimal_build.py", str(context), "buildsdk-example:broken", env=engine_env)
    assert result.returncode == 1
    command = "/bin/sh -c echo about to fail && exit 3"
    assert f"build failed: The command '{command}' returned a non-zero code: 3" in result.stderr
    assert "about to fail" in result.stderr  # the log is printed too


@pytest.mark.engine
@pytest.mark.dockerd
@pytest.mark.parametrize("builder", ["classic", "buildkit"])
def test_stream_progress(engine_env: dict[str, str], builder: str) -> None:
    args = ["--no-cache", "--buildkit"] if builder == "buildkit" else ["--no-cache"]
    result = _run("stream_progress.py", *args, env=engine_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "This image was built through the Docker Engine API by buildsdk." in " ".join(lines)
    assert re.fullmatch(rf"built {_IMAGE_ID} in [0-9.]+s", lines[-1])
    if builder == "buildkit":
        assert any(re.match(r"#\d+ \[\d/\d\] COPY greeting.txt", line) for line in lines)
    else:
        assert "Step 1/6 : FROM busybox" in lines


@pytest.mark.engine
@pytest.mark.dockerd
def test_buildkit_build_with_a_secret(
    engine_env: dict[str, str], dockerd20_http: httpx.Client
) -> None:
    env = {**engine_env, "API_TOKEN": "s3cr3t-value"}
    result = _run("buildkit_build.py", env=env)
    assert result.returncode == 0, result.stderr
    assert "the token has 12 bytes" in result.stdout
    assert "s3cr3t-value" not in result.stdout + result.stderr
    image = _image(dockerd20_http, "buildsdk-example:buildkit")
    config = image["Config"]
    assert isinstance(config, dict)
    assert config["Labels"] == {"org.example.built-with": "buildkit"}


@pytest.mark.engine
@pytest.mark.dockerd
def test_async_parallel(engine_env: dict[str, str], dockerd20_http: httpx.Client) -> None:
    result = _run("async_parallel.py", "3", env=engine_env)
    assert result.returncode == 0, result.stderr
    ids = dict(re.findall(rf"^build (\d): ({_IMAGE_ID}) ", result.stdout, re.MULTILINE))
    assert sorted(ids) == ["1", "2", "3"]
    assert len(set(ids.values())) == 3  # three different GREETING build args
    for number, image_id in ids.items():
        assert _image(dockerd20_http, f"buildsdk-example:parallel-{number}")["Id"] == image_id
    assert result.stdout.splitlines()[-1].startswith("3 of 3 built in ")


@pytest.mark.engine
@pytest.mark.dockerd
@pytest.mark.registry
def test_private_base_image(
    engines: Engines, engine_env: dict[str, str], config_dir: Path, dockerd20_http: httpx.Client
) -> None:
    if not (engines.registry_image and engines.registry_user and engines.registry_password):
        engines_unavailable("the registry was not started (no BUILDSDK_REGISTRY_*)")
    image = engines.registry_image
    # Without credentials the registry refuses the pull.
    refused = _run("private_base_image.py", image, env=engine_env)
    assert refused.returncode == 1
    assert "no basic auth credentials" in refused.stderr
    # Credentials given in code (RegistryAuth).
    env = {
        **engine_env,
        "REGISTRY_USER": engines.registry_user,
        "REGISTRY_PASSWORD": engines.registry_password,
    }
    result = _run("private_base_image.py", image, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f" from {image}\n")
    assert engines.registry_password not in result.stdout + result.stderr
    # Credentials from config.json, as `docker login` writes them.
    token = base64.b64encode(
        f"{engines.registry_user}:{engines.registry_password}".encode()
    ).decode()
    registry = image.split("/", 1)[0]
    (config_dir / "config.json").write_text(json.dumps({"auths": {registry: {"auth": token}}}))
    result = _run("private_base_image.py", image, env=engine_env)
    assert result.returncode == 0, result.stderr
    labels = _image(dockerd20_http, "buildsdk-example:private-base")["Config"]
    assert isinstance(labels, dict)
    assert labels["Labels"] == {"org.example.base-was-private": "yes"}


@pytest.mark.engine
@pytest.mark.dockerd
def test_prune_cache(engine_env: dict[str, str]) -> None:
    # A long --until keeps the cache other tests are using.
    result = _run("prune_cache.py", "--until", "87600h", env=engine_env)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"removed \d+ cache records, \d+ bytes\n", result.stdout)
    refused = _run("prune_cache.py", "--until", "soon", env=engine_env)
    assert refused.returncode == 2
    assert "until must be a Go duration" in refused.stderr
