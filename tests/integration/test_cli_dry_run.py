"""`buildsdk build --dry-run` against the real engines: the request it prints is in the API
version the engine would be spoken to in, found by asking its `/_ping` and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from buildsdk.versions import MAX_API_VERSION, ApiVersion
from tests.integration.conftest import Engines

__all__: list[str] = []

pytestmark = [pytest.mark.engine]


def _engine_api_version(host: str) -> str:
    path = host.removeprefix("unix://")
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as http:
        return http.get("http://engine/_ping").headers["Api-Version"]


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param("dockerd", marks=pytest.mark.dockerd),
        pytest.param("podman", marks=pytest.mark.podman),
    ],
)
def test_dry_run_prints_the_negotiated_version(
    engines: Engines, tmp_path: Path, engine: str
) -> None:
    host = engines.dockerd_host if engine == "dockerd" else engines.podman_host
    assert host is not None
    (tmp_path / "Dockerfile").write_text(f"FROM {engines.base_image}\n")
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path / "config"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "buildsdk", "build", "-H", host, "--dry-run", str(tmp_path)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # The engines of the matrix speak older APIs than buildsdk's highest (1.41 for Docker
    # 20.10), so the request names the engine's version, not buildsdk's.
    expected = min(ApiVersion.parse(_engine_api_version(host)), MAX_API_VERSION)
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"POST /v{expected}/build?")
    assert lines[1] == f"# API {expected}: negotiated with the engine (its /_ping)"
