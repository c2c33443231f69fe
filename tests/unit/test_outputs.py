"""Typed exporters: buildx's --output syntax in, the exporter BuildKit gets out."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from buildsdk.build import BuildOptions
from buildsdk.errors import UnsupportedOption
from buildsdk.outputs import (
    BuildOutput,
    DockerOutput,
    ImageOutput,
    LocalOutput,
    OCIOutput,
    TarOutput,
    format_output,
    parse_output,
    parse_outputs,
    typed_outputs,
)
from buildsdk.session._runtime import client_exports
from tests import examples

HERE = str(Path(__file__).resolve().parent)

# (buildx --output value, exporter Type, exporter Attrs, session service)
PARSED = [
    ("type=local,dest=out", "local", {}, "FileSend"),
    ("out", "local", {}, "FileSend"),
    ("type=tar,dest=out.tar", "tar", {}, "FileSend"),
    ("type=oci,dest=oci.tar,name=ociname:1", "oci", {"name": "ociname:1"}, "FileSend"),
    ("type=oci,dest=layout,tar=false", "oci", {"tar": "false"}, "Content"),
    ("type=docker,dest=img.tar", "docker", {}, "FileSend"),
    ("type=docker,name=app:1", "moby", {"name": "app:1"}, None),
    (
        "type=image,name=imgattr:1,compression=zstd,oci-mediatypes=true",
        "moby",
        {"compression": "zstd", "name": "imgattr:1", "oci-mediatypes": "true"},
        None,
    ),
    ("type=moby", "moby", {}, None),
    ("type=registry,name=r/app:1", "moby", {"name": "r/app:1", "push": "true"}, None),
    ("type=image,name=r/app:2,push=true", "moby", {"name": "r/app:2", "push": "true"}, None),
    ('type=image,"name=a:1,a:2"', "moby", {"name": "a:1,a:2"}, None),
    (" TYPE =image,PUSH=1", "moby", {"push": "true"}, None),
    (
        "type=image,annotation.org.example.k=v,annotation-index.org.example.i=w",
        "moby",
        {"annotation-index.org.example.i": "w", "annotation.org.example.k": "v"},
        None,
    ),
]


@pytest.mark.parametrize(("text", "kind", "attrs", "service"), PARSED)
def test_parse_output_gives_the_exporter_buildx_sends(
    text: str, kind: str, attrs: dict[str, str], service: str | None
) -> None:
    output = parse_output(text)
    assert not isinstance(output, BuildOutput)
    assert output.exporter_type == kind
    assert output.exporter_attrs() == attrs
    assert list(output.exporter_attrs()) == sorted(attrs)
    assert output.session_service == service


def test_dest_stays_on_the_client() -> None:
    output = parse_output("type=local,dest=out,platform-split=false")
    assert output == LocalOutput(dest="out", attrs={"platform-split": "false"})
    assert output.exporter_attrs() == {"platform-split": "false"}


def test_unknown_types_stay_generic() -> None:
    assert parse_output("type=cacheonly") == BuildOutput(type="cacheonly")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type=local,dest", "invalid value dest"),
        ("name=a,dest=out", "type is required for output"),
        ("type=local", "output type=local: dest: Value error, dest must not be empty"),
        ("type=image,push=maybe", "push must be true or false, got 'maybe'"),
        ("type=image,compression=lz4", "output type=image: compression: Input should be"),
        ("type=image,compression-level=x", "compression-level must be a number, got 'x'"),
        ("-", "output '-' (a tar archive on standard output) needs a stream"),
        ('type=local,"dest=a', "invalid output"),
    ],
)
def test_parse_output_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_output(text)
    assert str(info.value).startswith(message)


def test_push_and_load_shorthands() -> None:
    assert parse_outputs([], push=True) == (ImageOutput(push=True),)
    assert parse_outputs(["type=image,name=a:1"], push=True) == (
        ImageOutput(name=("a:1",), push=True),
    )
    assert parse_outputs([], load=True) == (ImageOutput(),)
    assert parse_outputs(["type=docker"], load=True) == (ImageOutput(),)
    with pytest.raises(ValueError, match="push and load may not be set together"):
        parse_outputs([], push=True, load=True)


def test_streams_are_typed_destinations() -> None:
    sink = io.BytesIO()
    assert TarOutput(dest=sink).dest is sink
    assert OCIOutput(dest=sink).session_service == "FileSend"
    with pytest.raises(ValidationError, match="dest must be a binary stream, got a text stream"):
        TarOutput(dest=io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="dest must be a directory path when tar is False"):
        OCIOutput(dest=sink, tar=False)
    with pytest.raises(ValidationError, match="dest must be a path"):
        LocalOutput(dest=sink)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no --output form"):
        format_output(DockerOutput(dest=sink))


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (ImageOutput, {"attrs": {"name": "x"}}, "attrs must not set 'name'"),
        (ImageOutput, {"attrs": {"annotation.k": "v"}}, "attrs must not set 'annotation.k'"),
        (LocalOutput, {"dest": "d", "attrs": {"dest": "x"}}, "attrs must not set 'dest'"),
        (OCIOutput, {"dest": "d", "attrs": {"tar": "false"}}, "attrs must not set 'tar'"),
        (ImageOutput, {"name": ["a,b"]}, "name entries must be non-empty and without ','"),
        (ImageOutput, {"extra": 1}, "extra\n  Extra inputs are not permitted"),
    ],
)
def test_models_refuse_what_they_cannot_send(
    model: type[Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        model(**kwargs)


# -- round trip ------------------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
_KEYS = st.from_regex(r"[a-z][a-z0-9.-]{0,10}", fullmatch=True).filter(
    lambda key: (
        key not in ("type", "dest", "name", "push", "tar")
        and not key.startswith("annotation.")
        and key not in ("compression", "compression-level", "force-compression", "oci-mediatypes")
    )
)
_ATTRS = st.dictionaries(_KEYS, st.text(max_size=8), max_size=3)
_NAMES = st.lists(_TEXT.filter(lambda name: "," not in name), max_size=3).map(tuple)
_DEST = _TEXT.filter(lambda dest: dest.strip() == dest)

_MODELS = st.one_of(
    st.builds(
        ImageOutput,
        name=_NAMES,
        push=st.booleans(),
        compression=st.sampled_from([None, "uncompressed", "gzip", "estargz", "zstd"]),
        compression_level=st.none() | st.integers(0, 22),
        force_compression=st.booleans(),
        oci_mediatypes=st.none() | st.booleans(),
        annotations=st.dictionaries(
            st.from_regex(r"[a-z][a-z0-9.-]{0,10}", fullmatch=True), st.text(max_size=8), max_size=2
        ),
        attrs=_ATTRS,
    ),
    st.builds(LocalOutput, dest=_DEST, attrs=_ATTRS),
    st.builds(TarOutput, dest=_DEST, attrs=_ATTRS),
    st.builds(OCIOutput, dest=_DEST, name=_NAMES, tar=st.booleans(), attrs=_ATTRS),
    st.builds(DockerOutput, dest=_DEST, name=_NAMES, attrs=_ATTRS),
)


@settings(max_examples=examples(400))
@given(_MODELS)
def test_parse_of_format_round_trips(output: Any) -> None:
    # Keys are generated as buildx's syntax can carry them: it lower-cases and trims keys.
    text = format_output(output)
    assert parse_output(text) == output


@settings(max_examples=examples(200))
@given(_MODELS)
def test_exporter_attrs_never_carry_dest(output: Any) -> None:
    assert "dest" not in output.exporter_attrs()
    assert "type" not in output.exporter_attrs()


# -- BuildOptions.outputs --------------------------------------------------------------------


def _outputs_param(options: BuildOptions) -> list[dict[str, Any]]:
    query = dict(parse_qsl(_query_string(options)))
    return list(json.loads(query["outputs"]))


def _query_string(options: BuildOptions) -> str:
    return "&".join(f"{key}={value}" for key, value in options.to_query("1.45"))


def test_build_options_take_typed_outputs_and_buildx_text() -> None:
    typed = BuildOptions(path=HERE, version="2", outputs=[ImageOutput(name=("a:1",))])
    text = BuildOptions(path=HERE, version="2", outputs=["type=image,name=a:1"])
    assert typed == text
    assert ("outputs", '[{"Type":"moby","Attrs":{"name":"a:1"}}]') in typed.to_query("1.45")


def test_build_path_refuses_archives_that_need_a_session_service() -> None:
    options = BuildOptions(path=HERE, version="2", outputs=[OCIOutput(dest="out.tar")])
    with pytest.raises(UnsupportedOption) as info:
        options.to_query("1.45")
    assert info.value.option == "outputs"
    assert str(info.value) == (
        "outputs type 'oci' needs the client to serve FileSend through the BuildKit session, "
        "which buildsdk does only on the Control API path, not on POST /build"
    )


def test_build_path_sends_typed_local_and_tar_outputs_as_the_docker_cli_does() -> None:
    # A local export loses its dest (the session's receiver owns it); a tar export keeps
    # it, as Docker CLI 20.10 sends `-o type=tar,dest=F`.
    local = BuildOptions(path=HERE, version="2", outputs=[LocalOutput(dest="out")])
    assert ("outputs", '[{"Type":"local","Attrs":{}}]') in local.to_query("1.45")
    sent, receivers = client_exports(local)
    assert [output.to_engine() for output in sent] == [{"Type": "local", "Attrs": {}}]
    assert [type(receiver).__name__ for receiver in receivers.values()] == ["DirectoryReceiver"]
    tar = BuildOptions(path=HERE, version="2", outputs=[TarOutput(dest="out.tar")])
    sent, receivers = client_exports(tar)
    assert [output.to_engine() for output in sent] == [
        {"Type": "tar", "Attrs": {"dest": "out.tar"}}
    ]
    assert [type(receiver).__name__ for receiver in receivers.values()] == ["FileReceiver"]
    stream = BuildOptions(path=HERE, version="2", outputs=[TarOutput(dest=io.BytesIO())])
    sent, receivers = client_exports(stream)
    assert [output.to_engine() for output in sent] == [{"Type": "tar", "Attrs": {"dest": "-"}}]
    assert [type(receiver).__name__ for receiver in receivers.values()] == ["StreamReceiver"]


def test_generic_outputs_are_sent_as_before() -> None:
    options = BuildOptions(
        path=HERE, version="2", outputs=[{"type": "local", "attrs": {"dest": "out"}}]
    )
    assert ("outputs", '[{"Type":"local","Attrs":{"dest":"out"}}]') in options.to_query("1.45")


@settings(max_examples=examples(400))
@given(
    st.text(max_size=40)
    | st.lists(
        st.sampled_from(["type=", "local", "dest=", ",", '"', "=", "oci", "tar=false", "name=a"]),
        max_size=8,
    ).map("".join)
)
def test_parse_output_gives_an_output_or_a_value_error(text: str) -> None:
    try:
        output = parse_output(text)
    except ValueError:
        return
    assert isinstance(
        output, (BuildOutput, ImageOutput, LocalOutput, TarOutput, OCIOutput, DockerOutput)
    )


def test_typed_outputs_serve_both_the_endpoint_choice_and_the_solve_request() -> None:
    generic = [
        BuildOutput(type="image", attrs={"push": "true"}),
        BuildOutput(type="oci", attrs={"dest": "a.tar"}),
        BuildOutput(type="docker", attrs={"dest": "b.tar", "name": "own:1"}),
        BuildOutput(type="local", attrs={"dest": "out"}),
        BuildOutput(type="cacheonly"),
    ]
    assert typed_outputs(generic, names=("app:1", "app:2")) == [
        ImageOutput(name=("app:1", "app:2"), push=True),
        OCIOutput(dest="a.tar", name=("app:1", "app:2")),
        DockerOutput(dest="b.tar", name=("own:1",)),
        LocalOutput(dest="out"),
        BuildOutput(type="cacheonly"),
    ]
    # Without tags nothing is named; typed outputs pass through as given.
    assert typed_outputs([ImageOutput(), TarOutput(dest="t.tar")]) == [
        ImageOutput(),
        TarOutput(dest="t.tar"),
    ]
    # An entry its model refuses: the Solve request cannot be made, the endpoint choice
    # keeps it generic for the engine to judge.
    bad = BuildOutput(type="image", attrs={"compression-level": "high"})
    with pytest.raises(ValueError, match="compression-level must be a number"):
        typed_outputs([bad])
    assert typed_outputs([bad], names=("app:1",), lenient=True) == [bad]
