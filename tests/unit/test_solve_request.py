"""`solve_request`: the BuildOptions buildx's recordings do not show, and what it refuses."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from buildsdk._control_plan import choose_endpoint, control_reasons
from buildsdk.build import BuildOptions, BuildOutput
from buildsdk.buildkit.solve import (
    CacheOptions,
    CacheOptionsEntry,
    Exporter,
    ImageStore,
    SolveRequest,
    control_api_problems,
    solve_request,
)
from buildsdk.errors import UnsupportedOption
from buildsdk.outputs import DockerOutput, ImageOutput, OCIOutput, TarOutput

HERE = str(Path(__file__).resolve().parent)


def _solve(engine: ImageStore = "classic", **fields: Any) -> SolveRequest:
    options = BuildOptions(**{"path": HERE, "version": "2", **fields})
    return solve_request(options, ref="r", session_id="s", engine=engine)


def _refusal(engine: ImageStore = "classic", **fields: Any) -> UnsupportedOption:
    with pytest.raises(UnsupportedOption) as info:
        _solve(engine, **fields)
    return info.value


def test_the_smallest_request() -> None:
    assert _solve() == SolveRequest(
        ref="r",
        exporter_deprecated="moby",
        session="s",
        frontend="dockerfile.v0",
        frontend_attrs={"filename": "Dockerfile", "image-resolve-mode": "local"},
        cache=CacheOptions(),
        exporters=(Exporter("moby"),),
    )


def test_attributes_the_recordings_do_not_show() -> None:
    request = _solve(
        cgroup_parent="bxrec",
        network_mode="none",
        platform="linux/arm64/v8",
        cache_from=["r.example/app:cache", "app:old"],
        buildargs={"B": ""},
    )
    assert request.frontend_attrs == {
        "build-arg:B": "",
        "cache-imports": '[{"Type":"registry","Attrs":{"ref":"r.example/app:cache"}},'
        '{"Type":"registry","Attrs":{"ref":"app:old"}}]',
        "cgroup-parent": "bxrec",
        "filename": "Dockerfile",
        "force-network-mode": "none",
        "image-resolve-mode": "local",
        "platform": "linux/arm64/v8",
    }
    assert request.entitlements == ()
    assert request.cache == CacheOptions(
        imports=(
            CacheOptionsEntry("registry", {"ref": "r.example/app:cache"}),
            CacheOptionsEntry("registry", {"ref": "app:old"}),
        )
    )


def test_default_network_sends_nothing() -> None:
    assert "force-network-mode" not in _solve(network_mode="default").frontend_attrs


def test_outputs_become_exporters_with_the_tags_as_names() -> None:
    request = _solve(
        "containerd", tag=["a:1", "a:2"], outputs=[DockerOutput(dest="img.tar", name=("x:1",))]
    )
    assert request.exporters == (Exporter("docker", {"name": "x:1"}),)
    assert request.exporter_attrs_deprecated == {"name": "x:1"}
    request = _solve("containerd", tag=["a:1"], outputs=[OCIOutput(dest="l", tar=False)])
    assert request.exporters == (Exporter("oci", {"name": "a:1", "tar": "false"}),)
    request = _solve(tag="a:1", outputs=[TarOutput(dest="t.tar")])
    assert request.exporters == (Exporter("tar"),)


def test_generic_outputs_are_read_as_buildx_reads_them() -> None:
    request = _solve(outputs=[BuildOutput(type="local", attrs={"dest": "out"})])
    assert request.exporters == (Exporter("local"),)
    cache_only = _solve(outputs=[BuildOutput(type="cacheonly")])
    assert cache_only.exporters == ()
    assert cache_only.exporter_deprecated == ""


def test_classic_store_refuses_archives_with_buildx_s_words() -> None:
    error = _refusal(outputs=[DockerOutput(dest="img.tar")])
    assert str(error).split("\n") == [
        "Docker exporter is not supported for the docker driver.",
        "Switch to a different driver, or turn on the containerd image store, and try again.",
        "Learn more at https://docs.docker.com/go/build-exporters/",
    ]
    assert (error.required, error.given) == ("containerd image store", "classic image store")
    assert _solve("containerd", outputs=[DockerOutput(dest="img.tar")]).exporters == (
        Exporter("docker"),
    )


def test_push_needs_a_name() -> None:
    assert str(_refusal(outputs=[ImageOutput(push=True)])) == (
        "tag is needed when pushing to registry"
    )


@pytest.mark.parametrize(
    ("fields", "option", "message"),
    [
        ({"version": "1"}, "version", "version = '1' asks for the classic builder"),
        ({"container_limits": {"memory": "64m"}}, "container_limits", "container_limits (memory"),
        ({"squash": True}, "squash", "squash has no BuildKit frontend attribute"),
        ({"isolation": "hyperv"}, "isolation", "isolation is a Windows container setting"),
        ({"security_opt": ["seccomp=unconfined"]}, "security_opt", "security_opt has no"),
        ({"rm": False}, "rm", "rm = False keeps intermediate containers"),
        ({"forcerm": True}, "forcerm", "forcerm removes intermediate containers"),
        ({"build_id": "b1"}, "build_id", "build_id names a build for POST /build/cancel"),
        ({"path": "https://example.com/ctx.git"}, "remote", "remote (a context the engine"),
        ({"gzip": True}, "gzip", "gzip compresses an uploaded tar"),
        ({"context_transfer": "tar"}, "context_transfer", "context_transfer = 'tar'"),
        ({"buildargs": {"B": None, "A": None}}, "buildargs", "buildargs A, B without a value"),
        (
            {"extra_hosts": ["gw:host-gateway"]},
            "extra_hosts",
            "extra_hosts 'host-gateway' needs the engine's gateway address",
        ),
        ({"session_id": "other"}, "session_id", "session_id differs from the session"),
    ],
)
def test_options_only_post_build_has_are_refused(
    fields: dict[str, Any], option: str, message: str
) -> None:
    error = _refusal(**fields)
    assert error.option == option
    assert str(error).startswith(message)
    if option not in ("buildargs", "extra_hosts", "session_id", "version"):
        assert str(error).endswith("on the Control API (direct Solve) path")


def test_streams_as_context_are_refused() -> None:
    error = _refusal(path=None, fileobj=io.BytesIO(b"FROM scratch\n"))
    assert error.option == "fileobj"
    assert str(error) == (
        "fileobj (a Dockerfile from a stream) is not sent: the session serves the Dockerfile "
        "from disk on the Control API (direct Solve) path"
    )


def test_other_network_modes_get_buildx_s_words() -> None:
    error = _refusal(network_mode="bridge")
    assert str(error) == (
        'network mode "bridge" not supported by buildkit - you can define a custom network for '
        "your builder using the network driver-opt in buildx create"
    )


def test_every_problem_is_listed() -> None:
    options = BuildOptions(path=HERE, squash=True, forcerm=True)
    problems = control_api_problems(options, engine="containerd")
    assert [problem.option for problem in problems] == ["version", "squash", "forcerm"]


def test_no_cache_filter_names_the_stages_and_no_cache_wins() -> None:
    assert _solve(no_cache_filter=["base", "test"]).frontend_attrs["no-cache"] == "base,test"
    assert _solve(no_cache_filter="base").frontend_attrs["no-cache"] == "base"
    # buildx sets "" for --no-cache after the filter: every stage runs uncached.
    assert _solve(no_cache_filter=["base"], nocache=True).frontend_attrs["no-cache"] == ""


def test_allow_becomes_entitlements_before_the_network_s() -> None:
    assert _solve(allow=["security.insecure"]).entitlements == ("security.insecure",)
    request = _solve(allow=["network.host", "security.insecure"], network_mode="host")
    # As buildx: --allow as given, then network.host for --network host, even twice.
    assert request.entitlements == ("network.host", "security.insecure", "network.host")
    encoded = request.encode()
    assert encoded.count(b"\x4a\x0cnetwork.host") == 2
    assert b"\x4a\x11security.insecure" in encoded


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"allow": ["network"]}, "Input should be 'network.host' or 'security.insecure'"),
        ({"no_cache_filter": ["a,b"]}, "without commas"),
        ({"no_cache_filter": [""]}, "must be non-empty"),
        ({"no_cache_filter": 3}, "stage names (a string or a sequence of strings)"),
        ({"annotations": b"k=v"}, "annotations must be a mapping or a sequence"),
    ],
)
def test_control_api_fields_are_checked_at_construction(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as info:
        BuildOptions(path=HERE, version="2", outputs=["type=image"], **fields)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "fields",
    [
        {"annotations": ["k=v"], "outputs": ["type=image"]},
        {"no_cache_filter": ["base"]},
        {"allow": ["security.insecure"]},
    ],
)
def test_post_build_cannot_carry_the_control_api_fields(fields: dict[str, Any]) -> None:
    (name,) = [key for key in fields if key != "outputs"]
    with pytest.raises(ValidationError, match=r"POST /build .* cannot carry them"):
        BuildOptions(path=HERE, version="2", build_endpoint="build", **fields)
    options = BuildOptions(path=HERE, version="2", **fields)
    # "auto" takes the Control API for them; POST /build's query refuses them.
    assert choose_endpoint(options) == "grpc"
    assert control_reasons(options)
    with pytest.raises(UnsupportedOption) as info:
        options.to_query("1.45")
    assert info.value.option == name
    assert "cannot be sent on POST /build" in str(info.value)
