"""What a user gets when the address answers HTTP but `/_ping` fails: a proxy, a wrong port.

A small HTTP server on loopback (or a unix socket) answers every request with one status,
with or without a body. `Client.ping()`, a build (which pings to negotiate), `AsyncClient`
and the command must all report the status and what came back, never an httpx traceback;
the command exits 3 with docker's wording.
"""

from __future__ import annotations

import contextlib
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from buildsdk import (
    APIError,
    AsyncClient,
    BuildOptions,
    Client,
    NotFound,
    ServerError,
)
from buildsdk.cli import EXIT_UNREACHABLE, main

__all__: list[str] = []

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Answer:
    """The one answer the server gives to everything."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    answer: Answer
    protocol_version = "HTTP/1.1"

    def _reply(self, *, with_body: bool) -> None:
        answer = self.answer
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(answer.status)
        if answer.body:
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if with_body:
            self.wfile.write(answer.body)

    def do_HEAD(self) -> None:
        self._reply(with_body=False)

    def do_GET(self) -> None:
        self._reply(with_body=True)

    def do_POST(self) -> None:
        self._reply(with_body=True)

    def handle(self) -> None:
        # A client that has its answer may hang up before the server finished writing.
        with contextlib.suppress(ConnectionError):
            super().handle()

    def address_string(self) -> str:
        return "test"

    def log_message(self, format: str, *args: object) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


@dataclass(frozen=True)
class Server:
    """Where the server listens, and the URL docker's message names for `/_ping`."""

    host: str
    ping_url: str


def _serve(server: socketserver.BaseServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return thread


@pytest.fixture(params=["tcp", "unix"])
def serve(request: pytest.FixtureRequest) -> Iterator[Callable[[Answer], Server]]:
    """A function that starts a server of the parametrized kind giving one answer."""
    started: list[socketserver.BaseServer] = []
    kind = request.param
    tmp = tempfile.TemporaryDirectory(prefix="bsdk-ping-")

    def start(answer: Answer) -> Server:
        handler = type("Handler", (_Handler,), {"answer": answer})
        if kind == "tcp":
            http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            http.daemon_threads = True
            started.append(http)
            _serve(http)
            port = http.server_address[1]
            return Server(f"tcp://127.0.0.1:{port}", f"http://127.0.0.1:{port}/_ping")
        path = str(Path(tmp.name) / "engine.sock")
        unix = _UnixHTTPServer(path, handler)
        started.append(unix)
        _serve(unix)
        return Server(f"unix://{path}", f"http://{quote(path, safe='')}/_ping")

    yield start
    for server in started:
        server.shutdown()
        server.server_close()
    tmp.cleanup()


def _docker_sentence(status_text: str, url: str) -> str:
    return (
        f"request returned {status_text} for API route and version {url}, "
        "check if the server supports the requested API version"
    )


CASES = [
    pytest.param(Answer(404), NotFound, "Not Found", id="404-empty"),
    pytest.param(Answer(404, b"404 page not found\n"), NotFound, None, id="404-text"),
    pytest.param(Answer(500), ServerError, "Internal Server Error", id="500-empty"),
    pytest.param(
        Answer(500, b'{"message":"engine is shutting down"}', "application/json"),
        ServerError,
        None,
        id="500-json",
    ),
    pytest.param(Answer(502), ServerError, "Bad Gateway", id="502-empty"),
    pytest.param(
        Answer(502, b"<html><body>Bad gateway</body></html>", "text/html"),
        ServerError,
        None,
        id="502-html",
    ),
]


def _expected_message(answer: Answer, status_text: str | None, server: Server) -> str:
    if status_text is not None:
        return _docker_sentence(status_text, server.ping_url)
    if answer.content_type == "application/json":
        return "engine is shutting down"
    return answer.body.decode().strip()


def _check(error: APIError, kind: type[APIError], answer: Answer, message: str) -> None:
    assert type(error) is kind
    assert error.status_code == answer.status
    assert error.message == message
    assert error.path == "/_ping"


@pytest.mark.parametrize(("answer", "kind", "status_text"), CASES)
def test_ping_reports_the_status_and_message(
    serve: Callable[[Answer], Server], answer: Answer, kind: type[APIError], status_text: str | None
) -> None:
    server = serve(answer)
    message = _expected_message(answer, status_text, server)
    with Client(server.host, api_version=None, env={}) as client:
        with pytest.raises(APIError) as pinged:
            client.ping()
        _check(pinged.value, kind, answer, message)
        # A build negotiates the API version first, and fails the same way.
        with pytest.raises(APIError) as built:
            client.build(BuildOptions(remote="https://example.com/ctx.tar")).result()
        _check(built.value, kind, answer, message)


@pytest.mark.parametrize(("answer", "kind", "status_text"), CASES)
async def test_async_ping_reports_the_status_and_message(
    serve: Callable[[Answer], Server], answer: Answer, kind: type[APIError], status_text: str | None
) -> None:
    server = serve(answer)
    message = _expected_message(answer, status_text, server)
    async with AsyncClient(server.host, api_version=None, env={}) as client:
        with pytest.raises(APIError) as pinged:
            await client.ping()
        _check(pinged.value, kind, answer, message)
        with pytest.raises(APIError) as built:
            await client.build(BuildOptions(remote="https://example.com/ctx.tar")).result()
        _check(built.value, kind, answer, message)


@pytest.mark.parametrize(("answer", "kind", "status_text"), CASES)
@pytest.mark.parametrize("command", ["info", "build", "prune"])
def test_the_command_exits_3_in_dockers_words(
    serve: Callable[[Answer], Server],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: Answer,
    kind: type[APIError],
    status_text: str | None,
    command: str,
) -> None:
    server = serve(answer)
    monkeypatch.delenv("DOCKER_API_VERSION", raising=False)
    monkeypatch.delenv("BUILDKIT_PROGRESS", raising=False)
    rest = {"build": ["--progress", "plain", "https://example.com/ctx.tar"]}.get(command, [])
    status = main([command, "-H", server.host, *rest])
    captured = capsys.readouterr()
    assert status == EXIT_UNREACHABLE
    assert "Traceback" not in captured.err
    if status_text is not None:
        expected = _docker_sentence(status_text, server.ping_url)
    else:
        expected = "Error response from daemon: " + _expected_message(answer, None, server)
    assert captured.err.splitlines()[-1] == f"buildsdk: {expected}"
