"""What a buildkitd build sends, checked on the `SolveRequest` before any connection."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from buildsdk import BuildOptions, UnsupportedOption
from buildsdk._build_plan import describe_control_build
from buildsdk.buildkit.solve import SolveRequest
from buildsdk.buildkitd import NO_OUTPUT_WARNING, BuildkitClient, buildkitd_options
from buildsdk.outputs import ImageOutput


def _request(options: BuildOptions) -> SolveRequest:
    plan = describe_control_build(
        buildkitd_options(options), engine="containerd", ref="r", image_exporter="image"
    )
    return SolveRequest.decode(plan.solve.encode())


def test_an_image_output_is_buildkits_image_exporter(tmp_path: Path) -> None:
    options = BuildOptions(path=tmp_path, tag="app:1", outputs=[ImageOutput(push=True)])
    request = _request(options)
    assert [(e.type, dict(e.attrs)) for e in request.exporters] == [
        ("image", {"name": "app:1", "push": "true"})
    ]
    assert request.exporter_deprecated == "image"


def test_dockerd_keeps_its_moby_exporter(tmp_path: Path) -> None:
    options = BuildOptions(path=tmp_path, version="2", outputs=[ImageOutput(name=("app:1",))])
    plan = describe_control_build(options, engine="containerd", ref="r")
    assert [e.type for e in plan.solve.exporters] == ["moby"]


def test_no_output_sends_no_exporter_and_warns_with_buildxs_words(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="remote driver") as caught:
        request = _request(BuildOptions(path=tmp_path, tag="app:1"))
    assert [str(w.message) for w in caught] == [NO_OUTPUT_WARNING]
    assert NO_OUTPUT_WARNING.startswith(
        "No output specified with remote driver. Build result will only remain in the build cache."
    )
    assert request.exporters == ()
    assert request.exporter_deprecated == ""


@pytest.mark.parametrize(
    ("field", "value"),
    [("squash", True), ("version", "1"), ("forcerm", True), ("isolation", "process")],
)
def test_options_only_dockerd_has_are_refused_by_name_before_connecting(
    tmp_path: Path, field: str, value: object
) -> None:
    # Nothing listens on port 1: the refusal must come before any connection.
    client = BuildkitClient("tcp://127.0.0.1:1")
    options = BuildOptions.model_validate(
        {"path": tmp_path, "outputs": ["type=local,dest=out"], field: value}
    )
    with pytest.raises(UnsupportedOption) as caught:
        client.build(options)
    assert caught.value.option == field


def test_explicit_outputs_do_not_warn(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        request = _request(BuildOptions(path=tmp_path, outputs=["type=tar,dest=out.tar"]))
    assert [e.type for e in request.exporters] == ["tar"]
