"""httpx transports for every kind of engine address: unix socket, tcp (with TLS), and ssh.

Why this module exists: httpx speaks HTTP over TCP and unix sockets out of the box, but an
engine behind `ssh://` is reached the way the Docker CLI reaches it -- by running
`ssh ... docker system dial-stdio` and speaking HTTP/1.1 over the process's stdin and stdout.
That is done below as an httpcore network backend whose "connection" is an ssh process, so
httpcore's connection pool, keep-alive and HTTP/1.1 parsing are reused unchanged. Each pooled
connection is one ssh process; closing the connection ends and reaps the process.

Choices worth knowing:

* Base URLs: `http://api.moby.localhost` for unix sockets (the Go client's placeholder host,
  sent as the `Host` header), `http://docker.example.com` for ssh (the CLI's), and
  `http[s]://host:port/<prefix>` for tcp.
* Proxies: like the Go client, tcp engines honour `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`
  (never for loopback addresses); unix sockets and ssh never use a proxy. The transports
  decide this themselves, so clients should create their `httpx.Client` with
  `trust_env=False` -- httpx ignores proxy variables anyway once a transport is given.
* The ssh transport is POSIX only (it waits on pipes with `poll`).
* `translate_transport_errors()` turns httpx's exceptions into buildsdk's: no connection
  is `EngineUnreachable` with a hint, a timeout is `EngineTimeout`, a connection that breaks
  after it was made is `StreamError`.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import math
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, Final

import anyio
import anyio.abc
import httpcore
import httpx

from buildsdk.endpoint import DEFAULT_CONNECT_TIMEOUT, SSH_BASE_URL, ConfigError, Endpoint
from buildsdk.errors import EngineTimeout, EngineUnreachable, StreamError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "SSH_BASE_URL",
    "UNIX_BASE_URL",
    "BorrowedAsyncTransport",
    "base_url",
    "create_async_transport",
    "create_transport",
    "translate_transport_errors",
]

UNIX_BASE_URL: Final = "http://api.moby.localhost"
"""Base URL for unix-socket engines; its host is the `Host` header the Go client sends."""

_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)
# The same limits for the pools built on httpcore directly, which take them one by one.
_POOL_LIMITS: Final[dict[str, Any]] = {
    "max_connections": _LIMITS.max_connections,
    "max_keepalive_connections": _LIMITS.max_keepalive_connections,
    "keepalive_expiry": _LIMITS.keepalive_expiry,
}
_STDERR_LIMIT: Final = 8192
_EXIT_WAIT: Final = 2.0
_KILL_WAIT: Final = 1.0


# --------------------------------------------------------------------------------------------
# Entry points


def create_transport(
    endpoint: Endpoint,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    trust_env: bool = True,
    env: Mapping[str, str] | None = None,
) -> tuple[httpx.BaseTransport, str]:
    """Return a sync httpx transport for the endpoint and the base URL to use with it.

    `connect_timeout` bounds the ssh login (`ssh -o ConnectTimeout`); for unix and tcp the
    httpx client's own connect timeout applies. `trust_env` and `env` decide whether a tcp
    engine is reached through the proxy named by `HTTPS_PROXY`/`HTTP_PROXY`.
    Raises `ConfigError` for an endpoint this platform cannot reach (npipe) or bad TLS files.
    """
    if endpoint.scheme == "unix":
        pool = httpcore.ConnectionPool(
            uds=endpoint.socket_path, network_backend=_UnixBackend(), **_POOL_LIMITS
        )
        return _PoolTransport(pool), UNIX_BASE_URL
    if endpoint.scheme == "tcp":
        verify, base_url, proxy = _tcp_settings(endpoint, trust_env=trust_env, env=env)
        transport = httpx.HTTPTransport(verify=verify, proxy=proxy, limits=_LIMITS)
        return transport, base_url
    if endpoint.scheme == "ssh":
        argv = _ssh_argv(endpoint, connect_timeout)
        pool = httpcore.ConnectionPool(network_backend=_SSHBackend(argv), **_POOL_LIMITS)
        return _PoolTransport(pool), SSH_BASE_URL
    raise ConfigError(f"{endpoint} cannot be reached: named pipes are not supported")


class BorrowedAsyncTransport(httpx.AsyncBaseTransport):
    """An async transport that sends through another one and leaves closing it to its owner.

    A sync client's BuildKit session opens and closes an `httpx.AsyncClient` of its own; a
    transport the user handed to the client must outlive it.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the borrowed transport."""
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        """Leave the borrowed transport open: its owner closes it."""


def base_url(endpoint: Endpoint) -> str:
    """The base URL requests to `endpoint` use: the engine's address for tcp, a fixed name
    for a unix socket or ssh (the `Host` header the Docker CLI sends there).

    Raises `ConfigError` for an endpoint this platform cannot reach (npipe).
    """
    if endpoint.scheme == "unix":
        return UNIX_BASE_URL
    if endpoint.scheme == "ssh":
        return SSH_BASE_URL
    if endpoint.scheme == "tcp":
        hostname, port = endpoint.tcp_address
        netloc = f"[{hostname}]:{port}" if ":" in hostname else f"{hostname}:{port}"
        scheme = "https" if endpoint.tls is not None else "http"
        return f"{scheme}://{netloc}{endpoint.base_path}"
    raise ConfigError(f"{endpoint} cannot be reached: named pipes are not supported")


def create_async_transport(
    endpoint: Endpoint,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    trust_env: bool = True,
    env: Mapping[str, str] | None = None,
) -> tuple[httpx.AsyncBaseTransport, str]:
    """Return an async httpx transport for the endpoint and the base URL to use with it.

    The async twin of `create_transport()`, with the same arguments and rules.
    """
    if endpoint.scheme == "unix":
        # httpx's own transport makes a TLS context (loading the CA bundle, about 40 ms of
        # CPU) even for a unix socket, where TLS is never spoken; a Control API build opens
        # several async transports, so the pool is used directly, as the sync path does.
        pool = httpcore.AsyncConnectionPool(uds=endpoint.socket_path, **_POOL_LIMITS)
        return _AsyncPoolTransport(pool), UNIX_BASE_URL
    if endpoint.scheme == "tcp":
        verify, base_url, proxy = _tcp_settings(endpoint, trust_env=trust_env, env=env)
        return httpx.AsyncHTTPTransport(verify=verify, proxy=proxy, limits=_LIMITS), base_url
    if endpoint.scheme == "ssh":
        argv = _ssh_argv(endpoint, connect_timeout)
        pool = httpcore.AsyncConnectionPool(network_backend=_AsyncSSHBackend(argv), **_POOL_LIMITS)
        return _AsyncPoolTransport(pool), SSH_BASE_URL
    raise ConfigError(f"{endpoint} cannot be reached: named pipes are not supported")


# --------------------------------------------------------------------------------------------
# tcp


def _tcp_settings(
    endpoint: Endpoint, *, trust_env: bool, env: Mapping[str, str] | None
) -> tuple[ssl.SSLContext | bool, str, str | None]:
    hostname, port = endpoint.tcp_address
    scheme = "https" if endpoint.tls is not None else "http"
    # Without TLS the SSL context is never used; True keeps httpx's verifying default.
    verify: ssl.SSLContext | bool = True
    if endpoint.tls is not None:
        verify = endpoint.tls.ssl_context()
    proxy = None
    if trust_env:
        proxy = _proxy_from_env(scheme, hostname, port, os.environ if env is None else env)
    return verify, base_url(endpoint), proxy


def _env_value(env: Mapping[str, str], name: str) -> str:
    return env.get(name.upper()) or env.get(name.lower()) or ""


def _proxy_from_env(scheme: str, hostname: str, port: int, env: Mapping[str, str]) -> str | None:
    """Pick the proxy for one engine address as Go's `http.ProxyFromEnvironment` does."""
    proxy = _env_value(env, f"{scheme}_proxy")
    if not proxy:
        return None
    host = hostname.lower()
    if host == "localhost" or _is_loopback(host):
        return None
    for entry in _env_value(env, "no_proxy").replace(" ", "").split(","):
        if entry and _no_proxy_matches(entry.lower(), host, port):
            return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    return proxy


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_proxy_matches(entry: str, host: str, port: int) -> bool:
    if entry == "*":
        return True
    with contextlib.suppress(ValueError):
        network = ipaddress.ip_network(entry, strict=False)
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(host) in network
        return False
    name, _, entry_port = entry.rpartition(":") if re.search(r":\d+$", entry) else (entry, "", "")
    if entry_port and int(entry_port) != port:
        return False
    name = name.strip("[]")
    if name.startswith("*."):
        name = name[1:]
    if name.startswith("."):
        return host.endswith(name)
    return host == name or host.endswith("." + name)


