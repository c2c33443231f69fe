"""Cache models, buildx's --cache-to/--cache-from syntax, and where BuildOptions sends them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from buildsdk._control_plan import choose_endpoint, control_reasons
from buildsdk.build import BuildOptions
from buildsdk.buildkit.solve import solve_request
from buildsdk.cache_backends import (
    CacheEntry,
    InlineCache,
    LocalCache,
    RegistryCache,
    format_cache,
    parse_cache,
)
from buildsdk.errors import UnsupportedOption
from tests import examples

HERE = str(Path(__file__).resolve().parent)
DIGEST = "sha256:" + "ab" * 32

PARSED = [
    ("type=inline", InlineCache()),
    ("type=local,dest=/c,mode=max", LocalCache(dest="/c", mode="max")),
    (" TYPE=local, Src=/c", LocalCache(src="/c")),
    (f"type=local,src=/c,digest={DIGEST},tag=v1", LocalCache(src="/c", digest=DIGEST, tag="v1")),
    (
        "type=registry,ref=r.io/app:cache,mode=max,image-manifest=true,oci-mediatypes=1",
        RegistryCache(ref="r.io/app:cache", mode="max", image_manifest=True, oci_mediatypes=True),
    ),
    ("r.io/app:cache", RegistryCache(ref="r.io/app:cache")),
    ("type=gha,scope=main", CacheEntry(type="gha", attrs={"scope": "main"})),
    (
        "type=local,dest=/c,compression=zstd,compression-level=3,force-compression=true",
        LocalCache(dest="/c", compression="zstd", compression_level=3, force_compression=True),
    ),
]


@pytest.mark.parametrize(("text", "model"), PARSED)
def test_parse_cache_reads_buildx_s_syntax(text: str, model: Any) -> None:
    assert parse_cache(text) == model


def test_cache_attrs_are_what_buildx_sends() -> None:
    assert LocalCache(dest="/c", mode="max").cache_attrs() == {"dest": "/c", "mode": "max"}
    assert LocalCache(src="/c", digest=DIGEST).to_entry() == {
        "Type": "local",
        "Attrs": {"digest": DIGEST, "src": "/c"},
    }
    assert InlineCache().to_entry() == {"Type": "inline"}
    assert RegistryCache(ref="r/a", oci_mediatypes=False).cache_attrs() == {
        "oci-mediatypes": "false",
        "ref": "r/a",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type=local", "exactly one of dest (export) or src (import)"),
        ("type=local,src=a,dest=b", "exactly one of dest (export) or src (import)"),
        ("type=local,src=a,mode=max", "apply to dest (export)"),
        ("type=local,src=a,digest=sha256:12", "digest must be sha256: and 64 hex digits"),
        ("type=local,dest=a,mode=all", "mode"),
        ("type=registry", "ref"),
        ("type=registry,ref=UPPER", "ref"),
        ("mode=max", "type is required for cache"),
        ("type=local,dest", "invalid value dest"),
        ("type=local,dest=a,oci-mediatypes=yes", "oci-mediatypes must be true or false"),
    ],
)
def test_parse_cache_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_cache(text)


_KEYS = st.from_regex(r"[a-z][a-z0-9.-]{0,10}", fullmatch=True).filter(
    lambda key: (
        key
        not in (
            "type",
            "dest",
            "src",
            "tag",
            "digest",
            "ref",
            "mode",
            "compression",
            "compression-level",
            "force-compression",
            "oci-mediatypes",
            "image-manifest",
        )
    )
)
_ATTRS = st.dictionaries(_KEYS, st.text(max_size=8), max_size=3)
_PATH = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
_LAYERS: dict[str, Any] = {
    "mode": st.sampled_from([None, "min", "max"]),
    "compression": st.sampled_from([None, "uncompressed", "gzip", "estargz", "zstd"]),
    "compression_level": st.none() | st.integers(0, 22),
    "force_compression": st.booleans(),
    "oci_mediatypes": st.none() | st.booleans(),
    "image_manifest": st.none() | st.booleans(),
}
_DIGESTS = st.none() | st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())
_TAGS = st.none() | _PATH

_MODELS = st.one_of(
    st.builds(InlineCache, attrs=_ATTRS),
    st.builds(LocalCache, dest=_PATH, tag=_TAGS, attrs=_ATTRS, **_LAYERS),
    st.builds(LocalCache, src=_PATH, tag=_TAGS, digest=_DIGESTS, attrs=_ATTRS),
    st.builds(
        RegistryCache,
        ref=st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8})?(:[a-z0-9]{1,8})?", fullmatch=True),
        attrs=_ATTRS,
        **_LAYERS,
    ),
    st.builds(
        CacheEntry,
        type=st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True).filter(
            lambda kind: kind not in ("inline", "local", "registry")
        ),
        attrs=_ATTRS,
    ),
)


@settings(max_examples=examples(150))
@given(_MODELS)
def test_parse_of_format_round_trips(cache: Any) -> None:
    assert parse_cache(format_cache(cache)) == cache


@settings(max_examples=examples(200))
@given(st.text(max_size=40))
def test_parse_cache_gives_a_model_or_a_value_error(text: str) -> None:
    try:
        parsed = parse_cache(text)
    except ValueError:
        return
    assert isinstance(parsed, (InlineCache, LocalCache, RegistryCache, CacheEntry))


# -- BuildOptions ----------------------------------------------------------------------------


def test_docker_py_cache_from_stays_on_post_build() -> None:
    options = BuildOptions(path=HERE, cache_from=["app:1", "app:latest"])
    assert choose_endpoint(options) == "build"
    assert ("cachefrom", '["app:1","app:latest"]') in options.to_query("1.45")


def test_a_plain_reference_is_a_registry_import_on_the_control_api() -> None:
    options = BuildOptions(path=HERE, version="2", cache_from="app:1")
    request = solve_request(options, ref="r", session_id="s", engine="containerd").to_json()
    assert request["Cache"] == {"Imports": [{"Type": "registry", "Attrs": {"ref": "app:1"}}]}
    assert json.loads(request["FrontendAttrs"]["cache-imports"]) == [
        {"Type": "registry", "Attrs": {"ref": "app:1"}}
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {"cache_to": ["type=inline"]},
        {"cache_to": [LocalCache(dest="c")]},
        {"cache_from": ["type=local,src=c"]},
        {"cache_from": [RegistryCache(ref="r/a")]},
    ],
)
def test_typed_caches_take_the_control_api(fields: dict[str, Any]) -> None:
    options = BuildOptions(path=HERE, version="2", **fields)
    assert choose_endpoint(options) == "grpc"
    assert control_reasons(options)
    pinned = options.model_copy(update={"build_endpoint": "build"})
    with pytest.raises(UnsupportedOption, match="needs BuildKit's Control API"):
        pinned.to_query("1.45")


def test_cache_directions_are_checked() -> None:
    with pytest.raises(ValidationError, match="written to dest"):
        BuildOptions(path=HERE, cache_to=[LocalCache(src="c")])
    with pytest.raises(ValidationError, match="read from src"):
        BuildOptions(path=HERE, cache_from=[LocalCache(dest="c")])
    with pytest.raises(ValidationError, match="exported only"):
        BuildOptions(path=HERE, cache_from=["type=inline"])


def test_the_inline_build_arg_adds_an_inline_export_as_buildx_does() -> None:
    options = BuildOptions(path=HERE, version="2", buildargs={"BUILDKIT_INLINE_CACHE": "1"})
    request = solve_request(options, ref="r", session_id="s", engine="containerd")
    assert request.to_json()["Cache"] == {"Exports": [{"Type": "inline"}]}


def test_inline_cache_export_works_on_the_classic_store() -> None:
    options = BuildOptions(path=HERE, version="2", cache_to="type=inline")
    request = solve_request(options, ref="r", session_id="s", engine="classic")
    assert request.to_json()["Cache"] == {"Exports": [{"Type": "inline"}]}
