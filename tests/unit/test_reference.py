"""Image tags are checked with the engine's reference grammar (distribution/reference)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsdk._reference import (
    parse_reference,
    validate_build_tag,
    validate_image_reference,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("value", "domain", "path", "tag"),
    [
        ("app", "docker.io", "library/app", None),
        ("app:1", "docker.io", "library/app", "1"),
        ("team/app:latest", "docker.io", "team/app", "latest"),
        ("docker.io/app", "docker.io", "library/app", None),
        ("index.docker.io/team/app", "docker.io", "team/app", None),
        ("localhost/app", "localhost", "app", None),
        ("localhost:5000/a/b:v1.0", "localhost:5000", "a/b", "v1.0"),
        (
            "registry.example.com:5000/team/app:latest",
            "registry.example.com:5000",
            "team/app",
            "latest",
        ),
        ("[::1]:5000/x", "[::1]:5000", "x", None),
        ("[2001:db8::1]/x:T_1", "[2001:db8::1]", "x", "T_1"),
        ("10.0.0.1:5000/x", "10.0.0.1:5000", "x", None),
        ("Foo/bar", "Foo", "bar", None),  # an uppercase first part is a registry host
        ("a__b/c--d/e.f_g", "docker.io", "a__b/c--d/e.f_g", None),
        ("app:" + "t" * 128, "docker.io", "library/app", "t" * 128),
        ("app:_x.Y-z", "docker.io", "library/app", "_x.Y-z"),
    ],
)
def test_valid_references_normalise_like_the_engine(
    value: str, domain: str, path: str, tag: str | None
) -> None:
    ref = parse_reference(value)
    assert (ref.domain, ref.path, ref.tag) == (domain, path, tag)
    assert validate_build_tag(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "App",
            (
                "invalid tag 'App': invalid reference format: repository name (library/App) "
                "must be lowercase"
            ),
        ),
        ("team/App:1", "repository name (team/App) must be lowercase"),
        ("", "invalid tag '': invalid reference format"),
        ("app:", "invalid reference format"),
        ("app:" + "t" * 129, "invalid reference format"),
        ("app:.x", "invalid reference format"),
        ("-app", "invalid reference format"),
        ("app_", "invalid reference format"),
        ("a___b", "invalid reference format"),
        ("a..b", "invalid reference format"),
        ("a//b", "invalid reference format"),
        ("app/", "invalid reference format"),
        ("host:port/app", "invalid reference format"),
        ("[fe80::1%eth0]/x", "invalid reference format"),
        ("app@" + DIGEST, "invalid tag 'app@" + DIGEST + "': build tag cannot contain a digest"),
        ("app:1@" + DIGEST, "build tag cannot contain a digest"),
        ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
        ("x" * 240, "repository name must not be more than 255 characters"),
    ],
)
def test_invalid_build_tags_say_why(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_build_tag(value)


def test_name_length_counts_the_normalised_name() -> None:
    # docker.io/library/ is 18 characters: 237 more make the 255 the oldest engines allow.
    assert validate_build_tag("x" * 237)
    with pytest.raises(ValueError, match="255 characters"):
        validate_build_tag("x" * 238)
    assert validate_build_tag("r.io/" + "x" * 250)


def test_a_dotted_first_part_that_is_no_host_is_a_path() -> None:
    ref = parse_reference("a_b.c/d:1")
    assert (ref.domain, ref.path, ref.name, ref.tag) == ("", "a_b.c/d", "a_b.c/d", "1")


def test_cache_sources_may_carry_a_digest() -> None:
    assert validate_image_reference("app@" + DIGEST) == "app@" + DIGEST
    with pytest.raises(ValueError, match="invalid image reference 'App'"):
        validate_image_reference("App")


_COMPONENT = st.from_regex(r"\A[a-z0-9]{1,8}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,8}){0,2}\Z")
_TAG = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z")
_HOST = st.from_regex(r"\A[a-z0-9]{1,6}(?:\.[a-z0-9]{1,6}){1,2}(?::[0-9]{1,5})?\Z")


@given(
    host=st.none() | _HOST,
    components=st.lists(_COMPONENT, min_size=1, max_size=3),
    tag=st.none() | _TAG,
)
def test_generated_valid_references_round_trip(
    host: str | None, components: list[str], tag: str | None
) -> None:
    name = "/".join(components)
    value = (f"{host}/" if host else "") + name + (f":{tag}" if tag else "")
    ref = parse_reference(value)
    assert ref.tag == tag
    if host:
        assert (ref.domain, ref.path) == (host, name)
    elif len(components) > 1 and "." in components[0]:
        # A first part with a dot names a registry host if it is a valid one; otherwise
        # the engine reads the whole name as a path. Either way the name is unchanged.
        assert ref.name == name
        assert ref.domain in ("", components[0])
    else:
        assert ref.domain == "docker.io"
        assert ref.path in (name, "library/" + name)


@given(st.text(max_size=40))
def test_any_text_is_accepted_or_refused_with_value_error(value: str) -> None:
    try:
        validate_build_tag(value)
    except ValueError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert message.startswith(f"invalid tag {value!r}")
        return
    assert "@" not in value
    assert value.split("/")[-1].split(":")[0] == value.split("/")[-1].split(":")[0].lower()


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10))
def test_uppercase_repository_names_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="must be lowercase"):
        validate_build_tag(value)
