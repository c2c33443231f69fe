"""How a standalone buildkitd is named: `BuildkitdAddress.parse` and its text form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsdk.buildkit.control import ControlChannel
from buildsdk.buildkit.remote import BuildkitdAddress
from buildsdk.endpoint import ConfigError


@pytest.mark.parametrize(
    ("address", "fields"),
    [
        ("unix:///run/buildkit/buildkitd.sock", {"path": "/run/buildkit/buildkitd.sock"}),
        ("tcp://buildkitd:1234", {"host": "buildkitd", "port": 1234}),
        ("tcp://10.0.0.5:1234/", {"host": "10.0.0.5", "port": 1234}),
        ("tcp://[::1]:1234", {"host": "::1", "port": 1234}),
    ],
)
def test_addresses_as_buildctl_takes_them(address: str, fields: dict[str, object]) -> None:
    parsed = BuildkitdAddress.parse(address)
    assert {key: getattr(parsed, key) for key in fields} == fields
    assert str(parsed) == address.rstrip("/")


@pytest.mark.parametrize(
    ("address", "complaint"),
    [
        ("unix://run/buildkit.sock", "must be absolute"),
        ("tcp://buildkitd", "expected tcp://host:port"),
        ("tcp://buildkitd:99999", "expected tcp://host:port"),
        ("tcp://buildkitd:1234/path", "expected tcp://host:port"),
        ("docker-container://buildx_buildkit0", "expected unix:///path or tcp://host:port"),
        ("/run/buildkit/buildkitd.sock", "expected unix:///path or tcp://host:port"),
    ],
)
def test_other_addresses_are_refused_by_name(address: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        BuildkitdAddress.parse(address)
    assert repr(address) in str(caught.value)


@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    port=st.integers(1, 65535),
)
def test_tcp_addresses_round_trip(host: str, port: int) -> None:
    parsed = BuildkitdAddress.parse(f"tcp://{host}:{port}")
    assert (parsed.scheme, parsed.host, parsed.port) == ("tcp", host, port)
    assert BuildkitdAddress.parse(str(parsed)) == parsed


@given(path=st.from_regex(r"(/[A-Za-z0-9._-]{1,12}){1,5}", fullmatch=True))
def test_unix_addresses_round_trip(path: str) -> None:
    parsed = BuildkitdAddress.parse(f"unix://{path}")
    assert parsed.path == path
    assert BuildkitdAddress.parse(str(parsed)) == parsed


def test_a_sync_channel_takes_an_endpoint_or_an_opener() -> None:
    with pytest.raises(TypeError, match="either an engine endpoint or an opener"):
        ControlChannel()
