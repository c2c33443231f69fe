"""SSH forwarding: `RUN --mount=type=ssh` talks to an ssh-agent of the user's or buildsdk's.

The option model, `SSHForward`, lives with the other option models in
`buildsdk._session_options` and is re-exported here. An `SSHForward` is one
`docker build --ssh` entry: an ID (`default` unless named) and what answers for it, either an agent
socket to forward (without one, `SSH_AUTH_SOCK` is used) or private key files, which
buildsdk loads and serves from an in-process agent of its own, as the Docker CLI does
(`--ssh default=~/.ssh/id_ed25519`). The engine first asks `SSH/CheckAgent` whether an ID
is forwarded, then opens `SSH/ForwardAgent` per connection from the build container; the
agent protocol's bytes travel inside `BytesMessage`s both ways. For a socket, buildsdk
copies them to and from a fresh connection to it; for key files, a fresh `AgentConnection`
(buildsdk.session._sshagent) answers them, read-only: a build can list the keys and have
data signed, never add, remove or lock keys.

Key files are read and decrypted when a build's session is planned, before any byte is
sent, so an unreadable key or a wrong passphrase fails there. The passphrase is a
`SecretStr`: never in a repr, a log line or an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from buildsdk._grpc.status import GrpcError, Status
from buildsdk._session_options import DEFAULT_SSH_ID, SSHForward, load_forward_keys

# Everything only a running session needs (asyncio, the protobuf messages) is imported by
# the functions that serve it.
if TYPE_CHECKING:
    import asyncio

    from buildsdk.session._server import Call
    from buildsdk.session._sshagent import AgentKey

__all__ = ["DEFAULT_SSH_ID", "SSHForward", "SSHService"]

CHECK_AGENT: Final = "/moby.sshforward.v1.SSH/CheckAgent"
FORWARD_AGENT: Final = "/moby.sshforward.v1.SSH/ForwardAgent"
_ID_KEY: Final = "buildkit.ssh.id"
_CHUNK: Final = 32 * 1024


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
                self._keyrings[forward.id] = load_forward_keys(forward)
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
