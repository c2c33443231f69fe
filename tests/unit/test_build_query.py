"""BuildOptions.to_query sends what `docker build` sends, and refuses what would be ignored."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from buildsdk.build import (
    BuildOptions,
    BuildOutput,
    ContainerLimits,
    Ulimit,
    go_json,
    query_string,
)
from buildsdk.errors import UnsupportedOption
from buildsdk.versions import ApiVersion
from tests import VECTORS_DIR, examples

HERE = str(Path(__file__).resolve().parent)
VECTORS = VECTORS_DIR
CLI_API = "1.50"  # the API version Docker CLI 28.2.2 negotiates with a 28.2 engine

# Build args the CLI adds from config.json's proxies; they belong to the proxy layer.
PROXY_ARGS = {
    name
    for base in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for name in (base, base.lower())
}


def _load_requests() -> list[dict[str, Any]]:
    data = json.loads((VECTORS / "cli_build_requests.json").read_text(encoding="utf-8"))
    requests: list[dict[str, Any]] = data["requests"]
    return requests


def _cli_kwargs(flags: list[str]) -> dict[str, Any]:
    """Translate `docker build` flags into the BuildOptions keywords that mean the same."""
    kwargs: dict[str, Any] = {"path": HERE}
    limits: dict[str, str] = {}
    args = iter(flags)

    def add(key: str, value: Any) -> None:
        kwargs.setdefault(key, []).append(value)

    for flag in args:
        name, _, inline = flag.partition("=")
        if name in ("--no-cache", "--pull", "-q", "--force-rm", "--squash", "--compress"):
            field = {"--no-cache": "nocache", "-q": "quiet", "--force-rm": "forcerm"}.get(
                name, name[2:]
            )
            kwargs["gzip" if field == "compress" else field] = True
            continue
        value = inline if inline else next(args)
        if name == "--rm":
            kwargs["rm"] = value == "true"
        elif name == "-t":
            add("tag", value)
        elif name in ("--build-arg", "--label"):
            key, _, val = value.partition("=")
            kwargs.setdefault("buildargs" if name == "--build-arg" else "labels", {})[key] = val
        elif name == "--add-host":
            add("extra_hosts", value)
        elif name == "--ulimit":
            add("ulimits", value)
        elif name == "--cache-from":
            add("cache_from", value)
        elif name == "--security-opt":
            add("security_opt", value)
        elif name in ("--memory", "--memory-swap", "--cpuset-cpus", "--cpuset-mems"):
            key = {"--memory": "memory", "--memory-swap": "memswap"}.get(
                name, name[2:].replace("-", "")
            )
            limits[key] = value
        elif name in ("--cpu-shares", "--cpu-period", "--cpu-quota"):
            limits[name[2:].replace("-", "")] = value
        else:
            field = {
                "-f": "dockerfile",
                "--shm-size": "shmsize",
                "--network": "network_mode",
                "--cgroup-parent": "cgroup_parent",
            }.get(name, name[2:])
            kwargs[field] = value
    if limits:
        ints = {"cpushares", "cpuperiod", "cpuquota"}
        kwargs["container_limits"] = {k: int(v) if k in ints else v for k, v in limits.items()}
    return kwargs


def _expected_pairs(query: dict[str, list[str]]) -> list[tuple[str, str]]:
    """The vector's query without config.json proxies, ordered as url.Values.Encode orders it."""
    expected = dict(query)
    if "buildargs" in expected:
        args = {
            k: v for k, v in json.loads(expected["buildargs"][0]).items() if k not in PROXY_ARGS
        }
        if args:
            expected["buildargs"] = [go_json(args)]
        else:
            del expected["buildargs"]
    return [(key, value) for key in sorted(expected) for value in expected[key]]


def _vector_cases() -> Iterator[Any]:
    for request in _load_requests():
        if "query" in request:
            yield pytest.param(
                request["flags"], request["query"], id=" ".join(request["flags"]) or "plain"
            )


def test_vectors_are_present_and_complete() -> None:
    requests = _load_requests()
    assert len(requests) == 22
    refused = [r["flags"] for r in requests if "query" not in r]
    # Only --squash never reached the wire: the CLI refuses it for a non-experimental engine.
    assert refused == [["--squash"]]


