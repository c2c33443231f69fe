"""What `docker buildx build --progress plain` (buildx 0.13.1, a Control API build) prints
that `buildsdk build --progress plain` does not, on the same Docker 26.1 engine (containerd
image store), recorded as tests so that a change on either side shows.

The steps and their lines come from the same `StatusResponse` messages on both endpoints
(tests/unit/test_progress_vs_buildx.py compares them line by line on recorded timings);
what differs is what buildx adds and what only the Control API carries:

- buildx's own first line, `#0 building with "default" instance using docker driver`;
- the export of the default provenance attestation (`exporting attestation manifest`,
  `exporting manifest list`), which buildx asks for on the Control API and `POST /build`
  does not: a Control API build with buildsdk asks for it too (`attest:provenance`);
- above `ERROR: failed to solve`, the excerpt of the Dockerfile around the failed step,
  which the Control API's error details carry and `POST /build`'s stream does not: with
  `--endpoint grpc` buildsdk prints it too, and a failure ends exactly as buildx's does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Engines, engines_unavailable

__all__: list[str] = []

pytestmark = [pytest.mark.engine, pytest.mark.docker26_containerd]

_STEP = re.compile(r"^#\d+ (\[.*|exporting to image)$")
_LOG_TIME = re.compile(r"^(#\d+ )?\d+\.\d+ ")


def _both(engines: Engines, context: Path, endpoint: str = "build") -> tuple[list[str], list[str]]:
    host = engines.dockerd26_containerd_host
    cli, config = engines.docker26_cli, engines.docker26_config
    if host is None or cli is None or config is None or not cli.is_file():
        engines_unavailable(
            "needs dockerd26-containerd and docker26-cli (scripts/engines up docker26-cli "
            "dockerd26-containerd)"
        )
    flags = ["--progress", "plain", "--no-cache", "--network", "host", str(context)]
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(context), "NO_COLOR": "1"}
    buildx = subprocess.run(
        [str(cli), "buildx", "build", *flags],
        env={**base, "DOCKER_HOST": host, "DOCKER_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    ours = subprocess.run(
        [sys.executable, "-m", "buildsdk", "build", "-H", host, "--endpoint", endpoint, *flags],
        env={**base, "DOCKER_CONFIG": str(context / "config")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert buildx.returncode == ours.returncode, (buildx.stderr, ours.stderr)
    return buildx.stderr.splitlines(), ours.stderr.splitlines()


def _steps(lines: list[str]) -> set[str]:
    return {line.split(" ", 1)[1] for line in lines if _STEP.match(line)}


def test_a_build_prints_the_same_steps_and_buildx_adds_its_line_and_attestation(
    engines: Engines, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {engines.base_image}\nCOPY a /a\nRUN echo hello && echo warn >&2\n"
    )
    (tmp_path / "a").write_text("a\n")
    buildx, ours = _both(engines, tmp_path)
    assert buildx[0] == '#0 building with "default" instance using docker driver'
    assert not any(line.startswith("#0 ") for line in ours)
    assert _steps(buildx) == _steps(ours)
    attestation = ("exporting attestation manifest", "exporting manifest list")
    assert all(any(word in line for line in buildx) for word in attestation)
    assert not any(word in line for line in ours for word in attestation)


def _ending(lines: list[str]) -> list[str]:
    """From the failure summary's first rule on, output lines without their timings."""
    start = lines.index("------")
    return [_LOG_TIME.sub(r"\1", line) for line in lines[start:]]


def test_a_failure_ends_alike_but_for_buildx_s_dockerfile_excerpt(
    engines: Engines, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {engines.base_image}\nRUN echo one\nRUN echo bad >&2 && exit 3\n"
    )
    buildx, ours = _both(engines, tmp_path)
    ending = _ending

    theirs = ending(buildx)
    excerpt_start = theirs.index("Dockerfile:3")
    excerpt_end = theirs.index("--------------------", excerpt_start + 2) + 1
    excerpt = theirs[excerpt_start:excerpt_end]
    assert excerpt[2:5] == [
        f"   1 |     FROM {engines.base_image}",
        "   2 |     RUN echo one",
        "   3 | >>> RUN echo bad >&2 && exit 3",
    ]
    assert theirs[:excerpt_start] + theirs[excerpt_end:] == ending(ours)
    assert ending(ours)[-1].startswith("ERROR: failed to solve: process ")


def test_a_control_api_failure_ends_exactly_as_buildx_s_with_the_excerpt(
    engines: Engines, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {engines.base_image}\nRUN echo one\nRUN echo bad >&2 && exit 3\n"
    )
    buildx, ours = _both(engines, tmp_path, endpoint="grpc")
    theirs = _ending(buildx)
    assert "Dockerfile:3" in theirs
    assert _ending(ours) == theirs
    excerpt = _ending(ours)[_ending(ours).index("Dockerfile:3") :]
    assert excerpt[4] == "   3 | >>> RUN echo bad >&2 && exit 3"
    assert excerpt[-1].startswith("ERROR: failed to solve: process ")
