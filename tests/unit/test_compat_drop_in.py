"""`buildsdk.compat` as a drop-in for docker-py code: its inputs, its exceptions, its DockerClient.

No engine: the compat client's HTTP layer is an `httpx.MockTransport` (as in test_compat.py)
and what is asserted is what would be sent and what the caller's `except` clauses see.
Without docker-py is checked in a child interpreter in which importing `docker` fails.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import docker
import docker.errors
import httpx
import pytest
import requests

from buildsdk import compat
from buildsdk.endpoint import ConfigError, TLSConfig
from buildsdk.errors import (
    APIError,
    BuildSDKError,
    EngineUnreachable,
    NotFound,
    ServerError,
    StreamError,
)

Handler = Callable[[httpx.Request], httpx.Response]
_ID = "sha256:" + "b" * 64


def _client(handler: Handler) -> compat.APIClient:
    api = compat.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    api.client._http.close()
    api.client._http = httpx.Client(
        transport=httpx.MockTransport(handler), base_url="http://docker"
    )
    return api


@pytest.fixture(autouse=True)
def _empty_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("DOCKER_HOST", raising=False)


class _Streamed(httpx.SyncByteStream):
    """A response body that is streamed, as a real transport delivers it."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self._body


def _built(request: httpx.Request) -> httpx.Response:
    body = b'{"stream":"Step 1/1 : FROM busybox\\n"}\r\n{"aux":{"ID":"%s"}}\r\n' % _ID.encode()
    return httpx.Response(200, stream=_Streamed(body))


def _dockerfile_sent(request: httpx.Request) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(request.content)) as archive:
        member = archive.extractfile("Dockerfile")
        assert member is not None
        return member.read()


# -- inputs as docker-py reads them ----------------------------------------------------------


def test_one_bytesio_serves_several_builds_like_docker_py() -> None:
    # docker-py's test_build_with_cache_from builds twice from the same BytesIO.
    script = io.BytesIO(b"FROM busybox\nENV FOO=bar\n")
    sent: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(_dockerfile_sent(request))
        return _built(request)

    with _client(answer) as api:
        list(api.build(fileobj=script, tag="build1"))
        list(api.build(fileobj=script, tag="build2", cache_from=["build1"]))
        script.seek(5)  # wherever the position is, the whole Dockerfile is sent
        list(api.build(fileobj=script))
    assert sent == [b"FROM busybox\nENV FOO=bar\n"] * 3


def test_a_custom_context_is_read_from_its_position_like_docker_py(tmp_path: Path) -> None:
    # docker-py hands the file to requests, which sends it from where it stands.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(b"FROM busybox\n")
        archive.addfile(info, io.BytesIO(b"FROM busybox\n"))
    data = raw.getvalue()
    bodies: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return _built(request)

    context = io.BytesIO(b"junk" + data)
    context.seek(4)
    with _client(answer) as api:
        list(api.build(fileobj=context, custom_context=True))
    assert bodies == [data]


