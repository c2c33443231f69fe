"""Transports against real local servers: a unix socket, TLS on loopback, and a fake ssh.

The ssh tests put a small Python program named `ssh` first on PATH. It records its argv and
pid, then bridges stdin/stdout to a unix-socket HTTP server -- which is what
`ssh host docker system dial-stdio` does -- or fails the way ssh fails. That exercises the
process plumbing (spawn, pipes, timeouts, exit status, stderr, reaping) without an sshd;
tests/integration/test_transports_ssh.py covers a real one.
"""

from __future__ import annotations

import asyncio
import gc
import http.server
import json
import os
import shutil
import socket
import socketserver
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildsdk.endpoint import Endpoint, SSHTarget, TLSConfig, resolve_endpoint
from buildsdk.errors import EngineTimeout, EngineUnreachable, StreamError
from buildsdk.transports import (
    SSH_BASE_URL,
    UNIX_BASE_URL,
    _proxy_from_env,
    create_async_transport,
    create_transport,
    translate_transport_errors,
)

# --------------------------------------------------------------------------------------------
# A tiny HTTP engine stand-in


@dataclass
class Seen:
    """What one request looked like on the server side."""

    method: str
    path: str
    headers: dict[str, str]
    body_length: int
    peer_cn: str | None = None


@dataclass
class ServerState:
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _peer_cn(self) -> str | None:
        getpeercert = getattr(self.request, "getpeercert", None)
        cert = getpeercert() if getpeercert else None
        if not cert:
            return None
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None

    def _answer(self, body_length: int) -> None:
        state: ServerState = self.server.state
        state.seen.append(
            Seen(self.command, self.path, dict(self.headers), body_length, self._peer_cn())
        )
        if self.path.endswith("/hang"):
            state.release.wait(10)
            self.close_connection = True
            return
        if self.path.endswith("/truncated"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"partial")
            self.wfile.flush()
            self.close_connection = True
            return
        body = json.dumps({"path": self.path, "received": body_length}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Api-Version", "1.41")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(0)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        received = 0
        while received < length:
            chunk = self.rfile.read(min(65536, length - received))
            if not chunk:
                break
            received += len(chunk)
        self._answer(received)


def _get(endpoint: Endpoint, path: str, *, timeout: httpx.Timeout | float = 5.0) -> httpx.Response:
    """GET `path` through `endpoint`'s sync transport, with buildsdk's error translation."""
    transport, base_url = create_transport(endpoint)
    with (
        httpx.Client(transport=transport, base_url=base_url, timeout=timeout) as client,
        translate_transport_errors(endpoint),
    ):
        return client.get(path)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TCPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def _serve(server: socketserver.BaseServer) -> Iterator[ServerState]:
    state = ServerState()
    server.state = state  # type: ignore[attr-defined]
    # A short poll interval: shutdown() waits for it (0.5 s by default) at every teardown.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for unix sockets (their paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bsdk-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def unix_server(short_dir: Path) -> Iterator[tuple[str, ServerState]]:
    path = str(short_dir / "engine.sock")
    server = _UnixServer(path, _Handler)
    for state in _serve(server):
        yield path, state


# --------------------------------------------------------------------------------------------
# unix


def test_unix_transport_sends_the_go_clients_host_header(
    unix_server: tuple[str, ServerState],
) -> None:
    path, state = unix_server
    endpoint = resolve_endpoint(f"unix://{path}", env={})
    transport, base_url = create_transport(endpoint)
    assert base_url == UNIX_BASE_URL
    with httpx.Client(transport=transport, base_url=base_url, trust_env=False) as client:
        response = client.get("/v1.41/_ping")
    assert response.json() == {"path": "/v1.41/_ping", "received": 0}
    assert state.seen[0].headers["Host"] == "api.moby.localhost"


def test_async_unix_transport(unix_server: tuple[str, ServerState]) -> None:
    path, state = unix_server
    endpoint = resolve_endpoint(f"unix://{path}", env={})

    async def main() -> httpx.Response:
        transport, base_url = create_async_transport(endpoint)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            return await client.post("/build", content=b"x" * 1000)

    response = asyncio.run(main())
    assert response.json() == {"path": "/build", "received": 1000}
    assert state.seen[0].headers["Host"] == "api.moby.localhost"


def test_missing_unix_socket_is_engine_unreachable_with_hint(short_dir: Path) -> None:
    endpoint = resolve_endpoint(f"unix://{short_dir}/absent.sock", env={})
    with pytest.raises(EngineUnreachable) as caught:
        _get(endpoint, "/_ping")
    assert caught.value.address == f"unix://{short_dir}/absent.sock"
    assert "No such file or directory" in caught.value.reason
    assert caught.value.hint is not None
    assert "Is the docker daemon running?" in caught.value.hint
    assert f"cannot reach the engine at unix://{short_dir}/absent.sock" in str(caught.value)


@pytest.mark.parametrize(
    ("error", "expected", "text"),
    [
        (httpx.ConnectError("[Errno 13] Permission denied"), EngineUnreachable, "docker group"),
        (httpx.ConnectTimeout("timed out"), EngineTimeout, "connecting to the engine at"),
        (httpx.WriteTimeout("timed out"), EngineTimeout, "sending to the engine at"),
        (httpx.PoolTimeout("timed out"), EngineTimeout, "no connection to the engine at"),
        (httpx.ProxyError("407 from http://u:hunter2@proxy:3128"), EngineUnreachable,
         "check HTTPS_PROXY"),
        (httpx.RemoteProtocolError("illegal status line"), StreamError, "sent invalid HTTP"),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), StreamError,
         "connection to the engine at unix:///run/docker.sock broke"),
    ],
)  # fmt: skip
def test_error_translation(error: Exception, expected: type[Exception], text: str) -> None:
    endpoint = resolve_endpoint("unix:///run/docker.sock", env={})
    with pytest.raises(expected) as caught, translate_transport_errors(endpoint):
        raise error
    assert text in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is error


