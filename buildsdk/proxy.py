"""Proxy build args from `config.json`, merged as `docker build` merges them.

Why: the CLI turns the `proxies` section of `config.json` into the engine's predefined
proxy build args (`HTTP_PROXY`, `http_proxy`, ...; no `ARG` needed in the Dockerfile) and
adds them to every build (docker/cli `ParseProxyConfig`). It picks the entry whose key is
the engine host string exactly as the CLI's client reports it (`unix:///var/run/docker.sock`,
`tcp://10.0.0.5:2376`; for `ssh://` hosts the CLI's client reports
`http://docker.example.com`), else `default`; a matching entry replaces `default` as a
whole. Each upper- and lower-case name is added only when the user's build args do not
hold that exact name (a user's `HTTP_PROXY` does not stop `http_proxy` being added), and a
name the user set without a value (`None`, JSON `null`) counts as set. docker-py mutates
the caller's `buildargs` while doing this and knows no `allProxy`; here the caller's
mapping is never touched.

Proxy URLs may carry credentials (`http://user:pass@proxy:3128`); the CLI sends them in
the build's query string and so must this module, but `ProxyConfig`'s `repr` hides them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from buildsdk._configfile import ConfigFileError

__all__ = ["ProxyConfig", "merge_proxy_build_args", "proxy_build_args"]

# (config.json key, build arg name), in the order the names are added.
_PROXY_KEYS = (
    ("httpProxy", "HTTP_PROXY"),
    ("httpsProxy", "HTTPS_PROXY"),
    ("noProxy", "NO_PROXY"),
    ("ftpProxy", "FTP_PROXY"),
    ("allProxy", "ALL_PROXY"),
)
_USERINFO = re.compile(r"(?<=://)([^/@]*?):[^/@]*@")


class ProxyConfig(BaseModel):
    """One `proxies` entry of `config.json`; empty strings mean "not set"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""
    ftp_proxy: str = ""
    all_proxy: str = ""

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> ProxyConfig:
        """Read an entry as written in `config.json` (`httpProxy`, ...; keys case-insensitive)."""
        folded = {str(k).lower(): v for k, v in entry.items()}
        values: dict[str, str] = {}
        for json_key, arg in _PROXY_KEYS:
            value = folded.get(json_key.lower())
            if value is None:
                continue
            if not isinstance(value, str):
                raise ConfigFileError(f"proxies.{json_key} must be a string")
            values[arg.lower()] = value
        return cls(**values)

    def build_args(self) -> dict[str, str]:
        """The build args this entry gives: upper- and lower-case name for each set value."""
        args: dict[str, str] = {}
        for _, arg in _PROXY_KEYS:
            value: str = getattr(self, arg.lower())
            if value:
                args[arg] = value
                args[arg.lower()] = value
        return args

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A proxy URL may embed a password; show the user name only.
        for name, value in super().__repr_args__():
            yield name, _USERINFO.sub(r"\1:***@", value) if isinstance(value, str) else value


def proxy_build_args(proxies: Mapping[str, ProxyConfig], engine_host: str | None) -> dict[str, str]:
    """The proxy build args that config.json's `proxies` give for the engine at `engine_host`.

    The entry keyed by `engine_host` wins over `default` (whole entry, not field by field).
    """
    entry = None
    if engine_host is not None:
        entry = proxies.get(engine_host)
    if entry is None:
        entry = proxies.get("default")
    return entry.build_args() if entry is not None else {}


def merge_proxy_build_args(
    buildargs: Mapping[str, str | None] | None, proxies: Mapping[str, str]
) -> dict[str, str | None]:
    """Return a new dict: the user's build args plus each proxy arg whose name is not set.

    Names are compared exactly (case-sensitive), as the CLI does; `buildargs` is not
    modified.
    """
    merged: dict[str, str | None] = dict(buildargs or {})
    for name, value in proxies.items():
        if name not in merged:
            merged[name] = value
    return merged
