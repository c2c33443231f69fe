"""Context phase of a rebuild with one file changed: session transfer versus tar upload.

Why: with a tar body every build re-sends the whole context; with a BuildKit session
(`context_transfer="session"`) the engine keeps the previous transfer under the session's
shared key and asks only for files whose metadata changed. The tree is the
repository-shaped one of `trees.py` (about 26,000 files, 335 MB, with its `.dockerignore`).
Each round changes one source file, then measures how long the engine takes until it has
the context:

- `docker build` (legacy builder, `DOCKER_BUILDKIT=0`): from process start to the first
  `Step 1/` line, printed once the daemon has received and unpacked the tar;
- buildsdk, tar upload to BuildKit: from `build()` to the end of the engine's
  `copy /context /` step (upload plus unpacking);
- buildsdk, session transfer: from `build()` to the end of `[internal] load build context`
  (STATs of every entry, DATA of the one changed file).

The Dockerfile bind-mounts the whole context into a trivial `RUN` step, so BuildKit needs
all of it but makes no layer of it; BuildKit builds then run to their end (not timed), so
the next round finds the engine idle. `docker build` is stopped at its first step (the
classic builder cannot run the mount). Usage (engines from `scripts/engines up`):

    .venv/bin/python benchmarks/bench_session_context.py [--rounds 3] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trees import make_repository, tree_info

from buildsdk.build import BuildOptions
from buildsdk.client import Client
from buildsdk.events import VertexEvent

__all__ = ["main"]

DOCKERFILE = "FROM busybox:latest\nRUN --mount=type=bind,target=/ctx true\n"
CHANGED = "src/app/pkg000/module_00000.py"


def _engine_host() -> str:
    host = os.environ.get("BUILDSDK_DOCKERD_HOST")
    if not host:
        output = subprocess.run(
            [str(Path(__file__).resolve().parent.parent / "scripts" / "engines"), "env"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in output.splitlines():
            if line.startswith("export BUILDSDK_DOCKERD_HOST="):
                host = line.split("=", 1)[1].strip("'\"")
    if not host:
        sys.exit("no dockerd: start it with scripts/engines up")
    return host


def _until_vertex(client: Client, options: BuildOptions, names: tuple[str, ...]) -> float:
    """Seconds from starting the build to the completion of the first vertex in `names`;
    the build is then followed to its end (untimed) and must succeed."""
    started = time.monotonic()
    reached: float | None = None
    with client.build(options) as build:
        for event in build:
            if (
                reached is None
                and isinstance(event, VertexEvent)
                and event.completed is not None
                and event.name in names
            ):
                reached = time.monotonic() - started
        build.result()
    if reached is None:
        raise SystemExit(f"the build ended without finishing {names}")
    return reached


def _docker_cli(host: str, root: Path) -> float:
    """Seconds from `docker build` (legacy) starting to its first `Step 1/` line.

    The process is stopped there, which cancels the build on the engine.
    """
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"}
    started = time.monotonic()
    process = subprocess.Popen(
        ["docker", "build", "--rm", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if line.startswith("Step 1/"):
                return time.monotonic() - started
    finally:
        process.terminate()
        process.wait()
    raise SystemExit(f"docker build ended (exit {process.returncode}) before its first step")


def _touch(root: Path, round_number: int) -> None:
    with open(root / CHANGED, "a") as handle:
        handle.write(f"# round {round_number}\n")


def main() -> None:
    """Generate the tree, warm every path once, then time `--rounds` rebuilds of each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="tree size factor")
    args = parser.parse_args()
    host = _engine_host()
    scratch = Path(tempfile.mkdtemp(prefix="buildsdk-bench-session-"))
    try:
        root = scratch / "repo"
        make_repository(root, args.scale)
        (root / "Dockerfile").write_text(DOCKERFILE)
        print(f"tree: {tree_info(root)}", flush=True)
        common: dict[str, Any] = {"path": root, "version": "2", "network_mode": "none"}
        session = BuildOptions(**common, context_transfer="session")
        tar = BuildOptions(**common, context_transfer="tar")
        contenders: dict[str, Callable[[Client], float]] = {
            "docker build (legacy), tar upload": lambda c: _docker_cli(host, root),
            "buildsdk, BuildKit, tar upload": lambda c: _until_vertex(c, tar, ("copy /context /",)),
            "buildsdk, BuildKit, session transfer": lambda c: _until_vertex(
                c, session, ("[internal] load build context",)
            ),
        }
        timings: dict[str, list[float]] = {name: [] for name in contenders}
        with Client(host) as client:
            # Warm-up: page cache, base image, and the engine's copy under the shared key.
            for run in contenders.values():
                run(client)
            for round_number in range(args.rounds):
                for name, run in contenders.items():
                    _touch(root, round_number * len(contenders) + len(timings[name]))
                    timings[name].append(run(client))
        reference = statistics.median(timings["docker build (legacy), tar upload"])
        print(
            f"\n| context phase, one file changed ({args.rounds} rounds) | median | min-max | "
            "vs docker build |"
        )
        print("|---|---|---|---|")
        for name, values in timings.items():
            median = statistics.median(values)
            print(
                f"| {name} | {median:.2f} s | {min(values):.2f}-{max(values):.2f} s | "
                f"{reference / median:.1f}x |"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
