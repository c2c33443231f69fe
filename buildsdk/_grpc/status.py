"""gRPC status codes, `google.rpc.Status` details, and the exception handlers raise.

A call ends with a `grpc-status` trailer and optionally `grpc-message` (text) and
`grpc-status-details-bin`: base64 (padding optional, as gRPC sends it unpadded) of a
`google.rpc.Status{code=1, message=2, details=3 repeated google.protobuf.Any{type_url=1,
value=2}}`. BuildKit puts its error context there (stack, Dockerfile source, exit code) as
JSON-valued `Any`s, so the details are kept as raw `Detail`s for the layers above to read.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

from buildsdk._protobuf import (
    WIRE_LEN,
    WIRE_VARINT,
    ProtobufError,
    as_int32,
    field_bytes,
    field_string,
    field_varint,
    iter_fields,
)

__all__ = [
    "STATUS_NAMES",
    "Detail",
    "GrpcError",
    "RpcStatus",
    "Status",
    "decode_status_details",
    "encode_status_details",
    "status_from_http",
]


class Status:
    """gRPC status codes (google.rpc.Code)."""

    OK: Final = 0
    CANCELLED: Final = 1
    UNKNOWN: Final = 2
    INVALID_ARGUMENT: Final = 3
    DEADLINE_EXCEEDED: Final = 4
    NOT_FOUND: Final = 5
    ALREADY_EXISTS: Final = 6
    PERMISSION_DENIED: Final = 7
    RESOURCE_EXHAUSTED: Final = 8
    FAILED_PRECONDITION: Final = 9
    ABORTED: Final = 10
    OUT_OF_RANGE: Final = 11
    UNIMPLEMENTED: Final = 12
    INTERNAL: Final = 13
    UNAVAILABLE: Final = 14
    DATA_LOSS: Final = 15
    UNAUTHENTICATED: Final = 16


STATUS_NAMES: Final[dict[int, str]] = {
    getattr(Status, name): name for name in vars(Status) if name.isupper()
}
"""Each status code's name (`12` -> `"UNIMPLEMENTED"`)."""

# What a gRPC client reports when the answer is not gRPC at all (gRPC's
# http-grpc-status-mapping.md): the HTTP status says roughly what went wrong.
_FROM_HTTP: Final = {
    400: Status.INTERNAL,
    401: Status.UNAUTHENTICATED,
    403: Status.PERMISSION_DENIED,
    404: Status.UNIMPLEMENTED,
    429: Status.UNAVAILABLE,
    502: Status.UNAVAILABLE,
    503: Status.UNAVAILABLE,
    504: Status.UNAVAILABLE,
}


def status_from_http(http_status: int) -> int:
    """The gRPC status a non-200 HTTP answer to a call stands for."""
    return _FROM_HTTP.get(http_status, Status.UNKNOWN)


@dataclass(frozen=True)
class Detail:
    """One `google.protobuf.Any` of a status: what it is (`type_url`) and its bytes."""

    type_url: str
    value: bytes


@dataclass(frozen=True)
class RpcStatus:
    """A decoded `google.rpc.Status`: code, message and details, as the server sent them."""

    code: int
    message: str
    details: tuple[Detail, ...] = ()


def _text(value: int | bytes, what: str) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError(f"{what} is not length-delimited")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtobufError(f"{what} is not UTF-8") from None


def _detail(data: bytes) -> Detail:
    type_url = ""
    value = b""
    for number, wire, field in iter_fields(data):
        if number == 1 and wire == WIRE_LEN:
            type_url = _text(field, "Any.type_url")
        elif number == 2 and wire == WIRE_LEN:
            assert isinstance(field, bytes)
            value = field
    return Detail(type_url, value)


def decode_status_details(value: str | bytes) -> RpcStatus:
    """Decode a `grpc-status-details-bin` value (padded or unpadded base64).

    Raises `ValueError` when it is not base64 or not a well-formed `google.rpc.Status`.
    """
    raw = value.encode("ascii", errors="replace") if isinstance(value, str) else value
    raw = raw.strip().rstrip(b"=")
    try:
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"grpc-status-details-bin is not base64: {exc}") from None
    code = 0
    message = ""
    details: list[Detail] = []
    for number, wire, field in iter_fields(data):
        if number == 1 and wire == WIRE_VARINT:
            assert isinstance(field, int)
            code = as_int32(field)
        elif number == 2 and wire == WIRE_LEN:
            message = _text(field, "Status.message")
        elif number == 3 and wire == WIRE_LEN:
            assert isinstance(field, bytes)
            details.append(_detail(field))
    return RpcStatus(code, message, tuple(details))


def encode_status_details(status: RpcStatus) -> str:
    """Encode a status as a `grpc-status-details-bin` value (unpadded base64, as gRPC does)."""
    data = b""
    if status.code:
        data += field_varint(1, status.code & 0xFFFFFFFFFFFFFFFF)
    if status.message:
        data += field_string(2, status.message)
    for detail in status.details:
        any_bytes = b""
        if detail.type_url:
            any_bytes += field_string(1, detail.type_url)
        if detail.value:
            any_bytes += field_bytes(2, detail.value)
        data += field_bytes(3, any_bytes)
    return base64.b64encode(data).rstrip(b"=").decode("ascii")


class GrpcError(Exception):
    """Raised by a session handler to end its call with a gRPC error status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
