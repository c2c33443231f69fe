"""SSH forwarding: `RUN --mount=type=ssh` talks to an ssh-agent of the user's or buildsdk's.

An `SSHForward` is one `docker build --ssh` entry: an ID (`default` unless named) and what
answers for it, either an agent socket to forward (without one, `SSH_AUTH_SOCK` is used) or
private key files, which buildsdk loads and serves from an in-process agent of its own, as
the Docker CLI does (`--ssh default=~/.ssh/id_ed25519`). The engine first asks
`SSH/CheckAgent` whether an ID is forwarded, then opens `SSH/ForwardAgent` per connection
from the build container; the agent protocol's bytes travel inside `BytesMessage`s both
ways. For a socket, buildsdk copies them to and from a fresh connection to it; for key
files, a fresh `AgentConnection` (buildsdk.session._sshagent) answers them, read-only: a
build can list the keys and have data signed, never add, remove or lock keys.

Key files are read and decrypted when a build's session is planned, before any byte is
sent, so an unreadable key or a wrong passphrase fails there. The passphrase is a
`SecretStr`: never in a repr, a log line or an error.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from buildsdk._grpc.status import GrpcError, Status
from buildsdk.errors import (
    BuildSDKError,
    MissingDependency,
    SSHAgentUnavailable,
    SSHKeyError,
)

# `BuildOptions` imports this module for `SSHForward`, so everything only a running session
# needs (asyncio, the protobuf messages) is imported by the functions that serve it: a
# program that builds without forwarding ssh never pays for them.
if TYPE_CHECKING:
    import asyncio

    from buildsdk.session._server import Call
    from buildsdk.session._sshagent import AgentKey

__all__ = ["DEFAULT_SSH_ID", "SSHForward", "SSHService"]

DEFAULT_SSH_ID: Final = "default"
"""The ID a `RUN --mount=type=ssh` without `id=` asks for."""

CHECK_AGENT: Final = "/moby.sshforward.v1.SSH/CheckAgent"
FORWARD_AGENT: Final = "/moby.sshforward.v1.SSH/ForwardAgent"
_ID_KEY: Final = "buildkit.ssh.id"
_CHUNK: Final = 32 * 1024


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
            self._load_keys()
        else:
            self.resolve(env)

    def _load_keys(self) -> tuple[AgentKey, ...]:
        from buildsdk.session._sshagent import load_key

        secret = self.passphrase.get_secret_value() if self.passphrase is not None else None
        try:
            return tuple(load_key(path, secret) for path in self.keys)
        except BuildSDKError as exc:
            raise _same_kind(exc, f"ssh {self.id!r}: {exc}") from None


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


class SSHService:
    """Answers `SSH/CheckAgent` and `SSH/ForwardAgent` for a fixed set of forwards.

    Made when a build's session is planned: agent sockets are checked and key files loaded
    then, so that their errors come before the build starts.
    """

    def __init__(self, forwards: Sequence[SSHForward], env: Mapping[str, str] | None) -> None:
        self._sockets: dict[str, str] = {}
        self._keyrings: dict[str, tuple[AgentKey, ...]] = {}
        for forward in forwards:
            if forward.keys:
                self._keyrings[forward.id] = forward._load_keys()
            else:
                self._sockets[forward.id] = forward.resolve(env)

    def handlers(self) -> dict[str, object]:
        """The gRPC methods this service answers."""
        return {CHECK_AGENT: self.check_agent, FORWARD_AGENT: self.forward_agent}

    def _known(self, ident: str) -> str:
        ident = ident or DEFAULT_SSH_ID
        if ident not in self._sockets and ident not in self._keyrings:
            raise GrpcError(Status.NOT_FOUND, f"unset ssh forward key {ident}")
        return ident

    async def check_agent(self, call: Call) -> None:
        """OK when the asked ID is forwarded, NotFound otherwise."""
        from buildsdk.session._messages import CheckAgentRequest

        request = CheckAgentRequest.decode(await call.recv_one())
        self._known(request.id)
        # A unary reply needs its (empty) message: trailers alone read as an error.
        await call.send(b"")

    async def forward_agent(self, call: Call) -> None:
        """Serve one agent connection: from the ID's key files, or copied to its socket."""
        ident = self._known(call.first(_ID_KEY) or DEFAULT_SSH_ID)
        keys = self._keyrings.get(ident)
        if keys is not None:
            await _serve_keys(call, keys)
        else:
            await _forward_socket(call, self._sockets[ident])


async def _serve_keys(call: Call, keys: tuple[AgentKey, ...]) -> None:
    from buildsdk.session._messages import BytesMessage
    from buildsdk.session._sshagent import AgentConnection

    agent = AgentConnection(keys)
    while not agent.closed:
        message = await call.recv()
        if message is None:
            return
        reply = agent.feed(BytesMessage.decode(message).data)
        if reply:
            await call.send(BytesMessage(reply).encode())
    # An oversized message: ending the call closes the connection in the build container,
    # as OpenSSH's agent closes it.


async def _forward_socket(call: Call, path: str) -> None:
    import asyncio

    from buildsdk.session._messages import BytesMessage

    try:
        reader, writer = await asyncio.open_unix_connection(path)
    except OSError as exc:
        raise GrpcError(Status.UNAVAILABLE, f"cannot reach the ssh agent: {exc}") from None
    try:
        to_agent = asyncio.ensure_future(_to_agent(call, writer))
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await call.send(BytesMessage(data).encode())
        finally:
            to_agent.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await to_agent
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _to_agent(call: Call, writer: asyncio.StreamWriter) -> None:
    from buildsdk.session._messages import BytesMessage

    while True:
        message = await call.recv()
        if message is None:
            if writer.can_write_eof():
                writer.write_eof()
            return
        writer.write(BytesMessage.decode(message).data)
        await writer.drain()
