"""A fake engine that speaks HTTP/1.1 like dockerd and misbehaves on request.

Why: the failures users meet in CI (an engine that dies mid-upload, a proxy that answers
garbage, a stream cut in the middle of a message, a peer that never answers) cannot be
produced on demand with a real dockerd. This server is written on plain sockets and threads
so each test decides every byte that goes out and when, and sees every byte that came in.

It listens on a unix socket and on TCP loopback at once. `/_ping` is answered like
dockerd 20.10 (API 1.41) unless the test replaces it; every other request goes to the
test's `handler`, a function that gets an `Exchange` (the parsed request head plus the
connection) and writes whatever it wants. Requests and the body bytes the server actually
read are recorded in `FaultEngine.requests`, so tests can check what left the client.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "API_VERSION",
    "CapturedRequest",
    "Exchange",
    "FaultEngine",
    "Handler",
    "answer_build",
    "build_stream",
]

API_VERSION = "1.41"
"""The API version the fake engine claims, as dockerd 20.10 does."""

_HEAD_LIMIT = 64 * 1024
_MALFORMED = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\n400 Bad Request"
)


@dataclass
class CapturedRequest:
    """One request as the server saw it: request line, headers and the body bytes it read."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.partition("?")[0]


class Exchange:
    """One request on one connection, handed to the test's handler to answer as it likes."""

    def __init__(self, engine: FaultEngine, sock: socket.socket, request: CapturedRequest) -> None:
        self.engine = engine
        self.sock = sock
        self.request = request
        self._chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        self._remaining = int(request.headers.get("content-length", "0") or 0)
        self._body_done = not self._chunked and self._remaining == 0
        self._buffer = b""
        self.keep_alive = True

    # -- reading the request body ------------------------------------------------------------

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("client closed the connection")
        return data

    def _read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._buffer += self._recv()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += self._recv()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_body_chunk(self) -> bytes:
        """Read the next piece of the request body (de-chunked); b"" once the body ended."""
        if self._body_done:
            return b""
        if self._chunked:
            size = int(self._read_line().split(b";")[0], 16)
            if size == 0:
                while self._read_line():  # trailers end with an empty line
                    pass
                self._body_done = True
                return b""
            data = self._read_exact(size)
            self._read_exact(2)
        else:
            if not self._buffer:
                self._buffer = self._recv()
            data = self._buffer[: self._remaining]
            self._buffer = self._buffer[len(data) :]
            self._remaining -= len(data)
            self._body_done = self._remaining == 0
        self.request.body += data
        return data

    def read_body(self, limit: int | None = None) -> bytes:
        """Read the body to its end, or until at least `limit` bytes of it were read."""
        while not self._body_done and (limit is None or len(self.request.body) < limit):
            self.read_body_chunk()
        return bytes(self.request.body)

    # -- answering -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write raw bytes to the client."""
        self.sock.sendall(data)

    def start_response(
        self,
        status: int = 200,
        headers: Iterable[tuple[str, str]] = (),
        *,
        chunked: bool = True,
        content_length: int | None = None,
    ) -> None:
        """Send a status line and headers; the body follows with `send`/`send_chunk`."""
        reason = {200: "OK", 400: "Bad Request", 500: "Internal Server Error"}.get(status, "X")
        lines = [f"HTTP/1.1 {status} {reason}", f"Api-Version: {API_VERSION}", "Server: fault"]
        lines += [f"{k}: {v}" for k, v in headers]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif content_length is not None:
            lines.append(f"Content-Length: {content_length}")
        else:
            lines.append("Connection: close")
            self.keep_alive = False
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send_chunk(self, data: bytes) -> None:
        """Send one piece of a chunked body."""
        if data:
            self.send(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunks(self) -> None:
        """End a chunked body cleanly."""
        self.send(b"0\r\n\r\n")

    def respond(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        """Send a whole answer with a Content-Length."""
        self.start_response(
            status, [("Content-Type", content_type)], chunked=False, content_length=len(body)
        )
        self.send(body)

    def respond_error(self, status: int, message: str) -> None:
        """Answer like dockerd does for a failed request: `{"message": ...}` as JSON."""
        self.respond(status, json.dumps({"message": message}).encode() + b"\n")

    def close(self) -> None:
        """Close the connection in an orderly way (FIN)."""
        self.keep_alive = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def reset(self) -> None:
        """Abort the connection (RST on TCP: SO_LINGER with a zero timeout)."""
        self.keep_alive = False
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def wait_closed(self, timeout: float) -> bool:
        """Block until the client closes its side (or the engine stops); True if it did."""
        self.sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.engine.stopping.is_set():
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                continue
            except OSError:
                return True
        return False


Handler = Callable[[Exchange], None]
"""What a test scripts: a function that answers one request (anything but /_ping)."""


def build_stream(image_id: str, lines: Iterable[str] = ("Step 1/1 : FROM scratch\n",)) -> bytes:
    """A successful classic-builder answer body: log lines, the aux image id, the final line."""
    messages: list[dict[str, object]] = [{"stream": line} for line in lines]
    messages.append({"aux": {"ID": image_id}})
    messages.append({"stream": f"Successfully built {image_id[7:19]}\n"})
    return b"".join(json.dumps(m).encode() + b"\r\n" for m in messages)


def answer_build(exchange: Exchange, image_id: str) -> None:
    """Read the whole upload, then answer a successful build, chunked like dockerd."""
    exchange.read_body()
    exchange.start_response(200, [("Content-Type", "application/json")])
    exchange.send_chunk(build_stream(image_id))
    exchange.end_chunks()


class FaultEngine:
    """A scriptable HTTP engine on a unix socket and on TCP loopback (see the module doc)."""

    def __init__(self, directory: Path) -> None:
        self.socket_path = str(directory / "fault.sock")
        self.handler: Handler = lambda ex: answer_build(ex, "sha256:" + "ab" * 32)
        self.ping_handler: Handler | None = None
        self.requests: list[CapturedRequest] = []
        self.stopping = threading.Event()
        self._refusing = threading.Event()
        self._accept_threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._listeners: list[socket.socket] = []
        self.port = 0
        self._listen()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def unix_host(self) -> str:
        """The `unix://` address of the engine."""
        return f"unix://{self.socket_path}"

    @property
    def tcp_host(self) -> str:
        """The `tcp://127.0.0.1:<port>` address of the engine."""
        return f"tcp://127.0.0.1:{self.port}"

    def host(self, transport: str) -> str:
        """The address for `transport`: "unix" or "tcp"."""
        return self.unix_host if transport == "unix" else self.tcp_host

    def builds(self) -> list[CapturedRequest]:
        """The `POST .../build` requests received so far."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/build")]

    # -- life cycle ----------------------------------------------------------------------------

    def _listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(self.socket_path)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("127.0.0.1", self.port))
        self.port = tcp.getsockname()[1]
        for listener in (unix, tcp):
            listener.listen(128)
            listener.settimeout(0.2)
            self._listeners.append(listener)
            self._accept_threads.append(self._spawn(self._accept_loop, listener))

    def _spawn(self, target: Callable[..., None], *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True, name="fault-engine")
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return thread

    def refuse(self) -> None:
        """Stop listening: new connections are refused (ECONNREFUSED on both addresses).

        The unix socket file stays, as a crashed dockerd leaves it.
        """
        self._refusing.set()
        # A listening socket lives on while a thread sits in accept() on it, so wait for
        # the accept loops to notice before closing the sockets.
        for thread in self._accept_threads:
            thread.join(timeout=5)
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()

    def close(self) -> None:
        """Stop the engine: close the listeners and every open connection, join threads."""
        self.stopping.set()
        if not self._refusing.is_set():
            self.refuse()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def __enter__(self) -> FaultEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving -------------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._refusing.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self._connections.add(conn)
            self._spawn(self._serve, conn)

    def _read_head(self, conn: socket.socket, buffer: bytes) -> tuple[bytes, bytes] | None:
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > _HEAD_LIMIT:
                return None
            data = conn.recv(65536)
            if not data:
                return None
            buffer += data
            if buffer[:1] == b"\x16":
                # A TLS ClientHello on this plain-HTTP port: answer as Go's server does.
                conn.sendall(_MALFORMED)
                return None
        head, _, rest = buffer.partition(b"\r\n\r\n")
        return head, rest

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while not self.stopping.is_set():
                parsed = self._read_head(conn, buffer)
                if parsed is None:
                    return
                head, buffer = parsed
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                captured = CapturedRequest(method, target, headers)
                with self._lock:
                    self.requests.append(captured)
                exchange = Exchange(self, conn, captured)
                exchange._buffer = buffer
                if captured.path.endswith("/_ping"):
                    (self.ping_handler or _answer_ping)(exchange)
                else:
                    self.handler(exchange)
                if not exchange.keep_alive or conn.fileno() < 0:
                    return
                exchange.read_body()
                buffer = exchange._buffer
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()


def _answer_ping(exchange: Exchange) -> None:
    body = b"" if exchange.request.method == "HEAD" else b"OK"
    exchange.start_response(
        200,
        [("Content-Type", "text/plain; charset=utf-8"), ("Ostype", "linux")],
        chunked=False,
        content_length=2,
    )
    exchange.send(body)
