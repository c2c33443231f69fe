"""Shared helpers for the context tests: vector loading, tree building, tar reading."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests import VECTORS_DIR
from tests.recording_engine import recording_engine

VECTORS = VECTORS_DIR

DOCKERFILE_TEXT = b"FROM scratch\n"


def load_vector(name: str) -> Any:
    """Load one JSON vector file; a missing file fails the test (never skips)."""
    with open(VECTORS / name, encoding="utf-8") as f:
        return json.load(f)


def _is_dockerfile(path: str) -> bool:
    return "ockerfile" in path.rsplit("/", 1)[-1]


def build_tree(root: Path, tree: dict[str, Any], dockerignore: str | None) -> list[socket.socket]:
    """Create a vector tree under `root` as the vectors' README describes it.

    Every file holds its own path and a newline, except Dockerfiles, which hold
    `FROM scratch`; a root Dockerfile is added when the tree has none. Returns the bound
    sockets (the caller closes them).
    """
    root.mkdir(parents=True, exist_ok=True)
    for d in tree.get("dirs", []):
        (root / d).mkdir(parents=True, exist_ok=True)
    files = list(tree.get("files", []))
    for f in files:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(DOCKERFILE_TEXT if _is_dockerfile(f) else f.encode() + b"\n")
    for name, target in tree.get("links", {}).items():
        os.symlink(target, root / name)
    for name in tree.get("fifos", []):
        os.mkfifo(root / name)
    socks = []
    for name in tree.get("sockets", []):
        s = socket.socket(socket.AF_UNIX)
        old = os.getcwd()
        os.chdir(root)
        try:
            s.bind(name)
        finally:
            os.chdir(old)
        socks.append(s)
    if dockerignore is not None:
        (root / ".dockerignore").write_bytes(dockerignore.encode("utf-8"))
    return socks


def add_default_dockerfile(root: Path, tree: dict[str, Any], dockerfile: str | None) -> None:
    """Add the root `Dockerfile` the vectors add when a tree has none and no -f is given."""
    if dockerfile is None and "Dockerfile" not in tree.get("files", []):
        (root / "Dockerfile").write_bytes(DOCKERFILE_TEXT)


def tar_members(data: bytes) -> list[tarfile.TarInfo]:
    """Parse a tar body with Python's tarfile, as a reader on the engine side would."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


def vector_entry(info: tarfile.TarInfo) -> dict[str, Any]:
    """Describe a tar member in the shape of `context_trees_cli.json` entries."""
    kinds = {
        tarfile.REGTYPE: "file",
        tarfile.DIRTYPE: "dir",
        tarfile.SYMTYPE: "symlink",
        tarfile.LNKTYPE: "hardlink",
        tarfile.FIFOTYPE: "fifo",
        tarfile.CHRTYPE: "char",
        tarfile.BLKTYPE: "block",
    }
    name = info.name + ("/" if info.isdir() else "")
    return {
        "name": name,
        "type": kinds[info.type],
        "mode": oct(info.mode),
        "uid": info.uid,
        "gid": info.gid,
        "link": info.linkname if info.issym() or info.islnk() else None,
        "size": info.size if info.isreg() else None,
    }


def capture_cli_context(docker: str, context_dir: Path, home: Path) -> bytes:
    """Run `DOCKER_BUILDKIT=0 docker build` against a fake engine and return the tar it sent.

    The fake engine answers `/_ping` and records the `POST /build` body; nothing is built.
    `home` holds the CLI's home directory and its (empty) configuration.
    """
    with recording_engine() as engine:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "DOCKER_CONFIG": str(home / "docker-config"),
            "DOCKER_HOST": engine.host,
            "DOCKER_BUILDKIT": "0",
        }
        subprocess.run(
            [docker, "build", "-q", str(context_dir)],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    builds = engine.builds()
    assert len(builds) == 1
    return builds[0].body
