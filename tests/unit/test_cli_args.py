"""`buildsdk build`'s flags become the `BuildOptions` (and so the query) `docker build` means.

Tables of command lines against the options they must produce, the Docker CLI's special
readings (`--flag=false`, `--build-arg KEY`, `-f` relative to the current directory,
stdin contexts), and the exit statuses of bad command lines, which must be reported before
any connection is attempted.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsdk.build import BuildOptions
from buildsdk.cli import (
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    build_options_from_args,
    main,
    parse_args,
)
from buildsdk.versions import MAX_API_VERSION
from tests.recording_engine import recording_engine

REPO_ROOT = Path(__file__).resolve().parents[2]

# An address where no engine listens: a command that tried to connect would exit with
# EXIT_UNREACHABLE, so EXIT_USAGE proves the mistake was caught before connecting.
NOWHERE = "unix:///nonexistent/buildsdk-test.sock"


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    """A context directory with a Dockerfile and a second one in a sub-directory."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "sub" / "Dockerfile.dev").write_text("FROM scratch\n")
    return tmp_path


def options(argv: list[str], ctx: Path, env: dict[str, str] | None = None) -> BuildOptions:
    args = parse_args(["build", *argv, str(ctx)])
    return build_options_from_args(args, env=env or {}, cwd=ctx)


# (flags, BuildOptions fields they must set; every other field keeps its default)
TABLE: list[tuple[list[str], dict[str, Any]]] = [
    ([], {}),
    (["-t", "app:1", "--tag", "app:latest"], {"tag": ("app:1", "app:latest")}),
    (["--no-cache"], {"nocache": True}),
    (["--no-cache=false"], {}),
    (["--pull=true", "-q"], {"pull": True, "quiet": True}),
    (["--rm=false"], {"rm": False}),
    (["--rm=0", "--rm"], {}),
    (["--force-rm=T"], {"forcerm": True}),
    (["--squash"], {"squash": True}),
    (["--compress"], {"gzip": True}),
    (["--build-arg", "A=1", "--build-arg", "B="], {"buildargs": {"A": "1", "B": ""}}),
    (["--build-arg", "A=1", "--build-arg", "A=2"], {"buildargs": {"A": "2"}}),
    (["--build-arg", "K=v=w"], {"buildargs": {"K": "v=w"}}),
    (["--label", "k", "--label", "a=b=c"], {"labels": {"k": "", "a": "b=c"}}),
    (
        ["-m", "512m", "--memory-swap", "-1"],
        {"container_limits": {"memory": "512m", "memswap": -1}},
    ),
    (
        ["-c", "512", "--cpuset-cpus", "0-1", "--cpuset-mems", "0", "--cpu-period", "100000"],
        {
            "container_limits": {
                "cpushares": 512,
                "cpusetcpus": "0-1",
                "cpusetmems": "0",
                "cpuperiod": 100000,
            }
        },
    ),
    (["--cpu-quota=50000"], {"container_limits": {"cpuquota": 50000}}),
    (["--shm-size", "128m"], {"shmsize": 128 * 1024 * 1024}),
    (["--ulimit", "nofile=1:2", "--ulimit", "nofile=3:4"], {"ulimits": ["nofile=3:4"]}),
    (["--add-host", "db=10.0.0.2"], {"extra_hosts": ("db:10.0.0.2",)}),
    (["--network", "none"], {"network_mode": "none"}),
    (["--platform", "linux/arm64"], {"platform": "linux/arm64"}),
    (["--target", "builder"], {"target": "builder"}),
    (["--cache-from", "a:1", "--cache-from", "b:2"], {"cache_from": ("a:1", "b:2")}),
    (["--cgroup-parent", "/g"], {"cgroup_parent": "/g"}),
    (["--isolation", "default"], {"isolation": "default"}),
    (["--security-opt", "seccomp=unconfined"], {"security_opt": ("seccomp=unconfined",)}),
    (["--builder", "buildkit"], {"version": "2"}),
    (["--builder=classic"], {"version": "1"}),
    (
        ["--output", "type=local,dest=out"],
        {"version": "2", "outputs": ["type=local,dest=out"]},
    ),
    (["-o", "out"], {"version": "2", "outputs": ["type=local,dest=out"]}),
]