# --------------------------------------------------------------------------------------------
# httpx <-> httpcore for the ssh pools and the sync unix pool
#
# httpx.HTTPTransport cannot take a network backend, so these small classes do what it
# does around httpcore: translate the request, and turn httpcore's errors into httpx's so
# that callers see the same exceptions whatever the transport.

_ERROR_MAP: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextlib.contextmanager
def _httpcore_to_httpx() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core_error, httpx_error in _ERROR_MAP:
            if isinstance(exc, core_error):
                raise httpx_error(str(exc)) from exc
        raise


def _core_request(request: httpx.Request, content: Any) -> httpcore.Request:
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(
            scheme=request.url.raw_scheme,
            host=request.url.raw_host,
            port=request.url.port,
            target=request.url.raw_path,
        ),
        headers=request.headers.raw,
        content=content,
        extensions=request.extensions,
    )


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpcore_to_httpx():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with _httpcore_to_httpx():
                close()


class _AsyncResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpcore_to_httpx():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            with _httpcore_to_httpx():
                await aclose()


class _PoolTransport(httpx.BaseTransport):
    """An httpx transport in front of any httpcore connection pool."""

    def __init__(self, pool: httpcore.ConnectionPool) -> None:
        self._pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.SyncByteStream):
            raise TypeError("a sync transport needs a sync request body")
        with _httpcore_to_httpx():
            response = self._pool.handle_request(_core_request(request, request.stream))
        if not isinstance(response.stream, Iterable):
            raise TypeError("httpcore returned a non-iterable response stream")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        with _httpcore_to_httpx():
            self._pool.close()


