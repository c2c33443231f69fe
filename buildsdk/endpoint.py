"""Where the engine is: DOCKER_HOST, docker contexts, TLS settings, DOCKER_API_VERSION.

Why this module exists: a user expects `Client()` to reach the same engine `docker build`
reaches from the same shell, so the rules here are the Docker CLI's, checked against
CLI 28.2.2 and its source, not docker-py's:

* Precedence: an explicit `host=` or `context=` (they exclude each other, like `--host` and
  `--context`), then `DOCKER_HOST`, then `DOCKER_CONTEXT`, then `currentContext` in
  `config.json`, then the platform default. `DOCKER_HOST` beats `DOCKER_CONTEXT` although the
  CLI's documentation says otherwise: its code decides so, and so do we.
* The context named `default` is virtual: it is `DOCKER_HOST` plus the TLS environment
  (`DOCKER_TLS_VERIFY`, `DOCKER_TLS`, `DOCKER_CERT_PATH`). Named contexts come from the
  context store and ignore the TLS environment.
* Address quirks kept on purpose: `tcp://host` without a port means port 2375 even when TLS
  is on; only an empty address under TLS means `tcp://localhost:2376`. A bare `host:port`
  is tcp. A bare path (`/run/docker.sock`, `./docker.sock`) is a unix socket, as in the
  CLI after 28.x. `https://host[:port]` is accepted (TLS forced on, default port 2376).
* `ssh://` follows the CLI's connection helper: user and port become `-l`/`-p`, a path
  becomes `--host unix://<path>` of the remote `docker system dial-stdio`. Passwords,
  queries and fragments are refused. `BUILDSDK_SSH_CONFIG` names an ssh client config file
  to pass as `ssh -F` (the test engines use it; users may too).

Nothing here opens a connection; `transports.py` turns an `Endpoint` into an httpx
transport. An `Endpoint` never holds a credential, so its `str()` and `repr()` are safe to log.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import os
import re
import shlex
import ssl
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, Literal, NamedTuple
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, model_validator

from buildsdk._configfile import config_dir, load_config_file
from buildsdk.errors import BuildSDKError
from buildsdk.versions import ApiVersion

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_NPIPE_HOST",
    "DEFAULT_UNIX_HOST",
    "SSH_BASE_URL",
    "SSH_CONFIG_ENV",
    "ConfigError",
    "Endpoint",
    "SSHTarget",
    "TLSConfig",
    "api_version_from_env",
    "resolve_endpoint",
]

DEFAULT_UNIX_HOST: Final = "unix:///var/run/docker.sock"
"""The engine address used on Unix-like systems when nothing else names one."""

DEFAULT_NPIPE_HOST: Final = "npipe:////./pipe/docker_engine"
"""The engine address used on Windows when nothing else names one."""

SSH_CONFIG_ENV: Final = "BUILDSDK_SSH_CONFIG"
"""Environment variable naming an ssh client config file passed as `ssh -F` for ssh:// hosts."""

# The two below belong to the transports (which re-export them); they live here so that the
# clients read them without importing `buildsdk.transports`, whose httpcore (and, when
# installed, h2) is imported only when the first client is made.
SSH_BASE_URL: Final = "http://docker.example.com"
"""Base URL for engines reached through `ssh ... docker system dial-stdio`, as in the CLI."""

DEFAULT_CONNECT_TIMEOUT: Final = 30.0
"""Seconds allowed for an ssh login (`ssh -o ConnectTimeout`), the Docker CLI's value."""

_DEFAULT_TLS_HOST: Final = "tcp://localhost:2376"
_PLAIN_PORT: Final = 2375
_TLS_PORT: Final = 2376
_HOSTNAME_RE: Final = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
Scheme = Literal["unix", "tcp", "ssh", "npipe"]


class ConfigError(BuildSDKError, ValueError):
    """The engine address, docker context, TLS material or API version setting is unusable."""


def _redact(address: str) -> str:
    """Hide a password written into an address (`scheme://user:secret@host`) for messages."""
    return re.sub(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?[^/@:]*):[^/@]*@", r"\1:***@", address)


# --------------------------------------------------------------------------------------------
# TLS


def _refuse_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's password.
    raise ConfigError("encrypted private keys are not supported")


