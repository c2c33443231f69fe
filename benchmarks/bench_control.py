"""Control API builds side by side with `docker buildx build` on Docker 26.1.

The same builds go through buildsdk's Control API path (`build_endpoint="grpc"`) and through
`docker buildx build` (CLI 26.1.5, buildx 0.13.1, the docker driver) to the Docker 26.1.5
engine of `scripts/engines up dockerd26 docker26-cli`, each a whole process, in turns after
one unrecorded warm-up round, every build with `--network none` (the engine has no bridge):

- a rebuild of the repository-shaped tree of `trees.py` (about 26,000 files) with one source
  file changed before every run. The Dockerfile bind-mounts the whole context into a trivial
  `RUN`, so the engine needs every file but makes no layer of it: what is timed is the
  client's start, the session's incremental context transfer (STATs of every entry, the one
  changed file's data), the solve and the image export;
- `--output type=local` of a ~300 MB image whose layers are cached after the warm-up: the
  engine streams 30 files of 10 MiB and the busybox tree through the session's FileSend and
  the client writes them into a fresh directory;
- 8 small builds at once without cache (the contexts of `bench_engine.py`): one
  `AsyncClient` in one process against 8 `docker buildx build` processes started together;
  the time until the last one ended.

Images made are removed afterwards (by tag and ID); the build cache is left to the engine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from _common import PYTHON, REPO, Sample, Series, Table, engines_setting, run_process, run_rounds
from _common import scratch_dir as _scratch
from bench_context import _env
from bench_engine import _write_small_contexts
from trees import ensure_tree, make_repository, tree_info

__all__ = ["ASYNC_SCRIPT", "BUILD_SCRIPT", "run"]

BUILD_SCRIPT = """
import sys
from buildsdk import BuildOptions, Client
from buildsdk.outputs import LocalOutput
host, path, tag, out, iidfile = sys.argv[1:6]
options = BuildOptions(
    path=path,
    version="2",
    build_endpoint="grpc",
    network_mode="none",
    tag=tag or None,
    outputs=[LocalOutput(dest=out)] if out else [],
)
with Client(host) as client, client.build(options, keep_events=False) as build:
    for _ in build:
        pass
    result = build.result()
if iidfile:
    open(iidfile, "w").write(result.image_id)
"""
"""One Control API build through buildsdk's `Client`, following its events."""

ASYNC_SCRIPT = """
import asyncio
import sys
from buildsdk import AsyncClient, BuildOptions
host, iidfile, *paths = sys.argv[1:]

async def main():
    async with AsyncClient(host) as client:
        async def one(path):
            options = BuildOptions(
                path=path, version="2", build_endpoint="grpc", nocache=True, network_mode="none"
            )
            async with client.build(options, keep_events=False) as build:
                async for _ in build:
                    pass
                return (await build.result()).image_id
        return await asyncio.gather(*(one(path) for path in paths))

ids = asyncio.run(main())
open(iidfile, "w").write("\\n".join(ids))
"""
"""Several Control API builds at once through one `AsyncClient`; writes their image IDs."""

REBUILD_DOCKERFILE = "FROM busybox:latest\nRUN --mount=type=bind,target=/ctx true\n"
CHANGED = "src/app/pkg000/module_00000.py"
BUILDX = "docker buildx build"


def _image_dockerfile(files: int, mib: int) -> str:
    return (
        "FROM busybox:latest\n"
        f"RUN mkdir /data && for i in $(seq 1 {files}); do "
        f"head -c {mib * 1048576} /dev/urandom > /data/blob-$i; done\n"
    )


