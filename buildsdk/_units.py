"""Byte sizes written the way the Docker CLI reads them (`"512m"`, `"1g"`, `"64 MiB"`).

Why a module of its own: `docker build --memory 512m --shm-size 1g` parses sizes with
go-units' `RAMInBytes`, and a Python user moving a command line into `BuildOptions` should
get the same number of bytes. The rules mirrored here:

* a number (decimals allowed, `"1.5g"`), optionally one space, then an optional suffix;
* the suffix is `b`, or one of `k m g t p` optionally followed by `b` or `ib`, in any case;
  every unit is binary (`k` = 1024), whatever the spelling (`"1kb"` is 1024 too);
* fractions are truncated towards zero after scaling, as Go's `int64(float64)` does;
* negative sizes are refused.

The Go parser also accepts exotic float spellings (`"1e3"`, `"0x1p3"`, `"inf"`); those are
refused here on purpose, since no one means them as a memory size.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["INT64_MAX", "parse_size"]

INT64_MAX: Final = 2**63 - 1
"""The largest byte count the engine can hold (Go `int64`)."""

_BINARY_UNITS: Final = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_NUMBER_RE: Final = re.compile(r"\d+\.?\d*|\.\d+", re.ASCII)
_SPLIT_RE: Final = re.compile(r"^(?P<num>[^ a-zA-Z]*)(?: ?)(?P<suffix>[a-zA-Z]*)$")


def parse_size(value: int | str) -> int:
    """Return the number of bytes in `value`, an int or a Docker size string such as `"512m"`.

    Raises `ValueError` with a message saying what is allowed when the value is not a
    non-negative size. Booleans are refused although Python counts them as ints.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(
            f"expected an integer number of bytes or a size string such as '512m', "
            f"got {type(value).__name__}"
        )
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        if value > INT64_MAX:
            raise ValueError(f"size {value} does not fit in a 64-bit integer")
        return value
    match = _SPLIT_RE.match(value)
    if match is None or not _NUMBER_RE.fullmatch(match.group("num")):
        raise ValueError(
            f"invalid size {value!r}: expected a number with an optional unit "
            "b, k, m, g, t or p (binary, e.g. '512m', '1.5g', '64MiB')"
        )
    number = float(match.group("num"))
    suffix = match.group("suffix").lower()
    if suffix:
        multiplier = _suffix_multiplier(value, suffix)
        number *= multiplier
    if number > INT64_MAX:
        raise ValueError(f"size {value!r} does not fit in a 64-bit integer")
    return int(number)


def _suffix_multiplier(value: str, suffix: str) -> int:
    """Check a lower-cased unit suffix the way go-units does and return its multiplier."""
    allowed = "b, k, m, g, t or p, optionally followed by 'b' or 'ib'"
    if suffix == "b":
        return 1
    unit = _BINARY_UNITS.get(suffix[0])
    if unit is None or len(suffix) > 3 or suffix[1:] not in ("", "b", "ib"):
        raise ValueError(f"invalid unit {suffix!r} in size {value!r}: expected {allowed}")
    return unit