def test_errors_other_than_transport_errors_pass_through() -> None:
    endpoint = resolve_endpoint("unix:///run/docker.sock", env={})
    with pytest.raises(KeyError), translate_transport_errors(endpoint):
        raise KeyError("x")


def test_read_timeout_is_engine_timeout(unix_server: tuple[str, ServerState]) -> None:
    path, _ = unix_server
    endpoint = resolve_endpoint(f"unix://{path}", env={})
    with pytest.raises(EngineTimeout, match=r"unix://.*engine\.sock sent nothing"):
        _get(endpoint, "/hang", timeout=httpx.Timeout(5.0, read=0.3))


def test_truncated_response_is_stream_error(unix_server: tuple[str, ServerState]) -> None:
    path, _ = unix_server
    endpoint = resolve_endpoint(f"unix://{path}", env={})
    with pytest.raises(StreamError, match="broke off"):
        _get(endpoint, "/truncated")


def test_npipe_is_refused_with_a_clear_error() -> None:
    endpoint = resolve_endpoint("npipe:////./pipe/docker_engine", env={})
    with pytest.raises(ValueError, match="named pipes are not supported"):
        create_transport(endpoint)


# --------------------------------------------------------------------------------------------
# tcp and TLS


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(directory: Path, name: str, cn: str, ext: str, ca: str = "ca") -> None:
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
        cwd=directory,
    )  # fmt: skip
    (directory / f"{name}.ext").write_text(ext + "\n")
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make test certificates")
    directory = tmp_path_factory.mktemp("certs")
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{ca}-key.pem", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN=buildsdk test {ca}",
            cwd=directory,
        )  # fmt: skip
    _issue(directory, "server", "127.0.0.1", "subjectAltName=IP:127.0.0.1")
    _issue(directory, "client", "buildsdk-client", "extendedKeyUsage=clientAuth")
    return Certs(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        other_ca=directory / "other-ca.pem",
    )


