"""Every keyword of docker-py's APIClient.build() is a BuildOptions field with the same name."""

from __future__ import annotations

import inspect
import io
from pathlib import Path
from typing import Any

import pytest
from docker.api.build import BuildApiMixin

from buildsdk.build import BuildOptions

HERE = str(Path(__file__).resolve().parent)
DOCKER_PY_KEYWORDS = [
    name for name in inspect.signature(BuildApiMixin.build).parameters if name != "self"
]

# A realistic value for each docker-py keyword, as docker-py's documentation describes it.
SAMPLES: dict[str, Any] = {
    "path": HERE,
    "tag": "app:1",
    "quiet": True,
    "fileobj": io.BytesIO(b"FROM scratch\n"),
    "nocache": True,
    "rm": False,
    "timeout": 600,
    "custom_context": False,
    "encoding": None,
    "pull": True,
    "forcerm": True,
    "dockerfile": None,
    "container_limits": {
        "memory": 64 * 1024**2,
        "memswap": -1,
        "cpushares": 512,
        "cpusetcpus": "0",
    },
    "decode": True,
    "buildargs": {"PY": "3.12"},
    "gzip": True,
    "shmsize": 64 * 1024**2,
    "labels": {"a": "b"},
    "cache_from": ["app:cache"],
    "target": "final",
    "network_mode": "host",
    "squash": False,
    "extra_hosts": {"db": "10.0.0.2"},
    "platform": "linux/amd64",
    "isolation": "default",
    "use_config_proxy": False,
}


def test_docker_py_signature_is_the_one_we_know() -> None:
    assert len(DOCKER_PY_KEYWORDS) == 26
    assert set(DOCKER_PY_KEYWORDS) == set(SAMPLES)


@pytest.mark.parametrize("name", DOCKER_PY_KEYWORDS)
def test_keyword_is_a_field(name: str) -> None:
    assert name in BuildOptions.model_fields


@pytest.mark.parametrize("name", DOCKER_PY_KEYWORDS)
def test_docker_py_default_is_accepted(name: str) -> None:
    default = inspect.signature(BuildApiMixin.build).parameters[name].default
    kwargs: dict[str, Any] = {"path": HERE, name: default}
    if name == "path":
        kwargs["path"] = HERE  # docker-py's None default needs another context source
    opts = BuildOptions(**kwargs)
    assert opts.to_query("1.41")


def test_all_docker_py_keywords_together() -> None:
    opts = BuildOptions(**SAMPLES)
    query = opts.to_query("1.41")
    assert ("t", "app:1") in query
    assert ("rm", "0") in query
    assert ("memory", str(64 * 1024**2)) in query
    assert ("extrahosts", "db:10.0.0.2") in query


def test_docker_py_call_style_for_a_remote_context() -> None:
    opts = BuildOptions(path="https://github.com/docker/app.git", tag="app", rm=True, decode=True)
    assert opts.remote_url == "https://github.com/docker/app.git"