@pytest.mark.parametrize(("flags", "query"), list(_vector_cases()))
def test_query_matches_the_docker_cli(flags: list[str], query: dict[str, list[str]]) -> None:
    opts = BuildOptions(**_cli_kwargs(flags))
    assert opts.to_query(CLI_API) == _expected_pairs(query)


# Wire forms recorded from Docker CLI 28.2.2 (`DOCKER_BUILDKIT=0 docker build <flags> ctx`,
# empty config.json) against a fake engine on a unix socket that logged each request URL.
CLI_WIRE = [
    (
        ["--label", "a=<&>\u2028é\x01\x08 ~", "--build-arg", "X=y"],
        "buildargs=%7B%22X%22%3A%22y%22%7D&dockerfile=Dockerfile&labels=%7B%22a%22%3A%22%5Cu003c"
        "%5Cu0026%5Cu003e%5Cu2028%C3%A9%5Cu0001%5Cb+~%22%7D&version=1",
    ),
    (
        ["--add-host", "h1=[::1]", "--add-host", "gw:host-gateway", "--add-host", "h4:[10.0.0.1]"],
        "dockerfile=Dockerfile&extrahosts=h1%3A%3A%3A1&extrahosts=gw%3Ahost-gateway"
        "&extrahosts=h4%3A10.0.0.1&version=1",
    ),
    (
        ["--ulimit", "nofile=10:-1", "--ulimit", "core=-1"],
        "dockerfile=Dockerfile&ulimits=%5B%7B%22Name%22%3A%22core%22%2C%22Hard%22%3A-1%2C%22Soft"
        "%22%3A-1%7D%2C%7B%22Name%22%3A%22nofile%22%2C%22Hard%22%3A-1%2C%22Soft%22%3A10%7D%5D"
        "&version=1",
    ),
    (
        ["--platform", "Linux/AMD64", "--isolation", "hyperv", "--network", "host"],
        "dockerfile=Dockerfile&isolation=hyperv&networkmode=host&platform=linux%2Famd64&version=1",
    ),
    (
        ["--memory", "1.5g", "--shm-size", "1kb", "--memory-swap", "2g", "--cpu-shares", "2"],
        "cpushares=2&dockerfile=Dockerfile&memory=1610612736&memswap=2147483648&shmsize=1024"
        "&version=1",
    ),
    (
        [
            "-t",
            "localhost:5000/a/b:v1.0",
            "-t",
            "[::1]:5000/x",
            "--cache-from",
            "a@sha256:" + "a" * 64,
        ],
        "cachefrom=%5B%22a%40sha256%3A" + "a" * 64 + "%22%5D&dockerfile=Dockerfile"
        "&t=localhost%3A5000%2Fa%2Fb%3Av1.0&t=%5B%3A%3A1%5D%3A5000%2Fx&version=1",
    ),
    (
        ["--build-arg", "ÜNI=ü", "--label", "z=1", "--label", "Z=2", "--label", "a="],
        "buildargs=%7B%22%C3%9CNI%22%3A%22%C3%BC%22%7D&dockerfile=Dockerfile"
        "&labels=%7B%22Z%22%3A%222%22%2C%22a%22%3A%22%22%2C%22z%22%3A%221%22%7D&version=1",
    ),
]


@pytest.mark.parametrize(("flags", "wire"), CLI_WIRE)
def test_wire_form_matches_the_docker_cli(flags: list[str], wire: str) -> None:
    opts = BuildOptions(**_cli_kwargs(flags))
    assert query_string(opts.to_query(CLI_API)) == wire


# -- JSON and query encoding -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"a": "<b>&"}, '{"a":"\\u003cb\\u003e\\u0026"}'),
        ({"k": "é\u2028\u2029"}, '{"k":"é\\u2028\\u2029"}'),
        ({"k": "\x00\x1f\x7f\t\n\r\b\f"}, '{"k":"\\u0000\\u001f\x7f\\t\\n\\r\\b\\f"}'),
        ({"k": None}, '{"k":null}'),
        (["a", 'q"\\'], '["a","q\\"\\\\"]'),
        ([{"Name": "nofile", "Hard": 2, "Soft": 1}], '[{"Name":"nofile","Hard":2,"Soft":1}]'),
    ],
)
def test_go_json(value: object, text: str) -> None:
    assert go_json(value) == text