@pytest.fixture
def tls_server(certs: Certs) -> Iterator[tuple[int, ServerState]]:
    server = _TCPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    context.load_verify_locations(certs.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    for state in _serve(server):
        yield port, state


def test_tls_with_client_certificate_and_path_prefix(
    certs: Certs, tls_server: tuple[int, ServerState]
) -> None:
    port, state = tls_server
    tls = TLSConfig(ca_cert=certs.ca, client_cert=certs.client_cert, client_key=certs.client_key)
    endpoint = resolve_endpoint(f"tcp://127.0.0.1:{port}/engine/", tls=tls, env={})
    transport, base_url = create_transport(endpoint)
    assert base_url == f"https://127.0.0.1:{port}/engine"
    with httpx.Client(transport=transport, base_url=base_url, trust_env=False) as client:
        response = client.get("/_ping")
    assert response.json()["path"] == "/engine/_ping"
    assert state.seen[0].peer_cn == "buildsdk-client"


def test_tls_from_docker_cert_path_environment(
    certs: Certs, tls_server: tuple[int, ServerState], tmp_path: Path
) -> None:
    port, _ = tls_server
    for name, source in (("ca", certs.ca), ("cert", certs.client_cert), ("key", certs.client_key)):
        shutil.copy(source, tmp_path / f"{name}.pem")
    env = {
        "DOCKER_HOST": f"tcp://127.0.0.1:{port}",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(tmp_path),
    }
    endpoint = resolve_endpoint(env=env)
    transport, base_url = create_transport(endpoint, env=env)

    async def main() -> int:
        transport, base_url = create_async_transport(endpoint, env=env)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            return (await client.get("/_ping")).status_code

    with httpx.Client(transport=transport, base_url=base_url) as client:
        assert client.get("/_ping").status_code == 200
    assert asyncio.run(main()) == 200


def test_tls_with_the_wrong_ca_is_a_clear_error(
    certs: Certs, tls_server: tuple[int, ServerState]
) -> None:
    port, _ = tls_server
    tls = TLSConfig(
        ca_cert=certs.other_ca, client_cert=certs.client_cert, client_key=certs.client_key
    )
    endpoint = resolve_endpoint(f"tcp://127.0.0.1:{port}", tls=tls, env={})
    with pytest.raises(EngineUnreachable) as caught:
        _get(endpoint, "/_ping")
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.reason
    assert caught.value.hint is not None
    assert "certificate is not trusted" in caught.value.hint
    assert f"tcp://127.0.0.1:{port}" in str(caught.value)


def test_tls_without_verification_accepts_an_unknown_server(
    certs: Certs, tls_server: tuple[int, ServerState]
) -> None:
    port, _ = tls_server
    tls = TLSConfig(
        ca_cert=certs.other_ca,
        client_cert=certs.client_cert,
        client_key=certs.client_key,
        verify=False,
    )
    endpoint = resolve_endpoint(f"tcp://127.0.0.1:{port}", tls=tls, env={})
    transport, base_url = create_transport(endpoint)
    with httpx.Client(transport=transport, base_url=base_url) as client:
        assert client.get("/_ping").status_code == 200


def test_plain_http_to_a_tls_port_is_engine_unreachable(
    tls_server: tuple[int, ServerState],
) -> None:
    port, _ = tls_server
    endpoint = resolve_endpoint(f"tcp://127.0.0.1:{port}", env={})
    transport, base_url = create_transport(endpoint)
    assert base_url == f"http://127.0.0.1:{port}"
    with (
        httpx.Client(transport=transport, base_url=base_url) as client,
        pytest.raises((EngineUnreachable, StreamError)),
        translate_transport_errors(endpoint),
    ):
        client.get("/_ping")


def test_refused_tcp_port_is_engine_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = resolve_endpoint(f"tcp://127.0.0.1:{port}", env={})
    with pytest.raises(EngineUnreachable, match="Connection refused"):
        _get(endpoint, "/_ping")


def test_tcp_goes_through_the_proxy_from_the_environment() -> None:
    server = _TCPServer(("127.0.0.1", 0), _Handler)
    proxy_port = server.server_address[1]
    for state in _serve(server):
        endpoint = resolve_endpoint("tcp://engine.invalid:2375/prefix", env={})
        env = {"HTTP_PROXY": f"http://user:secret@127.0.0.1:{proxy_port}"}
        transport, base_url = create_transport(endpoint, env=env)
        with httpx.Client(transport=transport, base_url=base_url) as client:
            assert client.get("/_ping").status_code == 200
        assert state.seen[0].path == "http://engine.invalid:2375/prefix/_ping"
        assert state.seen[0].headers["Proxy-Authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    ("scheme", "host", "env", "expected"),
    [
        ("http", "engine.example", {"HTTP_PROXY": "proxy:3128"}, "http://proxy:3128"),
        ("http", "engine.example", {"http_proxy": "http://p:1"}, "http://p:1"),
        ("https", "engine.example", {"HTTP_PROXY": "http://p:1"}, None),
        ("https", "engine.example", {"HTTPS_PROXY": "http://p:1"}, "http://p:1"),
        ("http", "127.0.0.1", {"HTTP_PROXY": "http://p:1"}, None),
        ("http", "localhost", {"HTTP_PROXY": "http://p:1"}, None),
        ("http", "::1", {"HTTP_PROXY": "http://p:1"}, None),
        ("http", "engine.example", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "*"}, None),
        ("http", "a.engine.example", {"HTTP_PROXY": "p:1", "NO_PROXY": "engine.example"}, None),
        ("http", "a.engine.example", {"HTTP_PROXY": "p:1", "no_proxy": ".engine.example"}, None),
        ("http", "engine.example", {"HTTP_PROXY": "p:1", "NO_PROXY": "x.com, engine.example"},
         None),
        ("http", "notengine.example", {"HTTP_PROXY": "p:1", "NO_PROXY": "engine.example"},
         "http://p:1"),
        ("http", "10.1.2.3", {"HTTP_PROXY": "p:1", "NO_PROXY": "10.0.0.0/8"}, None),
        ("http", "11.1.2.3", {"HTTP_PROXY": "p:1", "NO_PROXY": "10.0.0.0/8"}, "http://p:1"),
        ("http", "engine.example", {"HTTP_PROXY": "p:1", "NO_PROXY": "engine.example:2375"},
         None),
        ("http", "engine.example", {"HTTP_PROXY": "p:1", "NO_PROXY": "engine.example:9"},
         "http://p:1"),
    ],
)  # fmt: skip
def test_proxy_choice_follows_go(
    scheme: str, host: str, env: dict[str, str], expected: str | None
) -> None:
    assert _proxy_from_env(scheme, host, 2375, env) == expected


