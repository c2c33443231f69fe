"""docker-py's build integration scenarios, run against `buildsdk.compat.APIClient`.

The scenarios are those of docker-py's own `tests/integration/api_build_test.py` and
`models_images_test.py` (their behaviour, written fresh here): a code base that passes them
with docker-py keeps passing them after switching the import. Where buildsdk deliberately
behaves better (a StringIO Dockerfile works, a bad platform is refused before sending) the
test says so. What the build did is read back from the engine through docker-py.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pydantic
import pytest

from buildsdk import compat
from buildsdk.errors import APIError
from tests.integration.conftest import Engines, engines_unavailable
from tests.integration.test_compat_vs_docker_py import (
    BASE,
    docker_config,
    image_id_of,
    unique_tag,
    write_context,
)

__all__ = ["api", "inspector"]

pytestmark = [pytest.mark.engine, pytest.mark.dockerd]

# The fixture is shared with the side-by-side tests; naming it here makes pytest see it.
_ = docker_config


@pytest.fixture
def api(engines: Engines, docker_config: Path) -> Iterator[compat.APIClient]:
    """A compat client on the plain dockerd, reading the test's Docker configuration."""
    if engines.dockerd_host is None:
        engines_unavailable("dockerd was not started (no BUILDSDK_DOCKERD_HOST)")
    with compat.APIClient(base_url=engines.dockerd_host, version="auto") as client:
        yield client


@pytest.fixture
def inspector(engines: Engines) -> Iterator[docker.APIClient]:
    """docker-py, only to look at what the builds produced."""
    client = docker.APIClient(base_url=engines.dockerd_host, version="auto")
    try:
        yield client
    finally:
        client.close()


def _text(messages: list[dict[str, Any]]) -> str:
    return "".join(m.get("stream", "") for m in messages)


def _build(api: compat.APIClient, **kwargs: Any) -> list[dict[str, Any]]:
    kwargs.setdefault("rm", True)
    kwargs.setdefault("network_mode", "host")
    return list(api.build(decode=True, **kwargs))


def test_build_streaming_yields_dicts_as_they_come(api: compat.APIClient) -> None:
    stream = api.build(
        fileobj=io.BytesIO(f"FROM {BASE}\nRUN echo streamed\n".encode()),
        decode=True,
        nocache=True,
        rm=True,
        network_mode="host",
    )
    first = next(stream)
    assert first == {"stream": f"Step 1/2 : FROM {BASE}"}
    rest = list(stream)
    assert "streamed\n" in _text(rest)


def test_build_from_stringio(api: compat.APIClient, inspector: docker.APIClient) -> None:
    # docker-py refuses io.StringIO ("use io.BytesIO"); compat reads it as UTF-8 text.
    messages = _build(api, fileobj=io.StringIO(f"FROM {BASE}\nLABEL from=stringio\n"))
    assert inspector.inspect_image(image_id_of(messages))["Config"]["Labels"] == {
        "from": "stringio"
    }


def test_build_with_dockerignore(api: compat.APIClient, tmp_path: Path) -> None:
    context = write_context(
        tmp_path,
        {
            "Dockerfile": (
                f"FROM {BASE}\nADD . /test\nRUN echo files: $(cd /test && find . | sort)\n"
            ),
            ".dockerignore": "\n".join(
                [
                    "ignored",
                    "Dockerfile",
                    ".dockerignore",
                    " ignored-with-spaces ",
                    "!ignored/subdir/excepted-file",
                    "",
                    "# a comment",
                    "#file.txt",
                ]
            ),
            "not-ignored": "x",
            "#file.txt": "a file name that starts with #",
            "ignored-with-spaces": "x",
            "ignored/subdir/file": "x",
            "ignored/subdir/excepted-file": "x",
        },
    )
    messages = _build(api, path=context, nocache=True)
    # The Dockerfile and .dockerignore are sent (the engine needs them) and then removed.
    assert (
        "files: . ./#file.txt ./ignored ./ignored/subdir ./ignored/subdir/excepted-file "
        "./not-ignored\n"
    ) in _text(messages)