@pytest.mark.parametrize(("flags", "fields"), TABLE, ids=[" ".join(f) or "none" for f, _ in TABLE])
def test_flags_become_options(ctx: Path, flags: list[str], fields: dict[str, Any]) -> None:
    expected = BuildOptions(path=str(ctx), **fields)
    assert options(flags, ctx) == expected


def test_query_of_a_typical_command_line(ctx: Path) -> None:
    opts = options(
        ["-t", "a:1", "--build-arg", "X=1", "--label", "k=v", "--rm=false", "--pull"], ctx
    )
    assert opts.to_query("1.41") == [
        ("buildargs", '{"X":"1"}'),
        ("dockerfile", "Dockerfile"),
        ("labels", '{"k":"v"}'),
        ("pull", "1"),
        ("rm", "0"),
        ("t", "a:1"),
        ("version", "1"),
    ]


def test_build_arg_without_value_reads_the_environment(ctx: Path) -> None:
    opts = options(["--build-arg", "SET", "--build-arg", "UNSET"], ctx, env={"SET": "from env"})
    # As opts.ConvertKVStringsToMapWithNil: an unset variable is sent as JSON null.
    assert opts.buildargs == {"SET": "from env", "UNSET": None}
    assert ("buildargs", '{"SET":"from env","UNSET":null}') in opts.to_query("1.41")


def test_default_platform_comes_from_the_environment(ctx: Path) -> None:
    env = {"DOCKER_DEFAULT_PLATFORM": "linux/arm64"}
    assert options([], ctx, env=env).platform == "linux/arm64"
    assert options(["--platform", "linux/amd64"], ctx, env=env).platform == "linux/amd64"


def test_docker_buildkit_env_chooses_the_builder(ctx: Path) -> None:
    assert options([], ctx, env={"DOCKER_BUILDKIT": "1"}).version == "2"
    assert options([], ctx, env={"DOCKER_BUILDKIT": "0"}).version == "1"
    assert options(["--builder", "classic"], ctx, env={"DOCKER_BUILDKIT": "1"}).version == "1"


def test_file_is_relative_to_the_current_directory(ctx: Path, tmp_path_factory: Any) -> None:
    elsewhere = tmp_path_factory.mktemp("cwd")
    args = parse_args(["build", "-f", "sub/Dockerfile.dev", str(ctx)])
    opts = build_options_from_args(args, env={}, cwd=ctx)
    assert opts.dockerfile == str(ctx / "sub" / "Dockerfile.dev")
    with pytest.raises(ValueError, match=r"the Dockerfile \(sub/Dockerfile.dev\) does not exist"):
        build_options_from_args(args, env={}, cwd=elsewhere)


def test_file_from_stdin_keeps_the_directory_context(ctx: Path) -> None:
    args = parse_args(["build", "-f", "-", str(ctx)])
    opts = build_options_from_args(args, env={}, cwd=ctx, stdin=io.BytesIO(b"FROM busybox\n"))
    assert opts.path == str(ctx)
    assert opts.fileobj is not None
    assert opts.fileobj.read() == b"FROM busybox\n"
    assert not opts.custom_context


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_stdin_tar_is_a_custom_context(ctx: Path) -> None:
    archive = _tar({"Dockerfile": b"FROM scratch\n", "a.txt": b"x" * 2000})
    args = parse_args(["build", "-"])
    opts = build_options_from_args(args, env={}, cwd=ctx, stdin=io.BytesIO(archive))
    assert opts.custom_context
    assert opts.fileobj is not None
    assert opts.fileobj.read() == archive  # the peeked header is not lost


def test_stdin_dockerfile_is_not_a_custom_context(ctx: Path) -> None:
    args = parse_args(["build", "-"])
    opts = build_options_from_args(args, env={}, cwd=ctx, stdin=io.BytesIO(b"FROM scratch\n"))
    assert not opts.custom_context
    assert opts.fileobj is not None
    assert opts.fileobj.read() == b"FROM scratch\n"


