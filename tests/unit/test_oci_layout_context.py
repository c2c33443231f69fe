"""`oci-layout://DIR[:TAG][@DIGEST]` named contexts, read as buildx 0.13.1 reads them
(build/build.go): the value is cut at the first `@`, then at the first `:` (tag `latest`);
without a digest the tag is looked up in `DIR/index.json`, else the only manifest there is
taken; the directory is served as the session content store `oci:<id>` and the frontend
gets `context:NAME` = `oci-layout://<id>:<tag>@<digest>`. The engine may only read it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from buildsdk import BuildOptions
from buildsdk._control_plan import content_stores, read_only_stores
from buildsdk._grpc.status import Status
from buildsdk._named_contexts import (
    CONTEXTS_CAP,
    OCILayoutRef,
    oci_store_id,
    parse_oci_layout,
)
from buildsdk.buildkit.solve import solve_request
from buildsdk.cli import build_options_from_args, parse_args
from buildsdk.errors import ContextError, UnsupportedOption
from buildsdk.session.content import (
    WRITE_COMMIT,
    WRITE_STAT,
    WRITE_WRITE,
    ContentService,
    ReadContentRequest,
    ReadContentResponse,
    WriteContentRequest,
    oci_layout_digests,
    resolve_oci_layout,
)
from tests.unit.test_session_grpc import _serve_and_call

HERE = str(Path(__file__).resolve().parent)
SERVICE = "/containerd.services.content.v1.Content/"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _options(**fields: Any) -> BuildOptions:
    return BuildOptions(path=HERE, version="2", **fields)


def _layout(root: Path, manifests: list[dict[str, Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    index = {"schemaVersion": 2, "manifests": manifests}
    (root / "index.json").write_text(json.dumps(index))
    return root


def _entry(digest: str, name: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"mediaType": MANIFEST, "digest": digest, "size": 1}
    if name is not None:
        entry["annotations"] = {"org.opencontainers.image.ref.name": name}
    return entry


# -- cutting the value -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("oci-layout:///src/l", OCILayoutRef("/src/l", "latest")),
        ("oci-layout:///src/l:1", OCILayoutRef("/src/l", "1")),
        ("oci-layout:///src/l@" + DIGEST_A, OCILayoutRef("/src/l", "latest", DIGEST_A)),
        ("oci-layout:///src/l:v2@" + DIGEST_A, OCILayoutRef("/src/l", "v2", DIGEST_A)),
        ("oci-layout://rel/l:_v1.2-rc", OCILayoutRef("rel/l", "_v1.2-rc")),
    ],
)
def test_a_value_is_cut_as_buildx_cuts_it(value: str, expected: OCILayoutRef) -> None:
    assert parse_oci_layout(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("oci-layout://", "names no directory"),
        ("oci-layout://:1", "names no directory"),
        ("oci-layout:///l@sha256:abc", "invalid oci-layout digest"),
        ("oci-layout:///l@sha512:" + "a" * 128, "invalid oci-layout digest"),
        ("oci-layout:///l@", "invalid oci-layout digest"),
        # buildx cuts at the first ":", so the rest is the tag, which the engine would refuse.
        ("oci-layout://rel/l:a:b", "invalid oci-layout tag 'a:b'"),
        ("oci-layout:///l:", "invalid oci-layout tag ''"),
        ("oci-layout:///l:-x", "invalid oci-layout tag"),
        ("oci-layout:///l:" + "x" * 129, "invalid oci-layout tag"),
    ],
)
def test_bad_values_are_refused_when_the_options_are_made(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_oci_layout(value)
    with pytest.raises(ValidationError, match=message):
        _options(build_contexts={"base": value})


_PART = st.text(
    alphabet=st.characters(blacklist_characters=":@", blacklist_categories=["Cs"]), min_size=1
)


@given(
    directory=_PART,
    tag=st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z"),
    digest=st.none() | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
)
def test_a_written_back_value_reads_back_the_same(
    directory: str, tag: str, digest: str | None
) -> None:
    ref = OCILayoutRef(directory, tag, None if digest is None else "sha256:" + digest)
    assert parse_oci_layout(ref.value()) == ref


@given(st.text(min_size=1))
def test_a_store_id_has_the_shape_of_buildx_s_random_ids(name: str) -> None:
    store_id = oci_store_id(name)
    assert len(store_id) == 25
    assert set(store_id) <= set(string.digits + string.ascii_lowercase)
    assert oci_store_id(name) == store_id


def test_store_ids_differ_per_name() -> None:
    assert len({oci_store_id(f"n{i}") for i in range(1000)}) == 1000


# -- resolving the tag -------------------------------------------------------------------------


def test_the_tag_is_looked_up_in_index_json(tmp_path: Path) -> None:
    layout = _layout(
        tmp_path / "l",
        [_entry(DIGEST_A, "latest"), _entry(DIGEST_B, "v2"), _entry(DIGEST_A, "repo/x:v2")],
    )
    assert resolve_oci_layout(f"oci-layout://{layout}").digest == DIGEST_A
    assert resolve_oci_layout(f"oci-layout://{layout}:v2") == OCILayoutRef(
        str(layout), "v2", DIGEST_B
    )


def test_the_only_manifest_is_taken_when_no_name_matches(tmp_path: Path) -> None:
    layout = _layout(tmp_path / "l", [_entry(DIGEST_B, "other")])
    assert resolve_oci_layout(f"oci-layout://{layout}:v9").digest == DIGEST_B


def test_a_given_digest_is_kept_without_reading_the_directory(tmp_path: Path) -> None:
    value = f"oci-layout://{tmp_path}/nothing-here:1@{DIGEST_A}"
    assert resolve_oci_layout(value) == OCILayoutRef(f"{tmp_path}/nothing-here", "1", DIGEST_A)


def test_an_unknown_tag_is_an_error_naming_the_tags_there(tmp_path: Path) -> None:
    layout = _layout(tmp_path / "l", [_entry(DIGEST_A, "v1"), _entry(DIGEST_B, "v2")])
    with pytest.raises(ContextError) as caught:
        resolve_oci_layout(f"oci-layout://{layout}:v3")
    assert "could not be resolved: no manifest named 'v3'" in str(caught.value)
    assert "(names there: v1, v2)" in str(caught.value)
    assert caught.value.path == str(layout)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"index.json not found \(not an OCI layout directory\)"),
        ("{not json", "could not read"),
        ('{"manifests": {}}', "is not an OCI image index"),
        (json.dumps({"manifests": [_entry("sha512:" + "a" * 128)]}), "not a sha256 digest"),
        (json.dumps({"manifests": []}), "names there: none"),
    ],
)
def test_a_directory_that_is_no_usable_layout_is_an_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "index.json").write_text(content)
    with pytest.raises(ContextError, match=message):
        resolve_oci_layout(f"oci-layout://{tmp_path}")


def test_options_get_their_layouts_resolved_and_nothing_else(tmp_path: Path) -> None:
    layout = _layout(tmp_path / "l", [_entry(DIGEST_A, "1")])
    options = _options(
        build_contexts={"base": f"oci-layout://{layout}:1", "other": "docker-image://busybox"}
    )
    resolved = oci_layout_digests(options)
    assert resolved.build_contexts == {
        "base": f"oci-layout://{layout}:1@{DIGEST_A}",
        "other": "docker-image://busybox",
    }
    assert oci_layout_digests(resolved) is resolved


# -- the request and the session ---------------------------------------------------------------


def test_the_request_names_the_store_tag_and_digest(tmp_path: Path) -> None:
    layout = _layout(tmp_path / "l", [_entry(DIGEST_A, "latest")])
    options = oci_layout_digests(_options(build_contexts={"base": f"oci-layout://{layout}"}))
    request = solve_request(options, ref="r", session_id="s", engine="containerd")
    store_id = oci_store_id("base")
    assert request.frontend_attrs["context:base"] == f"oci-layout://{store_id}:latest@{DIGEST_A}"
    assert request.frontend_attrs["frontend.caps"] == CONTEXTS_CAP
    assert content_stores(options) == {f"oci:{store_id}": str(layout)}
    assert read_only_stores(options) == {f"oci:{store_id}"}


def test_an_unresolved_layout_is_refused_by_the_pure_request() -> None:
    options = _options(build_contexts={"base": "oci-layout:///src/layout:1"})
    with pytest.raises(UnsupportedOption, match=r"resolve it first .*oci_layout_digests"):
        solve_request(options, ref="r", session_id="s", engine="containerd")


def _call(
    service: ContentService, method: str, messages: list[bytes], store: str
) -> tuple[list[bytes], tuple[int, str]]:
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [(SERVICE + method, messages, (("buildkit-attachable-store-id", store),))],
        )
    )
    return engine.messages(stream), engine.status(stream)


def test_the_engine_reads_a_layout_store_but_cannot_write_into_it(tmp_path: Path) -> None:
    data = b"layer"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (tmp_path / "blobs" / "sha256").mkdir(parents=True)
    (tmp_path / "blobs" / "sha256" / digest[7:]).write_bytes(data)
    service = ContentService({"oci:x": str(tmp_path)}, read_only={"oci:x"})
    replies, status = _call(service, "Read", [ReadContentRequest(digest).encode()], "oci:x")
    assert status == (0, "")
    assert [ReadContentResponse.decode(m).data for m in replies] == [data]
    new = b"new"
    requests = [
        WriteContentRequest(WRITE_STAT, "ref", len(new)),
        WriteContentRequest(WRITE_WRITE, data=new),
        WriteContentRequest(WRITE_COMMIT, total=len(new)),
    ]
    replies, status = _call(service, "Write", [r.encode() for r in requests], "oci:x")
    assert replies == []
    assert status == (Status.PERMISSION_DENIED, "content store 'oci:x' is read-only")
    assert os.listdir(tmp_path / "blobs" / "sha256") == [digest[7:]]


def test_the_cli_takes_a_relative_layout_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    argv = ["build", "--build-context", "base=oci-layout://out/l:1", str(tmp_path)]
    options = build_options_from_args(parse_args(argv), cwd=str(tmp_path), env={})
    assert options.build_contexts == {"base": f"oci-layout://{tmp_path}/out/l:1"}
    argv[2] = f"base=oci-layout://{tmp_path}/l@{DIGEST_A}"
    options = build_options_from_args(parse_args(argv), cwd="/elsewhere", env={})
    assert options.build_contexts == {"base": f"oci-layout://{tmp_path}/l@{DIGEST_A}"}
