"""`describe_control_build` and buildx's `--metadata-file` object, without an engine.

The "solve" part of a plan is compared with the recorded `docker buildx build` requests
(buildx_solve.json) for a few cases, and the session's announced methods with the
`X-Docker-Expose-Session-Grpc-Method` headers buildx sent, modulo the documented
differences: buildsdk names the `dockerfile.v0` frontend (buildx: "" plus LLBBridge),
announces no `FileSync/TarStream` (the engine never called it in the recordings) and answers
`Health/Check` without announcing it (the engine asks anyway).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsdk._build_plan import describe_control_build
from buildsdk.build import BuildOptions
from buildsdk.buildkit.metadata import metadata_from_exporter, metadata_from_image_id
from buildsdk.buildkit.solve import ImageStore
from buildsdk.errors import UnsupportedOption
from buildsdk.session._runtime import session_methods
from tests import VECTORS_DIR

HERE = str(Path(__file__).resolve().parent)
CASES = {
    case["name"]: case
    for case in json.loads((VECTORS_DIR / "buildx_solve.json").read_text(encoding="utf-8"))["cases"]
}
NOT_ANNOUNCED = {
    "/moby.filesync.v1.FileSync/TarStream",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
}

FIELDS: dict[str, dict[str, Any]] = {
    "plain": {"network_mode": "host"},
    "output_local": {"outputs": ["type=local,dest={OUT}/local"]},
    "output_tar": {"outputs": ["type=tar,dest={OUT}/out.tar"]},
    "output_oci": {"outputs": ["type=oci,dest={OUT}/oci.tar"], "tag": "ociname:1"},
    "pull": {"pull": True},
}


def _recorded(case: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    solve = next(
        call["requests"][0]
        for call in case["calls"]
        if call["path"].endswith("Control/Solve") and not call["requests"][0].get("Internal")
    )
    sessions = [
        {value for key, value in entry["headers"] if key == "X-Docker-Expose-Session-Grpc-Method"}
        for entry in case["http"]
        if entry["target"] == "/session"
    ]
    return solve, sessions[-1]


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_plan_equals_buildx_s_solve_and_session(name: str) -> None:
    case = CASES[name]
    store: ImageStore = "classic" if "no containerd image store" in case["engine"] else "containerd"
    options = BuildOptions(path=HERE, version="2", **FIELDS[name])
    plan = describe_control_build(
        options, engine=store, ref="<REF_3>", session_id="<SESSION_3>"
    ).to_json()
    solve, methods = _recorded(case)
    assert plan["endpoint"] == "grpc"
    assert plan["solve"].pop("Frontend") == "dockerfile.v0"
    assert plan["solve"] == solve
    assert set(plan["session"]["methods"]) == methods - NOT_ANNOUNCED


def test_random_ids_are_the_ones_sent_and_fresh_per_plan() -> None:
    options = BuildOptions(path=HERE, version="2")
    first = describe_control_build(options, engine="classic")
    second = describe_control_build(options, engine="classic")
    assert first.solve.ref == first.ref
    assert first.solve.session == first.session_id
    assert len(first.ref) == len(first.session_id) == 25
    assert {first.ref, first.session_id}.isdisjoint({second.ref, second.session_id})
    # The shared key is stable per directory, so a rebuild syncs only what changed.
    assert first.shared_key == second.shared_key != ""


def test_methods_follow_the_outputs_and_the_context() -> None:
    plain = BuildOptions(path=HERE, version="2")
    plan = describe_control_build(plain, engine="containerd")
    assert "/moby.filesync.v1.FileSync/DiffCopy" in plan.session_methods
    assert "/moby.filesync.v1.FileSend/DiffCopy" not in plan.session_methods
    # On POST /build an oci export is not written by the client; on the Control API it is.
    oci = BuildOptions(path=HERE, version="2", outputs=["type=oci,dest=o.tar"])
    assert "/moby.filesync.v1.FileSend/DiffCopy" in session_methods(oci, control_api=True)
    assert "/moby.filesync.v1.FileSend/DiffCopy" not in session_methods(oci)


def test_refusals_come_before_any_id_is_used() -> None:
    with pytest.raises(UnsupportedOption, match="OCI exporter is not supported"):
        describe_control_build(
            BuildOptions(path=HERE, version="2", outputs=["type=oci,dest=o.tar"]),
            engine="classic",
        )
    with pytest.raises(UnsupportedOption, match="one OCI layout directory"):
        describe_control_build(
            BuildOptions(
                path=HERE,
                version="2",
                outputs=["type=oci,dest=o,tar=false", "type=oci,dest=p,tar=false"],
            ),
            engine="containerd",
        )


def test_metadata_decodes_the_descriptor_and_names_the_build() -> None:
    descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json", "size": 856}
    response = {
        "containerimage.digest": "sha256:ab",
        "containerimage.descriptor": base64.b64encode(json.dumps(descriptor).encode()).decode(),
        "image.name": "docker.io/library/a:1",
    }
    assert metadata_from_exporter(response, ref="r1") == {
        "buildx.build.ref": "default/default/r1",
        "containerimage.descriptor": descriptor,
        "containerimage.digest": "sha256:ab",
        "image.name": "docker.io/library/a:1",
    }


@given(st.dictionaries(st.text(), st.text()), st.text())
def test_metadata_keeps_every_key_and_never_raises(response: dict[str, str], ref: str) -> None:
    metadata = metadata_from_exporter(response, ref=ref)
    assert set(metadata) == set(response) | {"buildx.build.ref"}
    for key, value in response.items():
        if key != "containerimage.descriptor" and key != "buildx.build.ref":
            assert metadata[key] == value


def test_metadata_of_a_post_build_build() -> None:
    assert metadata_from_image_id("sha256:c0", ["app:1", "r.example/x/y"]) == {
        "containerimage.config.digest": "sha256:c0",
        "image.name": "docker.io/library/app:1,r.example/x/y:latest",
    }
    assert metadata_from_image_id("sha256:c0") == {"containerimage.config.digest": "sha256:c0"}
    assert metadata_from_image_id("sha256:c0", containerd_store=True) == {
        "containerimage.digest": "sha256:c0"
    }
