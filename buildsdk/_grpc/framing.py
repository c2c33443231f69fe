"""gRPC's length-prefixed messages and the text encodings of its headers.

Every gRPC message on an HTTP/2 stream is one flag byte (1 = compressed), a 4-byte
big-endian length and the protobuf bytes. HTTP/2 DATA frames cut that stream anywhere: one
message may span frames and one frame may hold several, so `MessageDeframer` keeps the
unfinished tail. buildsdk never negotiates compression, so a compressed message is refused,
as is one over the size cap (a peer cannot make us buffer without bound).
"""

from __future__ import annotations

import math
import struct
from typing import Final
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "MAX_MESSAGE_SIZE",
    "PREFIX_SIZE",
    "FramingError",
    "MessageDeframer",
    "decode_grpc_message",
    "encode_grpc_message",
    "encode_timeout",
    "frame_message",
    "parse_timeout",
]

_PREFIX: Final = struct.Struct(">BI")
PREFIX_SIZE: Final = _PREFIX.size
"""Bytes before each message: the compressed flag and the 4-byte length."""
MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024
"""The largest message accepted by default (64 MiB; grpc-go's own default is 4 MiB)."""

_TIMEOUT_UNITS: Final = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# Finest unit first: the header allows at most 8 digits, so the first unit that fits keeps
# the most precision.
_ENCODE_UNITS: Final = (
    ("n", 1e9),
    ("u", 1e6),
    ("m", 1e3),
    ("S", 1.0),
    ("M", 1 / 60),
    ("H", 1 / 3600),
)
_MAX_TIMEOUT_DIGITS: Final = 99_999_999
# grpc-message is percent-encoded: printable ASCII except '%' stays as it is.
_MESSAGE_SAFE: Final = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


class FramingError(ValueError):
    """The peer's message framing cannot be accepted (compressed, or larger than the cap)."""


def frame_message(message: bytes) -> bytes:
    """Prefix a protobuf message with gRPC's uncompressed flag and 4-byte length."""
    return _PREFIX.pack(0, len(message)) + message


class MessageDeframer:
    """Cut a stream of DATA bytes into whole gRPC messages (see module doc)."""

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max_size = max_size

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the messages they complete, in order.

        Raises `FramingError` for a compressed or oversized message, as soon as its prefix
        arrived (before its body is buffered).
        """
        self._buffer += data
        messages: list[bytes] = []
        while len(self._buffer) >= PREFIX_SIZE:
            compressed, length = _PREFIX.unpack_from(self._buffer)
            if compressed:
                raise FramingError("compressed messages are not accepted")
            if length > self._max_size:
                raise FramingError(
                    f"message of {length} bytes is larger than the {self._max_size}-byte limit"
                )
            if len(self._buffer) < PREFIX_SIZE + length:
                break
            messages.append(bytes(self._buffer[PREFIX_SIZE : PREFIX_SIZE + length]))
            del self._buffer[: PREFIX_SIZE + length]
        return messages

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message; non-zero at the end of a stream means truncation."""
        return len(self._buffer)


def parse_timeout(value: str) -> float | None:
    """Read a `grpc-timeout` header (`"9998m"`, `"10S"`) as seconds; None if malformed."""
    digits = value[:-1]
    if not 1 <= len(digits) <= 8 or not digits.isascii() or not digits.isdigit():
        return None
    unit = _TIMEOUT_UNITS.get(value[-1])
    return None if unit is None else int(digits) * unit


def encode_timeout(seconds: float) -> str:
    """Write a deadline as a `grpc-timeout` header: at most 8 digits, in the finest unit that
    fits, rounded up so the server never sees a shorter deadline than asked."""
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"a gRPC timeout must be a positive number of seconds, not {seconds}")
    for unit, per_second in _ENCODE_UNITS:
        amount = math.ceil(seconds * per_second)
        if amount <= _MAX_TIMEOUT_DIGITS:
            return f"{amount}{unit}"
    return f"{_MAX_TIMEOUT_DIGITS}H"


def encode_grpc_message(text: str) -> str:
    """Percent-encode a status message for the `grpc-message` trailer (UTF-8 bytes)."""
    return quote(text, safe=_MESSAGE_SAFE)


def decode_grpc_message(value: str) -> str:
    """Decode a `grpc-message` trailer; bytes that are not UTF-8 become U+FFFD, as gRPC says
    a malformed message must still be shown rather than dropped."""
    return unquote_to_bytes(value).decode("utf-8", errors="replace")
