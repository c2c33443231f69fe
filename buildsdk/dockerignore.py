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
is built in RE2 syntax first, then translated by a small RE2 parser (`_re2.py`) into a
Python `re` pattern in which every class member is written out explicitly, so Python's own
syntax (nested-set warnings, `$` before a final newline, Unicode `\\d`) never leaks in.
Anything RE2 would reject raises `ContextError` at match time, as Go does.

Limitation: RE2's Unicode classes (`\\pL`, `\\PN`) are built from Python's `unicodedata`,
whose Unicode version may differ from Go's. Only one-letter classes can be written in a
pattern (patternmatcher escapes `{`), so scripts such as `\\p{Greek}` never reach RE2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from buildsdk._re2 import RE2Error, re2_to_python
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
            python = re2_to_python(self.re2)
            self.regexp = re.compile(python, re.ASCII)
        except RE2Error as exc:
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
