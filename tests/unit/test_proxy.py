"""Proxy build args from config.json, checked against what `docker build` sent.

Cases marked "CLI 28.2.2" were recorded from the real CLI (DOCKER_BUILDKIT=0) talking to
a recording server on `unix:///tmp/capture/d.sock`.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsdk._configfile import ConfigFileError
from buildsdk.auth import DockerConfig
from buildsdk.proxy import ProxyConfig, merge_proxy_build_args, proxy_build_args
from tests import VECTORS_DIR

VECTORS = VECTORS_DIR / "cli_build_requests.json"

# The vectors' config.json proxies (see test_auth.py: rebuilt, then confirmed with the CLI).
VECTOR_PROXIES = {"default": {"httpProxy": "http://proxy:3128", "noProxy": "localhost"}}

HOST = "unix:///tmp/capture/d.sock"
CLI_PROXIES = {
    "default": {"httpProxy": "http://def:1", "noProxy": "d"},
    HOST: {
        "httpProxy": "http://host:1",
        "httpsProxy": "https://hs:2",
        "ftpProxy": "ftp://f",
        "allProxy": "socks5://a",
        "noProxy": "",
    },
}


def config_with(proxies: dict[str, Any]) -> DockerConfig:
    return DockerConfig({"proxies": proxies}, env={"PATH": ""})


def go_map_json(mapping: dict[str, str | None]) -> str:
    """A map[string]*string as Go's json.Marshal writes it (sorted keys, no spaces)."""
    return json.dumps(mapping, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def user_build_args(flags: list[str]) -> dict[str, str | None]:
    args: dict[str, str | None] = {}
    for flag, value in itertools.pairwise(flags):
        if flag == "--build-arg":
            name, sep, text = value.partition("=")
            args[name] = text if sep else None
    return args


def test_vectors_buildargs_reproduced() -> None:
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    requests = [r for r in vectors["requests"] if "query" in r]
    assert len(requests) == 21
    proxies = proxy_build_args(config_with(VECTOR_PROXIES).proxies, "unix:///var/run/docker.sock")
    with_user_args = 0
    for request in requests:
        user = user_build_args(request["flags"])
        with_user_args += bool(user)
        merged = merge_proxy_build_args(user, proxies)
        assert [go_map_json(merged)] == request["query"]["buildargs"], request["flags"]
    assert with_user_args == 1


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        # CLI 28.2.2: the entry for the engine's host replaces "default" as a whole (its
        # empty noProxy does not fall back to default's).
        (
            {},
            '{"ALL_PROXY":"socks5://a","FTP_PROXY":"ftp://f","HTTPS_PROXY":"https://hs:2",'
            '"HTTP_PROXY":"http://host:1","all_proxy":"socks5://a","ftp_proxy":"ftp://f",'
            '"http_proxy":"http://host:1","https_proxy":"https://hs:2"}',
        ),
        # CLI 28.2.2: --build-arg HTTP_PROXY=mine --build-arg https_proxy= ; the other
        # case of each name is still added.
        (
            {"HTTP_PROXY": "mine", "https_proxy": ""},
            '{"ALL_PROXY":"socks5://a","FTP_PROXY":"ftp://f","HTTPS_PROXY":"https://hs:2",'
            '"HTTP_PROXY":"mine","all_proxy":"socks5://a","ftp_proxy":"ftp://f",'
            '"http_proxy":"http://host:1","https_proxy":""}',
        ),
        # CLI 28.2.2: --build-arg FROMENV (set in env) --build-arg UNSET --build-arg ALL_PROXY;
        # a name without a value (null) counts as set.
        (
            {"FROMENV": "e", "UNSET": None, "ALL_PROXY": None},
            '{"ALL_PROXY":null,"FROMENV":"e","FTP_PROXY":"ftp://f","HTTPS_PROXY":"https://hs:2",'
            '"HTTP_PROXY":"http://host:1","UNSET":null,"all_proxy":"socks5://a",'
            '"ftp_proxy":"ftp://f","http_proxy":"http://host:1","https_proxy":"https://hs:2"}',
        ),
    ],
)
def test_host_entry_and_user_args_match_cli(user: dict[str, str | None], expected: str) -> None:
    proxies = proxy_build_args(config_with(CLI_PROXIES).proxies, HOST)
    assert go_map_json(merge_proxy_build_args(user, proxies)) == expected


def test_default_entry_when_host_unknown_or_none() -> None:
    config = config_with(CLI_PROXIES)
    expected = {
        "HTTP_PROXY": "http://def:1",
        "http_proxy": "http://def:1",
        "NO_PROXY": "d",
        "no_proxy": "d",
    }
    assert proxy_build_args(config.proxies, "tcp://elsewhere:2376") == expected
    assert proxy_build_args(config.proxies, None) == expected
    assert proxy_build_args(config_with({}).proxies, HOST) == {}
    assert (
        proxy_build_args(config_with({HOST: {"httpProxy": "x"}}).proxies, "tcp://other:2375") == {}
    )


def test_proxies_read_from_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"proxies": VECTOR_PROXIES}), encoding="utf-8")
    config = DockerConfig.load({"DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path), "PATH": ""})
    assert config.proxies == {
        "default": ProxyConfig(http_proxy="http://proxy:3128", no_proxy="localhost")
    }


def test_callers_mapping_never_mutated() -> None:
    user: dict[str, str | None] = {"A": "1"}
    proxies = {"HTTP_PROXY": "p", "http_proxy": "p"}
    merged = merge_proxy_build_args(user, proxies)
    assert user == {"A": "1"}
    assert merged == {"A": "1", "HTTP_PROXY": "p", "http_proxy": "p"}
    assert merged is not user
    assert merge_proxy_build_args(None, {}) == {}


def test_proxy_config_repr_hides_passwords() -> None:
    entry = ProxyConfig.from_config({"httpProxy": "http://bob:pr0xy-pw@proxy:3128", "noProxy": "x"})
    assert entry.http_proxy == "http://bob:pr0xy-pw@proxy:3128"
    assert "pr0xy-pw" not in repr(entry)
    assert "bob:***@proxy" in repr(entry)
    assert "pr0xy-pw" not in str(entry)
    with pytest.raises(ConfigFileError, match=r"proxies\.noProxy must be a string"):
        ProxyConfig.from_config({"noProxy": ["a"]})


_names = st.sampled_from(
    [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "A",
        "Http_Proxy",
    ]
)


@given(
    st.dictionaries(_names, st.none() | st.text(max_size=5)),
    st.dictionaries(_names, st.text(min_size=1, max_size=5)),
)
def test_merge_properties(user: dict[str, str | None], proxies: dict[str, str]) -> None:
    before = dict(user)
    merged = merge_proxy_build_args(user, proxies)
    assert user == before
    assert set(merged) == set(user) | set(proxies)
    for name, value in merged.items():
        assert value == (user[name] if name in user else proxies[name])