def test_query_string_escapes_like_go() -> None:
    pairs = [("t", "a b+c/~_.-"), ("dockerfile", "ä"), ("t", "x")]
    assert query_string(pairs) == "dockerfile=%C3%A4&t=a+b%2Bc%2F~_.-&t=x"


def test_buildargs_and_labels_are_sorted_by_key() -> None:
    opts = BuildOptions(
        path=HERE, buildargs={"b": "1", "a": None, "B": "x"}, labels={"z": "", "a": "1"}
    )
    query = dict(opts.to_query(CLI_API))
    assert query["buildargs"] == '{"B":"x","a":null,"b":"1"}'
    assert query["labels"] == '{"a":"1","z":""}'


def test_unset_options_are_not_sent() -> None:
    assert BuildOptions(path=HERE).to_query(CLI_API) == [
        ("dockerfile", "Dockerfile"),
        ("version", "1"),
    ]


def test_false_and_default_values_are_not_sent() -> None:
    opts = BuildOptions(
        path=HERE,
        quiet=False,
        nocache=False,
        pull=False,
        forcerm=False,
        squash=False,
        rm=True,
        isolation="default",
        network_mode="default",
        decode=True,
        use_config_proxy=False,
        timeout=5,
    )
    assert opts.to_query(CLI_API) == [("dockerfile", "Dockerfile"), ("version", "1")]


def test_every_parameter() -> None:
    opts = BuildOptions(
        remote="https://example.com/ctx.tar",
        tag=["a:1", "b"],
        quiet=True,
        nocache=True,
        rm=False,
        pull=True,
        forcerm=True,
        dockerfile="sub/Dockerfile",
        container_limits={
            "memory": "64m",
            "cpuperiod": 100000,
            "cpuquota": 50000,
            "cpusetmems": "0",
        },
        buildargs={"A": None},
        shmsize="1g",
        labels={"l": "v"},
        cache_from=["c:1"],
        target="build",
        network_mode="container:abc",
        squash=True,
        extra_hosts=["h:1.2.3.4"],
        platform="linux/amd64",
        isolation="process",
        ulimits=["nproc=1:2"],
        cgroup_parent="/p",
        security_opt=["credentialspec=file://x.json", "other"],
        build_id="bid",
        session_id="sid",
    )
    assert opts.to_query("1.51") == [
        ("buildargs", '{"A":null}'),
        ("buildid", "bid"),
        ("cachefrom", '["c:1"]'),
        ("cgroupparent", "/p"),
        ("cpuperiod", "100000"),
        ("cpuquota", "50000"),
        ("cpusetmems", "0"),
        ("dockerfile", "sub/Dockerfile"),
        ("extrahosts", "h:1.2.3.4"),
        ("forcerm", "1"),
        ("isolation", "process"),
        ("labels", '{"l":"v"}'),
        ("memory", "67108864"),
        ("networkmode", "container:abc"),
        ("nocache", "1"),
        ("platform", "linux/amd64"),
        ("pull", "1"),
        ("q", "1"),
        ("remote", "https://example.com/ctx.tar"),
        ("rm", "0"),
        ("securityopt", "credentialspec=file://x.json"),
        ("securityopt", "other"),
        ("session", "sid"),
        ("shmsize", "1073741824"),
        ("squash", "1"),
        ("t", "a:1"),
        ("t", "b"),
        ("target", "build"),
        ("ulimits", '[{"Name":"nproc","Hard":2,"Soft":1}]'),
        ("version", "1"),
    ]


def test_remote_path_is_sent_as_remote() -> None:
    opts = BuildOptions(path="git@github.com:docker/app.git", dockerfile="x/Dockerfile")
    assert opts.to_query(CLI_API) == [
        ("dockerfile", "x/Dockerfile"),
        ("remote", "git@github.com:docker/app.git"),
        ("version", "1"),
    ]


def test_dockerfile_override_from_the_context_packer() -> None:
    opts = BuildOptions(path=HERE, dockerfile="../outside/Dockerfile")
    assert ("dockerfile", ".dockerfile.abc123") in opts.to_query(
        CLI_API, dockerfile=".dockerfile.abc123"
    )


