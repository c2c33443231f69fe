"""Registry credentials as the Docker CLI reads them: `DockerConfig` (config.json).

Why this module exists: `docker login` leaves credentials in several places — plain
`auths` entries in `config.json`, a `credsStore` program, per-registry `credHelpers`
programs, and (CLI 28.3+) the `DOCKER_AUTH_CONFIG` variable — and `docker build` (classic
builder) sends all of them to the engine in one header so that `FROM private/image` can
be pulled. Reproducing that byte for byte means reproducing the CLI's precedence rules
(`GetAllCredentials` in docker/cli `cli/config/configfile/file.go`), the helper protocol
(`_credential_helpers`) and Go's JSON encoder (`_registry_auth`, which holds the pure
credential values and the header encoding).

Where this deliberately differs from the CLI 28.2.2 it was checked against:

- A failing or missing helper is logged on the `buildsdk` logger and skipped in
  `DockerConfig.all_credentials`; the CLI drops *every* credential when the `credsStore`
  fails (it then sends `{}`). Only `DockerConfig.credentials_for`, which is asked for one
  registry, raises `CredentialsError` when that registry's helper cannot answer.
- A malformed `auth` entry is an error for that registry only; the CLI ignores the whole
  file (proxies and headers included) with a warning.
- `registry_config_header` renames a Docker Hub entry stored under another name
  (`docker.io`, `index.docker.io`, ...) to `https://index.docker.io/v1/`, the only key the
  engine looks up for Hub; the CLI sends keys as they are written.
- `~/.dockercfg` (removed from the CLI in v23/v25) is still read when no `config.json`
  exists, as docker-py does.

BuildKit (`version="2"`) ignores `X-Registry-Config`: the engine's BuildKit path asks the
client for credentials through a session instead (moby/moby#41818, moby/buildkit#2058).
A private base image with BuildKit therefore needs the session's auth provider;
`buildkit_auth_warning` gives the text a client logs instead of failing silently.

Secrets never reach a `repr`, `str`, log record or exception message: they are held as
`pydantic.SecretStr`, helper output is never echoed when it could hold a secret, and
error messages name only registries, helpers and files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from buildsdk._configfile import ConfigFileError, config_dir, load_config_file
from buildsdk._credential_helpers import (
    DEFAULT_HELPER_TIMEOUT,
    HELPER_PREFIX,
    credential_helper_get,
    credential_helper_list,
)
from buildsdk._registry_auth import (
    INDEX_SERVER,
    RegistryAuth,
    auth_config_key,
    convert_to_hostname,
    decode_auth,
    merge_credentials,
    registry_config_header,
)
from buildsdk.errors import CredentialsError
from buildsdk.proxy import ProxyConfig

# The credential values and header encoding (`_registry_auth`) and the helper protocol
# (`_credential_helpers`) live in modules of their own; their public names stay importable
# from here, where they always were.
__all__ = [
    "DEFAULT_HELPER_TIMEOUT",
    "INDEX_SERVER",
    "DockerConfig",
    "RegistryAuth",
    "auth_config_key",
    "buildkit_auth_warning",
    "convert_to_hostname",
    "credential_helper_get",
    "credential_helper_list",
    "merge_credentials",
    "registry_config_header",
]

_AUTH_CONFIG_ENV = "DOCKER_AUTH_CONFIG"
_CUSTOM_HEADERS_ENV = "DOCKER_CUSTOM_HEADERS"

_logger = logging.getLogger("buildsdk")


# --------------------------------------------------------------------------- config


class DockerConfig:
    """The Docker CLI's `config.json` as `docker build` reads it.

    Use `DockerConfig.load(env)` to read it from `$DOCKER_CONFIG` or `~/.docker` (falling
    back to the legacy `~/.dockercfg`), or build one from an already parsed JSON object.
    Credentials from helpers are fetched when asked for, never at load time.
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        path: Path | None = None,
        credstore_env: Mapping[str, str] | None = None,
        helper_timeout: float = DEFAULT_HELPER_TIMEOUT,
        detect_default_store: bool = True,
    ) -> None:
        """Interpret a parsed `config.json` object.

        `env` is the environment (DOCKER_AUTH_CONFIG, DOCKER_CUSTOM_HEADERS, and PATH
        for helpers); None means `os.environ`. `credstore_env` is added to the
        environment of every helper (docker-py's `credstore_env`).
        """
        self._env = env
        self.path = path
        """The file this configuration was read from, if any."""
        self.helper_timeout = helper_timeout
        """Seconds a credential helper may run."""
        self._credstore_env = dict(credstore_env or {})
        source = str(path) if path is not None else "the Docker configuration"
        fields = _fold_keys(data or {}, source)

        self._auths: dict[str, RegistryAuth] = {}
        self._auth_errors: dict[str, str] = {}
        for key, entry in _object(fields.get("auths"), f"{source}: auths").items():
            where = f"{source}: auths[{key!r}]"
            self._load_auth_entry(key, _object(entry, where), where)

        store = _string(fields.get("credsstore"), f"{source}: credsStore")
        self.cred_helpers: dict[str, str] = {
            k: _string(v, f"{source}: credHelpers[{k!r}]") or ""
            for k, v in _object(fields.get("credhelpers"), f"{source}: credHelpers").items()
        }
        """Per-registry helper suffixes (`credHelpers`), overriding `creds_store`."""
        self.proxies: dict[str, ProxyConfig] = {
            k: ProxyConfig.from_config(_object(v, f"{source}: proxies[{k!r}]"))
            for k, v in _object(fields.get("proxies"), f"{source}: proxies").items()
        }
        """`proxies` entries: `default` and entries keyed by an engine host string."""
        self.current_context: str | None = _string(
            fields.get("currentcontext"), f"{source}: currentContext"
        )
        """The `currentContext` named in the file, if any."""
        file_headers = {
            k: _string(v, f"{source}: HttpHeaders[{k!r}]") or ""
            for k, v in _object(fields.get("httpheaders"), f"{source}: HttpHeaders").items()
        }
        env_headers = _custom_headers_from_env(self._environ().get(_CUSTOM_HEADERS_ENV, ""))
        # As in the CLI, the variable replaces the file's headers instead of adding to them.
        self.http_headers: dict[str, str] = env_headers if env_headers else file_headers
        """Extra request headers: `HttpHeaders`, or `DOCKER_CUSTOM_HEADERS` when set."""

        self._env_auths, self._env_auth_error = _parse_env_auth_config(
            self._environ().get(_AUTH_CONFIG_ENV, "")
        )
        self._explicit_auth = bool(store or self.cred_helpers or self._auths or self._auth_errors)
        if not self._explicit_auth and detect_default_store:
            # The CLI picks a platform store when the file configures no credentials at all.
            store = _detect_default_store(self._environ())
        self.creds_store: str | None = store or None
        """The default credential helper suffix (`credsStore`), if any."""

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        credstore_env: Mapping[str, str] | None = None,
        helper_timeout: float = DEFAULT_HELPER_TIMEOUT,
    ) -> DockerConfig:
        """Read `config.json` (or the legacy `~/.dockercfg` when it is absent) for `env`.

        Raises `ConfigFileError` when the file exists but cannot be read or has the
        wrong shape (the message names the file and key, never a value).
        """
        directory = config_dir(env)
        path = directory / "config.json"
        if path.exists():
            data = load_config_file(env)
            return cls(
                data, env=env, path=path, credstore_env=credstore_env, helper_timeout=helper_timeout
            )
        environ = os.environ if env is None else env
        home = environ.get("HOME") or os.path.expanduser("~")
        legacy = Path(home) / ".dockercfg"
        legacy_data = _load_legacy(legacy)
        return cls(
            legacy_data,
            env=env,
            path=legacy if legacy_data is not None else None,
            credstore_env=credstore_env,
            helper_timeout=helper_timeout,
        )

    # ------------------------------------------------------------------ reading

    def _environ(self) -> Mapping[str, str]:
        return os.environ if self._env is None else self._env

    def _helper_env(self) -> dict[str, str]:
        merged = dict(self._environ())
        merged.update(self._credstore_env)
        return merged

    def _load_auth_entry(self, key: str, entry: Mapping[str, Any], where: str) -> None:
        fields = _fold_keys(entry, where)
        strings = {name: _string(fields.get(name), f"{where}.{name}") for name in _AUTH_FIELDS}
        username, password = strings["username"], strings["password"]
        if strings["auth"]:
            try:
                username, password = decode_auth(strings["auth"])
            except ValueError as exc:
                self._auth_errors[key] = f"{where}.auth {exc}"
                return
        self._auths[key] = RegistryAuth(
            username=username or None,
            password=SecretStr(password) if password else None,
            email=strings["email"] or None,
            server_address=key,
            identity_token=SecretStr(v) if (v := strings["identitytoken"]) else None,
            registry_token=SecretStr(v) if (v := strings["registrytoken"]) else None,
        )

    @property
    def auths(self) -> dict[str, RegistryAuth]:
        """`auths` entries of the file, decoded (entries with a malformed `auth` left out)."""
        return dict(self._auths)

    @property
    def contains_auth(self) -> bool:
        """True when the file or DOCKER_AUTH_CONFIG sets credentials (a detected store aside)."""
        return self._explicit_auth or bool(self._env_auths) or self._env_auth_error is not None

    def __repr__(self) -> str:
        # Keys only: header values and credentials may be secrets.
        return (
            f"DockerConfig(path={str(self.path) if self.path else None!r}, "
            f"auths={sorted(self._auths)!r}, creds_store={self.creds_store!r}, "
            f"cred_helpers={self.cred_helpers!r}, proxies={sorted(self.proxies)!r}, "
            f"http_headers={sorted(self.http_headers)!r}, "
            f"current_context={self.current_context!r})"
        )

    # ------------------------------------------------------------------ credentials

    def credentials_for(self, registry: str) -> RegistryAuth | None:
        """Credentials for one registry (`docker.io`, `host:port`, or a URL), or None.

        Follows the CLI: DOCKER_AUTH_CONFIG first, then the registry's `credHelpers`
        entry or the `credsStore`, else the file's `auths` (matching keys by hostname).
        Raises `CredentialsError` naming the helper and registry when the helper that
        holds this registry's credentials is missing or fails, or when the stored entry
        for it is malformed.
        """
        key = auth_config_key(registry)
        if self._env_auth_error is not None:
            raise CredentialsError(
                f"cannot use {_AUTH_CONFIG_ENV} for {key}: {self._env_auth_error}"
            )
        if key in self._env_auths:
            return self._env_auths[key]
        helper = self._helper_for(key)
        if helper:
            try:
                found = credential_helper_get(
                    helper, key, env=self._helper_env(), timeout=self.helper_timeout
                )
            except CredentialsError as exc:
                raise CredentialsError(f"credentials for {key} are unavailable: {exc}") from None
            if found is None or found.is_empty:
                return None
            return found
        for name in self._file_keys_for(key):
            if name in self._auth_errors:
                raise CredentialsError(self._auth_errors[name])
            return self._auths[name]
        return None

    def _helper_for(self, key: str) -> str:
        if key in self.cred_helpers:
            return self.cred_helpers[key]
        for name, helper in self.cred_helpers.items():
            if auth_config_key(name) == key:
                return helper
        return self.creds_store or ""

    def _file_keys_for(self, key: str) -> Iterator[str]:
        """File entries for `key`: the exact key, then keys with the same hostname."""
        names = [*self._auths, *self._auth_errors]
        if key in names:
            yield key
            return
        for name in names:
            if auth_config_key(name) == key:
                yield name
                return

    def all_credentials(self) -> dict[str, RegistryAuth]:
        """Every configured credential, keyed as the CLI keys them (GetAllCredentials).

        The default store (the `credsStore` helper's `list` + `get`, else the file's
        `auths`), overridden by DOCKER_AUTH_CONFIG, then by each `credHelpers` entry.
        A helper that is missing or fails is logged as a warning and skipped; a helper
        that has nothing for a registry gives an empty entry, as the CLI sends.
        """
        env = self._helper_env()
        result: dict[str, RegistryAuth] = {}
        if self.creds_store:
            result.update(self._store_credentials(self.creds_store, env))
        else:
            for key, message in self._auth_errors.items():
                _logger.warning("skipping credentials for %s: %s", key, message)
            result.update(self._auths)
        if self._env_auth_error is not None:
            _logger.warning("ignoring %s: %s", _AUTH_CONFIG_ENV, self._env_auth_error)
        result.update(self._env_auths)
        for registry, helper in self.cred_helpers.items():
            key = auth_config_key(registry)
            if key in self._env_auths:
                result[registry] = self._env_auths[key]
                continue
            if not helper:
                # `"host": null` or `""` names no helper: the CLI reads the file for it.
                names = list(self._file_keys_for(key))
                file_entry = self._auths.get(names[0]) if names else None
                result[registry] = file_entry if file_entry is not None else RegistryAuth()
                continue
            try:
                # The helper is asked for the canonical key (the Hub index URL for Hub
                # names), as CLI 28.3+ does; `docker login` stores Hub under that URL.
                found = credential_helper_get(helper, key, env=env, timeout=self.helper_timeout)
            except CredentialsError as exc:
                _logger.warning("skipping credentials for registry %s: %s", registry, exc)
                continue
            result[registry] = found if found is not None else RegistryAuth()
        return result

    def _store_credentials(self, store: str, env: Mapping[str, str]) -> dict[str, RegistryAuth]:
        try:
            servers = credential_helper_list(store, env=env, timeout=self.helper_timeout)
        except CredentialsError as exc:
            _logger.warning("skipping the credentials store %r: %s", store, exc)
            return {}
        found: dict[str, RegistryAuth] = {}
        for server in servers:
            try:
                auth = credential_helper_get(store, server, env=env, timeout=self.helper_timeout)
            except CredentialsError as exc:
                _logger.warning("skipping credentials for registry %s: %s", server, exc)
                continue
            if auth is None:
                found[server] = RegistryAuth()
                continue
            # The file may still hold an email for this server (the CLI keeps it there).
            file_entry = self._auths.get(server)
            email = file_entry.email if file_entry is not None else None
            found[server] = auth.model_copy(update={"email": email}) if email else auth
        return found


