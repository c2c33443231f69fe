"""Remove build cache the way `docker builder prune` does, and say how much was freed.

Usage:
    python examples/prune_cache.py [--all] [--until DURATION] [--keep SIZE]

By default only cache unused for 24 hours goes (--until 24h); --all also removes cache
that is still referenced by images; --keep 5g keeps that much. The engine is DOCKER_HOST
or the current docker context:

    eval "$(scripts/engines env)"
    DOCKER_HOST=$BUILDSDK_DOCKERD_HOST python examples/prune_cache.py --until 240h
"""

from __future__ import annotations

import argparse
import sys

import pydantic

from buildsdk import BuildSDKError, Client, PruneFilters, PruneOptions


def main(argv: list[str]) -> int:
    """Prune with the options given on the command line; return the exit status."""
    parser = argparse.ArgumentParser(description="Remove build cache.", usage=__doc__)
    parser.add_argument("--all", action="store_true", help="also remove cache in use")
    parser.add_argument("--until", default="24h", help="only cache unused for this long")
    parser.add_argument("--keep", default=None, help="keep this much cache (e.g. 5g)")
    args = parser.parse_args(argv)

    try:
        # A bad duration or size is refused here, before the engine is asked anything.
        options = PruneOptions(
            all=args.all, filters=PruneFilters(until=args.until), keep_storage=args.keep
        )
    except pydantic.ValidationError as exc:
        print(f"invalid option: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    try:
        with Client() as docker:
            report = docker.prune_builds(options)
    except BuildSDKError as exc:  # no engine, or an API version too old for an option
        print(f"error: {exc}", file=sys.stderr)
        return 1

    print(f"removed {len(report.caches_deleted)} cache records, {report.space_reclaimed} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
