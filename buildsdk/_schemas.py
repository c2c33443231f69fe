"""Writes the JSON Schema of every public model to `schemas/<Model>.json`.

Run `python -m buildsdk._schemas` from the repository root after changing a model, and
commit the result; `python -m buildsdk._schemas --check` (and the unit tests) fail when a
file differs from what the models produce. To publish the schema of another model, add it
to `MODELS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from buildsdk._protocol import PingResult, VersionInfo
from buildsdk.build import BuildOptions, BuildOutput, ContainerLimits, Ulimit
from buildsdk.cache import CachePruneOptions, CachePruneResult, CacheRecord
from buildsdk.cache_backends import CacheEntry, InlineCache, LocalCache, RegistryCache
from buildsdk.endpoint import TLSConfig
from buildsdk.events import (
    AuxEvent,
    ErrorEvent,
    ImageIdEvent,
    LogEvent,
    StatusEvent,
    UnknownEvent,
    VertexEvent,
    VertexLogEvent,
    VertexStatusEvent,
    VertexWarningEvent,
)
from buildsdk.outputs import DockerOutput, ImageOutput, LocalOutput, OCIOutput, TarOutput
from buildsdk.prune import PruneFilters, PruneOptions, PruneResult
from buildsdk.results import BuildResult, PlatformImage

__all__ = ["MODELS", "SCHEMA_DIR", "main", "render", "write"]

MODELS: list[type[BaseModel]] = [
    BuildOptions,
    BuildOutput,
    ImageOutput,
    LocalOutput,
    TarOutput,
    OCIOutput,
    DockerOutput,
    ContainerLimits,
    InlineCache,
    LocalCache,
    RegistryCache,
    CacheEntry,
    Ulimit,
    PruneOptions,
    PruneFilters,
    PruneResult,
    CachePruneOptions,
    CachePruneResult,
    CacheRecord,
    BuildResult,
    PlatformImage,
    LogEvent,
    StatusEvent,
    ImageIdEvent,
    AuxEvent,
    ErrorEvent,
    VertexEvent,
    VertexStatusEvent,
    VertexLogEvent,
    VertexWarningEvent,
    UnknownEvent,
    PingResult,
    VersionInfo,
    TLSConfig,
]
"""Every model whose schema is published; extend this list to publish more."""

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
"""Where the schema files live: `schemas/` at the repository root."""


def render(models: Sequence[type[BaseModel]] = MODELS) -> dict[str, str]:
    """Return `{file name: file text}` for `models`, byte-stable between runs."""
    files: dict[str, str] = {}
    for model in models:
        schema = model.model_json_schema()
        files[f"{model.__name__}.json"] = (
            json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
    return files


def write(directory: Path = SCHEMA_DIR, models: Sequence[type[BaseModel]] = MODELS) -> list[str]:
    """Write the schema files into `directory`; return the names of files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    for name, text in render(models).items():
        target = directory / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(name)
    return changed


def _stale(directory: Path, models: Sequence[type[BaseModel]]) -> list[str]:
    """Names of schema files missing from or different in `directory`."""
    stale: list[str] = []
    for name, text in render(models).items():
        target = directory / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the schemas, or with `--check` report stale ones (exit 1)."""
    parser = argparse.ArgumentParser(prog="python -m buildsdk._schemas", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="schema directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = _stale(args.dir, MODELS)
        for name in stale:
            print(f"stale schema: {args.dir / name} (run python -m buildsdk._schemas)")
        return 1 if stale else 0
    for name in write(args.dir, MODELS):
        print(f"wrote {args.dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
