"""The protobuf wire reader and writer, checked against the official `protobuf` package."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from buildsdk._protobuf import (
    WIRE_FIXED32,
    WIRE_FIXED64,
    WIRE_LEN,
    WIRE_VARINT,
    ProtobufError,
    as_int32,
    as_int64,
    decode_varint,
    encode_tag,
    encode_varint,
    field_bool,
    field_bytes,
    field_fixed32,
    field_fixed64,
    field_string,
    field_varint,
    iter_fields,
    read_bytes,
    read_text,
    read_varint,
    skip_field,
)

_F = descriptor_pb2.FieldDescriptorProto

# (name, number, type): one field of each wire shape a reader has to handle.
_SCALARS = [
    ("i64", 1, _F.TYPE_INT64),
    ("i32", 2, _F.TYPE_INT32),
    ("u64", 3, _F.TYPE_UINT64),
    ("flag", 4, _F.TYPE_BOOL),
    ("text", 5, _F.TYPE_STRING),
    ("blob", 6, _F.TYPE_BYTES),
    ("f32", 7, _F.TYPE_FIXED32),
    ("f64", 8, _F.TYPE_FIXED64),
    ("sf64", 9, _F.TYPE_SFIXED64),
    ("far", 536870911, _F.TYPE_UINT32),
]


def _message_class() -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(name="wire_test.proto", package="wiretest")
    fdp.syntax = "proto3"
    msg = fdp.message_type.add(name="Sample")
    for name, number, ftype in _SCALARS:
        msg.field.add(name=name, number=number, type=ftype, label=_F.LABEL_OPTIONAL)
    msg.field.add(name="words", number=10, type=_F.TYPE_STRING, label=_F.LABEL_REPEATED)
    msg.field.add(
        name="child", number=11, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
        type_name=".wiretest.Sample",
    )  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("wiretest.Sample"))


Sample = _message_class()

_sample_values = st.fixed_dictionaries(
    {},
    optional={
        "i64": st.integers(-(2**63), 2**63 - 1),
        "i32": st.integers(-(2**31), 2**31 - 1),
        "u64": st.integers(0, 2**64 - 1),
        "flag": st.booleans(),
        "text": st.text(),
        "blob": st.binary(),
        "f32": st.integers(0, 2**32 - 1),
        "f64": st.integers(0, 2**64 - 1),
        "sf64": st.integers(-(2**63), 2**63 - 1),
        "far": st.integers(0, 2**32 - 1),
        "words": st.lists(st.text(), max_size=4),
    },
)


def _decode_sample(data: bytes) -> dict[str, Any]:
    """Read a Sample with iter_fields, the way buildsdk's decoders use it."""
    out: dict[str, Any] = {}
    for number, wire, value in iter_fields(data):
        if number == 1 and wire == WIRE_VARINT:
            assert isinstance(value, int)
            out["i64"] = as_int64(value)
        elif number == 2 and wire == WIRE_VARINT:
            assert isinstance(value, int)
            out["i32"] = as_int32(value)
        elif number in (3, 536870911) and wire == WIRE_VARINT:
            out["u64" if number == 3 else "far"] = value
        elif number == 4 and wire == WIRE_VARINT:
            out["flag"] = value != 0
        elif number == 5 and wire == WIRE_LEN:
            assert isinstance(value, bytes)
            out["text"] = value.decode()
        elif number == 6 and wire == WIRE_LEN:
            out["blob"] = value
        elif number == 7 and wire == WIRE_FIXED32:
            out["f32"] = value
        elif number == 8 and wire == WIRE_FIXED64:
            out["f64"] = value
        elif number == 9 and wire == WIRE_FIXED64:
            assert isinstance(value, int)
            out["sf64"] = as_int64(value)
        elif number == 10 and wire == WIRE_LEN:
            assert isinstance(value, bytes)
            out.setdefault("words", []).append(value.decode())
        elif number == 11 and wire == WIRE_LEN:
            assert isinstance(value, bytes)
            out["child"] = _decode_sample(value)
        else:
            raise AssertionError(f"unexpected field {number} wire {wire}")
    return out


