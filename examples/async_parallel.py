"""Build several images at once with `AsyncClient`: one connection pool, one event loop.

Usage:
    python examples/async_parallel.py [COUNT]

Builds COUNT (default 3) variants of examples/hello concurrently, each with its own
GREETING build arg and tag, and prints each image id as its build finishes. The engine is
DOCKER_HOST or the current docker context:

    eval "$(scripts/engines env)"
    DOCKER_HOST=$BUILDSDK_DOCKERD_HOST python examples/async_parallel.py 4
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from buildsdk import AsyncClient, BuildError, BuildOptions, BuildResult, BuildSDKError

HELLO = Path(__file__).resolve().parent / "hello"


async def build_variant(docker: AsyncClient, number: int) -> BuildResult:
    """Build variant `number` of examples/hello and return its result."""
    options = BuildOptions(
        path=HELLO,
        tag=f"buildsdk-example:parallel-{number}",
        buildargs={"GREETING": f"hello from build {number}"},
    )
    result = await docker.build(options).result()
    print(f"build {number}: {result.image_id} ({result.duration:.1f}s)", flush=True)
    return result


async def run(count: int) -> int:
    """Start `count` builds together and wait for all of them."""
    started = time.monotonic()
    async with AsyncClient() as docker:
        outcomes = await asyncio.gather(
            *(build_variant(docker, n) for n in range(1, count + 1)), return_exceptions=True
        )
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    for error in failed:
        message = error.message if isinstance(error, BuildError) else str(error)
        print(f"failed: {message}", file=sys.stderr)
        if not isinstance(error, BuildSDKError):
            raise error
    print(f"{count - len(failed)} of {count} built in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    """Parse COUNT and run the builds; return the process exit status."""
    if len(argv) > 1 or (argv and not argv[0].isdigit()) or (argv and int(argv[0]) < 1):
        print(__doc__)
        return 2
    return asyncio.run(run(int(argv[0]) if argv else 3))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
