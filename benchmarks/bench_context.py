"""Context upload: pack and send a tree to a discarding endpoint, as whole processes.

Every contender is a complete process started from nothing (interpreter start-up,
imports, handshake, walk, tar, upload, reading the answer), which is what a user waits
for. They all talk to the same fake engine (`discard_server.py`, its own process). GNU tar
writing the same file list (taken from buildsdk's own listing, so the same files are read)
into a pipe is the floor: no `.dockerignore` logic, no HTTP. Numbers are warm-cache: one
unrecorded warm-up round reads every tree into the page cache first.

Also shown: peak RSS of each whole process; for the 2 GiB tree this is the constant-memory
claim (buildsdk streams; docker-py writes the tar to a temporary file first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from _common import (
    PYTHON,
    REPO,
    Sample,
    Table,
    discard_server,
    run_process,
    run_rounds,
    scratch_dir,
)
from trees import ensure_tree, make_huge, make_repository, make_tiny, tree_info

__all__ = ["BUILDSDK_SCRIPT", "DOCKER_PY_SCRIPT", "client_commands", "run"]

BUILDSDK_SCRIPT = """
import sys
from buildsdk import BuildOptions, Client
with Client(sys.argv[1]) as client, client.build(BuildOptions(path=sys.argv[2])) as build:
    for _ in build:
        pass
    build.result()
"""
"""A user's smallest buildsdk program: build a directory, follow the events."""

DOCKER_PY_SCRIPT = """
import sys
import docker
client = docker.APIClient(base_url=sys.argv[1])
for _ in client.build(path=sys.argv[2], decode=True):
    pass
"""
"""The same program with docker-py's low-level client."""

_MIB = 1 << 20


def client_commands(
    host: str, context: Path, env: dict[str, str], file_list: Path
) -> list[tuple[str, Callable[[], Sample]]]:
    """The contenders for one tree, as (name, run-once) pairs."""
    docker_env = {**env, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"}
    cli = Path(PYTHON).parent / "buildsdk"
    buildsdk_cli = [str(cli)] if cli.exists() else [PYTHON, "-m", "buildsdk"]
    tar_pipe = f"tar --null --no-recursion -T {shlex_quote(str(file_list))} -cf - | cat > /dev/null"
    return [
        ("GNU tar into a pipe (floor)", partial(run_process, ["sh", "-c", tar_pipe], cwd=context)),
        (
            "buildsdk (Client script)",
            partial(run_process, [PYTHON, "-c", BUILDSDK_SCRIPT, host, str(context)], env=env),
        ),
        (
            "buildsdk build (command)",
            partial(
                run_process,
                [*buildsdk_cli, "build", "-H", host, "--progress", "quiet", str(context)],
                env=env,
            ),
        ),
        (
            "docker build (CLI, legacy)",
            partial(run_process, ["docker", "build", "-q", str(context)], env=docker_env),
        ),
        (
            "docker-py APIClient.build",
            partial(run_process, [PYTHON, "-c", DOCKER_PY_SCRIPT, host, str(context)], env=env),
        ),
    ]


def shlex_quote(value: str) -> str:
    """Quote `value` for sh."""
    import shlex

    return shlex.quote(value)


def _file_list(context: Path, out: Path) -> int:
    """Write the context's entries (as buildsdk would send them) NUL-separated for tar."""
    from buildsdk import list_context

    entries = list_context(context)
    names = [e.name.rstrip("/") for e in entries]
    out.write_bytes(b"".join(os.fsencode(n) + b"\0" for n in names))
    return sum(e.size for e in entries)


def _env(scratch: Path) -> dict[str, str]:
    config = scratch / "docker-config"
    config.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["DOCKER_CONFIG"] = str(config)
    env["PYTHONPATH"] = str(REPO)
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        env.pop(name, None)
    return env


def run(quick: bool, cache: Path | None) -> list[Table]:
    """Measure every tree; print and return the tables."""
    tables: list[Table] = []
    with scratch_dir("buildsdk-bench-ctx-") as scratch:
        base = cache if cache is not None and not quick else scratch / "trees"
        base.mkdir(parents=True, exist_ok=True)
        trees: list[tuple[str, Callable[[Path], None], str, int]]
        if quick:
            trees = [
                ("repository", partial(make_repository, scale=0.02), "q1", 1),
                ("tiny", partial(make_tiny, count=2000), "q1", 1),
                ("huge", partial(make_huge, count=4, size=8 * _MIB), "q1", 1),
            ]
        else:
            trees = [
                ("repository", make_repository, "v1", 5),
                ("tiny", make_tiny, "v1", 3),
                ("huge", make_huge, "v1", 3),
            ]
        env = _env(scratch)
        titles = {
            "repository": "Context upload: repository-shaped tree",
            "tiny": "Context upload: tiny files",
            "huge": "Context upload: huge files (memory must not grow)",
        }
        with discard_server(scratch) as (host, _log):
            for name, build, key, repeat in trees:
                print(f"[context] preparing the {name} tree ...", file=sys.stderr, flush=True)
                root = ensure_tree(base, f"tree-{name}", build, key)
                info = tree_info(root)
                listing = scratch / f"{name}.list"
                sent = _file_list(root, listing)
                contenders = client_commands(host, root, env, listing)
                print(f"[context] measuring the {name} tree ...", file=sys.stderr, flush=True)
                rows = run_rounds(contenders, repeat, warmup=not quick)
                table = Table(
                    f"{titles[name]} ({info}; {sent / 1e6:,.0f} MB of file data sent)",
                    "docker build (CLI, legacy)",
                )
                for row in rows:
                    table.add(row)
                _targets(table, name == "huge")
                table.notes.append(
                    f"Whole processes, warm page cache, {repeat} run(s) each after a warm-up "
                    "round; peak RSS of the whole process (for tar: the largest of tar, cat)."
                )
                table.print()
                tables.append(table)
        if cache is None or quick:
            shutil.rmtree(base, ignore_errors=True)
    return tables


def _targets(table: Table, huge: bool) -> None:
    by_name = {row.name: row for row in table.rows if row.samples}
    ours = by_name.get("buildsdk (Client script)")
    cli = by_name.get("docker build (CLI, legacy)")
    dpy = by_name.get("docker-py APIClient.build")
    if ours and cli and dpy:
        table.notes.append(
            f"buildsdk / docker build = {ours.median / cli.median:.2f} (target ≤ 1.0); "
            f"buildsdk / docker-py = {ours.median / dpy.median:.2f} (target ≤ 0.5); "
            f"buildsdk peak RSS {ours.peak_rss / _MIB:.0f} MiB"
            + (" (target < 64 MiB whatever the size)." if huge else ".")
        )
    if huge and dpy:
        table.notes.append(
            "docker-py's RSS stays low because it first writes the whole tar to a temporary "
            "file (2 GiB of extra disk writes here), then uploads that file."
        )


def main() -> int:
    """Run this benchmark alone."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    run(args.quick, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
