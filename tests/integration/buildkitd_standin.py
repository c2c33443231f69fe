"""A stand-in for a standalone buildkitd: dockerd's own BuildKit behind a TLS or unix listener.

No buildkitd binary exists on the test machines, but every dockerd runs BuildKit's gRPC
server behind `POST /grpc`: after the `101 Switching Protocols` the connection carries that
server's HTTP/2, exactly as a buildkitd socket does from its first byte. `StandIn` listens
on a tcp port with mutual TLS (certificates made for the test, ALPN h2), on a plain tcp
port and on a unix socket; for each accepted connection it opens `POST /grpc` with
`Upgrade: h2c` on the engine's unix socket, reads the 101, and copies bytes both ways until
either side ends.
What a client under test sees is therefore BuildKit's gRPC server behind buildkitd-style
addresses and TLS; what it does not see is a real buildkitd's workers and exporters.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_UPGRADE = (
    b"POST /grpc HTTP/1.1\r\nHost: \r\nContent-Length: 0\r\n"
    b"Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
)


@dataclass(frozen=True)
class Pki:
    """Files of a test PKI: the CA, the daemon's certificate and a client's, and a second,
    unrelated CA with its own client certificate (for refusals)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("buildkitd.test"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, certificate: x509.Certificate) -> Path:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def make_pki(directory: Path) -> Pki:
    """Make a CA, a server certificate for `buildkitd.test` and 127.0.0.1, a client
    certificate, and an unrelated CA with a client certificate of its own."""
    paths: dict[str, Path] = {}
    for prefix in ("", "other_"):
        ca_key = _key()
        ca_cert = _certificate(f"buildsdk test {prefix}ca", ca_key, None, ca=True)
        issuer = (ca_cert.subject, ca_key)
        paths[f"{prefix}ca"] = _pem(directory / f"{prefix}ca.pem", ca_cert)
        client_key = _key()
        client = _certificate("buildsdk test client", client_key, issuer)
        paths[f"{prefix}client_cert"] = _pem(directory / f"{prefix}cert.pem", client)
        _write_key(directory / f"{prefix}key.pem", client_key)
        paths[f"{prefix}client_key"] = directory / f"{prefix}key.pem"
        if not prefix:
            server_key = _key()
            server = _certificate("buildkitd.test", server_key, issuer, server=True)
            paths["server_cert"] = _pem(directory / "server-cert.pem", server)
            _write_key(directory / "server-key.pem", server_key)
            paths["server_key"] = directory / "server-key.pem"
    return Pki(**paths)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class StandIn:
    """The stand-in daemon, run on an event loop in a thread of its own: `tcp_address`
    (mutual TLS), `plain_address` (tcp without TLS) and `unix_address` reach the BuildKit
    of the engine at `engine_socket`."""

    def __init__(self, engine_socket: str, pki: Pki, unix_path: Path) -> None:
        self.engine_socket = engine_socket
        self.pki = pki
        self.unix_path = unix_path
        self.tcp_address = ""
        self.plain_address = ""
        self.unix_address = f"unix://{unix_path}"
        self.upgrades = 0
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.base_events.Server] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="buildkitd-stand-in", daemon=True)

    def _server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        context.load_verify_locations(self.pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        context.set_alpn_protocols(["h2"])
        return context

    async def _splice(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.engine_socket)
        except OSError:
            writer.close()
            return
        up_writer.write(_UPGRADE)
        await up_writer.drain()
        head = await up_reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101 "):
            up_writer.close()
            writer.close()
            return
        self.upgrades += 1
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))

    async def _serve(self) -> None:
        tcp = await asyncio.start_server(
            self._splice, "127.0.0.1", 0, ssl=self._server_context(), ssl_handshake_timeout=10
        )
        plain = await asyncio.start_server(self._splice, "127.0.0.1", 0)
        unix = await asyncio.start_unix_server(self._splice, str(self.unix_path))
        self._servers = [tcp, plain, unix]
        self.tcp_address = f"tcp://127.0.0.1:{tcp.sockets[0].getsockname()[1]}"
        self.plain_address = f"tcp://127.0.0.1:{plain.sockets[0].getsockname()[1]}"
        self._ready.set()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.run_forever()
        for server in self._servers:
            server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[StandIn]:
        """Listen until the block ends."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the buildkitd stand-in did not start")
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def free_port() -> int:
    """A tcp port nothing listens on (for connection-refused tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
