"""`buildsdk build` with sessions on the real dockerd: a secret from the environment reaches a
RUN step, and a session context transfer builds the directory."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import DockerEngine, Engines, engines_on_matrix
from tests.integration.test_session_build import _make_key, _sign_check_context

pytestmark = [pytest.mark.engine, pytest.mark.dockerd]


@pytest.fixture(scope="session")
def engines(all_engines: Engines, docker_engine: DockerEngine) -> Engines:
    """Every test here runs on each Docker engine of the matrix."""
    return engines_on_matrix(all_engines, docker_engine)


def _run(
    engines: Engines, tmp_path: Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    assert engines.dockerd_host is not None
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(config),
        "DOCKER_HOST": engines.dockerd_host,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "buildsdk", "build", "--progress", "plain", *args],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_secret_from_the_environment(engines: Engines, tmp_path: Path) -> None:
    value = secrets.token_hex(10)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {engines.base_image}\nRUN --mount=type=secret,id=tok cat /run/secrets/tok\n"
    )
    done = _run(
        engines,
        tmp_path,
        "--secret",
        "id=tok,env=CLI_SECRET",
        "--no-cache",
        "--network",
        engines.dockerd_network,
        "ctx",
        env={"CLI_SECRET": value},
    )
    assert done.returncode == 0, done.stderr
    assert value in done.stdout + done.stderr


@pytest.mark.parametrize("source", ["environment", "file"])
def test_cli_secret_named_by_its_id_alone(engines: Engines, tmp_path: Path, source: str) -> None:
    # `--secret id=API_TOKEN`, as docker build 26 (buildx) reads it: the variable when it
    # is set, else the file of that name in the current directory.
    value = secrets.token_hex(10)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {engines.base_image}\n"
        "RUN --mount=type=secret,id=API_TOKEN,required=true cat /run/secrets/API_TOKEN\n"
    )
    env = {"API_TOKEN": value} if source == "environment" else {}
    if source == "file":
        (tmp_path / "API_TOKEN").write_text(value)
    done = _run(
        engines,
        tmp_path,
        "--secret",
        "id=API_TOKEN",
        "--no-cache",
        "--network",
        engines.dockerd_network,
        "ctx",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert value in done.stdout + done.stderr


def test_cli_session_context_transfer(engines: Engines, tmp_path: Path) -> None:
    marker = secrets.token_hex(8)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "data.txt").write_text(marker)
    (context / "Dockerfile").write_text(
        f"FROM {engines.base_image}\nCOPY data.txt /\nRUN cat /data.txt\n"
    )
    done = _run(
        engines,
        tmp_path,
        "--context-transfer",
        "session",
        "--no-cache",
        "--network",
        engines.dockerd_network,
        "ctx",
        env={},
    )
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout + done.stderr


def test_cli_ssh_key_file_end_to_end(engines: Engines, tmp_path: Path) -> None:
    key, fingerprint = _make_key(tmp_path / "keys", "id_ecdsa", "-t", "ecdsa", "-b", "256")
    _sign_check_context(tmp_path / "ctx", engines.base_image, key)
    done = _run(
        engines,
        tmp_path,
        "--no-cache",
        "--network",
        engines.dockerd_network,
        "--ssh",
        "default=keys/id_ecdsa",
        "ctx",
        env={},
    )
    assert done.returncode == 0, done.stderr
    # The comment is the path as given on the command line, made absolute.
    assert f"{fingerprint} {tmp_path / 'keys' / 'id_ecdsa'} (ECDSA)" in done.stderr
    assert "signature-verified" in done.stderr