_AUTH_FIELDS = ("username", "password", "auth", "email", "identitytoken", "registrytoken")


def _fold_keys(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Lower-case an object's keys: Go's JSON decoder matches struct fields case-insensitively."""
    if not isinstance(data, Mapping):
        raise ConfigFileError(f"{where} must be a JSON object")
    return {str(k).lower(): v for k, v in data.items()}


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigFileError(f"{where} must be a JSON object")
    return dict(value)


def _string(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        # The message names the key only: the value may be a secret.
        raise ConfigFileError(f"{where} must be a string")
    return value


def _load_legacy(path: Path) -> dict[str, Any] | None:
    """Turn a legacy `~/.dockercfg` into the `auths` shape; None when there is none.

    Two formats existed: a JSON object `{"<registry>": {"auth": ..., "email": ...}}`, and
    two `key = value` lines whose first holds the Docker Hub `auth`.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return {"auths": data}
    lines = text.split("\n")
    if len(lines) < 2:
        raise ConfigFileError(f"{path} is empty or not in a known format")
    _, sep, value = lines[0].partition(" = ")
    if not sep or " = " in value:
        raise ConfigFileError(f"{path} is not in a known format")
    return {"auths": {INDEX_SERVER: {"auth": value}}}


def _parse_env_auth_config(text: str) -> tuple[dict[str, RegistryAuth], str | None]:
    """Parse DOCKER_AUTH_CONFIG (`{"auths": {host: {"auth": ...}}}` and nothing else)."""
    if not text:
        return {}, None
    try:
        data = json.loads(text)
    except ValueError:
        return {}, "it is not one JSON object"
    if not isinstance(data, dict) or {k.lower() for k in data} - {"auths"}:
        return {}, 'it must be a JSON object with only an "auths" key'
    auths = _fold_keys(data, _AUTH_CONFIG_ENV).get("auths") or {}
    if not isinstance(auths, dict):
        return {}, '"auths" must be a JSON object'
    found: dict[str, RegistryAuth] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict) or {k.lower() for k in entry} - {"auth"}:
            return {}, f'the entry for {key!r} may only hold an "auth" string'
        value = _fold_keys(entry, _AUTH_CONFIG_ENV).get("auth")
        if not isinstance(value, str) or not value:
            return {}, f"the entry for {key!r} is missing its 'auth' value"
        try:
            username, password = decode_auth(value)
        except ValueError as exc:
            return {}, f"the 'auth' value for {key!r} {exc}"
        found[key] = RegistryAuth(
            username=username,
            password=SecretStr(password) if password else None,
            server_address=key,
        )
    return found, None


