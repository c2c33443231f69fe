"""`buildsdk` run as a user runs it, against the real engines of `scripts/engines`.

Each test starts `python -m buildsdk` in a separate process with an isolated Docker config:
classic and BuildKit builds with plain progress (checked line by line against BuildKit's
plain format), a failing build's exit status and message, `-q`, `--iidfile`, `rawjson`,
`info` and `prune`. The live view is run in a pseudo-terminal (`pty`), once against the
real engine and once against a recording endpoint that replays a recorded BuildKit stream
slowly, and the screen is rebuilt from the escape sequences it wrote.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from buildsdk.progress import human_size
from buildsdk.versions import ApiVersion
from tests.integration.conftest import (
    REPO_ROOT,
    DockerEngine,
    Engines,
    docker_engine_of,
    engines_on_matrix,
)
from tests.recording_engine import recording_engine
from tests.unit.test_progress import render_screen
from tests.unit.test_progress_vs_buildx import FIXTURES, normalize

__all__: list[str] = []


@pytest.fixture(scope="session")
def engines(all_engines: Engines, docker_engine: DockerEngine) -> Engines:
    """Every test here runs on each Docker engine of the matrix."""
    return engines_on_matrix(all_engines, docker_engine)


STREAMS = REPO_ROOT / "tests" / "fixtures" / "streams"


@dataclass
class Cli:
    """How to run `buildsdk` against dockerd: environment, a context and a unique tag."""

    env: dict[str, str]
    context: Path
    tag: str
    network: str
    tmp: Path
    base_image: str
    engine: DockerEngine

    def run(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run `python -m buildsdk ARGS` and capture its output as text."""
        return subprocess.run(
            [sys.executable, "-m", "buildsdk", *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def cli(
    engines: Engines, docker_engine: DockerEngine, dockerd_http: httpx.Client, tmp_path: Path
) -> Iterator[Cli]:
    """A context with a two-step Dockerfile, an empty Docker config and DOCKER_HOST set."""
    yield from _cli(engines, docker_engine, dockerd_http, tmp_path)


@pytest.fixture
def cli20(all_engines: Engines, dockerd20_http: httpx.Client, tmp_path: Path) -> Iterator[Cli]:
    """`cli` on Docker 20.10 only, for comparisons with output recorded there."""
    engine = docker_engine_of(all_engines, "dockerd")
    yield from _cli(engines_on_matrix(all_engines, engine), engine, dockerd20_http, tmp_path)


def _cli(
    engines: Engines, docker_engine: DockerEngine, dockerd_http: httpx.Client, tmp_path: Path
) -> Iterator[Cli]:
    assert engines.dockerd_host is not None
    config = tmp_path / "config"
    config.mkdir()
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {engines.base_image}\n"
        "ARG GREETING=hello\n"
        'RUN echo "$GREETING from stdout" && echo "to stderr" >&2\n'
    )
    (context / "Dockerfile.fail").write_text(
        f"FROM {engines.base_image}\nRUN echo about to fail && exit 4\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(config),
        "DOCKER_HOST": engines.dockerd_host,
        "PYTHONPATH": str(REPO_ROOT),
        "LANG": "C.UTF-8",
    }
    tag = f"buildsdk-cli-test:{uuid.uuid4().hex[:12]}"
    yield Cli(
        env, context, tag, engines.dockerd_network, tmp_path, engines.base_image, docker_engine
    )
    dockerd_http.delete(f"/images/{tag}", params={"force": "1"})


def _image_id(dockerd_http: httpx.Client, tag: str) -> str:
    response = dockerd_http.get(f"/images/{tag}/json")
    assert response.status_code == 200, response.text
    image_id: str = response.json()["Id"]
    return image_id


@pytest.mark.dockerd
def test_classic_build_prints_the_engines_text(cli: Cli, dockerd_http: httpx.Client) -> None:
    done = cli.run(
        "build",
        # Docker 26 prefers BuildKit, which buildsdk follows by default; this is the classic
        # builder's output.
        "--builder",
        "classic",
        "--progress",
        "plain",
        "--network",
        cli.network,
        "--no-cache",
        "--build-arg",
        "GREETING=hi",
        "-t",
        cli.tag,
        str(cli.context),
    )
    assert done.returncode == 0, done.stderr
    # As `docker build` with the classic builder: its output on stdout, nothing on stderr.
    assert done.stderr == ""
    # The engine marks the RUN's stderr with colour codes; they are printed untouched.
    assert "\x1b[91mto stderr\n\x1b[0m" in done.stdout
    lines = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout).splitlines()
    assert lines[0].startswith("Step 1/3 : FROM ")
    assert "hi from stdout" in lines
    assert "to stderr" in lines
    assert re.fullmatch(r"Successfully built [0-9a-f]{12}", lines[-2])
    assert lines[-1] == f"Successfully tagged {cli.tag}"
    short_id = lines[-2].split()[-1]
    assert _image_id(dockerd_http, cli.tag).startswith(f"sha256:{short_id}")