def test_buildkit_outputs() -> None:
    opts = BuildOptions(
        path=HERE, version="2", outputs=[{"type": "local", "attrs": {"z": "1", "dest": "o"}}]
    )
    assert (
        dict(opts.to_query("1.40"))["outputs"] == '[{"Type":"local","Attrs":{"dest":"o","z":"1"}}]'
    )
    assert dict(opts.to_query("1.40"))["version"] == "2"


# -- version gates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "option", "param", "required"),
    [
        ({"cache_from": ["a"]}, "cache_from", "cachefrom", "1.25"),
        ({"network_mode": "host"}, "network_mode", "networkmode", "1.25"),
        ({"squash": True}, "squash", "squash", "1.25"),
        ({"extra_hosts": ["h:1.1.1.1"]}, "extra_hosts", "extrahosts", "1.28"),
        ({"target": "t"}, "target", "target", "1.29"),
        ({"session_id": "s"}, "session_id", "session", "1.31"),
        ({"platform": "linux"}, "platform", "platform", "1.32"),
        ({"build_id": "b"}, "build_id", "buildid", "1.38"),
        ({"version": "2"}, "version", "version", "1.38"),
    ],
)
def test_options_newer_than_the_api_version_are_refused(
    kwargs: dict[str, Any], option: str, param: str, required: str
) -> None:
    opts = BuildOptions(path=HERE, **kwargs)
    below = ApiVersion.parse(required)
    older = f"{below.major}.{below.minor - 1}"
    with pytest.raises(UnsupportedOption) as info:
        opts.to_query(older)
    assert (info.value.option, info.value.required, info.value.given) == (option, required, older)
    assert str(info.value) == (
        f"{option} (query parameter {param!r}) needs API version {required} or newer; "
        f"the engine speaks {older}"
    )
    assert opts.to_query(required)


def test_outputs_need_api_1_40() -> None:
    opts = BuildOptions(path=HERE, version="2", outputs=[BuildOutput(type="cacheonly")])
    with pytest.raises(
        UnsupportedOption, match=r"outputs \(query parameter 'outputs'\) needs API version 1.40"
    ):
        opts.to_query("1.39")


def test_classic_builder_version_is_sent_before_1_38_like_the_cli() -> None:
    # Engines before 1.38 ignore `version`; the CLI sends it anyway, and so do we.
    opts = BuildOptions(path=HERE)
    assert opts.to_query("1.37") == [("dockerfile", "Dockerfile"), ("version", "1")]


def test_ready_made_archive_names_no_dockerfile_like_the_cli() -> None:
    opts = BuildOptions(fileobj=io.BytesIO(b""), custom_context=True)
    assert opts.to_query("1.41") == [("version", "1")]
    named = BuildOptions(fileobj=io.BytesIO(b""), custom_context=True, dockerfile="ci/Dockerfile")
    assert ("dockerfile", "ci/Dockerfile") in named.to_query("1.41")


def test_classic_builder_version_is_sent_on_every_api_version() -> None:
    opts = BuildOptions(path=HERE)
    assert opts.to_query("1.24") == [("dockerfile", "Dockerfile"), ("version", "1")]
    assert opts.to_query(ApiVersion(1, 38)) == [("dockerfile", "Dockerfile"), ("version", "1")]


def test_valueless_buildargs_need_api_1_25() -> None:
    opts = BuildOptions(path=HERE, buildargs={"A": None})
    with pytest.raises(UnsupportedOption) as info:
        opts.to_query("1.24")
    assert (info.value.option, info.value.required, info.value.given) == (
        "buildargs",
        "1.25",
        "1.24",
    )
    assert str(info.value) == (
        "a build arg without a value (None) needs API version 1.25 or newer; the engine "
        "speaks 1.24, which would read it as an empty string"
    )
    assert BuildOptions(path=HERE, buildargs={"A": "x"}).to_query("1.24")


