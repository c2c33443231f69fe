"""BuildOptions, ContainerLimits, Ulimit and BuildOutput refuse bad values with clear messages."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from buildsdk.build import BuildOptions, BuildOutput, ContainerLimits, Ulimit

HERE = str(Path(__file__).resolve().parent)


def _messages(**kwargs: Any) -> list[str]:
    """Construct BuildOptions and return the messages of the ValidationError it raises."""
    with pytest.raises(ValidationError) as info:
        BuildOptions(**kwargs)
    return [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in info.value.errors()]


def _message(**kwargs: Any) -> str:
    messages = _messages(**kwargs)
    assert len(messages) == 1, messages
    return messages[0]


# -- context sources -------------------------------------------------------------------------


def test_a_context_source_is_required() -> None:
    assert _message() == (
        ": Value error, one context source is required: path (a directory or remote URL), "
        "fileobj, or remote"
    )


@pytest.mark.parametrize(
    ("kwargs", "sources"),
    [
        ({"path": HERE, "remote": "https://example.com/c.tar"}, "path and remote"),
        ({"fileobj": io.BytesIO(), "remote": "https://example.com/c.tar"}, "fileobj and remote"),
        ({"path": "https://example.com/c.tar", "fileobj": io.BytesIO()}, "path and fileobj"),
    ],
)
def test_only_one_context_source(kwargs: dict[str, Any], sources: str) -> None:
    assert f"give exactly one context source, got {sources}: path (a directory or remote URL)" in (
        _message(**kwargs)
    )


def test_custom_context_with_a_directory_is_two_sources() -> None:
    message = _message(path=HERE, fileobj=io.BytesIO(), custom_context=True)
    assert "give exactly one context source, got path and fileobj" in message


def test_dockerfile_from_memory_with_a_directory_context_is_allowed() -> None:
    opts = BuildOptions(path=HERE, fileobj=io.StringIO("FROM scratch\n"))
    assert opts.path == HERE
    assert not opts.is_remote


def test_path_must_be_a_directory() -> None:
    assert _message(path=__file__) == (
        "path: Value error, path must be a directory or a remote URL starting with http://, "
        f"https://, git://, github.com/, git@; {__file__!r} is not a directory"
    )


def test_path_may_be_path_like() -> None:
    opts = BuildOptions(path=Path(HERE))
    assert opts.path == Path(HERE)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "",
            (
                "path: Value error, path must not be empty: give a directory such as '.' or "
                "a remote URL"
            ),
        ),
        (
            b"/tmp",
            (
                "path: Value error, path must be a directory (str or os.PathLike) or a remote URL, "
                "got bytes"
            ),
        ),
        (
            3,
            (
                "path: Value error, path must be a directory (str or os.PathLike) or a remote URL, "
                "got int"
            ),
        ),
    ],
)
def test_path_type(value: object, message: str) -> None:
    assert _message(path=value) == message


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/ctx.tar.gz",
        "https://example.com/Dockerfile",
        "git://example.com/repo.git",
        "github.com/docker/app",
        "git@github.com:docker/app.git",
    ],
)
def test_remote_paths_are_sent_as_remote(url: str) -> None:
    opts = BuildOptions(path=url)
    assert opts.is_remote
    assert opts.remote_url == url


def test_remote_field_is_a_remote_context() -> None:
    opts = BuildOptions(remote="https://example.com/c.tar")
    assert (opts.is_remote, opts.remote_url) == (True, "https://example.com/c.tar")
    assert BuildOptions(path=HERE).remote_url is None


def test_fileobj_must_be_readable() -> None:
    assert _message(fileobj="FROM scratch") == (
        "fileobj: Value error, fileobj must be a readable file-like object (with a read() "
        "method), got str"
    )


def test_custom_context_needs_fileobj() -> None:
    assert _message(path=HERE, custom_context=True) == (
        ": Value error, custom_context needs fileobj: the tar archive to send"
    )


def test_encoding_only_with_custom_context() -> None:
    assert _message(path=HERE, encoding="gzip") == (
        ": Value error, encoding is only allowed with custom_context (it labels the tar you give)"
    )


def test_gzip_and_encoding_are_exclusive() -> None:
    message = _message(fileobj=io.BytesIO(), custom_context=True, encoding="gzip", gzip=True)
    assert message == (
        ": Value error, gzip and encoding are exclusive: gzip compresses the context itself"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fileobj": io.BytesIO(), "custom_context": True},
        {"remote": "https://example.com/c.tar"},
    ],
)
def test_gzip_needs_a_context_we_pack(kwargs: dict[str, Any]) -> None:
    assert "gzip only applies to a context buildsdk packs" in _message(gzip=True, **kwargs)


def test_encoding_must_be_a_header_token() -> None:
    message = _message(fileobj=io.BytesIO(), custom_context=True, encoding="gzip\r\nX: 1")
    assert message.startswith("encoding: Value error, encoding must be a Content-Encoding token")


# -- tags and references ---------------------------------------------------------------------


def test_tag_accepts_one_string_or_a_sequence() -> None:
    assert BuildOptions(path=HERE, tag="app:1").tag == ("app:1",)
    assert BuildOptions(path=HERE, tag=["app:1", "app:latest"]).tag == ("app:1", "app:latest")
    assert BuildOptions(path=HERE).tag == ()
    assert BuildOptions(path=HERE, tag=None).tag == ()


def test_tag_is_not_coerced() -> None:
    assert _message(path=HERE, tag=1) == (
        "tag: Value error, tag must be one image name or several (a string or a sequence of "
        "strings), got int"
    )
    assert _message(path=HERE, tag=["a", 2]) == "tag.1: Input should be a valid string"


def test_tag_digest_is_refused_with_the_engine_message() -> None:
    digest = "sha256:" + "0" * 64
    assert _message(path=HERE, tag=f"app@{digest}") == (
        f"tag: Value error, invalid tag 'app@{digest}': build tag cannot contain a digest"
    )


def test_tag_must_be_lowercase() -> None:
    assert _message(path=HERE, tag="MyApp:1") == (
        "tag: Value error, invalid tag 'MyApp:1': invalid reference format: repository name "
        "(library/MyApp) must be lowercase"
    )


def test_cache_from_entries_are_references() -> None:
    assert BuildOptions(path=HERE, cache_from="a:1").cache_from == ("a:1",)
    assert _message(path=HERE, cache_from=["a:1", "B"]).startswith(
        "cache_from: Value error, invalid image reference 'B'"
    )


# -- build args and labels -------------------------------------------------------------------


def test_buildargs_take_strings_and_none() -> None:
    opts = BuildOptions(path=HERE, buildargs={"A": "1", "B": None})
    assert opts.buildargs == {"A": "1", "B": None}


@pytest.mark.parametrize("value", [1, True, 1.5, b"x"])
def test_buildargs_values_are_not_coerced(value: object) -> None:
    assert (
        _message(path=HERE, buildargs={"A": value}) == "buildargs.A: Input should be a valid string"
    )


def test_labels_values_are_strings_only() -> None:
    assert _message(path=HERE, labels={"a": None}) == "labels.a: Input should be a valid string"


@pytest.mark.parametrize("field", ["buildargs", "labels"])
def test_mapping_fields(field: str) -> None:
    assert _message(path=HERE, **{field: ["A=1"]}) == (
        f"{field}: Value error, {field} must be a mapping of str to str"
    )
    assert _message(path=HERE, **{field: {"": "x"}}) == (
        f"{field}: Value error, {field} keys must not be empty"
    )


def test_secret_values_stay_out_of_error_text() -> None:
    with pytest.raises(ValidationError) as info:
        BuildOptions(path=HERE, buildargs={"TOKEN": "hunter2-secret"}, encoding="gzip")
    assert "hunter2-secret" not in str(info.value)


def test_lone_surrogates_are_refused_without_echoing_them() -> None:
    message = _message(path=HERE, labels={"a": "x\udc80"})
    assert message == (
        ": Value error, labels contains a lone surrogate character, which is not valid Unicode "
        "text and cannot be sent"
    )


# -- limits ----------------------------------------------------------------------------------


def test_container_limits_accept_docker_py_dicts_and_size_strings() -> None:
    opts = BuildOptions(
        path=HERE,
        container_limits={"memory": "512m", "memswap": -1, "cpushares": 512, "cpusetcpus": "0-3,5"},
    )
    assert opts.container_limits == ContainerLimits(
        memory=536870912, memswap=-1, cpushares=512, cpusetcpus="0-3,5"
    )


def test_container_limits_unknown_keys() -> None:
    assert _message(path=HERE, container_limits={"memory": "1g", "cpus": 2}) == (
        "container_limits: Value error, container_limits has unknown keys cpus; allowed: "
        "memory, memswap, cpushares, cpusetcpus, cpuperiod, cpuquota, cpusetmems"
    )


def _limits_message(**kwargs: Any) -> str:
    with pytest.raises(ValidationError) as info:
        ContainerLimits(**kwargs)
    errors = info.value.errors()
    assert len(errors) == 1, errors
    return f"{'.'.join(map(str, errors[0]['loc']))}: {errors[0]['msg']}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"memory": "1x"},
            (
                "memory: Value error, memory: invalid unit 'x' in size '1x': expected b, k, "
                "m, g, t or p, optionally followed by 'b' or 'ib'"
            ),
        ),
        (
            {"memory": 1024},
            (
                "memory: Value error, memory must be at least 6 MiB (6291456 bytes), the engine's "
                "minimum; got 1024"
            ),
        ),
        ({"memory": True}, "memory: Input should be a valid integer"),
        (
            {"memswap": 0},
            "memswap: Value error, memswap must be a positive size or -1 (unlimited), got 0",
        ),
        (
            {"memswap": "1g"},
            ": Value error, memswap needs memory to be set too (the engine refuses it)",
        ),
        (
            {"memory": "1g", "memswap": "512m"},
            (
                ": Value error, memswap (536870912) must be at least memory (1073741824): "
                "it is the limit of memory plus swap"
            ),
        ),
        ({"cpushares": 0}, "cpushares: Value error, cpushares must be a positive integer, got 0"),
        ({"cpushares": "2"}, "cpushares: Input should be a valid integer"),
        (
            {"cpuperiod": 999},
            (
                "cpuperiod: Value error, cpuperiod must be between 1000 and 1000000 microseconds, "
                "got 999"
            ),
        ),
        (
            {"cpuquota": 10},
            (
                "cpuquota: Value error, cpuquota must be -1 (no limit) or at least 1000 "
                "microseconds, got 10"
            ),
        ),
        (
            {"cpusetcpus": "0-3,"},
            (
                "cpusetcpus: Value error, cpusetcpus must be a list of CPU or memory node numbers "
                "and ranges such as '0-3,5', got '0-3,'"
            ),
        ),
        (
            {"cpusetmems": "3-1"},
            "cpusetmems: Value error, cpusetmems: range '3-1' ends before it starts",
        ),
    ],
)
def test_container_limit_rules(kwargs: dict[str, Any], message: str) -> None:
    assert _limits_message(**kwargs) == message


def test_memswap_unlimited_and_string_forms() -> None:
    assert ContainerLimits(memswap="-1").memswap == -1
    assert ContainerLimits(memory="1g", memswap="2g").memswap == 2 * 1024**3


def test_shmsize() -> None:
    assert BuildOptions(path=HERE, shmsize="64m").shmsize == 64 * 1024**2
    assert BuildOptions(path=HERE, shmsize=1).shmsize == 1
    assert _message(path=HERE, shmsize=0) == (
        "shmsize: Value error, shmsize must be greater than 0 bytes, got 0"
    )
    assert _message(path=HERE, shmsize="lots") == (
        "shmsize: Value error, shmsize: invalid size 'lots': expected a number with an optional "
        "unit b, k, m, g, t or p (binary, e.g. '512m', '1.5g', '64MiB')"
    )


def test_ulimit_strings_and_models() -> None:
    opts = BuildOptions(
        path=HERE,
        ulimits=[
            "nofile=1024:2048",
            Ulimit(name="nproc", soft=1, hard=2),
            {"name": "core", "soft": 0, "hard": 0},
        ],
    )
    assert opts.ulimits == (
        Ulimit(name="nofile", soft=1024, hard=2048),
        Ulimit(name="nproc", soft=1, hard=2),
        Ulimit(name="core", soft=0, hard=0),
    )
    assert Ulimit.parse("nproc=512") == Ulimit(name="nproc", soft=512, hard=512)
    assert Ulimit.parse("nofile=10:-1") == Ulimit(name="nofile", soft=10, hard=-1)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "nofile=2048:1024",
            "ulimit nofile: soft limit must be less than or equal to hard limit: 2048 > 1024",
        ),
        ("nofile", "invalid ulimit 'nofile': expected name=soft[:hard]"),
        (
            "nofile=1:2:3",
            "invalid ulimit 'nofile=1:2:3': expected name=soft[:hard] with integer limits",
        ),
        ("nofile=lots", "expected name=soft[:hard] with integer limits"),
        ("files=1", "ulimit name 'files' is not known; allowed: core, cpu, data, fsize"),
    ],
)
def test_ulimit_rules(value: str, message: str) -> None:
    assert message in _message(path=HERE, ulimits=[value])


def test_ulimits_must_be_a_sequence_and_unique() -> None:
    assert _message(path=HERE, ulimits="nofile=1") == (
        "ulimits: Value error, ulimits must be a sequence of Ulimit objects or strings like "
        "'nofile=1024:2048'"
    )
    assert _message(path=HERE, ulimits=["nofile=1", "nofile=2"]) == (
        "ulimits: Value error, ulimits sets nofile more than once; give each once"
    )


# -- hosts, platform, isolation, outputs -----------------------------------------------------


def test_extra_hosts_forms() -> None:
    by_dict = BuildOptions(path=HERE, extra_hosts={"v6": "2001:db8::1", "db": "10.0.0.2"})
    assert by_dict.extra_hosts == ("db:10.0.0.2", "v6:2001:db8::1")
    by_list = BuildOptions(
        path=HERE, extra_hosts=["gw:host-gateway", "h1=[::1]", "h4:[10.0.0.1]", "m:::ffff:1.2.3.4"]
    )
    assert by_list.extra_hosts == ("gw:host-gateway", "h1:::1", "h4:10.0.0.1", "m:::ffff:1.2.3.4")
    assert BuildOptions(path=HERE, extra_hosts="db:10.0.0.2").extra_hosts == ("db:10.0.0.2",)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("db", "extra_hosts entry 'db' must be 'host:ip' (or 'host=ip'), e.g. 'db:10.0.0.2'"),
        (":10.0.0.1", "extra_hosts entry ':10.0.0.1' must be 'host:ip'"),
        (
            "db:10.0.0.256",
            (
                "extra_hosts entry 'db:10.0.0.256': '10.0.0.256' is not an IPv4 or IPv6 address or "
                "'host-gateway'"
            ),
        ),
        ("db:example.com", "'example.com' is not an IPv4 or IPv6 address"),
        ("db:fe80::1%eth0", "'fe80::1%eth0' is not an IPv4 or IPv6 address"),
        ("db:010.0.0.1", "'010.0.0.1' is not an IPv4 or IPv6 address"),
    ],
)
def test_extra_host_rules(entry: str, message: str) -> None:
    assert message in _message(path=HERE, extra_hosts=[entry])


def test_extra_hosts_mapping_values_are_strings() -> None:
    assert "extra_hosts as a mapping must map host names (str) to IPs (str)" in _message(
        path=HERE, extra_hosts={"db": 1}
    )


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("linux", "linux"),
        ("linux/amd64", "linux/amd64"),
        ("Linux/ARM64/v8", "linux/arm64/v8"),
        ("windows(10.0.17763)/amd64", "windows(10.0.17763)/amd64"),
        ("", None),
    ],
)
def test_platform_forms(value: str, stored: str | None) -> None:
    assert BuildOptions(path=HERE, platform=value).platform == stored


@pytest.mark.parametrize(
    "value", ["linux/", "/amd64", "linux/amd64/v8/x", "linux amd64", "linux/amd64,"]
)
def test_platform_grammar(value: str) -> None:
    assert _message(path=HERE, platform=value) == (
        "platform: Value error, platform must be os[/arch[/variant]] such as 'linux/amd64' or "
        f"'linux/arm64/v8', got {value.lower()!r}"
    )


def test_isolation_values() -> None:
    assert BuildOptions(path=HERE, isolation="HyperV").isolation == "hyperv"  # type: ignore[arg-type]
    message = _message(path=HERE, isolation="vm")
    assert message.startswith("isolation: Input should be 'default', 'process' or 'hyperv'")


def test_outputs() -> None:
    opts = BuildOptions(
        path=HERE, version="2", outputs=[{"type": "local", "attrs": {"dest": "out"}}]
    )
    assert opts.outputs == (BuildOutput(type="local", attrs={"dest": "out"}),)
    two = [BuildOutput(type="tar"), BuildOutput(type="local")]
    assert _message(path=HERE, version="2", outputs=two, build_endpoint="build") == (
        ": Value error, outputs: POST /build (build_endpoint='build') exports to one output, "
        "got 2; several need the Control API (build_endpoint 'auto' or 'grpc')"
    )
    assert len(BuildOptions(path=HERE, version="2", outputs=two).outputs) == 2
    with pytest.raises(ValidationError, match="outputs type must not be empty"):
        BuildOutput(type="")


# -- plain fields ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "quiet",
        "nocache",
        "rm",
        "pull",
        "forcerm",
        "gzip",
        "decode",
        "custom_context",
        "use_config_proxy",
        "squash",
    ],
)
def test_booleans_are_strict(field: str) -> None:
    assert _message(path=HERE, **{field: "yes"}) == f"{field}: Input should be a valid boolean"


def test_defaults_follow_the_cli() -> None:
    opts = BuildOptions(path=HERE)
    assert (opts.rm, opts.use_config_proxy, opts.version, opts.squash) == (True, True, "1", None)
    assert (opts.timeout, opts.decode, opts.dockerfile) == (None, False, None)


def test_empty_strings_mean_unset_like_docker_py() -> None:
    opts = BuildOptions(path=HERE, dockerfile="", target="", network_mode="", cgroup_parent="")
    assert (opts.dockerfile, opts.target, opts.network_mode, opts.cgroup_parent) == (None,) * 4


@pytest.mark.parametrize("field", ["remote", "build_id", "session_id"])
def test_ids_must_not_be_empty(field: str) -> None:
    kwargs: dict[str, Any] = {field: ""}
    if field != "remote":
        kwargs["path"] = HERE
    assert f"{field}: Value error, {field} must not be empty" in _messages(**kwargs)


def test_timeout() -> None:
    assert BuildOptions(path=HERE, timeout=30).timeout == 30.0
    assert _message(path=HERE, timeout=0) == (
        "timeout: Value error, timeout must be a positive number of seconds or None, got 0.0"
    )


def test_version_is_1_or_2() -> None:
    assert _message(path=HERE, version="3") == "version: Input should be '1' or '2'"


def test_unknown_options_are_refused() -> None:
    assert _message(path=HERE, tags=["a"]) == "tags: Extra inputs are not permitted"


def test_options_are_frozen() -> None:
    opts = BuildOptions(path=HERE)
    with pytest.raises(ValidationError, match="Instance is frozen"):
        opts.quiet = True  # type: ignore[misc]


def test_empty_container_limits_are_no_limits() -> None:
    assert BuildOptions(path=HERE, container_limits={}).container_limits is None
    assert BuildOptions(path=HERE, container_limits=ContainerLimits()).container_limits is None