def test_proxy_is_not_used_when_trust_env_is_false(unix_server: tuple[str, ServerState]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = resolve_endpoint("tcp://engine.invalid:2375", env={})
    env = {"HTTP_PROXY": f"http://127.0.0.1:{port}"}
    transport, base_url = create_transport(endpoint, env=env, trust_env=False)
    with (
        httpx.Client(transport=transport, base_url=base_url) as client,
        pytest.raises(EngineUnreachable) as caught,
        translate_transport_errors(endpoint),
    ):
        client.get("/_ping")
    assert "Connection refused" not in caught.value.reason  # the proxy port was not tried


# --------------------------------------------------------------------------------------------
# ssh through a fake `ssh` executable

_FAKE_SSH = """\
import json, os, socket, sys, threading, time
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(json.dumps({"pid": os.getpid(), "argv": sys.argv[1:]}) + "\\n")
mode = os.environ.get("FAKE_SSH_MODE", "bridge")
if mode == "deny":
    sys.stderr.write("root@127.0.0.1: Permission denied (publickey).\\r\\n")
    sys.exit(255)
if mode == "sleep":
    time.sleep(60)
if mode == "stubborn":
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
conn = socket.socket(socket.AF_UNIX)
conn.connect(os.environ["FAKE_SSH_SOCKET"])

def upstream():
    while True:
        data = os.read(0, 65536)
        if not data:
            conn.shutdown(socket.SHUT_WR)
            return
        conn.sendall(data)

threading.Thread(target=upstream, daemon=True).start()
while True:
    data = conn.recv(65536)
    if not data:
        break
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
if mode == "die":
    sys.stderr.write("client_loop: send disconnect: Broken pipe\\n")
    sys.exit(255)
if mode == "stubborn":
    time.sleep(60)
"""


@dataclass
class FakeSSH:
    log: Path
    socket_path: str
    state: ServerState
    monkeypatch: pytest.MonkeyPatch

    def mode(self, mode: str) -> None:
        self.monkeypatch.setenv("FAKE_SSH_MODE", mode)

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake_ssh(
    short_dir: Path, unix_server: tuple[str, ServerState], monkeypatch: pytest.MonkeyPatch
) -> FakeSSH:
    socket_path, state = unix_server
    bin_dir = short_dir / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ssh"
    script.write_text(f"#!{sys.executable}\n{_FAKE_SSH}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = short_dir / "ssh.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    monkeypatch.setenv("FAKE_SSH_SOCKET", socket_path)
    monkeypatch.setenv("FAKE_SSH_MODE", "bridge")
    return FakeSSH(log, socket_path, state, monkeypatch)


def _process_gone(pid: int) -> bool:
    # A reaped process has no /proc entry; a zombie still has one.
    return not Path(f"/proc/{pid}").exists()


needs_proc = pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")


@needs_proc
def test_ssh_runs_dial_stdio_and_reuses_the_connection(fake_ssh: FakeSSH, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    env = {"BUILDSDK_SSH_CONFIG": str(config)}
    endpoint = resolve_endpoint("ssh://root@engine.example:2222/run/docker.sock", env=env)
    transport, base_url = create_transport(endpoint, connect_timeout=7)
    assert base_url == SSH_BASE_URL
    with httpx.Client(transport=transport, base_url=base_url) as client:
        first = client.get("/v1.41/_ping")
        second = client.post("/v1.41/build", content=b"\0" * 3_000_000)
        calls = fake_ssh.calls()
        assert len(calls) == 1  # one ssh process served both requests (keep-alive)
        assert not _process_gone(calls[0]["pid"])
    assert first.json() == {"path": "/v1.41/_ping", "received": 0}
    assert second.json() == {"path": "/v1.41/build", "received": 3_000_000}
    assert fake_ssh.state.seen[0].headers["Host"] == "docker.example.com"
    assert calls[0]["argv"] == [
        "-F", str(config), "-o", "ConnectTimeout=7", "-T", "-l", "root", "-p", "2222",
        "--", "engine.example", "docker", "--host", "unix:///run/docker.sock",
        "system", "dial-stdio",
    ]  # fmt: skip
    assert _process_gone(calls[0]["pid"])  # closing the client ended and reaped ssh


@needs_proc
def test_async_ssh_transport(fake_ssh: FakeSSH) -> None:
    endpoint = resolve_endpoint("ssh://engine.example", env={})

    async def main() -> tuple[httpx.Response, httpx.Response]:
        transport, base_url = create_async_transport(endpoint)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            first = await client.get("/_ping")
            second = await client.post("/build", content=b"a" * 2_000_000)
            return first, second

    first, second = asyncio.run(main())
    assert first.json() == {"path": "/_ping", "received": 0}
    assert second.json() == {"path": "/build", "received": 2_000_000}
    calls = fake_ssh.calls()
    assert len(calls) == 1
    assert calls[0]["argv"] == [
        "-o", "ConnectTimeout=30", "-T", "--", "engine.example", "docker", "system", "dial-stdio",
    ]  # fmt: skip
    assert _process_gone(calls[0]["pid"])


def _ssh_error(endpoint: Endpoint, timeout: httpx.Timeout | None = None) -> BaseException:
    transport, base_url = create_transport(endpoint)
    with httpx.Client(transport=transport, base_url=base_url, timeout=timeout) as client:
        try:
            with translate_transport_errors(endpoint):
                client.get("/_ping")
        except Exception as exc:
            return exc
    raise AssertionError("the request did not fail")


def _async_ssh_error(endpoint: Endpoint, timeout: httpx.Timeout | None = None) -> BaseException:
    async def main() -> BaseException:
        transport, base_url = create_async_transport(endpoint)
        async with httpx.AsyncClient(
            transport=transport, base_url=base_url, timeout=timeout
        ) as client:
            try:
                with translate_transport_errors(endpoint):
                    await client.get("/_ping")
            except Exception as exc:
                return exc
        raise AssertionError("the request did not fail")

    return asyncio.run(main())


@needs_proc
@pytest.mark.parametrize("run", [_ssh_error, _async_ssh_error], ids=["sync", "async"])
def test_ssh_login_failure_says_what_ssh_printed(fake_ssh: FakeSSH, run: Any) -> None:
    fake_ssh.mode("deny")
    error = run(resolve_endpoint("ssh://root@engine.example", env={}))
    assert isinstance(error, EngineUnreachable)
    assert error.address == "ssh://root@engine.example"
    assert (
        error.reason == "ssh exited with status 255: root@127.0.0.1: Permission denied (publickey)."
    )
    assert error.hint is not None
    assert "`ssh root@engine.example docker version`" in error.hint
    assert all(_process_gone(call["pid"]) for call in fake_ssh.calls())


@needs_proc
def test_ssh_dying_mid_response_is_stream_error_with_stderr(fake_ssh: FakeSSH) -> None:
    fake_ssh.mode("die")
    endpoint = resolve_endpoint("ssh://engine.example", env={})
    with pytest.raises(StreamError, match="Broken pipe") as caught:
        _get(endpoint, "/truncated")
    assert "ssh exited with status 255" in str(caught.value)


@needs_proc
def test_async_ssh_dying_mid_response_is_stream_error(fake_ssh: FakeSSH) -> None:
    fake_ssh.mode("die")
    endpoint = resolve_endpoint("ssh://engine.example", env={})

    async def main() -> None:
        transport, base_url = create_async_transport(endpoint)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            with translate_transport_errors(endpoint):
                await client.get("/truncated")

    with pytest.raises(StreamError, match="ssh exited with status 255: client_loop"):
        asyncio.run(main())


@needs_proc
@pytest.mark.parametrize("run", [_ssh_error, _async_ssh_error], ids=["sync", "async"])
def test_ssh_read_timeout_is_engine_timeout_and_kills_ssh(fake_ssh: FakeSSH, run: Any) -> None:
    fake_ssh.mode("sleep")
    error = run(resolve_endpoint("ssh://engine.example", env={}), httpx.Timeout(5.0, read=0.3))
    assert isinstance(error, EngineTimeout)
    assert "ssh://engine.example sent nothing" in str(error)
    calls = fake_ssh.calls()
    assert len(calls) == 1
    assert _process_gone(calls[0]["pid"])


@pytest.mark.parametrize("run", [_ssh_error, _async_ssh_error], ids=["sync", "async"])
def test_missing_ssh_executable(monkeypatch: pytest.MonkeyPatch, short_dir: Path, run: Any) -> None:
    monkeypatch.setenv("PATH", str(short_dir))
    error = run(resolve_endpoint("ssh://engine.example", env={}))
    assert isinstance(error, EngineUnreachable)
    assert error.reason.startswith("cannot run ssh: ")


@needs_proc
def test_idle_connection_whose_ssh_died_is_not_reused(fake_ssh: FakeSSH) -> None:
    endpoint = resolve_endpoint("ssh://engine.example", env={})
    transport, base_url = create_transport(endpoint)
    with httpx.Client(transport=transport, base_url=base_url) as client:
        assert client.get("/_ping").status_code == 200
        first_pid = fake_ssh.calls()[0]["pid"]
        os.kill(first_pid, 9)
        # Wait until the whole process has exited (waitable), without reaping it.
        for _ in range(250):
            if os.waitid(os.P_PID, first_pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                break
            threading.Event().wait(0.02)
        assert client.get("/_ping").status_code == 200
    calls = fake_ssh.calls()
    assert len(calls) == 2
    assert all(_process_gone(call["pid"]) for call in calls)


def test_ssh_target_command_quotes_the_remote_socket_path() -> None:
    target = SSHTarget(hostname="h", socket_path="/run/my docker;rm -rf ~.sock")
    argv = target.command()
    assert argv[argv.index("--host") + 1] == "'unix:///run/my docker;rm -rf ~.sock'"


def test_async_missing_unix_socket_is_engine_unreachable(short_dir: Path) -> None:
    endpoint = resolve_endpoint(f"unix://{short_dir}/absent.sock", env={})

    async def main() -> None:
        transport, base_url = create_async_transport(endpoint)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            with translate_transport_errors(endpoint):
                await client.get("/_ping")

    with pytest.raises(EngineUnreachable, match="Is the docker daemon running"):
        asyncio.run(main())


@needs_proc
def test_async_ssh_close_cut_short_by_a_task_cancel_is_finished_by_the_next(
    fake_ssh: FakeSSH,
) -> None:
    # The session server closes its stream from a writer task that the reader may cancel;
    # asyncio's Task.cancel() gets through anyio's shield. An ssh that ignores SIGTERM keeps
    # the first close waiting for the SIGKILL when the cancel lands.
    fake_ssh.mode("stubborn")
    endpoint = resolve_endpoint("ssh://engine.example", env={})

    async def main() -> tuple[bool, bool]:
        transport, base_url = create_async_transport(endpoint)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            response = await client.get("/_ping")
            stream = response.extensions["network_stream"]
            closing = asyncio.ensure_future(stream.aclose())
            await asyncio.sleep(0.3)
            closing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await closing
            pid = fake_ssh.calls()[0]["pid"]
            alive_after_cancel = not _process_gone(pid)
            await stream.aclose()
            return alive_after_cancel, _process_gone(pid)

    alive_after_cancel, gone = asyncio.run(main())
    # Still running after the cut-short close, reaped by the second one: no process is left
    # for the closed event loop (a ResourceWarning at collection, an error here).
    assert alive_after_cancel
    assert gone
    gc.collect()


@needs_proc
def test_cancelled_async_request_ends_the_ssh_process(fake_ssh: FakeSSH) -> None:
    endpoint = resolve_endpoint("ssh://engine.example", env={})

    async def main() -> bool:
        transport, base_url = create_async_transport(endpoint)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            task = asyncio.ensure_future(client.get("/hang"))
            for _ in range(250):
                if fake_ssh.state.seen:
                    break
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Cancellation closed the connection itself, before the client was closed.
            return _process_gone(fake_ssh.calls()[0]["pid"])

    assert asyncio.run(main()) is True
    assert fake_ssh.state.seen[0].path == "/hang"