def test_a_binary_file_dockerfile_is_sent_whole(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_bytes(b"FROM busybox\nLABEL a=b\n")
    sent: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(_dockerfile_sent(request))
        return _built(request)

    with _client(answer) as api, path.open("rb") as dockerfile:
        list(api.build(fileobj=dockerfile))
    assert sent == [b"FROM busybox\nLABEL a=b\n"]


@pytest.mark.parametrize("value", [1, 0, True])
def test_truthy_ints_are_flags_like_docker_py(value: int) -> None:
    queries: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        queries.append(dict(parse_qsl(request.url.query.decode())))
        return _built(request)

    # Untyped docker-py code passes ints where the signature says bool.
    flags: dict[str, Any] = dict.fromkeys(("nocache", "pull", "forcerm", "quiet", "rm"), value)
    with _client(answer) as api:
        list(api.build(fileobj=io.BytesIO(b"FROM busybox\n"), **flags))
    for flag in ("nocache", "pull", "forcerm", "q"):
        assert (flag in queries[0]) == bool(value), flag
        if value:
            assert queries[0][flag] == "1"
    # The engine removes by default, so only a false rm has to be sent.
    assert queries[0].get("rm", "1") == ("1" if value else "0")


# -- exceptions ------------------------------------------------------------------------------


def _error(status: int, message: str) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.dumps({"message": message}).encode()
        headers = {"Content-Type": "application/json"}
        return httpx.Response(status, headers=headers, stream=_Streamed(body))

    return answer


@pytest.mark.parametrize(
    ("status", "message", "docker_class", "buildsdk_class"),
    [
        (404, "No such image: nosuch:latest", docker.errors.ImageNotFound, NotFound),
        (404, "page not found", docker.errors.NotFound, NotFound),
        (500, "Cannot locate specified Dockerfile: Nope", docker.errors.APIError, ServerError),
        (418, "teapot", docker.errors.APIError, APIError),
    ],
    ids=["image-not-found", "not-found", "server-error", "other"],
)
def test_http_errors_are_docker_py_s_classes_with_its_attributes(
    status: int, message: str, docker_class: type[Exception], buildsdk_class: type[Exception]
) -> None:
    with _client(_error(status, message)) as api:
        stream = api.build(fileobj=io.BytesIO(b"FROM busybox\n"), decode=True)
        with pytest.raises(docker_class) as raised:
            next(stream)
    assert isinstance(raised.value, buildsdk_class)
    assert isinstance(raised.value, requests.exceptions.HTTPError)
    error: Any = raised.value  # docker-py's attributes are not typed
    assert error.status_code == error.response.status_code == status
    assert error.explanation == error.message == message
    assert error.response.json() == {"message": message}
    assert error.is_error()
    assert error.is_client_error() == (status < 500)
    assert error.is_server_error() == (status >= 500)
    assert error.response.url == "http+docker://localhost/v1.41/build"
    assert f'("{message}")' in str(error)


def test_prune_http_error_is_docker_py_s_api_error() -> None:
    with _client(_error(500, "prune failed")) as api, pytest.raises(docker.errors.APIError) as e:
        api.prune_builds()
    assert isinstance(e.value, ServerError)
    assert str(e.value) == (
        "500 Server Error for http+docker://localhost/v1.41/build/prune: Internal Server Error "
        '("prune failed")'
    )


def test_a_broken_stream_is_docker_py_s_stream_parse_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Streamed(b'{"stream":"Step 1/1"}\r\nnot json\r\n'))

    with _client(answer) as api:
        stream = api.build(fileobj=io.BytesIO(b"FROM busybox\n"), decode=True)
        with pytest.raises(docker.errors.StreamParseError) as raised:
            list(stream)
    assert isinstance(raised.value, StreamError)
    assert raised.value.msg == str(raised.value)  # type: ignore[attr-defined]


def test_no_engine_is_requests_connection_error(tmp_path: Path) -> None:
    # docker-py lets requests' ConnectionError through when nothing listens.
    api = compat.APIClient(base_url=f"unix://{tmp_path}/none.sock", version="1.41")
    with api, pytest.raises(requests.exceptions.ConnectionError) as raised:
        api.build(fileobj=io.BytesIO(b"FROM busybox\n"))
    assert isinstance(raised.value, EngineUnreachable)
    assert str(tmp_path) in str(raised.value)


def test_missing_tls_files_are_tls_parameter_error(tmp_path: Path) -> None:
    tls = TLSConfig(ca_cert=tmp_path / "ca.pem")
    with pytest.raises(docker.errors.TLSParameterError) as raised:
        compat.APIClient(base_url="tcp://127.0.0.1:2376", tls=tls)
    assert isinstance(raised.value, ConfigError)
    assert "ca.pem" in str(raised.value)


def test_a_translated_error_keeps_its_cause_and_hides_the_original() -> None:
    with _client(_error(404, "no such image: x")) as api:
        stream = api.build(fileobj=io.BytesIO(b"FROM busybox\n"))
        with pytest.raises(docker.errors.ImageNotFound) as raised:
            next(stream)
    assert raised.value.__suppress_context__
    assert raised.value.__cause__ is None


