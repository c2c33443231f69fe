"""Registry credentials and the `X-Registry-Config` header: pure values and encodings.

Why this module exists: what a build sends about registries is a pure function of the
credentials it was given — their keys normalised as the Docker CLI does (`ConvertToHostname`,
Docker Hub's index URL) and the header encoded as Go encodes it. Finding those credentials
(config.json, `DOCKER_AUTH_CONFIG`, credential helpers) is `buildsdk.auth`'s business and
runs programs; nothing here reads a file or starts a process.

Secrets are held as `pydantic.SecretStr`, so no `repr`, `str` or error message shows one.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from buildsdk._wire import go_json

__all__ = [
    "INDEX_SERVER",
    "RegistryAuth",
    "auth_config_key",
    "convert_to_hostname",
    "decode_auth",
    "merge_credentials",
    "registry_config_header",
]

INDEX_SERVER = "https://index.docker.io/v1/"
"""The key under which Docker Hub credentials are stored and looked up by the engine."""

_HUB_HOSTNAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


# --------------------------------------------------------------------------- model


class RegistryAuth(BaseModel):
    """Credentials for one registry, in the shape of the engine's `AuthConfig`.

    Secrets are `SecretStr`, so `repr`/`str` show `'**********'`. Given `auth`
    (base64 `user:password`) without `username`/`password`, both are decoded from it,
    as the Docker CLI does when it reads `config.json`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    username: str | None = None
    password: SecretStr | None = None
    auth: SecretStr | None = None
    email: str | None = None
    server_address: str | None = None
    identity_token: SecretStr | None = None
    registry_token: SecretStr | None = None

    @model_validator(mode="after")
    def _fill_from_auth(self) -> RegistryAuth:
        if self.auth is None or not self.auth.get_secret_value():
            return self
        try:
            username, password = decode_auth(self.auth.get_secret_value())
        except ValueError as exc:
            # The message names the rule broken, never the value.
            raise ValueError(f"auth {exc}") from None
        if self.username is None and self.password is None:
            # Frozen models cannot be assigned to; this runs once, during construction.
            object.__setattr__(self, "username", username)
            object.__setattr__(self, "password", SecretStr(password))
        return self

    def to_engine_json(self) -> dict[str, str]:
        """Return the `AuthConfig` JSON object the CLI sends: non-empty fields in Go's order."""
        fields: tuple[tuple[str, str | SecretStr | None], ...] = (
            ("username", self.username),
            ("password", self.password),
            ("auth", self.auth),
            ("email", self.email),
            ("serveraddress", self.server_address),
            ("identitytoken", self.identity_token),
            ("registrytoken", self.registry_token),
        )
        out: dict[str, str] = {}
        for key, value in fields:
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if text:
                out[key] = text
        return out

    @property
    def is_empty(self) -> bool:
        """True when no username, password or token is set (a helper found nothing)."""
        return not any(
            (
                self.username,
                self.password and self.password.get_secret_value(),
                self.auth and self.auth.get_secret_value(),
                self.identity_token and self.identity_token.get_secret_value(),
                self.registry_token and self.registry_token.get_secret_value(),
            )
        )


def decode_auth(text: str) -> tuple[str, str]:
    """Split a config.json `auth` value (base64 `user:password`) like the CLI's decodeAuth;
    errors never quote the value."""
    # Go's StdEncoding decoder skips CR and LF, and nothing else.
    compact = text.replace("\r", "").replace("\n", "")
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    decoded = raw.decode("utf-8", errors="replace")
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise ValueError("does not decode to 'username:password'")
    return username, password.strip("\x00")


# --------------------------------------------------------------------------- keys


def convert_to_hostname(maybe_url: str) -> str:
    """Reduce a registry URL to `host[:port]` as the CLI's ConvertToHostname does.

    `https://registry.example.com:5000/v2/` gives `registry.example.com:5000`; a string
    without `://` is cut at its first `/`.
    """
    if "://" in maybe_url:
        parsed = _url_host_port(maybe_url)
        if parsed is not None and parsed[0]:
            host, port = parsed
            if not port:
                return host
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return maybe_url.split("/", 1)[0]


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _url_host_port(url: str) -> tuple[str, str] | None:
    """The hostname and port Go's url.Parse would find, or None where it would fail."""
    scheme, colon, rest = url.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme) or not rest.startswith("//"):
        return None
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return None
        host, after = hostport[1:end], hostport[end + 1 :]
        if after and not after.startswith(":"):
            return None
        port = after[1:]
    else:
        # Go splits at the last colon, so `a:b:5000` is host `a:b`, port 5000.
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    if not re.fullmatch(r"[0-9]*", port):
        return None
    return host, port


def auth_config_key(registry: str) -> str:
    """The key credentials for `registry` are stored under: the Hub index URL, else host[:port]."""
    hostname = convert_to_hostname(registry)
    if hostname in _HUB_HOSTNAMES:
        return INDEX_SERVER
    return hostname


# --------------------------------------------------------------------------- header


def merge_credentials(
    configured: Mapping[str, RegistryAuth], given: Mapping[str, RegistryAuth] | None
) -> dict[str, RegistryAuth]:
    """Combine configured credentials with ones given in code, which win.

    A given entry replaces configured entries for the same registry however they are
    spelled (`https://host/v1/` and `host` name the same registry), so the engine cannot
    pick the configured one.
    """
    result = dict(configured)
    for registry, auth in (given or {}).items():
        key = auth_config_key(registry)
        for name in [n for n in result if auth_config_key(n) == key]:
            del result[name]
        result[INDEX_SERVER if key == INDEX_SERVER else registry] = auth
    return result


def registry_config_header(auths: Mapping[str, RegistryAuth]) -> str:
    """The `X-Registry-Config` value: URL-safe base64 (padded) of Go-encoded JSON.

    Docker Hub entries under another name are moved to `https://index.docker.io/v1/`
    unless that key is present. An empty mapping gives `e30=` (`{}`), as the CLI sends.
    """
    entries = dict(auths)
    if INDEX_SERVER not in entries:
        for name in sorted(entries):
            if auth_config_key(name) == INDEX_SERVER:
                entries[INDEX_SERVER] = entries.pop(name)
                break
    body = go_json(
        {
            _valid_utf8(key): {
                _valid_utf8(k): _valid_utf8(v) for k, v in entries[key].to_engine_json().items()
            }
            for key in sorted(entries)
        }
    )
    return base64.urlsafe_b64encode(body.encode("utf-8")).decode("ascii")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid_utf8(text: str) -> str:
    # Go sees invalid UTF-8 (here: lone surrogates) and writes U+FFFD for it.
    return _SURROGATE.sub("\ufffd", text)
