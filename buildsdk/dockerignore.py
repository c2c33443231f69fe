"""Reading and matching `.dockerignore` patterns exactly as the Docker CLI does.

Why this module exists: the Docker CLI decides which files go into a build context with
moby/patternmatcher, and its rules are not those of `fnmatch` or `.gitignore`. Comments are
only recognised in column 0, patterns are cleaned like Go's `filepath.Clean`, `**` has
prefix and suffix shortcuts, `[`/`]` and `\\` are handed to Go's RE2 regular expression
engine verbatim (so `[[:digit:]]` and `a\\d` mean what RE2 says), `^` is never escaped, and
some patterns that `filepath.Match` accepts are only rejected when first matched. A user
must get exactly the files `docker build` would send, so every one of those quirks is
reproduced here, tested against vectors taken from the Go code.

Strategy: a pattern is compiled lazily, on first use, to one of four match kinds (exact,
prefix, suffix, regular expression) the way patternmatcher does it. The regular expression
is built in RE2 syntax first, then translated by a small RE2 parser into a Python `re`
pattern in which every class member is written out explicitly, so Python's own syntax
(nested-set warnings, `$` before a final newline, Unicode `\\d`) never leaks in. Anything
RE2 would reject raises `ContextError` at match time, as Go does.

Limitation: RE2's Unicode classes (`\\pL`, `\\PN`) are built from Python's `unicodedata`,
whose Unicode version may differ from Go's. Only one-letter classes can be written in a
pattern (patternmatcher escapes `{`), so scripts such as `\\p{Greek}` never reach RE2.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Sequence
from typing import NamedTuple

from buildsdk.errors import ContextError

__all__ = ["MatchInfo", "PatternMatcher", "clean_path", "read_dockerignore"]

# Go's bufio.Scanner refuses lines that do not fit its 64 KiB buffer.
_MAX_LINE = 64 * 1024
_BAD_PATTERN = "syntax error in pattern"

# unicode.IsSpace: narrower than str.isspace, which also strips \x1c-\x1f.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _trim_space(s: str) -> str:
    return s.strip(_GO_SPACE)


def clean_path(path: str) -> str:
    """Return `path` cleaned like Go's `filepath.Clean` on a `/`-separated system.

    Repeated slashes collapse, `.` elements go, `..` removes the element before it (and
    is dropped at the root), and an empty result is `.`.
    """
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_dockerignore(data: bytes | str) -> list[str]:
    """Parse the contents of a `.dockerignore` file into the CLI's list of patterns.

    This follows moby's `ignorefile.ReadAll`: a UTF-8 BOM is dropped, a line is a comment
    only when its first byte is `#`, lines are trimmed and cleaned, one leading `/` is
    removed and `!` exceptions keep their mark. A lone `!` is returned as `"!"`; it is
    `PatternMatcher` that rejects it. Raises `ContextError` for a line longer than 64 KiB.
    """
    if isinstance(data, str):
        raw = data.encode("utf-8", "surrogateescape")
    else:
        raw = bytes(data)
    patterns: list[str] = []
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, line in enumerate(lines):
        if len(line) >= _MAX_LINE:
            raise ContextError(
                "error reading .dockerignore: bufio.Scanner: token too long "
                f"(line {number + 1} is longer than 64 KiB)",
                path=".dockerignore",
            )
        if line.endswith(b"\r"):
            line = line[:-1]
        if number == 0 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if line.startswith(b"#"):
            continue
        pattern = _trim_space(line.decode("utf-8", "surrogateescape"))
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = _trim_space(pattern[1:])
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        if invert:
            pattern = "!" + pattern
        patterns.append(pattern)
    return patterns


# --- filepath.Match syntax check -------------------------------------------------------


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern.startswith("*"):
        pattern = pattern[1:]
        star = True
    in_range = False
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 < n:
                i += 1
        elif c == "[":
            in_range = True
        elif c == "]":
            in_range = False
        elif c == "*" and not in_range:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _get_esc(chunk: str) -> str | None:
    """Consume one class character like Go's getEsc; None means a bad pattern."""
    if not chunk or chunk[0] in "-]":
        return None
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            return None
    if "\udc80" <= chunk[0] <= "\udcff":
        return None
    rest = chunk[1:]
    if not rest:
        return None
    return rest


def _chunk_is_valid(chunk: str) -> bool:
    while chunk:
        c = chunk[0]
        if c == "[":
            chunk = chunk[1:]
            if chunk.startswith("^"):
                chunk = chunk[1:]
            ranges = 0
            while True:
                if chunk.startswith("]") and ranges > 0:
                    chunk = chunk[1:]
                    break
                rest = _get_esc(chunk)
                if rest is None:
                    return False
                chunk = rest
                if chunk[0] == "-":
                    rest = _get_esc(chunk[1:])
                    if rest is None:
                        return False
                    chunk = rest
                ranges += 1
        elif c == "\\":
            chunk = chunk[1:]
            if not chunk:
                return False
            chunk = chunk[1:]
        else:
            chunk = chunk[1:]
    return True


