"""Session options: `--secret`/`--ssh` syntax, validation in `BuildOptions`, when a build
gets a session, and the errors a user sees before anything is sent."""

from __future__ import annotations

import builtins
import io
import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from buildsdk.auth import DockerConfig, RegistryAuth
from buildsdk.build import BuildOptions
from buildsdk.errors import (
    MissingDependency,
    SecretUnavailable,
    SSHAgentUnavailable,
    UnsupportedOption,
)
from buildsdk.session import BuildSecret, SSHForward, h2_available, require_h2
from buildsdk.session._runtime import _headers, _plan, needs_session, session_transfer, shared_key


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "token.txt"
    path.write_text("file-value")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id=npm,env=NPM_TOKEN", {"id": "npm", "env": "NPM_TOKEN"}),
        ("type=env,id=npm,src=NPM_TOKEN", {"id": "npm", "env": "NPM_TOKEN"}),
        ("type=env,id=NPM_TOKEN", {"id": "NPM_TOKEN", "env": "NPM_TOKEN"}),
        ("ID=npm,ENV=NPM_TOKEN", {"id": "npm", "env": "NPM_TOKEN"}),
        ('"id=npm,ci",env=NPM_TOKEN', {"id": "npm,ci", "env": "NPM_TOKEN"}),
        ("id=npm,src=,env=NPM_TOKEN", {"id": "npm", "env": "NPM_TOKEN"}),
        # Neither src nor env: the variable named like the ID, since it is set.
        ("id=NPM_TOKEN", {"id": "NPM_TOKEN", "env": "NPM_TOKEN"}),
        ("type=file,id=NPM_TOKEN", {"id": "NPM_TOKEN", "env": "NPM_TOKEN"}),
    ],
)
def test_secret_env_syntax(text: str, expected: dict[str, str]) -> None:
    secret = BuildSecret.parse(text, env={"NPM_TOKEN": "t"})
    assert (secret.id, secret.env, secret.src) == (expected["id"], expected["env"], None)


@pytest.mark.parametrize(
    "text", ["id=API_TOKEN", "type=env,id=API_TOKEN", "type=file,id=API_TOKEN"]
)
def test_secret_named_by_id_alone_is_the_file_when_the_variable_is_unset(
    tmp_path: Path, text: str
) -> None:
    # buildx (through BuildKit's secret store) falls back to a file named like the ID,
    # even with type=env.
    (tmp_path / "API_TOKEN").write_text("from-file")
    secret = BuildSecret.parse(text, base=tmp_path, env={})
    assert (secret.env, secret.src) == (None, str(tmp_path / "API_TOKEN"))
    assert secret.read() == b"from-file"
    with pytest.raises(ValidationError, match="is not a readable file"):
        BuildSecret.parse(text, base=tmp_path / "elsewhere", env={})


def test_secret_with_src_and_env_needs_the_file_but_reads_the_variable(secret_file: Path) -> None:
    secret = BuildSecret.parse(f"id=a,src={secret_file},env=TOKEN", env={})
    assert (secret.src, secret.env) == (None, "TOKEN")
    assert secret.read({"TOKEN": "from-env"}) == b"from-env"
    with pytest.raises(ValueError, match="is not a readable file"):
        BuildSecret.parse(f"id=a,src={secret_file}.gone,env=TOKEN", env={})


def test_secret_src_is_taken_as_written(tmp_path: Path) -> None:
    # No `~` expansion and no trimming, as in buildx: the shell expands what it expands.
    with pytest.raises(ValidationError, match="'~/token' is not a readable file"):
        BuildSecret.parse("id=a,src=~/token", env={})
    with pytest.raises(ValueError, match="unexpected key ' src'"):
        BuildSecret.parse("id=a, src=token", env={})


def test_secret_file_syntax(secret_file: Path) -> None:
    for text in (
        f"id=tok,src={secret_file}",
        f"id=tok,source={secret_file}",
        f"type=file,id=tok,src={secret_file}",
    ):
        secret = BuildSecret.parse(text)
        assert (secret.id, secret.src) == ("tok", str(secret_file))
        assert secret.read() == b"file-value"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("src=/x", "secret missing ID"),
        ("id=,src=/x", "secret missing ID"),
        ("", "secret missing ID"),
        ("id=a,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
        ("id=a,type=ftp", "unsupported secret type 'ftp'"),
        ("id=a,type=ENV", "unsupported secret type 'ENV'"),
        ("id", "invalid field 'id' must be a key=value pair"),
        ("id=a,", "invalid field '' must be a key=value pair"),
        ('"id=a', "failed to parse csv secret"),
        ("id=a,src=/no/such/file", "is not a readable file"),
    ],
)
def test_bad_secret_syntax(text: str, message: str) -> None:
    with pytest.raises((ValueError, ValidationError), match=message):
        BuildSecret.parse(text, env={})


