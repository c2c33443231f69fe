"""Translation of the RE2 expressions that `.dockerignore` patterns become into Python `re`.

Why: moby/patternmatcher turns a pattern into an RE2 expression and hands `[`/`]` and `\\`
to Go's regexp package verbatim, so `[[:digit:]]`, `\\pL` and `a\\d` mean what RE2 says and
RE2's errors are the user's errors. Python's `re` reads the same text differently
(nested-set warnings, `$` before a final newline, Unicode `\\d`), so a small RE2 parser
writes every class out as explicit code point ranges and rejects what RE2 would reject.
Only what a pattern can produce is handled; `dockerignore.py` builds the expressions.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

__all__ = ["RE2Error", "re2_to_python"]

_POSIX_CLASSES: dict[str, list[tuple[int, int]]] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}
_PERL_CLASSES: dict[str, list[tuple[int, int]]] = {
    "d": [(0x30, 0x39)],
    "s": [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
}
_MAX_RUNE = 0x10FFFF


class RE2Error(Exception):
    """RE2 would refuse to compile the expression."""


def _negate(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in sorted(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return out


def _class_to_python(ranges: list[tuple[int, int]]) -> str:
    if not ranges:
        return "(?!)"
    parts = []
    for lo, hi in ranges:
        if lo == hi:
            parts.append(f"\\U{lo:08x}")
        else:
            parts.append(f"\\U{lo:08x}-\\U{hi:08x}")
    return "[" + "".join(parts) + "]"


def _check_rune(c: str) -> None:
    if "\udc80" <= c <= "\udcff":
        raise RE2Error("invalid UTF-8")


def _parse_escape(t: str) -> tuple[int, str]:
    """Parse an RE2 single-character escape at `t` (which starts with a backslash)."""
    t = t[1:]
    if not t:
        raise RE2Error("trailing backslash")
    c, t = t[0], t[1:]
    _check_rune(c)
    if c.isascii() and not c.isalnum():
        return ord(c), t
    if c in "1234567" and (not t or not ("0" <= t[0] <= "7")):
        raise RE2Error("invalid escape")
    if c in "01234567":
        value = ord(c) - 0x30
        for _ in range(2):
            if not t or not ("0" <= t[0] <= "7"):
                break
            value = value * 8 + ord(t[0]) - 0x30
            t = t[1:]
        return value, t
    if c == "x":
        if not t:
            raise RE2Error("invalid escape")
        c, t = t[0], t[1:]
        _check_rune(c)
        if c == "{":
            digits = 0
            value = 0
            while True:
                if not t:
                    raise RE2Error("invalid escape")
                c, t = t[0], t[1:]
                _check_rune(c)
                if c == "}":
                    break
                if c not in "0123456789abcdefABCDEF":
                    raise RE2Error("invalid escape")
                value = value * 16 + int(c, 16)
                if value > _MAX_RUNE:
                    raise RE2Error("invalid escape")
                digits += 1
            if digits == 0:
                raise RE2Error("invalid escape")
            return value, t
        if not t:
            raise RE2Error("invalid escape")
        d, t = t[0], t[1:]
        _check_rune(d)
        hexdigits = "0123456789abcdefABCDEF"
        if c not in hexdigits or d not in hexdigits:
            raise RE2Error("invalid escape")
        return int(c + d, 16), t
    simple = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
    if c in simple:
        return simple[c], t
    raise RE2Error("invalid escape")


# Go's unicode.Categories: each major class and its subclasses (no Cn, "unassigned").
_GO_CATEGORIES = frozenset(
    major + minor
    for major, minors in (
        ("C", "cfos"),
        ("L", "lmotu"),
        ("M", "cen"),
        ("N", "dlo"),
        ("P", "cdefios"),
        ("S", "ckmo"),
        ("Z", "lps"),
    )
    for minor in ("", *minors)
)


@functools.cache
def _all_category_ranges() -> dict[str, list[tuple[int, int]]]:
    """Code point ranges of every Unicode general category, from one pass over Unicode."""
    table: dict[str, list[tuple[int, int]]] = {}
    category = unicodedata.category
    start = 0
    current = category("\0")
    for cp in range(1, sys.maxunicode + 2):
        cat = category(chr(cp)) if cp <= sys.maxunicode else ""
        if cat != current:
            table.setdefault(current, []).append((start, cp - 1))
            start, current = cp, cat
    return table


def _category_ranges(name: str) -> list[tuple[int, int]]:
    """Code point ranges of a Go category name (one letter: the whole group, minus Cn)."""
    if name == "Any":
        return [(0, _MAX_RUNE)]
    table = _all_category_ranges()
    if len(name) == 2:
        return list(table.get(name, []))
    ranges = [r for cat, rs in table.items() if cat[0] == name and cat != "Cn" for r in rs]
    return sorted(ranges)


def _unicode_class(t: str) -> tuple[list[tuple[int, int]], str] | None:
    """Parse RE2's `\\pX`, `\\p{Name}`, `\\PX`, `\\p{^Name}` at `t`, if present."""
    if len(t) < 2 or t[0] != "\\" or t[1] not in "pP":
        return None
    negate = t[1] == "P"
    rest = t[2:]
    if not rest:
        raise RE2Error("invalid escape")
    _check_rune(rest[0])
    if rest[0] != "{":
        name, rest = rest[0], rest[1:]
    else:
        end = rest.find("}")
        if end < 0:
            raise RE2Error("invalid character class range")
        name, rest = rest[1:end], rest[end + 1 :]
        for ch in name:
            _check_rune(ch)
    if name.startswith("^"):
        negate = not negate
        name = name[1:]
    if name != "Any" and name not in _GO_CATEGORIES:
        # Scripts cannot get here: patternmatcher escapes the "{" a long name needs.
        raise RE2Error("invalid character class range")
    ranges = _category_ranges(name)
    return (_negate(ranges) if negate else ranges), rest