def _encode_sample(values: dict[str, Any]) -> bytes:
    """Write a Sample with buildsdk's field helpers."""
    parts: list[bytes] = []
    for key, value in values.items():
        if key == "i64":
            parts.append(field_varint(1, value))
        elif key == "i32":
            parts.append(field_varint(2, value))
        elif key == "u64":
            parts.append(field_varint(3, value))
        elif key == "flag":
            parts.append(field_bool(4, value))
        elif key == "text":
            parts.append(field_string(5, value))
        elif key == "blob":
            parts.append(field_bytes(6, value))
        elif key == "f32":
            parts.append(field_fixed32(7, value))
        elif key == "f64":
            parts.append(field_fixed64(8, value))
        elif key == "sf64":
            parts.append(field_fixed64(9, value))
        elif key == "far":
            parts.append(field_varint(536870911, value))
        elif key == "words":
            parts.extend(field_string(10, word) for word in value)
        elif key == "child":
            parts.append(field_bytes(11, _encode_sample(value)))
    return b"".join(parts)


def _official(values: dict[str, Any]) -> Any:
    msg = Sample()
    for key, value in values.items():
        if key == "words":
            msg.words.extend(value)
        elif key == "child":
            msg.child.CopyFrom(_official(value))
        else:
            setattr(msg, key, value)
    return msg


def _without_defaults(values: dict[str, Any]) -> dict[str, Any]:
    # proto3 does not put default values (0, "", false, empty) on the wire.
    return {k: v for k, v in values.items() if v not in (0, "", b"", False, [])}


@given(_sample_values, st.one_of(st.none(), _sample_values))
def test_reader_decodes_what_official_protobuf_encodes(
    values: dict[str, Any], child: dict[str, Any] | None
) -> None:
    if child is not None:
        values = {**values, "child": child}
    data = _official(values).SerializeToString()
    expected = _without_defaults(values)
    if child is not None:
        expected["child"] = _without_defaults(child)
    assert _decode_sample(data) == expected


@given(_sample_values, st.one_of(st.none(), _sample_values))
def test_official_protobuf_parses_what_the_writer_encodes(
    values: dict[str, Any], child: dict[str, Any] | None
) -> None:
    if child is not None:
        values = {**values, "child": child}
    parsed = Sample()
    parsed.ParseFromString(_encode_sample(values))
    assert parsed == _official(values)


@given(st.integers(0, 2**64 - 1))
def test_varint_round_trip(value: int) -> None:
    data = encode_varint(value)
    assert decode_varint(data + b"\xff", 0) == (value, len(data))
    assert len(data) == max(1, (value.bit_length() + 6) // 7)


@given(st.integers(-(2**63), -1))
def test_negative_varints_take_ten_bytes_and_read_back_as_int64(value: int) -> None:
    data = encode_varint(value)
    assert len(data) == 10
    decoded, _ = decode_varint(data)
    assert as_int64(decoded) == value


def test_int32_reinterpretation() -> None:
    assert as_int32(encode_and_decode(-1)) == -1
    assert as_int32(encode_and_decode(2**31 - 1)) == 2**31 - 1
    assert as_int32(encode_and_decode(-(2**31))) == -(2**31)


def encode_and_decode(value: int) -> int:
    return decode_varint(encode_varint(value))[0]


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1])
def test_varint_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ProtobufError, match="64 bits"):
        encode_varint(value)


def test_tags_and_fixed_fields_have_the_documented_bytes() -> None:
    assert encode_tag(1, WIRE_LEN) == b"\x0a"
    assert field_varint(1, 150) == b"\x08\x96\x01"  # the example of the protobuf encoding guide
    assert field_string(2, "testing") == b"\x12\x07testing"
    assert field_fixed32(3, 1) == b"\x1d" + struct.pack("<I", 1)
    assert field_fixed64(3, -1) == b"\x19" + b"\xff" * 8
    assert field_bool(4, True) == b"\x20\x01"
    assert field_bool(4, False) == b"\x20\x00"


@given(st.integers(1, 2**29 - 1), st.sampled_from([0, 1, 2, 5]))
def test_tags_read_back_as_their_number_and_wire_type_every_time(number: int, wire: int) -> None:
    # Keys are kept after their first encoding: the second must equal the first.
    first, again = encode_tag(number, wire), encode_tag(number, wire)
    assert first == again
    assert decode_varint(first) == ((number << 3) | wire, len(first))