def test_every_compat_error_is_a_buildsdk_error() -> None:
    for cls in (compat.BuildError, compat.InvalidArgument, compat.TLSParameterError):
        assert issubclass(cls, BuildSDKError)
        assert issubclass(cls, docker.errors.DockerException)
    assert issubclass(compat.ArgumentTypeError, BuildSDKError)
    assert issubclass(compat.ArgumentTypeError, TypeError)


# -- without docker-py -----------------------------------------------------------------------

_WITHOUT_DOCKER_PY = textwrap.dedent(
    """
    import io, json, sys
    sys.modules["docker"] = None  # importing docker now fails, as when it is not installed
    import httpx
    from buildsdk import compat, errors

    ID = "sha256:" + "c" * 64
    seen = []

    def answer(request):
        seen.append((request.method, request.url.path))
        if request.url.path.endswith("/build"):
            body = b'{"stream":"Step 1/1 : FROM busybox\\\\n"}\\r\\n{"aux":{"ID":"%s"}}\\r\\n'
            return httpx.Response(200, stream=httpx.ByteStream(body % ID.encode()))
        if request.url.path.endswith("/images/nosuch/json"):
            body = json.dumps({"message": "No such image: nosuch"}).encode()
            return httpx.Response(404, stream=httpx.ByteStream(body))
        attrs = {"Id": ID, "RepoTags": ["app:1", "<none>:<none>"],
                 "Config": {"Labels": {"a": "b"}}}
        return httpx.Response(200, stream=httpx.ByteStream(json.dumps(attrs).encode()))

    client = compat.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    client.api.client._http = httpx.Client(
        transport=httpx.MockTransport(answer), base_url="http://docker"
    )
    with client:
        image, logs = client.images.build(fileobj=io.BytesIO(b"FROM busybox\\n"), tag="app:1")
        result = {
            "docker_py": compat.DOCKER_PY,
            "type": type(image).__module__ + "." + type(image).__name__,
            "id": image.id, "short_id": image.short_id, "tags": image.tags,
            "labels": image.labels, "logs": list(logs), "seen": seen,
        }
        try:
            client.images.get("nosuch")
        except errors.NotFound as exc:
            result["not_found"] = [c.__module__ + "." + c.__name__ for c in type(exc).__mro__]
        try:
            client.containers
        except AttributeError:
            result["containers"] = "AttributeError"
        try:
            client.api.build(path=".", gzip=True, encoding="text/html")
        except compat.InvalidArgument as exc:
            result["invalid"] = [c.__name__ for c in type(exc).__mro__]
    print(json.dumps(result))
    """
)


def test_without_docker_py_compat_raises_buildsdk_errors_and_returns_its_image() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_DOCKER_PY],
        capture_output=True,
        text=True,
        check=True,
        env={"DOCKER_CONFIG": "/nonexistent", "PATH": "/usr/bin:/bin"},
    )
    result = json.loads(done.stdout)
    assert result == {
        "docker_py": False,
        "type": "buildsdk.compat.Image",
        "id": "sha256:" + "c" * 64,
        "short_id": "sha256:cccccccccccc",
        "tags": ["app:1"],
        "labels": {"a": "b"},
        "logs": [
            {"stream": "Step 1/1 : FROM busybox\n"},
            {"aux": {"ID": "sha256:" + "c" * 64}},
        ],
        "seen": [
            ["POST", "/v1.41/build"],
            ["GET", "/v1.41/images/sha256:" + "c" * 64 + "/json"],
            ["GET", "/v1.41/images/nosuch/json"],
        ],
        "not_found": [
            "buildsdk.errors.NotFound",
            "buildsdk.errors.APIError",
            "buildsdk.errors.BuildSDKError",
            "builtins.Exception",
            "builtins.BaseException",
            "builtins.object",
        ],
        "containers": "AttributeError",
        "invalid": [
            "InvalidArgument",
            "BuildSDKError",
            "ValueError",
            "Exception",
            "BaseException",
            "object",
        ],
    }


def test_a_connection_error_has_requests_attributes(tmp_path: Path) -> None:
    api = compat.APIClient(base_url=f"unix://{tmp_path}/none.sock", version="1.41")
    with api, pytest.raises(requests.exceptions.ConnectionError) as raised:
        api.prune_builds()
    assert raised.value.request is None
    assert raised.value.response is None
