"""The shared sans-I/O layer: ping parsing, error answers, request descriptions."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import SecretStr

from buildsdk import _protocol
from buildsdk.auth import RegistryAuth
from buildsdk.build import BuildOptions
from buildsdk.endpoint import resolve_endpoint
from buildsdk.errors import (
    APIError,
    BadRequest,
    NotFound,
    ServerError,
    ServiceUnavailable,
    StreamError,
    UnsupportedOption,
)
from buildsdk.prune import PruneOptions
from buildsdk.versions import ApiVersion

V141 = ApiVersion(1, 41)


def test_ping_headers_are_read_case_insensitively() -> None:
    ping = _protocol.parse_ping(
        {
            "Api-Version": "1.41",
            "OSType": "linux",
            "Docker-Experimental": "true",
            "Builder-Version": "2",
        }
    )
    assert ping.api_version == "1.41"
    assert ping.os_type == "linux"
    assert ping.experimental is True
    assert ping.builder_version == "2"


def test_ping_without_headers_knows_nothing() -> None:
    ping = _protocol.parse_ping({})
    assert ping.api_version is None
    assert ping.experimental is False


@pytest.mark.parametrize(
    ("status", "headers", "failed"),
    [
        (200, {}, False),
        (500, {"API-Version": "1.41"}, False),
        (500, {}, True),
        (404, {"Content-Type": "text/plain"}, True),
    ],
)
def test_a_ping_answer_fails_only_without_the_engines_headers(
    status: int, headers: dict[str, str], failed: bool
) -> None:
    assert _protocol.ping_failed(status, headers) is failed
    assert _protocol.ping_get_request(base_path="/docker") == _protocol.Request(
        "GET", "/docker/_ping"
    )


@pytest.mark.parametrize(
    ("status", "error"), [(200, False), (204, False), (301, True), (404, True), (500, True)]
)
def test_redirects_and_failures_are_errors(status: int, error: bool) -> None:
    assert _protocol.is_error_status(status) is error


@pytest.mark.parametrize(
    ("status", "rejected"), [(200, False), (400, True), (499, True), (500, False)]
)
def test_only_a_4xx_probe_answer_is_the_engines_verdict(status: int, rejected: bool) -> None:
    assert _protocol.probe_rejected(status) is rejected


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequest), (404, NotFound), (500, ServerError), (503, ServiceUnavailable)],
)
def test_error_answer_carries_the_engines_message(status: int, cls: type[APIError]) -> None:
    error = _protocol.error_from_response(
        status,
        {"Content-Type": "application/json"},
        b'{"message":"squash is only supported with experimental mode"}\n',
        method="POST",
        path="/v1.41/build",
    )
    assert type(error) is cls
    assert error.status_code == status
    assert error.message == "squash is only supported with experimental mode"
    assert str(error) == (
        f"{status}: squash is only supported with experimental mode (POST /v1.41/build)"
    )


def test_error_answer_that_is_not_json_keeps_its_text() -> None:
    error = _protocol.error_from_response(502, {"Content-Type": "text/html"}, b"Bad gateway\n")
    assert type(error) is ServerError
    assert error.message == "Bad gateway"


def test_error_answer_without_body_is_dockers_sentence() -> None:
    error = _protocol.error_from_response(418, {}, b"", url="http://127.0.0.1:2375/_ping")
    assert type(error) is APIError
    assert error.message == (
        "request returned I'm a Teapot for API route and version http://127.0.0.1:2375/_ping, "
        "check if the server supports the requested API version"
    )


def test_an_unknown_status_without_body_is_named_by_its_number() -> None:
    error = _protocol.error_from_response(599, {}, b"", path="/v1.45/build")
    assert error.message.startswith("request returned status 599 for API route and version ")


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("unix:///var/run/docker.sock", "http://%2Fvar%2Frun%2Fdocker.sock/_ping"),
        ("tcp://10.0.0.5:2375", "http://10.0.0.5:2375/_ping"),
        ("tcp://[::1]:2375", "http://[::1]:2375/_ping"),
        ("ssh://builder@build-host", "http://docker.example.com/_ping"),
    ],
)
def test_route_url_is_the_go_clients(host: str, url: str) -> None:
    endpoint = resolve_endpoint(host, env={})
    assert _protocol.route_url(endpoint, "/_ping") == url


def test_error_body_is_cut_at_the_limit() -> None:
    body = b"x" * (_protocol.ERROR_BODY_LIMIT + 100)
    error = _protocol.error_from_response(500, {}, body)
    assert len(error.message) == _protocol.ERROR_BODY_LIMIT


def test_build_request_is_the_clis(tmp_path: object) -> None:
    options = BuildOptions(path=".", tag=["a:1", "b:2"], buildargs={"X": "1"})
    request = _protocol.build_request(
        options, V141, proxy_args={"HTTP_PROXY": "http://p:3128", "X": "proxy-loses"}
    )
    assert request.method == "POST"
    assert request.path == "/v1.41/build"
    params = dict(request.params)
    assert json.loads(params["buildargs"]) == {"HTTP_PROXY": "http://p:3128", "X": "1"}
    assert [v for k, v in request.params if k == "t"] == ["a:1", "b:2"]
    assert request.headers["Content-Type"] == "application/x-tar"
    # The Go client sends the header even with no credentials at all.
    assert base64.urlsafe_b64decode(request.headers["X-Registry-Config"]) in (b"{}", b"null")


def test_build_request_without_config_proxy_keeps_build_args() -> None:
    options = BuildOptions(path=".", use_config_proxy=False)
    request = _protocol.build_request(options, V141, proxy_args={"HTTP_PROXY": "http://p"})
    assert "buildargs" not in dict(request.params)


def test_remote_build_sends_no_body_type() -> None:
    options = BuildOptions(remote="https://example.com/ctx.tar")
    request = _protocol.build_request(options, V141)
    assert "Content-Type" not in request.headers
    assert ("remote", "https://example.com/ctx.tar") in request.params


def test_prune_request_path() -> None:
    request = _protocol.prune_request(PruneOptions(all=True), V141)
    assert request.path == "/v1.41/build/prune"
    assert ("all", "1") in request.params


def test_cancel_request_needs_1_38() -> None:
    assert _protocol.cancel_request("abc", V141).params == (("id", "abc"),)
    with pytest.raises(UnsupportedOption) as info:
        _protocol.cancel_request("abc", ApiVersion(1, 37))
    assert info.value.required == "1.38"
    assert info.value.given == "1.37"


def test_versioned_paths_keep_a_tcp_prefix() -> None:
    request = _protocol.version_request(V141, base_path="/docker")
    assert request.path == "/docker/v1.41/version"


def test_a_build_stream_not_read_to_its_end_has_no_result() -> None:
    stream = _protocol.BuildStream(["app:1"])
    stream.feed(b'{"aux":{"ID":"sha256:' + b"a" * 64 + b'"}}\r\n')
    with pytest.raises(StreamError, match="closed before it ended"):
        stream.result()
    stream.end()
    assert stream.result().image_id == "sha256:" + "a" * 64


def test_a_request_s_repr_names_its_parts_but_shows_no_credentials() -> None:
    credentials = {"registry.example.com": RegistryAuth(username="u", password=SecretStr("pw"))}
    request = _protocol.build_request(
        BuildOptions(path="."),
        V141,
        credentials=credentials,
        proxy_args={"HTTP_PROXY": "http://user:hunter2@proxy:3128"},
    )
    text = repr(request)
    assert text.startswith("Request(POST /v1.41/build, params=['buildargs',")
    assert "X-Registry-Config" in text
    assert request.headers["X-Registry-Config"] not in text
    assert "hunter2" not in text


def test_cancelling_on_an_engine_before_1_38_is_refused_in_the_gates_words() -> None:
    from buildsdk.errors import UnsupportedOption
    from buildsdk.versions import ApiVersion

    with pytest.raises(UnsupportedOption) as info:
        _protocol.cancel_request("b1", ApiVersion(1, 37))
    assert str(info.value) == (
        "cancelling a build needs API version 1.38 or newer; the engine speaks 1.37"
    )
    assert (info.value.option, info.value.required, info.value.given) == (
        "build_id",
        "1.38",
        "1.37",
    )