class _Docker26:
    """The Docker 26.1 engine, its CLI with buildx, and what the runs leave on the engine."""

    def __init__(self, host: str, cli: str, plugins: Path, scratch: Path) -> None:
        self.host = host
        self.cli = cli
        self.scratch = scratch
        config = scratch / "docker26-config"
        config.mkdir()
        # A config of its own (buildx keeps state there) that finds the buildx plugin.
        (config / "cli-plugins").symlink_to(plugins)
        (config / "config.json").write_text("{}")
        self.env = {**_env(scratch), "DOCKER_HOST": host, "DOCKER_CONFIG": str(config)}
        self.tags: set[str] = set()
        self.count = 0

    def iidfile(self) -> str:
        self.count += 1
        return str(self.scratch / f"iid26-{self.count}")

    def buildx(self, path: Path, *flags: str) -> list[str]:
        argv = [self.cli, "buildx", "build", "--progress", "plain", "--network", "none"]
        return [*argv, *flags, str(path)]

    def buildsdk(self, path: Path, tag: str = "", out: str = "", iidfile: str = "") -> list[str]:
        return [PYTHON, "-c", BUILD_SCRIPT, self.host, str(path), tag, out, iidfile]

    def command(self, path: Path, *flags: str) -> list[str]:
        argv = [PYTHON, "-m", "buildsdk", "build", "-H", self.host, "--endpoint", "grpc"]
        return [*argv, "--progress", "plain", "--network", "none", *flags, str(path)]

    def remove_images(self) -> None:
        ids: set[str] = set()
        for path in self.scratch.glob("iid26-*"):
            ids.update(line.strip() for line in path.read_text().splitlines() if line.strip())
        names = sorted(self.tags) + sorted(ids)
        if names:
            subprocess.run(
                [self.cli, "image", "rm", "--force", *names],
                env=self.env,
                capture_output=True,
                check=False,
            )


def _table(title: str, rows: list[Series], notes: list[str], reference: str = BUILDX) -> Table:
    table = Table(title, reference)
    for row in rows:
        table.add(row)
    table.notes.extend(notes)
    table.print()
    return table


def _rebuild(d26: _Docker26, base: Path, quick: bool, repeat: int) -> Table:
    scale = 0.02 if quick else 1.0
    root = ensure_tree(
        base, "tree-repository-control", lambda r: make_repository(r, scale), f"control-{scale}"
    )
    (root / "Dockerfile").write_text(REBUILD_DOCKERFILE)
    print(f"[control] rebuild of {tree_info(root)} ...", file=sys.stderr, flush=True)
    edits = iter(range(1 << 30))

    def changed(argv: Callable[[], list[str]]) -> Callable[[], Sample]:
        def one() -> Sample:
            with open(root / CHANGED, "a") as handle:
                handle.write(f"# edit {next(edits)}\n")
            return run_process(argv(), env=d26.env)

        return one

    tag_sdk, tag_cli, tag_x = (f"buildsdk-bench-control:rebuild-{n}" for n in ("sdk", "cli", "x"))
    d26.tags.update((tag_sdk, tag_cli, tag_x))
    contenders = [
        (
            "buildsdk (Client script)",
            changed(lambda: d26.buildsdk(root, tag_sdk, "", d26.iidfile())),
        ),
        (
            "buildsdk build (command)",
            changed(lambda: d26.command(root, "-t", tag_cli, "--iidfile", d26.iidfile())),
        ),
        (BUILDX, changed(lambda: d26.buildx(root, "-t", tag_x, "--iidfile", d26.iidfile()))),
    ]
    rows = run_rounds(contenders, repeat)
    return _table(
        f"Control API on Docker 26.1: rebuild with one file changed, repository tree "
        f"({tree_info(root)})",
        rows,
        [
            f"Whole processes, {repeat} run(s) each in turns after a warm-up round; one source "
            "file changed before every run; the Dockerfile bind-mounts the context into a "
            "trivial RUN (every file needed, no layer of it). Each client keeps its own "
            "session shared key, so each transfers only what changed since its last run."
        ],
    )


