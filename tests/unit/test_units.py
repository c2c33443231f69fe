"""Byte sizes parse as the Docker CLI (go-units RAMInBytes) parses them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsdk._units import INT64_MAX, parse_size

# (input, bytes) pairs; the binary meaning of every spelling is go-units' RAMInBytes.
CASES = [
    (0, 0),
    (1024, 1024),
    ("10", 10),
    ("10b", 10),
    ("10B", 10),
    ("1k", 1024),
    ("1K", 1024),
    ("1kb", 1024),
    ("1KiB", 1024),
    ("512m", 512 * 1024**2),
    ("128m", 134217728),
    ("1g", 1024**3),
    ("1.5g", 1610612736),
    ("2t", 2 * 1024**4),
    ("1p", 1024**5),
    ("64 MiB", 64 * 1024**2),
    ("1 ", 1),
    ("5.", 5),
    (".5k", 512),
    ("1.1k", 1126),  # 1126.4 truncated, as int64(float64) in Go
]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_sizes_match_the_cli(value: int | str, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "invalid size ''"),
        ("-1", "invalid size '-1'"),
        ("1e3", "invalid size '1e3'"),
        ("m", "invalid size 'm'"),
        ("1x", "invalid unit 'x' in size '1x'"),
        ("1mbb", "invalid unit 'mbb'"),
        ("1bb", "invalid unit 'bb'"),
        ("1kab", "invalid unit 'kab'"),
        ("1  m", "invalid size '1  m'"),
        ("\u0663", "invalid size"),  # an Arabic-Indic digit is no digit to Go
        (-5, "size must not be negative, got -5"),
        (2**63, "does not fit in a 64-bit integer"),
        ("9000000p", "does not fit in a 64-bit integer"),
    ],
)
def test_invalid_sizes_say_why(value: int | str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse_size(value)
    assert message in str(info.value)


def test_booleans_are_not_sizes() -> None:
    with pytest.raises(ValueError, match="got bool"):
        parse_size(True)


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@given(
    number=st.integers(min_value=0, max_value=10**6),
    unit=st.sampled_from(sorted(_UNITS)),
    tail=st.sampled_from(["", "b", "ib"]),
    upper=st.booleans(),
    space=st.booleans(),
)
def test_integer_sizes_scale_by_binary_units(
    number: int, unit: str, tail: str, upper: bool, space: bool
) -> None:
    suffix = unit + (tail if unit not in ("", "b") else "")
    text = f"{number}{' ' if space and suffix else ''}{suffix.upper() if upper else suffix}"
    assert parse_size(text) == number * _UNITS[unit]


@given(st.text(max_size=12))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        result = parse_size(text)
    except ValueError:
        return
    assert 0 <= result <= INT64_MAX