def test_secret_needs_exactly_one_source(secret_file: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one source"):
        BuildSecret(id="a")
    with pytest.raises(ValidationError, match="exactly one source"):
        BuildSecret(id="a", env="X", src=secret_file)


def test_secret_values_stay_out_of_reprs_and_errors() -> None:
    secret = BuildSecret(id="a", data="hunter2-value")
    options = BuildOptions(path=".", version="2", secrets=[secret])
    assert "hunter2-value" not in repr(secret)
    assert "hunter2-value" not in repr(options)
    assert "hunter2-value" not in options.model_dump_json()
    with pytest.raises(ValidationError) as caught:
        BuildSecret(id="a", data="hunter2-value", env="X")
    assert "hunter2-value" not in str(caught.value)


def test_secret_size_limit() -> None:
    with pytest.raises(ValidationError, match="larger than the engine's limit"):
        BuildSecret(id="big", data=b"x" * (500 * 1024 + 1))


def test_env_secret_reads_the_given_environment() -> None:
    secret = BuildSecret(id="a", env="TOKEN")
    assert secret.read({"TOKEN": "v"}) == b"v"
    with pytest.raises(SecretUnavailable, match="environment variable TOKEN is not set") as unset:
        secret.read({})
    assert unset.value.secret_id == "a"


@pytest.mark.parametrize(
    ("text", "ident", "sock"),
    [
        ("default", "default", None),
        ("github=/run/agent.sock", "github", "/run/agent.sock"),
        ("gitlab", "gitlab", None),
    ],
)
def test_ssh_syntax(text: str, ident: str, sock: str | None) -> None:
    forward = SSHForward.parse(text)
    assert (forward.id, forward.socket) == (ident, sock)


def test_ssh_several_paths_are_key_files_and_a_socket_must_be_a_socket(tmp_path: Path) -> None:
    forward = SSHForward.parse("default=/a/id_rsa,/b/id_ed25519")
    assert (forward.socket, forward.keys) == (None, ("/a/id_rsa", "/b/id_ed25519"))
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(SSHAgentUnavailable, match=r"give it as keys=\[\.\.\.\]"):
        SSHForward(socket=key).resolve({})


def test_ssh_default_needs_ssh_auth_sock(tmp_path: Path) -> None:
    with pytest.raises(SSHAgentUnavailable, match="SSH_AUTH_SOCK is not set"):
        SSHForward().resolve({})
    path = tmp_path / "agent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    try:
        assert SSHForward().resolve({"SSH_AUTH_SOCK": str(path)}) == str(path)
    finally:
        listener.close()


def test_build_options_accept_strings_mappings_and_models(secret_file: Path) -> None:
    options = BuildOptions(
        path=".",
        version="2",
        secrets=[
            f"id=a,src={secret_file}",
            {"id": "b", "env": "B"},
            BuildSecret(id="c", data=b"c"),
        ],
        ssh="default",
    )
    assert [s.id for s in options.secrets] == ["a", "b", "c"]
    assert options.ssh == (SSHForward(),)
    # Nothing of it is sent in the query: the session serves it.
    assert options.to_query("1.41") == [("dockerfile", "Dockerfile"), ("version", "2")]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("secrets", [{"id": "a", "data": b"1"}, {"id": "a", "data": b"2"}], "id a more than once"),
        ("ssh", ["default", "default"], "id default more than once"),
        ("secrets", "id=a,env=B", "must be a sequence"),
    ],
)
def test_build_options_refuse_bad_session_values(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BuildOptions(path=".", version="2", **{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [("secrets", ["id=a,env=B"]), ("ssh", "default"), ("context_transfer", "session")],
)
def test_session_options_need_buildkit(field: str, value: Any) -> None:
    options = BuildOptions(path=".", **{field: value})
    with pytest.raises(UnsupportedOption, match="needs a BuildKit session"):
        options.to_query("1.41")


def test_session_context_transfer_needs_a_local_directory(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="needs a local directory"):
        BuildOptions(remote="https://example.com/repo.git", version="2", context_transfer="session")
    with pytest.raises(ValidationError, match="needs a local directory"):
        BuildOptions(
            fileobj=io.BytesIO(b"tar"), custom_context=True, version="2", context_transfer="session"
        )
    # A Dockerfile from memory with a directory is fine: it is served from memory.
    options = BuildOptions(
        path=tmp_path, fileobj=io.BytesIO(b"FROM x\n"), version="2", context_transfer="session"
    )
    plan = _plan(options, env={}, credentials={}, lookup=lambda host: None)
    assert plan.options.dockerfile == "Dockerfile"
    assert plan.options.fileobj is None


def _config(auths: dict[str, Any] | None = None) -> DockerConfig:
    return DockerConfig({"auths": auths} if auths else {}, env={}, detect_default_store=False)


@pytest.mark.parametrize(
    ("options", "credentials", "config_auths", "expected"),
    [
        ({"version": "1"}, {}, None, False),
        # auto: a BuildKit build of a local directory sends it through a session...
        ({"version": "2"}, {}, None, True),
        # ...but not when asked for a tar, a compressed upload or a remote context.
        ({"version": "2", "context_transfer": "tar"}, {}, None, False),
        ({"version": "2", "gzip": True}, {}, None, False),
        ({"version": "2", "path": "https://example.com/repo.git"}, {}, None, False),
        ({"version": "2", "context_transfer": "tar", "ssh": "default"}, {}, None, True),
        ({"version": "2", "secrets": [{"id": "a", "data": b"x"}]}, {}, None, True),
        ({"version": "2", "ssh": "default"}, {}, None, True),
        ({"version": "2", "context_transfer": "session"}, {}, None, True),
        (
            {"version": "2", "context_transfer": "tar"},
            {"r.example": RegistryAuth(username="u")},
            None,
            True,
        ),
        ({"version": "2", "context_transfer": "tar"}, {}, {"r.example": {"auth": "dTpw"}}, True),
        ({"version": "1"}, {}, {"r.example": {"auth": "dTpw"}}, False),
        ({"version": "2", "session_id": "mine", "ssh": "default"}, {}, None, False),
    ],
)
def test_which_builds_get_a_session(
    options: dict[str, Any],
    credentials: dict[str, RegistryAuth],
    config_auths: dict[str, Any] | None,
    expected: bool,
) -> None:
    built = BuildOptions(**{"path": ".", **options})
    assert needs_session(built, config=_config(config_auths), credentials=credentials) is expected


def test_missing_h2_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_h2(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "h2" or name.startswith("h2."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h2)
    assert not h2_available()
    with pytest.raises(MissingDependency, match=r"pip install 'buildsdk\[session\]'") as missing:
        require_h2()
    assert isinstance(missing.value, ImportError)
    # A build that needs no session does not need h2 either: without it, auto is a tar.
    options = BuildOptions(path=".", version="2")
    assert not session_transfer(options)
    assert not needs_session(options, config=_config({"r": {"auth": "dTpw"}}), credentials={})


def test_session_plan_announces_each_method_on_its_own_header(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    options = BuildOptions(
        path=tmp_path,
        version="2",
        secrets=[{"id": "a", "data": b"x"}],
        context_transfer="session",
    )
    plan = _plan(options, env={}, credentials={}, lookup=lambda host: None)
    headers = _headers(plan, {"User-Agent": "buildsdk/test"})
    methods = [v for k, v in headers if k == "X-Docker-Expose-Session-Grpc-Method"]
    assert "/moby.buildkit.secrets.v1.Secrets/GetSecret" in methods
    assert "/moby.filesync.v1.FileSync/DiffCopy" in methods
    assert "/moby.filesync.v1.Auth/Credentials" in methods
    assert all("," not in method for method in methods)
    values = dict(headers)
    assert values["Upgrade"] == "h2c"
    assert values["Connection"] == "Upgrade"
    assert values["X-Docker-Expose-Session-Name"] == tmp_path.name
    assert values["X-Docker-Expose-Session-Sharedkey"] == shared_key(str(tmp_path))
    assert len(values["X-Docker-Expose-Session-Uuid"]) == 25
    # The build itself is a client-session build with no body.
    assert plan.options.remote == "client-session"
    assert plan.options.path is None
    query = dict(plan.options.to_query("1.41"))
    assert query["session"] == values["X-Docker-Expose-Session-Uuid"]
    assert query["remote"] == "client-session"
    assert plan.options.is_remote


def test_session_plan_fails_early_for_an_unset_env_secret(tmp_path: Path) -> None:
    options = BuildOptions(path=tmp_path, version="2", secrets=["id=a,env=NOT_SET_ANYWHERE"])
    with pytest.raises(SecretUnavailable, match="NOT_SET_ANYWHERE is not set"):
        _plan(options, env={}, credentials={}, lookup=lambda host: None)


def test_shared_key_is_stable_per_directory(tmp_path: Path) -> None:
    assert shared_key(str(tmp_path)) == shared_key(str(tmp_path) + "/")
    assert shared_key(str(tmp_path)) != shared_key(str(tmp_path / "other"))


def test_identity_token_is_sent_alone() -> None:
    from buildsdk.session.auth import credentials_response

    auth = RegistryAuth(username="u", password=SecretStr("p"), identity_token=SecretStr("t"))
    assert credentials_response(auth).secret == "t"
    assert credentials_response(auth).username == ""
    assert credentials_response(None).encode() == b""


def test_relative_paths_are_taken_from_the_given_base(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("v")
    secret = BuildSecret.parse("id=t,src=token.txt", base=tmp_path)
    assert secret.src == str(tmp_path / "token.txt")
    assert SSHForward.parse("default=agent.sock", base=tmp_path).socket == str(
        tmp_path / "agent.sock"
    )
    assert SSHForward.parse("default=/abs/agent.sock", base=tmp_path).socket == "/abs/agent.sock"


def test_session_name_header_is_printable_ascii(tmp_path: Path) -> None:
    directory = tmp_path / "pröject dir"
    directory.mkdir()
    (directory / "Dockerfile").write_text("FROM x\n")
    options = BuildOptions(path=directory, version="2", secrets=[{"id": "a", "data": b"x"}])
    plan = _plan(options, env={}, credentials={}, lookup=lambda host: None)
    assert dict(_headers(plan, {}))["X-Docker-Expose-Session-Name"] == "pr_ject_dir"
