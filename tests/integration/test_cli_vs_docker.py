"""`buildsdk build` sends the request `docker build` sends, flag for flag.

Both commands run against the same recording endpoint (`tests.recording_engine`): a small
threaded HTTP server on a unix socket that answers `/_ping` like an API 1.41 engine, records
every `POST /build` (path, query pairs in order, headers, body) and answers with a short
successful stream.
The Docker CLI (28.2.2 from /usr/local/bin, and 26.1.5 from `scripts/engines up
docker26-cli`; classic builder via `DOCKER_BUILDKIT=0`) and `buildsdk` get the same flags,
the same context directory, the same isolated `DOCKER_CONFIG` (one registry login, a second
one, proxies and an extra HTTP header), and the recorded requests must agree: the query
pairs exactly (CLI 26.1 also sends every parameter the user left alone at its zero value,
which the engine reads as absent; those pairs are set aside first), the headers apart from
the transport's own, the `X-Registry-Config` credentials after decoding, and the context's
tar entries.

The flag combinations here are the ones the recorded vectors in
`tests/fixtures/vectors/cli_build_requests.json` do not cover.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import VECTORS_DIR
from tests.integration.conftest import REPO_ROOT, Engines, engines_unavailable
from tests.recording_engine import IMAGE_ID, RecordedRequest, recording_engine

__all__ = ["run_buildsdk"]

DOCKER = Path("/usr/local/bin/docker")
VECTORS = VECTORS_DIR / "cli_build_requests.json"


# -- running both commands ----------------------------------------------------------------

_AUTH = base64.b64encode(b"user:p+a/ss?").decode()
_AUTH2 = base64.b64encode(b"bob:s3cr&t").decode()
_CONFIG = {
    "auths": {
        "registry.example.com:5000": {"auth": _AUTH},
        "https://index.docker.io/v1/": {"auth": _AUTH2},
    },
    "proxies": {"default": {"httpProxy": "http://proxy:3128", "noProxy": "localhost"}},
    "HttpHeaders": {"X-Meta-Team": "builders"},
}


@dataclass
class Workspace:
    """An isolated Docker config, a context directory and the environment both runs share."""

    root: Path
    config_dir: Path
    context: Path
    env: dict[str, str]
    docker: Path
    """The Docker CLI binary the requests are compared with."""


@pytest.fixture(scope="module", params=["28.2", "26.1"], ids=["cli28.2", "cli26.1"])
def docker_cli(request: pytest.FixtureRequest) -> Path:
    """The Docker CLI of one version: 28.2.2 of this machine, 26.1.5 of scripts/engines."""
    if request.param == "28.2":
        # The comparison is the point of this file: a missing CLI is a failure, not a skip.
        assert DOCKER.is_file(), f"the Docker CLI is expected at {DOCKER}"
        return DOCKER
    engines: Engines = request.getfixturevalue("all_engines")
    if engines.docker26_cli is None or not engines.docker26_cli.is_file():
        engines_unavailable(
            "the Docker CLI 26.1 was not unpacked (scripts/engines up docker26-cli)"
        )
    return engines.docker26_cli


@pytest.fixture
def workspace(tmp_path: Path, docker_cli: Path) -> Workspace:
    """A context with a Dockerfile, a sub-directory Dockerfile, ignored files and a config."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps(_CONFIG))
    context = tmp_path / "ctx"
    (context / "sub").mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (context / "sub" / "Dockerfile.dev").write_text("FROM scratch\n")
    (context / "app.txt").write_text("hello\n")
    (context / "notes.log").write_text("ignored\n")
    (context / ".dockerignore").write_text("*.log\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\nLABEL from=outside\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(config_dir),
        "DOCKER_BUILDKIT": "0",
        "FROM_ENV": "value from env",
        "LANG": "C.UTF-8",
    }
    return Workspace(tmp_path, config_dir, context, env, docker_cli)