def _go_match_accepts(pattern: str) -> bool:
    """True when Go's `filepath.Match(pattern, ".")` reports no syntax error.

    Go checks the whole pattern, chunk by chunk, whether or not the name matches, except
    that a trailing lone `*` returns early (and then there is nothing left to check).
    """
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and not chunk:
            return True
        if not _chunk_is_valid(chunk):
            return False
    return True


# --- RE2 to Python translation ---------------------------------------------------------

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


class _RE2Error(Exception):
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
        raise _RE2Error("invalid UTF-8")


def _parse_escape(t: str) -> tuple[int, str]:
    """Parse an RE2 single-character escape at `t` (which starts with a backslash)."""
    t = t[1:]
    if not t:
        raise _RE2Error("trailing backslash")
    c, t = t[0], t[1:]
    _check_rune(c)
    if c.isascii() and not c.isalnum():
        return ord(c), t
    if c in "1234567" and (not t or not ("0" <= t[0] <= "7")):
        raise _RE2Error("invalid escape")
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
            raise _RE2Error("invalid escape")
        c, t = t[0], t[1:]
        _check_rune(c)
        if c == "{":
            digits = 0
            value = 0
            while True:
                if not t:
                    raise _RE2Error("invalid escape")
                c, t = t[0], t[1:]
                _check_rune(c)
                if c == "}":
                    break
                if c not in "0123456789abcdefABCDEF":
                    raise _RE2Error("invalid escape")
                value = value * 16 + int(c, 16)
                if value > _MAX_RUNE:
                    raise _RE2Error("invalid escape")
                digits += 1
            if digits == 0:
                raise _RE2Error("invalid escape")
            return value, t
        if not t:
            raise _RE2Error("invalid escape")
        d, t = t[0], t[1:]
        _check_rune(d)
        hexdigits = "0123456789abcdefABCDEF"
        if c not in hexdigits or d not in hexdigits:
            raise _RE2Error("invalid escape")
        return int(c + d, 16), t
    simple = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
    if c in simple:
        return simple[c], t
    raise _RE2Error("invalid escape")


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
        raise _RE2Error("invalid escape")
    _check_rune(rest[0])
    if rest[0] != "{":
        name, rest = rest[0], rest[1:]
    else:
        end = rest.find("}")
        if end < 0:
            raise _RE2Error("invalid character class range")
        name, rest = rest[1:end], rest[end + 1 :]
        for ch in name:
            _check_rune(ch)
    if name.startswith("^"):
        negate = not negate
        name = name[1:]
    if name != "Any" and name not in _GO_CATEGORIES:
        # Scripts cannot get here: patternmatcher escapes the "{" a long name needs.
        raise _RE2Error("invalid character class range")
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
            raise _RE2Error("missing closing ]")
        if len(t) > 2 and t[0] == "[" and t[1] == ":":
            end = t.find(":]", 2)
            if end >= 0:
                name = t[2:end]
                neg = name.startswith("^")
                if neg:
                    name = name[1:]
                if name not in _POSIX_CLASSES:
                    raise _RE2Error("invalid character class range")
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
                raise _RE2Error("invalid character class range")
        ranges.append((lo, hi))
    t = t[1:]
    if negated:
        ranges = _negate(ranges)
    return _class_to_python(ranges), t


def _parse_class_char(t: str) -> tuple[int, str]:
    if not t:
        raise _RE2Error("missing closing ]")
    if t[0] == "\\":
        return _parse_escape(t)
    _check_rune(t[0])
    return ord(t[0]), t[1:]


def _re2_to_python(expr: str) -> str:
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
                raise _RE2Error("unexpected )")
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
                raise _RE2Error("invalid nested repetition operator")
            if not can_repeat[-1]:
                raise _RE2Error("missing argument to repetition operator")
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
                    raise _RE2Error("invalid nested repetition operator")
                if not can_repeat[-1]:
                    raise _RE2Error("missing argument to repetition operator")
                lo = int(m.group(1))
                hi = m.group(3)
                if lo > 1000 or (hi and (int(hi) > 1000 or int(hi) < lo)):
                    raise _RE2Error("invalid repeat count")
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
                    raise _RE2Error("invalid escape")
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
        raise _RE2Error("missing )")
    return "".join(out)


# --- patterns --------------------------------------------------------------------------

_EXACT, _PREFIX, _SUFFIX, _REGEXP = range(4)
_ESCAPED = frozenset(".+()|{}$")
_TO_FFFD = dict.fromkeys(range(0xDC80, 0xDD00), 0xFFFD)


