"""The `h2` connection both gRPC sides use, and a fast path for the DATA frames of open calls.

h2 builds the text of a trace log line for every frame it receives, whether or not anything
logs it, and hyperframe's text of a DATA frame hex-encodes the whole payload (then keeps 20
characters). BuildKit sends bulk data (exports, context files) in 16 KiB DATA frames, so on a
300 MB `--output type=local` this text was about a quarter of the client's CPU time.

`new_connection()` gives received DATA frames a short text of their own. It relies on two
details of h2 (the frame buffer is the `incoming_buffer` attribute; frames are dispatched by
exact class through `_frame_dispatch_table`); when either is missing it leaves the connection
as h2 made it, which is only slower. `tests/unit/test_grpc_h2conn.py` tells when that happens.

Even without that text, h2 spends about as long on each DATA frame's objects, flags and
state checks as buildsdk spends on the message inside. `InboundFrames` cuts received bytes
into whole frames in front of h2: a DATA frame for a call the connection knows is open
(unpadded, not ending the stream) is handed over as its payload, and every other frame goes
to h2 in the order received. h2 never sees those DATA frames, so its flow-control window
does not shrink for them and the connection gives the engine its window back itself
(`window_update()`): the connection acknowledges what it receives at once anyway. What is
given up is h2's check that the engine stays inside the window, a check against a peer that
breaks HTTP/2, not against a slow reader: received data is consumed as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import h2.config
import h2.connection
import h2.frame_buffer
import hyperframe.frame

__all__ = ["InboundFrames", "new_connection", "window_update"]

_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA: Final = 0x0
_END_STREAM_OR_PADDED: Final = 0x1 | 0x8
_WINDOW_UPDATE_HEADER: Final = b"\x00\x00\x04\x08\x00"


class _DataFrame(hyperframe.frame.DataFrame):
    """A received DATA frame whose text names its size instead of hex-encoding its payload."""

    def __repr__(self) -> str:
        return f"DataFrame(stream_id={self.stream_id}, {len(self.data)} bytes)"


class _FrameBuffer(h2.frame_buffer.FrameBuffer):
    """h2's frame parser, handing out DATA frames as `_DataFrame`."""

    def __next__(self) -> Any:
        frame = super().__next__()
        if frame.__class__ is hyperframe.frame.DataFrame:
            # Same layout and behaviour; only the text differs.
            frame.__class__ = _DataFrame
        return frame


def new_connection(config: h2.config.H2Configuration) -> h2.connection.H2Connection:
    """Return an `H2Connection` for `config` whose received DATA frames are cheap to describe."""
    connection = h2.connection.H2Connection(config=config)
    dispatch = getattr(connection, "_frame_dispatch_table", None)
    buffer = getattr(connection, "incoming_buffer", None)
    if not isinstance(dispatch, dict) or hyperframe.frame.DataFrame not in dispatch:
        return connection
    if type(buffer) is not h2.frame_buffer.FrameBuffer:
        return connection
    quiet = _FrameBuffer(server=not config.client_side)
    quiet.max_frame_size = buffer.max_frame_size
    dispatch[_DataFrame] = dispatch[hyperframe.frame.DataFrame]
    connection.incoming_buffer = quiet
    return connection


def window_update(stream_id: int, increment: int) -> bytes:
    """One WINDOW_UPDATE frame giving `increment` bytes back (stream 0: the connection)."""
    return _WINDOW_UPDATE_HEADER + stream_id.to_bytes(4, "big") + increment.to_bytes(4, "big")


class InboundFrames:
    """Cuts received bytes into whole HTTP/2 frames, setting aside DATA frames of open calls.

    `split()` yields, in the order received, either `bytes` (whole frames, or the client's
    connection preface, to feed to h2) or `(stream_id, payload)` for a DATA frame that
    `accepts(stream_id)` claimed. Bytes of an incomplete frame wait for the next call.
    """

    def __init__(self, *, server: bool) -> None:
        self._buffer = bytearray()
        # Bytes at the front of the buffer that were yielded; dropped on the next call, so
        # a caller that stops iterating early (an exception) loses nothing and repeats nothing.
        self._yielded = 0
        # The server's first bytes are the client's preface, which h2 checks itself.
        self._preface = len(_PREFACE) if server else 0

    def split(
        self, data: bytes, accepts: Callable[[int], bool], max_frame_size: int
    ) -> Iterator[bytes | tuple[int, bytes]]:
        """Yield the frames `data` completes (see the class doc).

        `accepts` is asked only after everything before the frame was yielded, so it sees
        the state those frames left behind.
        """
        buffer = self._buffer
        del buffer[: self._yielded]
        self._yielded = 0
        buffer += data
        end = len(buffer)
        start = 0
        position = min(self._preface, end)
        self._preface -= position
        while end - position >= 9:
            length = int.from_bytes(buffer[position : position + 3], "big")
            after = position + 9 + length
            if after > end:
                break
            if (
                buffer[position + 3] == _DATA
                and not buffer[position + 4] & _END_STREAM_OR_PADDED
                and length <= max_frame_size
            ):
                if position > start:
                    self._yielded = position
                    yield _copy(buffer, start, position)
                    start = position
                stream_id = int.from_bytes(buffer[position + 5 : position + 9], "big")
                if accepts(stream_id & 0x7FFFFFFF):
                    self._yielded = start = after
                    yield stream_id & 0x7FFFFFFF, _copy(buffer, position + 9, after)
            position = after
        if position > start:
            self._yielded = position
            yield _copy(buffer, start, position)


def _copy(buffer: bytearray, start: int, end: int) -> bytes:
    """`bytes(buffer[start:end])` with one copy instead of two."""
    with memoryview(buffer) as view:
        return bytes(view[start:end])
