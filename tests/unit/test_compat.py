"""`buildsdk.compat` without an engine: signature, request, stream framing, errors, prune.

The client's HTTP layer is replaced by an `httpx.MockTransport` that records each request
and answers with canned bytes, so what is asserted is what would go over the wire and what
the caller's loop receives.
"""

from __future__ import annotations

import base64
import inspect
import io
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import docker
import httpx
import pydantic
import pytest
from docker.api.build import BuildApiMixin
from hypothesis import given
from hypothesis import strategies as st

from buildsdk import compat
from buildsdk.endpoint import TLSConfig
from buildsdk.errors import BadRequest, BuildError, BuildSDKError, StreamError, UnsupportedOption

Handler = Callable[[httpx.Request], httpx.Response]

_MESSAGES: list[dict[str, Any]] = [
    {"stream": "Step 1/2 : FROM busybox"},
    {"stream": "\n"},
    {"stream": " ---> 0123456789ab\n"},
    {"aux": {"ID": "sha256:" + "a" * 64}},
    {"stream": "Successfully built " + "a" * 12 + "\n"},
    {"stream": "Successfully tagged app:1\n"},
]


def _body(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(m, separators=(",", ":")).encode() + b"\r\n" for m in messages)


class _Pieces(httpx.SyncByteStream):
    """A response body delivered in the given pieces, as a network would split it."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self._pieces


def _client(handler: Handler, **kwargs: Any) -> compat.APIClient:
    kwargs.setdefault("version", "1.41")
    api = compat.APIClient(base_url="unix:///nonexistent/docker.sock", **kwargs)
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


def _recording(
    answer: Callable[[httpx.Request], httpx.Response],
) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return answer(request)

    return handler, seen


def _ok(pieces: list[bytes]) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, stream=_Pieces(pieces))


# -- the signature is docker-py's --------------------------------------------------------


def test_build_signature_is_docker_py_s() -> None:
    theirs = inspect.signature(BuildApiMixin.build).parameters
    ours = inspect.signature(compat.APIClient.build).parameters
    assert [(p.name, p.default, p.kind) for p in ours.values()] == [
        (p.name, p.default, p.kind) for p in theirs.values()
    ]


def test_prune_signature_and_constructor_are_docker_py_s() -> None:
    theirs = inspect.signature(docker.APIClient.prune_builds).parameters
    ours = inspect.signature(compat.APIClient.prune_builds).parameters
    assert [(p.name, p.default) for p in ours.values()] == [
        (p.name, p.default) for p in theirs.values()
    ]
    their_init = list(inspect.signature(docker.APIClient.__init__).parameters)
    assert list(inspect.signature(compat.APIClient.__init__).parameters) == their_init


def test_build_kwargs_names_every_build_keyword() -> None:
    names = [p for p in inspect.signature(BuildApiMixin.build).parameters if p != "self"]
    assert list(compat.BuildKwargs.__annotations__) == names


# -- the request ----------------------------------------------------------------------------


def test_build_sends_the_cli_request_with_docker_py_s_rm_default(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    handler, seen = _recording(_ok([_body(_MESSAGES)]))
    with _client(handler) as api:
        list(api.build(path=str(tmp_path), tag="app:1", labels={"a": "b"}))
    (request,) = seen
    assert request.url.path == "/v1.41/build"
    query = parse_qsl(request.url.query.decode(), keep_blank_values=True)
    assert query == [
        ("dockerfile", "Dockerfile"),
        ("labels", '{"a":"b"}'),
        ("rm", "0"),  # docker-py's default: keep intermediate containers
        ("t", "app:1"),
        ("version", "1"),
    ]
    assert request.headers["Content-Type"] == "application/x-tar"
    assert request.headers["User-Agent"] == "buildsdk/0.1.0"


def test_user_agent_is_sent_when_given() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/prune"):
            return httpx.Response(200, stream=_Pieces([b'{"SpaceReclaimed":0}']))
        return httpx.Response(200, stream=_Pieces([_body(_MESSAGES)]))

    handler, seen = _recording(answer)
    with _client(handler, user_agent="my-tool/2") as api:
        list(api.build(fileobj=io.BytesIO(b"FROM busybox\n")))
        api.prune_builds()
    assert [r.headers["User-Agent"] for r in seen] == ["my-tool/2", "my-tool/2"]


def test_the_request_is_sent_by_build_itself() -> None:
    handler, seen = _recording(_ok([_body(_MESSAGES)]))
    with _client(handler) as api:
        stream = api.build(fileobj=io.BytesIO(b"FROM busybox\n"))
        assert len(seen) == 1  # uploaded before the first item is read, like docker-py
        assert next(stream) == b'{"stream":"Step 1/2 : FROM busybox"}\r\n'
        del stream


@pytest.mark.parametrize(
    ("kwargs", "absent"),
    [
        ({"gzip": True, "custom_context": True}, "gzip"),
        ({"shmsize": 0}, "shmsize"),
        ({"squash": False}, "squash"),
        ({"target": ""}, "target"),
        ({"encoding": "gzip"}, "encoding"),
    ],
    ids=["gzip-custom", "shmsize-0", "squash-false", "target-empty", "encoding-plain"],
)
def test_docker_py_no_ops_stay_no_ops(kwargs: dict[str, Any], absent: str) -> None:
    handler, seen = _recording(_ok([_body(_MESSAGES)]))
    with _client(handler) as api:
        source = io.BytesIO(b"FROM busybox\n")
        list(api.build(fileobj=source, **kwargs))
    keys = {key for key, _ in parse_qsl(seen[0].url.query.decode())}
    assert absent not in keys
    assert "Content-Encoding" not in seen[0].headers or kwargs.get("custom_context")


def test_fileobj_with_a_remote_path_sends_the_fileobj_like_docker_py() -> None:
    handler, seen = _recording(_ok([_body(_MESSAGES)]))
    with _client(handler) as api:
        list(api.build(path="https://example.com/repo.git", fileobj=io.BytesIO(b"FROM x\n")))
    keys = {key for key, _ in parse_qsl(seen[0].url.query.decode())}
    assert "remote" not in keys
    assert seen[0].content.startswith(b"Dockerfile")


# -- validation before sending ----------------------------------------------------------------


def _refusing(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"nothing should have been sent, got {request.method} {request.url}")


# docker-py refuses these itself, before connecting: compat raises the same classes.
_DOCKER_PY_REFUSALS = [
    ({}, TypeError),
    ({"fileobj": io.BytesIO(b"x"), "tag": "Bad Tag"}, docker.errors.DockerException),
    ({"fileobj": io.BytesIO(b"x"), "container_limits": {"cpus": 1}}, docker.errors.DockerException),
    (
        {"fileobj": io.BytesIO(b"x"), "gzip": True, "encoding": "gzip"},
        docker.errors.DockerException,
    ),
    ({"path": ".", "gzip": True, "encoding": "text/html"}, docker.errors.DockerException),
    ({"custom_context": True, "path": "."}, TypeError),
    ({"path": "/nonexistent/context"}, TypeError),
]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    _DOCKER_PY_REFUSALS,
    ids=[
        "no-source",
        "tag",
        "limits",
        "gzip-encoding",
        "gzip-text-html",
        "custom-no-fileobj",
        "path-not-a-dir",
    ],
)
def test_bad_options_raise_docker_py_s_class_before_sending(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    # docker-py itself, pinned so that making it needs no engine.
    theirs = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    with pytest.raises(error) as their_error:
        theirs.build(**kwargs)
    with _client(_refusing) as api, pytest.raises(error) as our_error:
        api.build(**kwargs)
    assert isinstance(our_error.value, BuildSDKError)
    assert issubclass(type(their_error.value), error)
    theirs.close()


def test_values_only_buildsdk_checks_are_invalid_argument_before_sending() -> None:
    # docker-py sends a non-string build arg and the engine refuses it mid-upload.
    with _client(_refusing) as api, pytest.raises(compat.InvalidArgument) as error:
        api.build(fileobj=io.BytesIO(b"x"), buildargs={"N": 1})  # type: ignore[dict-item]
    assert isinstance(error.value, docker.errors.DockerException)
    assert isinstance(error.value.__cause__, pydantic.ValidationError)
    assert "buildargs" in str(error.value)


def test_option_too_new_for_the_pinned_version_raises_before_sending() -> None:
    with (
        _client(_refusing, version="1.24") as api,
        pytest.raises(docker.errors.InvalidVersion, match="extra_hosts") as error,
    ):
        api.build(fileobj=io.BytesIO(b"FROM x\n"), extra_hosts={"a": "10.0.0.1"})
    assert isinstance(error.value, UnsupportedOption)
    assert error.value.option == "extra_hosts"
    assert error.value.given == "1.24"


# -- the stream ------------------------------------------------------------------------------


def test_http_error_is_raised_on_first_iteration() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        # A streamed body, as a real transport delivers it (a `json=` body counts as read).
        body = b'{"message":"error reading build args"}'
        headers = {"Content-Type": "application/json"}
        return httpx.Response(400, headers=headers, stream=_Pieces([body]))

    handler, _ = _recording(answer)
    with _client(handler) as api:
        stream = api.build(fileobj=io.BytesIO(b"FROM x\n"))
        with pytest.raises(docker.errors.APIError, match="error reading build args") as error:
            next(stream)
    assert isinstance(error.value, BadRequest)
    raised: Any = error.value  # docker-py's attributes are not typed
    assert raised.status_code == raised.response.status_code == 400
    assert raised.explanation == raised.message == "error reading build args"
    assert raised.is_client_error()
    assert not raised.is_server_error()
    assert str(raised) == (
        "400 Client Error for http+docker://localhost/v1.41/build: Bad Request "
        '("error reading build args")'
    )


def test_a_query_refused_during_the_upload_is_the_engines_error_as_in_client() -> None:
    # The engine answers a bad query with 400 at once and closes the connection while the
    # context is still being sent; the clients ask again without a body to learn why.
    sizes: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sizes.append(len(request.read()))
        if sizes[-1]:
            raise httpx.WriteError("Broken pipe")
        body = b'{"message":"squash needs experimental"}'
        headers = {"Content-Type": "application/json"}
        return httpx.Response(400, headers=headers, stream=_Pieces([body]))

    with _client(answer) as api:
        stream = api.build(fileobj=io.BytesIO(b"FROM x\n"), squash=True)
        with pytest.raises(BadRequest, match="squash needs experimental") as error:
            next(stream)
    assert isinstance(error.value.__cause__, StreamError)
    assert [size > 0 for size in sizes] == [True, False]


def test_failed_build_yields_the_error_message_and_raises_nothing() -> None:
    failure = {
        "errorDetail": {"code": 2, "message": "The command returned a non-zero code: 2"},
        "error": "The command returned a non-zero code: 2",
    }
    handler, _ = _recording(_ok([_body([{"stream": "Step 1/1 : RUN false\n"}, failure])]))
    with _client(handler) as api:
        items = list(api.build(fileobj=io.BytesIO(b"FROM x\n"), decode=True))
    assert items[-1] == failure


@given(st.lists(st.integers(min_value=0, max_value=len(_body(_MESSAGES))), max_size=12))
def test_raw_items_are_whole_messages_however_the_body_is_split(cuts: list[int]) -> None:
    body = _body(_MESSAGES)
    bounds = [0, *sorted(cuts), len(body)]
    pieces = [body[a:b] for a, b in itertools.pairwise(bounds)]
    with _client(_ok(pieces)) as api:
        items = list(api.build(fileobj=io.BytesIO(b"FROM x\n")))
    assert items == [json.dumps(m, separators=(",", ":")).encode() + b"\r\n" for m in _MESSAGES]


@given(st.lists(st.integers(min_value=0, max_value=len(_body(_MESSAGES))), max_size=12))
def test_decoded_items_are_the_messages_however_the_body_is_split(cuts: list[int]) -> None:
    body = _body(_MESSAGES)
    bounds = [0, *sorted(cuts), len(body)]
    pieces = [body[a:b] for a, b in itertools.pairwise(bounds)]
    with _client(_ok(pieces)) as api:
        items = list(api.build(fileobj=io.BytesIO(b"FROM x\n"), decode=True))
    assert items == _MESSAGES


def test_raw_keeps_a_last_message_without_line_end() -> None:
    with _client(_ok([b'{"stream":"a"}\r\n{"stream":"b"}'])) as api:
        items = list(api.build(fileobj=io.BytesIO(b"FROM x\n")))
    assert items == [b'{"stream":"a"}\r\n', b'{"stream":"b"}']


def test_decoded_stream_cut_mid_message_is_a_stream_error() -> None:
    with _client(_ok([b'{"stream":"a"}\r\n{"stre'])) as api:
        stream = api.build(fileobj=io.BytesIO(b"FROM x\n"), decode=True)
        assert next(stream) == {"stream": "a"}
        with pytest.raises(StreamError):
            next(stream)


# -- images_build ------------------------------------------------------------------------------


def test_images_build_returns_the_aux_image_id_and_the_log() -> None:
    with _client(_ok([_body(_MESSAGES)])) as api:
        image_id, log = api.images_build(fileobj=io.BytesIO(b"FROM x\n"), tag="app:1")
    assert image_id == "sha256:" + "a" * 64
    assert log == _MESSAGES


def test_images_build_ignores_a_successfully_built_line_printed_by_a_step() -> None:
    messages = [{"stream": "Successfully built cffi\n"}, *_MESSAGES]
    with _client(_ok([_body(messages)])) as api:
        image_id, _ = api.images_build(fileobj=io.BytesIO(b"FROM x\n"))
    assert image_id == "sha256:" + "a" * 64


def test_images_build_raises_build_error_with_the_whole_log() -> None:
    failure: dict[str, Any] = {"errorDetail": {"code": 1, "message": "boom"}, "error": "boom"}
    messages = [{"stream": "Step 1/1 : RUN boom\n"}, failure]
    with _client(_ok([_body(messages)])) as api, pytest.raises(compat.BuildError) as error:
        api.images_build(fileobj=io.BytesIO(b"FROM x\n"))
    assert isinstance(error.value, BuildError)
    assert isinstance(error.value, docker.errors.BuildError)
    assert error.value.msg == str(error.value) == "boom"
    assert error.value.build_log == messages
    assert error.value.code == 1
    assert "Step 1/1 : RUN boom" in error.value.log


def test_images_build_without_an_image_id_is_an_error() -> None:
    with _client(_ok([_body([{"stream": "nothing\n"}])])) as api, pytest.raises(compat.BuildError):
        api.images_build(fileobj=io.BytesIO(b"FROM x\n"))


# -- prune -------------------------------------------------------------------------------------


def test_prune_returns_the_engine_s_dict_unchanged() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = b'{"CachesDeleted":null,"SpaceReclaimed":0}'
        return httpx.Response(200, stream=_Pieces([body]))

    handler, seen = _recording(answer)
    with _client(handler) as api:
        result = api.prune_builds(
            filters={"until": "24h", "inuse": True}, keep_storage=10, all=True
        )
    assert result == {"CachesDeleted": None, "SpaceReclaimed": 0}
    assert seen[0].url.path == "/v1.41/build/prune"
    assert parse_qsl(seen[0].url.query.decode()) == [
        ("all", "1"),
        ("filters", '{"inuse":{},"until":{"24h":true}}'),
        ("keep-storage", "10"),
    ]


@pytest.mark.parametrize(
    ("filters", "error"),
    [
        ({"until": ["1h", "2h"]}, compat.InvalidArgument),
        ({"dangling": True}, compat.InvalidArgument),
        ({"until": "tomorrow"}, compat.InvalidArgument),
    ],
    ids=["two-values", "unknown-filter", "bad-until"],
)
def test_prune_refuses_bad_filters_before_sending(
    filters: dict[str, Any], error: type[Exception]
) -> None:
    with _client(_refusing) as api, pytest.raises(error) as raised:
        api.prune_builds(filters=filters)
    assert isinstance(raised.value, docker.errors.DockerException)
    assert isinstance(raised.value, ValueError)


def test_prune_options_too_new_for_the_version() -> None:
    with _client(_refusing, version="1.38") as api, pytest.raises(UnsupportedOption):
        api.prune_builds(all=True)


def test_prune_filters_accept_docker_py_s_string_booleans() -> None:
    handler, seen = _recording(
        lambda r: httpx.Response(200, stream=_Pieces([b'{"SpaceReclaimed":1}']))
    )
    with _client(handler) as api:
        api.prune_builds(filters={"shared": "true", "private": ["false"]})
    assert ("filters", '{"shared":{}}') in parse_qsl(seen[0].url.query.decode())


# -- constructor ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("http+unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("tcp://127.0.0.1:2375", "tcp://127.0.0.1:2375"),
        ("http://127.0.0.1:2375", "tcp://127.0.0.1:2375"),
    ],
)
def test_base_url_forms(base_url: str, expected: str) -> None:
    with compat.APIClient(base_url=base_url) as api:
        assert str(api.client.endpoint) == expected
        assert api.base_url == base_url


def test_https_base_url_turns_tls_on() -> None:
    with compat.APIClient(base_url="https://127.0.0.1:2376") as api:
        assert api.client.endpoint.tls is not None
        assert api.client.endpoint.tls.verify


def test_docker_py_tls_config_is_translated(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    theirs = docker.tls.TLSConfig(
        client_cert=(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")),
        ca_cert=str(tmp_path / "ca.pem"),
        verify=True,
    )
    converted = compat._convert_tls(theirs)
    assert converted == TLSConfig(
        ca_cert=tmp_path / "ca.pem",
        client_cert=tmp_path / "cert.pem",
        client_key=tmp_path / "key.pem",
        verify=True,
    )
    # Unlike docker-py, verification stays on unless it is turned off explicitly.
    assert compat._convert_tls(docker.tls.TLSConfig()) == TLSConfig(verify=True)
    unverified = compat._convert_tls(docker.tls.TLSConfig(verify=False))
    assert unverified == TLSConfig(verify=False)
    ca_as_verify = compat._convert_tls(docker.tls.TLSConfig(verify=str(tmp_path / "ca.pem")))
    assert ca_as_verify == TLSConfig(ca_cert=tmp_path / "ca.pem", verify=True)
    with pytest.raises(TypeError, match="tls must be"):
        compat._convert_tls("yes")


def test_version_auto_and_none_negotiate_and_a_number_pins() -> None:
    for version in (None, "auto"):
        with compat.APIClient(base_url="unix:///x.sock", version=version) as api:
            assert api.client._pinned is None
    with compat.APIClient(base_url="unix:///x.sock", version="1.40") as api:
        assert api.api_version == "1.40"


def test_credstore_env_reaches_the_configuration(tmp_path: Path) -> None:
    with compat.APIClient(base_url="unix:///x.sock", credstore_env={"A": "1"}) as api:
        assert api.credstore_env == {"A": "1"}
        assert api.client.docker_config._helper_env()["A"] == "1"


def _registry_config(request: httpx.Request) -> dict[str, Any]:
    header = request.headers["X-Registry-Config"]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    )
    return decoded


def test_a_login_after_the_client_was_made_counts_as_in_docker_py(tmp_path: Path) -> None:
    handler, seen = _recording(_ok([_body(_MESSAGES)]))
    with _client(handler) as api:
        list(api.build(fileobj=io.BytesIO(b"FROM x\n")))
        token = base64.b64encode(b"me:secret").decode()
        (tmp_path / "config.json").write_text(
            json.dumps({"auths": {"reg.example:5000": {"auth": token}}})
        )
        list(api.build(fileobj=io.BytesIO(b"FROM x\n")))
        # Once credentials are known the file is not read again for every build.
        (tmp_path / "config.json").write_text("{}")
        list(api.build(fileobj=io.BytesIO(b"FROM x\n")))
    assert _registry_config(seen[0]) == {}
    assert _registry_config(seen[1])["reg.example:5000"]["username"] == "me"
    assert "reg.example:5000" in _registry_config(seen[2])
