"""`describe_build`: the one description of a build the clients, compat and the dry run send."""

from __future__ import annotations

import base64
import json
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
from pydantic import SecretStr

from buildsdk._build_plan import SessionNeeds, describe_build, session_needs
from buildsdk.auth import DockerConfig, RegistryAuth
from buildsdk.build import BuildOptions
from buildsdk.errors import UnsupportedOption
from buildsdk.session import BuildSecret
from buildsdk.versions import ApiVersion

V141 = ApiVersion(1, 41)
AUTH = base64.b64encode(b"user:pass").decode()


def _config(data: dict[str, object] | None = None) -> DockerConfig:
    return DockerConfig(data or {}, env={}, detect_default_store=False)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / "app.txt").write_text("hello\n")
    return tmp_path


def _registries(header: str) -> dict[str, dict[str, str]]:
    decoded: dict[str, dict[str, str]] = json.loads(base64.urlsafe_b64decode(header))
    return decoded


def test_a_classic_build_carries_config_and_code_credentials_and_its_context(ctx: Path) -> None:
    config = _config(
        {
            "auths": {"file.example": {"auth": AUTH}},
            "HttpHeaders": {"X-Meta": "1"},
            "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
        }
    )
    code = {"code.example": RegistryAuth(username="u", password=SecretStr("code-secret"))}
    plan = describe_build(
        BuildOptions(path=ctx, tag=["app:1"], timeout=30),
        V141,
        config=config,
        credentials=code,
        base_path="/prefix",
    )
    assert plan.request.method == "POST"
    assert plan.request.path == "/prefix/v1.41/build"
    assert ("t", "app:1") in plan.request.params
    proxy = '{"HTTP_PROXY":"http://proxy:3128","http_proxy":"http://proxy:3128"}'
    assert ("buildargs", proxy) in plan.request.params
    headers = dict(plan.request.headers)
    assert list(headers)[:2] == ["X-Meta", "User-Agent"]
    assert headers["Content-Type"] == "application/x-tar"
    assert sorted(_registries(headers["X-Registry-Config"])) == ["code.example", "file.example"]
    assert sorted(plan.credentials) == ["code.example", "file.example"]
    assert plan.session is None
    assert plan.read_timeout == 30
    assert plan.context is not None
    with tarfile.open(fileobj=BytesIO(b"".join(plan.context))) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "app.txt"]
    # A plan's repr is for tracebacks: it never shows a password.
    assert "code-secret" not in repr(plan)
    assert AUTH not in repr(plan)


def test_a_remote_build_has_no_body(ctx: Path) -> None:
    plan = describe_build(BuildOptions(path="https://example.com/repo.git"), V141, config=_config())
    assert plan.context is None
    assert "Content-Type" not in plan.request.headers
    assert ("remote", "https://example.com/repo.git") in plan.request.params


def test_a_buildkit_build_with_credentials_needs_a_session_for_them(ctx: Path) -> None:
    config = _config({"auths": {"file.example": {"auth": AUTH}}})
    plan = describe_build(BuildOptions(path=ctx, version="2"), V141, config=config)
    assert plan.session == SessionNeeds(context=True, optional=True)
    assert plan.session.served() == ["the context (sent with remote=client-session and no body)"]
    # BuildKit ignores X-Registry-Config: it carries nothing, and no helper ran for it.
    assert plan.credentials == {}
    assert _registries(plan.request.headers["X-Registry-Config"]) == {}
    assert plan.warnings == ()


def test_secrets_make_a_session_the_build_cannot_go_without(ctx: Path) -> None:
    options = BuildOptions(
        path=ctx, version="2", context_transfer="tar", secrets=[BuildSecret(id="npm", env="X")]
    )
    needs = session_needs(options, V141, config=_config(), credentials={})
    assert needs == SessionNeeds(secrets=("npm",), optional=False)
    assert needs.served() == ["secret npm"]


def test_options_naming_their_session_need_none(ctx: Path) -> None:
    options = BuildOptions(path=ctx, version="2", session_id="abc", context_transfer="tar")
    assert describe_build(options, V141, config=_config()).session is None


def test_only_registry_logins_are_said_when_nothing_else_is_served() -> None:
    assert SessionNeeds().served() == ["registry logins"]


def test_an_option_the_api_cannot_carry_is_refused_before_any_session(ctx: Path) -> None:
    options = BuildOptions(
        path=ctx, version="2", secrets=[BuildSecret(id="npm", env="X")], platform="linux/arm64"
    )
    with pytest.raises(UnsupportedOption, match="platform"):
        session_needs(options, ApiVersion(1, 30), config=_config(), credentials={})
    with pytest.raises(UnsupportedOption, match="platform"):
        describe_build(options, ApiVersion(1, 30), config=_config())


def test_buildkit_without_a_session_warns_that_credentials_go_unused(
    ctx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config({"auths": {"file.example": {"auth": AUTH}}})
    options = BuildOptions(path=ctx, version="2", context_transfer="tar")
    monkeypatch.setattr("buildsdk.session._runtime.h2_available", lambda: False)
    plan = describe_build(options, V141, config=config)
    assert plan.session is None
    assert len(plan.warnings) == 1
    assert "BuildKit" in plan.warnings[0]