def _custom_headers_from_env(text: str) -> dict[str, str]:
    """Parse DOCKER_CUSTOM_HEADERS: one CSV record of `key=value` pairs, later keys winning."""
    if not text:
        return {}
    try:
        fields = _csv_first_record(text)
    except ValueError:
        raise ConfigFileError(
            f"{_CUSTOM_HEADERS_ENV} must be comma-separated key=value pairs"
        ) from None
    headers: dict[str, str] = {}
    for index, pair in enumerate(fields, start=1):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not key:
            raise ConfigFileError(f"{_CUSTOM_HEADERS_ENV}: pair {index} has an empty key")
        if not sep:
            # Only the position: a pair without "=" may be a pasted token.
            raise ConfigFileError(f'{_CUSTOM_HEADERS_ENV}: pair {index} has no "="')
        headers[_canonical_header(key)] = value
    return headers


def _csv_first_record(text: str) -> list[str]:
    """The first record of `text` as Go's encoding/csv reads it (strict quotes, no trimming).

    Python's csv module accepts stray quotes that Go rejects, so the few rules are
    spelled out: a quote may only open a field, `""` inside quotes is a quote, and a
    closing quote must end the field.
    """
    text = text.replace("\r\n", "\n").lstrip("\n")  # Go skips empty lines
    fields: list[str] = []
    pos = 0
    while True:
        if text.startswith('"', pos):
            value: list[str] = []
            pos += 1
            while True:
                end = text.find('"', pos)
                if end < 0:
                    raise ValueError("unterminated quoted field")
                value.append(text[pos:end])
                if text.startswith('"', end + 1):
                    value.append('"')
                    pos = end + 2
                    continue
                pos = end + 1
                break
            fields.append("".join(value))
            if pos < len(text) and text[pos] not in ",\n":
                raise ValueError("text after a closing quote")
        else:
            end = len(text)
            for stop in (",", "\n"):
                found = text.find(stop, pos)
                if 0 <= found < end:
                    end = found
            if '"' in text[pos:end]:
                raise ValueError("bare quote in an unquoted field")
            fields.append(text[pos:end])
            pos = end
        if pos >= len(text) or text[pos] == "\n":
            return fields
        pos += 1  # past the comma


