"""Start-up: imports, option handling, and a command's time to its first request.

Three costs a Python build tool pays before the engine does anything: importing the
library (whole processes: `python -c "import ..."`, with an empty program as the floor),
turning the caller's options into the request (in-process, per call, to the final query
string), and, for the command line, how long after its start the first byte of HTTP
reaches the engine (the discarding endpoint logs each request's arrival).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from _common import PYTHON, Sample, Series, Table, discard_server, run_process, run_rounds
from _common import scratch_dir as _scratch
from bench_context import DOCKER_PY_SCRIPT, _env

__all__ = ["FULL_OPTIONS", "run"]

_NOWHERE = "unix:///nonexistent/buildsdk-bench.sock"
_MAKE_CLIENT = f"from buildsdk import BuildOptions, Client; Client({_NOWHERE!r})"
_MAKE_API_CLIENT = f"import docker; docker.APIClient(base_url={_NOWHERE!r}, version='1.41')"

FULL_OPTIONS: dict[str, Any] = {
    "tag": "registry.example.com/team/app:1.2.3",
    "quiet": False,
    "nocache": True,
    "rm": True,
    "timeout": 600,
    "encoding": "gzip",
    "pull": True,
    "forcerm": True,
    "dockerfile": "docker/Dockerfile.prod",
    "container_limits": {
        "memory": 536870912,
        "memswap": 1073741824,
        "cpushares": 512,
        "cpusetcpus": "0,1",
    },
    "buildargs": {"PYTHON": "3.12", "HTTP_PROXY": "http://proxy:3128", "EMPTY": ""},
    "shmsize": 67108864,
    "labels": {"org.opencontainers.image.source": "https://example.com/app", "team": "core"},
    "cache_from": ["registry.example.com/team/app:cache", "registry.example.com/team/app:1.2"],
    "target": "runtime",
    "network_mode": "host",
    "squash": False,
    "extra_hosts": {"db.internal": "10.0.0.5", "cache.internal": "10.0.0.6"},
    "platform": "linux/amd64",
    "isolation": "default",
    "use_config_proxy": False,
}
"""Every docker-py `build()` keyword that shapes the request, with realistic values."""


def _buildsdk_options(calls: int) -> Sample:
    from urllib.parse import urlencode

    from buildsdk import ApiVersion, BuildOptions
    from buildsdk._protocol import build_request

    version = ApiVersion.parse("1.41")
    cpu = time.process_time()
    start = time.perf_counter()
    for _ in range(calls):
        options = BuildOptions(fileobj=io.BytesIO(b""), custom_context=True, **FULL_OPTIONS)
        request = build_request(options, version, credentials={})
        urlencode(request.params)
    return Sample((time.perf_counter() - start) / calls, cpu=(time.process_time() - cpu) / calls)


def _docker_py_options(calls: int) -> Sample:
    import docker
    import requests

    class _NoTransport(docker.APIClient):  # type: ignore[misc]
        # Everything of build() but the network: the request is prepared (query string
        # encoded by requests) and dropped.
        def _post(self, url: str, **kwargs: Any) -> None:
            kwargs.pop("stream", None)
            kwargs.pop("timeout", None)
            data = kwargs.pop("data", None)
            requests.Request("POST", url, data=data, **kwargs).prepare()

        def _stream_helper(self, response: Any, decode: bool = False) -> None:
            return None

    client = _NoTransport(base_url="unix:///nonexistent.sock", version="1.41")
    cpu = time.process_time()
    start = time.perf_counter()
    for _ in range(calls):
        client.build(fileobj=io.BytesIO(b""), custom_context=True, **FULL_OPTIONS)
    return Sample((time.perf_counter() - start) / calls, cpu=(time.process_time() - cpu) / calls)


def _first_request(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path
) -> tuple[Sample, Sample]:
    """Run `argv`; return (time to its first request, whole run)."""
    seen = log.stat().st_size if log.exists() else 0
    started = time.time()
    whole = run_process(argv, env=env, cwd=cwd)
    with open(log, encoding="utf-8") as f:
        f.seek(seen)
        first = f.readline().split()
    if not first:
        raise RuntimeError(f"{argv[0]} sent no request")
    return Sample(float(first[0]) - started), whole


def run(quick: bool, cache: Path | None) -> list[Table]:
    """Measure imports, option handling and time to first request; print the tables."""
    del cache
    repeat = 1 if quick else 10
    tables = []
    with _scratch("buildsdk-bench-start-") as scratch:
        env = _env(scratch)
        print("[startup] imports ...", file=sys.stderr, flush=True)
        imports = Table("Start-up: import, whole process", "import docker")
        for row in run_rounds(
            [
                ("python -c pass (floor)", partial(run_process, [PYTHON, "-c", "pass"], env=env)),
                (
                    "import buildsdk",
                    partial(run_process, [PYTHON, "-c", "import buildsdk"], env=env),
                ),
                (
                    "from buildsdk import Client, BuildOptions",
                    partial(
                        run_process,
                        [PYTHON, "-c", "from buildsdk import Client, BuildOptions"],
                        env=env,
                    ),
                ),
                ("import docker", partial(run_process, [PYTHON, "-c", "import docker"], env=env)),
                (
                    "import and make a buildsdk Client",
                    partial(run_process, [PYTHON, "-c", _MAKE_CLIENT], env=env),
                ),
                (
                    "import and make a docker-py APIClient",
                    partial(run_process, [PYTHON, "-c", _MAKE_API_CLIENT], env=env),
                ),
            ],
            repeat,
            warmup=not quick,
        ):
            imports.add(row)
        imports.notes.append(
            "`import buildsdk` loads its submodules lazily, and a client loads its "
            "transports when it is made: the last two rows are what a program that builds "
            "pays before its first request (neither client connects; docker-py's API "
            "version is pinned so that it does not ask the engine). `import docker` loads "
            f"requests, urllib3 and all of docker-py. {repeat} run(s) each after a warm-up "
            "round."
        )
        imports.print()
        tables.append(imports)

        print("[startup] options ...", file=sys.stderr, flush=True)
        calls = 50 if quick else 2_000
        options = Table("Start-up: build options to request, per call", "docker-py build()")
        contenders: list[tuple[str, Callable[[], Sample]]] = [
            ("buildsdk BuildOptions + build_request", partial(_buildsdk_options, calls)),
            ("docker-py build()", partial(_docker_py_options, calls)),
        ]
        for row in run_rounds(contenders, 1 if quick else 5, warmup=True):
            options.add(row)
        options.notes.append(
            f"All {len(FULL_OPTIONS)} request-shaping keywords of docker-py's build(), "
            "custom_context so that no tar is made; from keywords to the encoded query "
            "string and headers (docker-py: build() with its HTTP call replaced by requests' "
            f"prepare(); buildsdk: validated model, build_request, urlencode). {calls:,} "
            "calls per run; time per call."
        )
        options.print()
        tables.append(options)

        print("[startup] first request ...", file=sys.stderr, flush=True)
        context = scratch / "tiny-context"
        context.mkdir()
        (context / "Dockerfile").write_bytes(b"FROM busybox:latest\n")
        cli = Path(PYTHON).parent / "buildsdk"
        buildsdk_cli = [str(cli)] if cli.exists() else [PYTHON, "-m", "buildsdk"]
        with discard_server(scratch) as (host, log):
            docker_env = {**env, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"}
            commands = [
                ("buildsdk build", [*buildsdk_cli, "build", "-H", host, "-q", "."], env),
                ("docker build (CLI, legacy)", ["docker", "build", "-q", "."], docker_env),
                ("docker-py script", [PYTHON, "-c", DOCKER_PY_SCRIPT, host, "."], env),
            ]
            first = [Series(name) for name, _, _ in commands]
            whole = [Series(name) for name, _, _ in commands]
            for round_ in range(repeat + (0 if quick else 1)):
                for (_, argv, cmd_env), f_row, w_row in zip(commands, first, whole, strict=True):
                    to_first, total = _first_request(argv, cmd_env, log, context)
                    if round_ or quick:  # the first round warms up
                        f_row.samples.append(to_first)
                        w_row.samples.append(total)
        for title, rows in (
            ("Start-up: time to the first request (tiny context)", first),
            ("Start-up: whole build on the discarding endpoint (tiny context)", whole),
        ):
            table = Table(title, "docker build (CLI, legacy)")
            for row in rows:
                table.add(row)
            table.notes.append(
                "From process start (wall clock before spawning) to the arrival of the first "
                f"request at the endpoint (the ping). {repeat} run(s) each after a warm-up."
                if rows is first
                else f"Whole processes, {repeat} run(s) each after a warm-up."
            )
            table.print()
            tables.append(table)
    return tables


def main() -> int:
    """Run this benchmark alone."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    run(args.quick, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
