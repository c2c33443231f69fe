"""Control API channels to a standalone BuildKit daemon (`buildkitd`), not through Docker.

Why a separate door: buildkitd serves gRPC over HTTP/2 from its first byte (no HTTP/1.1
`POST /grpc` upgrade), on a unix socket (`unix:///run/buildkit/buildkitd.sock`) or on tcp,
usually with mutual TLS and ALPN `h2`. Its addresses look like Docker's (`unix://`,
`tcp://`) but mean a different protocol, so they are not `DOCKER_HOST` values and not an
`Endpoint`: a daemon is named by `BuildkitdAddress.parse(...)` (the `--addr` of `buildctl`,
the endpoint of buildx's `remote` driver) plus `TLSConfig` and a server name, the
`cacert`/`cert`/`key`/`servername` options of that driver. The channel is the same
`AsyncControlChannel`/`ControlChannel` the engine path gives; only how its bytes travel
differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from buildsdk.buildkit.control import AsyncControlChannel, ControlChannel, require_h2
from buildsdk.endpoint import ConfigError, TLSConfig
from buildsdk.errors import EngineUnreachable

__all__ = ["BuildkitdAddress", "buildkitd_channel", "open_buildkitd"]

_HINT: Final = "is buildkitd running and listening there?"


class BuildkitdAddress(BaseModel):
    """Where a buildkitd listens: `unix` with a socket `path`, or `tcp` with `host` and
    `port`; `parse` reads `buildctl --addr` values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheme: Literal["unix", "tcp"]
    path: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)

    @classmethod
    def parse(cls, address: str) -> BuildkitdAddress:
        """Read `unix:///path/to.sock` or `tcp://host:port`; raises `ConfigError` otherwise."""
        if address.startswith("unix://"):
            path = address[len("unix://") :]
            if not path.startswith("/"):
                raise ConfigError(
                    f"buildkitd address {address!r}: the socket path must be absolute"
                )
            return cls(scheme="unix", path=path)
        if address.startswith("tcp://"):
            parts = urlsplit(address)
            try:
                port = parts.port
            except ValueError:
                port = None
            if not parts.hostname or port is None or parts.path not in ("", "/"):
                raise ConfigError(f"buildkitd address {address!r}: expected tcp://host:port")
            return cls(scheme="tcp", host=parts.hostname, port=port)
        raise ConfigError(
            f"buildkitd address {address!r}: expected unix:///path or tcp://host:port"
        )

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


class _SocketStream:
    """An asyncio connection as the byte stream `AsyncControlChannel` reads and writes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._writer.write(buffer)
        await self._writer.drain()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    def get_extra_info(self, info: str) -> Any:
        return self._writer.get_extra_info(info)


def _tls_context(tls: TLSConfig) -> ssl.SSLContext:
    context = tls.ssl_context()
    # grpc-go servers insist on ALPN h2 over TLS.
    context.set_alpn_protocols(["h2"])
    return context


async def _connect(
    address: BuildkitdAddress,
    tls: TLSConfig | None,
    server_name: str | None,
    connect_timeout: float,
) -> _SocketStream:
    try:
        if address.scheme == "unix":
            assert address.path is not None
            if tls is not None:
                raise ConfigError("TLS settings were given for a unix socket buildkitd")
            opening = asyncio.open_unix_connection(address.path)
        else:
            context = _tls_context(tls) if tls is not None else None
            name = (server_name or address.host) if context is not None else None
            opening = asyncio.open_connection(
                address.host, address.port, ssl=context, server_hostname=name
            )
        reader, writer = await asyncio.wait_for(opening, connect_timeout)
    except ConfigError:
        raise
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
            reason = f"{reason} ({exc.verify_message})"
        raise EngineUnreachable(
            str(address),
            f"the TLS handshake failed: {reason}",
            "check the CA certificate, the client certificate and key, and the server name",
        ) from None
    except asyncio.TimeoutError:
        raise EngineUnreachable(
            str(address), f"no connection within {connect_timeout:g} s", _HINT
        ) from None
    except OSError as exc:
        raise EngineUnreachable(str(address), exc.strerror or str(exc), _HINT) from None
    return _SocketStream(reader, writer)


@contextlib.asynccontextmanager
async def open_buildkitd(
    address: str | BuildkitdAddress,
    *,
    tls: TLSConfig | None = None,
    server_name: str | None = None,
    connect_timeout: float = 10.0,
) -> AsyncIterator[AsyncControlChannel]:
    """Open a Control API channel straight to a buildkitd at `address`.

    `tls` (a `TLSConfig`: CA, client certificate and key; verification on unless
    `verify=False`) is for tcp; without it tcp is plain HTTP/2. `server_name` is the name
    the daemon's certificate must carry (the host of `address` by default). Raises
    `EngineUnreachable` when the daemon cannot be reached or the TLS handshake fails; a
    daemon that drops the connection after it (a client certificate it refuses) makes the
    first call raise `StreamError`.
    """
    require_h2()
    where = address if isinstance(address, BuildkitdAddress) else BuildkitdAddress.parse(address)
    stream = await _connect(where, tls, server_name, connect_timeout)
    channel = AsyncControlChannel(stream, str(where))
    try:
        channel.start()
        yield channel
    finally:
        await asyncio.shield(channel.aclose())


def buildkitd_channel(
    address: str | BuildkitdAddress,
    *,
    tls: TLSConfig | None = None,
    server_name: str | None = None,
    connect_timeout: float = 10.0,
) -> ControlChannel:
    """The sync `ControlChannel` to a buildkitd (see `open_buildkitd`); close it when done."""
    where = address if isinstance(address, BuildkitdAddress) else BuildkitdAddress.parse(address)
    return ControlChannel(
        opener=lambda: open_buildkitd(
            where, tls=tls, server_name=server_name, connect_timeout=connect_timeout
        ),
        address=str(where),
    )
