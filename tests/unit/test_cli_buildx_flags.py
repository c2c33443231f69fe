"""buildx's flags on `buildsdk build`: `-o`, `--push`, `--load`, `--iidfile`,
`--metadata-file`, `--endpoint` and `--dry-run --format json`, without a Control API engine.

Refusals must come in buildx 0.13's words (commands/build.go and build/build.go) and before
any connection: the engine address is one where nothing listens, so a command that tried
to connect would exit with EXIT_UNREACHABLE instead of EXIT_USAGE.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsdk.build import BuildOptions
from buildsdk.cli import EXIT_USAGE, build_options_from_args, main, parse_args
from buildsdk.outputs import ImageOutput, LocalOutput, TarOutput, format_output
from tests.recording_engine import IMAGE_ID, recording_engine

NOWHERE = "unix:///nonexistent/buildsdk-test.sock"


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


def options(argv: list[str], ctx: Path) -> BuildOptions:
    args = parse_args(["build", *argv, str(ctx)])
    return build_options_from_args(args, env={}, cwd=ctx)


def test_outputs_are_read_as_buildx_reads_them(ctx: Path) -> None:
    # CSV quoting keeps a comma inside a value; keys are trimmed and lower-cased.
    out = options(["-o", '"type=image","name=a:1,a:2"'], ctx)
    assert out.outputs == (ImageOutput(name=("a:1", "a:2")),)
    assert options(["-o", " TYPE=local, Dest=out"], ctx).outputs == (LocalOutput(dest="out"),)
    assert out.version == "2"
    assert options(["-o", "dir"], ctx).outputs == (LocalOutput(dest="dir"),)
    assert options(["--push", "-t", "r.example/a:1"], ctx).outputs == (ImageOutput(push=True),)
    assert options(["--push", "-o", "type=image,name=r.example/a:1"], ctx).outputs == (
        ImageOutput(name=("r.example/a:1",), push=True),
    )
    assert options(["--load"], ctx).outputs == (ImageOutput(),)
    assert options(["--load", "-o", "type=docker"], ctx).outputs == (ImageOutput(),)


def test_a_dash_is_standard_output(ctx: Path) -> None:
    for flags in (["-o", "-"], ["-o", "type=tar,dest=-"]):
        (output,) = options(flags, ctx).outputs
        assert isinstance(output, TarOutput)
        assert output.dest is sys.stdout.buffer


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--push", "--load"], "push and load may not be set together at the moment"),
        (
            ["--push", "-o", "type=local,dest=out"],
            'push and "local" output can\'t be used together',
        ),
        (["--push", "-o", "out"], 'push and "local" output can\'t be used together'),
        (["--load", "-o", "type=tar,dest=x"], 'load and "tar" output can\'t be used together'),
        (["--load", "-o", "type=image"], 'load and "image" output can\'t be used together'),
        (
            ["--iidfile", "id", "-o", "type=local,dest=out"],
            "local and tar exporters are incompatible with image ID file",
        ),
        (["--iidfile", "id", "-o", "-"], "local and tar exporters are incompatible with image ID"),
        (["--format", "json"], "--format applies to --dry-run only"),
        (
            ["--endpoint", "grpc", "--dry-run", "--builder", "classic"],
            "--endpoint grpc sends a BuildKit build",
        ),
    ],
)
def test_refusals_in_buildx_s_words_before_connecting(
    ctx: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["build", "-H", NOWHERE, *flags, str(ctx)]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_push_to_a_registry_output_is_allowed(ctx: Path) -> None:
    # buildx reads type=registry as an image output with push=true.
    assert options(["--push", "-o", "type=registry,name=r.example/a:1"], ctx).outputs == (
        ImageOutput(name=("r.example/a:1",), push=True),
    )


_names = st.lists(st.from_regex(r"[a-z][a-z0-9]{0,5}:[a-z0-9]{1,4}", fullmatch=True), max_size=3)


@given(names=_names, push=st.booleans())
def test_an_image_output_survives_the_command_line(names: list[str], push: bool) -> None:
    output = ImageOutput(name=tuple(names), push=push)
    args = parse_args(["build", "-o", format_output(output), "."])
    assert build_options_from_args(args, env={}, cwd=Path(__file__).parent).outputs == (output,)


def test_control_dry_run_needs_an_engine(ctx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The image store decides the request, and only the engine can tell it.
    status = main(["build", "-H", NOWHERE, "--endpoint", "grpc", "--dry-run", str(ctx)])
    assert status == 3
    assert capsys.readouterr().out == ""


def test_json_dry_run_of_a_post_build_build(
    ctx: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_API_VERSION", raising=False)
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    with recording_engine(api_version="1.45") as engine:
        argv = ["build", "-H", engine.host, "--dry-run", "--format", "json", "-t", "a:1", str(ctx)]
        assert main(argv) == 0
        printed = json.loads(capsys.readouterr().out)
        assert {request.path for request in engine.requests} <= {"/_ping"}
    assert printed["endpoint"] == "build"
    assert printed["method"] == "POST"
    assert printed["path"] == "/v1.45/build"
    assert ["t", "a:1"] in printed["query"]
    assert printed["context"].startswith("1 files, 13 bytes")
    assert printed["session"] is None


def test_metadata_file_of_a_post_build_build(
    ctx: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The recording engine has no Control API to tell its image store: classic is assumed.
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    target = tmp_path_factory.mktemp("out") / "metadata.json"
    with recording_engine() as engine:
        argv = ["build", "-H", engine.host, "-q", "-t", "a:1", "--metadata-file", str(target)]
        assert main([*argv, str(ctx)]) == 0
    assert json.loads(target.read_text()) == {
        "containerimage.config.digest": IMAGE_ID,
        "image.name": "docker.io/library/a:1",
    }


def test_annotation_no_cache_filter_and_allow_are_read_as_buildx_reads_them(ctx: Path) -> None:
    read = options(
        [
            "--push",
            "-t",
            "r.example/a:1",
            "--annotation",
            "k=v",
            "--annotation",
            "manifest[linux/amd64]:m=1",
            "--no-cache-filter",
            "base",
            "--no-cache-filter",
            "test",
            "--allow",
            "network.host,security.insecure",
            "--allow",
            "network.host",
        ],
        ctx,
    )
    assert read.annotations == {"k": "v", "manifest[linux/amd64]:m": "1"}
    assert read.no_cache_filter == ("base", "test")
    # --allow is a string slice in buildx: comma-separated and repeatable.
    assert read.allow == ("network.host", "security.insecure", "network.host")
    # Only BuildKit's Control API carries them: BuildKit is chosen as for --output.
    assert read.version == "2"
    assert options(["--no-cache-filter", "x"], ctx).version == "2"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--annotation", "k=v"], "annotations are written by explicit outputs only"),
        (["--push", "--annotation", "k"], "invalid annotation 'k', expected key=value"),
        (["--push", "--annotation", "foo:k=v"], "unknown annotation type 'foo'"),
        (["--allow", "device"], "--allow"),
        (["--no-cache-filter", "a,b"], "without commas"),
        (["--allow", "network.host", "--endpoint", "build"], "cannot carry them"),
    ],
)
def test_control_api_flags_are_refused_before_connecting(
    ctx: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["build", "-H", NOWHERE, *flags, str(ctx)]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_cache_flags_are_read_as_buildx_reads_them(ctx: Path) -> None:
    from buildsdk.cache_backends import InlineCache, LocalCache, RegistryCache

    read = options(
        [
            "--cache-to",
            "type=local,dest=c,mode=max",
            "--cache-to",
            "type=inline",
            "--cache-from",
            "type=registry,ref=r.example/a:cache",
            "--cache-from",
            "app:1",
        ],
        ctx,
    )
    assert read.cache_to == (LocalCache(dest="c", mode="max"), InlineCache())
    assert read.cache_from == (RegistryCache(ref="r.example/a:cache"), "app:1")
    assert read.version == "2"
    # A plain reference keeps docker build's meaning: the classic default stays.
    assert options(["--cache-from", "app:1"], ctx).version == "1"


def test_a_cache_flag_in_error_is_named(ctx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", "-H", NOWHERE, "--cache-to", "type=local", str(ctx)])
    assert code == EXIT_USAGE
    assert "--cache-to" in capsys.readouterr().err
