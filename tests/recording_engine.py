"""A fake engine on a unix socket that records what a client sends, for tests.

It answers `/_ping` and `/version` like an engine of the chosen API version, records every
request (method, path, query pairs in order, headers, body) and answers `POST /build` with a
short successful stream. Tests run the Docker CLI and `buildsdk` against it to compare the
requests byte for byte; nothing is built.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socketserver
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["IMAGE_ID", "RecordedRequest", "RecordingEngine", "recording_engine"]

IMAGE_ID = "sha256:" + "ab" * 32

_DEFAULT_STREAM: tuple[bytes, ...] = (
    b'{"stream":"Step 1/1 : FROM scratch\\n"}\r\n',
    b'{"aux":{"ID":"' + IMAGE_ID.encode() + b'"}}\r\n',
    b'{"stream":"Successfully built abababababab\\n"}\r\n',
)


@dataclass
class RecordedRequest:
    """One request the recording engine received."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingEngine:
    """A fake engine on a unix socket: answers pings, records builds, replays a stream."""

    socket_path: Path
    api_version: str = "1.41"
    stream: Sequence[bytes] = _DEFAULT_STREAM
    delay: float = 0.0
    builder_version: str | None = None
    """The `Builder-Version` header of ping answers (Docker 23+ sends "2"); none when None."""
    requests: list[RecordedRequest] = field(default_factory=list)

    @property
    def host(self) -> str:
        """The `unix://` address to give `-H` or `DOCKER_HOST`."""
        return f"unix://{self.socket_path}"

    def builds(self) -> list[RecordedRequest]:
        """The recorded `POST …/build` requests, oldest first."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/build")]


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = handler.rfile.readline()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            body += handler.rfile.read(size)
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _handler_for(engine: RecordingEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def address_string(self) -> str:
            return "unix"

        def _common_headers(self) -> None:
            self.send_header("Api-Version", engine.api_version)
            self.send_header("Ostype", "linux")
            self.send_header("Docker-Experimental", "true")
            self.send_header("Server", "Docker/20.10.24 (linux)")
            if engine.builder_version is not None:
                self.send_header("Builder-Version", engine.builder_version)

        def _record(self) -> RecordedRequest:
            parts = urlsplit(self.path)
            body = _read_body(self)
            request = RecordedRequest(
                self.command,
                parts.path,
                parse_qsl(parts.query, keep_blank_values=True),
                dict(self.headers.items()),
                body,
            )
            engine.requests.append(request)
            return request

        def do_HEAD(self) -> None:
            self._record()
            self.send_response(200)
            self._common_headers()
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "2")
            self.end_headers()

        def do_GET(self) -> None:
            request = self._record()
            if request.path.endswith("/_ping"):
                body = b"OK"
                ctype = "text/plain; charset=utf-8"
            elif request.path.endswith("/version"):
                body = json.dumps(
                    {
                        "Version": "20.10.24",
                        "ApiVersion": engine.api_version,
                        "MinAPIVersion": "1.12",
                        "Os": "linux",
                        "Arch": "amd64",
                        "Components": [{"Name": "Engine", "Version": "20.10.24"}],
                    }
                ).encode()
                ctype = "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self._common_headers()
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            request = self._record()
            if not request.path.endswith("/build"):
                self.send_error(404)
                return
            self.send_response(200)
            self._common_headers()
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for message in engine.stream:
                if engine.delay:
                    time.sleep(engine.delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(message), message))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    # Closing waits for every connection's thread, so no socket outlives the server (the
    # clients are separate processes that have exited by then, closing their ends).
    daemon_threads = False
    block_on_close = True


@contextlib.contextmanager
def recording_engine(**options: Any) -> Iterator[RecordingEngine]:
    """Serve a `RecordingEngine` on a fresh short unix socket path for the `with` block."""
    directory = Path(tempfile.mkdtemp(prefix="bsrec", dir="/tmp"))
    engine = RecordingEngine(directory / "engine.sock", **options)
    server = _Server(str(engine.socket_path), _handler_for(engine))
    # A short poll interval: shutdown() waits for it (0.5 s by default) at every teardown.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield engine
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        shutil.rmtree(directory, ignore_errors=True)