def _write_proxy_config(directory: Path) -> None:
    proxies = {
        "httpProxy": "http://proxy.example:3128",
        "httpsProxy": "https://proxy.example:3129",
        "ftpProxy": "ftp://proxy.example:2121",
        "noProxy": "localhost,127.0.0.1",
    }
    (directory / "config.json").write_text(json.dumps({"proxies": {"default": proxies}}))


def test_build_with_proxy(engines: Engines, docker_config: Path) -> None:
    _write_proxy_config(docker_config)
    dockerfile = f"FROM {BASE}\nRUN env | grep -i _proxy= | sort\n"
    with compat.APIClient(base_url=engines.dockerd_host, version="auto") as api:
        messages = _build(api, fileobj=io.BytesIO(dockerfile.encode()), nocache=True)
        text = _text(messages)
        for line in (
            "http_proxy=http://proxy.example:3128",
            "HTTP_PROXY=http://proxy.example:3128",
            "https_proxy=https://proxy.example:3129",
            "HTTPS_PROXY=https://proxy.example:3129",
            "ftp_proxy=ftp://proxy.example:2121",
            "no_proxy=localhost,127.0.0.1",
            "NO_PROXY=localhost,127.0.0.1",
        ):
            assert f"{line}\n" in text
        # User build args win over the configured proxies; use_config_proxy=False drops them.
        messages = _build(
            api,
            fileobj=io.BytesIO(dockerfile.encode()),
            nocache=True,
            buildargs={"http_proxy": "http://mine.example:1"},
        )
        assert "http_proxy=http://mine.example:1\n" in _text(messages)
        assert "HTTP_PROXY=http://proxy.example:3128\n" in _text(messages)
        messages = _build(
            api, fileobj=io.BytesIO(dockerfile.encode()), nocache=True, use_config_proxy=False
        )
        assert "proxy.example" not in _text(messages)


def test_build_with_buildargs_and_labels(
    api: compat.APIClient, inspector: docker.APIClient
) -> None:
    dockerfile = f"FROM {BASE}\nARG test\nUSER $test\n"
    buildargs = {"test": "OK"}
    messages = _build(
        api,
        fileobj=io.BytesIO(dockerfile.encode()),
        buildargs=buildargs,
        labels={"label1": "value1", "label2": "value2"},
    )
    config = inspector.inspect_image(image_id_of(messages))["Config"]
    assert config["User"] == "OK"
    assert config["Labels"] == {"label1": "value1", "label2": "value2"}
    assert buildargs == {"test": "OK"}  # not mutated (docker-py adds the proxies to it)


def test_build_shmsize(api: compat.APIClient) -> None:
    dockerfile = f"FROM {BASE}\nRUN echo shm: $(df -k /dev/shm | tail -n 1 | awk '{{print $2}}')\n"
    messages = _build(
        api, fileobj=io.BytesIO(dockerfile.encode()), shmsize=64 * 1024 * 1024, nocache=True
    )
    assert f"shm: {64 * 1024}\n" in _text(messages)


def test_build_isolation_default(api: compat.APIClient) -> None:
    messages = _build(api, fileobj=io.BytesIO(f"FROM {BASE}\n".encode()), isolation="default")
    image_id_of(messages)