class TLSConfig(BaseModel):
    """TLS settings for a tcp engine: CA to trust, client certificate, and whether to verify.

    `ca_cert=None` trusts the system's certificate authorities. Verification is on unless
    `verify=False` is given explicitly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify: bool = True

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TLSConfig:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key is set but client_cert is not")
        return self

    @classmethod
    def from_cert_path(cls, path: str | os.PathLike[str], *, verify: bool = True) -> TLSConfig:
        """Use `ca.pem`, `cert.pem` and `key.pem` in a directory, each only if it exists.

        The client certificate is used only when both `cert.pem` and `key.pem` exist.
        """
        directory = Path(path)
        ca, cert, key = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
        with_client = cert.is_file() and key.is_file()
        return cls(
            ca_cert=ca if ca.is_file() else None,
            client_cert=cert if with_client else None,
            client_key=key if with_client else None,
            verify=verify,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """Build a client `ssl.SSLContext` (TLS 1.2 or newer) from these settings.

        Raises `ConfigError` naming the file when a certificate or key cannot be loaded.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.verify:
            if self.ca_cert is not None:
                _load_file(self.ca_cert, "CA certificate", context.load_verify_locations)
            else:
                context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert is not None:
            cert, key = self.client_cert, self.client_key
            if _is_encrypted_key(key or cert):
                raise ConfigError(
                    f"the private key in {key or cert} is encrypted; "
                    "encrypted keys are not supported (the Docker CLI refuses them too)"
                )
            _load_file(
                cert,
                "client certificate or key",
                lambda p: context.load_cert_chain(
                    p, str(key) if key else None, password=_refuse_password
                ),
            )
        return context


def _is_encrypted_key(path: Path) -> bool:
    try:
        head = path.read_bytes()[:65536]
    except OSError:
        return False  # the load below reports the unreadable file with its name
    return b"ENCRYPTED" in head


def _load_file(path: Path, what: str, load: Callable[[str], object]) -> None:
    try:
        load(str(path))
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist") from exc
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot load {what} from {path}: {reason}") from exc


# --------------------------------------------------------------------------------------------
# Endpoint


