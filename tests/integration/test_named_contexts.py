"""Named build contexts (`build_contexts`, `--build-context`) built on real engines.

Each test runs on the Docker matrix (20.10, 26.1 classic store, 26.1 containerd store) with
`Client` and `AsyncClient`. What is checked is the image the engine stored: its files are
read from `GET /images/{name}/get`. The engine has no internet, so the `docker-image://`
context is an image built in the engine first, and the git context is a repository
served over git's dumb HTTP protocol by a server on 127.0.0.1 started here (the engine's
BuildKit runs `git` on the host, so it reaches it). Docker 20.10's BuildKit (0.8) predates
named contexts: its Dockerfile frontend refuses them, and the user gets that error.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from buildsdk import BuildError, BuildOptions, ContextError
from tests.integration.conftest import (
    DockerEngine,
    Engines,
    build_result,
    client_settings,
    engines_on_matrix,
)

pytestmark = [pytest.mark.engine, pytest.mark.dockerd]

FLAVORS = ("sync", "async")
UNSUPPORTED_ON_20 = "unsupported frontend capability moby.buildkit.frontend.contexts"


@pytest.fixture
def engines(all_engines: Engines, docker_engine: DockerEngine) -> Engines:
    """Every test here runs on each Docker engine of the matrix."""
    return engines_on_matrix(all_engines, docker_engine)


@pytest.fixture
def tag(dockerd_http: httpx.Client) -> Iterator[str]:
    """A fresh tag, removed from the engine afterwards."""
    name = f"buildsdk-named:{uuid.uuid4().hex[:10]}"
    yield name
    dockerd_http.delete(f"/images/{quote(name, safe='')}", params={"force": "1"})


def _options(engines: Engines, context: Path, **extra: Any) -> BuildOptions:
    # build_endpoint stays "auto": named contexts choose the Control API by themselves.
    return BuildOptions(
        path=str(context), version="2", network_mode=engines.dockerd_network, **extra
    )


def _image_files(http: httpx.Client, name: str) -> dict[str, tarfile.TarInfo | bytes]:
    """Every path of the image's layers: a regular file's bytes, else its tar header."""
    response = http.get(f"/images/{quote(name, safe='')}/get")
    assert response.status_code == 200, response.text
    files: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(response.content)) as image:
        for member in image.getmembers():
            data = image.extractfile(member) if member.isfile() else None
            if data is None:
                continue
            blob = data.read()
            try:
                # Layers are tars (compressed on the containerd store); other blobs are not.
                with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
                    for entry in layer.getmembers():
                        content = layer.extractfile(entry) if entry.isfile() else None
                        files[entry.name] = content.read() if content is not None else entry
            except tarfile.TarError:
                continue
    return files


def _context(root: Path, dockerfile: str) -> Path:
    root.mkdir()
    (root / "Dockerfile").write_text(dockerfile)
    return root


def _expect_refused_on_20(flavor: str, settings: dict[str, Any], options: BuildOptions) -> None:
    with pytest.raises(BuildError) as caught:
        build_result(flavor, settings, options)
    assert UNSUPPORTED_ON_20 in str(caught.value)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_copy_from_a_named_local_directory(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    dockerd_http: httpx.Client,
    tmp_path: Path,
    tag: str,
) -> None:
    context = _context(
        tmp_path / "ctx",
        f"FROM {engines.base_image}\nCOPY --from=other /x.txt /x.txt\nCOPY --from=other / /all/\n",
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x from other\n")
    (other / "dropped.txt").write_text("ignored\n")
    # The named directory's own .dockerignore applies to it, as the main context's does.
    (other / ".dockerignore").write_text("dropped.txt\n")
    (other / "link").symlink_to("/etc/hostname")
    settings = client_settings(engines, "dockerd", docker_engine)
    options = _options(engines, context, tag=tag, build_contexts={"other": str(other)})
    if docker_engine.is_20:
        _expect_refused_on_20(flavor, settings, options)
        return
    result = build_result(flavor, settings, options)
    files = _image_files(dockerd_http, tag)
    assert files["x.txt"] == b"x from other\n"
    assert files["all/x.txt"] == b"x from other\n"
    assert "all/dropped.txt" not in files
    link = files["all/link"]
    assert isinstance(link, tarfile.TarInfo)
    assert link.issym()
    assert link.linkname == "/etc/hostname"
    assert result.image_id


@pytest.mark.parametrize("flavor", FLAVORS)
def test_from_a_docker_image_context_uses_the_engine_s_own_image(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    dockerd_http: httpx.Client,
    tmp_path: Path,
    tag: str,
) -> None:
    settings = client_settings(engines, "dockerd", docker_engine)
    base_tag = tag.replace("buildsdk-named:", "buildsdk-named-base:")
    base = _context(
        tmp_path / "base", f"FROM {engines.base_image}\nRUN echo from base > /base.txt\n"
    )
    try:
        build_result(flavor, settings, _options(engines, base, tag=base_tag))
        context = _context(tmp_path / "ctx", "FROM base\nRUN cp /base.txt /copied.txt\n")
        # image-resolve-mode stays `local` (no pull): the engine has no internet, and the
        # image exists only in its store.
        options = _options(
            engines, context, tag=tag, build_contexts={"base": f"docker-image://{base_tag}"}
        )
        if docker_engine.is_20:
            _expect_refused_on_20(flavor, settings, options)
            return
        build_result(flavor, settings, options)
        files = _image_files(dockerd_http, tag)
        assert files["copied.txt"] == b"from base\n"
    finally:
        dockerd_http.delete(f"/images/{quote(base_tag, safe='')}", params={"force": "1"})


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without printing a line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A git repository (one commit: g.txt on branch main) and a plain file, served by a
    dumb HTTP server on 127.0.0.1: (repository URL, file URL)."""
    git = shutil.which("git")
    # scripts/engines installs git with the engines; without it the test cannot say anything.
    assert git is not None, "git is not installed: the engine's BuildKit needs it for git contexts"
    source = tmp_path / "git-source"
    source.mkdir()
    (source / "g.txt").write_text("from git\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    root = tmp_path / "served"
    root.mkdir()
    (root / "plain.txt").write_text("plain file\n")
    for argv in (
        [git, "init", "-q", "-b", "main", str(source)],
        [git, "-C", str(source), "add", "g.txt"],
        [git, "-C", str(source), "commit", "-q", "-m", "one"],
        [git, "clone", "-q", "--bare", str(source), str(root / "repo.git")],
        [git, "-C", str(root / "repo.git"), "update-server-info"],
    ):
        subprocess.run(argv, check=True, env=env, capture_output=True)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield f"{base}/repo.git#main", f"{base}/plain.txt"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_git_and_http_contexts_are_fetched_by_the_engine(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    dockerd_http: httpx.Client,
    tmp_path: Path,
    tag: str,
    served: tuple[str, str],
) -> None:
    repo, plain = served
    context = _context(
        tmp_path / "ctx",
        f"FROM {engines.base_image}\nCOPY --from=src /g.txt /g.txt\n"
        "COPY --from=file /plain.txt /plain.txt\n",
    )
    settings = client_settings(engines, "dockerd", docker_engine)
    options = _options(
        engines, context, tag=tag, nocache=True, build_contexts={"src": repo, "file": plain}
    )
    if docker_engine.is_20:
        _expect_refused_on_20(flavor, settings, options)
        return
    build_result(flavor, settings, options)
    files = _image_files(dockerd_http, tag)
    assert files["g.txt"] == b"from git\n"
    assert files["plain.txt"] == b"plain file\n"


def test_the_dry_run_shows_the_named_contexts(
    engines: Engines, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    context = _context(tmp_path / "ctx", "FROM base\nCOPY --from=other /x.txt /\n")
    (tmp_path / "other").mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "buildsdk",
            "build",
            "-H",
            docker_engine.host,
            "--dry-run",
            "--format",
            "json",
            "--build-context",
            "other=other",
            "--build-context",
            "base=docker-image://busybox:latest",
            str(context),
        ],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["endpoint"] == "grpc"
    attrs = printed["solve"]["FrontendAttrs"]
    assert attrs["context:other"] == "local:other"
    assert attrs["context:base"] == "docker-image://busybox:latest"
    assert attrs["frontend.caps"] == "moby.buildkit.frontend.contexts+forward"
    assert "/moby.filesync.v1.FileSync/DiffCopy" in printed["session"]["methods"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_named_directory_that_is_not_there_is_a_context_error(
    flavor: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    context = _context(tmp_path / "ctx", "FROM base\n")
    settings = client_settings(engines, "dockerd", docker_engine)
    options = _options(engines, context, build_contexts={"other": str(tmp_path / "missing")})
    with pytest.raises(ContextError, match=r"failed to get build context other: .*missing"):
        build_result(flavor, settings, options)
