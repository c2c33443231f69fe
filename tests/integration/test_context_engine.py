"""The context the engine receives is exactly what `.dockerignore` allows, on every builder.

A `RUN` step lists what `COPY . /ctx` put in the image; the list must be the files the
Docker CLI would have sent (excluded files gone, re-included ones back, the Dockerfile and
`.dockerignore` present as the CLI keeps them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest

from buildsdk import BuildError, BuildOptions, Client, list_context
from tests.integration.conftest import DockerEngine, Engines

pytestmark = [pytest.mark.engine]

DOCKERIGNORE = """\
# comments only in column 0
*.log
!important.log
build
!build/keep.txt
**/__pycache__
secret?.txt
docs/*
!docs/README.md
"""

TREE = [
    "app.py",
    "debug.log",
    "important.log",
    "build/out.o",
    "build/keep.txt",
    "pkg/__pycache__/mod.pyc",
    "pkg/mod.py",
    "secret1.txt",
    "secret10.txt",
    "docs/README.md",
    "docs/guide.md",
    "docs/img/logo.png",
]

EXPECTED = [
    ".dockerignore",
    "Dockerfile",
    "app.py",
    "build/keep.txt",
    "docs/README.md",
    "important.log",
    "pkg/mod.py",
    "secret10.txt",
]


def _context(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    for name in TREE:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name}\n")
    (root / ".dockerignore").write_text(DOCKERIGNORE)
    # The files are listed between markers so the log's other lines cannot be mistaken
    # for them.
    (root / "Dockerfile").write_text(
        "FROM busybox\nCOPY . /ctx\n"
        'RUN cd /ctx && echo BEGIN && find . -type f | sed "s|^./||" | sort && echo END\n'
    )
    return root


def _listed(log: str) -> list[str]:
    # BuildKit's lines are `#N <seconds> <text>`; the classic builder's are the text.
    lines = [re.sub(r"^#\d+ [\d.]+ ", "", line) for line in log.splitlines()]
    begin = lines.index("BEGIN")
    return lines[begin + 1 : lines.index("END", begin)]


def _build_and_list(
    client: Client,
    root: Path,
    version: Literal["1", "2"],
    transfer: Literal["tar", "session"],
    network: str,
) -> list[str]:
    sent = sorted(e.name for e in list_context(root) if e.type == "file")
    assert sent == EXPECTED
    options = BuildOptions(
        path=root,
        version=version,
        nocache=True,
        network_mode=network,
        context_transfer=transfer,
    )
    return _listed(client.build(options).result().log)


@pytest.mark.dockerd
@pytest.mark.parametrize(
    ("version", "transfer"),
    [
        pytest.param("1", "tar", id="classic"),
        # BuildKit applies .dockerignore itself when it pulls the context through a session
        # (the default): both transfers must give the same files.
        pytest.param("2", "session", id="buildkit-session"),
        pytest.param("2", "tar", id="buildkit-tar"),
    ],
)
def test_image_holds_exactly_the_files_dockerignore_allows(
    version: Literal["1", "2"],
    transfer: Literal["tar", "session"],
    engines: Engines,
    docker_engine: DockerEngine,
    dockerd_client: Client,
    tmp_path: Path,
) -> None:
    root = _context(tmp_path)
    if docker_engine.containerd_store and (version, transfer) == ("2", "tar"):
        # moby/moby#47717: on the containerd image store BuildKit cannot read a context
        # uploaded as a tar without a session; buildsdk's default (a session) avoids it.
        with pytest.raises(BuildError) as caught:
            _build_and_list(dockerd_client, root, version, transfer, engines.dockerd_network)
        assert "failed to read downloaded context" in caught.value.message
        return
    listed = _build_and_list(dockerd_client, root, version, transfer, engines.dockerd_network)
    assert listed == EXPECTED


@pytest.mark.podman
def test_image_holds_exactly_the_files_dockerignore_allows_on_podman(
    engines: Engines, podman_client: Client, tmp_path: Path
) -> None:
    root = _context(tmp_path)
    listed = _build_and_list(podman_client, root, "1", "tar", engines.podman_network)
    assert listed == EXPECTED
