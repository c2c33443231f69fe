"""The option models of a build's BuildKit session: `BuildSecret` and `SSHForward`.

Why this module exists: they are options of `BuildOptions` (`secrets=`, `ssh=`), validated
when the options are made, like every other option model; the session that serves them
(`buildsdk.session`) is a server with its own dependencies (h2, asyncio, the protobuf
messages), which a build that only describes or checks its options never needs. Here they
sit apart from it, so `build.py` imports no part of the session package.

A `BuildSecret` names where a secret comes from, like `docker build --secret`: a file
(`src`), an environment variable (`env`) or bytes given in code (`data`); its value is read
only when the engine asks and is never part of a repr, log line or error. An `SSHForward`
is one `docker build --ssh` entry: an agent socket to forward or private key files that
buildsdk serves itself; key files are read and decrypted when a build's session is planned,
before any byte is sent, and the passphrase is a `SecretStr`.
"""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    field_validator,
    model_validator,
)

from buildsdk.errors import (
    BuildSDKError,
    MissingDependency,
    SecretUnavailable,
    SSHAgentUnavailable,
    SSHKeyError,
)

# Key files are parsed by the session's agent code (and the cryptography package) only when
# a forward of key files is checked or served.
if TYPE_CHECKING:
    from buildsdk.session._sshagent import AgentKey

__all__ = [
    "DEFAULT_SSH_ID",
    "MAX_SECRET_SIZE",
    "BuildSecret",
    "SSHForward",
    "load_forward_keys",
]

MAX_SECRET_SIZE: Final = 500 * 1024
"""The largest secret the engine accepts (BuildKit's limit), in bytes."""

DEFAULT_SSH_ID: Final = "default"
"""The ID a `RUN --mount=type=ssh` without `id=` asks for."""


class BuildSecret(BaseModel):
    """One secret a build may mount: an ID and exactly one source (file, env var or data)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    id: str = Field(description="The ID a `RUN --mount=type=secret,id=...` names.")
    src: str | None = Field(default=None, description="A file whose contents are the secret.")
    env: str | None = Field(
        default=None, description="An environment variable whose value is the secret."
    )
    data: SecretBytes | None = Field(default=None, description="The secret's bytes, given in code.")

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            id: str,
            src: str | os.PathLike[str] | None = None,
            env: str | None = None,
            data: bytes | str | SecretBytes | None = None,
        ) -> None: ...

    @field_validator("id", "env")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("src", mode="before")
    @classmethod
    def _path_text(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("data", mode="before")
    @classmethod
    def _data_bytes(cls, value: object) -> object:
        if isinstance(value, str):
            return value.encode("utf-8")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> BuildSecret:
        given = [name for name in ("src", "env", "data") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"secret {self.id!r} needs exactly one source: src (a file), env (an "
                f"environment variable) or data (bytes); got {', '.join(given) or 'none'}"
            )
        if self.src is not None and not os.path.isfile(self.src):
            raise ValueError(f"secret {self.id!r}: {self.src!r} is not a readable file")
        if self.data is not None and len(self.data.get_secret_value()) > MAX_SECRET_SIZE:
            raise ValueError(
                f"secret {self.id!r} is larger than the engine's limit of {MAX_SECRET_SIZE} bytes"
            )
        return self

    @classmethod
    def parse(
        cls,
        value: str,
        *,
        base: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> BuildSecret:
        """Parse `docker build --secret` as buildx does: `id=ID[,src=FILE|,env=VAR][,type=…]`.

        The value is CSV (a field may be quoted); keys are case-insensitive (`source` is
        `src`), an empty value counts as not given, and with `type=env` a `src` names the
        variable. With neither `src` nor `env`, the secret is the environment variable named
        like the ID when `env` (default: `os.environ`) has it, else the file of that name.
        With both, `src` must exist but the variable is what is read. A relative `src` is
        taken relative to `base` (default: the current directory).
        """
        try:
            fields = next(csv.reader([value], strict=True), [])
        except csv.Error as exc:
            raise ValueError(f"failed to parse csv secret: {exc}") from None
        ident = src = var = kind = ""
        for field in fields:
            key, sep, item = field.partition("=")
            key = key.lower()
            if not sep:
                raise ValueError(f"invalid field {field!r} must be a key=value pair")
            if key == "type":
                if item not in ("file", "env"):
                    raise ValueError(f"unsupported secret type {item!r}")
                kind = item
            elif key == "id":
                ident = item
            elif key in ("src", "source"):
                src = item
            elif key == "env":
                var = item
            else:
                raise ValueError(f"unexpected key {key!r} in {field!r}")
        if kind == "env" and not var:
            var, src = src, ""
        if not ident:
            raise ValueError("secret missing ID")
        if not var and not src:
            environ = os.environ if env is None else env
            if ident in environ:
                var = ident
            else:
                src = ident
        if src and base is not None:
            src = os.path.join(os.fspath(base), src)
        if var and src:
            # buildx checks the file, then reads the variable (BuildKit's store prefers env).
            if not os.path.exists(src):
                raise ValueError(f"secret {ident!r}: {src!r} is not a readable file")
            src = ""
        return cls(id=ident, src=src or None, env=var or None)

    def read(self, env: Mapping[str, str] | None = None) -> bytes:
        """The secret's value now (`SecretUnavailable` naming the source when it cannot be had)."""
        if self.data is not None:
            return self.data.get_secret_value()
        if self.env is not None:
            environ = os.environ if env is None else env
            if self.env not in environ:
                raise SecretUnavailable(
                    f"secret {self.id!r}: environment variable {self.env} is not set",
                    secret_id=self.id,
                )
            return environ[self.env].encode("utf-8")
        assert self.src is not None
        try:
            with Path(self.src).open("rb") as handle:
                data = handle.read(MAX_SECRET_SIZE + 1)
        except OSError as exc:
            raise SecretUnavailable(
                f"secret {self.id!r}: cannot read {self.src!r}: {exc.strerror}",
                secret_id=self.id,
            ) from None
        if len(data) > MAX_SECRET_SIZE:
            raise SecretUnavailable(
                f"secret {self.id!r} is larger than the engine's limit of {MAX_SECRET_SIZE} bytes",
                secret_id=self.id,
            )
        return data


