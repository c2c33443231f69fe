"""A fake engine on a unix socket that reads and throws away build contexts, fast.

Why: to compare how fast clients pack and upload a context, every client must talk to
the same endpoint, and that endpoint must cost as little as possible and never be the
bottleneck. It runs as its own process so it shares no interpreter lock with the client
being measured. It answers just enough of the Engine API for buildsdk, docker-py and the
Docker CLI (legacy builder) to finish a build: `/_ping` (API 1.41), `/version`, and
`POST /build`, whose body (chunked or with a length) is read and discarded, followed by
a minimal successful build stream. Every request's arrival (wall-clock seconds, method,
path) is appended to a log file when one is given, so start-up latency can be measured.

Run: `python discard_server.py SOCKET [--log FILE]`; it prints `ready` once listening.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time

__all__ = ["BUILD_RESPONSE", "IMAGE_ID", "main"]

IMAGE_ID = "sha256:" + "ab" * 32
"""The image ID every build on this endpoint reports."""

BUILD_RESPONSE = (
    b'{"aux":{"ID":"' + IMAGE_ID.encode() + b'"}}\r\n'
    b'{"stream":"Successfully built ' + IMAGE_ID[7:19].encode() + b'\\n"}\r\n'
)
"""The body of every `POST /build` answer: the image ID, then the CLI's success line."""

_RECV = 1 << 20
_VERSION = (
    b'{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux",'
    b'"Arch":"amd64","KernelVersion":"0","Components":[]}'
)


class _Closed(Exception):
    """The peer closed the connection in the middle of a request."""


class _Conn:
    """One client connection: a byte buffer in front of the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.big = bytearray(_RECV)
        self.view = memoryview(self.big)

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise _Closed
        self.buf += data

    def line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self._more()
        line, self.buf = self.buf[:end], self.buf[end + 2 :]
        return line

    def head(self) -> bytes | None:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            data = self.sock.recv(65536)
            if not data:
                if self.buf:
                    raise _Closed
                return None
            self.buf += data
        head, self.buf = self.buf[:end], self.buf[end + 4 :]
        return head

    def skip(self, count: int) -> None:
        """Drop `count` bytes, reading big blocks straight into a reused buffer."""
        if len(self.buf) >= count:
            self.buf = self.buf[count:]
            return
        count -= len(self.buf)
        self.buf = b""
        recv_into = self.sock.recv_into
        view = self.view
        while count > 0:
            got = recv_into(view)
            if got == 0:
                raise _Closed
            if got > count:
                self.buf = bytes(view[count:got])
                return
            count -= got

    def skip_chunked(self) -> None:
        while True:
            size_line = self.line()
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                while self.line():  # trailers, up to the empty line
                    pass
                return
            self.skip(size + 2)


def _respond(
    sock: socket.socket, status: str, headers: list[tuple[str, str]], body: bytes, head: bool
) -> None:
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append(f"Content-Length: {len(body)}")
    out = ("\r\n".join(lines) + "\r\n\r\n").encode()
    sock.sendall(out if head else out + body)


def _respond_stream(sock: socket.socket, messages: list[bytes]) -> None:
    # Chunked like the engine's answer, one message per chunk: docker-py only streams
    # (and decodes message by message) a chunked response.
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    out = [head + b"Transfer-Encoding: chunked\r\n\r\n"]
    out += [b"%x\r\n%b\r\n" % (len(m), m) for m in messages]
    out.append(b"0\r\n\r\n")
    sock.sendall(b"".join(out))


def _serve_connection(sock: socket.socket, log: _Log) -> None:
    conn = _Conn(sock)
    try:
        while True:
            head = conn.head()
            if head is None:
                return
            arrived = time.time()
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {}
            for header in header_lines:
                name, _, value = header.partition(":")
                headers[name.strip().lower()] = value.strip()
            log.write(arrived, method, target)
            if headers.get("transfer-encoding", "").lower() == "chunked":
                conn.skip_chunked()
            elif "content-length" in headers:
                conn.skip(int(headers["content-length"]))
            path = target.split("?", 1)[0]
            is_head = method == "HEAD"
            if path.endswith("/_ping"):
                _respond(
                    sock,
                    "200 OK",
                    [
                        ("Api-Version", "1.41"),
                        ("Builder-Version", "1"),
                        ("Docker-Experimental", "false"),
                        ("Ostype", "linux"),
                        ("Content-Type", "text/plain; charset=utf-8"),
                    ],
                    b"OK",
                    is_head,
                )
            elif path.endswith("/version"):
                _respond(
                    sock,
                    "200 OK",
                    [("Api-Version", "1.41"), ("Content-Type", "application/json")],
                    _VERSION,
                    is_head,
                )
            elif path.endswith("/build") and method == "POST":
                _respond_stream(sock, BUILD_RESPONSE.splitlines(keepends=True))
            else:
                _respond(
                    sock,
                    "404 Not Found",
                    [("Content-Type", "application/json")],
                    b'{"message":"page not found"}',
                    is_head,
                )
    except (_Closed, ConnectionError):
        return
    finally:
        sock.close()


class _Log:
    """Appends request arrivals to a file, one line each, flushed at once."""

    def __init__(self, path: str | None) -> None:
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._lock = threading.Lock()

    def write(self, arrived: float, method: str, target: str) -> None:
        if self._file is None:
            return
        with self._lock:
            self._file.write(f"{arrived:.6f} {method} {target}\n")
            self._file.flush()


def main(argv: list[str] | None = None) -> int:
    """Serve until killed; print `ready` on stdout once the socket accepts connections."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("socket")
    parser.add_argument("--log")
    args = parser.parse_args(argv)
    if os.path.lexists(args.socket):
        os.unlink(args.socket)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket)
    listener.listen(128)
    log = _Log(args.log)
    print("ready", flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_serve_connection, args=(sock, log), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
