"""Shared helpers for the context tests: vector loading, tree building, tar reading."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[2] / ".." / "shared" / "vectors"

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


def capture_cli_context(docker: str, context_dir: Path, sock_path: Path) -> bytes:
    """Run `DOCKER_BUILDKIT=0 docker build` against a fake engine and return the tar it sent.

    The fake engine answers `/_ping` and records the `POST /build` body; nothing is built.
    """
    import http.server
    import socketserver
    import subprocess
    import threading

    captured: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(200)
            self.send_header("API-Version", "1.41")
            self.send_header("OSType", "linux")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:
            self._reply(b"")

        def do_GET(self) -> None:
            self._reply(b"OK")

        def do_POST(self) -> None:
            parts = []
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            else:
                parts.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            captured.append(b"".join(parts))
            aux = b'{"aux":{"ID":"sha256:' + b"0" * 64 + b'"}}\r\n'
            self._reply(aux, "application/json")

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

        def get_request(self) -> tuple[Any, Any]:
            request, _ = super().get_request()
            return request, ("local", 0)

    server = Server(str(sock_path), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(sock_path.parent),
            "DOCKER_CONFIG": str(sock_path.parent / "docker-config"),
            "DOCKER_HOST": f"unix://{sock_path}",
            "DOCKER_BUILDKIT": "0",
        }
        subprocess.run(
            [docker, "build", "-q", str(context_dir)],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert len(captured) == 1
    return captured[0]