def _local_output(d26: _Docker26, scratch: Path, quick: bool, repeat: int) -> Table:
    files, mib = (2, 1) if quick else (30, 10)
    context = scratch / "image-context"
    context.mkdir()
    (context / "Dockerfile").write_text(_image_dockerfile(files, mib))
    out = scratch / "local-out"
    print(f"[control] --output type=local of {files * mib} MiB ...", file=sys.stderr, flush=True)

    def fresh(argv: Callable[[], list[str]]) -> Callable[[], Sample]:
        def one() -> Sample:
            shutil.rmtree(out, ignore_errors=True)
            sample = run_process(argv(), env=d26.env)
            written = sum(p.stat().st_size for p in (out / "data").iterdir())
            if written != files * mib << 20:
                raise RuntimeError(f"the export wrote {written} bytes into {out / 'data'}")
            return sample

        return one

    local = f"type=local,dest={out}"
    contenders = [
        ("buildsdk (Client script)", fresh(lambda: d26.buildsdk(context, "", str(out)))),
        ("buildsdk build (command)", fresh(lambda: d26.command(context, "--output", local))),
        (BUILDX, fresh(lambda: d26.buildx(context, "--output", local))),
    ]
    rows = run_rounds(contenders, repeat)
    shutil.rmtree(out, ignore_errors=True)
    return _table(
        f"Control API on Docker 26.1: --output type=local of a {files * mib * 1.048576 + 4:.0f} MB "
        "image",
        rows,
        [
            f"Whole processes, {repeat} run(s) each in turns after a warm-up round that "
            f"builds the image ({files} random files of {mib} MiB on busybox); the layers "
            "are cached, so each run is the export: the engine streams the files through "
            "the session's FileSend and the client writes them into a fresh directory."
        ],
    )


def _concurrent(d26: _Docker26, scratch: Path, quick: bool, repeat: int) -> Table:
    count = 2 if quick else 8
    print(f"[control] {count} concurrent builds ...", file=sys.stderr, flush=True)
    paths = [str(p) for p in _write_small_contexts(scratch, count)]

    def buildsdk() -> Sample:
        return run_process(
            [PYTHON, "-c", ASYNC_SCRIPT, d26.host, d26.iidfile(), *paths], env=d26.env
        )

    def buildx() -> Sample:
        # All started at once; the shell fails when any of them failed.
        commands = [
            " ".join(d26.buildx(Path(p), "--no-cache", "--iidfile", d26.iidfile())) + " &"
            for p in paths
        ]
        script = (
            "pids=\n"
            + "\n".join(f'{c} pids="$pids $!"' for c in commands)
            + '\nfor p in $pids; do wait "$p" || exit 1; done\n'
        )
        return run_process(["sh", "-c", script], env=d26.env)

    contenders = [("buildsdk: one AsyncClient", buildsdk), (f"{BUILDX}: {count} processes", buildx)]
    rows = run_rounds(contenders, repeat)
    return _table(
        f"Control API on Docker 26.1: {count} concurrent builds",
        rows,
        [
            f"Small distinct contexts (COPY of 16 KiB + LABEL), no cache; {repeat} run(s) "
            "each in turns after a warm-up round. Whole processes: one Python process with "
            f"one AsyncClient running {count} Control API builds, against {count} buildx "
            "processes started together; CPU is the sum over every process."
        ],
        reference=f"{BUILDX}: {count} processes",
    )


def run(quick: bool, cache: Path | None) -> list[Table]:
    """Compare Control API builds with `docker buildx build` on Docker 26.1; print the tables."""
    host = engines_setting("BUILDSDK_DOCKERD26_HOST")
    cli = engines_setting("BUILDSDK_DOCKER26_CLI")
    config = engines_setting("BUILDSDK_DOCKER26_CONFIG")
    if host is None or cli is None or config is None or not os.path.exists(cli):
        print(
            "[control] no Docker 26.1: start it with `scripts/engines up dockerd26 docker26-cli`",
            file=sys.stderr,
        )
        table = Table("Control API on Docker 26.1 against docker buildx build", BUILDX)
        table.add(Series("all contenders", note="Docker 26.1 or its CLI not running: skipped"))
        table.print()
        return [table]
    # Five runs each: the engine's own steps (its "exporting layers" takes 0.2-1.0 s for the
    # same rebuild, whoever the client is) move a median of three by more than the gaps.
    repeat = 1 if quick else 5
    tables: list[Table] = []
    with _scratch("buildsdk-bench-control-") as scratch:
        base = cache if cache is not None and not quick else scratch / "trees"
        base.mkdir(parents=True, exist_ok=True)
        d26 = _Docker26(host, cli, Path(config) / "cli-plugins", scratch)
        try:
            tables.append(_rebuild(d26, base, quick, repeat))
            tables.append(_local_output(d26, scratch, quick, repeat))
            tables.append(_concurrent(d26, scratch, quick, repeat))
        finally:
            d26.remove_images()
    return tables


def main() -> int:
    """Run this benchmark alone."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cache", type=Path, default=REPO / ".benchmarks-cache")
    args = parser.parse_args()
    run(args.quick, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
