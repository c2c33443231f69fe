"""`.dockerignore` reading and matching against moby/patternmatcher's own results."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildsdk.dockerignore import MatchInfo, PatternMatcher, _Pattern, clean_path, read_dockerignore
from buildsdk.errors import ContextError
from tests import examples
from tests.unit._context_helpers import load_vector

VECTORS = load_vector("dockerignore_cases.json")
CASES: list[dict[str, Any]] = VECTORS["cases"]
PROBES: list[dict[str, Any]] = VECTORS["computed_probe_cases"]


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['patterns']!r}~{case['path']!r}"


def _outcome(fn: Any) -> Any:
    try:
        return fn()
    except ContextError as exc:
        return "error: " + exc.message


def _package_matches(patterns: list[str], path: str, *, deprecated: bool) -> bool:
    """patternmatcher's package-level helpers: clean the path, never exclude '.'."""
    matcher = PatternMatcher(patterns)
    path = clean_path(path)
    if path == ".":
        return False
    if deprecated:
        return matcher.matches_deprecated(path)
    return matcher.matches_or_parent_matches(path)


def _walk_chain(matcher: PatternMatcher, path: str) -> bool:
    """MatchesUsingParentResults along the path's ancestors, as the tar walker calls it."""
    parts = path.split("/")
    info = MatchInfo()
    matched = False
    for i in range(len(parts)):
        matched, info = matcher.matches_using_parent_results("/".join(parts[: i + 1]), info)
    return matched


def test_vector_counts() -> None:
    assert len(CASES) == 147
    assert len(PROBES) == 87


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_upstream_case(case: dict[str, Any]) -> None:
    api = case["api_under_test"]
    patterns, path = case["patterns"], case["path"]
    if api.startswith("package-level"):
        got = _outcome(lambda: _package_matches(patterns, path, deprecated=True))
    elif api.startswith("filepathMatches"):
        got = _outcome(lambda: _package_matches(patterns, path, deprecated=False))
    else:
        got = _outcome(lambda: PatternMatcher(patterns).matches_or_parent_matches(path))
    if case["expected_error"]:
        assert isinstance(got, str)
        assert got.startswith("error: " + case["expected_error"])
        # A pattern error is reported again on a second call (moby/moby#52203).
        if "New succeeds" in api:
            matcher = PatternMatcher(patterns)
            for _ in range(2):
                with pytest.raises(ContextError, match=case["expected_error"]):
                    matcher.matches_or_parent_matches(path)
        return
    assert got is case["expected"]
    if api.startswith("MatchesOrParentMatches"):
        assert _walk_chain(PatternMatcher(patterns), path) is case["expected"]
        matched, _ = PatternMatcher(patterns).matches_using_parent_results(path)
        assert matched is case["expected"]
    observed = case.get("observed_go_v0.6.1") or {}
    if observed.get("deprecated_Matches") is not None:
        assert PatternMatcher(patterns).matches_deprecated(path) is observed["deprecated_Matches"]
    if observed.get("MatchesOrParentMatches") is not None:
        assert (
            PatternMatcher(patterns).matches_or_parent_matches(path)
            is observed["MatchesOrParentMatches"]
        )


def _walker_result(matcher: PatternMatcher, path: str) -> bool | str:
    """What the CLI's tar walker decides, including never reaching a skipped directory."""
    parts = path.split("/")
    info = MatchInfo()
    for i in range(len(parts)):
        name = "/".join(parts[: i + 1])
        skipped, info = matcher.matches_using_parent_results(name, info)
        last = i == len(parts) - 1
        if skipped and not last:
            prefix = name + "/"
            if not matcher.exclusions or not any(
                d.startswith(prefix) for d in matcher.exception_dirs
            ):
                return "not-reached (ancestor dir skipped)"
        if last:
            return skipped
    raise AssertionError("unreachable")


@pytest.mark.parametrize("case", PROBES, ids=[_case_id(c) for c in PROBES])
def test_probe(case: dict[str, Any]) -> None:
    patterns, path = case["patterns"], case["path"]
    if "New_err" in case:
        with pytest.raises(ContextError) as info:
            PatternMatcher(patterns)
        assert info.value.message.startswith(case["New_err"])
        assert info.value.path is not None
        return
    for key, fn in [
        ("MatchesOrParentMatches", lambda m: m.matches_or_parent_matches(path)),
        ("deprecated_Matches", lambda m: m.matches_deprecated(path)),
        ("walker_MatchesUsingParentResults", lambda m: _walker_result(m, path)),
    ]:
        expected = case[key]
        got = _outcome(lambda fn=fn: fn(PatternMatcher(patterns)))
        if isinstance(expected, str) and expected.startswith("ERR"):
            assert isinstance(got, str)
            assert got.startswith("error: " + expected.split(":", 1)[1].strip())
        else:
            assert got == expected, key


PARSING = VECTORS["pattern_parsing_cases"]["cases"]