def test_build_with_cache_from(api: compat.APIClient, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    dockerfile = f"FROM {BASE}\nENV FOO=bar{marker}\nRUN touch baz\nRUN touch bax\n"
    context = write_context(tmp_path, {"Dockerfile": dockerfile})
    tag = unique_tag("cache-from")
    image_id_of(_build(api, path=context, tag=tag))
    with_cache = _build(api, path=context, cache_from=[tag])
    assert _text(with_cache).count("Using cache") == 3
    # Naming only an image that does not exist means no cache source at all.
    without = _build(api, path=context, cache_from=[unique_tag("nosuch")])
    assert _text(without).count("Using cache") == 0


def test_build_container_with_target(api: compat.APIClient, inspector: docker.APIClient) -> None:
    dockerfile = f"FROM {BASE} AS first\nRUN mkdir -p /tmp/first\nFROM first\nRUN echo second\n"
    messages = _build(api, fileobj=io.BytesIO(dockerfile.encode()), target="first")
    assert "second" not in _text(messages)
    assert inspector.inspect_image(image_id_of(messages))["Id"]


def test_build_with_network_mode_none_fails_in_stream(api: compat.APIClient) -> None:
    dockerfile = f"FROM {BASE}\nRUN ip route | grep -q default\n"
    messages = _build(api, fileobj=io.BytesIO(dockerfile.encode()), network_mode="none")
    # No network, no default route: the step fails and the stream says so with its code.
    assert messages[-1]["errorDetail"]["code"] == 1


def test_build_with_extra_hosts(api: compat.APIClient) -> None:
    dockerfile = (
        f"FROM {BASE}\nRUN ping -c1 -W1 hello.world.test && ping -c1 -W1 extrahost.local.test\n"
    )
    messages = _build(
        api,
        fileobj=io.BytesIO(dockerfile.encode()),
        nocache=True,
        extra_hosts={"extrahost.local.test": "127.0.0.1", "hello.world.test": "127.0.0.1"},
    )
    assert "error" not in messages[-1]
    assert "PING hello.world.test (127.0.0.1)" in _text(messages)


def test_build_squash_needs_an_experimental_engine(api: compat.APIClient) -> None:
    stream = api.build(fileobj=io.BytesIO(f"FROM {BASE}\nRUN true\n".encode()), squash=True)
    with pytest.raises(APIError, match="experimental"):
        next(stream)


def test_build_stderr_data(api: compat.APIClient) -> None:
    control = "\x1b[91m"
    snippet = "Ancient Temple (Mystic Oriental Dream ~ Ancient Temple)"
    dockerfile = f"FROM {BASE}\nRUN sh -c \">&2 echo '{snippet}'\"\n"
    messages = _build(api, fileobj=io.BytesIO(dockerfile.encode()), nocache=True)
    assert f"{control}{snippet}\n" in _text(messages)


def test_build_gzip_encoding(api: compat.APIClient, tmp_path: Path) -> None:
    context = write_context(
        tmp_path, {"Dockerfile": f"FROM {BASE}\nADD . /test\n", "file.txt": "x"}
    )
    messages = _build(api, path=context, gzip=True, nocache=True)
    assert "Successfully built" in messages[-1]["stream"]


def test_build_gzip_custom_encoding(api: compat.APIClient) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        data = f"FROM {BASE}\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO(gzip.compress(raw.getvalue()))
    messages = _build(api, fileobj=compressed, custom_context=True, encoding="gzip")
    assert "Successfully built" in messages[-1]["stream"]
    with pytest.raises(pydantic.ValidationError, match="gzip and encoding"):
        api.build(fileobj=compressed, custom_context=True, encoding="bzip2", gzip=True)


def test_build_with_dockerfile_empty_lines(api: compat.APIClient, tmp_path: Path) -> None:
    context = write_context(
        tmp_path, {"Dockerfile": f"FROM {BASE}\n\n\n\nRUN echo empty-lines\n\n"}
    )
    messages = _build(api, path=context, nocache=True)
    assert "empty-lines\n" in _text(messages)


def test_build_invalid_platform_is_refused_before_sending(api: compat.APIClient) -> None:
    # docker-py sends it and gets the engine's 400/500; compat checks the grammar first.
    with pytest.raises(pydantic.ValidationError, match="platform"):
        api.build(fileobj=io.BytesIO(f"FROM {BASE}\n".encode()), platform="foo bar")


def test_build_unknown_platform_is_the_engine_s_error(api: compat.APIClient) -> None:
    stream = api.build(fileobj=io.BytesIO(f"FROM {BASE}\n".encode()), platform="foobar")
    with pytest.raises(APIError) as error:
        list(stream)
    assert error.value.status_code in (400, 500)
    assert "unknown operating system" in error.value.message or "invalid platform" in (
        error.value.message
    )


def test_build_out_of_context_dockerfile(api: compat.APIClient, tmp_path: Path) -> None:
    base = tmp_path / "base"
    write_context(base / "ctx", {"file.txt": "x"})
    write_context(
        base / "custom",
        {"Dockerfile": f"FROM {BASE}\nCOPY . /src\nRUN echo files: $(ls -A /src)\n"},
    )
    messages = _build(api, path=str(base / "ctx"), dockerfile="../custom/Dockerfile", nocache=True)
    assert "files: file.txt\n" in _text(messages)


@pytest.mark.parametrize("form", ["relative", "nested", "absolute", "dotted"])
def test_build_in_context_dockerfile(api: compat.APIClient, tmp_path: Path, form: str) -> None:
    ctx = tmp_path / "ctx"
    dockerfile = f"FROM {BASE}\nCOPY file.txt /src/\nRUN echo found: $(ls /src)\n"
    write_context(ctx, {"file.txt": "x", "custom.dockerfile": dockerfile})
    write_context(ctx, {"nested/dir/Dockerfile": dockerfile})
    name = {
        "relative": "custom.dockerfile",
        "nested": "nested/dir/Dockerfile",
        "absolute": str(ctx / "custom.dockerfile"),
        "dotted": "./nested/../custom.dockerfile",
    }[form]
    messages = _build(api, path=str(ctx), dockerfile=name, nocache=True)
    assert "found: file.txt\n" in _text(messages)


def test_prune_builds(api: compat.APIClient) -> None:
    result = api.prune_builds(filters={"until": "87600h"})
    assert "SpaceReclaimed" in result
    assert result["CachesDeleted"] is None or isinstance(result["CachesDeleted"], list)


def test_images_build(api: compat.APIClient, inspector: docker.APIClient) -> None:
    tag = unique_tag("images-build")
    image_id, log = api.images_build(
        fileobj=io.BytesIO(f'FROM {BASE}\nCMD ["ls"]\n'.encode()), tag=tag, rm=True
    )
    assert inspector.inspect_image(tag)["Id"] == image_id
    assert image_id.startswith("sha256:")
    assert any("Successfully tagged" in m.get("stream", "") for m in log)


def test_images_build_with_error(api: compat.APIClient) -> None:
    with pytest.raises(compat.BuildError) as error:
        api.images_build(
            fileobj=io.BytesIO(f"FROM {BASE}\nRUN exit 1\n".encode()),
            rm=True,
            network_mode="host",
        )
    assert str(error.value) == "The command '/bin/sh -c exit 1' returned a non-zero code: 1"
    assert error.value.build_log
    assert error.value.code == 1


def test_images_build_with_multiple_success(api: compat.APIClient) -> None:
    dockerfile = f"FROM {BASE}\nRUN echo 'Successfully built abcd1234'\nCMD [\"ls\"]\n"
    image_id, _ = api.images_build(
        fileobj=io.BytesIO(dockerfile.encode()), rm=True, network_mode="host", nocache=True
    )
    assert image_id.startswith("sha256:")
    assert "abcd1234" not in image_id


def test_images_build_quiet(api: compat.APIClient, inspector: docker.APIClient) -> None:
    image_id, log = api.images_build(fileobj=io.BytesIO(f"FROM {BASE}\n".encode()), quiet=True)
    assert log == [{"stream": f"{image_id}\n"}]
    assert inspector.inspect_image(image_id)["Id"] == image_id
