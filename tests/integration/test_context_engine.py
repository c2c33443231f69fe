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

from buildsdk import BuildOptions, Client, list_context
from tests.integration.conftest import Engines

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


@pytest.mark.parametrize(
    ("engine", "version", "transfer"),
    [
        pytest.param("dockerd", "1", "tar", marks=pytest.mark.dockerd, id="dockerd-classic"),
        # BuildKit applies .dockerignore itself when it pulls the context through a session
        # (the default): both transfers must give the same files.
        pytest.param(
            "dockerd", "2", "session", marks=pytest.mark.dockerd, id="dockerd-buildkit-session"
        ),
        pytest.param("dockerd", "2", "tar", marks=pytest.mark.dockerd, id="dockerd-buildkit-tar"),
        pytest.param("podman", "1", "tar", marks=pytest.mark.podman, id="podman"),
    ],
)
def test_image_holds_exactly_the_files_dockerignore_allows(
    engine: str,
    version: Literal["1", "2"],
    transfer: Literal["tar", "session"],
    engines: Engines,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    client: Client = request.getfixturevalue(f"{engine}_client")
    root = _context(tmp_path)
    sent = sorted(e.name for e in list_context(root) if e.type == "file")
    assert sent == EXPECTED
    network = engines.dockerd_network if engine == "dockerd" else engines.podman_network
    options = BuildOptions(
        path=root,
        version=version,
        nocache=True,
        network_mode=network,
        context_transfer=transfer,
    )
    result = client.build(options).result()
    assert _listed(result.log) == EXPECTED