@pytest.mark.parametrize("case", PARSING, ids=[repr(c["patterns"]) for c in PARSING])
def test_pattern_parsing(case: dict[str, Any]) -> None:
    if "expect_error" in case:
        with pytest.raises(ContextError) as info:
            PatternMatcher(case["patterns"])
        assert info.value.message == case["expect_error"]
        return
    matcher = PatternMatcher(case["patterns"])
    if "expect_len_Patterns" in case:
        assert len(matcher.patterns) == case["expect_len_Patterns"]
    if "expect_Exclusions" in case:
        assert matcher.exclusions is case["expect_Exclusions"]


COMPILE = VECTORS["compile_cases"]["cases"]
_KINDS = {"exactMatch": 0, "prefixMatch": 1, "suffixMatch": 2, "regexpMatch": 3}


@pytest.mark.parametrize("case", COMPILE, ids=[c["pattern"] for c in COMPILE])
def test_compile(case: dict[str, Any]) -> None:
    pattern = _Pattern(case["pattern"], False, case["pattern"])
    pattern.compile()
    assert pattern.kind == _KINDS[case["matchType"]]
    assert pattern.re2 == case["regexp_slash"]


def test_ignorefile_read_all() -> None:
    case = VECTORS["ignorefile_cases"]
    assert read_dockerignore(case["input"]) == case["expected_patterns"]
    assert read_dockerignore(case["input"].encode()) == case["expected_patterns"]
    assert read_dockerignore(b"") == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xef\xbb\xbfa\n\xef\xbb\xbfb\n", ["a", "\ufeffb"]),  # BOM only on the first line
        (b"a\r\nb  \r\n", ["a", "b"]),
        (b"  #2\n#1\n", ["#2"]),  # comments only in column 0
        (
            b"./foo\nfoo/\na//b\nfoo/../bar\n/../b.py\n../a.py\n.\n/\n",
            [
                "foo",
                "foo",
                "a/b",
                "bar",
                "b.py",
                "../a.py",
                ".",
                "/",
            ],
        ),
        (b"! /a/b\n!\n", ["!a/b", "!"]),
        ("\u00a0x\u2003\n\x1cy\n".encode(), ["x", "\x1cy"]),  # Go's TrimSpace, not strip()
        (b"\xa0x\n", ["\udca0x"]),  # an invalid byte is kept, never taken for a space
    ],
)
def test_read_dockerignore_rules(data: bytes, expected: list[str]) -> None:
    assert read_dockerignore(data) == expected


def test_read_dockerignore_line_too_long() -> None:
    with pytest.raises(ContextError, match="token too long"):
        read_dockerignore(b"a" * (64 * 1024) + b"\n")
    assert read_dockerignore(b"a" * (64 * 1024 - 1) + b"\n") == ["a" * (64 * 1024 - 1)]


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("[[:digit:]]", "5", True),
        ("[[:digit:]]", "a", False),
        ("[[:^alpha:]]x", "1x", True),
        ("a\\d", "a1", True),
        ("a\\d", "ad", False),
        ("a^b*", "a^b", False),
        ("^foo*", "foo", True),
        ("^foo", "^foo", True),
        ("[^a]b", "cb", True),
        ("[^a]b", "ab", False),
        ("[!a]b", "!b", True),
        ("[!a]b", "cb", False),
        ("[*]", "[]", True),  # RE2 sees "[[^/]*]": a class, a star, a literal "]"
        # \Q quotes the rest of the expression, the final "$" included.
        ("a\\Qb*", "ab[^/]*$", True),
        ("a\\Qb*", "ab[^/]*$/more", True),
        ("a\\Qb*", "abc", False),
        ("x\\x41", "xA", True),
        ("\\[a]", "[a]", True),
        ("a[\\d]", "a7", True),
        ("é?", "éx", True),
        ("?", "\udcff", True),  # an invalid byte is one character, as in Go
        ("**/*.py", "a/b/c.py", True),
        ("**foo", "d/xfoo", True),
        ("abc**", "abc/x", True),
        ("dir/**", "dir", False),
        ("a*", "a\nb", True),  # RE2's negated classes match a newline
        ("a/**/b*", "a/\n/b", False),  # "." does not
        ("a/**/b*", "a/x/y/b", True),
        ("a[b]", "ab\n", False),  # "$" means the very end, not before a final newline
        ("[[:alpha:]-z]x", "-x", True),
        ("\\pL*", "éx", True),  # RE2 Unicode classes, one letter
        ("\\pL*", "1x", False),
        ("a[\\PN]", "a1", False),
        ("a[\\PN]", "aß", True),
        ("\\pN?", "٣x", True),
        ("\ufeffa*", "ab", True),  # Go's text/scanner skips a leading byte order mark
        ("\ufeffab", "ab", False),  # but an exact pattern is compared as written
    ],
)
def test_go_regexp_semantics(pattern: str, path: str, expected: bool) -> None:
    assert PatternMatcher([pattern]).matches_or_parent_matches(path) is expected