class _Pattern:
    """One compiled pattern line (without its `!`), compiled on first use like Go's."""

    __slots__ = ("cleaned", "dirs", "error", "exclusion", "kind", "re2", "regexp", "source")

    def __init__(self, cleaned: str, exclusion: bool, source: str) -> None:
        self.cleaned = cleaned
        self.exclusion = exclusion
        self.source = source
        self.dirs = cleaned.split("/")
        self.kind = -1
        self.regexp: re.Pattern[str] | None = None
        self.re2 = ""  # the expression Go would hand to RE2, kept for tests and --why
        self.error: str | None = None

    def compile(self) -> None:
        reg = ["^"]
        kind = _EXACT
        pattern = self.cleaned
        # text/scanner skips a byte order mark at the very start of its input.
        if pattern.startswith("\ufeff"):
            pattern = pattern[1:]
        n = len(pattern)
        pos = 0
        index = 0
        while pos < n:
            ch = pattern[pos]
            pos += 1
            if "\udc80" <= ch <= "\udcff":
                ch = "\ufffd"
            if ch == "*":
                if pos < n and pattern[pos] == "*":
                    pos += 1
                    if pos < n and pattern[pos] == "/":
                        pos += 1
                    if pos >= n:
                        if kind == _EXACT:
                            kind = _PREFIX
                        else:
                            reg.append(".*")
                            kind = _REGEXP
                    else:
                        reg.append("(.*/)?")
                        kind = _REGEXP
                    if index == 0:
                        kind = _SUFFIX
                else:
                    reg.append("[^/]*")
                    kind = _REGEXP
            elif ch == "?":
                reg.append("[^/]")
                kind = _REGEXP
            elif ch in _ESCAPED:
                reg.append("\\" + ch)
            elif ch == "\\":
                if pos < n:
                    nxt = pattern[pos]
                    pos += 1
                    if "\udc80" <= nxt <= "\udcff":
                        nxt = "\ufffd"
                    reg.append("\\" + nxt)
                    kind = _REGEXP
                else:
                    reg.append("\\")
            elif ch in "[]":
                reg.append(ch)
                kind = _REGEXP
            else:
                reg.append(ch)
            index += 1
        self.kind = kind
        if kind != _REGEXP:
            return
        reg.append("$")
        self.re2 = "".join(reg)
        try:
            python = _re2_to_python(self.re2)
            self.regexp = re.compile(python, re.ASCII)
        except _RE2Error as exc:
            self.error = str(exc)
        except re.error as exc:  # pragma: no cover - the translator emits valid re syntax
            self.error = str(exc)

    def match(self, path: str) -> bool:
        if self.kind < 0:
            self.compile()
        kind = self.kind
        if kind == _EXACT:
            return path == self.cleaned
        if kind == _PREFIX:
            return path.startswith(self.cleaned[:-2])
        if kind == _SUFFIX:
            suffix = self.cleaned[2:]
            if suffix.startswith("/") and path == suffix[1:]:
                return True
            return path.endswith(suffix)
        regexp = self.regexp
        if regexp is None:
            raise ContextError(f"{_BAD_PATTERN}: {self.source!r}", path=self.source)
        if not path.isascii():
            path = path.translate(_TO_FFFD)
        return regexp.match(path) is not None


class MatchInfo(NamedTuple):
    """Per-pattern results for a directory, passed down to its children by the tar walker.

    The default (empty) value means "no information about the parent", in which case
    `PatternMatcher.matches_using_parent_results` tests every ancestor itself.
    """

    parent_matched: tuple[bool, ...] = ()


def _parents(path: str) -> list[str]:
    """The ancestors of a slash-separated relative path, shallowest first (Go's Dir)."""
    slash = path.rfind("/")
    if slash < 0:
        return []
    parent = clean_path(path[:slash]) if slash > 0 else "/"
    if parent == ".":
        return []
    parts = parent.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