@pytest.mark.parametrize("number", [0, 2**29])
def test_invalid_field_numbers_are_refused_when_writing(number: int) -> None:
    with pytest.raises(ProtobufError, match="invalid field number"):
        encode_tag(number, WIRE_VARINT)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x08", "truncated varint"),
        (b"\x08\x80\x80", "truncated varint"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x12\x05abc", "runs past the message end"),
        (b"\x19\x00\x00", "truncated fixed64"),
        (b"\x1d\x00", "truncated fixed32"),
        (b"\x0b", "unsupported wire type 3"),
        (b"\x0c", "unsupported wire type 4"),
        (b"\x0e", "unsupported wire type 6"),
        (b"\x00\x01", "invalid field number 0"),
    ],
)
def test_malformed_messages_raise_protobuf_error(data: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=message) as info:
        list(iter_fields(data))
    assert isinstance(info.value, ValueError)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_either_decode_or_raise_protobuf_error(data: bytes) -> None:
    try:
        fields = list(iter_fields(data))
    except ProtobufError:
        return
    # Whatever decodes re-encodes to the same bytes when every varint was minimal.
    rebuilt = b"".join(_reencode(number, wire, value) for number, wire, value in fields)
    reparsed = list(iter_fields(rebuilt))
    assert reparsed == fields


def _reencode(number: int, wire: int, value: int | bytes) -> bytes:
    if wire == WIRE_LEN:
        assert isinstance(value, bytes)
        return field_bytes(number, value)
    assert isinstance(value, int)
    if wire == WIRE_FIXED64:
        return field_fixed64(number, value)
    if wire == WIRE_FIXED32:
        return field_fixed32(number, value)
    return field_varint(number, value)


def test_unknown_fields_are_yielded_for_the_caller_to_skip() -> None:
    data = field_string(1, "kept") + field_varint(99, 7) + field_bytes(100, b"\x00\x01")
    assert list(iter_fields(data)) == [
        (1, WIRE_LEN, b"kept"),
        (99, WIRE_VARINT, 7),
        (100, WIRE_LEN, b"\x00\x01"),
    ]


def _walk(data: bytes) -> list[tuple[int, int]] | str:
    """The (number, wire type) of each field, skipping values with skip_field; or the error."""
    fields = []
    pos = 0
    try:
        while pos < len(data):
            key, pos = decode_varint(data, pos)
            pos = skip_field(data, pos, key)
            fields.append((key >> 3, key & 7))
    except ProtobufError as exc:
        return str(exc)
    return fields


def _iterated(data: bytes) -> list[tuple[int, int]] | str:
    try:
        return [(number, wire) for number, wire, _ in iter_fields(data)]
    except ProtobufError as exc:
        return str(exc)


@given(st.binary(max_size=64))
def test_skip_field_accepts_and_refuses_what_iter_fields_does(data: bytes) -> None:
    assert _walk(data) == _iterated(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x08\x96\x01",
        b"\x12\x07testing\x19" + b"\x00" * 8 + b"\x1d" + b"\x00" * 4,
        b"\x08",
        b"\x08" + b"\xff" * 10 + b"\x01",
        b"\x12\x05abc",
        b"\x19\x00\x00",
        b"\x1d\x00",
        b"\x0b",
        b"\x00\x01",
        b"\xf8\xff\xff\xff\x0f\x00",  # field number 2**29 - 1 (the largest), varint
        b"\x80\x80\x80\x80\x10\x00",  # field number 2**29: too large
    ],
)
def test_skip_field_matches_iter_fields_on_edge_cases(data: bytes) -> None:
    assert _walk(data) == _iterated(data)


@given(st.text(), st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_field_readers_take_what_iter_fields_gives_and_name_a_wrong_wire_type(
    text: str, number: int
) -> None:
    data = field_string(1, text) + field_varint(2, number)
    (_, _, as_len), (_, _, as_num) = list(iter_fields(data))
    assert read_text(as_len, "name") == text
    assert read_bytes(as_len, "name") == text.encode("utf-8")
    assert read_varint(as_num, "size") == number
    with pytest.raises(ProtobufError, match=r"^size must be a varint$"):
        read_varint(as_len, "size")
    with pytest.raises(ProtobufError, match=r"^name must be length-delimited$"):
        read_text(as_num, "name")
    with pytest.raises(ProtobufError, match=r"^name must be length-delimited$"):
        read_bytes(as_num, "name")


def test_read_text_refuses_bytes_that_are_not_utf8() -> None:
    with pytest.raises(ProtobufError, match=r"^name is not UTF-8$"):
        read_text(b"\xff", "name")
