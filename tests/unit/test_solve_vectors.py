"""`solve_request` against the 32 recorded `docker buildx build` cases (buildx_solve.json).

For every recorded case with a real `Control/Solve` (buildx's two `Internal: true` probe
builds are left aside: the direct path makes none), the same flags are written as
`BuildOptions` and `solve_request(...).to_json()` must equal the recorded request, field by
field, except where the direct path differs on purpose:

- `Frontend`: buildx sends "" and runs the Dockerfile frontend through its LLBBridge
  round trip (`LLBBridge/Solve` + `Return`); the direct path names `dockerfile.v0` here and
  makes no LLBBridge call (reference §2 "Simpler path"). The frontend attributes are the
  same map in both (buildx's gateway `FrontendOpt` equals its `FrontendAttrs`).
- `Ref`, `Session`: recorded as the placeholders `<REF_3>` and `<SESSION_3>` (random ids);
  the test passes those strings as `ref` and `session_id`, so they compare equal.
- Map order: buildx sends maps in Go's random order (the recordings show it); JSON objects
  compare as maps, and buildsdk sends them sorted.
- `{BASE}`/`{OUT}` placeholders appear in `dest` (never sent: §5) and in the cache
  attributes `dest`/`src`, which the test passes as given; a digest the client reads from a
  local cache's index.json is the placeholder `<DIGEST_3>`, replaced by a real digest.

Every other field (`ExporterDeprecated`, `ExporterAttrsDeprecated`, `FrontendAttrs`, `Cache`,
`Entitlements`, `Exporters`) must be equal as recorded. The cases without a Solve are either
refusals `solve_request` must make with buildx's words, refusals of the session layer that
must name what buildx names, message cases covered by test_solve_messages.py, or listed in
NOT_YET with the reason; a test checks that the lists cover all 32 cases.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from buildsdk.build import BuildOptions
from buildsdk.buildkit.solve import ImageStore, SolveRequest, solve_request
from buildsdk.errors import SSHAgentUnavailable, UnsupportedOption
from buildsdk.outputs import parse_outputs
from tests import VECTORS_DIR

HERE = str(Path(__file__).resolve().parent)
VECTORS = json.loads((VECTORS_DIR / "buildx_solve.json").read_text(encoding="utf-8"))
CASES = {case["name"]: case for case in VECTORS["cases"]}
NET = {"network_mode": "host"}
# Recorded placeholders that stand for digests the client reads and sends; the test gives
# each a real digest and puts it in the recorded request in the placeholder's place.
DIGESTS = {"<DIGEST_3>": "sha256:" + "3d" * 32}

# case -> the BuildOptions fields that say what its buildx flags say (context: `path`).
# --iidfile, --metadata-file and --progress are the client's business and add nothing.
COVERED: dict[str, dict[str, Any]] = {
    "plain": NET,
    "tags_args_target_file": {
        **NET,
        "tag": ["app:1", "app:latest"],
        "buildargs": {"A": "1"},
        "labels": {"k": "v"},
        "target": "stage",
        "dockerfile": "sub/Dockerfile.alt",
    },
    "output_local": {"outputs": ["type=local,dest={OUT}/local"]},
    "output_tar": {"outputs": ["type=tar,dest={OUT}/out.tar"]},
    "output_oci": {"outputs": ["type=oci,dest={OUT}/oci.tar"], "tag": "ociname:1"},
    "output_image_attrs": {
        "outputs": ["type=image,name=imgattr:1,compression=zstd,oci-mediatypes=true"]
    },
    "push": {"outputs": list(parse_outputs([], push=True)), "tag": "127.0.0.1:5700/app:1"},
    "pull": {"pull": True},
    # The secret and the ssh key are served by the session and add no attribute.
    "secret_ssh": {**NET, "nocache": True, "secrets": ["id=s,env=S"], "ssh": "default"},
    "misc_flags": {
        **NET,
        "nocache": True,
        "extra_hosts": ["h:1.2.3.4"],
        "shmsize": "128m",
        "ulimits": ["nofile=1024:2048"],
    },
    "fail_run": NET,
    "cancel": NET,
    "health_long": {**NET, "nocache": True},
    "warning": NET,
    "classic_plain": {"tag": "bxrec-classic:1"},
    "classic_output_local": {"outputs": ["type=local,dest={OUT}/local"]},
    "multi_platform": {"platform": "linux/amd64,linux/386", "tag": "multi:1"},
    # The Solve fails later, in the engine (the SBOM scanner image is not reachable offline).
    "attest_sbom_prov": {"sbom": True, "provenance": "mode=max"},
    "no_attest": {"provenance": False},
    # The local directory is served by the session; only its dir-name is in the request.
    "build_context_dir": {
        "build_contexts": {"other": "{BASE}/ctx-other", "base": "docker-image://busybox:latest"}
    },
    # First run: src has no index.json yet, so the client drops the import (no digest).
    "cache_local_1": {
        **NET,
        "cache_to": ["type=local,dest={BASE}/cache-local,mode=max"],
        "cache_from": ["type=local,src={BASE}/cache-local"],
    },
    # Second run: the client read the digest from src's index.json (<DIGEST_3>, below).
    "cache_local_2": {
        **NET,
        "cache_to": ["type=local,dest={BASE}/cache-local2"],
        "cache_from": [f"type=local,src={{BASE}}/cache-local,digest={DIGESTS['<DIGEST_3>']}"],
    },
    "cache_inline": {**NET, "cache_to": ["type=inline"], "tag": "inl:1"},
}

# Recorded refusals: no real Solve; buildx printed these lines (after "ERROR: ").
REFUSED: dict[str, dict[str, Any]] = {
    "classic_output_oci": {"outputs": ["type=oci,dest={OUT}/oci.tar"]},
    "classic_provenance": {"provenance": "mode=max"},
    "classic_cache_local": {"cache_to": ["type=local,dest={OUT}/cache"]},
}
# The option a refusal names, where it is not `outputs`.
REFUSED_OPTION: dict[str, str] = {
    "classic_provenance": "provenance",
    "classic_cache_local": "cache_to",
}

# Cases without a Solve whose messages test_solve_messages.py decodes and checks.
MESSAGE_CASES = {"inspect", "du", "prune", "prune_one"}

NOT_YET: dict[str, str] = {
    "print_outline": "--print asks a frontend subrequest through LLBBridge, which the direct "
    "path does not make",
}

# Refusals of the session layer: no Solve, and buildx's error names what is missing (after
# "ERROR: "); buildsdk names it too, in its own words. tests/integration/test_session_build.py
# (test_what_the_session_cannot_serve_has_a_named_error) checks the same on every engine.
SESSION_REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "ssh_no_agent": ({"ssh": "default"}, "SSH_AUTH_SOCK"),
}


def _store(case: dict[str, Any]) -> ImageStore:
    return "classic" if "no containerd image store" in case["engine"] else "containerd"


def _recorded_solve(case: dict[str, Any]) -> dict[str, Any]:
    solves = [
        call["requests"][0]
        for call in case["calls"]
        if call["path"].endswith("Control/Solve") and not call["requests"][0].get("Internal")
    ]
    assert len(solves) == 1, case["name"]
    text = json.dumps(solves[0])
    for placeholder, digest in DIGESTS.items():
        text = text.replace(placeholder, digest)
    request: dict[str, Any] = json.loads(text)
    return request


def _request(name: str, fields: dict[str, Any]) -> SolveRequest:
    options = BuildOptions(path=HERE, version="2", **fields)
    return solve_request(
        options, ref="<REF_3>", session_id="<SESSION_3>", engine=_store(CASES[name])
    )


def test_every_case_is_covered_refused_checked_elsewhere_or_listed() -> None:
    groups = [set(COVERED), set(REFUSED), MESSAGE_CASES, set(SESSION_REFUSED), set(NOT_YET)]
    assert sum(len(group) for group in groups) == len(set().union(*groups))
    assert set().union(*groups) == set(CASES)
    assert len(CASES) == 32


@pytest.mark.parametrize("name", sorted(COVERED))
def test_solve_request_equals_buildx_s(name: str) -> None:
    ours = _request(name, COVERED[name]).to_json()
    recorded = _recorded_solve(CASES[name])
    # The one difference of the direct path: it names the frontend (buildx: "" + LLBBridge).
    assert "Frontend" not in recorded
    assert ours.pop("Frontend") == "dockerfile.v0"
    assert ours == recorded


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refusals_use_buildx_s_words(name: str) -> None:
    case = CASES[name]
    assert not [
        c
        for c in case["calls"]
        if c["path"].endswith("Control/Solve") and not c["requests"][0].get("Internal")
    ]
    with pytest.raises(UnsupportedOption) as info:
        _request(name, REFUSED[name])
    printed = list(case["stderr_tail"])
    printed[0] = printed[0].removeprefix("ERROR: ")
    assert str(info.value).split("\n") == printed
    assert info.value.option == REFUSED_OPTION.get(name, "outputs")


@pytest.mark.parametrize("name", sorted(SESSION_REFUSED))
def test_session_refusals_name_what_buildx_names(name: str) -> None:
    case = CASES[name]
    fields, missing = SESSION_REFUSED[name]
    assert case["exit_code"] == 1
    assert not [c for c in case["calls"] if c["path"].endswith("Control/Solve")]
    assert missing in case["stderr_tail"][-1]
    [forward] = BuildOptions(path=HERE, version="2", **fields).ssh
    with pytest.raises(SSHAgentUnavailable) as info:
        forward.resolve(env={})
    assert missing in str(info.value)