class PatternMatcher:
    """A list of `.dockerignore` patterns, evaluated with moby/patternmatcher's rules.

    The last matching line wins; `!` lines are exceptions. Raises `ContextError` naming the
    pattern for a lone `!` or a pattern Go's `filepath.Match` rejects. Patterns that only
    RE2 rejects (such as `[z-a]`) raise `ContextError` when first evaluated.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns: list[_Pattern] = []
        self._exclusions = False
        for line in patterns:
            p = _trim_space(line)
            if not p:
                continue
            p = clean_path(p)
            exclusion = False
            if p.startswith("!"):
                if len(p) == 1:
                    raise ContextError('illegal exclusion pattern: "!"', path=line)
                exclusion = True
                p = p[1:]
                self._exclusions = True
            if not _go_match_accepts(p):
                raise ContextError(f"{_BAD_PATTERN}: {line!r}", path=line)
            self._patterns.append(_Pattern(p, exclusion, line))

    @property
    def exclusions(self) -> bool:
        """True when at least one pattern is a `!` exception."""
        return self._exclusions

    @property
    def patterns(self) -> list[str]:
        """The cleaned patterns, `!` restored on exceptions, in evaluation order."""
        return [("!" if p.exclusion else "") + p.cleaned for p in self._patterns]

    @property
    def exception_dirs(self) -> list[str]:
        """Each exception's cleaned pattern plus `/`: the tar walker's descent test."""
        return [p.cleaned + "/" for p in self._patterns if p.exclusion]

    def matches_or_parent_matches(
        self, path: str, ancestors: tuple[bool, ...] | None = None
    ) -> bool:
        """Whether `path` is excluded, testing every ancestor directory for each pattern.

        This is `MatchesOrParentMatches`, which the CLI's context validation uses. A walk
        can pass `ancestors`, the value of `ancestor_results` for the path's directory,
        to avoid testing the same ancestors again for every file.
        """
        matched = False
        parents: list[str] | None = None
        for i, pattern in enumerate(self._patterns):
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                if ancestors is not None:
                    hit = ancestors[i]
                else:
                    if parents is None:
                        parents = _parents(path)
                    for parent in parents:
                        if _match_ignoring_errors(pattern, parent):
                            hit = True
                            break
            if hit:
                matched = not pattern.exclusion
        return matched

    def ancestor_results(
        self, directory: str, parent: tuple[bool, ...] | None = None
    ) -> tuple[bool, ...]:
        """For each pattern, whether it matches `directory` or one of its ancestors.

        `parent` is the value for the directory's own parent (None at the top). Errors are
        ignored here, as Go ignores them when it tests ancestors.
        """
        if parent is None:
            parent = (False,) * len(self._patterns)
        return tuple(
            hit or _match_ignoring_errors(pattern, directory)
            for pattern, hit in zip(self._patterns, parent, strict=True)
        )

    def matches_deprecated(self, path: str) -> bool:
        """Whether `path` is excluded by the deprecated single-ancestor `Matches`.

        The CLI still uses it to decide whether to re-include the Dockerfile and
        `.dockerignore`; only the ancestor with as many elements as the pattern is tested.
        """
        matched = False
        slash = path.rfind("/")
        parent = clean_path(path[:slash]) if slash > 0 else ("/" if slash == 0 else ".")
        parent_dirs = parent.split("/")
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent != "." and len(pattern.dirs) <= len(parent_dirs):
                hit = _match_ignoring_errors(pattern, "/".join(parent_dirs[: len(pattern.dirs)]))
            if hit:
                matched = not pattern.exclusion
        return matched

    def matches_using_parent_results(
        self, path: str, parent: MatchInfo | None = None
    ) -> tuple[bool, MatchInfo]:
        """Whether `path` is excluded, reusing the per-pattern results of its directory.

        This is `MatchesUsingParentResults`, what the CLI's tar walker uses: a pattern that
        matched the parent counts as matched; otherwise only `path` itself is tested. With
        no parent information every ancestor is tested.
        """
        parent_matched = parent.parent_matched if parent is not None else ()
        if parent_matched and len(parent_matched) != len(self._patterns):
            raise ValueError("MatchInfo does not belong to this PatternMatcher")
        matched = False
        results: list[bool] = []
        parents: list[str] | None = None
        for i, pattern in enumerate(self._patterns):
            hit = parent_matched[i] if parent_matched else False
            if not hit:
                if pattern.exclusion != matched:
                    results.append(False)
                    continue
                hit = pattern.match(path)
                if not hit and not parent_matched:
                    if parents is None:
                        parents = _parents(path)
                    for ancestor in parents:
                        if _match_ignoring_errors(pattern, ancestor):
                            hit = True
                            break
            results.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, MatchInfo(tuple(results))

    def which_pattern(self, path: str) -> str | None:
        """The pattern line that decided `matches_or_parent_matches(path)`, if any.

        Returns the original line of the last pattern that matched `path` or one of its
        ancestors (an exception line when the path was re-included), or None when no
        pattern took part.
        """
        matched = False
        decider: str | None = None
        parents = _parents(path)
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path) or any(
                _match_ignoring_errors(pattern, ancestor) for ancestor in parents
            )
            if hit:
                matched = not pattern.exclusion
                decider = pattern.source
        return decider


def _match_ignoring_errors(pattern: _Pattern, path: str) -> bool:
    # Go ignores errors while testing ancestors; the same pattern already raised (or not)
    # on the path itself, so only the boolean matters here.
    try:
        return pattern.match(path)
    except ContextError:
        return False