class _AsyncPoolTransport(httpx.AsyncBaseTransport):
    """An async httpx transport in front of any async httpcore connection pool."""

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("an async transport needs an async request body")
        with _httpcore_to_httpx():
            response = await self._pool.handle_async_request(_core_request(request, request.stream))
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_AsyncResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        with _httpcore_to_httpx():
            await self._pool.aclose()


# --------------------------------------------------------------------------------------------
# unix (sync): httpcore's own backend leaves the socket open when connect() fails, which
# surfaces as a ResourceWarning in every program that meets a stopped engine.


class _UnixSocketStream(httpcore.NetworkStream):
    """A connected unix socket as an httpcore stream, with per-call timeouts."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            self._sock.settimeout(timeout)
            return self._sock.recv(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.UnsupportedProtocol("TLS is not spoken over the engine's unix socket")

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._sock
        if info == "is_readable":
            if self._sock.fileno() < 0:
                return True
            poller = select.poll()
            poller.register(self._sock, select.POLLIN)
            return bool(poller.poll(0))
        return None


class _UnixBackend(httpcore.NetworkBackend):
    """Opens unix-socket connections for an httpcore pool, closing the socket on failure."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.UnsupportedProtocol("this backend opens unix sockets only")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            sock.connect(path)
        except TimeoutError as exc:
            sock.close()
            raise httpcore.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            sock.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return _UnixSocketStream(sock)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# --------------------------------------------------------------------------------------------
# ssh: a network backend whose connections are `ssh ... docker system dial-stdio` processes


def _ssh_argv(endpoint: Endpoint, connect_timeout: float) -> list[str]:
    if endpoint.ssh is None:
        raise ConfigError(f"{endpoint} has no ssh settings")
    return endpoint.ssh.command(connect_timeout=connect_timeout)