def _canonical_header(key: str) -> str:
    """Go's CanonicalHeaderKey: `x-meta-foo` -> `X-Meta-Foo` (left alone if not a token)."""
    if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", key):
        return key
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))


def _detect_default_store(env: Mapping[str, str]) -> str:
    """The CLI's DetectDefaultStore: the platform's store if its helper is on PATH.

    macOS `osxkeychain`, Windows `wincred`, elsewhere `pass` when the `pass` program is
    installed and `secretservice` otherwise.
    """
    path = env.get("PATH", os.defpath)
    if sys.platform == "darwin":
        candidate = "osxkeychain"
    elif sys.platform == "win32":
        candidate = "wincred"
    else:
        candidate = "pass" if shutil.which("pass", path=path) else "secretservice"
    return candidate if shutil.which(HELPER_PREFIX + candidate, path=path) else ""


# --------------------------------------------------------------------------- BuildKit


def buildkit_auth_warning(
    version: str | None,
    *,
    config: DockerConfig | None = None,
    credentials: Mapping[str, RegistryAuth] | None = None,
) -> str | None:
    """The warning to log when BuildKit will ignore configured credentials, else None.

    BuildKit (`version="2"`) does not read `X-Registry-Config`; private base images need
    a session with an auth provider. Checking `config` runs no credential helper.
    """
    if version != "2":
        return None
    sources = []
    if credentials:
        sources.append("credentials passed in code")
    if config is not None and config.contains_auth:
        sources.append("the Docker configuration")
    if not sources:
        return None
    return (
        "BuildKit (version='2') ignores X-Registry-Config, so registry credentials from "
        + " and ".join(sources)
        + " are not used to pull base images; private base images need a BuildKit "
        "session with registry auth, or the classic builder (version='1')"
    )