# -- builder checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "option", "message"),
    [
        (
            {"container_limits": {"memory": "1g"}},
            "container_limits",
            "container_limits is ignored by BuildKit: remove it or use version='1' (version='2')",
        ),
        ({"rm": False}, "rm", "rm is ignored by BuildKit"),
        ({"forcerm": True}, "forcerm", "forcerm is ignored by BuildKit"),
        ({"cgroup_parent": "/x"}, "cgroup_parent", "cgroup_parent is ignored by BuildKit"),
        ({"isolation": "process"}, "isolation", "isolation is ignored by BuildKit"),
        ({"squash": True}, "squash", "squash is ignored by BuildKit"),
        (
            {"network_mode": "bridge"},
            "network_mode",
            "network_mode 'bridge' is not supported by BuildKit, which accepts only default, "
            "host or none (version='2')",
        ),
    ],
)
def test_buildkit_refuses_what_it_ignores(
    kwargs: dict[str, Any], option: str, message: str
) -> None:
    opts = BuildOptions(path=HERE, version="2", **kwargs)
    with pytest.raises(UnsupportedOption) as info:
        opts.to_query("1.51")
    assert info.value.option == option
    assert message in str(info.value)
    assert (info.value.required, info.value.given) == ("version='1'", "version='2'")
    assert BuildOptions(path=HERE, version="1", **kwargs).to_query("1.51")


@pytest.mark.parametrize(
    ("kwargs", "option", "pair"),
    [
        (
            {"ulimits": ["nofile=1024:2048"]},
            "ulimits",
            ("ulimits", '[{"Name":"nofile","Hard":2048,"Soft":1024}]'),
        ),
        ({"shmsize": "128m"}, "shmsize", ("shmsize", str(128 * 1024 * 1024))),
    ],
)
def test_buildkit_refuses_limits_engines_before_api_1_42_ignore(
    kwargs: dict[str, Any], option: str, pair: tuple[str, str]
) -> None:
    opts = BuildOptions(path=HERE, version="2", **kwargs)
    with pytest.raises(UnsupportedOption) as info:
        opts.to_query("1.41")
    assert info.value.option == option
    assert str(info.value).startswith(
        f"{option} is ignored by BuildKit before API 1.42 (Docker Engine 23.0; this engine "
        "speaks 1.41): remove it or use version='1' (version='2')"
    )
    # From Docker Engine 23.0 on BuildKit applies them; the classic builder always did.
    assert pair in opts.to_query("1.42")
    assert pair in BuildOptions(path=HERE, version="1", **kwargs).to_query("1.41")


@pytest.mark.parametrize("mode", ["default", "host", "none"])
def test_buildkit_network_modes(mode: str) -> None:
    query = BuildOptions(path=HERE, version="2", network_mode=mode).to_query("1.51")
    assert (("networkmode", mode) in query) is (mode != "default")


def test_outputs_need_buildkit() -> None:
    opts = BuildOptions(path=HERE, outputs=[BuildOutput(type="tar")])
    with pytest.raises(UnsupportedOption) as info:
        opts.to_query("1.51")
    assert str(info.value) == "outputs needs BuildKit: set version='2' (version='1')"
    assert info.value.option == "outputs"


def test_client_session_remote_needs_buildkit() -> None:
    opts = BuildOptions(remote="client-session")
    with pytest.raises(UnsupportedOption, match="'client-session' needs BuildKit"):
        opts.to_query("1.51")
    assert ("remote", "client-session") in BuildOptions(
        remote="client-session", version="2"
    ).to_query("1.51")


# -- properties ------------------------------------------------------------------------------

_TAGS = st.from_regex(
    r"\A[a-z0-9]{1,6}(?:[._-][a-z0-9]{1,4})?(?:/[a-z0-9]{1,6})?(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,8})?\Z"
)
_KEYS = st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s)
_TEXT = st.text(max_size=12)
_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0-_/:", min_size=1, max_size=10)
_IPS = st.ip_addresses().map(str) | st.just("host-gateway")
_HOSTS = st.builds(lambda h, ip: f"{h}:{ip}", st.from_regex(r"\A[a-z][a-z0-9.-]{0,10}\Z"), _IPS)
_ULIMITS = st.lists(
    st.builds(
        lambda name, soft, extra: Ulimit(name=name, soft=soft, hard=soft + extra),
        st.sampled_from(["nofile", "nproc", "core", "stack", "memlock"]),
        st.integers(0, 2**20),
        st.integers(0, 2**20),
    ),
    max_size=3,
    unique_by=lambda u: u.name,
)
_LIMITS = st.fixed_dictionaries(
    {},
    optional={
        "memory": st.integers(6 * 1024**2, 2**40),
        "cpushares": st.integers(1, 2**16),
        "cpusetcpus": st.from_regex(r"\A[0-9](?:-[1-9][0-9])?(?:,[0-9])?\Z"),
        "cpuperiod": st.integers(1000, 1_000_000),
        "cpuquota": st.integers(1000, 2**30),
        "cpusetmems": st.from_regex(r"\A[0-3]\Z"),
    },
)