class _StderrTail:
    """Keeps the last bytes a child process writes to stderr, drained by a thread.

    A thread rather than the read loop, so that a chatty ssh can never block on a full pipe
    while the connection sits idle in the pool.
    """

    def __init__(self) -> None:
        self._read_fd, self.write_fd = os.pipe()
        self._data = bytearray()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        os.close(self.write_fd)
        self._thread = threading.Thread(target=self._drain, name="buildsdk-ssh-stderr", daemon=True)
        self._thread.start()

    def abandon(self) -> None:
        for fd in (self._read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _drain(self) -> None:
        try:
            while True:
                try:
                    chunk = os.read(self._read_fd, 4096)
                except OSError:
                    return
                if not chunk:
                    return
                with self._lock:
                    self._data += chunk
                    del self._data[:-_STDERR_LIMIT]
        finally:
            with contextlib.suppress(OSError):
                os.close(self._read_fd)

    def finished(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def text(self) -> str:
        with self._lock:
            raw = bytes(self._data)
        return " ".join(raw.decode("utf-8", "replace").split())


def _exit_message(program: str, code: int, stderr: str) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{program} was killed by {signal.Signals(-code).name}" + (
                f": {stderr}" if stderr else ""
            )
    text = f"{program} exited with status {code}"
    return f"{text}: {stderr}" if stderr else text


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The process leads its own session (start_new_session), so its group is its own:
    # this reaches a ProxyCommand that ssh started, too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class _SSHStream(httpcore.NetworkStream):
    """One ssh process; its stdout and stdin are the two directions of the connection."""

    def __init__(self, argv: list[str]) -> None:
        self._program = os.path.basename(argv[0])
        self._stderr = _StderrTail()
        stdin_r, self._stdin = os.pipe()
        self._stdout, stdout_w = os.pipe()
        try:
            # A session of its own: ssh has no terminal to prompt on (it fails instead of
            # hanging), Ctrl-C at the terminal does not cut a request in half, and close()
            # can signal the whole group, ProxyCommand children included.
            self._process = subprocess.Popen(
                argv,
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=self._stderr.write_fd,
                start_new_session=True,
            )
        except OSError as exc:
            self._stderr.abandon()
            for fd in (self._stdin, self._stdout):
                os.close(fd)
            raise httpcore.ConnectError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        self._stderr.start()
        os.set_blocking(self._stdin, False)
        os.set_blocking(self._stdout, False)
        self._received = False
        self._closed = False

    def _wait_fd(self, fd: int, events: int, deadline: float | None) -> bool:
        poller = select.poll()
        poller.register(fd, events)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return bool(poller.poll(None if remaining is None else math.ceil(remaining * 1000)))

    def _failure(self, on_eof: bool) -> Exception | None:
        """Explain a closed pipe from the exit status and stderr of ssh, once it has exited."""
        try:
            code = self._process.wait(timeout=_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            code = None
        if code == 0 and on_eof:
            return None
        self._stderr.join(_KILL_WAIT)
        if code is None:
            message = f"the connection through {self._program} closed"
        else:
            message = _exit_message(self._program, code, self._stderr.text())
        # Nothing ever came back and ssh failed: the engine was never reached, so this is a
        # failed connect. Status 0 means the remote dial-stdio ran and ended because the engine
        # closed the connection (say after refusing an upload): its answer may still be in the
        # pipe, so a write error it is, and httpcore goes on to read that answer.
        if not self._received and code != 0:
            return httpcore.ConnectError(message)
        return httpcore.ReadError(message) if on_eof else httpcore.WriteError(message)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not self._wait_fd(self._stdout, select.POLLIN, deadline):
                raise httpcore.ReadTimeout(f"{self._program} sent nothing for {timeout} s")
            try:
                data = os.read(self._stdout, max_bytes)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise httpcore.ReadError(str(exc)) from exc
            if data:
                self._received = True
                return data
            failure = self._failure(on_eof=True)
            if failure is not None:
                raise failure
            return b""

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(buffer)
        while view:
            if not self._wait_fd(self._stdin, select.POLLOUT, deadline):
                raise httpcore.WriteTimeout(f"{self._program} accepted nothing for {timeout} s")
            try:
                view = view[os.write(self._stdin, view) :]
            except BlockingIOError:
                continue
            except OSError as exc:
                failure = self._failure(on_eof=False)
                raise (failure or httpcore.WriteError(str(exc))) from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in (self._stdin, self._stdout):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._process.poll() is None:
            _signal_group(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=_KILL_WAIT)
            except subprocess.TimeoutExpired:
                _signal_group(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._stderr.join(_KILL_WAIT)

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.UnsupportedProtocol("TLS is not spoken over docker system dial-stdio")

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks this of idle pooled connections: readable means the remote side
            # closed (or ssh died), so the connection must not be reused.
            if self._closed or self._process.poll() is not None:
                return True
            poller = select.poll()
            poller.register(self._stdout, select.POLLIN)
            return bool(poller.poll(0))
        return None


class _SSHBackend(httpcore.NetworkBackend):
    """An httpcore backend whose every connection is a new `ssh ... dial-stdio` process."""

    def __init__(self, argv: list[str]) -> None:
        self._argv = argv

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _SSHStream(self._argv)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.UnsupportedProtocol("the ssh transport does not open unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _AsyncSSHStream(httpcore.AsyncNetworkStream):
    """The async twin of `_SSHStream`, on an `anyio` process (asyncio or trio)."""

    def __init__(self, process: anyio.abc.Process, program: str, stderr: _StderrTail) -> None:
        self._process = process
        self._program = program
        self._stderr = stderr
        self._received = False
        self._closed = False
        self._reaped = False

    @classmethod
    async def spawn(cls, argv: list[str]) -> _AsyncSSHStream:
        stderr = _StderrTail()
        try:
            process = await anyio.open_process(argv, stderr=stderr.write_fd, start_new_session=True)
        except OSError as exc:
            stderr.abandon()
            raise httpcore.ConnectError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        stderr.start()
        return cls(process, os.path.basename(argv[0]), stderr)

    async def _join_stderr(self) -> None:
        deadline = time.monotonic() + _KILL_WAIT
        while not self._stderr.finished() and time.monotonic() < deadline:
            await anyio.sleep(0.01)

    async def _failure(self, on_eof: bool) -> Exception | None:
        with anyio.move_on_after(_EXIT_WAIT):
            await self._process.wait()
        code = self._process.returncode
        if code == 0 and on_eof:
            return None
        await self._join_stderr()
        if code is None:
            message = f"the connection through {self._program} closed"
        else:
            message = _exit_message(self._program, code, self._stderr.text())
        if not self._received and code != 0:  # see _SSHStream._failure
            return httpcore.ConnectError(message)
        return httpcore.ReadError(message) if on_eof else httpcore.WriteError(message)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        stdout = self._process.stdout
        if stdout is None:
            raise httpcore.ReadError("the ssh process has no stdout")
        try:
            with anyio.fail_after(timeout):
                data = await stdout.receive(max_bytes)
        except anyio.EndOfStream:
            data = b""
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(f"{self._program} sent nothing for {timeout} s") from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc
        if data:
            self._received = True
            return data
        failure = await self._failure(on_eof=True)
        if failure is not None:
            raise failure
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        stdin = self._process.stdin
        if stdin is None:
            raise httpcore.WriteError("the ssh process has no stdin")
        try:
            with anyio.fail_after(timeout):
                await stdin.send(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(
                f"{self._program} accepted nothing for {timeout} s"
            ) from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            failure = await self._failure(on_eof=False)
            raise (failure or httpcore.WriteError(str(exc) or type(exc).__name__)) from exc

    async def aclose(self) -> None:
        if self._reaped:
            return
        first = not self._closed
        self._closed = True
        # Shielded: an anyio cancellation must not leave the ssh process unreaped. A native
        # asyncio `Task.cancel()` still gets through a shield, so a close cut short that way
        # is finished by the next call instead of being taken as done: the owner of the
        # stream closes it again, and the process exits and is reaped before the event loop
        # that watches it ends (else asyncio never learns its exit status).
        with anyio.CancelScope(shield=True):
            if first:
                if self._process.stdin is not None:
                    with contextlib.suppress(Exception):
                        await self._process.stdin.aclose()
                if self._process.returncode is None:
                    _signal_group(self._process.pid, signal.SIGTERM)
            if self._process.returncode is None:
                with anyio.move_on_after(_KILL_WAIT):
                    await self._process.wait()
                if self._process.returncode is None:
                    _signal_group(self._process.pid, signal.SIGKILL)
            await self._process.aclose()
            self._reaped = True
            await self._join_stderr()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("TLS is not spoken over docker system dial-stdio")

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._closed or self._process.returncode is not None
        return None


class _AsyncSSHBackend(httpcore.AsyncNetworkBackend):
    """The async twin of `_SSHBackend`."""

    def __init__(self, argv: list[str]) -> None:
        self._argv = argv

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await _AsyncSSHStream.spawn(self._argv)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("the ssh transport does not open unix sockets")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


# --------------------------------------------------------------------------------------------
# Errors


def _redact(text: str) -> str:
    return re.sub(r"(://[^/@\s:]*):[^/@\s]*@", r"\1:***@", text)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text or text == "All connection attempts failed":
        # anyio (under the async transports) empties the reason or sums it up; the errno
        # further down the chain is what the sync transports report, so say it the same way.
        for cause in _causes(exc):
            if isinstance(cause, OSError) and cause.errno:
                text = f"[Errno {cause.errno}] {os.strerror(cause.errno)}"
                break
    return _redact(text or type(exc).__name__)


def _hint(endpoint: Endpoint, exc: BaseException) -> str:
    text = " ".join(str(e) for e in _causes(exc))
    if endpoint.scheme == "ssh":
        target = str(endpoint)
        if endpoint.ssh is not None:
            ssh = endpoint.ssh
            port = f"-p {ssh.port} " if ssh.port else ""
            target = f"{port}{ssh.user + '@' if ssh.user else ''}{ssh.hostname}"
        return (
            f"check that `ssh {target} docker version` works without a prompt; the remote "
            "host needs Docker 18.09 or newer"
        )
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "the engine's certificate is not trusted: check DOCKER_CERT_PATH or the TLS CA"
    if any(s in text for s in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "EOF occurred")):
        return "the engine may not speak TLS on this port, or only TLS: check DOCKER_TLS_VERIFY"
    errnos = {getattr(e, "errno", None) for e in _causes(exc)}
    if endpoint.scheme == "unix" and (errno.EACCES in errnos or "Permission denied" in text):
        return f"is your user allowed to open {endpoint.socket_path} (the docker group)?"
    if endpoint.scheme == "tcp" and "Name or service not known" in text:
        return "the host name does not resolve: check DOCKER_HOST"
    return "Is the docker daemon running? Check DOCKER_HOST and the docker context"


@contextlib.contextmanager
def translate_transport_errors(endpoint: Endpoint) -> Iterator[None]:
    """Turn httpx transport errors raised inside the block into buildsdk errors.

    No connection -> `EngineUnreachable` (address, reason, hint); any timeout ->
    `EngineTimeout`; a connection that breaks or speaks broken HTTP -> `StreamError`.
    Works around `await` too. Messages never contain credentials.
    """
    address = str(endpoint)
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise EngineTimeout(f"connecting to the engine at {address} timed out") from exc
    except httpx.ReadTimeout as exc:
        raise EngineTimeout(
            f"the engine at {address} sent nothing within the read timeout"
        ) from exc
    except httpx.WriteTimeout as exc:
        raise EngineTimeout(f"sending to the engine at {address} timed out") from exc
    except httpx.PoolTimeout as exc:
        raise EngineTimeout(
            f"no connection to the engine at {address} became free in time"
        ) from exc
    except httpx.TimeoutException as exc:
        raise EngineTimeout(f"talking to the engine at {address} timed out") from exc
    except httpx.ProxyError as exc:
        raise EngineUnreachable(
            address, _reason(exc), "check HTTPS_PROXY, HTTP_PROXY and NO_PROXY"
        ) from exc
    except httpx.ConnectError as exc:
        raise EngineUnreachable(address, _reason(exc), _hint(endpoint, exc)) from exc
    except httpx.RemoteProtocolError as exc:
        raise StreamError(
            f"the engine at {address} broke off or sent invalid HTTP: {_reason(exc)}"
        ) from exc
    except httpx.NetworkError as exc:
        raise StreamError(
            f"the connection to the engine at {address} broke: {_reason(exc)}"
        ) from exc