def run_buildsdk(
    args: Sequence[str],
    env: dict[str, str],
    *,
    cwd: Path,
    stdin: bytes | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m buildsdk ARGS` from the repository's sources."""
    full_env = {**env, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "buildsdk", *args],
        env=full_env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def _run_docker(
    ws: Workspace,
    args: Sequence[str],
    env: dict[str, str],
    *,
    cwd: Path,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(ws.docker), *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


_TRANSPORT_HEADERS = frozenset(
    {
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "connection",
        "content-length",
        "transfer-encoding",
    }
)


def _headers(request: RecordedRequest) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    for name, value in request.headers.items():
        key = name.lower()
        if key in _TRANSPORT_HEADERS:
            continue
        if key == "x-registry-config":
            headers[key] = json.loads(base64.urlsafe_b64decode(value))
        else:
            headers[key] = value
    return headers


def _tar_entries(body: bytes) -> list[tuple[str, str, bytes]]:
    """The entries of a tar stream, read leniently: the Docker CLI sends a context whose
    Dockerfile lives outside it without the final padding and end-of-archive blocks."""
    if body.startswith(b"\x1f\x8b"):
        body = gzip.decompress(body)
    entries = []
    offset = 0
    while offset + 512 <= len(body):
        header = body[offset : offset + 512]
        if header == b"\0" * 512:
            break
        name = header[:100].rstrip(b"\0").decode()
        prefix = header[345:500].rstrip(b"\0").decode()
        if prefix:
            name = f"{prefix}/{name}"
        size = int(header[124:136].rstrip(b"\0 ").decode() or "0", 8)
        kind = {b"0": "file", b"\0": "file", b"5": "dir"}.get(header[156:157], "other")
        data = body[offset + 512 : offset + 512 + size]
        assert len(data) == size, f"{name}: {len(data)} of {size} bytes"
        entries.append((name, kind, data))
        offset += 512 + (size + 511) // 512 * 512
    return sorted(entries)


def _both(
    ws: Workspace, flags: Sequence[str], *, stdin: bytes | None = None, path: str | None = None
) -> tuple[RecordedRequest, RecordedRequest]:
    context = path if path is not None else str(ws.context)
    with recording_engine() as engine:
        env = {**ws.env, "DOCKER_HOST": engine.host}
        docker = _run_docker(ws, ["build", *flags, context], env, cwd=ws.root, stdin=stdin)
        assert docker.returncode == 0, docker.stderr.decode()
        ours = run_buildsdk(
            ["build", "--progress", "plain", *flags, context], env, cwd=ws.root, stdin=stdin
        )
        assert ours.returncode == 0, ours.stderr.decode()
        builds = engine.builds()
    assert len(builds) == 2, [r.path for r in engine.requests]
    return builds[0], builds[1]


def _random_dockerfile_name(value: str) -> str:
    # Both clients give a Dockerfile from outside the context (or stdin) a random name.
    return ".dockerfile.<random>" if value.startswith(".dockerfile.") else value


# What CLI 26.1 sends for every flag left alone; the moby client of CLI 28 sends only what
# was set, and buildsdk follows it. The engine reads each of these as the parameter's default.
_CLI26_UNSET = frozenset(
    {
        ("buildargs", "{}"),
        ("cachefrom", "[]"),
        ("cgroupparent", ""),
        ("cpuperiod", "0"),
        ("cpuquota", "0"),
        ("cpusetcpus", ""),
        ("cpusetmems", ""),
        ("cpushares", "0"),
        ("dockerfile", ""),
        ("labels", "{}"),
        ("memory", "0"),
        ("memswap", "0"),
        ("networkmode", "default"),
        ("rm", "1"),
        ("shmsize", "0"),
        ("target", ""),
        ("ulimits", "[]"),
    }
)


def _assert_same(ws: Workspace, docker: RecordedRequest, ours: RecordedRequest) -> None:
    assert ours.path == docker.path
    sent = docker.query
    if ws.docker != DOCKER:
        sent = [pair for pair in sent if pair not in _CLI26_UNSET]
    docker_query = [(k, _random_dockerfile_name(v) if k == "dockerfile" else v) for k, v in sent]
    our_query = [(k, _random_dockerfile_name(v) if k == "dockerfile" else v) for k, v in ours.query]
    assert our_query == docker_query
    assert _headers(ours) == _headers(docker)
    assert docker.body.startswith(b"\x1f\x8b") == ours.body.startswith(b"\x1f\x8b")
    assert _normalized_entries(ours) == _normalized_entries(docker)


def _normalized_entries(request: RecordedRequest) -> list[tuple[str, str, bytes]]:
    # The random name of a Dockerfile from outside the context (or stdin) appears as an
    # entry name and inside the generated .dockerignore; both are replaced by a marker.
    name = dict(request.query).get("dockerfile", "")
    if not name.startswith(".dockerfile."):
        return _tar_entries(request.body)
    marker = ".dockerfile.<random>"
    return sorted(
        (n.replace(name, marker), kind, data.replace(name.encode(), marker.encode()))
        for n, kind, data in _tar_entries(request.body)
    )


def test_vectors_are_present() -> None:
    """The flag combinations below are chosen to complement the recorded vectors."""
    data = json.loads(VECTORS.read_text())
    recorded = {tuple(case["flags"]) for case in data["requests"]}
    for flags in _CASES:
        assert tuple(flags) not in recorded


_CASES: list[list[str]] = [
    ["-f", "ctx/sub/Dockerfile.dev"],
    ["--file=ctx/Dockerfile", "-t", "dev:1"],
    ["-f", "outside/Dockerfile"],
    ["--build-arg", "FROM_ENV", "--build-arg", "NOT_IN_ENV", "--build-arg", "X=1"],
    ["--build-arg", "HTTP_PROXY=http://mine:1", "--build-arg", 'Q=a"b\\c<&>'],
    ["--label", "onlykey", "--label", "note=naïve <&> ✓", "--label", "a=1", "--label", "a=2"],
    ["--add-host", "db=10.0.0.2", "--add-host", "gw:host-gateway", "--add-host=b:[::1]"],
    [
        "--ulimit",
        "nproc=512",
        "--ulimit",
        "core=0",
        "--ulimit",
        "nofile=1:2",
        "--ulimit",
        "nofile=3:4",
    ],
    ["--memory", "1g", "--memory-swap", "2g", "-c", "0", "--cpuset-cpus", "0,2"],
    ["-m", "1.5g", "--cpu-period=50000", "--cpu-quota=25000", "--cpuset-mems", "0-1"],
    ["--shm-size", "1g", "--network", "host", "--target", "final"],
    ["--shm-size=67108864", "--network=default", "--platform", "LINUX/AMD64"],
    ["--network", "container:abc", "--isolation", "hyperv"],
    ["--security-opt", "credentialspec=file://x.json", "--security-opt", "seccomp=unconfined"],
    ["--squash", "-t", "sq:1", "-t", "sq:2", "--cache-from", "a:1"],
    ["--compress", "--no-cache=true", "--pull=false"],
    ["--rm=false", "--force-rm=true", "-q=false"],
    ["--rm=true", "--force-rm=false", "--quiet=true"],
    ["--cgroup-parent", "/parent", "--cpu-shares", "1024", "--platform=linux/arm/v7"],
    ["--iidfile", "iid.txt", "--label", "org.example=1", "-t", "iid:latest"],
    ["--no-cache", "--pull", "--force-rm", "--compress", "--squash", "-q"],
    ["--isolation", "DEFAULT", "--network", "bridge", "--label", "empty="],
    ["--cache-from", "registry.example.com:5000/team/app@sha256:" + "e" * 64],
    ["--ulimit", "nofile=-1", "--ulimit", "stack=8192:16384", "--target", "t1"],
    ["--build-arg", "FROM_ENV=explicit", "--build-arg", "no_proxy=override", "--pull=1"],
    ["--memory=64m", "--memory-swap=-1", "--cpuset-cpus=1", "--cpu-quota=2000"],
]


@pytest.mark.parametrize("flags", _CASES, ids=[" ".join(c) for c in _CASES])
def test_same_request_as_docker(workspace: Workspace, flags: list[str]) -> None:
    docker, ours = _both(workspace, flags)
    _assert_same(workspace, docker, ours)


def test_relative_context_and_dockerfile(workspace: Workspace) -> None:
    docker, ours = _both(workspace, ["-f", "ctx/sub/Dockerfile.dev", "-t", "rel:1"], path="ctx")
    _assert_same(workspace, docker, ours)


def test_context_from_stdin_tar(workspace: Workspace) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"FROM scratch\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    archive = buffer.getvalue()
    docker, ours = _both(workspace, ["-t", "stdin:1"], stdin=archive, path="-")
    _assert_same(workspace, docker, ours)
    assert ours.body == archive


def test_dockerfile_from_stdin(workspace: Workspace) -> None:
    dockerfile = b"FROM scratch\nLABEL from=stdin\n"
    docker, ours = _both(workspace, ["-f", "-"], stdin=dockerfile)
    _assert_same(workspace, docker, ours)


def test_iidfile_written_like_docker(workspace: Workspace) -> None:
    with recording_engine() as engine:
        env = {**workspace.env, "DOCKER_HOST": engine.host}
        ours = run_buildsdk(
            ["build", "--iidfile", "ours.txt", str(workspace.context)], env, cwd=workspace.root
        )
        docker = _run_docker(
            workspace,
            ["build", "--iidfile", "docker.txt", str(workspace.context)],
            env,
            cwd=workspace.root,
        )
    assert ours.returncode == 0
    assert docker.returncode == 0
    assert (workspace.root / "ours.txt").read_text() == IMAGE_ID
    assert (workspace.root / "docker.txt").read_text() == IMAGE_ID


def test_same_request_as_docker_on_an_older_engine(workspace: Workspace) -> None:
    context = str(workspace.context)
    with recording_engine(api_version="1.37") as engine:
        env = {**workspace.env, "DOCKER_HOST": engine.host}
        docker = _run_docker(workspace, ["build", "-t", "old:1", context], env, cwd=workspace.root)
        ours = run_buildsdk(
            ["build", "--progress", "plain", "-t", "old:1", context], env, cwd=workspace.root
        )
        assert docker.returncode == 0, docker.stderr.decode()
        assert ours.returncode == 0, ours.stderr.decode()
        docker_build, our_build = engine.builds()
    assert docker_build.path == our_build.path == "/v1.37/build"
    _assert_same(workspace, docker_build, our_build)


def test_same_request_as_docker_on_a_docker_26_engine(workspace: Workspace) -> None:
    # API 1.42 to 1.45 (Docker 23 to 26) added no build parameter the classic path sends:
    # against an engine speaking 1.45 both send the same request as against 1.41.
    context = str(workspace.context)
    flags = ["-t", "new:1", "--ulimit", "nofile=1:2", "--shm-size", "1g", "--network", "host"]
    with recording_engine(api_version="1.45") as engine:
        env = {**workspace.env, "DOCKER_HOST": engine.host}
        docker = _run_docker(workspace, ["build", *flags, context], env, cwd=workspace.root)
        ours = run_buildsdk(
            ["build", "--progress", "plain", *flags, context], env, cwd=workspace.root
        )
        assert docker.returncode == 0, docker.stderr.decode()
        assert ours.returncode == 0, ours.stderr.decode()
        docker_build, our_build = engine.builds()
    assert docker_build.path == our_build.path == "/v1.45/build"
    _assert_same(workspace, docker_build, our_build)