def _perl_class(t: str) -> tuple[list[tuple[int, int]], str] | None:
    if len(t) >= 2 and t[0] == "\\" and t[1] in "dswDSW":
        ranges = _PERL_CLASSES[t[1].lower()]
        if t[1].isupper():
            ranges = _negate(ranges)
        return list(ranges), t[2:]
    return None


def _parse_class(t: str) -> tuple[str, str]:
    """Parse an RE2 bracket expression at `t` (starting with `[`); return (python, rest)."""
    t = t[1:]
    negated = False
    if t.startswith("^"):
        negated = True
        t = t[1:]
    ranges: list[tuple[int, int]] = []
    first = True
    while not t or t[0] != "]" or first:
        first = False
        if not t:
            raise RE2Error("missing closing ]")
        if len(t) > 2 and t[0] == "[" and t[1] == ":":
            end = t.find(":]", 2)
            if end >= 0:
                name = t[2:end]
                neg = name.startswith("^")
                if neg:
                    name = name[1:]
                if name not in _POSIX_CLASSES:
                    raise RE2Error("invalid character class range")
                group = _POSIX_CLASSES[name]
                ranges.extend(_negate(group) if neg else group)
                t = t[end + 2 :]
                continue
        unicode_class = _unicode_class(t)
        if unicode_class is not None:
            ranges.extend(unicode_class[0])
            t = unicode_class[1]
            continue
        perl = _perl_class(t)
        if perl is not None:
            ranges.extend(perl[0])
            t = perl[1]
            continue
        lo, t = _parse_class_char(t)
        hi = lo
        if len(t) >= 2 and t[0] == "-" and t[1] != "]":
            hi, t = _parse_class_char(t[1:])
            if hi < lo:
                raise RE2Error("invalid character class range")
        ranges.append((lo, hi))
    t = t[1:]
    if negated:
        ranges = _negate(ranges)
    return _class_to_python(ranges), t


def _parse_class_char(t: str) -> tuple[int, str]:
    if not t:
        raise RE2Error("missing closing ]")
    if t[0] == "\\":
        return _parse_escape(t)
    _check_rune(t[0])
    return ord(t[0]), t[1:]


