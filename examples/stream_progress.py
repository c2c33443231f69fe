"""Stream a build's progress to the terminal as docker shows it, classic builder or BuildKit.

Usage:
    python examples/stream_progress.py [--buildkit] [--no-cache] [CONTEXT_DIR]

CONTEXT_DIR defaults to examples/hello; --no-cache runs every step again. The engine is
DOCKER_HOST or the current docker context (see examples/minimal_build.py). BuildKit runs
RUN steps on the engine's default network; engines without a bridge network (such as
those of scripts/engines) need BUILD_NETWORK=host:

    eval "$(scripts/engines env)"
    DOCKER_HOST=$BUILDSDK_DOCKERD_HOST BUILD_NETWORK=host \\
        python examples/stream_progress.py --buildkit
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from buildsdk import BuildError, BuildOptions, BuildSDKError, Client
from buildsdk.progress import PlainProgress, TtyProgress, render

HELLO = Path(__file__).resolve().parent / "hello"


def main(argv: list[str]) -> int:
    """Build the context with live output; return the process exit status."""
    buildkit = "--buildkit" in argv
    nocache = "--no-cache" in argv
    rest = [arg for arg in argv if arg not in ("--buildkit", "--no-cache")]
    if len(rest) > 1 or any(arg.startswith("-") for arg in rest):
        print(__doc__)
        return 2
    options = BuildOptions(
        path=rest[0] if rest else str(HELLO),
        tag="buildsdk-example:progress",
        version="2" if buildkit else "1",
        nocache=nocache,
        network_mode=os.environ.get("BUILD_NETWORK") or None,
    )
    # docker's own renderers: a live view on a terminal, `#N` lines (BuildKit) or the
    # engine's text (classic) in a pipe or a CI log.
    if sys.stdout.isatty():
        columns, lines = shutil.get_terminal_size()
        progress: PlainProgress | TtyProgress = TtyProgress(sys.stdout, width=columns, height=lines)
    else:
        progress = PlainProgress(sys.stdout)
    try:
        with Client() as docker, docker.build(options) as build:
            render(build, progress)  # every event as it arrives; then the renderer is closed
            result = build.result()
    except BuildError as exc:
        # After a failed BuildKit build the renderer has printed "ERROR: failed to solve: …".
        if not progress.reported_error:
            print(f"build failed: {exc.message}", file=sys.stderr)
        return 1
    except BuildSDKError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {result.image_id} in {result.duration:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