class SSHTarget(BaseModel):
    """How to reach an engine over ssh: who and where to log in, and the remote socket.

    `config_file` is passed as `ssh -F`, and `options` are extra ssh arguments placed before
    the ones buildsdk adds (ssh keeps the first value it sees for an option, so these win).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str | None = None
    hostname: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    socket_path: str | None = None
    config_file: Path | None = None
    options: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _no_option_injection(self) -> SSHTarget:
        # A destination or user starting with "-" would be read by ssh as an option.
        if self.hostname.startswith("-") or (self.user or "").startswith("-"):
            raise ValueError("ssh user and host must not start with '-'")
        return self

    def command(self, *, connect_timeout: float = 30.0, executable: str = "ssh") -> list[str]:
        """Return the argv that runs `docker system dial-stdio` on the remote host.

        The shape is the Docker CLI's: `ssh [-F file] [options] -o ConnectTimeout=N -T
        [-l user] [-p port] -- host docker [--host unix://path] system dial-stdio`.
        """
        argv = [executable]
        if self.config_file is not None:
            argv += ["-F", str(self.config_file)]
        argv += self.options
        argv += ["-o", f"ConnectTimeout={max(1, math.ceil(connect_timeout))}", "-T"]
        if self.user:
            argv += ["-l", self.user]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        argv += ["--", self.hostname, "docker"]
        if self.socket_path:
            # ssh hands the remote command to the remote shell as one string: quote the path.
            argv += ["--host", shlex.quote(f"unix://{self.socket_path}")]
        argv += ["system", "dial-stdio"]
        return argv


class Endpoint(BaseModel):
    """A resolved engine address with everything needed to connect to it.

    `host` is the normalized address (`unix:///var/run/docker.sock`,
    `tcp://127.0.0.1:2376/prefix`, `ssh://user@host:22`) and never contains a password;
    `str(endpoint)` is that address. Build one with `resolve_endpoint()`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    scheme: Scheme
    tls: TLSConfig | None = None
    base_path: str = ""
    context_name: str = "default"
    ssh: SSHTarget | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Endpoint:
        if not self.host.startswith(f"{self.scheme}://"):
            raise ValueError(f"host {_redact(self.host)!r} does not use the {self.scheme} scheme")
        if self.scheme == "tcp":
            if "@" in self.host:
                raise ValueError("a tcp host must not contain user information")
            _tcp_parts(self.host)
        elif self.tls is not None:
            raise ValueError(f"TLS applies to tcp:// engines only, not {self.scheme}://")
        if (self.scheme == "ssh") != (self.ssh is not None):
            raise ValueError("ssh settings are required for ssh:// hosts and only for them")
        if self.base_path and (self.scheme != "tcp" or not self.base_path.startswith("/")):
            raise ValueError("base_path must start with '/' and is only for tcp:// hosts")
        if self.base_path.endswith("/"):
            raise ValueError("base_path must not end with '/'")
        return self

    def __str__(self) -> str:
        return self.host

    @property
    def socket_path(self) -> str:
        """The filesystem path of a `unix://` endpoint (or pipe name of an `npipe://` one)."""
        if self.scheme not in ("unix", "npipe"):
            raise ValueError(f"{self.host} is not a unix socket or named pipe")
        return self.host[len(self.scheme) + 3 :]

    @property
    def tcp_address(self) -> tuple[str, int]:
        """The `(hostname, port)` of a `tcp://` endpoint; IPv6 hosts come without brackets."""
        if self.scheme != "tcp":
            raise ValueError(f"{self.host} is not a tcp endpoint")
        hostname, port, _ = _tcp_parts(self.host)
        return hostname, port


class _Parsed(NamedTuple):
    host: str
    scheme: Scheme
    base_path: str = ""
    ssh: SSHTarget | None = None
    force_tls: bool = False


def _tcp_parts(host: str) -> tuple[str, int, str]:
    rest = host[len("tcp://") :]
    netloc, _, path = rest.partition("/")
    hostname, port = _split_host_port(netloc, host)
    if port is None:
        raise ValueError(f"tcp host {host!r} has no port")
    return hostname, port, f"/{path}" if path else ""


def _split_host_port(netloc: str, shown: str) -> tuple[str, int | None]:
    """Split `host`, `host:port`, `[v6]`, `[v6]:port` or `:port`; check both parts."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise ConfigError(f"invalid engine address {shown!r}: unclosed '[' in the host")
        hostname, after = netloc[1:end], netloc[end + 1 :]
        try:
            ipaddress.IPv6Address(hostname)
        except ValueError as exc:
            raise ConfigError(
                f"invalid engine address {shown!r}: {hostname!r} is not an IPv6 address"
            ) from exc
        if after and not after.startswith(":"):
            raise ConfigError(f"invalid engine address {shown!r}: unexpected text after ']'")
        port_text = after[1:] if after else ""
    else:
        hostname, colon, port_text = netloc.partition(":")
        if colon and ":" in port_text:
            raise ConfigError(
                f"invalid engine address {shown!r}: write IPv6 addresses in brackets, "
                "such as tcp://[::1]:2375"
            )
        if hostname and not _HOSTNAME_RE.match(hostname):
            raise ConfigError(f"invalid engine address {shown!r}: bad host name {hostname!r}")
    if not port_text:
        return hostname, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"invalid engine address {shown!r}: bad port {port_text!r}")
    return hostname, int(port_text)


def _join_host_port(hostname: str, port: int | None) -> str:
    shown = f"[{hostname}]" if ":" in hostname else hostname
    return shown if port is None else f"{shown}:{port}"


def _parse_tcp(rest: str, shown: str, *, https: bool) -> _Parsed:
    if "://" in rest:
        raise ConfigError(f"invalid engine address {shown!r}: expected tcp://host:port")
    if "?" in rest or "#" in rest:
        raise ConfigError(
            f"invalid engine address {shown!r}: queries and fragments are not allowed"
        )
    netloc, slash, path = rest.partition("/")
    # Docker never sends credentials written into a tcp address; drop them, never show them.
    netloc = netloc.rpartition("@")[2]
    hostname, port = _split_host_port(netloc, shown)
    hostname = hostname or "localhost"
    if port is None:
        port = _TLS_PORT if https else _PLAIN_PORT
    base_path = ("/" + path).rstrip("/") if slash else ""
    host = f"tcp://{_join_host_port(hostname, port)}{base_path}"
    return _Parsed(host, "tcp", base_path=base_path, force_tls=https)


def _parse_ssh(rest: str, shown: str) -> _Parsed:
    def bad(reason: str) -> ConfigError:
        return ConfigError(f"invalid ssh address {shown!r}: {reason}")

    if "#" in rest:
        raise bad("fragments are not allowed")
    if "?" in rest:
        raise bad("query parameters are not allowed")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    user: str | None = None
    if at:
        if ":" in userinfo:
            raise bad("plain-text passwords are not supported; use an ssh key or agent")
        user = unquote(userinfo) or None
    hostname, port = _split_host_port(hostport, shown)
    if not hostname:
        raise bad("the host name is empty")
    socket_path = unquote("/" + path) if slash else ""
    # The CLI would send `--host unix:///` for a lone "/"; that reaches nothing, so ignore it.
    if socket_path == "/":
        socket_path = ""
    try:
        target = SSHTarget(user=user, hostname=hostname, port=port, socket_path=socket_path or None)
    except ValueError as exc:
        raise bad("user and host must not start with '-'") from exc
    who = f"{user}@" if user else ""
    host = f"ssh://{who}{_join_host_port(hostname, port)}{socket_path}"
    return _Parsed(host, "ssh", ssh=target)


def _parse_address(address: str) -> _Parsed:
    """Normalize an engine address the way the CLI's `ParseHost` does (see module docs)."""
    text = address.strip()
    shown = _redact(text)
    proto, sep, rest = text.partition("://")
    if not sep:
        rest = text
        proto = "unix" if text.startswith(("/", "./")) else "tcp"
    proto = proto.lower()
    if proto in ("unix", "npipe"):
        if "://" in rest:
            raise ConfigError(f"invalid engine address {shown!r}: expected {proto}://<path>")
        if proto == "unix":
            return _Parsed(f"unix://{rest}" if rest else DEFAULT_UNIX_HOST, "unix")
        return _Parsed(f"npipe://{rest}" if rest else DEFAULT_NPIPE_HOST, "npipe")
    if proto in ("tcp", "http", "https"):
        return _parse_tcp(rest, shown, https=proto == "https")
    if proto == "ssh":
        return _parse_ssh(rest, shown)
    if proto == "fd":
        raise ConfigError(f"invalid engine address {shown!r}: fd:// is for the daemon only")
    raise ConfigError(
        f"invalid engine address {shown!r}: unsupported scheme {proto!r} "
        "(expected unix://, tcp://, https://, ssh:// or npipe://)"
    )


# --------------------------------------------------------------------------------------------
# Resolution


def _platform_default() -> str:
    return DEFAULT_NPIPE_HOST if sys.platform == "win32" else DEFAULT_UNIX_HOST


def _env_tls(environ: Mapping[str, str]) -> TLSConfig | None:
    verify = bool(environ.get("DOCKER_TLS_VERIFY"))
    if not verify and not environ.get("DOCKER_TLS"):
        return None
    cert_path = Path(environ.get("DOCKER_CERT_PATH") or config_dir(environ))
    tls = TLSConfig.from_cert_path(cert_path, verify=verify)
    if verify and tls.ca_cert is None:
        raise ConfigError(
            f"DOCKER_TLS_VERIFY is set but {cert_path / 'ca.pem'} does not exist; "
            "set DOCKER_CERT_PATH to the directory holding ca.pem, cert.pem and key.pem"
        )
    return tls


def _ssh_config_file(environ: Mapping[str, str]) -> Path | None:
    value = environ.get(SSH_CONFIG_ENV)
    return Path(value) if value else None


def _build(
    parsed: _Parsed,
    tls: TLSConfig | None,
    *,
    context_name: str,
    environ: Mapping[str, str],
) -> Endpoint:
    ssh = parsed.ssh
    if ssh is not None:
        ssh = ssh.model_copy(update={"config_file": _ssh_config_file(environ)})
    if parsed.force_tls and tls is None:
        tls = TLSConfig()
    return Endpoint(
        host=parsed.host,
        scheme=parsed.scheme,
        tls=tls if parsed.scheme == "tcp" else None,
        base_path=parsed.base_path,
        context_name=context_name,
        ssh=ssh,
    )


def _explicit_tls(tls: TLSConfig | bool | None, parsed: _Parsed) -> None:
    if tls is False and parsed.force_tls:
        raise ConfigError(f"{parsed.host} was given as https:// but tls=False")
    if (tls is True or isinstance(tls, TLSConfig)) and parsed.scheme != "tcp":
        raise ConfigError(f"TLS applies to tcp:// engines only, not to {parsed.host}")


def _default_tls(tls: TLSConfig | bool | None, environ: Mapping[str, str]) -> TLSConfig | None:
    if isinstance(tls, TLSConfig):
        return tls
    if tls is True:
        cert_path = environ.get("DOCKER_CERT_PATH") or config_dir(environ)
        return TLSConfig.from_cert_path(cert_path, verify=True)
    if tls is False:
        return None
    return _env_tls(environ)


def _default_context(
    address: str | None, tls: TLSConfig | bool | None, environ: Mapping[str, str]
) -> Endpoint:
    text = (address or "").strip()
    if text:
        parsed = _parse_address(text)
        _explicit_tls(tls, parsed)
        # The TLS environment is read only when it can matter, so a stale DOCKER_TLS_VERIFY
        # does not break a unix socket or ssh host.
        tls_config = _default_tls(tls, environ) if parsed.scheme == "tcp" else None
    else:
        tls_config = _default_tls(tls, environ)
        parsed = _parse_address(_DEFAULT_TLS_HOST if tls_config else _platform_default())
    return _build(parsed, tls_config, context_name="default", environ=environ)


def _context_endpoint(
    name: str, source: str, tls: TLSConfig | bool | None, environ: Mapping[str, str]
) -> Endpoint:
    root = config_dir(environ) / "contexts"
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
    meta_path = root / "meta" / digest / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"docker context {name!r} (from {source}) does not exist: no {meta_path}"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read docker context {name!r} from {meta_path}: {exc}") from exc
    endpoints = meta.get("Endpoints") if isinstance(meta, dict) else None
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    if not isinstance(docker, dict):
        raise ConfigError(f"docker context {name!r} has no docker endpoint in {meta_path}")
    address = docker.get("Host") or _platform_default()
    if not isinstance(address, str):
        raise ConfigError(f"docker context {name!r}: Host in {meta_path} is not a string")
    parsed = _parse_address(address)
    _explicit_tls(tls, parsed)

    tls_config: TLSConfig | None = None
    if isinstance(tls, TLSConfig):
        tls_config = tls
    elif tls is not False and parsed.scheme == "tcp":
        tls_dir = root / "tls" / digest / "docker"
        skip_verify = docker.get("SkipTLSVerify") is True
        stored = TLSConfig.from_cert_path(tls_dir, verify=not skip_verify)
        has_material = any((tls_dir / f).is_file() for f in ("ca.pem", "cert.pem", "key.pem"))
        if tls is True:
            tls_config = stored.model_copy(update={"verify": True})
        elif has_material or skip_verify:
            tls_config = stored
    return _build(parsed, tls_config, context_name=name, environ=environ)


def resolve_endpoint(
    host: str | None = None,
    *,
    tls: TLSConfig | bool | None = None,
    context: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Endpoint:
    """Find the engine the Docker CLI would use, or the one given, and how to talk to it.

    Precedence: `host=` or `context=` (not both), `DOCKER_HOST`, `DOCKER_CONTEXT`,
    `currentContext` in `config.json`, the platform default. `tls=None` takes TLS from the
    source (the TLS environment for the default context, the context store otherwise);
    `True` turns it on with verification, `False` off, a `TLSConfig` replaces it.
    For ssh hosts, `BUILDSDK_SSH_CONFIG` in `env` becomes `ssh -F <file>`.
    Raises `ConfigError` for a bad address, a missing context or missing TLS material.
    """
    environ = os.environ if env is None else env
    if host is not None and context is not None:
        raise ConfigError("give host= or context=, not both (like the CLI's --host and --context)")
    if host is not None:
        return _default_context(host, tls, environ)
    if context is not None:
        name, source = context, "context="
    elif environ.get("DOCKER_HOST"):
        return _default_context(environ["DOCKER_HOST"], tls, environ)
    elif environ.get("DOCKER_CONTEXT"):
        name, source = environ["DOCKER_CONTEXT"], "DOCKER_CONTEXT"
    else:
        current = load_config_file(environ).get("currentContext")
        if current is not None and not isinstance(current, str):
            raise ConfigError("currentContext in config.json is not a string")
        name, source = current or "default", "currentContext in config.json"
    if name == "default":
        return _default_context(None, tls, environ)
    return _context_endpoint(name, source, tls, environ)


def api_version_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """Return the API version pinned by `DOCKER_API_VERSION` (normalized, `v` dropped), if any.

    Raises `ConfigError` when the value is not `MAJOR.MINOR`.
    """
    environ = os.environ if env is None else env
    value = environ.get("DOCKER_API_VERSION", "").strip()
    if not value:
        return None
    try:
        return str(ApiVersion.parse(value))
    except ValueError as exc:
        raise ConfigError(
            f"DOCKER_API_VERSION={value!r} is not an API version: expected MAJOR.MINOR such as 1.41"
        ) from exc
