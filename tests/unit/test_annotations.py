"""buildx's `--annotation` texts: what `BuildOptions` accepts, and the exporter keys they become."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from buildsdk._annotations import ANNOTATION_TYPES, annotation_attrs, parse_annotations
from buildsdk.build import BuildOptions
from buildsdk.buildkit.solve import solve_request

HERE = str(Path(__file__).resolve().parent)

# (buildx text, the exporter attribute BuildKit's AnnotationKey.String() gives it)
CASES = [
    ("org.example.k=v", "annotation.org.example.k", "v"),
    ("manifest:k=v", "annotation-manifest.k", "v"),
    ("manifest[linux/amd64]:k=v", "annotation-manifest[linux/amd64].k", "v"),
    ("manifest-descriptor[linux/arm64]:k=", "annotation-manifest-descriptor[linux/arm64].k", ""),
    ("index:k=a=b", "annotation-index.k", "a=b"),
    ("index-descriptor:k=v", "annotation-index-descriptor.k", "v"),
    # An index has no platform: buildx checks it and BuildKit drops it.
    ("index[linux/amd64]:k=v", "annotation-index.k", "v"),
    # containerd's normalisation of the platform.
    ("manifest[Linux/x86_64]:k=v", "annotation-manifest[linux/amd64].k", "v"),
    ("manifest[linux/aarch64]:k=v", "annotation-manifest[linux/arm64].k", "v"),
    ("manifest[linux/aarch64/8]:k=v", "annotation-manifest[linux/arm64/v8].k", "v"),
    ("manifest[linux/arm]:k=v", "annotation-manifest[linux/arm].k", "v"),
    ("manifest[linux/armhf]:k=v", "annotation-manifest[linux/arm].k", "v"),
    ("manifest[linux/armel]:k=v", "annotation-manifest[linux/arm/v6].k", "v"),
    ("manifest[linux/arm/6]:k=v", "annotation-manifest[linux/arm/v6].k", "v"),
    ("manifest[macos/i386]:k=v", "annotation-manifest[darwin/386].k", "v"),
    # A key may hold colons after a known type.
    ("manifest:urn:x=v", "annotation-manifest.urn:x", "v"),
    # Types are lower case: anything else before ':' is part of a plain key.
    ("Manifest:k=v", "annotation.Manifest:k", "v"),
]


@pytest.mark.parametrize(("text", "attr", "value"), CASES)
def test_buildx_texts_become_buildkit_s_keys(text: str, attr: str, value: str) -> None:
    assert annotation_attrs(parse_annotations([text])) == {attr: value}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("k", "invalid annotation 'k', expected key=value"),
        ("foo:k=v", "unknown annotation type 'foo'"),
        ("manifest[linux amd64]:k=v", "invalid annotation format"),
        ("k k=v", "invalid annotation format"),
        ("=v", "invalid annotation format"),
        ("manifest[amd64]:k=v", "annotation platform must be os/arch[/variant]"),
        ("manifest[linux/amd64/v1/x]:k=v", "annotation platform must be os/arch[/variant]"),
        ("index[linux//amd64]:k=v", "annotation platform must be os/arch[/variant]"),
    ],
)
def test_malformed_annotations_are_refused_naming_them(text: str, words: str) -> None:
    with pytest.raises(ValueError, match="annotation") as info:
        parse_annotations([text])
    assert words in str(info.value)


_KEY = st.text(
    st.characters(codec="ascii", exclude_characters="\t\n\f\r\x0b =", min_codepoint=33),
    min_size=1,
)
_VALUE = st.text(max_size=20)
_PLATFORM = st.sampled_from(["linux/amd64", "linux/arm64/v8", "windows/amd64", "linux/386"])


@given(
    kind=st.none() | st.sampled_from(ANNOTATION_TYPES),
    platform=st.none() | _PLATFORM,
    key=_KEY,
    value=_VALUE,
)
def test_every_well_formed_text_is_read_as_buildx_reads_it(
    kind: str | None, platform: str | None, key: str, value: str
) -> None:
    prefix = "" if kind is None else kind + ("" if platform is None else f"[{platform}]") + ":"
    if kind is None:
        # buildx may read what comes before a ':' as a type: a plain key has none here.
        key = key.replace(":", ".")
    attrs = annotation_attrs(parse_annotations([f"{prefix}{key}={value}"]))
    (attr,) = attrs
    assert attrs[attr] == value
    assert attr.endswith("." + key)
    head = attr[: -len(key) - 1]
    if kind is None:
        assert head == "annotation"
    elif kind.startswith("manifest") and platform is not None:
        assert head == f"annotation-{kind}[{platform}]"
    else:
        assert head == f"annotation-{kind}"


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "manifest:a"]), _VALUE), max_size=6))
def test_a_later_key_replaces_an_earlier_one(pairs: list[tuple[str, str]]) -> None:
    parsed = parse_annotations([f"{key}={value}" for key, value in pairs])
    assert parsed == dict(pairs)
    assert parse_annotations(dict(pairs)) == parsed


def _solve(**fields: Any) -> dict[str, Any]:
    options = BuildOptions(**{"path": HERE, "version": "2", **fields})
    return solve_request(options, ref="r", session_id="s", engine="containerd").to_json()


def test_every_explicit_output_carries_the_annotations() -> None:
    request = _solve(
        outputs=["type=image,name=a:1", "type=oci,dest=/tmp/x.tar"],
        annotations=["k=v", "index:i=w"],
    )
    added = {"annotation.k": "v", "annotation-index.i": "w"}
    assert request["Exporters"] == [
        {"Type": "moby", "Attrs": {**added, "name": "a:1"}},
        {"Type": "oci", "Attrs": added},
    ]
    assert request["ExporterAttrsDeprecated"] == {**added, "name": "a:1"}
    assert not any(key.startswith("annotation") for key in request["FrontendAttrs"])


def test_annotations_need_explicit_outputs() -> None:
    with pytest.raises(ValidationError, match="annotations are written by explicit outputs"):
        BuildOptions(path=HERE, version="2", tag="a:1", annotations=["k=v"])


def test_annotations_of_a_mapping_and_of_texts_are_the_same() -> None:
    texts = BuildOptions(path=HERE, outputs=["type=image"], annotations=["manifest:k=v"])
    mapping = BuildOptions(path=HERE, outputs=["type=image"], annotations={"manifest:k": "v"})
    assert texts == mapping
    assert texts.annotations == {"manifest:k": "v"}


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ([None], "annotation None must be a 'KEY=VALUE' text"),
        (["k=v", 3], "annotation 3 must be a 'KEY=VALUE' text"),
        ({1: "v"}, "annotation key 1 must be a str"),
        ({"k": None}, "annotation 'k' must have a str value"),
    ],
)
def test_entries_that_are_not_text_are_a_validation_error(given: object, words: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(words)):
        BuildOptions(path=HERE, outputs=["type=image"], annotations=given)  # type: ignore[arg-type]