@pytest.mark.dockerd
def test_buildkit_plain_progress_on_a_real_build(cli: Cli) -> None:
    done = cli.run(
        "build",
        "--builder",
        "buildkit",
        "--progress",
        "plain",
        "--network",
        cli.network,
        "--no-cache",
        "-t",
        cli.tag,
        str(cli.context),
    )
    assert done.returncode == 0, done.stderr
    text = done.stderr
    steps = _steps(text)
    assert steps, text
    for number, entries in steps.items():
        # Each step closes exactly as BuildKit's plain printer closes it.
        closings = [e for e in entries if re.fullmatch(r"DONE \d+\.\ds|CACHED", e)]
        assert closings, f"step #{number} never closed:\n{text}"
    run = next(n for n, entries in steps.items() if entries[0].startswith("[2/2] RUN echo"))
    logs = [m.group(1) for e in steps[run] if (m := re.fullmatch(r"\d+\.\d+ (.*)", e))]
    assert sorted(logs) == ["hello from stdout", "to stderr"], text
    assert re.fullmatch(r"DONE \d+\.\ds", steps[run][-1]), text
    for block in text.strip().split("\n\n"):
        assert re.match(r"#\d+ ", block), f"a block without its header:\n{text}"
    # buildx prints a task's time when it took over 0.01 s.
    naming = rf"^#\d+ naming to docker\.io/library/{re.escape(cli.tag)}( \d+\.\ds)? done$"
    assert re.search(naming, text, re.MULTILINE), text

    again = cli.run(
        "build",
        "--builder",
        "buildkit",
        "--progress",
        "plain",
        "--network",
        cli.network,
        "-t",
        cli.tag,
        str(cli.context),
    )
    assert again.returncode == 0, again.stderr
    cached = _steps(again.stderr)
    run = next(n for n, entries in cached.items() if entries[0].startswith("[2/2] RUN echo"))
    assert "CACHED" in cached[run], again.stderr


def _dockerfile_blocks(text: str) -> list[list[str]]:
    """The blocks of a plain output's Dockerfile steps and exporter (with a failure's summary),
    their `#N` replaced; the numbers must grow from block to block."""
    blocks: list[list[str]] = [[]]
    for line in normalize(text):
        if line:
            blocks[-1].append(line)
        else:
            blocks.append([])
    kept = [b for b in blocks if b and re.match(r"#\d+ (\[\d+/\d+\] |exporting to image)", b[0])]
    numbers = [int(b[0][1:].split()[0]) for b in kept]
    assert numbers == sorted(set(numbers)), text
    return [[re.sub(r"^#\d+ ", "#N ", line) for line in block] for block in kept]


