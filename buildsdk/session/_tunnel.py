"""A session carried by BuildKit's `Control/Session` call instead of a `/session` connection.

Why: a standalone buildkitd has no `/session` endpoint; its clients open the session as a
bidirectional gRPC call, `moby.buildkit.v1.Control/Session`, on the Control API connection
(dockerd 23+ accepts it on `/grpc` too). Each message of that call, in both directions, is a
`BytesMessage{data=1}` holding a piece of a nested HTTP/2 connection on which, as on
`/session`, the daemon is the HTTP/2 client and buildsdk the server. `ControlSessionStream`
makes the call look like the byte stream `SessionServer` reads and writes, so the session
is served by the same code either way.

Pieces need not line up with HTTP/2 frames either way. The daemon refuses a received
message over 4 MiB (grpc-go's default limit) and ends the session, so writes are cut into
pieces of at most 1 MiB. Closing half-closes the call; the daemon then says GOAWAY inside
the tunnel and ends the call with status OK.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final

from buildsdk.errors import GrpcCallError, StreamError
from buildsdk.session._messages import BytesMessage

if TYPE_CHECKING:
    from buildsdk.buildkit.control import AsyncCall

__all__ = ["MAX_PIECE", "ControlSessionStream"]

MAX_PIECE: Final = 1024 * 1024
"""The largest piece of the nested connection sent in one `BytesMessage` (the daemon's
limit per message is 4 MiB)."""
_CLOSE_TIMEOUT: Final = 5.0


class ControlSessionStream:
    """A `Control/Session` call as the `Stream` a `SessionServer` serves on: `read` gives
    the daemon's bytes, `write` sends ours, `aclose` half-closes and waits for the end."""

    def __init__(self, call: AsyncCall) -> None:
        self._call = call
        self._pending = b""
        self._closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to `max_bytes` of the daemon's side of the nested connection; b"" once the
        call ended with status OK. Raises `GrpcCallError`/`StreamError` if it failed."""
        while not self._pending:
            message = await self._call.recv()
            if message is None:
                return b""
            self._pending = BytesMessage.decode(message).data
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send `buffer` as one or more `BytesMessage`s of at most `MAX_PIECE` bytes."""
        if self._closed:
            raise StreamError("the session tunnel is closed")
        view = memoryview(buffer)
        for start in range(0, len(view), MAX_PIECE):
            await self._call.send(BytesMessage(bytes(view[start : start + MAX_PIECE])).encode())

    async def aclose(self) -> None:
        """Half-close the call, read what the daemon still says (its GOAWAY) until the call
        ends, and cancel it if that takes more than a few seconds."""
        if self._closed and self._call.code is not None:
            return
        if not self._closed:
            self._closed = True
            if self._call.code is None:
                self._call.done_writing()
        try:
            await asyncio.wait_for(self._drain(), _CLOSE_TIMEOUT)
        except (asyncio.TimeoutError, GrpcCallError, StreamError):
            self._call.cancel()

    async def _drain(self) -> None:
        # Bytes after our half-close are the daemon's goodbye; the server is done with them.
        with contextlib.suppress(GrpcCallError, StreamError):
            while await self._call.recv() is not None:
                pass