def re2_to_python(expr: str) -> str:
    """Translate an RE2 expression (as patternmatcher builds it) into Python `re` syntax.

    Only what can reach RE2 from a pattern is handled, with RE2's own error rules:
    literals, `^`/`$`, `.`, groups, `|`, repetition operators, classes and escapes.
    """
    out: list[str] = []
    # Per group level: whether the last item can take a repetition operator.
    can_repeat = [False]
    last_was_repeat = [False]
    t = expr
    while t:
        c = t[0]
        if c == "(":
            out.append("(?:")
            can_repeat.append(False)
            last_was_repeat.append(False)
            t = t[1:]
            continue
        if c == ")":
            if len(can_repeat) == 1:
                raise RE2Error("unexpected )")
            out.append(")")
            can_repeat.pop()
            last_was_repeat.pop()
            can_repeat[-1] = True
            last_was_repeat[-1] = False
            t = t[1:]
            continue
        if c == "|":
            out.append("|")
            can_repeat[-1] = False
            last_was_repeat[-1] = False
            t = t[1:]
            continue
        if c in "*+?":
            if last_was_repeat[-1]:
                raise RE2Error("invalid nested repetition operator")
            if not can_repeat[-1]:
                raise RE2Error("missing argument to repetition operator")
            op = c
            t = t[1:]
            if t.startswith("?"):
                op += "?"
                t = t[1:]
            out.append(op)
            last_was_repeat[-1] = True
            continue
        if c == "{":
            m = re.match(r"\{(\d+)(,(\d*))?\}", t)
            if m is not None:
                if last_was_repeat[-1]:
                    raise RE2Error("invalid nested repetition operator")
                if not can_repeat[-1]:
                    raise RE2Error("missing argument to repetition operator")
                lo = int(m.group(1))
                hi = m.group(3)
                if lo > 1000 or (hi and (int(hi) > 1000 or int(hi) < lo)):
                    raise RE2Error("invalid repeat count")
                op = m.group(0)
                t = t[m.end() :]
                if t.startswith("?"):
                    op += "?"
                    t = t[1:]
                out.append(op)
                last_was_repeat[-1] = True
                continue
            # A brace that does not start a repetition is a literal in RE2.
        last_was_repeat[-1] = False
        if c == "^":
            out.append(r"\A")
            can_repeat[-1] = True
            t = t[1:]
        elif c == "$":
            out.append(r"\Z")
            can_repeat[-1] = True
            t = t[1:]
        elif c == ".":
            out.append(".")
            can_repeat[-1] = True
            t = t[1:]
        elif c == "[":
            piece, t = _parse_class(t)
            out.append(piece)
            can_repeat[-1] = True
        elif c == "\\":
            can_repeat[-1] = True
            if len(t) >= 2:
                nxt = t[1]
                if nxt in "AbBz":
                    out.append({"A": r"\A", "b": r"\b", "B": r"\B", "z": r"\Z"}[nxt])
                    t = t[2:]
                    continue
                if nxt == "C":
                    raise RE2Error("invalid escape")
                if nxt == "Q":
                    literal, _, t = t[2:].partition("\\E")
                    for ch in literal:
                        _check_rune(ch)
                    if literal:
                        out.append("(?:" + re.escape(literal) + ")")
                    else:
                        can_repeat[-1] = False
                    continue
            unicode_class = _unicode_class(t)
            if unicode_class is not None:
                out.append(_class_to_python(unicode_class[0]))
                t = unicode_class[1]
                continue
            perl = _perl_class(t)
            if perl is not None:
                out.append(_class_to_python(perl[0]))
                t = perl[1]
                continue
            value, t = _parse_escape(t)
            out.append(f"\\U{value:08x}")
        else:
            _check_rune(c)
            out.append(re.escape(c))
            can_repeat[-1] = True
            t = t[1:]
    if len(can_repeat) != 1:
        raise RE2Error("missing )")
    return "".join(out)
