"""Build an image from a directory and print its id: the smallest complete buildsdk program.

Usage:
    python examples/minimal_build.py [CONTEXT_DIR] [TAG]

CONTEXT_DIR defaults to examples/hello, TAG to buildsdk-example:minimal. The engine is the
one the `docker` command would use: DOCKER_HOST (unix://, tcp:// with DOCKER_TLS_VERIFY and
DOCKER_CERT_PATH, ssh://), else the current docker context, else /var/run/docker.sock.
With the engines of scripts/engines:

    eval "$(scripts/engines env)"
    DOCKER_HOST=$BUILDSDK_DOCKERD_HOST python examples/minimal_build.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from buildsdk import BuildError, BuildOptions, BuildSDKError, Client

HELLO = Path(__file__).resolve().parent / "hello"


def main(argv: list[str]) -> int:
    """Build CONTEXT_DIR as TAG; return the process exit status."""
    if len(argv) > 2 or any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 2
    context = argv[0] if argv else str(HELLO)
    tag = argv[1] if len(argv) > 1 else "buildsdk-example:minimal"

    # Options are checked here, before anything is sent: a bad tag fails on this line.
    options = BuildOptions(path=context, tag=tag, buildargs={"GREETING": "hello, minimal"})
    try:
        with Client() as docker:
            result = docker.build(options).result()  # sends, waits, raises on failure
    except BuildError as exc:
        print(f"build failed: {exc.message}\n\n{exc.log}", file=sys.stderr)
        return 1
    except BuildSDKError as exc:  # no engine, a bad context, an HTTP error...
        print(f"error: {exc}", file=sys.stderr)
        return 1

    print(f"built {result.image_id} as {', '.join(result.tags)} in {result.duration:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