@pytest.mark.dockerd
@pytest.mark.parametrize("name", ["ok", "fail"])
def test_plain_progress_matches_the_recorded_buildx_output(
    cli20: Cli, dockerd20_http: httpx.Client, name: str
) -> None:
    # Docker 20.10 only: tests/fixtures/progress was recorded there, and BuildKit 0.13
    # (Docker 26.1) names and numbers its steps otherwise.
    cli, dockerd_http = cli20, dockerd20_http
    # The same build as tests/fixtures/progress (same engine version): the Dockerfile's steps
    # and the exporter print what buildx printed. The engine's internal steps (loading the
    # Dockerfile, .dockerignore and context) run concurrently and finish in either order, and
    # a print that falls between two runs of one of them shows it twice, in buildx as here;
    # tests/unit/test_progress_vs_buildx.py compares them on recorded timings.
    done = cli.run(
        "build",
        "--builder",
        "buildkit",
        "--progress",
        "plain",
        "--network",
        cli.network,
        "--no-cache",
        "-t",
        "progress-fixture:latest",
        str(FIXTURES / name),
    )
    dockerd_http.delete("/images/progress-fixture:latest", params={"force": "1"})
    assert done.returncode == (0 if name == "ok" else 1), done.stderr
    expected = (FIXTURES / f"{name}.buildx.txt").read_text()
    assert _dockerfile_blocks(done.stderr) == _dockerfile_blocks(expected), done.stderr
    assert done.stdout == ""


def _steps(text: str) -> dict[str, list[str]]:
    """Group BuildKit plain lines by step number; other lines are the engine's classic text
    (dockerd 20.10 adds "Successfully tagged" after a BuildKit build)."""
    steps: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"#(\d+) (.*)", line)
        if match:
            steps.setdefault(match.group(1), []).append(match.group(2))
    return steps


@pytest.mark.dockerd
def test_failing_classic_build_exits_1_with_the_engines_error(cli: Cli) -> None:
    done = cli.run(
        "build",
        # Docker 26 prefers BuildKit, which buildsdk follows by default; this is the classic
        # builder's output.
        "--builder",
        "classic",
        "--progress",
        "plain",
        "--network",
        cli.network,
        "-f",
        str(cli.context / "Dockerfile.fail"),
        str(cli.context),
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "The command '/bin/sh -c echo about to fail && exit 4' returned a non-zero code: 4"
    )


@pytest.mark.dockerd
def test_failing_buildkit_build_shows_the_error_step(cli: Cli) -> None:
    done = cli.run(
        "build",
        "--builder",
        "buildkit",
        "--progress",
        "plain",
        "--network",
        cli.network,
        "-f",
        "ctx/Dockerfile.fail",
        str(cli.context),
    )
    assert done.returncode == 1
    assert re.search(r"^#\d+ \d+\.\d+ about to fail$", done.stderr, re.MULTILINE)
    assert re.search(r"^#\d+ ERROR: .*exit code: 4$", done.stderr, re.MULTILINE)
    assert done.stderr.splitlines()[-1].endswith("exit code: 4")


@pytest.mark.dockerd
def test_quiet_prints_only_the_image_id(cli: Cli, dockerd_http: httpx.Client) -> None:
    done = cli.run("build", "-q", "--network", cli.network, "-t", cli.tag, str(cli.context))
    assert done.returncode == 0, done.stderr
    assert done.stdout == _image_id(dockerd_http, cli.tag) + "\n"
    assert done.stderr == ""


@pytest.mark.dockerd
def test_quiet_failure_shows_the_hidden_output(cli: Cli) -> None:
    # The classic builder's words (Docker 26 would choose BuildKit by default).
    done = cli.run(
        "build",
        "-q",
        "--builder",
        "classic",
        "--network",
        cli.network,
        "-f",
        "ctx/Dockerfile.fail",
        str(cli.context),
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "about to fail" in done.stderr.splitlines()
    assert done.stderr.splitlines()[-1].endswith("returned a non-zero code: 4")


@pytest.mark.dockerd
def test_iidfile_and_rawjson(cli: Cli, dockerd_http: httpx.Client) -> None:
    iidfile = cli.tmp / "iid"
    done = cli.run(
        "build",
        # Docker 26 prefers BuildKit, which buildsdk follows by default; this is the classic
        # builder's output.
        "--builder",
        "classic",
        "--progress",
        "rawjson",
        "--iidfile",
        str(iidfile),
        "--network",
        cli.network,
        "-t",
        cli.tag,
        str(cli.context),
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"log", "image_id"} <= {event["kind"] for event in events}
    image_id = _image_id(dockerd_http, cli.tag)
    assert {"kind": "image_id", "image_id": image_id} in events
    assert iidfile.read_text() == image_id


@pytest.mark.dockerd
def test_build_from_stdin_tar(cli: Cli, dockerd_http: httpx.Client) -> None:
    archive = subprocess.run(
        ["tar", "-C", str(cli.context), "-cf", "-", "Dockerfile"],
        capture_output=True,
        check=True,
    ).stdout
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "buildsdk",
            "build",
            "-q",
            "--network",
            cli.network,
            "-t",
            cli.tag,
            "-",
        ],
        env=cli.env,
        input=archive,
        capture_output=True,
        timeout=300,
        check=False,
    )
    if cli.engine.containerd_store:
        # Docker 26 prefers BuildKit, and a tar context cannot reach BuildKit on the
        # containerd image store (moby/moby#47717): the user gets the engine's error.
        assert done.returncode == 1
        assert b"failed to read downloaded context" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == _image_id(dockerd_http, cli.tag) + "\n"