_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "tag": st.lists(_TAGS, max_size=3),
        "quiet": st.booleans(),
        "nocache": st.booleans(),
        "rm": st.booleans(),
        "pull": st.booleans(),
        "forcerm": st.booleans(),
        "dockerfile": st.none() | _TEXT,
        "container_limits": st.none() | _LIMITS,
        "buildargs": st.dictionaries(_KEYS, st.none() | _TEXT, max_size=3),
        "shmsize": st.none() | st.integers(1, 2**40),
        "labels": st.dictionaries(_KEYS, _TEXT, max_size=3),
        "cache_from": st.lists(_TAGS, max_size=2),
        "target": st.none() | _NAMES,
        "network_mode": st.none() | st.sampled_from(["default", "host", "none", "bridge", "net1"]),
        "squash": st.none() | st.booleans(),
        "extra_hosts": st.lists(_HOSTS, max_size=3),
        "platform": st.none()
        | st.sampled_from(["linux", "linux/amd64", "linux/arm64/v8", "windows/amd64"]),
        "isolation": st.none() | st.sampled_from(["default", "process", "hyperv"]),
        "ulimits": _ULIMITS,
        "cgroup_parent": st.none() | _NAMES,
        "security_opt": st.lists(_NAMES, max_size=2),
        "outputs": st.lists(
            st.builds(BuildOutput, type=_NAMES, attrs=st.dictionaries(_KEYS, _TEXT, max_size=2)),
            max_size=1,
        ),
        "version": st.sampled_from(["1", "2"]),
        "build_id": st.none() | _NAMES,
        "session_id": st.none() | _NAMES,
    },
)
_CONTEXT = st.sampled_from(
    [{"path": HERE}, {"remote": "https://example.com/c.tar"}, {"path": "git@github.com:a/b.git"}]
)

_BOOL_PARAMS = {
    "q": "quiet",
    "nocache": "nocache",
    "pull": "pull",
    "forcerm": "forcerm",
    "squash": "squash",
}
_LIMIT_PARAMS = (
    "memory",
    "memswap",
    "cpushares",
    "cpuperiod",
    "cpuquota",
    "cpusetcpus",
    "cpusetmems",
)


