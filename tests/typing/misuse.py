"""Code mypy must reject: every misuse below carries the exact `type: ignore` code it earns.

mypy runs on this file with `warn_unused_ignores`, so if a misuse stopped being an error the
now-unused ignore would fail the check (see test_typing_misuse.py). The correct calls at the
end must type-check without any ignore.
"""

from __future__ import annotations

import io
from datetime import timedelta

from buildsdk.build import BuildOptions, BuildOutput, ContainerLimits, Ulimit
from buildsdk.prune import PruneFilters, PruneOptions, PruneResult

# -- BuildOptions: wrong types for docker-py keywords --
BuildOptions(path=".", tag=1)  # type: ignore[arg-type]
BuildOptions(path=".", tag=[1, 2])  # type: ignore[list-item]
BuildOptions(path=".", buildargs={"A": 1})  # type: ignore[dict-item]
BuildOptions(path=".", labels={"a": None})  # type: ignore[dict-item]
BuildOptions(path=".", quiet="yes")  # type: ignore[arg-type]
BuildOptions(path=".", isolation="vm")  # type: ignore[arg-type]
BuildOptions(path=".", version="3")  # type: ignore[arg-type]
BuildOptions(path=".", version=2)  # type: ignore[arg-type]
BuildOptions(path=".", shmsize=1.5)  # type: ignore[arg-type]
BuildOptions(path=".", fileobj=b"FROM scratch")  # type: ignore[arg-type]
BuildOptions(path=".", container_limits={"memory": 1.5})  # type: ignore[dict-item]
BuildOptions(path=".", ulimits=[1024])  # type: ignore[list-item]
BuildOptions(path=1)  # type: ignore[arg-type]

# -- unknown keywords and positional use --
BuildOptions(path=".", tags=["a"])  # type: ignore[call-arg]
BuildOptions(".")  # type: ignore[call-arg]

# -- frozen models --
opts = BuildOptions(path=".")
opts.quiet = True  # type: ignore[misc]
opts.tag = ("a",)  # type: ignore[misc]

# -- attribute types are the validated ones --
first_tag: int = opts.tag[0]  # type: ignore[assignment]
memory: str | None = ContainerLimits(memory="1g").memory  # type: ignore[assignment]

# -- the other models --
ContainerLimits(memory=None, cpushares="2")  # type: ignore[arg-type]
Ulimit(name="nofile", soft="1", hard=2)  # type: ignore[arg-type]
BuildOutput(type="local", attrs={"dest": 1})  # type: ignore[dict-item]
PruneOptions(all="true")  # type: ignore[arg-type]
PruneOptions(keep_storage=1.5)  # type: ignore[arg-type]
PruneFilters(until=24)  # type: ignore[arg-type]
PruneFilters(inuse="yes")  # type: ignore[arg-type]
PruneResult.from_json([("CachesDeleted", [])])  # type: ignore[arg-type]

# -- correct use type-checks without help --
ok = BuildOptions(
    path=".",
    tag=["app:1", "app:latest"],
    fileobj=io.StringIO("FROM scratch\n"),
    buildargs={"A": "1", "B": None},
    labels={"a": "b"},
    container_limits=ContainerLimits(memory="512m", memswap=-1),
    shmsize="64m",
    ulimits=["nofile=1024:2048", Ulimit(name="nproc", soft=1, hard=2)],
    extra_hosts={"db": "10.0.0.2"},
    isolation="default",
    version="2",
    outputs=[BuildOutput(type="local", attrs={"dest": "out"})],
)
tags: tuple[str, ...] = ok.tag
query: list[tuple[str, str]] = ok.to_query("1.51")
prune: list[tuple[str, str]] = PruneOptions(
    all=True, filters=PruneFilters(until=timedelta(hours=1), inuse=True), reserved_space="1g"
).to_query("1.48")
