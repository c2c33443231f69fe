"""No credential ever shows in a repr, str, log record or exception from auth and proxy code.

One run drives every flow, the failing ones included (missing, failing, slow and
garbage-printing helpers, malformed base64 in config.json and DOCKER_AUTH_CONFIG, bad
types, invalid models), gathers every text a user or a log could see, and scans it for
each secret and for the base64 forms that carry them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from buildsdk._configfile import ConfigFileError
from buildsdk.auth import (
    DockerConfig,
    RegistryAuth,
    buildkit_auth_warning,
    credential_helper_get,
    merge_credentials,
)
from buildsdk.errors import BuildSDKError
from buildsdk.proxy import ProxyConfig, proxy_build_args

HELPERS = Path(__file__).resolve().parents[1] / "fixtures" / "credhelpers"

SECRETS = [
    "S3cret-file-pw",
    "S3cret-idtok",
    "S3cret-regtok",
    "S3cret-helper-pw",
    "S3cret-helper-tok",
    "S3cret-env-pw",
    "S3cret-code-pw",
    "S3cret-code-tok",
    "S3cret-header",
    "S3cret-proxy-pw",
    "S3cret-in-helper-map",
    "s3cr3t-output",  # printed by the garbage helper
]
MALFORMED = ["S3cret-malformed!", "S3cret-bad-env-auth%", "S3cret-model-auth!"]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def forbidden() -> list[str]:
    words = [*SECRETS, *MALFORMED]
    words += [
        b64(f"fileuser:{SECRETS[0]}"),
        b64(f"envuser:{SECRETS[5]}"),
        b64(f"codeuser:{SECRETS[6]}"),
    ]
    return words


def texts_of(value: Any) -> Iterator[str]:
    """Every rendering a user could print: str, repr, and for errors the args and chain."""
    yield str(value)
    yield repr(value)
    if isinstance(value, BaseException):
        yield from (str(a) for a in value.args)
        if isinstance(value, ValidationError):
            yield json.dumps(value.errors(include_input=False), default=str)
        for linked in (value.__cause__, value.__context__):
            if linked is not None:
                yield from texts_of(linked)
    elif isinstance(value, dict):
        for item in value.values():
            yield from texts_of(item)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    for tool in ("cat", "sleep"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    store = tmp_path / "store.json"
    store.write_text(
        json.dumps(
            {
                "helped.example.com": {"Username": "helperuser", "Secret": SECRETS[3]},
                "token.example.com": {"Username": "<token>", "Secret": SECRETS[4]},
            }
        ),
        encoding="utf-8",
    )
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    config = {
        "auths": {
            "file.example.com": {"auth": b64(f"fileuser:{SECRETS[0]}")},
            "tokens.example.com": {"identitytoken": SECRETS[1], "registrytoken": SECRETS[2]},
            "malformed.example.com": {"auth": MALFORMED[0]},
        },
        "credsStore": "fake",
        "credHelpers": {
            "helped.example.com": "fake",
            "broken.example.com": "broken",
            "gone.example.com": "nosuch",
            "garbage.example.com": "garbage",
            "slow.example.com": "slow",
        },
        "HttpHeaders": {"Authorization": f"Bearer {SECRETS[8]}"},
        "proxies": {"default": {"httpProxy": f"http://proxyuser:{SECRETS[9]}@proxy:3128"}},
    }
    (cfg / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return {
        "PATH": f"{HELPERS}{os.pathsep}{bin_dir}",
        "HOME": str(tmp_path / "home"),
        "DOCKER_CONFIG": str(cfg),
        "FAKE_CREDHELPER_STORE": str(store),
        "DOCKER_AUTH_CONFIG": json.dumps(
            {"auths": {"env.example.com": {"auth": b64(f"envuser:{SECRETS[5]}")}}}
        ),
    }


def test_no_secret_in_any_rendering(env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []
    caplog.set_level(logging.DEBUG)

    # Long enough for the Python fake helper on a loaded machine; the slow one sleeps 60 s.
    config = DockerConfig.load(env, helper_timeout=2.0)
    seen += [config, config.auths, config.proxies, config.cred_helpers]
    all_creds = config.all_credentials()
    seen.append(all_creds)
    assert {"file.example.com", "tokens.example.com"}.isdisjoint(all_creds)  # the store wins
    assert {"helped.example.com", "token.example.com", "env.example.com"} <= set(all_creds)

    file_view = DockerConfig(
        {"auths": json.loads((Path(env["DOCKER_CONFIG"]) / "config.json").read_text())["auths"]},
        env=env,
    )
    seen += [file_view, file_view.all_credentials()]
    for registry in ("file.example.com", "tokens.example.com"):
        seen.append(file_view.credentials_for(registry))

    failures = 0
    for registry in (
        "helped.example.com",
        "token.example.com",
        "env.example.com",
        "broken.example.com",
        "gone.example.com",
        "garbage.example.com",
        "slow.example.com",
    ):
        try:
            seen.append(config.credentials_for(registry))
        except BuildSDKError as exc:
            failures += 1
            seen.append(exc)
    assert failures == 4
    with pytest.raises(BuildSDKError) as malformed:
        file_view.credentials_for("malformed.example.com")
    seen.append(malformed.value)

    bad_env = DockerConfig.load(
        {**env, "DOCKER_AUTH_CONFIG": json.dumps({"auths": {"x": {"auth": MALFORMED[1]}}})},
        helper_timeout=0.3,
    )
    seen.append(bad_env.all_credentials())
    with pytest.raises(BuildSDKError) as env_error:
        bad_env.credentials_for("x")
    seen.append(env_error.value)

    for bad in (
        {"auth": SecretStr(MALFORMED[2])},
        {"auth": MALFORMED[2]},
        {"password": SECRETS[6], "unknown": SECRETS[6]},
        {"identity_token": 12345, "password": SECRETS[6]},
    ):
        with pytest.raises(ValidationError) as invalid:
            RegistryAuth(**bad)
        seen.append(invalid.value)

    for data in (
        {"credHelpers": {"r": {"nested": SECRETS[10]}}},
        {"auths": {"r": {"password": [SECRETS[10]]}}},
        {"HttpHeaders": {"Authorization": [SECRETS[10]]}},
    ):
        with pytest.raises(ConfigFileError) as wrong:
            DockerConfig(data, env=env)
        seen.append(wrong.value)
    with pytest.raises(ConfigFileError) as header_error:
        DockerConfig({}, env={**env, "DOCKER_CUSTOM_HEADERS": f"={SECRETS[8]}"})
    seen.append(header_error.value)

    for helper in ("broken", "garbage", "nosuch"):
        try:
            credential_helper_get(helper, "x", env=env, timeout=5)
        except BuildSDKError as exc:
            seen.append(exc)

    code = {
        "code.example.com": RegistryAuth(
            username="codeuser",
            password=SecretStr(SECRETS[6]),
            identity_token=SecretStr(SECRETS[7]),
        )
    }
    merged = merge_credentials(all_creds, code)
    seen += [code, merged, RegistryAuth(auth=SecretStr(b64(f"codeuser:{SECRETS[6]}")))]
    seen.append(buildkit_auth_warning("2", config=config, credentials=code))
    seen += [ProxyConfig.from_config({"httpProxy": f"http://u:{SECRETS[9]}@p:1"}), config.proxies]
    # Proxy build args carry the proxy URL on purpose (the CLI sends it in the query);
    # they are checked here only to be sure that is the one place it appears.
    assert any(SECRETS[9] in v for v in proxy_build_args(config.proxies, None).values())

    texts = [text for value in seen for text in texts_of(value)]
    for record in caplog.records:
        texts += [record.getMessage(), str(record.args), record.exc_text or ""]
    assert len(caplog.records) >= 4  # broken, nosuch, garbage, slow were logged
    leaks = {word for word in forbidden() for text in texts if word in text}
    assert not leaks, f"secrets leaked: {sorted(leaks)}"
    assert "keychain is locked" in " ".join(texts)  # helper errors are still explained