def _decode(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Read a /build query back into BuildOptions keywords, as the engine would read it."""
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    kwargs: dict[str, Any] = {"version": values.pop("version", ["1"])[0]}
    limits: dict[str, Any] = {}
    for key, items in values.items():
        value = items[0]
        if key in _BOOL_PARAMS:
            kwargs[_BOOL_PARAMS[key]] = value == "1"
        elif key == "rm":
            kwargs["rm"] = value != "0"
        elif key in _LIMIT_PARAMS:
            limits[key] = value if key.startswith("cpuset") else int(value)
        elif key in ("t", "extrahosts", "securityopt"):
            kwargs[
                {"t": "tag", "extrahosts": "extra_hosts", "securityopt": "security_opt"}[key]
            ] = items
        elif key in ("buildargs", "labels"):
            kwargs[key] = json.loads(value)
        elif key == "cachefrom":
            kwargs["cache_from"] = json.loads(value)
        elif key == "ulimits":
            kwargs["ulimits"] = [
                Ulimit(name=u["Name"], soft=u["Soft"], hard=u["Hard"]) for u in json.loads(value)
            ]
        elif key == "outputs":
            kwargs["outputs"] = [
                BuildOutput(type=o["Type"], attrs=o["Attrs"]) for o in json.loads(value)
            ]
        elif key == "shmsize":
            kwargs["shmsize"] = int(value)
        elif key == "remote":
            kwargs["remote"] = value
        else:
            field = {
                "networkmode": "network_mode",
                "cgroupparent": "cgroup_parent",
                "buildid": "build_id",
                "session": "session_id",
            }
            kwargs[field.get(key, key)] = value
    if limits:
        kwargs["container_limits"] = limits
    if "remote" not in kwargs:
        kwargs["path"] = HERE  # a local context travels in the body, not the query
    return kwargs


def _normalised(opts: BuildOptions) -> dict[str, Any]:
    """The values of `opts` that reach the engine, with engine defaults made explicit."""
    data = {name: getattr(opts, name) for name in type(opts).model_fields}
    for name in (
        "path",
        "fileobj",
        "timeout",
        "decode",
        "use_config_proxy",
        "gzip",
        "custom_context",
        "encoding",
        "remote",
    ):
        data.pop(name)
    data["remote"] = opts.remote_url
    data["dockerfile"] = opts.dockerfile or "Dockerfile"
    data["squash"] = bool(opts.squash)
    data["isolation"] = None if opts.isolation == "default" else opts.isolation
    data["network_mode"] = None if opts.network_mode == "default" else opts.network_mode
    data["ulimits"] = tuple(sorted(opts.ulimits, key=lambda u: u.name))
    return data


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(kwargs=_OPTIONS, context=_CONTEXT)
def test_any_accepted_options_serialize_and_read_back(
    kwargs: dict[str, Any], context: dict[str, Any]
) -> None:
    try:
        opts = BuildOptions(**context, **kwargs)
    except ValidationError:
        return
    try:
        pairs = opts.to_query("1.51")
    except UnsupportedOption:
        assert opts.version == "2" or opts.outputs
        return
    assert [key for key, _ in pairs] == sorted(key for key, _ in pairs)
    assert dict(
        parse_qsl(query_string(pairs), keep_blank_values=True, strict_parsing=True)
    ) == dict(pairs)
    assert parse_qsl(query_string(pairs), keep_blank_values=True) == pairs
    rebuilt = BuildOptions(**_decode(pairs))
    assert _normalised(rebuilt) == _normalised(opts)
    assert rebuilt.to_query("1.51") == pairs


_JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=3)
    ),
    max_leaves=6,
)
_FIELDS = sorted(set(BuildOptions.model_fields) - {"path", "remote", "fileobj"})


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(
    junk=st.dictionaries(st.sampled_from(_FIELDS), _JUNK, max_size=4),
    context=_CONTEXT,
    api=st.sampled_from(["1.24", "1.30", "1.41", "1.51"]),
)
def test_no_input_raises_anything_but_validation_or_unsupported(
    junk: dict[str, Any], context: dict[str, Any], api: str
) -> None:
    try:
        opts = BuildOptions(**context, **junk)
        opts.to_query(api)
    except (ValidationError, UnsupportedOption):
        pass


def test_unsupported_lists_every_problem_and_to_query_raises_the_first() -> None:
    options = BuildOptions(
        path=".",
        version="2",
        container_limits=ContainerLimits(memory="8m"),
        rm=False,
        squash=True,
        platform="linux/amd64",
    )
    problems = options.unsupported("1.30")
    assert [p.option for p in problems] == [
        "container_limits",
        "rm",
        "squash",
        "platform",
        "version",
    ]
    with pytest.raises(UnsupportedOption) as first:
        options.to_query("1.30")
    assert str(first.value) == str(problems[0])
    assert BuildOptions(path=".", version="2").unsupported("1.41") == []


@pytest.mark.parametrize("api", ["1.45", "1.47", "1.51"])
def test_cacheonly_is_refused_where_post_build_breaks_it(api: str) -> None:
    opts = BuildOptions(path=HERE, version="2", outputs=[BuildOutput(type="cacheonly")])
    with pytest.raises(UnsupportedOption) as info:
        opts.to_query(api)
    assert info.value.option == "outputs"
    assert info.value.given == api
    assert str(info.value).startswith(
        "outputs type 'cacheonly' fails on Docker Engine 26 and later (API 1.45+; this engine "
        f"speaks {api}): its POST /build hands BuildKit an exporter without a name"
    )


@pytest.mark.parametrize("api", ["1.40", "1.41", "1.44"])
def test_cacheonly_is_sent_to_engines_that_skip_the_export(api: str) -> None:
    query = BuildOptions(path=HERE, version="2", outputs=[BuildOutput(type="cacheonly")]).to_query(
        api
    )
    assert ("outputs", '[{"Type":"cacheonly","Attrs":{}}]') in query
