"""`buildsdk build --secret/--ssh/--context-transfer`: flags become session options, the
builder becomes BuildKit unless told otherwise, and bad values exit 2 before connecting."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildsdk.build import BuildOptions
from buildsdk.cli import EXIT_USAGE, build_options_from_args, main, parse_args
from buildsdk.session import BuildSecret, SSHForward


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "token.txt").write_text("t")
    return tmp_path


def options(argv: list[str], ctx: Path, env: dict[str, str] | None = None) -> BuildOptions:
    args = parse_args(["build", *argv, str(ctx)])
    return build_options_from_args(args, env=env or {}, cwd=ctx)


def test_secret_flags_become_secrets_and_choose_buildkit(ctx: Path) -> None:
    built = options(["--secret", "id=a,src=token.txt", "--secret", "id=b,env=B"], ctx)
    assert built.secrets == (
        BuildSecret(id="a", src=str(ctx / "token.txt")),
        BuildSecret(id="b", env="B"),
    )
    assert built.version == "2"


def test_secret_by_id_alone_reads_the_variable_when_it_is_set(ctx: Path) -> None:
    # docker build 26 (buildx) reads $API_TOKEN for `--secret id=API_TOKEN`.
    built = options(["--secret", "id=API_TOKEN"], ctx, env={"API_TOKEN": "t"})
    assert built.secrets == (BuildSecret(id="API_TOKEN", env="API_TOKEN"),)
    # Without the variable it is the file of that name, relative to the current directory.
    (ctx / "API_TOKEN").write_text("t")
    built = options(["--secret", "id=API_TOKEN"], ctx)
    assert built.secrets == (BuildSecret(id="API_TOKEN", src=str(ctx / "API_TOKEN")),)


def test_ssh_flags_become_forwards(ctx: Path) -> None:
    built = options(["--ssh", "default", "--ssh", "gh=agent.sock"], ctx)
    assert built.ssh == (SSHForward(), SSHForward(id="gh", socket=str(ctx / "agent.sock")))
    assert built.version == "2"


def test_context_transfer_flag(ctx: Path) -> None:
    # auto is the default and, unlike an explicit session, does not choose BuildKit.
    default = options([], ctx)
    assert (default.context_transfer, default.version) == ("auto", "1")
    assert options(["--context-transfer", "tar"], ctx).context_transfer == "tar"
    built = options(["--context-transfer", "session"], ctx)
    assert built.context_transfer == "session"
    assert built.version == "2"


def test_docker_buildkit_0_keeps_the_classic_builder_and_refuses_secrets(
    ctx: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    code = main(["build", "--dry-run", "--secret", "id=b,env=B", str(ctx)])
    assert code == EXIT_USAGE
    assert "secrets" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--secret", "src=token.txt"], "secret missing ID"),
        (["--secret", "id=API_TOKEN"], "/API_TOKEN' is not a readable file"),
        (["--secret", "id=a,src=missing.txt"], "is not a readable file"),
        (["--ssh", "default=a,b"], "cannot read ssh key"),
        (["--context-transfer", "rsync"], "invalid choice"),
    ],
)
def test_bad_session_flags_exit_2_before_connecting(
    ctx: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["build", "-H", "unix:///nonexistent.sock", *flags, str(ctx)])
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err


_BUILDKIT = {"DOCKER_BUILDKIT": "1"}


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ([], {}, None),
        (["--context-transfer", "tar"], _BUILDKIT, None),
        (
            [],
            _BUILDKIT,
            "session: a BuildKit session would serve the context (sent with "
            "remote=client-session and no body); on an engine without sessions the request "
            "above is sent as shown",
        ),
        (
            ["--secret", "id=a,src=token.txt", "--context-transfer", "tar"],
            {},
            "session: a BuildKit session would serve secret a",
        ),
        (
            ["--secret", "id=a,src=token.txt", "--ssh", "default"],
            {},
            "session: a BuildKit session would serve secret a, ssh default, the context (sent "
            "with remote=client-session and no body)",
        ),
        (
            ["-o", "type=local,dest=out", "--context-transfer", "tar"],
            {},
            "session: a BuildKit session would serve the export to its dest (a local output is "
            "sent without dest)",
        ),
    ],
)
def test_dry_run_says_what_a_session_would_serve(
    ctx: Path,
    flags: list[str],
    env: dict[str, str],
    expected: str | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("config")))
    monkeypatch.chdir(ctx)
    monkeypatch.delenv("DOCKER_BUILDKIT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["build", "-H", "unix:///nonexistent.sock", "--dry-run", *flags, str(ctx)])
    out = capsys.readouterr().out
    assert code == 0
    notes = [line for line in out.splitlines() if line.startswith("session:")]
    assert notes == ([expected] if expected else [])
