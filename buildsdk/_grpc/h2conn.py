"""The `h2` connection both gRPC sides use, without h2's per-frame debug text for DATA frames.

h2 builds the text of a trace log line for every frame it receives, whether or not anything
logs it, and hyperframe's text of a DATA frame hex-encodes the whole payload (then keeps 20
characters). BuildKit sends bulk data (exports, context files) in 16 KiB DATA frames, so on a
300 MB `--output type=local` this text was about a quarter of the client's CPU time.

`new_connection()` gives received DATA frames a short text of their own. It relies on two
details of h2 (the frame buffer is the `incoming_buffer` attribute; frames are dispatched by
exact class through `_frame_dispatch_table`); when either is missing it leaves the connection
as h2 made it, which is only slower. `tests/unit/test_grpc_h2conn.py` tells when that happens.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.frame_buffer
import hyperframe.frame

__all__ = ["new_connection"]


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
