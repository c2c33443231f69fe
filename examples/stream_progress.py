"""Stream a build's progress to the terminal as it happens, classic builder or BuildKit.

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
import sys
from pathlib import Path

from buildsdk import (
    BuildError,
    BuildEvent,
    BuildOptions,
    BuildSDKError,
    Client,
    ErrorEvent,
    ImageIdEvent,
    LogEvent,
    StatusEvent,
    VertexEvent,
    VertexLogEvent,
    VertexWarningEvent,
)

HELLO = Path(__file__).resolve().parent / "hello"


class Printer:
    """Turns events into terminal lines; BuildKit steps are numbered in order of appearance."""

    def __init__(self) -> None:
        self._steps: dict[str, int] = {}
        self._done: set[str] = set()

    def _step(self, digest: str) -> int:
        return self._steps.setdefault(digest, len(self._steps) + 1)

    def show(self, event: BuildEvent) -> None:
        """Print one event; events this printer does not care about are skipped."""
        if isinstance(event, LogEvent):  # classic builder output, already line-shaped
            print(event.text, end="", flush=True)
        elif isinstance(event, StatusEvent) and event.progress_detail is None:
            print(f"{event.id}: {event.status}" if event.id else event.status, flush=True)
        elif isinstance(event, VertexEvent):  # a BuildKit step started, finished or failed
            number = self._step(event.digest)
            if event.error:
                print(f"#{number} ERROR: {event.error}", flush=True)
            elif event.cached and event.digest not in self._done:
                self._done.add(event.digest)
                print(f"#{number} {event.name} CACHED", flush=True)
            elif event.completed is not None and event.digest not in self._done:
                self._done.add(event.digest)
                elapsed = (event.completed - event.started).total_seconds() if event.started else 0
                print(f"#{number} {event.name} DONE {elapsed:.1f}s", flush=True)
            elif event.started is not None and event.completed is None:
                print(f"#{number} {event.name}", flush=True)
        elif isinstance(event, VertexLogEvent):  # output of a RUN step under BuildKit
            text = event.data.decode("utf-8", "replace")
            for line in text.splitlines():
                print(f"#{self._step(event.vertex)} {line}", flush=True)
        elif isinstance(event, VertexWarningEvent):
            print(f"WARNING: {event.short.decode('utf-8', 'replace')}", flush=True)
        elif isinstance(event, ImageIdEvent):
            print(f"image: {event.image_id}", flush=True)
        elif isinstance(event, ErrorEvent):
            print(f"ERROR: {event.message}", flush=True)


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
    printer = Printer()
    try:
        with Client() as docker, docker.build(options) as build:
            for event in build:  # events arrive as the engine sends them
                printer.show(event)
            result = build.result()
    except BuildError as exc:
        print(f"build failed: {exc.message}", file=sys.stderr)
        return 1
    except BuildSDKError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {result.image_id} in {result.duration:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
