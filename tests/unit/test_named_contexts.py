"""Named build contexts (`BuildOptions.build_contexts`, `--build-context`): names and values
read as buildx 0.13 reads them, and the frontend attributes the `SolveRequest` carries.

Expected values follow buildx's `ParseContextNames` (distribution/reference's short form
without `:latest`) and `IsRemoteURL` (an http(s) URL, or what BuildKit's `ParseGitRef`
accepts); the recorded request of `--build-context` is checked in test_solve_vectors.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from buildsdk import BuildOptions
from buildsdk._control_plan import choose_endpoint, control_reasons
from buildsdk._named_contexts import context_kind, context_name
from buildsdk.buildkit.solve import solve_request
from buildsdk.cli import build_options_from_args, parse_args
from buildsdk.errors import UnsupportedOption

HERE = str(Path(__file__).resolve().parent)


def _options(**fields: Any) -> BuildOptions:
    return BuildOptions(path=HERE, version="2", **fields)


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("other", "other"),
        ("alpine:latest", "alpine"),
        ("alpine:3.19", "alpine:3.19"),
        ("docker.io/library/alpine", "alpine"),
        ("index.docker.io/library/alpine:latest", "alpine"),
        ("docker.io/team/app", "team/app"),
        ("library/app", "app"),
        ("library/a/b", "library/a/b"),
        ("localhost:5000/app:latest", "localhost:5000/app"),
        ("ghcr.io/org/app:1", "ghcr.io/org/app:1"),
        ("app@sha256:" + "a" * 64, "app@sha256:" + "a" * 64),
    ],
)
def test_names_are_shortened_as_buildx_shortens_them(given: str, name: str) -> None:
    assert context_name(given) == name
    assert _options(build_contexts={given: "/src"}).build_contexts == {name: "/src"}


@pytest.mark.parametrize("bad", ["Other", "my context", "", "a//b", "-a", "a" * 64])
def test_names_that_are_no_image_reference_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="build_contexts") as caught:
        _options(build_contexts={bad: "/src"})
    assert "invalid context name" in str(caught.value)


_COMPONENT = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8})?", fullmatch=True)


@given(path=st.lists(_COMPONENT, min_size=1, max_size=3), tag=st.none() | _COMPONENT)
def test_a_shortened_name_stays_as_it_is(path: list[str], tag: str | None) -> None:
    name = "/".join(path) + (f":{tag}" if tag else "")
    short = context_name(name)
    assert context_name(short) == short
    assert context_name(f"docker.io/{'library/' if len(path) == 1 else ''}{name}") == short
    assert not short.endswith(":latest")


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("/src/other", "local"),
        ("../other", "local"),
        ("other", "local"),
        ("file:///src/repo.git", "local"),  # buildx does not take file:// for a URL
        ("docker-image://busybox:latest", "docker-image"),
        ("oci-layout:///src/layout:1", "oci-layout"),
        ("https://example.com/app.tar.gz", "url"),
        ("http://127.0.0.1:8000/repo.git", "url"),
        ("https://github.com/moby/buildkit.git#v0.13.2:frontend", "url"),
        ("git://example.com/repo", "url"),
        ("ssh://git@example.com/repo", "url"),
        ("git@github.com:moby/buildkit.git", "url"),
        ("github.com/moby/buildkit", "url"),
        ("example.com/team/repo.git", "url"),
        # buildx's quirk: a path ending in .git reads as a git URL.
        ("/src/repo.git", "url"),
        ("./repo.git", "local"),
    ],
)
def test_values_are_sorted_as_buildx_sorts_them(value: str, kind: str) -> None:
    assert context_kind(value) == kind


def test_the_solve_request_names_each_context_as_buildx_does() -> None:
    contexts = {
        "other": "/src/other",
        "context": "/src/ctx",
        "dockerfile": "/src/df",
        "base": "docker-image://busybox:latest",
        "src": "http://127.0.0.1:8000/repo.git#main",
    }
    attrs = dict(
        solve_request(
            _options(build_contexts=contexts), ref="r", session_id="s", engine="classic"
        ).frontend_attrs
    )
    assert {k: v for k, v in attrs.items() if k.startswith(("context:", "frontend."))} == {
        "context:other": "local:other",
        # The main context and Dockerfile own these dir-names; buildx renames the named ones.
        "context:context": "local:_context",
        "context:dockerfile": "local:_dockerfile",
        "context:base": "docker-image://busybox:latest",
        "context:src": "http://127.0.0.1:8000/repo.git#main",
        "frontend.caps": "moby.buildkit.frontend.contexts+forward",
    }
    assert (
        "frontend.caps"
        not in solve_request(_options(), ref="r", session_id="s", engine="classic").frontend_attrs
    )


def test_named_contexts_choose_the_control_api_and_refuse_post_build() -> None:
    options = _options(build_contexts={"other": "/src"})
    assert control_reasons(options) == ["named build contexts"]
    assert choose_endpoint(options) == "grpc"
    with pytest.raises(ValidationError, match=r"POST /build .* cannot carry named contexts"):
        _options(build_contexts={"other": "/src"}, build_endpoint="build")


def test_an_oci_layout_is_sent_only_with_its_digest() -> None:
    options = _options(build_contexts={"base": "oci-layout:///src/layout:1"})
    with pytest.raises(UnsupportedOption, match=r"oci-layout:// context is sent with its digest"):
        solve_request(options, ref="r", session_id="s", engine="containerd")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "docker-image://Busybox",
        "docker-image://",
        "https://user:s3cr3t@example.com/r.git",
        "https://s3cr3t@example.com/r.git",
        "ssh://git:s3cr3t@example.com/r",
    ],
)
def test_bad_values_are_refused_without_showing_them(value: str) -> None:
    with pytest.raises(ValidationError, match="build_contexts") as caught:
        _options(build_contexts={"other": value})
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize(
    "value", ["git@github.com:moby/buildkit.git", "ssh://git@example.com/repo.git"]
)
def test_an_ssh_login_name_is_no_credential(value: str) -> None:
    assert _options(build_contexts={"src": value}).build_contexts == {"src": value}


def _cli(argv: list[str], cwd: Path) -> BuildOptions:
    return build_options_from_args(parse_args(["build", *argv]), cwd=str(cwd), env={})


def test_the_cli_reads_build_context_as_buildx_does(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    (tmp_path / "rel/dir").mkdir(parents=True)
    options = _cli(
        [
            "--build-context",
            "other=rel/dir",
            "--build-context",
            "docker.io/library/base:latest=docker-image://busybox:latest",
            str(tmp_path),
        ],
        tmp_path,
    )
    # A relative directory is taken from the working directory, as buildx does.
    assert options.build_contexts == {
        "other": str(tmp_path / "rel/dir"),
        "base": "docker-image://busybox:latest",
    }
    assert options.version == "2"
    assert choose_endpoint(options) == "grpc"


def test_the_cli_refuses_a_build_context_without_a_name(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    with pytest.raises(Exception, match="invalid context value: other, expected key=value"):
        _cli(["--build-context", "other", str(tmp_path)], tmp_path)


def test_the_cli_refuses_a_named_directory_that_is_not_there(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    missing = tmp_path / "missing"
    expected = re.escape(f"failed to get build context other: stat {missing}: no such file")
    with pytest.raises(Exception, match=expected):
        _cli(["--build-context", "other=missing", str(tmp_path)], tmp_path)
    with pytest.raises(Exception, match=r"failed to get build context path .*: not a directory"):
        _cli(["--build-context", "other=Dockerfile", str(tmp_path)], tmp_path)
