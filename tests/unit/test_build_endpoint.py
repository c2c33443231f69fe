"""Which endpoint a build takes, and the Control API build's description."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from buildsdk import BuildOptions, ExportError, UnsupportedOption
from buildsdk._build_plan import describe_control_build
from buildsdk._control_plan import (
    check_control,
    choose_endpoint,
    control_reasons,
    session_options,
)
from buildsdk.outputs import DockerOutput, ImageOutput, LocalOutput, OCIOutput, TarOutput
from buildsdk.session._runtime import client_exports, session_methods
from buildsdk.session.filesend import FILE_SEND, DirectoryReceiver, FileReceiver, StreamReceiver


@pytest.mark.parametrize(
    ("options", "endpoint"),
    [
        (BuildOptions(path="."), "build"),
        (BuildOptions(path=".", version="2", tag="a:1"), "build"),
        (BuildOptions(path=".", version="2", outputs=[LocalOutput(dest="out")]), "build"),
        (BuildOptions(path=".", version="2", outputs=[OCIOutput(dest="a.tar")]), "grpc"),
        (BuildOptions(path=".", version="2", outputs=[DockerOutput(dest="a.tar")]), "grpc"),
        (BuildOptions(path=".", version="2", outputs=["type=image,name=r/a:1,push=true"]), "grpc"),
        (
            BuildOptions(path=".", version="2", outputs=[ImageOutput(), LocalOutput(dest="out")]),
            "grpc",
        ),
        (BuildOptions(path=".", version="2", build_endpoint="grpc"), "grpc"),
        (
            BuildOptions(
                path=".", version="2", outputs=[OCIOutput(dest="a.tar")], build_endpoint="build"
            ),
            "build",
        ),
    ],
)
def test_auto_takes_the_control_api_only_for_what_post_build_cannot_carry(
    options: BuildOptions, endpoint: str
) -> None:
    assert choose_endpoint(options) == endpoint
    if options.build_endpoint == "auto":
        assert bool(control_reasons(options)) == (endpoint == "grpc")


def test_the_option_refuses_unknown_endpoints() -> None:
    with pytest.raises(ValueError, match="build_endpoint"):
        BuildOptions(path=".", build_endpoint="http")  # type: ignore[arg-type]


def test_exports_are_numbered_as_the_solve_request_s_exporters(tmp_path: Path) -> None:
    stream = io.BytesIO()
    options = BuildOptions(
        path=str(tmp_path),
        version="2",
        outputs=[
            "type=cacheonly",
            ImageOutput(name=("a:1",)),
            LocalOutput(dest=tmp_path / "out"),
            TarOutput(dest=stream),
            OCIOutput(dest=tmp_path / "oci.tar"),
        ],
    )
    plan = describe_control_build(
        options.model_copy(update={"session_id": "s1"}),
        engine="containerd",
        session_id="s1",
        ref="r1",
    )
    exports = check_control(options, engine="containerd")
    assert [exporter.type for exporter in plan.solve.exporters] == ["moby", "local", "tar", "oci"]
    assert [(export.index, export.type) for export in exports] == [
        (1, "local"),
        (2, "tar"),
        (3, "oci"),
    ]
    receivers = {export.index: export.receiver() for export in exports}
    assert isinstance(receivers[1], DirectoryReceiver)
    assert isinstance(receivers[2], StreamReceiver)
    assert isinstance(receivers[3], FileReceiver)
    assert plan.solve.ref == "r1"
    assert plan.solve.session == "s1"


def _both_paths(options: BuildOptions) -> tuple[dict[int, object], dict[int, object]]:
    """The receivers of `POST /build` and of the Control API for the same options."""
    control = check_control(options, engine="classic")
    return dict(client_exports(options)[1]), {e.index: e.receiver() for e in control}


@pytest.mark.parametrize(
    "output",
    [TarOutput(dest="-"), {"type": "tar", "attrs": {"dest": "-"}}],
    ids=["typed", "generic"],
)
def test_dest_dash_is_standard_output_on_both_endpoints(
    output: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Stdout:
        buffer = io.BytesIO()

    monkeypatch.setattr("sys.stdout", Stdout())
    options = BuildOptions(path=".", version="2", outputs=[output])  # type: ignore[list-item]
    build, control = _both_paths(options)
    assert build == control == {0: StreamReceiver(Stdout.buffer)}


def test_a_directory_tar_dest_is_refused_on_both_endpoints(tmp_path: Path) -> None:
    for output in (TarOutput(dest=tmp_path), {"type": "tar", "attrs": {"dest": str(tmp_path)}}):
        options = BuildOptions(path=".", version="2", outputs=[output])
        with pytest.raises(ExportError, match="is a directory, not a file"):
            client_exports(options)
        (export,) = check_control(options, engine="classic")
        with pytest.raises(ExportError, match="is a directory, not a file"):
            export.receiver()


def test_the_session_serves_the_context_and_announces_what_the_dry_run_prints() -> None:
    options = BuildOptions(path=".", version="2", outputs=[LocalOutput(dest="out")])
    served = session_options(options)
    assert served.context_transfer == "session"
    plan = describe_control_build(options, engine="classic")
    assert session_methods(served, control_api=True) == plan.session_methods
    assert FILE_SEND in plan.session_methods


def test_an_oci_layout_directory_goes_to_the_content_store_and_only_one() -> None:
    options = BuildOptions(path=".", version="2", outputs=[OCIOutput(dest="dir", tar=False)])
    # Not a FileSend export: the engine writes it into the session's `export` store.
    assert check_control(options, engine="containerd") == ()
    two = options.model_copy(update={"outputs": (*options.outputs, OCIOutput(dest="b", tar=False))})
    with pytest.raises(UnsupportedOption, match="one OCI layout directory output per build"):
        check_control(two, engine="containerd")


def test_the_classic_store_refuses_archives_with_buildx_s_words() -> None:
    options = BuildOptions(path=".", version="2", outputs=[DockerOutput(dest="a.tar")])
    with pytest.raises(UnsupportedOption, match="Docker exporter is not supported"):
        check_control(options, engine="classic")


def test_options_only_post_build_has_are_refused() -> None:
    options = BuildOptions(path=".", version="2", squash=True, build_endpoint="grpc")
    with pytest.raises(UnsupportedOption, match="squash"):
        check_control(options, engine="containerd")