def test_remote_url_is_sent_as_remote(ctx: Path) -> None:
    args = parse_args(["build", "-f", "docker/Dockerfile", "https://example.com/repo.git"])
    opts = build_options_from_args(args, env={}, cwd=ctx)
    query = dict(opts.to_query("1.41"))
    assert query["remote"] == "https://example.com/repo.git"
    assert query["dockerfile"] == "docker/Dockerfile"


# -- exit statuses --------------------------------------------------------------------------

USAGE_ERRORS: list[tuple[list[str], str]] = [
    (["--rm=maybe"], 'invalid argument "maybe" for "--rm" flag'),
    (["--memory", "12x"], "invalid --memory: memory: invalid unit 'x' in size '12x'"),
    (["--memory", "1m"], "invalid --memory"),
    (["-t", "UPPER:1"], "invalid --tag"),
    (["--platform", "linux/amd64/v8/extra"], "platform must be os[/arch[/variant]]"),
    (["--add-host", "nohost"], "extra_hosts entry 'nohost'"),
    (["--ulimit", "nofile=a"], "invalid ulimit"),
    (["--ulimit", "bogus=1"], "ulimit"),
    (["--cpu-shares", "many"], "invalid integer 'many'"),
    (["--shm-size", "0"], "shmsize"),
    (["--isolation", "vm"], "isolation"),
    (["--output", "name=x,dest=out"], "type is required"),
    (["--builder", "other"], "invalid choice: 'other'"),
    (["--progress", "fancy"], "invalid choice: 'fancy'"),
    (["--builder", "buildkit", "--rm=false"], "rm"),
    (["--builder", "classic", "-o", "type=tar,dest=x.tar"], "outputs"),
    (["--api-version", "one"], "invalid API version"),
]


@pytest.mark.parametrize(
    ("flags", "message"), USAGE_ERRORS, ids=[" ".join(f) for f, _ in USAGE_ERRORS]
)
def test_invalid_options_exit_2_before_connecting(
    ctx: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["build", "-H", NOWHERE, *flags, str(ctx)])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE, err
    assert message in err
    assert "cannot reach" not in err


@pytest.mark.parametrize(
    ("flags", "messages"),
    [
        (
            ["--memory", "5k", "--builder", "buildkit"],
            ["invalid --memory: memory must be at least 6 MiB", "container_limits is ignored"],
        ),
        (
            ["--builder", "buildkit", "--rm=false", "--squash", "--shm-size", "0", "-t", "A"],
            [
                "invalid --shm-size",
                "invalid --tag",
                "--rm: rm is ignored by BuildKit",
                "--squash: squash is ignored by BuildKit",
            ],
        ),
        (
            [
                "--secret",
                "id=a,src=/no/such/file",
                "--output",
                "name=x,dest=x",
                "--api-version",
                "1.30",
            ],
            ["/no/such/file' is not a readable file", "type is required", "API version 1.38"],
        ),
        (
            ["-f", "nope/Dockerfile", "--memory", "5k"],
            ["the Dockerfile (nope/Dockerfile) does not exist", "invalid --memory"],
        ),
    ],
)
def test_every_problem_of_one_command_line_is_reported_at_once(
    ctx: Path, flags: list[str], messages: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["build", "-H", NOWHERE, *flags, str(ctx)])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE, err
    lines = err.splitlines()
    assert lines[0].startswith("buildsdk: ")
    for message in messages:
        assert sum(message in line for line in lines) == 1, (message, err)
    assert len(lines) == len(messages), err


def test_missing_context_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["build", "-H", NOWHERE, str(tmp_path / "nope")])
    assert status == EXIT_USAGE
    assert 'unable to prepare context: path "' in capsys.readouterr().err


def test_missing_path_argument_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build"]) == EXIT_USAGE
    assert "PATH | URL | -" in capsys.readouterr().err


