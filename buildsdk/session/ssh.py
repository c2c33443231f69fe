"""SSH agent forwarding: `RUN --mount=type=ssh` talks to the user's ssh-agent.

An `SSHForward` is one `docker build --ssh` entry: an ID (`default` unless named) and the
agent socket to forward; without a socket, `SSH_AUTH_SOCK` is used. The engine first asks
`SSH/CheckAgent` whether an ID is forwarded, then opens `SSH/ForwardAgent` per connection
from the build container; the agent protocol's bytes travel inside `BytesMessage`s both
ways, and buildsdk copies them to and from a fresh connection to the agent's socket.

Private key files (which the Docker CLI loads into an agent of its own) are not supported:
add the key to an ssh-agent (`ssh-add`) and forward that agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from buildsdk.errors import BuildSDKError
from buildsdk.session._messages import BytesMessage, CheckAgentRequest
from buildsdk.session._status import GrpcError, Status

if TYPE_CHECKING:
    from buildsdk.session._server import Call

__all__ = ["DEFAULT_SSH_ID", "SSHForward", "SSHService"]

DEFAULT_SSH_ID: Final = "default"
"""The ID a `RUN --mount=type=ssh` without `id=` asks for."""

CHECK_AGENT: Final = "/moby.sshforward.v1.SSH/CheckAgent"
FORWARD_AGENT: Final = "/moby.sshforward.v1.SSH/ForwardAgent"
_ID_KEY: Final = "buildkit.ssh.id"
_CHUNK: Final = 32 * 1024


class SSHForward(BaseModel):
    """One forwarded ssh-agent: the ID builds name and the agent socket (None: SSH_AUTH_SOCK)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default=DEFAULT_SSH_ID, description="The ID `--mount=type=ssh,id=` names.")
    socket: str | None = Field(
        default=None, description="Path of the agent's unix socket; None = $SSH_AUTH_SOCK."
    )

    if TYPE_CHECKING:

        def __init__(
            self, *, id: str = DEFAULT_SSH_ID, socket: str | os.PathLike[str] | None = None
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

    @classmethod
    def parse(cls, value: str, *, base: str | os.PathLike[str] | None = None) -> SSHForward:
        """Parse `docker build --ssh` syntax: `default`, `ID`, or `ID=SOCKET`.

        A relative socket path is taken relative to `base` (default: the current directory).
        """
        ident, sep, paths = value.partition("=")
        if sep and "," in paths:
            raise ValueError(
                f"invalid ssh {value!r}: one agent socket per ID (key files are not supported)"
            )
        socket = paths if sep and paths else None
        if socket is not None and base is not None:
            socket = os.path.join(os.fspath(base), os.path.expanduser(socket))
        return cls(id=ident, socket=socket)

    def resolve(self, env: Mapping[str, str] | None = None) -> str:
        """The socket path to forward (`BuildSDKError` when there is no usable agent socket)."""
        environ = os.environ if env is None else env
        path = self.socket if self.socket is not None else environ.get("SSH_AUTH_SOCK", "")
        if not path:
            raise BuildSDKError(
                f"ssh {self.id!r}: no agent socket given and SSH_AUTH_SOCK is not set "
                "(start ssh-agent, or give socket=...)"
            )
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise BuildSDKError(f"ssh {self.id!r}: cannot use {path!r}: {exc.strerror}") from None
        if not stat.S_ISSOCK(mode):
            raise BuildSDKError(
                f"ssh {self.id!r}: {path!r} is not an agent socket (key files are not "
                "supported: add the key to an ssh-agent and forward its socket)"
            )
        return path


class SSHService:
    """Answers `SSH/CheckAgent` and `SSH/ForwardAgent` for a fixed set of agents."""

    def __init__(self, forwards: Sequence[SSHForward], env: Mapping[str, str] | None) -> None:
        self._sockets = {forward.id: forward.resolve(env) for forward in forwards}

    def handlers(self) -> dict[str, object]:
        """The gRPC methods this service answers."""
        return {CHECK_AGENT: self.check_agent, FORWARD_AGENT: self.forward_agent}

    def _socket(self, ident: str) -> str:
        path = self._sockets.get(ident or DEFAULT_SSH_ID)
        if path is None:
            raise GrpcError(Status.NOT_FOUND, f"unset ssh forward key {ident or DEFAULT_SSH_ID}")
        return path

    async def check_agent(self, call: Call) -> None:
        """OK when the asked ID is forwarded, NotFound otherwise."""
        request = CheckAgentRequest.decode(await call.recv_one())
        self._socket(request.id)
        # A unary reply needs its (empty) message: trailers alone read as an error.
        await call.send(b"")

    async def forward_agent(self, call: Call) -> None:
        """Copy agent-protocol bytes between the call and a new agent connection."""
        path = self._socket(call.first(_ID_KEY) or DEFAULT_SSH_ID)
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
    while True:
        message = await call.recv()
        if message is None:
            if writer.can_write_eof():
                writer.write_eof()
            return
        writer.write(BytesMessage.decode(message).data)
        await writer.drain()