@pytest.mark.parametrize(
    "pattern",
    ["[z-a]", "\\y*", "[[:foo:]]", "x\\8", "a\\pQ*", "\\p{Greek}*", "a\\C*", "[a-\\d]"],
)
def test_patterns_rejected_at_match_time(pattern: str) -> None:
    matcher = PatternMatcher([pattern])
    with pytest.raises(ContextError, match="syntax error in pattern") as info:
        matcher.matches_or_parent_matches("x")
    assert info.value.path == pattern


@pytest.mark.parametrize("pattern", ["[", "a[", "[^", "[]a]", "[-]", "[x-]", "[a-b-c]", "\\"])
def test_patterns_rejected_by_new(pattern: str) -> None:
    with pytest.raises(ContextError, match="syntax error in pattern") as info:
        PatternMatcher([pattern])
    assert info.value.path == pattern


def test_lone_exclamation_is_an_error() -> None:
    with pytest.raises(ContextError, match=re.escape('illegal exclusion pattern: "!"')):
        PatternMatcher(read_dockerignore(b"a\n! \n"))


def test_which_pattern() -> None:
    matcher = PatternMatcher(["*.log", "docs", "!docs/keep.md", "x"])
    assert matcher.which_pattern("a.log") == "*.log"
    assert matcher.which_pattern("docs/a/b") == "docs"
    assert matcher.which_pattern("docs/keep.md") == "!docs/keep.md"
    assert matcher.which_pattern("src/a.py") is None


def test_parent_results_belong_to_matcher() -> None:
    with pytest.raises(ValueError, match="MatchInfo"):
        PatternMatcher(["a"]).matches_using_parent_results("a/b", MatchInfo((True, False)))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "."),
        ("a//b/", "a/b"),
        ("/../x", "/x"),
        ("../../a", "../../a"),
        ("a/../..", ".."),
        ("//a", "/a"),
        ("./", "."),
        ("a/./b/..", "a"),
    ],
)
def test_clean_path(path: str, expected: str) -> None:
    assert clean_path(path) == expected


# --- properties ------------------------------------------------------------------------

_PATTERN_CHARS = st.sampled_from([*list("ab/*?[]!^-\\.:dw{}()+|$ \té"), "[:digit:]", "**"])
_patterns = st.lists(_PATTERN_CHARS, max_size=12).map("".join)
_paths = st.lists(
    st.sampled_from(["a", "b", "ab", ".x", "[", "é", "1"]), min_size=1, max_size=4
).map("/".join)


def _has_message(exc: Exception) -> None:
    assert str(exc).strip(), f"{type(exc).__name__} without a message"


# Whole .dockerignore texts: any text at all, or lines of pattern characters.
_ignore_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.text(alphabet="!*?[]^-\\/.ab{}()|$+ \t#\r", max_size=12), max_size=8).map(
        "\n".join
    ),
)


@settings(max_examples=examples(800), deadline=None)
@given(st.one_of(st.lists(_patterns, max_size=4), _ignore_texts), _paths)
def test_matching_never_crashes(patterns: list[str] | str, path: str) -> None:
    """Patterns, or any .dockerignore text read as docker reads it: matching gives an answer
    or a ContextError with a message, nothing else."""
    try:
        if isinstance(patterns, str):
            patterns = read_dockerignore(patterns.encode("utf-8", "surrogatepass"))
        matcher = PatternMatcher(patterns)
    except ContextError as exc:
        _has_message(exc)
        return
    for fn in (
        matcher.matches_or_parent_matches,
        matcher.matches_deprecated,
        lambda p: matcher.matches_using_parent_results(p)[0],
        matcher.which_pattern,
    ):
        try:
            fn(path)
        except ContextError as exc:
            _has_message(exc)


@given(st.text(max_size=200))
def test_read_dockerignore_is_idempotent(text: str) -> None:
    """Reading the patterns back, one per line, gives the same patterns."""
    # Two kinds of pattern read differently when written back in column 0, as docker's
    # reader does too: "#..." (from "  #x") becomes a comment, and one starting with
    # whitespace (from "/ x": the leading slash goes after the line was trimmed) is trimmed.
    first = [p for p in read_dockerignore(text) if not p[:1].isspace()]
    again = read_dockerignore("\n".join(first))
    assert again == [p for p in first if not p.startswith("#")]


def test_a_slash_before_a_space_leaves_the_space_as_docker_does() -> None:
    assert read_dockerignore("/ 0\n!/ 1\n") == [" 0", "! 1"]


@given(st.text(max_size=200))
def test_read_dockerignore_output_is_clean(text: str) -> None:
    for pattern in read_dockerignore(text):
        body = pattern[1:] if pattern.startswith("!") else pattern
        if body:
            assert clean_path(body) in (body, "/" + body)
            assert not body.startswith("/") or body == "/"


@given(_patterns, _paths)
def test_walker_agrees_with_parent_scan_for_single_pattern(pattern: str, path: str) -> None:
    """Without exceptions, the walker's chained results equal the ancestor scan."""
    try:
        matcher = PatternMatcher([pattern])
        expected = matcher.matches_or_parent_matches(path)
    except ContextError:
        return
    if pattern.lstrip(" \t").startswith("!"):
        return
    assert _walk_chain(matcher, path) is expected
