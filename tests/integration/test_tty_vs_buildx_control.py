"""`buildsdk build --endpoint grpc --progress tty` against `docker buildx build --progress tty`
(CLI 26.1.5 with buildx 0.13.1) on Docker 26.1 with the containerd image store: both run in a
pseudo-terminal of the same size, their output is replayed on a VT100 screen (pyte), and the
final screens must be equal line for line once what cannot be equal is masked.

What differs, and why it is masked rather than fixed:

- the times (`[+] Building 1.3s`, every step's `0.2s`, the seconds before each log line of
  the failure summary): two builds never take the same time;
- the digests of the exported manifests, configs and attestations (`exporting manifest
  sha256:…`, `naming to moby-dangling@sha256:…`): the provenance attestation records when
  the build ran, so every build exports different bytes;
- buildx's builder name at the right end of the header (`docker:default`): buildsdk talks to
  the engine itself and has no buildx builder instance to name (the plain view leaves out
  buildx's `#0 building with "default" instance` line for the same reason);
- the bytes of a context transfer (`transferring context: 30B`): the engine keeps what an
  earlier session with the same shared key sent, and buildx's key is not buildsdk's;
- the order of steps the engine ran at the same time (`[internal] load build context` and
  `FROM`), which is the order they happened to start in; the Dockerfile's own steps must
  be in the same order.

Everything else is the same: the blank top line of buildx's first frame, `FINISHED`, the
order of the steps, the `=> =>` status lines with their timers, names cut without an
ellipsis one column short of the width, no log lines left under a finished failed step,
and the failure summary with the Dockerfile excerpt. Colours are not compared (a screen
holds characters); buildsdk uses buildx's (blue, red, yellow, none under NO_COLOR).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyte
import pytest

from tests.integration.conftest import Engines, engines_unavailable
from tests.integration.test_cli import run_in_pty

__all__: list[str] = []

pytestmark = [pytest.mark.engine, pytest.mark.docker26_containerd]

COLS, ROWS = 100, 40
_TIME = re.compile(r"\b\d+\.\ds\b")
_LOG_TIME = re.compile(r"^\d+\.\d+ ")
_DIGEST = re.compile(r"sha256:[0-9a-f]+")
_BUILDER = re.compile(r" +docker:default$")
_SENT = re.compile(r"(transferring \w+: )\d+(\.\d+)?[kMG]?B")


def _screen(output: str) -> list[str]:
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.Stream(screen)
    stream.feed(output)
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _masked(lines: list[str]) -> list[str]:
    masked = []
    for line in lines:
        line = _BUILDER.sub("", line) if line.startswith("[+] ") else line
        line = _DIGEST.sub("sha256:…", _LOG_TIME.sub("T ", _TIME.sub("Ts", line)))
        line = _SENT.sub(r"\1NB", line)
        # A timer of more digits (10.0s) takes a column of the gap before it.
        masked.append(re.sub(r" {2,}Ts$", "  Ts", line))
    return masked


def _layout(lines: list[str]) -> tuple[list[str], list[list[str]], list[str]]:
    """The screen as its header, its steps (each with its `=> =>` lines) in the order they
    are shown, and what follows them (a failure's summary)."""
    steps: list[list[str]] = []
    end = 2
    while end < len(lines) and lines[end].startswith(" => "):
        if lines[end].startswith(" => => ") and steps:
            steps[-1].append(lines[end])
        else:
            steps.append([lines[end]])
        end += 1
    return lines[:2], steps, lines[end:]


def _same_screen(ours: list[str], buildx: list[str]) -> None:
    """Equal but for what is masked and for the order of steps the engine ran at once."""
    our_head, our_steps, our_rest = _layout(_masked(ours))
    their_head, their_steps, their_rest = _layout(_masked(buildx))
    assert our_head == their_head
    assert sorted(our_steps) == sorted(their_steps)
    assert our_rest == their_rest
    # The Dockerfile's own steps run one after another: their order is fixed.
    numbered = [step[0] for step in our_steps if re.search(r"\[\d+/\d+\]", step[0])]
    assert numbered == [step[0] for step in their_steps if step[0] in numbered]
    assert numbered == sorted(numbered, key=lambda line: re.findall(r"\[(\d+)/", line))


def _both(engines: Engines, context: Path) -> tuple[list[str], list[str]]:
    host = engines.dockerd26_containerd_host
    cli, config = engines.docker26_cli, engines.docker26_config
    if host is None or cli is None or config is None or not cli.is_file():
        engines_unavailable(
            "needs dockerd26-containerd and docker26-cli (scripts/engines up docker26-cli "
            "dockerd26-containerd)"
        )
    flags = ["--progress", "tty", "--no-cache", "--network", "host", str(context)]
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(context), "TERM": "xterm"}
    # The first build on a fresh engine unpacks the base image (`FROM` not CACHED), later
    # ones do not: one build beforehand gives both the same engine to build on.
    subprocess.run(
        [str(cli), "buildx", "build", "-q", *flags[2:]],
        env={**base, "DOCKER_HOST": host, "DOCKER_CONFIG": str(config)},
        capture_output=True,
        timeout=300,
        check=False,
    )
    buildx_status, buildx = run_in_pty(
        [str(cli), "buildx", "build", *flags],
        {**base, "DOCKER_HOST": host, "DOCKER_CONFIG": str(config)},
        context,
        cols=COLS,
        rows=ROWS,
    )
    ours_status, ours = run_in_pty(
        [sys.executable, "-m", "buildsdk", "build", "-H", host, "--endpoint", "grpc", *flags],
        {**base, "DOCKER_CONFIG": str(context / "config")},
        context,
        cols=COLS,
        rows=ROWS,
    )
    assert buildx_status == ours_status, (buildx, ours)
    return _screen(buildx), _screen(ours)


def test_a_build_leaves_buildx_s_screen(engines: Engines, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {engines.base_image}\nCOPY a /a\nRUN echo hello && echo warn >&2\n"
    )
    (tmp_path / "a").write_text("a\n")
    buildx, ours = _both(engines, tmp_path)
    assert buildx[0] == ""
    assert re.fullmatch(r"\[\+\] Building \d+\.\ds \(\d+/\d+\) FINISHED +docker:default", buildx[1])
    assert " => [2/3] COPY a /a" in "\n".join(ours)
    assert all(len(line) <= COLS - 1 for line in ours)
    _same_screen(ours, buildx)


def test_a_failed_build_leaves_buildx_s_screen(engines: Engines, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {engines.base_image}\nRUN echo one\nRUN echo bad >&2 && exit 3\n"
    )
    buildx, ours = _both(engines, tmp_path)
    assert any(line.startswith(" => ERROR [3/3] RUN echo bad") for line in ours)
    assert "   3 | >>> RUN echo bad >&2 && exit 3" in ours
    _same_screen(ours, buildx)
