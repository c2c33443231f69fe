"""A fast path in front of `h2` for the DATA frames of open gRPC calls, used by both sides.

For every received frame h2 builds a frame object, its flags and padding state, runs the
connection's and the stream's state machines, and formats the text of a trace log line
(hex-encoding a DATA frame's payload) whether or not anything logs it. BuildKit sends bulk
data (exports, context files) in 16 KiB DATA frames: on a 300 MB `--output type=local`
that was about half of the client's CPU time.

`InboundFrames` cuts received bytes into whole frames in front of h2: a DATA frame for a
call the connection knows is open (unpadded, not ending the stream) is handed over as its
payload, and every other frame goes to h2 in the order received. h2 never sees those DATA
frames, so its flow-control window does not shrink for them and the connection gives the
engine its window back itself (`window_updates()`): the connection acknowledges what it
receives at once anyway. What is given up is h2's check that the engine stays inside the
window, a check against a peer that breaks HTTP/2, not against a slow reader: received
data is consumed as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator
from typing import Final

__all__ = ["InboundFrames", "window_update"]

_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA: Final = 0x0
_END_STREAM_OR_PADDED: Final = 0x1 | 0x8
_WINDOW_UPDATE_HEADER: Final = b"\x00\x00\x04\x08\x00"


def window_update(stream_id: int, increment: int) -> bytes:
    """One WINDOW_UPDATE frame giving `increment` bytes back (stream 0: the connection)."""
    return _WINDOW_UPDATE_HEADER + stream_id.to_bytes(4, "big") + increment.to_bytes(4, "big")


class InboundFrames:
    """Cuts received bytes into whole HTTP/2 frames, setting aside DATA frames of open calls.

    `split()` yields, in the order received, either `bytes` (whole frames, or the client's
    connection preface, to feed to h2) or `(stream_id, payload)` for a DATA frame that
    `accepts(stream_id)` claimed. Bytes of an incomplete frame wait for the next call.
    `window_updates()` gives the window those claimed frames used back.
    """

    def __init__(self, *, server: bool) -> None:
        self._buffer = bytearray()
        # Bytes of claimed DATA frames per stream, not given back yet.
        self._received: dict[int, int] = {}
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
                stream_id &= 0x7FFFFFFF
                if accepts(stream_id):
                    self._received[stream_id] = self._received.get(stream_id, 0) + length
                    self._yielded = start = after
                    yield stream_id, _copy(buffer, position + 9, after)
            position = after
        if position > start:
            self._yielded = position
            yield _copy(buffer, start, position)

    def window_updates(self, open_streams: Container[int]) -> bytes:
        """The WINDOW_UPDATE frames giving back what claimed DATA frames used: one per
        stream still in `open_streams`, and one for the connection."""
        updates = b""
        total = 0
        for stream_id, size in self._received.items():
            total += size
            if size and stream_id in open_streams:
                updates += window_update(stream_id, size)
        if total:
            updates += window_update(0, total)
        self._received.clear()
        return updates


def _copy(buffer: bytearray, start: int, end: int) -> bytes:
    """`bytes(buffer[start:end])` with one copy instead of two."""
    with memoryview(buffer) as view:
        return bytes(view[start:end])
