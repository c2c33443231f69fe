"""Registry credentials: config.json shapes, credential helpers, X-Registry-Config bytes.

Expected headers marked "CLI 28.2.2" were recorded from the real `docker build`
(DOCKER_BUILDKIT=0, /usr/local/bin/docker 28.2.2) pointed at a small recording HTTP server,
with the same config.json and helper store as the test writes.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from buildsdk._configfile import ConfigFileError
from buildsdk.auth import (
    INDEX_SERVER,
    DockerConfig,
    RegistryAuth,
    auth_config_key,
    buildkit_auth_warning,
    convert_to_hostname,
    credential_helper_get,
    credential_helper_list,
    merge_credentials,
    registry_config_header,
)
from buildsdk.errors import CredentialsError
from tests import VECTORS_DIR

REPO = Path(__file__).resolve().parents[2]
VECTORS = VECTORS_DIR / "cli_build_requests.json"
HELPERS = REPO / "tests" / "fixtures" / "credhelpers"

# The config.json the vectors were recorded with. The vector file does not carry it; it is
# rebuilt from the decoded header and the proxy build args, and running CLI 28.2.2 with it
# gives the vectors' X-Registry-Config and buildargs byte for byte.
VECTOR_CONFIG = {
    "auths": {"registry.example.com:5000": {"auth": base64.b64encode(b"user:p+a/ss?").decode()}},
    "proxies": {"default": {"httpProxy": "http://proxy:3128", "noProxy": "localhost"}},
}

HELPER_STORE = {
    "helped.example.com": {"Username": "hu", "Secret": "hs"},
    "https://index.docker.io/v1/": {"Username": "<token>", "Secret": "hubtoken"},
    "listed.example.com": {"Username": "lu", "Secret": "ls"},
}


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode_header(value: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(value))


def make_env(
    tmp_path: Path, config: Mapping[str, Any] | None = None, **extra: str
) -> dict[str, str]:
    """An environment with its own config dir and a PATH holding only the fake helpers.

    The helpers need `python3`, `cat` and `sleep`; they are linked into a private bin
    directory so nothing else from the machine's PATH (a real credential helper, `pass`)
    can change the outcome.
    """
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        (bin_dir / "python3").symlink_to(sys.executable)
        for tool in ("cat", "sleep"):
            found = shutil.which(tool)
            assert found is not None
            (bin_dir / tool).symlink_to(found)
    cfg = tmp_path / "cfg"
    cfg.mkdir(exist_ok=True)
    if config is not None:
        (cfg / "config.json").write_text(json.dumps(config), encoding="utf-8")
    store = tmp_path / "store.json"
    if not store.exists():
        store.write_text(json.dumps(HELPER_STORE), encoding="utf-8")
    env = {
        "PATH": f"{HELPERS}{os.pathsep}{bin_dir}",
        "HOME": str(tmp_path / "home"),
        "DOCKER_CONFIG": str(cfg),
        "FAKE_CREDHELPER_STORE": str(store),
        "FAKE_CREDHELPER_LOG": str(tmp_path / "helper.log"),
    }
    env.update(extra)
    return env


def helper_calls(tmp_path: Path) -> list[dict[str, str]]:
    log = tmp_path / "helper.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------- vectors


def test_vector_header_reproduced_for_every_request(tmp_path: Path) -> None:
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    requests = [r for r in vectors["requests"] if "headers" in r]
    assert len(requests) == 21  # 22 flag combinations, one of which the CLI refused
    header = registry_config_header(
        DockerConfig.load(make_env(tmp_path, VECTOR_CONFIG)).all_credentials()
    )
    for request in requests:
        assert header == request["headers"]["X-Registry-Config"], request["flags"]
        assert decode_header(header) == request["headers"]["X-Registry-Config(decoded)"]


# --------------------------------------------------------------------------- CLI shapes

CLI_SHAPES = {
    "https://index.docker.io/v1/": {"auth": b64("hub:pw<&>\u00e9\u2028x")},
    "https://registry.example.com:5000/v1/": {"identitytoken": "IDTOK"},
    "tok.example.com": {"username": "tu", "password": "tp", "registrytoken": "RTOK"},
    "both.example.com": {
        "username": "ignored",
        "password": "ignored",
        "auth": b64("au:ap\x00"),
        "email": "e@x",
    },
    "empty.example.com": {},
}
# CLI 28.2.2: `auth` wins over username/password fields and is not sent itself, NULs are
# trimmed from the password, email is forwarded, <>& and U+2028 are escaped as Go does.
CLI_SHAPES_HEADER = (
    "eyJib3RoLmV4YW1wbGUuY29tIjp7InVzZXJuYW1lIjoiYXUiLCJwYXNzd29yZCI6ImFwIiwiZW1haWwiOiJl"
    "QHgiLCJzZXJ2ZXJhZGRyZXNzIjoiYm90aC5leGFtcGxlLmNvbSJ9LCJlbXB0eS5leGFtcGxlLmNvbSI6eyJz"
    "ZXJ2ZXJhZGRyZXNzIjoiZW1wdHkuZXhhbXBsZS5jb20ifSwiaHR0cHM6Ly9pbmRleC5kb2NrZXIuaW8vdjEv"
    "Ijp7InVzZXJuYW1lIjoiaHViIiwicGFzc3dvcmQiOiJwd1x1MDAzY1x1MDAyNlx1MDAzZcOpXHUyMDI4eCIs"
    "InNlcnZlcmFkZHJlc3MiOiJodHRwczovL2luZGV4LmRvY2tlci5pby92MS8ifSwiaHR0cHM6Ly9yZWdpc3Ry"
    "eS5leGFtcGxlLmNvbTo1MDAwL3YxLyI6eyJzZXJ2ZXJhZGRyZXNzIjoiaHR0cHM6Ly9yZWdpc3RyeS5leGFt"
    "cGxlLmNvbTo1MDAwL3YxLyIsImlkZW50aXR5dG9rZW4iOiJJRFRPSyJ9LCJ0b2suZXhhbXBsZS5jb20iOnsi"
    "dXNlcm5hbWUiOiJ0dSIsInBhc3N3b3JkIjoidHAiLCJzZXJ2ZXJhZGRyZXNzIjoidG9rLmV4YW1wbGUuY29t"
    "IiwicmVnaXN0cnl0b2tlbiI6IlJUT0sifX0="
)


def test_auths_shapes_match_cli_header(tmp_path: Path) -> None:
    config = DockerConfig.load(make_env(tmp_path, {"auths": CLI_SHAPES}))
    assert registry_config_header(config.all_credentials()) == CLI_SHAPES_HEADER
    assert helper_calls(tmp_path) == []


def test_auths_entries_decoded(tmp_path: Path) -> None:
    auths = DockerConfig.load(make_env(tmp_path, {"auths": CLI_SHAPES})).auths
    hub = auths[INDEX_SERVER]
    assert hub.username == "hub"
    assert hub.password is not None
    assert hub.password.get_secret_value() == "pw<&>\u00e9\u2028x"
    assert hub.auth is None  # decoded, as the CLI clears it
    token = auths["https://registry.example.com:5000/v1/"]
    assert token.identity_token is not None
    assert token.identity_token.get_secret_value() == "IDTOK"
    assert token.username is None
    assert auths["tok.example.com"].registry_token == SecretStr("RTOK")
    assert auths["both.example.com"].to_engine_json() == {
        "username": "au",
        "password": "ap",
        "email": "e@x",
        "serveraddress": "both.example.com",
    }


def test_config_keys_case_insensitive_like_go(tmp_path: Path) -> None:
    # CLI 28.2.2 reads "Auths"/"Auth"/"IdentityToken" (Go matches struct fields
    # case-insensitively) but map keys such as the proxies' "default" are exact.
    data = {
        "Auths": {"ci.example.com": {"Auth": b64("cu:cp"), "IdentityToken": "CITOK"}},
        "PROXIES": {"Default": {"HTTPPROXY": "http://p:1"}},
        "httpheaders": {"x-a": "1"},
    }
    config = DockerConfig.load(make_env(tmp_path, data))
    assert registry_config_header(config.all_credentials()) == (
        "eyJjaS5leGFtcGxlLmNvbSI6eyJ1c2VybmFtZSI6ImN1IiwicGFzc3dvcmQiOiJjcCIsInNlcnZlcmFkZHJl"
        "c3MiOiJjaS5leGFtcGxlLmNvbSIsImlkZW50aXR5dG9rZW4iOiJDSVRPSyJ9fQ=="
    )
    assert config.http_headers == {"x-a": "1"}
    assert "Default" in config.proxies
    assert "default" not in config.proxies


def test_no_config_sends_empty_object(tmp_path: Path) -> None:
    config = DockerConfig.load(make_env(tmp_path))
    assert config.path is None
    assert config.all_credentials() == {}
    assert registry_config_header({}) == "e30="  # CLI 28.2.2 with no config.json


def test_credsstore_list_and_get_with_email_from_file(tmp_path: Path) -> None:
    data = {
        "auths": {
            "listed.example.com": {"email": "x@y"},
            "fileonly.example.com": {"auth": b64("fu:fp")},
        },
        "credsStore": "fake",
        "credHelpers": {"helped.example.com": "fake"},
    }
    config = DockerConfig.load(make_env(tmp_path, data))
    # CLI 28.2.2: the store replaces the file's auths (fileonly is not sent); Username
    # "<token>" becomes an identity token.
    assert registry_config_header(config.all_credentials()) == (
        "eyJoZWxwZWQuZXhhbXBsZS5jb20iOnsidXNlcm5hbWUiOiJodSIsInBhc3N3b3JkIjoiaHMiLCJzZXJ2ZXJh"
        "ZGRyZXNzIjoiaGVscGVkLmV4YW1wbGUuY29tIn0sImh0dHBzOi8vaW5kZXguZG9ja2VyLmlvL3YxLyI6eyJz"
        "ZXJ2ZXJhZGRyZXNzIjoiaHR0cHM6Ly9pbmRleC5kb2NrZXIuaW8vdjEvIiwiaWRlbnRpdHl0b2tlbiI6Imh1"
        "YnRva2VuIn0sImxpc3RlZC5leGFtcGxlLmNvbSI6eyJ1c2VybmFtZSI6Imx1IiwicGFzc3dvcmQiOiJscyIs"
        "ImVtYWlsIjoieEB5Iiwic2VydmVyYWRkcmVzcyI6Imxpc3RlZC5leGFtcGxlLmNvbSJ9fQ=="
    )
    calls = helper_calls(tmp_path)
    assert calls[0] == {"action": "list", "stdin": "unused"}
    assert sorted(c["stdin"] for c in calls if c["action"] == "get") == sorted(
        [*HELPER_STORE, "helped.example.com"]
    )


def test_credhelpers_override_file_and_not_found_is_empty_entry(tmp_path: Path) -> None:
    data = {
        "auths": {
            "helped.example.com": {"auth": b64("fileu:filep")},
            "other.example.com": {"auth": b64("ou:op")},
        },
        "credHelpers": {"helped.example.com": "fake", "notfound.example.com": "fake"},
    }
    config = DockerConfig.load(make_env(tmp_path, data))
    # CLI 28.2.2: a helper with nothing stored gives `{}` under its registry.
    assert registry_config_header(config.all_credentials()) == (
        "eyJoZWxwZWQuZXhhbXBsZS5jb20iOnsidXNlcm5hbWUiOiJodSIsInBhc3N3b3JkIjoiaHMiLCJzZXJ2ZXJh"
        "ZGRyZXNzIjoiaGVscGVkLmV4YW1wbGUuY29tIn0sIm5vdGZvdW5kLmV4YW1wbGUuY29tIjp7fSwib3RoZXIu"
        "ZXhhbXBsZS5jb20iOnsidXNlcm5hbWUiOiJvdSIsInBhc3N3b3JkIjoib3AiLCJzZXJ2ZXJhZGRyZXNzIjoi"
        "b3RoZXIuZXhhbXBsZS5jb20ifX0="
    )
    assert config.credentials_for("notfound.example.com") is None
    helped = config.credentials_for("https://helped.example.com/v2/")
    assert helped is not None
    assert helped.username == "hu"


def test_hub_credhelper_asks_for_index_url(tmp_path: Path) -> None:
    # CLI 28.3+ asks the helper for https://index.docker.io/v1/ (what `docker login`
    # stores) when credHelpers names docker.io; the header key is then the one the
    # engine looks up for Docker Hub.
    config = DockerConfig.load(make_env(tmp_path, {"credHelpers": {"docker.io": "fake"}}))
    assert decode_header(registry_config_header(config.all_credentials())) == {
        INDEX_SERVER: {"serveraddress": INDEX_SERVER, "identitytoken": "hubtoken"}
    }
    assert [c["stdin"] for c in helper_calls(tmp_path)] == [INDEX_SERVER]
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io", INDEX_SERVER):
        hub = config.credentials_for(name)
        assert hub is not None
        assert hub.identity_token == SecretStr("hubtoken")


# --------------------------------------------------------------------------- failures


def test_missing_helper_is_warning_when_not_needed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = {
        "auths": {"other.example.com": {"auth": b64("ou:op")}},
        "credHelpers": {"gone.example.com": "nosuch", "broken.example.com": "broken"},
    }
    config = DockerConfig.load(make_env(tmp_path, data))
    with caplog.at_level(logging.WARNING, logger="buildsdk"):
        creds = config.all_credentials()
    assert sorted(creds) == ["other.example.com"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("gone.example.com" in m and "docker-credential-nosuch" in m for m in messages)
    assert any("broken.example.com" in m and "keychain is locked" in m for m in messages)
    other = config.credentials_for("other.example.com")
    assert other is not None
    assert other.username == "ou"


def test_missing_helper_is_error_when_needed(tmp_path: Path) -> None:
    config = DockerConfig.load(make_env(tmp_path, {"credHelpers": {"gone.example.com": "nosuch"}}))
    with pytest.raises(CredentialsError) as info:
        config.credentials_for("gone.example.com")
    message = str(info.value)
    assert "docker-credential-nosuch" in message
    assert "gone.example.com" in message
    assert "not found on PATH" in message


def test_failing_helper_is_error_when_needed(tmp_path: Path) -> None:
    config = DockerConfig.load(make_env(tmp_path, {"credsStore": "broken"}))
    with pytest.raises(CredentialsError, match=r"docker-credential-broken.*keychain is locked"):
        config.credentials_for("registry.example.com")


def test_failing_credsstore_keeps_credhelpers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # CLI 28.2.2 drops every credential here and sends `{}`; the SDK logs and keeps the
    # registries whose own helper works.
    data = {"credsStore": "broken", "credHelpers": {"helped.example.com": "fake"}}
    config = DockerConfig.load(make_env(tmp_path, data))
    with caplog.at_level(logging.WARNING, logger="buildsdk"):
        creds = config.all_credentials()
    assert list(creds) == ["helped.example.com"]
    assert any("credentials store 'broken'" in r.getMessage() for r in caplog.records)


def test_helper_timeout_kills_helper_and_its_children(tmp_path: Path) -> None:
    config = DockerConfig(
        {"credHelpers": {"slow.example.com": "slow"}},
        env=make_env(tmp_path),
        helper_timeout=0.5,
    )
    started = time.monotonic()
    with pytest.raises(
        CredentialsError, match=r"docker-credential-slow did not answer 'get' within 0.5 s"
    ):
        config.credentials_for("slow.example.com")
    # The helper's `sleep 60` child holds the pipes; only killing the group returns early.
    assert time.monotonic() - started < 10


def test_helper_garbage_output_is_error(tmp_path: Path) -> None:
    config = DockerConfig({"credsStore": "garbage"}, env=make_env(tmp_path))
    with pytest.raises(CredentialsError, match="not the protocol's JSON object") as info:
        config.credentials_for("registry.example.com")
    assert "s3cr3t" not in str(info.value)


def test_credstore_env_reaches_helper(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    store = env.pop("FAKE_CREDHELPER_STORE")
    config = DockerConfig(
        {"credsStore": "fake"}, env=env, credstore_env={"FAKE_CREDHELPER_STORE": store}
    )
    found = config.credentials_for("helped.example.com")
    assert found is not None
    assert (found.username, found.password) == ("hu", SecretStr("hs"))
    without = DockerConfig({"credsStore": "fake"}, env=env)
    with pytest.raises(CredentialsError, match="FAKE_CREDHELPER_STORE is not set"):
        without.credentials_for("helped.example.com")


def test_credential_helper_get_and_list(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    found = credential_helper_get("fake", "listed.example.com", env=env)
    assert found == RegistryAuth(
        username="lu", password=SecretStr("ls"), server_address="listed.example.com"
    )
    token = credential_helper_get("fake", INDEX_SERVER, env=env)
    assert token == RegistryAuth(identity_token=SecretStr("hubtoken"), server_address=INDEX_SERVER)
    assert credential_helper_get("fake", "unknown.example.com", env=env) is None
    assert credential_helper_list("fake", env=env) == list(HELPER_STORE)
    # The protocol: the server URL alone on stdin for get, "unused" for list.
    assert helper_calls(tmp_path) == [
        {"action": "get", "stdin": "listed.example.com"},
        {"action": "get", "stdin": INDEX_SERVER},
        {"action": "get", "stdin": "unknown.example.com"},
        {"action": "list", "stdin": "unused"},
    ]
    store = env.pop("FAKE_CREDHELPER_STORE")
    assert credential_helper_list(
        "fake", env=env, extra_env={"FAKE_CREDHELPER_STORE": store}
    ) == list(HELPER_STORE)
    with pytest.raises(CredentialsError, match="not a plain program name"):
        credential_helper_get("../fake", "x", env=env)
    with pytest.raises(CredentialsError, match="docker-credential-nosuch was not found"):
        credential_helper_list("nosuch", env=env)
    with pytest.raises(
        CredentialsError, match=r"docker-credential-broken failed on 'list' \(exit status 1\)"
    ):
        credential_helper_list("broken", env=env)


def test_malformed_auth_is_clear_error_only_for_its_registry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = {
        "auths": {
            "bad.example.com": {"auth": "not*base64!"},
            "nocolon.example.com": {"auth": b64("justauser")},
            "good.example.com": {"auth": b64("gu:gp")},
        }
    }
    config = DockerConfig.load(make_env(tmp_path, data))
    with caplog.at_level(logging.WARNING, logger="buildsdk"):
        assert list(config.all_credentials()) == ["good.example.com"]
    assert len(caplog.records) == 2
    with pytest.raises(CredentialsError, match=r"'bad.example.com'.* is not valid base64") as info:
        config.credentials_for("bad.example.com")
    assert "not*base64!" not in str(info.value)
    with pytest.raises(CredentialsError, match="does not decode to 'username:password'") as info:
        config.credentials_for("nocolon.example.com")
    assert "justauser" not in str(info.value)
    assert b64("justauser") not in str(info.value)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"auths": []}, "auths"),
        ({"auths": {"r": "x"}}, "auths['r']"),
        ({"auths": {"r": {"password": 5}}}, "auths['r'].password"),
        ({"credsStore": 1}, "credsStore"),
        ({"credHelpers": {"r": None, "s": 2}}, "credHelpers['s']"),
        ({"HttpHeaders": {"X-Token": 12345}}, "HttpHeaders['X-Token']"),
        ({"proxies": {"default": {"httpProxy": 1}}}, "proxies.httpProxy"),
    ],
)
def test_wrong_types_raise_config_error_naming_key(
    tmp_path: Path, data: dict[str, Any], where: str
) -> None:
    with pytest.raises(ConfigFileError) as info:
        DockerConfig.load(make_env(tmp_path, data))
    assert where in str(info.value)
    assert "12345" not in str(info.value)


# --------------------------------------------------------------------------- lookups


@pytest.mark.parametrize(
    ("url", "hostname"),
    [
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("https://registry.example.com:5000/v2/", "registry.example.com:5000"),
        ("http://user:pw@host.example/x", "host.example"),
        ("https://[::1]:5000/v1/", "[::1]:5000"),
        ("https://[::1]/v1/", "::1"),
        ("registry.example.com:5000/team", "registry.example.com:5000"),
        ("registry.example.com", "registry.example.com"),
        ("https://Registry.Example.COM", "Registry.Example.COM"),
        ("https://host:port/", "https:"),  # url.Parse fails on a non-numeric port
        ("1http://host/", "1http:"),  # not a scheme, so no host: cut at the first "/"
        ("https://host?x=1", "host"),
        ("https://a:b:5000/", "[a:b]:5000"),
        ("https://host:\uff15\uff10/", "https:"),  # only ASCII digits make a port
    ],
)
def test_convert_to_hostname(url: str, hostname: str) -> None:
    assert convert_to_hostname(url) == hostname


@pytest.mark.parametrize(
    ("registry", "key"),
    [
        ("docker.io", INDEX_SERVER),
        ("index.docker.io", INDEX_SERVER),
        ("registry-1.docker.io", INDEX_SERVER),
        ("https://index.docker.io/v1/", INDEX_SERVER),
        ("https://registry.example.com:5000/v2/", "registry.example.com:5000"),
        ("localhost:5000", "localhost:5000"),
    ],
)
def test_auth_config_key(registry: str, key: str) -> None:
    assert auth_config_key(registry) == key


def test_credentials_for_matches_file_keys_by_hostname(tmp_path: Path) -> None:
    data = {
        "auths": {
            "https://registry.example.com:5000/v1/": {"auth": b64("ru:rp")},
            "https://index.docker.io/v1/": {"auth": b64("hub:hp")},
        }
    }
    config = DockerConfig.load(make_env(tmp_path, data))
    found = config.credentials_for("registry.example.com:5000")
    assert found is not None
    assert found.username == "ru"
    assert found.server_address == "https://registry.example.com:5000/v1/"
    hub = config.credentials_for("docker.io")
    assert hub is not None
    assert hub.username == "hub"
    assert config.credentials_for("elsewhere.example.com") is None
    assert helper_calls(tmp_path) == []


def test_credentials_for_uses_helper_not_file(tmp_path: Path) -> None:
    data = {
        "auths": {"helped.example.com": {"auth": b64("fileu:filep")}},
        "credHelpers": {"helped.example.com": "fake"},
    }
    found = DockerConfig.load(make_env(tmp_path, data)).credentials_for("helped.example.com")
    assert found is not None
    assert (found.username, found.password) == ("hu", SecretStr("hs"))
    assert helper_calls(tmp_path) == [{"action": "get", "stdin": "helped.example.com"}]


# --------------------------------------------------------------------------- legacy, env


def test_legacy_dockercfg_json_format(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    home = Path(env["HOME"])
    home.mkdir()
    legacy = {
        "https://index.docker.io/v1/": {"auth": b64("joejoe:hello"), "email": "u@example.com"}
    }
    (home / ".dockercfg").write_text(json.dumps(legacy), encoding="utf-8")
    config = DockerConfig.load(env)
    assert config.path == home / ".dockercfg"
    assert config.all_credentials()[INDEX_SERVER].to_engine_json() == {
        "username": "joejoe",
        "password": "hello",
        "email": "u@example.com",
        "serveraddress": INDEX_SERVER,
    }


def test_legacy_dockercfg_line_format_and_precedence(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    home = Path(env["HOME"])
    home.mkdir()
    (home / ".dockercfg").write_text(
        f"auth = {b64('joejoe:hello')}\nemail = u@example.com\n", encoding="utf-8"
    )
    hub = DockerConfig.load(env).credentials_for("docker.io")
    assert hub is not None
    assert (hub.username, hub.password) == ("joejoe", SecretStr("hello"))
    # A config.json, even an empty one, hides the legacy file.
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text("{}", encoding="utf-8")
    assert DockerConfig.load(env).credentials_for("docker.io") is None
    (Path(env["DOCKER_CONFIG"]) / "config.json").unlink()
    (home / ".dockercfg").write_text("one line only", encoding="utf-8")
    with pytest.raises(ConfigFileError, match="dockercfg"):
        DockerConfig.load(env)


def test_docker_auth_config_takes_precedence(tmp_path: Path) -> None:
    data = {
        "auths": {"envreg.example.com": {"auth": b64("fileu:filep")}},
        "credHelpers": {"helped.example.com": "fake"},
    }
    env_auth = {
        "auths": {
            "envreg.example.com": {"auth": b64("envu:envp")},
            "helped.example.com": {"auth": b64("envh:envhp")},
        }
    }
    env = make_env(tmp_path, data, DOCKER_AUTH_CONFIG=json.dumps(env_auth))
    config = DockerConfig.load(env)
    creds = config.all_credentials()
    assert creds["envreg.example.com"].username == "envu"
    assert creds["helped.example.com"].username == "envh"
    assert helper_calls(tmp_path) == []  # the helper is not asked when the env answers
    found = config.credentials_for("envreg.example.com")
    assert found is not None
    assert found.password == SecretStr("envp")
    assert config.contains_auth


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        json.dumps({"auths": {"r": {"auth": b64("u:p"), "email": "x"}}}),
        json.dumps({"auths": {"r": {"auth": "%%%"}}}),
        json.dumps({"auths": {"r": {}}}),
        json.dumps({"auths": {}, "credsStore": "x"}),
    ],
)
def test_malformed_docker_auth_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    data = {"auths": {"file.example.com": {"auth": b64("fu:fp")}}}
    config = DockerConfig.load(make_env(tmp_path, data, DOCKER_AUTH_CONFIG=value))
    with caplog.at_level(logging.WARNING, logger="buildsdk"):
        assert list(config.all_credentials()) == ["file.example.com"]
    assert any("DOCKER_AUTH_CONFIG" in r.getMessage() for r in caplog.records)
    with pytest.raises(CredentialsError, match="DOCKER_AUTH_CONFIG"):
        config.credentials_for("file.example.com")


def test_default_store_detected_only_without_configured_auth(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    bin_dir = tmp_path / "bin"
    shutil.copy(HELPERS / "docker-credential-fake", bin_dir / "docker-credential-secretservice")
    assert DockerConfig({}, env=env).creds_store == "secretservice"
    assert not DockerConfig({}, env=env).contains_auth
    assert DockerConfig({"auths": {"r": {}}}, env=env).creds_store is None
    # With `pass` installed the CLI prefers docker-credential-pass, and keeps nothing
    # when that helper is absent.
    (bin_dir / "pass").symlink_to(bin_dir / "cat")
    assert DockerConfig({}, env=env).creds_store is None


# --------------------------------------------------------------------------- headers


def test_http_headers_from_file_and_env(tmp_path: Path) -> None:
    data = {
        "HttpHeaders": {"x-meta-Foo": "bar", "Authorization": "Bearer hdrsecret"},
        "currentContext": "ctx",
    }
    config = DockerConfig.load(make_env(tmp_path, data))
    assert config.http_headers == {"x-meta-Foo": "bar", "Authorization": "Bearer hdrsecret"}
    assert config.current_context == "ctx"
    assert "hdrsecret" not in repr(config)
    # CLI 28.2.2: DOCKER_CUSTOM_HEADERS replaces HttpHeaders, keys canonicalised, empty
    # values kept (sent as empty headers).
    env = make_env(tmp_path, data, DOCKER_CUSTOM_HEADERS="one=1,four=,x-two=a=b")
    assert DockerConfig.load(env).http_headers == {"One": "1", "Four": "", "X-Two": "a=b"}
    quoted = make_env(tmp_path, data, DOCKER_CUSTOM_HEADERS='"x-list=a,b", y = 2 ')
    assert DockerConfig.load(quoted).http_headers == {"X-List": "a,b", "Y": " 2 "}


@pytest.mark.parametrize(
    ("value", "match"), [("novalue", 'has no "="'), ("=secret", "empty key"), ('a="b', "comma")]
)
def test_bad_custom_headers(tmp_path: Path, value: str, match: str) -> None:
    with pytest.raises(ConfigFileError, match=match) as info:
        DockerConfig.load(make_env(tmp_path, DOCKER_CUSTOM_HEADERS=value))
    assert "secret" not in str(info.value)


# --------------------------------------------------------------------------- model


def test_registry_auth_json_field_order_and_omission() -> None:
    auth = RegistryAuth(
        registry_token=SecretStr("r"),
        identity_token=SecretStr("i"),
        server_address="s",
        email="e",
        auth=SecretStr(b64("u:p")),
        password=SecretStr("p"),
        username="u",
    )
    assert list(auth.to_engine_json()) == [
        "username",
        "password",
        "auth",
        "email",
        "serveraddress",
        "identitytoken",
        "registrytoken",
    ]
    assert RegistryAuth(username="u", password=SecretStr("")).to_engine_json() == {"username": "u"}
    assert RegistryAuth().to_engine_json() == {}


def test_registry_auth_decodes_auth_and_hides_secrets() -> None:
    auth = RegistryAuth(auth=b64("alice:wonder:land"))  # type: ignore[arg-type]
    assert auth.username == "alice"
    assert auth.password == SecretStr("wonder:land")
    for text in (repr(auth), str(auth), auth.model_dump_json()):
        assert "wonder" not in text
        assert b64("alice:wonder:land") not in text
    with pytest.raises(ValidationError, match="auth is not valid base64") as info:
        RegistryAuth(auth=SecretStr("@@not-base64@@"))
    assert "not-base64" not in str(info.value)
    with pytest.raises(ValidationError):
        RegistryAuth(username="u", unknown="x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        auth.username = "bob"  # type: ignore[misc]


def test_merge_credentials_code_wins_over_any_spelling() -> None:
    configured = {
        "https://registry.example.com:5000/v1/": RegistryAuth(username="file"),
        "docker.io": RegistryAuth(username="filehub"),
        "other.example.com": RegistryAuth(username="other"),
    }
    merged = merge_credentials(
        configured,
        {
            "registry.example.com:5000": RegistryAuth(username="code"),
            "index.docker.io": RegistryAuth(username="codehub"),
        },
    )
    assert {k: v.username for k, v in merged.items()} == {
        "other.example.com": "other",
        "registry.example.com:5000": "code",
        INDEX_SERVER: "codehub",
    }
    assert merge_credentials(configured, None) == configured


def test_header_moves_hub_aliases_to_index_key() -> None:
    header = registry_config_header({"docker.io": RegistryAuth(username="u")})
    assert decode_header(header) == {INDEX_SERVER: {"username": "u"}}
    both = registry_config_header(
        {"docker.io": RegistryAuth(username="a"), INDEX_SERVER: RegistryAuth(username="b")}
    )
    assert decode_header(both) == {"docker.io": {"username": "a"}, INDEX_SERVER: {"username": "b"}}


def test_header_escapes_like_go() -> None:
    header = registry_config_header(
        {
            "r<&>": RegistryAuth(
                username='a"\\\n\t\x01\x7f\u2029\ud800é', password=SecretStr("b\x08\x0c")
            )
        }
    )
    raw = base64.urlsafe_b64decode(header).decode("utf-8")
    assert raw == (
        '{"r\\u003c\\u0026\\u003e":{"username":"a\\"\\\\\\n\\t\\u0001\x7f\\u2029\ufffdé",'
        '"password":"b\\b\\f"}}'
    )


_text = st.text(st.characters(codec="utf-8"), max_size=20)


@given(
    st.dictionaries(
        _text.filter(lambda k: auth_config_key(k) != INDEX_SERVER),
        st.builds(
            RegistryAuth,
            username=st.none() | _text,
            password=st.none() | _text.map(SecretStr),
            server_address=st.none() | _text,
            identity_token=st.none() | _text.map(SecretStr),
            registry_token=st.none() | _text.map(SecretStr),
        ),
        max_size=5,
    )
)
def test_header_roundtrip_and_alphabet(auths: dict[str, RegistryAuth]) -> None:
    header = registry_config_header(auths)
    assert set(header) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")
    assert len(header) % 4 == 0
    raw = base64.urlsafe_b64decode(header).decode("utf-8")
    assert not set(raw) & set("<>&\u2028\u2029")
    assert json.loads(raw) == {k: v.to_engine_json() for k, v in auths.items()}
    assert list(json.loads(raw)) == sorted(auths)


def test_buildkit_warning() -> None:
    config = DockerConfig({"auths": {"r": {}}}, env={"PATH": ""})
    empty = DockerConfig({}, env={"PATH": ""})
    assert buildkit_auth_warning("1", config=config) is None
    assert buildkit_auth_warning(None, config=config) is None
    assert buildkit_auth_warning("2", config=empty) is None
    warning = buildkit_auth_warning("2", config=config)
    assert warning is not None
    assert "ignores X-Registry-Config" in warning
    assert "the Docker configuration" in warning
    in_code = buildkit_auth_warning("2", credentials={"r": RegistryAuth(username="u")})
    assert in_code is not None
    assert "credentials passed in code" in in_code
