"""BuildKit's own protocol: progress (`StatusResponse`) decoding for both build paths.

`status` turns BuildKit's `StatusResponse` messages into buildsdk events; the engine sends
them inside the `/build` stream (`moby.buildkit.trace`) and as `Control/Status` replies.
`control` (imported on its own: it needs asyncio and, for a channel, h2) makes the Control
API calls on the engine's `POST /grpc` connection.
"""

from __future__ import annotations

from buildsdk.buildkit.status import decode_status_response, decode_trace

__all__ = ["decode_status_response", "decode_trace"]