class SSHForward(BaseModel):
    """What answers one ssh ID of a build: an agent socket (None: SSH_AUTH_SOCK) or key files.

    `socket` and `keys` exclude each other; `passphrase` opens the encrypted files among
    `keys` (one passphrase for all of them).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    id: str = Field(default=DEFAULT_SSH_ID, description="The ID `--mount=type=ssh,id=` names.")
    socket: str | None = Field(
        default=None, description="Path of the agent's unix socket; None = $SSH_AUTH_SOCK."
    )
    keys: tuple[str, ...] = Field(
        default=(),
        description="Private key files served by an agent of buildsdk's own (OpenSSH or PEM; "
        "ed25519, rsa, ecdsa); exclusive with socket.",
    )
    passphrase: SecretStr | None = Field(
        default=None, description="The passphrase of the encrypted files among keys."
    )

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            id: str = DEFAULT_SSH_ID,
            socket: str | os.PathLike[str] | None = None,
            keys: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] = (),
            passphrase: str | SecretStr | None = None,
        ) -> None: ...

    @field_validator("id")
    @classmethod
    def _id_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("ssh id must not be empty")
        return value

    @field_validator("socket", mode="before")
    @classmethod
    def _socket_text(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("keys", mode="before")
    @classmethod
    def _keys_text(cls, value: object) -> object:
        if isinstance(value, (str, os.PathLike)):
            value = (value,)
        if isinstance(value, Sequence):
            paths = [os.fspath(item) if isinstance(item, os.PathLike) else item for item in value]
            if any(item == "" for item in paths):
                raise ValueError("a key file path must not be empty")
            return tuple(paths)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> SSHForward:
        if self.socket is not None and self.keys:
            raise ValueError(
                f"ssh {self.id!r}: give an agent socket or key files, not both "
                "(invalid combination of keys and sockets)"
            )
        if self.passphrase is not None and not self.keys:
            raise ValueError(f"ssh {self.id!r}: a passphrase is only used with key files")
        return self

    @classmethod
    def parse(cls, value: str, *, base: str | os.PathLike[str] | None = None) -> SSHForward:
        """Parse `docker build --ssh` syntax: `default`, `ID`, `ID=SOCKET` or `ID=KEY[,KEY...]`.

        As in the Docker CLI, a single path that is a unix socket (or does not exist yet) is
        an agent socket; otherwise every path is a private key file, and a socket among
        several paths is an error. `~` is expanded; a relative path is taken relative to
        `base` (default: the current directory).
        """
        ident, sep, text = value.partition("=")
        if not sep or not text:
            return cls(id=ident)
        paths = [os.path.expanduser(path) for path in text.split(",")]
        if base is not None:
            paths = [os.path.join(os.fspath(base), path) for path in paths]
        if len(paths) == 1 and _is_socket_or_missing(paths[0]):
            return cls(id=ident, socket=paths[0])
        if any(path and _is_socket(path) for path in paths):
            raise ValueError(
                f"invalid ssh {value!r}: invalid combination of keys and sockets (one agent "
                "socket, or any number of private key files)"
            )
        return cls(id=ident, keys=tuple(paths))

    def resolve(self, env: Mapping[str, str] | None = None) -> str:
        """The socket path to forward (`SSHAgentUnavailable` without a usable agent socket)."""
        if self.keys:
            raise SSHAgentUnavailable(f"ssh {self.id!r} serves key files, not an agent socket")
        environ = os.environ if env is None else env
        path = self.socket if self.socket is not None else environ.get("SSH_AUTH_SOCK", "")
        if not path:
            raise SSHAgentUnavailable(
                f"ssh {self.id!r}: no agent socket given and SSH_AUTH_SOCK is not set "
                "(start ssh-agent, or give socket=... or keys=...)"
            )
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise SSHAgentUnavailable(
                f"ssh {self.id!r}: cannot use {path!r}: {exc.strerror}"
            ) from None
        if not stat.S_ISSOCK(mode):
            raise SSHAgentUnavailable(
                f"ssh {self.id!r}: {path!r} is not an agent socket (to forward a private key "
                "file, give it as keys=[...], or add the key to an ssh-agent and forward its "
                "socket)"
            )
        return path

    def encrypted_keys(self) -> tuple[str, ...]:
        """The files among `keys` that need a passphrase; reads them now.

        Raises `SSHKeyError` (naming the ID and file) for a key that cannot be used, or
        `MissingDependency` when the cryptography package is not installed.
        """
        from buildsdk.session._sshagent import needs_passphrase

        try:
            return tuple(path for path in self.keys if needs_passphrase(path))
        except BuildSDKError as exc:
            raise _same_kind(exc, f"ssh {self.id!r}: {exc}") from None

    def check(self, env: Mapping[str, str] | None = None) -> None:
        """Raise `SSHAgentUnavailable` or `SSHKeyError` now if a build could not use this
        forward (a missing socket, a key file that cannot be read or decrypted)."""
        if self.keys:
            load_forward_keys(self)
        else:
            self.resolve(env)


def _same_kind(exc: BuildSDKError, message: str) -> BuildSDKError:
    """`exc`'s class again (`SSHKeyError`, `MissingDependency`) with the forward's ID in front."""
    if isinstance(exc, MissingDependency):
        return MissingDependency(message)
    return SSHKeyError(message)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _is_socket_or_missing(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except FileNotFoundError:
        # Nothing there yet: read as a socket, as `ID=SOCKET` always was; the build then
        # says the socket is missing.
        return True
    except OSError:
        return False


def load_forward_keys(forward: SSHForward) -> tuple[AgentKey, ...]:
    """Read and decrypt the key files of `forward`; `SSHKeyError` (naming the ID and file)
    when one cannot be used, `MissingDependency` without the cryptography package."""
    from buildsdk.session._sshagent import load_key

    passphrase = forward.passphrase
    secret = passphrase.get_secret_value() if passphrase is not None else None
    try:
        return tuple(load_key(path, secret) for path in forward.keys)
    except BuildSDKError as exc:
        raise _same_kind(exc, f"ssh {forward.id!r}: {exc}") from None
