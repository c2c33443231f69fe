"""The README's promises, run as written: its Python example and `scripts/demo`."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import pytest

from tests.integration.conftest import REPO_ROOT, Engines

pytestmark = [pytest.mark.engine, pytest.mark.dockerd]


def _readme_python_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def _env_for(engines: Engines) -> dict[str, str]:
    assert engines.dockerd_host is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = engines.dockerd_host
    return env


def test_readme_has_one_python_example() -> None:
    assert len(_readme_python_blocks()) == 1


def test_readme_python_example_builds_the_image(
    engines: Engines, dockerd20_http: httpx.Client
) -> None:
    (code,) = _readme_python_blocks()
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=_env_for(engines),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    image_id = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id), done.stdout
    inspect = dockerd20_http.get(f"/images/{image_id}/json").json()
    assert set(inspect["RepoTags"]) >= {"hello:1.0", "hello:latest"}
    assert inspect["Config"]["Labels"]["org.example.built-by"] == "buildsdk"


def test_demo_command_builds_the_example(engines: Engines, dockerd20_http: httpx.Client) -> None:
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / "demo")],
        cwd=REPO_ROOT,
        env=_env_for(engines),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    inspect = dockerd20_http.get("/images/buildsdk-hello:latest/json")
    assert inspect.status_code == 200
    assert inspect.json()["Config"]["Cmd"] == ["cat", "/etc/motd"]
