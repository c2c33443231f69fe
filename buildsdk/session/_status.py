"""gRPC status codes and the exception handlers raise to end a call with one.

Kept apart from `_grpc` so that the service modules (and `BuildOptions`, which imports
their option models) do not import `h2` until a session is opened.
"""

from __future__ import annotations

from typing import Final

__all__ = ["GrpcError", "Status"]


class Status:
    """gRPC status codes used by the session services."""

    OK: Final = 0
    CANCELLED: Final = 1
    UNKNOWN: Final = 2
    INVALID_ARGUMENT: Final = 3
    NOT_FOUND: Final = 5
    RESOURCE_EXHAUSTED: Final = 8
    UNIMPLEMENTED: Final = 12
    INTERNAL: Final = 13
    UNAVAILABLE: Final = 14


class GrpcError(Exception):
    """Raised by a handler to end its call with a gRPC error status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