def test_unknown_command_and_flag_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == EXIT_USAGE
    assert main(["build", "--frobnicate", "."]) == EXIT_USAGE
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_stdin_cannot_be_context_and_dockerfile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "-H", NOWHERE, "-f", "-", "-"]) == EXIT_USAGE
    assert "stdin for both" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--build-arg", "--memory-swap", "--iidfile", "--progress", "--dry-run"):
        assert flag in out


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # A separate process, as a user runs it; it also keeps the socket a failed connect
    # leaves behind (httpcore) out of this test process.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "buildsdk", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unreachable_engine_exits_3_with_the_address(ctx: Path) -> None:
    done = _run(["build", "-H", NOWHERE, "--progress", "plain", str(ctx)], ctx)
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    assert "cannot reach the engine at unix:///nonexistent/buildsdk-test.sock" in done.stderr


@pytest.mark.parametrize("command", [["info"], ["prune", "--all"]])
def test_unreachable_engine_exits_3_for_info_and_prune(command: list[str], ctx: Path) -> None:
    done = _run([*command, "-H", NOWHERE], ctx)
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    assert "/nonexistent/buildsdk-test.sock" in done.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--filter", "until"], "expected KEY=VALUE"),
        (["--filter", "type=a", "--filter", "type=b"], "only once"),
        (["--filter", "until=yesterday"], "until must be a Go duration"),
        (["--filter", "colour=red"], "colour"),
        (["--keep-storage", "lots"], "keep_storage"),
    ],
)
def test_prune_usage_errors_exit_2(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prune", "-H", NOWHERE, *flags]) == EXIT_USAGE
    assert message in capsys.readouterr().err


# -- dry run ----------------------------------------------------------------------------------


def test_dry_run_prints_the_request_without_connecting(
    ctx: Path, tmp_path_factory: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    config = tmp_path_factory.mktemp("config")
    auth = "dXNlcjpwYXNz"  # user:pass
    (config / "config.json").write_text(
        json.dumps({"auths": {"b.example:5000": {"auth": auth}, "a.example": {"auth": auth}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    (ctx / "data.bin").write_bytes(b"x" * 1000)
    status = main(
        [
            "build",
            "-H",
            NOWHERE,
            "--dry-run",
            "--api-version",
            "1.41",
            "-t",
            "a:1",
            "--label",
            "k=v w",
            str(ctx),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("POST /v1.41/build?")
    assert '  labels={"k":"v w"}' in lines
    assert "  t=a:1" in lines
    assert "  version=1" in lines
    assert "  X-Registry-Config: <2 registries: a.example, b.example:5000>" in lines
    assert "dXNlcjpwYXNz" not in out
    assert "pass" not in out
    summary = [line for line in lines if line.startswith("context:")]
    # Dockerfile (13 bytes) + sub/Dockerfile.dev (13) + data.bin (1000).
    assert summary
    assert summary[0].startswith("context: 3 files, 1026 bytes")


# -- properties -------------------------------------------------------------------------------

_keys = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="="),
    min_size=1,
    max_size=8,
)
_values = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12
)


@given(st.dictionaries(_keys, _values, max_size=5))
def test_build_args_round_trip(pairs: dict[str, str]) -> None:
    flags: list[str] = []
    for key, value in pairs.items():
        flags += ["--build-arg", f"{key}={value}"]
    args = parse_args(["build", *flags, "https://example.com/x.git"])
    assert build_options_from_args(args, env={}).buildargs == pairs


@given(
    st.sampled_from(["--no-cache", "--pull", "--quiet", "--rm", "--force-rm", "--squash"]),
    st.sampled_from(
        ["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"]
    ),
)
def test_bool_flags_take_pflag_values(flag: str, value: str) -> None:
    args = parse_args(["build", f"{flag}={value}", "https://example.com/x.git"])
    dest = flag.lstrip("-").replace("-", "_")
    assert getattr(args, dest) is (value in ("1", "t", "T", "TRUE", "true", "True"))


# -- buildsdk context -------------------------------------------------------------------------


@pytest.fixture
def ignored(tmp_path: Path) -> Path:
    """A context whose .dockerignore excludes logs but re-includes one."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / ".dockerignore").write_text("# comment\n*.log\nlogs\n!logs/keep.log\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "a.log").write_text("a\n")
    (tmp_path / "logs" / "keep.log").write_text("keep\n")
    (tmp_path / "logs" / "x.txt").write_text("x\n")
    (tmp_path / "src" / "main.py").write_text("print(1)\n")
    return tmp_path


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("a.log", "a.log: excluded by .dockerignore line 2: *.log"),
        ("logs/x.txt", "logs/x.txt: excluded by .dockerignore line 3: logs"),
        ("logs/keep.log", "logs/keep.log: included again by .dockerignore line 4: !logs/keep.log"),
        ("src/main.py", "src/main.py: included (no .dockerignore line matches it)"),
    ],
)
def test_context_why_names_the_deciding_line(
    ignored: Path, path: str, answer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["context", str(ignored), "--why", path]) == 0
    assert capsys.readouterr().out.strip() == answer


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("./a.log", "a.log: excluded by .dockerignore line 2: *.log"),
        ("logs//x.txt", "logs/x.txt: excluded by .dockerignore line 3: logs"),
        ("src/../logs/x.txt", "logs/x.txt: excluded by .dockerignore line 3: logs"),
        ("./logs/", "logs: excluded by .dockerignore line 3: logs"),
        ("{root}/a.log", "a.log: excluded by .dockerignore line 2: *.log"),
        (
            "{root}/./logs/keep.log",
            "logs/keep.log: included again by .dockerignore line 4: !logs/keep.log",
        ),
        ("{root}/src/main.py", "src/main.py: included (no .dockerignore line matches it)"),
    ],
)
def test_context_why_reads_paths_relative_to_the_context(
    ignored: Path,
    path: str,
    answer: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The current directory is elsewhere: a relative PATH is the context's, as in docker.
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert main(["context", str(ignored), "--why", path.format(root=ignored)]) == 0
    assert capsys.readouterr().out.strip() == answer


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("nope.log", "no such file or directory in the context"),
        ("{root}/src/nope.py", "no such file or directory in the context"),
        ("../outside.txt", "outside the context"),
        ("{root}/../outside.txt", "outside the context"),
    ],
)
def test_context_why_says_when_a_path_is_not_there(
    ignored: Path, path: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (ignored.parent / "outside.txt").write_text("x\n")
    target = path.format(root=ignored)
    assert main(["context", str(ignored), "--why", target]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"buildsdk: --why {target}: {problem} {ignored}"


def test_context_lists_what_would_be_sent(
    ignored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["context", str(ignored)]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line.split()[-1] for line in out[:-1]]
    assert "a.log" not in names
    assert "logs/x.txt" not in names
    assert "logs/keep.log" in names
    assert "src/main.py" in names
    assert "Dockerfile" in names
    sizes = {".dockerignore": 36, "Dockerfile": 13, "logs/keep.log": 5, "src/main.py": 9}
    assert out[-1].startswith(f"4 files, {sum(sizes.values())} bytes")


def test_context_json(ignored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["context", str(ignored), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    files = {e["name"]: e["size"] for e in data["entries"] if e["type"] == "file"}
    assert files == {".dockerignore": 36, "Dockerfile": 13, "logs/keep.log": 5, "src/main.py": 9}
    assert data["files"] == 4
    assert data["bytes"] == 63


def test_context_of_a_missing_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["context", str(tmp_path / "nope")]) == EXIT_USAGE
    assert "not found" in capsys.readouterr().err


def test_dry_run_of_a_remote_context(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status = main(
        ["build", "-H", NOWHERE, "--dry-run", "--api-version", "1.41", "https://example.com/r.git"]
    )
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert "  remote=https://example.com/r.git" in out
    assert "  Content-Type: application/x-tar" not in out
    assert out[-1] == "context: none sent; the engine fetches https://example.com/r.git"


def test_dry_run_masks_secret_headers(
    ctx: Path, tmp_path_factory: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    config = tmp_path_factory.mktemp("config")
    headers = {"X-Meta-Team": "builders", "X-Auth-Token": "t0ps3cret"}
    (config / "config.json").write_text(json.dumps({"HttpHeaders": headers}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    assert main(["build", "-H", NOWHERE, "--dry-run", "--compress", str(ctx)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "  X-Meta-Team: builders" in lines
    assert "  X-Auth-Token: <masked>" in lines
    assert "t0ps3cret" not in out
    assert "  X-Registry-Config: <0 registries>" in lines
    # Without --api-version and without an engine, the highest version, said plainly.
    assert lines[0].startswith("POST /v1.51/build?")
    assert lines[1].startswith("# API 1.51: the highest buildsdk supports, as no engine answered")
    assert lines[-1].startswith("context: 2 files, 26 bytes (3 entries; ")
    assert lines[-1].endswith(" bytes of gzip-compressed tar)")


def test_dry_run_uses_the_version_the_engine_would_negotiate(
    ctx: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_API_VERSION", raising=False)
    with recording_engine(api_version="1.45") as engine:
        assert main(["build", "-H", engine.host, "--dry-run", "-t", "a:1", str(ctx)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith("POST /v1.45/build?")
        assert lines[1] == "# API 1.45: negotiated with the engine (its /_ping)"
        # Only the engine's version was asked for; nothing was built.
        assert {request.path for request in engine.requests} <= {"/_ping"}
        monkeypatch.setenv("DOCKER_API_VERSION", "1.41")
        assert main(["build", "-H", engine.host, "--dry-run", str(ctx)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith("POST /v1.41/build?")
        assert lines[1] == "# API 1.41: pinned by DOCKER_API_VERSION"


def test_dry_run_follows_the_engines_preferred_builder(
    ctx: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_BUILDKIT", raising=False)
    monkeypatch.delenv("DOCKER_API_VERSION", raising=False)
    with recording_engine(builder_version="2") as engine:
        assert main(["build", "-H", engine.host, "--dry-run", str(ctx)]) == 0
        assert "  version=2" in capsys.readouterr().out.splitlines()
        # What BuildKit would ignore is refused, as for a real build.
        assert main(["build", "-H", engine.host, "--dry-run", "--squash", str(ctx)]) == 2
        err = capsys.readouterr().err
        assert "the engine prefers BuildKit (Builder-Version: 2)" in err
        assert "--builder classic" in err
        assert "squash is ignored by BuildKit" in err
        monkeypatch.setenv("DOCKER_BUILDKIT", "0")
        assert main(["build", "-H", engine.host, "--dry-run", str(ctx)]) == 0
        assert "  version=1" in capsys.readouterr().out.splitlines()
        assert {request.path for request in engine.requests} <= {"/_ping"}


def test_dry_run_says_plainly_when_no_engine_answered(
    ctx: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_API_VERSION", raising=False)
    assert main(["build", "-H", NOWHERE, "--dry-run", str(ctx)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"POST /v{MAX_API_VERSION}/build?")
    assert lines[1].startswith(
        f"# API {MAX_API_VERSION}: the highest buildsdk supports, as no engine answered "
        f"(cannot reach the engine at {NOWHERE}: "
    )
    assert lines[1].endswith(
        "an engine that answers may negotiate a lower one (pin it with --api-version)"
    )


def test_dry_run_of_a_stdin_archive(
    ctx: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    archive = _tar({"Dockerfile": b"FROM scratch\n"})
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(archive)))
    assert main(["build", "-H", NOWHERE, "--dry-run", "--api-version", "1.41", "-"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"context: archive from stdin, {len(archive)} bytes of tar"


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["build", "--context", "-ctx", "."], "docker_context", "-ctx"),
        (["build", "--api-version", "-1", "."], "api_version", "-1"),
        (["build", "-m", "-1", "."], "memory", "-1"),
        (["prune", "--filter", "-x=1"], "filter", ["-x=1"]),
        (["prune", "--keep-storage", "-5"], "keep_storage", "-5"),
        (["context", "--why", "-odd", "."], "why", "-odd"),
    ],
)
def test_every_sub_command_takes_values_starting_with_a_dash(
    argv: list[str], dest: str, value: object
) -> None:
    # As pflag does: the word after a flag that takes a value is its value, whatever it is.
    assert getattr(parse_args(argv), dest) == value
