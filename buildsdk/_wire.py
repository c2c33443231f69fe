"""Go's wire encodings, as the Docker CLI produces them: `json.Marshal` and `url.Values`.

Why a module of its own: the build query, the prune filters and the registry auth headers
all need byte-identical Go encodings, and none of those modules should import another
just for them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final
from urllib.parse import quote_plus

__all__ = ["go_json", "query_string"]

# Go's encoder escapes these for HTML safety; Python's does not.
_GO_JSON_ESCAPES: Final = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def go_json(value: object) -> str:
    """Serialise `value` exactly as Go's `json.Marshal` would (compact, HTML-safe escapes).

    Mappings must already be ordered by key (Go sorts map keys); struct-like dicts keep
    their order, which is how `{"Name":..,"Hard":..,"Soft":..}` stays in Go field order.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_GO_JSON_ESCAPES)


def query_string(pairs: Sequence[tuple[str, str]]) -> str:
    """Encode query pairs like Go's `url.Values.Encode`: keys sorted (stable), `QueryEscape`d.

    `QueryEscape` keeps `A-Z a-z 0-9 - _ . ~`, turns a space into `+` and percent-encodes
    every other UTF-8 byte in upper-case hex.
    """
    ordered = sorted(pairs, key=lambda pair: pair[0])
    return "&".join(f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}" for k, v in ordered)