@pytest.mark.dockerd
def test_info_names_the_engine_and_its_builders(cli: Cli) -> None:
    done = cli.run("info")
    assert done.returncode == 0, done.stderr
    rows = dict(re.split(r":\s+", line.strip(), maxsplit=1) for line in done.stdout.splitlines())
    assert rows["Endpoint"] == cli.env["DOCKER_HOST"]
    assert rows["API version"].startswith(f"{cli.engine.api} ")
    assert rows["Builders"].startswith("classic, buildkit")
    assert rows["Engine API"].endswith(f"to {cli.engine.api}")


@pytest.mark.dockerd
def test_prune_reports_space_in_human_units(cli: Cli) -> None:
    built = cli.run(
        "build",
        "--builder",
        "buildkit",
        "--progress",
        "quiet",
        "--network",
        cli.network,
        "--no-cache",
        str(cli.context),
    )
    assert built.returncode == 0, built.stderr
    done = cli.run("prune", "--all")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"Total reclaimed space: \d+(\.\d+)?[kMG]?B", lines[-1])
    assert lines[0] == "Deleted build cache objects:"
    assert all(re.fullmatch(r"[0-9a-z]{25}", line) for line in lines[1:-2])


def _cached_record(cli: Cli, dockerd_http: httpx.Client) -> dict[str, object]:
    """Build a step only this test makes and return its record from `GET /system/df`."""
    marker = uuid.uuid4().hex
    context = cli.tmp / f"ctx-{marker}"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {cli.base_image}\nRUN head -c 3000 /dev/zero > /blob-{marker}\n"
    )
    built = cli.run(
        "build", "--builder", "buildkit", "--progress", "quiet", "--network", cli.network,
        str(context),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    usage = dockerd_http.get("/system/df").json()["BuildCache"] or []
    records = [record for record in usage if marker in record["Description"]]
    assert len(records) == 1, records
    record: dict[str, object] = records[0]
    return record


@pytest.mark.dockerd
def test_prune_deletes_through_control_prune_where_the_engine_offers_it(
    cli: Cli, dockerd_http: httpx.Client
) -> None:
    record = _cached_record(cli, dockerd_http)
    record_id = str(record["ID"])
    flags = ("--all", "--filter", f"id={record_id}")
    plan = cli.run("prune", "--dry-run", *flags)
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    assert lines[0] == f"# engine: {cli.env['DOCKER_HOST']}"
    if cli.engine.is_20:
        # Docker 20.10 (API 1.41) predates the Control API builds: POST /build/prune.
        assert lines[1] == "# endpoint: build (POST /build/prune)"
        assert lines[2].startswith("POST /v1.41/build/prune?all=1&filters=")
    else:
        assert lines[1] == "# endpoint: grpc (Control/Prune)"
        assert json.loads(lines[2]) == {"all": True, "filter": [f"id~={record_id}"]}
    # The dry run removed nothing.
    usage = dockerd_http.get("/system/df").json()["BuildCache"] or []
    assert record_id in {item["ID"] for item in usage}

    done = cli.run("prune", *flags)
    assert done.returncode == 0, done.stderr
    size = human_size(int(str(record["Size"])))
    assert done.stdout == (
        f"Deleted build cache objects:\n{record_id}\n\nTotal reclaimed space: {size}\n"
    )
    usage = dockerd_http.get("/system/df").json()["BuildCache"] or []
    assert record_id not in {item["ID"] for item in usage}


@pytest.mark.dockerd
def test_prune_pinned_to_build_prune_prints_the_same(cli: Cli, dockerd_http: httpx.Client) -> None:
    record = _cached_record(cli, dockerd_http)
    record_id = str(record["ID"])
    flags = ("--endpoint", "build", "--all", "--filter", f"id={record_id}")
    plan = cli.run("prune", "--dry-run", *flags)
    assert plan.stdout.splitlines()[1:] == [
        "# endpoint: build (POST /build/prune)",
        f"POST /v{cli.engine.api}/build/prune?all=1&filters="
        + urllib.parse.quote_plus(json.dumps({"id": {record_id: True}}, separators=(",", ":"))),
    ]
    done = cli.run("prune", *flags)
    assert done.returncode == 0, done.stderr
    size = human_size(int(str(record["Size"])))
    assert done.stdout == (
        f"Deleted build cache objects:\n{record_id}\n\nTotal reclaimed space: {size}\n"
    )
    # A space option Control/Prune lacks keeps auto on POST /build/prune.
    plan = cli.run("prune", "--dry-run", "--max-used-space", "100g")
    if ApiVersion.parse(cli.engine.api) >= ApiVersion(1, 48):
        assert plan.stdout.splitlines()[1] == "# endpoint: build (POST /build/prune)"
    else:
        assert plan.returncode == 2
        assert "max-used-space" in plan.stderr


# -- the live view in a pseudo-terminal ---------------------------------------------------


class PtyProcess:
    """A process whose stdin, stdout and stderr are a pseudo-terminal of a given size."""

    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: Path, *, cols: int, rows: int
    ) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True
        )
        os.close(slave)
        self.output = bytearray()
        self._eof = False

    def _read_once(self, wait: float) -> None:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            if self.process.poll() is not None:
                self._eof = True
            return
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            data = b""
        if not data:
            self._eof = True
        self.output += data

    def read_until(self, pattern: bytes, timeout: float = 120.0) -> None:
        """Read until `pattern` (a regular expression) appears in the output."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output):
            assert not self._eof, f"ended before {pattern!r}: {self.output!r}"
            assert time.monotonic() < deadline, f"no {pattern!r} in {self.output!r}"
            self._read_once(0.2)

    def finish(self, timeout: float = 300.0) -> tuple[int, str]:
        """Read everything until the process ends; return its status and the text."""
        deadline = time.monotonic() + timeout
        try:
            while not self._eof and time.monotonic() < deadline:
                self._read_once(0.2)
            status = self.process.wait(timeout=30)
        finally:
            os.close(self.master)
        # The terminal turns "\n" into "\r\n"; the screen model treats both alike.
        return status, self.output.decode("utf-8", "replace")


def run_in_pty(
    argv: list[str], env: dict[str, str], cwd: Path, *, cols: int = 100, rows: int = 40
) -> tuple[int, str]:
    """Run `argv` in a pseudo-terminal to the end; return its status and output."""
    return PtyProcess(argv, env, cwd, cols=cols, rows=rows).finish()


@pytest.mark.dockerd
def test_live_view_in_a_terminal_on_a_real_buildkit_build(cli: Cli) -> None:
    status, output = run_in_pty(
        [
            sys.executable,
            "-m",
            "buildsdk",
            "build",
            "--builder",
            "buildkit",
            "--network",
            cli.network,
            "--no-cache",
            "-t",
            cli.tag,
            str(cli.context),
        ],
        {**cli.env, "TERM": "xterm"},
        cli.tmp,
    )
    assert status == 0, output
    assert "\x1b[?25l" in output
    assert output.rstrip().endswith("\x1b[?25h")
    assert re.search(r"\x1b\[\d+A", output), "the view never moved the cursor up to redraw"
    screen = render_screen(output, width=100)
    # As buildx's first frame, the first on a fresh screen leaves the top line blank.
    assert screen[0] == ""
    assert re.fullmatch(r"\[\+\] Building \d+\.\ds \((\d+)/\1\) FINISHED", screen[1]), screen
    assert not any("Successfully tagged" in line for line in screen)
    run_lines = [line for line in screen if line.startswith(" => [2/2] RUN echo")]
    assert len(run_lines) == 1, screen
    assert re.search(r" \d+\.\ds$", run_lines[0])
    assert all(len(line) <= 100 for line in screen)
    assert not any(line.startswith("#") for line in screen)  # not the plain format


def test_live_view_redraws_while_a_slow_stream_arrives(tmp_path: Path) -> None:
    """A recorded BuildKit stream replayed slowly: several redraws, each in place."""
    stream = (STREAMS / "buildkit_ok.jsonl").read_bytes().splitlines(keepends=True)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    with recording_engine(stream=stream, delay=0.05) as engine:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "DOCKER_CONFIG": str(tmp_path),
            "PYTHONPATH": str(REPO_ROOT),
            "TERM": "xterm",
        }
        status, output = run_in_pty(
            [
                sys.executable,
                "-m",
                "buildsdk",
                "build",
                "-H",
                engine.host,
                "--builder",
                "buildkit",
                "--progress",
                "tty",
                "-t",
                "fixture:bk",
                str(context),
            ],
            env,
            tmp_path,
            cols=90,
        )
    assert status == 0, output
    ups = re.findall(r"\x1b\[(\d+)A", output)
    assert len(ups) >= 3, "expected several redraws of the live region"
    # Stream length is 24 messages * 50 ms; redraws are limited to one per 100 ms.
    assert len(ups) <= 24
    screen = render_screen(output, width=90)
    # Step lines end one column short of the terminal's width (read from the terminal
    # itself), as buildx's do.
    assert len(screen[2]) == 89
    # The engine's "Successfully tagged" text is left out, as docker's BuildKit view does.
    assert re.fullmatch(r"\[\+\] Building \d+\.\ds \(7/7\) FINISHED", screen[1])
    # Steps in the order they started, as buildx lists them.
    assert [line.split("  ")[0] for line in screen[2:9]] == [
        " => [internal] load remote build context",
        " => copy /context /",
        " => [internal] load metadata for docker.io/library/busybox:latest",
        " => [1/3] FROM docker.io/library/busybox:latest",
        ' => [2/3] RUN echo "buildkit stdout" && echo "buildkit stderr" >&2',
        ' => [3/3] RUN for i in 1 2 3; do echo "line $i"; done; echo "naïve café ✓ 日本"',
        " => exporting to image",
    ]


def test_auto_progress_is_plain_without_a_terminal(tmp_path: Path) -> None:
    stream = (STREAMS / "buildkit_ok.jsonl").read_bytes().splitlines(keepends=True)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    with recording_engine(stream=stream) as engine:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "buildsdk",
                "build",
                "-H",
                engine.host,
                "--builder",
                "buildkit",
                str(context),
            ],
            env={
                "PATH": os.environ.get("PATH", ""),
                "DOCKER_CONFIG": str(tmp_path),
                "PYTHONPATH": str(REPO_ROOT),
                "TERM": "xterm",
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stderr
    assert done.stderr.startswith("#1 [internal] load remote build context\n#1 DONE 0.0s\n")


def _pull_stream() -> list[bytes]:
    """A classic build that pulls two layers, with byte counters, as dockerd sends it."""
    messages: list[dict[str, object]] = [
        {"stream": "Step 1/1 : FROM example/app:1\n"},
        {"status": "Pulling from example/app", "id": "1"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
    ]
    for step in range(1, 11):
        for layer, total in (("aaaaaaaaaaaa", 30_000_000), ("bbbbbbbbbbbb", 5_000_000)):
            current = total * step // 10
            messages.append(
                {
                    "status": "Downloading",
                    "progressDetail": {"current": current, "total": total},
                    "id": layer,
                }
            )
    messages += [
        {"status": "Pull complete", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
        {"status": "Pull complete", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
        {"status": "Digest: sha256:" + "c" * 64},
        {"stream": " ---> 0123456789ab\n"},
        {"aux": {"ID": "sha256:" + "d" * 64}},
        {"stream": "Successfully built 0123456789ab\n"},
    ]
    return [json.dumps(m).encode() + b"\r\n" for m in messages]


def test_live_view_pull_bars_redraw_in_place(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM example/app:1\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DOCKER_CONFIG": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
        "TERM": "xterm",
    }
    with recording_engine(stream=_pull_stream(), delay=0.03) as engine:
        pty_process = PtyProcess(
            [sys.executable, "-m", "buildsdk", "build", "-H", engine.host, str(context)],
            env,
            tmp_path,
            cols=80,
            rows=24,
        )
        # While the layers download, both bars are on screen, one line each, updated in
        # place: the screen never holds two lines for the same layer.
        pty_process.read_until(rb"aaaaaaaaaaaa: Downloading \[=+")
        pty_process.read_until(rb"bbbbbbbbbbbb: Downloading \[=+")
        middle = render_screen(pty_process.output.decode("utf-8", "replace"), width=80)
        assert sum(line.startswith("aaaaaaaaaaaa:") for line in middle) == 1, middle
        assert sum(line.startswith("bbbbbbbbbbbb:") for line in middle) == 1, middle
        status, output = pty_process.finish()
    assert status == 0, output
    assert len(re.findall(r"\x1b\[\d+A", output)) >= 3
    assert render_screen(output, width=80) == [
        "Step 1/1 : FROM example/app:1",
        "1: Pulling from example/app",
        "aaaaaaaaaaaa: Pull complete",
        "bbbbbbbbbbbb: Pull complete",
        "Digest: sha256:" + "c" * 64,
        " ---> 0123456789ab",
        "Successfully built 0123456789ab",
    ]


@pytest.mark.dockerd
def test_interrupt_stops_the_build_and_restores_the_terminal(
    cli: Cli, dockerd_http: httpx.Client
) -> None:
    (cli.context / "Dockerfile.slow").write_text(
        f"FROM {cli.base_image}\nRUN echo started && sleep 60\n"
    )
    pty_process = PtyProcess(
        [
            sys.executable,
            "-m",
            "buildsdk",
            "build",
            "--builder",
            "buildkit",
            "--network",
            cli.network,
            "--no-cache",
            "-t",
            cli.tag,
            "-f",
            "ctx/Dockerfile.slow",
            str(cli.context),
        ],
        {**cli.env, "TERM": "xterm"},
        cli.tmp,
        cols=100,
        rows=30,
    )
    pty_process.read_until(rb"RUN echo started && sleep 60")
    started = time.monotonic()
    pty_process.process.send_signal(signal.SIGINT)
    status, output = pty_process.finish(timeout=60)
    assert status == 130, output
    assert time.monotonic() - started < 30
    assert output.rstrip().endswith("buildsdk: interrupted")
    assert "\x1b[?25h" in output  # the cursor is visible again
    # Closing the connection cancelled the build: the tag was never written.
    assert dockerd_http.get(f"/images/{cli.tag}/json").status_code == 404


@pytest.mark.podman
def test_classic_build_on_podman(
    all_engines: Engines, podman_http: httpx.Client, tmp_path: Path
) -> None:
    engines = all_engines  # Podman only: not one test per Docker engine
    assert engines.podman_host is not None
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {engines.base_image}\nRUN echo podman-ok\n")
    tag = f"buildsdk-cli-test:{uuid.uuid4().hex[:12]}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
    }
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "buildsdk",
                "build",
                "-H",
                engines.podman_host,
                "--network",
                engines.podman_network,
                "--progress",
                "plain",
                "-t",
                tag,
                str(context),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        # Podman's ping prefers no builder: the classic API, its output on stdout.
        assert "podman-ok" in done.stdout.splitlines()
        image = podman_http.get(f"/images/{tag}/json")
        assert image.status_code == 200, image.text
        short = image.json()["Id"].removeprefix("sha256:")[:12]
        assert f"Successfully built {short}" in done.stdout
    finally:
        podman_http.delete(f"/images/{tag}", params={"force": "1"})


@pytest.mark.podman
def test_prune_on_podman_stays_on_build_prune(all_engines: Engines, tmp_path: Path) -> None:
    assert all_engines.podman_host is not None
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
    }
    plan = subprocess.run(
        [sys.executable, "-m", "buildsdk", "prune", "-H", all_engines.podman_host, "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert plan.returncode == 0, plan.stderr
    # Podman serves no Control API, whatever API version it claims.
    assert plan.stdout.splitlines()[1:] == [
        "# endpoint: build (POST /build/prune)",
        "POST /v1.41/build/prune",
    ]


def test_live_view_restores_the_cursor_when_no_engine_answers(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    status, output = run_in_pty(
        [
            sys.executable,
            "-m",
            "buildsdk",
            "build",
            "-H",
            "unix:///nonexistent/engine.sock",
            "--progress",
            "tty",
            str(context),
        ],
        {
            "PATH": os.environ.get("PATH", ""),
            "DOCKER_CONFIG": str(tmp_path),
            "PYTHONPATH": str(REPO_ROOT),
            "TERM": "xterm",
        },
        tmp_path,
    )
    assert status == 3, output
    # The engine is asked which builder it prefers before the view starts: the cursor is
    # never hidden, or shown again.
    hidden = output.rfind("\x1b[?25l")
    assert hidden == -1 or output.rfind("\x1b[?25h") > hidden
    assert "cannot reach the engine at unix:///nonexistent/engine.sock" in output


def test_option_too_new_for_the_engine_exits_2_without_sending(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    with recording_engine(api_version="1.31") as engine:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "buildsdk",
                "build",
                "-H",
                engine.host,
                "--platform",
                "linux/amd64",
                str(context),
            ],
            env={
                "PATH": os.environ.get("PATH", ""),
                "DOCKER_CONFIG": str(tmp_path),
                "PYTHONPATH": str(REPO_ROOT),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        requests = [(r.method, r.path) for r in engine.requests]
    assert done.returncode == 2, done.stderr
    assert "needs API version 1.32 or newer; the engine speaks 1.31" in done.stderr
    assert "--platform" in done.stderr
    # The engine was asked its version, and nothing was built.
    assert requests
    assert all(path.endswith("/_ping") for _, path in requests)


# -- which builder, which stream: as docker -------------------------------------------------


def _build_against(
    tmp_path: Path, *, builder_version: str | None, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[tuple[str, str]]]:
    """Run `buildsdk build CTX` against a fake engine whose ping has `builder_version`;
    return the process and the query of the build request it sent (empty if none)."""
    context = tmp_path / "ctx"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text("FROM scratch\n")
    with recording_engine(builder_version=builder_version) as engine:
        done = subprocess.run(
            [sys.executable, "-m", "buildsdk", "build", "-H", engine.host, str(context)],
            env={
                "PATH": os.environ.get("PATH", ""),
                "DOCKER_CONFIG": str(tmp_path),
                "PYTHONPATH": str(REPO_ROOT),
                **(env or {}),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        builds = engine.builds()
    return done, builds[0].query if builds else []


@pytest.mark.parametrize(
    ("builder_version", "env", "version"),
    [
        # Docker 23+ answers `Builder-Version: 2`: docker builds with BuildKit.
        ("2", {}, "2"),
        # dockerd 20.10 without the buildkit feature sends no header, or "1": classic.
        (None, {}, "1"),
        ("1", {}, "1"),
        # DOCKER_BUILDKIT, when set, wins over the engine either way.
        ("2", {"DOCKER_BUILDKIT": "0"}, "1"),
        ("1", {"DOCKER_BUILDKIT": "true"}, "2"),
    ],
)
def test_the_builder_follows_the_engine_and_docker_buildkit(
    tmp_path: Path, builder_version: str | None, env: dict[str, str], version: str
) -> None:
    done, query = _build_against(tmp_path, builder_version=builder_version, env=env)
    assert done.returncode == 0, done.stderr
    assert dict(query).get("version") == version


def test_docker_buildkit_must_be_a_boolean_as_for_docker(tmp_path: Path) -> None:
    done, query = _build_against(tmp_path, builder_version="2", env={"DOCKER_BUILDKIT": "yes"})
    assert done.returncode == 2
    assert "DOCKER_BUILDKIT environment variable expects boolean value" in done.stderr
    assert query == []


def test_classic_output_goes_to_stdout_like_docker_build(tmp_path: Path) -> None:
    # `docker build ctx > log` keeps the classic builder's output; BuildKit's goes to stderr.
    done, _ = _build_against(tmp_path, builder_version=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Step 1/1 : FROM scratch\nSuccessfully built abababababab\n"
    assert done.stderr == ""
