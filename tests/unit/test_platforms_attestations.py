"""Several platforms and attestations (provenance, sbom, attest): what `BuildOptions` accepts,
which endpoint it takes, the frontend attributes the Control API gets (as buildx 0.13.1
sends them, reference buildkit-control.md §4), the refusals on the classic store and on
`POST /build`, the flags of `buildsdk build`, and the line a failed build's `BuildError`
adds when the engine's message does not say why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from buildsdk._control_plan import choose_endpoint
from buildsdk._protocol import BuildStream
from buildsdk.build import BuildOptions
from buildsdk.buildkit.failure import SolveFailure
from buildsdk.buildkit.solve import ImageStore, solve_request
from buildsdk.cli import build_options_from_args, parse_args
from buildsdk.errors import BuildError, UnsupportedOption
from buildsdk.events import VertexEvent, VertexLogEvent, VertexStatusEvent

HERE = str(Path(__file__).resolve().parent)
SCANNER_ERROR = (
    "failed to resolve source metadata for docker.io/docker/buildkit-syft-scanner:stable-1: "
    "failed to do request: Head ...: no such host"
)


def _attrs(engine: ImageStore = "containerd", **fields: object) -> dict[str, str]:
    options = BuildOptions(path=HERE, version="2", **fields)  # type: ignore[arg-type]
    request = solve_request(options, ref="r", session_id="s", engine=engine)
    return dict(request.frontend_attrs)


# -- platforms ----------------------------------------------------------------------------


def test_several_platforms_as_a_list_or_a_comma_list() -> None:
    listed = BuildOptions(path=HERE, platform=["linux/amd64", "Linux/386"])
    joined = BuildOptions(path=HERE, platform="linux/amd64,linux/386")
    assert listed == joined
    assert listed.platform == "linux/amd64,linux/386"
    assert listed.platforms == ("linux/amd64", "linux/386")
    assert BuildOptions(path=HERE).platforms == ()
    # The attribute buildx sends: one comma-joined value, no multi-platform key.
    attrs = _attrs(platform=["linux/amd64", "linux/386"])
    assert attrs["platform"] == "linux/amd64,linux/386"
    assert "multi-platform" not in attrs


def test_one_platform_goes_to_post_build_as_before() -> None:
    options = BuildOptions(path=HERE, platform="linux/amd64")
    assert choose_endpoint(options) == "build"
    assert ("platform", "linux/amd64") in options.to_query("1.45")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("linux/amd64,linux/amd64", "names a platform more than once"),
        (["linux/amd64", ""], "platform must be os[/arch[/variant]]"),
        (["linux/amd64", 3], "platform must be a string or a sequence of strings"),
    ],
)
def test_bad_platform_lists(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        BuildOptions(path=HERE, platform=value)  # type: ignore[arg-type]


def test_several_platforms_or_attestations_take_the_control_api() -> None:
    assert choose_endpoint(BuildOptions(path=HERE, platform="linux/amd64,linux/386")) == "grpc"
    assert choose_endpoint(BuildOptions(path=HERE, provenance="max")) == "grpc"
    assert choose_endpoint(BuildOptions(path=HERE, sbom=True)) == "grpc"
    assert choose_endpoint(BuildOptions(path=HERE, attest=["type=sbom"])) == "grpc"
    # Turning attestations off asks nothing of POST /build, which makes none.
    assert choose_endpoint(BuildOptions(path=HERE, provenance=False)) == "build"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"platform": "linux/amd64,linux/386"}, "2 platforms"),
        ({"provenance": True}, "provenance"),
        ({"sbom": "generator=scanner:1", "platform": "linux/amd64,linux/386"}, "2 platforms, sbom"),
    ],
)
def test_post_build_pinned_refuses_them_clearly(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError) as info:
        BuildOptions(path=HERE, build_endpoint="build", **fields)  # type: ignore[arg-type]
    assert f"{named}: POST /build (build_endpoint='build') builds one platform" in str(info.value)
    assert BuildOptions(path=HERE, build_endpoint="build", provenance=False).provenance is False


# -- attestations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # buildx's default on the containerd store.
        ({}, {"attest:provenance": "mode=min,inline-only=true"}),
        ({"provenance": False}, {}),
        ({"provenance": "false"}, {}),
        ({"provenance": True}, {"attest:provenance": "type=provenance,disabled=false"}),
        ({"provenance": "1"}, {"attest:provenance": "type=provenance,disabled=false"}),
        ({"provenance": "max"}, {"attest:provenance": "type=provenance,mode=max"}),
        ({"provenance": "MIN"}, {"attest:provenance": "type=provenance,mode=min"}),
        ({"provenance": "mode=max"}, {"attest:provenance": "type=provenance,mode=max"}),
        (
            {"sbom": True},
            {
                "attest:sbom": "type=sbom,disabled=false",
                "attest:provenance": "mode=min,inline-only=true",
            },
        ),
        ({"sbom": False}, {"attest:provenance": "mode=min,inline-only=true"}),
        (
            {"attest": ["type=provenance,mode=max", "type=sbom,generator=s:1"]},
            {
                "attest:provenance": "type=provenance,mode=max",
                "attest:sbom": "type=sbom,generator=s:1",
            },
        ),
        ({"attest": "type=provenance,disabled=true"}, {}),
    ],
)
def test_attestation_attributes_as_buildx_sends_them(
    fields: dict[str, object], expected: dict[str, str]
) -> None:
    attrs = _attrs("containerd", **fields)
    assert {k: v for k, v in attrs.items() if k.startswith("attest:")} == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"attest": ["type=sbom", "type=sbom,disabled=true"]}, "duplicate attestation field sbom"),
        ({"attest": ["type=provenance"], "provenance": True}, "duplicate attestation field"),
        ({"attest": ["mode=max"]}, "attestation type not specified"),
        ({"attest": ["type=sbom,oops"]}, "invalid value 'oops'"),
        ({"sbom": "disabled=maybe"}, "invalid value 'disabled=maybe'"),
    ],
)
def test_malformed_attestations_fail_when_the_options_are_made(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        BuildOptions(path=HERE, **fields)  # type: ignore[arg-type]


_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.:/", min_size=1, max_size=12)


@given(
    kind=_TOKEN,
    pairs=st.dictionaries(
        _TOKEN.filter(lambda key: key not in ("type", "disabled")), _TOKEN, max_size=4
    ),
    disabled=st.sampled_from([None, "true", "false", "1", "0", "T", "F"]),
)
def test_an_attest_entry_is_sent_as_given_unless_disabled(
    kind: str, pairs: dict[str, str], disabled: str | None
) -> None:
    entry = ",".join([f"type={kind}", *(f"{k}={v}" for k, v in pairs.items())])
    if disabled is not None:
        entry += f",disabled={disabled}"
    options = BuildOptions(path=HERE, attest=[entry])
    off = disabled in ("true", "1", "T")
    assert options.attestations() == {kind: None if off else entry}
    attrs = _attrs(attest=[entry])
    assert attrs.get(f"attest:{kind}") == (None if off else entry)
    if kind == "provenance":
        # A provenance entry, even a disabled one, replaces the engine default.
        assert "mode=min,inline-only=true" not in attrs.values()


# -- the classic store --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "option", "first_line", "topic"),
    [
        (
            {"platform": "linux/amd64,linux/386"},
            "platform",
            "Multi-platform build is not supported for the docker driver.",
            "build-multi-platform",
        ),
        ({"provenance": "max"}, "provenance", "Attestation is not supported", "attestations"),
        ({"sbom": True}, "sbom", "Attestation is not supported", "attestations"),
        ({"attest": ["type=sbom"]}, "attest", "Attestation is not supported", "attestations"),
    ],
)
def test_classic_store_refusals_in_buildx_s_words(
    fields: dict[str, object], option: str, first_line: str, topic: str
) -> None:
    with pytest.raises(UnsupportedOption) as info:
        _attrs("classic", **fields)
    lines = str(info.value).split("\n")
    assert lines[0].startswith(first_line)
    assert lines[1:] == [
        "Switch to a different driver, or turn on the containerd image store, and try again.",
        f"Learn more at https://docs.docker.com/go/{topic}/",
    ]
    assert info.value.option == option


def test_classic_store_takes_attestations_turned_off_and_sends_no_default() -> None:
    for fields in ({}, {"provenance": False}, {"sbom": False}, {"platform": "linux/386"}):
        assert not [key for key in _attrs("classic", **fields) if key.startswith("attest:")]


# -- the command line ---------------------------------------------------------------------


def _from_argv(argv: list[str], ctx: Path) -> BuildOptions:
    return build_options_from_args(parse_args(["build", *argv, str(ctx)]), env={}, cwd=ctx)


def test_buildx_flags(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    options = _from_argv(
        ["--platform", "linux/amd64,linux/386", "--platform", "linux/arm64"], tmp_path
    )
    assert options.platforms == ("linux/amd64", "linux/386", "linux/arm64")
    assert options.version == "2"
    options = _from_argv(
        ["--provenance", "mode=max", "--sbom=true", "--attest", "type=x,k=v"], tmp_path
    )
    assert options.attestations() == {
        "x": "type=x,k=v",
        "provenance": "type=provenance,mode=max",
        "sbom": "type=sbom,disabled=false",
    }
    assert options.version == "2"
    assert choose_endpoint(options) == "grpc"
    # One platform keeps docker build's meaning (the classic builder unless asked otherwise).
    one = _from_argv(["--platform", "linux/amd64"], tmp_path)
    assert (one.platform, one.version, choose_endpoint(one)) == ("linux/amd64", "1", "build")


# -- errors a user gets -------------------------------------------------------------------


def _failed(options: BuildOptions, message: str, logs: list[bytes]) -> BuildError:
    stream = BuildStream.for_options(options, control_api=True)
    vertex = "sha256:" + "a" * 64
    stream.take(
        [
            VertexEvent(digest=vertex, name='[2/2] RUN ["/hello"]', error=message),
            *(VertexLogEvent(vertex=vertex, stream=2, data=data) for data in logs),
        ]
    )
    stream.end_solve(None, ref="r", failure=SolveFailure(message, exit_code=1, vertex=vertex))
    with pytest.raises(BuildError) as info:
        stream.result()
    return info.value


def test_a_foreign_binary_says_an_emulator_is_missing() -> None:
    message = 'process "/hello" did not complete successfully: exit code: 1'
    options = BuildOptions(path=HERE, version="2", platform="linux/arm64")
    error = _failed(options, message, [b"exec /hello: exec format error\n"])
    first, hint = str(error).split("\n")
    assert first == message
    assert hint.startswith("platform: a step ran a program built for another architecture")
    assert "linux/arm64" in hint
    assert "emulator" in hint
    assert error.code == 1
    # Another failure of the same build, or the same output without a platform: no hint.
    assert str(_failed(options, message, [b"no such file\n"])) == message
    plain = BuildOptions(path=HERE, version="2")
    assert str(_failed(plain, message, [b"exec /hello: exec format error\n"])) == message


def test_an_unreachable_sbom_scanner_is_named() -> None:
    error = _failed(BuildOptions(path=HERE, version="2", sbom=True), SCANNER_ERROR, [])
    first, hint = str(error).split("\n")
    assert first == SCANNER_ERROR
    assert hint.startswith("sbom: the engine could not pull the SBOM scanner image")
    assert "generator=IMAGE" in hint


# -- per-platform images ------------------------------------------------------------------


def _exported(stream: BuildStream, ids: list[str]) -> None:
    vertex = "sha256:" + "e" * 64
    # Each task is reported more than once (started, then completed), as engines do.
    stream.take([VertexStatusEvent(id=task, vertex=vertex) for task in ids for _ in range(2)])


def test_per_platform_images_come_from_the_exporter_s_tasks_in_platform_order() -> None:
    digest = {name: "sha256:" + name * 64 for name in "123456789"}
    tasks = [
        "exporting layers",
        f"exporting manifest {digest['1']}",
        f"exporting config {digest['2']}",
        f"exporting attestation manifest {digest['3']}",
        f"exporting manifest {digest['4']}",
        f"exporting config {digest['5']}",
        f"exporting attestation manifest {digest['6']}",
        f"exporting manifest list {digest['7']}",
        "naming to docker.io/library/multi:1",
    ]
    options = BuildOptions(path=HERE, version="2", platform="linux/386,linux/amd64")
    stream = BuildStream.for_options(options, control_api=True)
    _exported(stream, tasks)
    stream.end_solve({"containerimage.digest": digest["7"]}, ref="r")
    result = stream.result()
    assert [image.model_dump() for image in result.platform_images] == [
        {"platform": "linux/386", "manifest_digest": digest["1"], "config_digest": digest["2"]},
        {"platform": "linux/amd64", "manifest_digest": digest["4"], "config_digest": digest["5"]},
    ]
    assert result.image_digest == digest["7"]
    # One platform's worth of tasks for two platforms: nothing rather than a guess.
    stream = BuildStream.for_options(options, control_api=True)
    _exported(stream, tasks[:3])
    stream.end_solve({"containerimage.digest": digest["7"]}, ref="r")
    assert stream.result().platform_images == ()
    # No platform asked: no platform to name the image by.
    stream = BuildStream.for_options(BuildOptions(path=HERE, version="2"), control_api=True)
    _exported(stream, tasks[:3])
    stream.end_solve({"containerimage.digest": digest["1"]}, ref="r")
    assert stream.result().platform_images == ()
