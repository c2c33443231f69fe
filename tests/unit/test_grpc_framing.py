"""gRPC's message framing, header encodings and status details, as bytes on the wire.

Property tests: whatever way HTTP/2 cuts the DATA stream, the same messages come out;
encoded deadlines and messages read back as what was meant; status details survive the
unpadded base64 gRPC sends, and malformed ones are refused rather than misread.
"""

from __future__ import annotations

import base64
import contextlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsdk._grpc.framing import (
    FramingError,
    MessageDeframer,
    decode_grpc_message,
    encode_grpc_message,
    encode_timeout,
    frame_message,
    parse_timeout,
)
from buildsdk._grpc.status import (
    STATUS_NAMES,
    Detail,
    RpcStatus,
    Status,
    decode_status_details,
    encode_status_details,
    status_from_http,
)
from buildsdk._protobuf import field_bytes, field_string, field_varint


def test_a_frame_is_flag_length_and_bytes() -> None:
    assert frame_message(b"\x08\x01") == b"\x00\x00\x00\x00\x02\x08\x01"
    assert frame_message(b"") == b"\x00\x00\x00\x00\x00"


@given(
    messages=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
)
def test_deframing_is_independent_of_how_the_bytes_are_cut(
    messages: list[bytes], cuts: list[int]
) -> None:
    wire = b"".join(frame_message(m) for m in messages)
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    deframer = MessageDeframer()
    out: list[bytes] = []
    for start, stop in itertools.pairwise(points):
        out += deframer.feed(wire[start:stop])
    assert out == messages
    assert deframer.pending == 0


@given(st.binary(min_size=1, max_size=50), st.integers(min_value=1, max_value=4))
def test_a_truncated_message_stays_pending(message: bytes, missing: int) -> None:
    wire = frame_message(message)
    deframer = MessageDeframer()
    assert deframer.feed(wire[: len(wire) - min(missing, len(message))]) == []
    assert deframer.pending > 0


def test_compressed_and_oversized_messages_are_refused_at_their_prefix() -> None:
    with pytest.raises(FramingError, match="compressed"):
        MessageDeframer().feed(b"\x01\x00\x00\x00\x01")
    # Refused as soon as the prefix says 17 bytes; the body never has to arrive.
    with pytest.raises(FramingError, match="17 bytes is larger than the 16-byte limit"):
        MessageDeframer(max_size=16).feed(b"\x00\x00\x00\x00\x11")
    assert MessageDeframer(max_size=16).feed(frame_message(b"x" * 16)) == [b"x" * 16]


@pytest.mark.parametrize(
    ("seconds", "header"),
    [
        (1.0, "1000000u"),
        (0.000_000_5, "500n"),
        (0.3359375, "335938u"),
        (10.0, "10000000u"),
        (100.0, "100000m"),
        (3 * 3600.0, "10800000m"),
        (200_000.0, "200000S"),
        (1e9, "16666667M"),
    ],
)
def test_timeouts_use_the_finest_unit_that_fits_eight_digits(seconds: float, header: str) -> None:
    assert encode_timeout(seconds) == header


@given(st.floats(min_value=1e-9, max_value=1e10, allow_nan=False))
def test_an_encoded_timeout_is_never_shorter_and_reads_back(seconds: float) -> None:
    header = encode_timeout(seconds)
    assert len(header) <= 9
    parsed = parse_timeout(header)
    assert parsed is not None
    assert parsed >= seconds * (1 - 1e-12)
    # A coarser unit is chosen only when the finer one needs more than 8 digits, so the
    # amount has at least 6 and rounding up adds less than one part in 100000.
    assert parsed <= seconds * (1 + 1e-5) + 1e-9


@pytest.mark.parametrize(
    "value", ["", "5", "m", "123456789m", "12x", "1.5S", "-1S", "\u0661\u0662S"]
)
def test_malformed_timeouts_are_ignored(value: str) -> None:
    assert parse_timeout(value) is None


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("inf"), float("nan")])
def test_a_timeout_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        encode_timeout(seconds)


def test_grpc_message_escapes_only_percent_and_non_printable() -> None:
    assert encode_grpc_message('process "/bin/sh -c x" 100%') == 'process "/bin/sh -c x" 100%25'
    assert encode_grpc_message("é\n") == "%C3%A9%0A"
    assert decode_grpc_message("%C3%A9%0A 50%25") == "é\n 50%"
    # Not UTF-8: shown, not dropped.
    assert decode_grpc_message("bad %FF byte") == "bad \ufffd byte"


@given(st.text())
def test_grpc_message_round_trips(text: str) -> None:
    encoded = encode_grpc_message(text)
    assert all(" " <= c <= "~" for c in encoded)
    assert decode_grpc_message(encoded) == text.encode("utf-8", "surrogatepass").decode(
        "utf-8", "replace"
    )


_details = st.builds(
    Detail,
    type_url=st.text(max_size=60),
    value=st.binary(max_size=200),
)


@given(
    code=st.integers(min_value=0, max_value=16),
    message=st.text(max_size=100),
    details=st.lists(_details, max_size=5).map(tuple),
    padded=st.booleans(),
)
def test_status_details_round_trip_padded_or_not(
    code: int, message: str, details: tuple[Detail, ...], padded: bool
) -> None:
    status = RpcStatus(code, message, details)
    encoded = encode_status_details(status)
    assert "=" not in encoded
    if padded:
        encoded += "=" * (-len(encoded) % 4)
    assert decode_status_details(encoded) == status


def test_status_details_as_buildkit_sends_them() -> None:
    # google.rpc.Status{code=2, message=3 bytes, details=[Any{type_url, value=JSON}]}.
    any_bytes = field_string(1, "github.com/moby/buildkit/errdefs.Vertex+json") + field_bytes(
        2, b'{"digest":"sha256:ab"}'
    )
    raw = field_varint(1, 2) + field_string(2, "boom") + field_bytes(3, any_bytes)
    unpadded = base64.b64encode(raw).rstrip(b"=").decode()
    assert len(raw) % 3 != 0  # the case the padding rule is about
    assert decode_status_details(unpadded) == RpcStatus(
        2,
        "boom",
        (Detail("github.com/moby/buildkit/errdefs.Vertex+json", b'{"digest":"sha256:ab"}'),),
    )


@pytest.mark.parametrize(
    "value",
    [
        "not base64!",
        base64.b64encode(b"\x0a\x05ab").decode(),  # Status.message runs past the end
        base64.b64encode(field_bytes(2, b"\xff\xfe")).decode(),  # message not UTF-8
        base64.b64encode(b"\x0b").decode(),  # group wire type
    ],
)
def test_malformed_status_details_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        decode_status_details(value)


@given(st.binary(max_size=64))
def test_any_bytes_either_decode_or_raise_value_error(data: bytes) -> None:
    # Never another exception type (an IndexError would escape the call's error path).
    with contextlib.suppress(ValueError):
        decode_status_details(base64.b64encode(data))


def test_status_names_and_http_mapping() -> None:
    assert STATUS_NAMES[Status.UNIMPLEMENTED] == "UNIMPLEMENTED"
    assert len(STATUS_NAMES) == 17
    assert status_from_http(404) == Status.UNIMPLEMENTED
    assert status_from_http(503) == Status.UNAVAILABLE
    assert status_from_http(418) == Status.UNKNOWN
