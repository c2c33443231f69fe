"""`build_endpoint="auto"`: which path a build takes given the engine's `/_ping` facts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildsdk import BuildOptions
from buildsdk._base_client import engine_facts
from buildsdk._control_plan import (
    CONTROL_API_DEFAULT_VERSION,
    EngineFacts,
    choose_endpoint,
    control_reasons,
)
from buildsdk._protocol import BuildStream, PingResult, parse_ping
from buildsdk.buildkit.solve import control_api_problems
from buildsdk.events import ImageIdEvent
from buildsdk.outputs import DockerOutput, ImageOutput, LocalOutput, OCIOutput, TarOutput
from buildsdk.session import h2_available
from buildsdk.versions import ApiVersion

DOCKER_26 = EngineFacts(api_version=ApiVersion(1, 45))
DOCKER_23 = EngineFacts(api_version=ApiVersion(1, 42))
DOCKER_20 = EngineFacts(api_version=ApiVersion(1, 41))
PODMAN = EngineFacts(api_version=ApiVersion(1, 41), podman=True)
NO_SESSION = EngineFacts(api_version=ApiVersion(1, 45), session=False)

# Each optional field with values that matter to the choice: neutral ones both paths carry,
# the ones only POST /build has, and the ones only the Control API has.
_FIELDS: dict[str, list[Any]] = {
    "tag": ["app:1"],
    "buildargs": [{"A": "1"}, {"A": None}],
    "labels": [{"k": "v"}],
    "target": ["final"],
    "platform": ["linux/amd64", "linux/amd64,linux/386"],
    "nocache": [True],
    "pull": [True],
    "cache_from": [("r/cache:1",)],
    "network_mode": ["host", "none", "bridge", "custom-net"],
    "extra_hosts": [("h:10.0.0.1",), ("h:host-gateway",)],
    "shmsize": [1 << 20],
    "squash": [True],
    "isolation": ["process"],
    "security_opt": [("seccomp=unconfined",)],
    "rm": [False],
    "forcerm": [True],
    "container_limits": [{"memory": 1 << 30}],
    "build_id": ["b1"],
    "gzip": [True],
    "context_transfer": ["tar", "session"],
    "secrets": [(f"id=s,src={__file__}",)],
    "session_id": ["a-session-the-caller-opened"],
    "build_contexts": [{"base": "docker-image://busybox:latest"}],
    "provenance": [False, "mode=max"],
    "outputs": [
        (ImageOutput(),),
        (LocalOutput(dest="out"),),
        (TarOutput(dest="out.tar"),),
        (OCIOutput(dest="out.tar"),),
        (DockerOutput(dest="out.tar"),),
        ("type=image,name=r/a:1,push=true",),
        (ImageOutput(), LocalOutput(dest="out")),
    ],
}


@st.composite
def build_options(draw: st.DrawFn) -> BuildOptions:
    fields: dict[str, Any] = {"path": "."}
    for name, values in _FIELDS.items():
        if draw(st.booleans()):
            fields[name] = draw(st.sampled_from(values))
    fields["version"] = draw(st.sampled_from(["1", "2"]))
    fields["build_endpoint"] = draw(st.sampled_from(["auto", "auto", "build", "grpc"]))
    try:
        return BuildOptions(**fields)
    except ValueError:
        # Combinations the options refuse on their own (several outputs pinned to /build).
        fields["build_endpoint"] = "auto"
        return BuildOptions(**fields)


engines = st.builds(
    EngineFacts,
    api_version=st.one_of(
        st.none(), st.builds(ApiVersion, st.just(1), st.integers(min_value=24, max_value=51))
    ),
    podman=st.booleans(),
    session=st.booleans(),
)


@settings(max_examples=400)
@given(build_options(), engines)
def test_auto_follows_the_engine_only_for_what_the_control_api_carries(
    options: BuildOptions, engine: EngineFacts
) -> None:
    chosen = choose_endpoint(options, engine)
    if options.build_endpoint != "auto":
        assert chosen == options.build_endpoint
        return
    needed = bool(control_reasons(options))
    offered = (
        engine.session
        and not engine.podman
        and engine.api_version is not None
        and engine.api_version >= CONTROL_API_DEFAULT_VERSION
    )
    carried = not control_api_problems(options, engine="containerd") and not options.session_id
    assert chosen == (
        "grpc" if needed or (offered and options.version == "2" and carried) else "build"
    )
    # What the engine offers never takes a build away from the Control API, and without
    # facts the choice is the one made before the engine answers.
    assert choose_endpoint(options) == ("grpc" if needed else "build")
    if chosen == "grpc" and not needed:
        # Chosen by default, not by need: neither store's Control API refuses it, so the
        # default never turns a build that worked on POST /build into a refusal.
        assert control_api_problems(options, engine="classic") == []
        assert control_api_problems(options, engine="containerd") == []


@pytest.mark.parametrize(
    ("options", "docker26", "docker20", "podman"),
    [
        (BuildOptions(path=".", version="2", tag="a:1"), "grpc", "build", "build"),
        (BuildOptions(path=".", tag="a:1"), "build", "build", "build"),
        (BuildOptions(path=".", version="2", build_endpoint="build"), "build", "build", "build"),
        (BuildOptions(path=".", version="2", squash=True), "build", "build", "build"),
        (BuildOptions(path=".", version="2", context_transfer="tar"), "build", "build", "build"),
        (BuildOptions(path=".", version="2", buildargs={"A": None}), "build", "build", "build"),
        (BuildOptions(path=".", version="2", session_id="mine"), "build", "build", "build"),
        (
            BuildOptions(path=".", version="2", outputs=[LocalOutput(dest="o")]),
            "grpc",
            "build",
            "build",
        ),
        (
            BuildOptions(path=".", version="2", outputs=[OCIOutput(dest="a.tar")]),
            "grpc",
            "grpc",
            "grpc",
        ),
    ],
)
def test_auto_on_the_engines_of_the_matrix(
    options: BuildOptions, docker26: str, docker20: str, podman: str
) -> None:
    assert choose_endpoint(options, DOCKER_26) == docker26
    assert choose_endpoint(options, DOCKER_23) == docker26
    assert choose_endpoint(options, DOCKER_20) == docker20
    assert choose_endpoint(options, PODMAN) == podman
    assert choose_endpoint(options, NO_SESSION) == docker20


def test_the_facts_come_from_the_ping_headers() -> None:
    docker = parse_ping({"API-Version": "1.45", "Builder-Version": "2", "OSType": "linux"})
    podman = parse_ping(
        {"Api-Version": "1.41", "Builder-Version": "", "Libpod-Api-Version": "4.3.1"}
    )
    assert engine_facts(docker) == EngineFacts(ApiVersion(1, 45), False, h2_available())
    assert engine_facts(podman) == EngineFacts(ApiVersion(1, 41), True, h2_available())
    assert engine_facts(PingResult(api_version=None)).api_version is None
    assert engine_facts(PingResult(api_version="garbage")).api_version is None
    # A client pinned below 1.42 behaves as the older client it names.
    assert engine_facts(docker, ApiVersion(1, 41)).api_version == ApiVersion(1, 41)
    assert engine_facts(docker, ApiVersion(1, 51)).api_version == ApiVersion(1, 45)
    pinned_old = engine_facts(docker, ApiVersion(1, 30))
    assert choose_endpoint(BuildOptions(path=".", version="2"), pinned_old) == "build"
    # A Podman that some day reports a newer Docker API version still keeps POST /build.
    newer = engine_facts(parse_ping({"Api-Version": "1.45", "Libpod-Api-Version": "6.0.0"}))
    assert choose_endpoint(BuildOptions(path=".", version="2"), newer) == "build"


# -- what users read does not depend on the endpoint -----------------------------------------

CONFIG = "sha256:" + "c" * 64
MANIFEST = "sha256:" + "d" * 64


@pytest.mark.parametrize(
    ("response", "image_id"),
    [
        # The classic store's moby exporter: the config digest is Docker's image id.
        ({"containerimage.config.digest": CONFIG, "containerimage.digest": CONFIG}, CONFIG),
        # The containerd store with an attestation: an index, no config digest.
        ({"containerimage.digest": MANIFEST}, MANIFEST),
        ({"containerimage.config.digest": CONFIG, "containerimage.digest": MANIFEST}, CONFIG),
    ],
)
def test_a_control_api_build_ends_with_the_image_id_event_post_build_sends(
    response: dict[str, str], image_id: str
) -> None:
    options = BuildOptions(path=".", version="2", tag="app:1")
    stream = BuildStream.for_options(options, control_api=True)
    events = stream.end_solve(response, ref="r")
    assert events == [ImageIdEvent(image_id=image_id)]
    result = stream.result()
    assert result.image_id == image_id
    assert result.events_count == 1


def test_an_export_without_an_image_sends_no_image_id_event() -> None:
    options = BuildOptions(path=".", version="2", outputs=[LocalOutput(dest="out")])
    stream = BuildStream.for_options(options, control_api=True)
    assert stream.end_solve({}, ref="r") == []
    assert stream.result().image_id == ""
