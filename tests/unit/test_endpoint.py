"""Where the engine is: address parsing, precedence, docker contexts, TLS environment.

Expected addresses were checked against Docker CLI 28.2.2 (`docker version` with the same
DOCKER_HOST and TLS variables prints the address it tried) where the CLI and buildsdk agree;
the module docstring of buildsdk.endpoint lists where they deliberately differ.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from buildsdk.endpoint import (
    DEFAULT_UNIX_HOST,
    ConfigError,
    Endpoint,
    SSHTarget,
    TLSConfig,
    api_version_from_env,
    resolve_endpoint,
)
from buildsdk.errors import BuildSDKError

# --------------------------------------------------------------------------------------------
# Addresses


@pytest.mark.parametrize(
    ("address", "host", "scheme", "base_path"),
    [
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock", "unix", ""),
        ("unix://", DEFAULT_UNIX_HOST, "unix", ""),
        ("unix://relative.sock", "unix://relative.sock", "unix", ""),
        ("/run/user/1000/docker.sock", "unix:///run/user/1000/docker.sock", "unix", ""),
        ("./docker.sock", "unix://./docker.sock", "unix", ""),
        ("  unix:///x.sock  ", "unix:///x.sock", "unix", ""),
        ("tcp://", "tcp://localhost:2375", "tcp", ""),
        ("tcp://:7", "tcp://localhost:7", "tcp", ""),
        ("tcp://127.0.0.1", "tcp://127.0.0.1:2375", "tcp", ""),
        ("tcp://127.0.0.1:2376", "tcp://127.0.0.1:2376", "tcp", ""),
        ("docker.example:99", "tcp://docker.example:99", "tcp", ""),
        ("docker.example", "tcp://docker.example:2375", "tcp", ""),
        ("tcp://h:1/pre/fix", "tcp://h:1/pre/fix", "tcp", "/pre/fix"),
        ("tcp://h:1/pre/fix/", "tcp://h:1/pre/fix", "tcp", "/pre/fix"),
        ("tcp://h:1/", "tcp://h:1", "tcp", ""),
        ("tcp://[::1]", "tcp://[::1]:2375", "tcp", ""),
        ("tcp://[::1]:5000", "tcp://[::1]:5000", "tcp", ""),
        ("tcp://[::1]:", "tcp://[::1]:2375", "tcp", ""),
        ("tcp://u:secret@h:3", "tcp://h:3", "tcp", ""),
        ("http://h:1", "tcp://h:1", "tcp", ""),
        ("https://h", "tcp://h:2376", "tcp", ""),
        ("https://h:443/api", "tcp://h:443/api", "tcp", "/api"),
        ("ssh://h", "ssh://h", "ssh", ""),
        ("ssh://me@Host.Example:22/d.sock", "ssh://me@Host.Example:22/d.sock", "ssh", ""),
        ("ssh://[::1]:22", "ssh://[::1]:22", "ssh", ""),
        ("npipe://", "npipe:////./pipe/docker_engine", "npipe", ""),
        ("npipe:////./pipe/other", "npipe:////./pipe/other", "npipe", ""),
    ],
)  # fmt: skip
def test_addresses_are_normalized_like_the_cli(
    address: str, host: str, scheme: str, base_path: str
) -> None:
    endpoint = resolve_endpoint(address, env={})
    assert (endpoint.host, endpoint.scheme, endpoint.base_path) == (host, scheme, base_path)
    assert str(endpoint) == host
    assert endpoint.context_name == "default"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("foo://h", "unsupported scheme 'foo'"),
        ("fd://3", "fd:// is for the daemon only"),
        ("tcp://h:port", "bad port 'port'"),
        ("tcp://h:0", "bad port '0'"),
        ("tcp://h:65536", "bad port '65536'"),
        ("tcp://::1", "write IPv6 addresses in brackets"),
        ("tcp://[nope]:1", "is not an IPv6 address"),
        ("tcp://[::1", r"unclosed '\['"),
        ("tcp://h b:1", "bad host name 'h b'"),
        ("tcp://tcp://h", "expected tcp://host:port"),
        ("tcp://h:1/x?y=1", "queries and fragments are not allowed"),
        ("unix://unix:///x", "expected unix://<path>"),
        ("ssh://", "the host name is empty"),
        ("ssh://me@", "the host name is empty"),
        ("ssh://h?x=1", "query parameters are not allowed"),
        ("ssh://h#frag", "fragments are not allowed"),
        ("ssh://h:abc", "bad port 'abc'"),
        ("ssh://-oProxyCommand=x", "bad host name '-oProxyCommand=x'"),
        ("ssh://-l@h", "must not start with '-'"),
    ],
)
def test_bad_addresses_raise_config_error(address: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        resolve_endpoint(address, env={})
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, BuildSDKError)


@pytest.mark.parametrize("address", ["ssh://me:hunter2@h", "ssh://me:@h"])
def test_ssh_password_is_refused_without_showing_it(address: str) -> None:
    with pytest.raises(ConfigError, match="plain-text passwords are not supported") as caught:
        resolve_endpoint(address, env={})
    assert "hunter2" not in str(caught.value)


def test_password_in_tcp_address_never_shows() -> None:
    endpoint = resolve_endpoint("tcp://me:hunter2@docker.example:2376", env={})
    assert "hunter2" not in str(endpoint)
    assert "hunter2" not in repr(endpoint)
    with pytest.raises(ConfigError) as caught:
        resolve_endpoint("tcp://me:hunter2@docker.example:bad", env={})
    assert "hunter2" not in str(caught.value)
    assert "me:***@" in str(caught.value)


def test_ssh_url_parts_become_the_cli_command() -> None:
    endpoint = resolve_endpoint("ssh://me@h.example:2222/run/docker.sock", env={})
    assert endpoint.ssh == SSHTarget(
        user="me", hostname="h.example", port=2222, socket_path="/run/docker.sock"
    )
    assert endpoint.ssh.command() == [
        "ssh", "-o", "ConnectTimeout=30", "-T", "-l", "me", "-p", "2222", "--", "h.example",
        "docker", "--host", "unix:///run/docker.sock", "system", "dial-stdio",
    ]  # fmt: skip


def test_ssh_lone_slash_is_no_socket_path() -> None:
    endpoint = resolve_endpoint("ssh://h:22/", env={})
    assert endpoint.ssh is not None
    assert endpoint.ssh.socket_path is None
    assert "--host" not in endpoint.ssh.command()


def test_ssh_config_file_and_options_come_first() -> None:
    env = {"BUILDSDK_SSH_CONFIG": "/etc/buildsdk/ssh_config"}
    endpoint = resolve_endpoint("ssh://h", env=env)
    assert endpoint.ssh is not None
    assert endpoint.ssh.config_file == Path("/etc/buildsdk/ssh_config")
    target = endpoint.ssh.model_copy(update={"options": ("-o", "ConnectTimeout=3")})
    assert target.command(connect_timeout=9.2) == [
        "ssh", "-F", "/etc/buildsdk/ssh_config", "-o", "ConnectTimeout=3",
        "-o", "ConnectTimeout=10", "-T", "--", "h", "docker", "system", "dial-stdio",
    ]  # fmt: skip


_hostnames = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True
)
_ports = st.integers(min_value=1, max_value=65535)
_paths = st.lists(st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True), max_size=3)


@given(_hostnames, _ports, _paths)
def test_tcp_normal_form_is_a_fixed_point(host: str, port: int, path: list[str]) -> None:
    prefix = "".join(f"/{part}" for part in path)
    endpoint = resolve_endpoint(f"tcp://{host}:{port}{prefix}/", env={})
    assert endpoint.host == f"tcp://{host}:{port}{prefix}"
    assert endpoint.base_path == prefix
    assert endpoint.tcp_address == (host, port)
    assert resolve_endpoint(endpoint.host, env={}) == endpoint


@given(st.one_of(st.none(), _hostnames), _hostnames, st.one_of(st.none(), _ports), _paths)
def test_ssh_normal_form_is_a_fixed_point(
    user: str | None, host: str, port: int | None, path: list[str]
) -> None:
    address = f"ssh://{user + '@' if user else ''}{host}{f':{port}' if port else ''}" + "".join(
        f"/{part}" for part in path
    )
    endpoint = resolve_endpoint(address, env={})
    assert endpoint.host == address
    assert endpoint.ssh is not None
    assert (endpoint.ssh.user, endpoint.ssh.hostname, endpoint.ssh.port) == (user, host, port)
    assert resolve_endpoint(endpoint.host, env={}) == endpoint


@given(st.text(alphabet=st.characters(blacklist_characters="/@#?\x00"), min_size=1))
def test_a_password_never_reaches_an_error_or_endpoint(password: str) -> None:
    secret = "S3CRET" + password
    for address in (f"tcp://me:{secret}@h:1", f"ssh://me:{secret}@h", f"tcp://me:{secret}@h:x"):
        try:
            shown = repr(resolve_endpoint(address, env={}))
        except ConfigError as exc:
            shown = str(exc)
        assert secret not in shown


# --------------------------------------------------------------------------------------------
# Endpoint and TLSConfig models


def test_endpoint_rejects_inconsistent_fields() -> None:
    with pytest.raises(ValidationError, match="does not use the tcp scheme"):
        Endpoint(host="unix:///x", scheme="tcp")
    with pytest.raises(ValidationError, match="TLS applies to tcp"):
        Endpoint(host="unix:///x", scheme="unix", tls=TLSConfig())
    with pytest.raises(ValidationError, match="ssh settings are required"):
        Endpoint(host="ssh://h", scheme="ssh")
    with pytest.raises(ValidationError, match="has no port"):
        Endpoint(host="tcp://h", scheme="tcp")
    with pytest.raises(ValidationError, match="base_path"):
        Endpoint(host="tcp://h:1/x", scheme="tcp", base_path="x")
    with pytest.raises(ValidationError, match="user information"):
        Endpoint(host="tcp://u:p@h:1", scheme="tcp")
    with pytest.raises(ValidationError, match="extra"):
        Endpoint(host="tcp://h:1", scheme="tcp", password="x")  # type: ignore[call-arg]


def test_endpoint_accessors() -> None:
    unix = resolve_endpoint("unix:///run/docker.sock", env={})
    assert unix.socket_path == "/run/docker.sock"
    with pytest.raises(ValueError, match="not a tcp endpoint"):
        _ = unix.tcp_address
    tcp = resolve_endpoint("tcp://[::1]:7", env={})
    assert tcp.tcp_address == ("::1", 7)
    with pytest.raises(ValueError, match="not a unix socket"):
        _ = tcp.socket_path


def test_tls_config_defaults_to_verification() -> None:
    assert TLSConfig().verify is True
    with pytest.raises(ValidationError, match="client_key is set but client_cert is not"):
        TLSConfig(client_key=Path("key.pem"))
    with pytest.raises(ValidationError):
        TLSConfig(verify=True, insecure=True)  # type: ignore[call-arg]


def test_ssl_context_with_system_roots_verifies() -> None:
    context = TLSConfig().ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_ssl_context_without_verification() -> None:
    context = TLSConfig(verify=False).ssl_context()
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a self-signed ca.pem/cert.pem, key.pem and an encrypted key."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make test certificates")
    directory = tmp_path_factory.mktemp("pem")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=buildsdk-test",
    )  # fmt: skip
    shutil.copy(directory / "cert.pem", directory / "ca.pem")
    run("pkey", "-in", "key.pem", "-aes256", "-passout", "pass:pw", "-out", "encrypted.pem")
    return directory


def test_ssl_context_loads_ca_and_client_certificate(pem: Path) -> None:
    tls = TLSConfig.from_cert_path(pem)
    assert tls == TLSConfig(
        ca_cert=pem / "ca.pem", client_cert=pem / "cert.pem", client_key=pem / "key.pem"
    )
    context = tls.ssl_context()
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "buildsdk-test"),),)]


def test_ssl_context_names_a_missing_or_bad_file(pem: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CA certificate .*missing\.pem does not exist"):
        TLSConfig(ca_cert=tmp_path / "missing.pem").ssl_context()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"cannot load CA certificate from .*garbage\.pem"):
        TLSConfig(ca_cert=garbage).ssl_context()
    with pytest.raises(ConfigError, match=r"client certificate or key from .*garbage\.pem"):
        TLSConfig(client_cert=garbage, client_key=pem / "key.pem").ssl_context()


def test_encrypted_client_key_is_refused_without_prompting(pem: Path) -> None:
    tls = TLSConfig(client_cert=pem / "cert.pem", client_key=pem / "encrypted.pem")
    with pytest.raises(ConfigError, match="encrypted"):
        tls.ssl_context()


def test_from_cert_path_uses_only_files_that_exist(tmp_path: Path, pem: Path) -> None:
    assert TLSConfig.from_cert_path(tmp_path) == TLSConfig()
    shutil.copy(pem / "cert.pem", tmp_path / "cert.pem")
    # A certificate without its key is not used, as in the CLI.
    assert TLSConfig.from_cert_path(tmp_path, verify=False) == TLSConfig(verify=False)


# --------------------------------------------------------------------------------------------
# Precedence


def _write_context(
    config: Path,
    name: str,
    host: str | None,
    *,
    skip_verify: bool | None = None,
    tls_files: dict[str, str] | None = None,
) -> Path:
    digest = hashlib.sha256(name.encode()).hexdigest()
    endpoint: dict[str, object] = {}
    if host is not None:
        endpoint["Host"] = host
    if skip_verify is not None:
        endpoint["SkipTLSVerify"] = skip_verify
    meta = {"Name": name, "Metadata": {"Description": "test"}, "Endpoints": {"docker": endpoint}}
    meta_dir = config / "contexts" / "meta" / digest
    meta_dir.mkdir(parents=True)
    (meta_dir / "meta.json").write_text(json.dumps(meta))
    tls_dir = config / "contexts" / "tls" / digest / "docker"
    for file_name, text in (tls_files or {}).items():
        tls_dir.mkdir(parents=True, exist_ok=True)
        (tls_dir / file_name).write_text(text)
    return tls_dir


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A DOCKER_CONFIG directory with two contexts and currentContext = "current"."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    _write_context(directory, "current", "tcp://current.example:2375")
    _write_context(directory, "other", "unix:///run/other.sock")
    (directory / "config.json").write_text(json.dumps({"currentContext": "current"}))
    return directory


def test_explicit_host_beats_everything(config: Path) -> None:
    env = {
        "DOCKER_CONFIG": str(config),
        "DOCKER_HOST": "tcp://env.example:1",
        "DOCKER_CONTEXT": "other",
    }
    endpoint = resolve_endpoint("unix:///explicit.sock", env=env)
    assert (endpoint.host, endpoint.context_name) == ("unix:///explicit.sock", "default")


def test_explicit_context_beats_docker_host(config: Path) -> None:
    env = {"DOCKER_CONFIG": str(config), "DOCKER_HOST": "tcp://env.example:1"}
    endpoint = resolve_endpoint(context="other", env=env)
    assert (endpoint.host, endpoint.context_name) == ("unix:///run/other.sock", "other")


def test_host_and_context_together_are_an_error(config: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        resolve_endpoint("unix:///x", context="other", env={"DOCKER_CONFIG": str(config)})


def test_docker_host_beats_docker_context(config: Path) -> None:
    env = {"DOCKER_CONFIG": str(config), "DOCKER_HOST": "tcp://env.example:1"}
    env["DOCKER_CONTEXT"] = "other"
    endpoint = resolve_endpoint(env=env)
    assert (endpoint.host, endpoint.context_name) == ("tcp://env.example:1", "default")


def test_docker_context_beats_current_context(config: Path) -> None:
    env = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "other"}
    assert resolve_endpoint(env=env).context_name == "other"


def test_current_context_from_config_json(config: Path) -> None:
    endpoint = resolve_endpoint(env={"DOCKER_CONFIG": str(config)})
    assert (endpoint.host, endpoint.context_name) == ("tcp://current.example:2375", "current")
    assert endpoint.tls is None


def test_empty_variables_count_as_unset(config: Path) -> None:
    env = {"DOCKER_CONFIG": str(config), "DOCKER_HOST": "", "DOCKER_CONTEXT": ""}
    assert resolve_endpoint(env=env).context_name == "current"


def test_default_context_by_name_is_the_environment(config: Path) -> None:
    env = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "default"}
    endpoint = resolve_endpoint(env=env)
    assert (endpoint.host, endpoint.context_name) == (DEFAULT_UNIX_HOST, "default")


def test_platform_default_without_any_configuration(tmp_path: Path) -> None:
    endpoint = resolve_endpoint(env={"HOME": str(tmp_path)})
    assert (endpoint.host, endpoint.context_name, endpoint.tls) == (
        DEFAULT_UNIX_HOST,
        "default",
        None,
    )


def test_home_docker_directory_is_the_default_config_dir(tmp_path: Path) -> None:
    _write_context(tmp_path / ".docker", "remote", "ssh://me@remote.example")
    (tmp_path / ".docker" / "config.json").write_text('{"currentContext": "remote"}')
    endpoint = resolve_endpoint(env={"HOME": str(tmp_path)})
    assert (endpoint.host, endpoint.scheme) == ("ssh://me@remote.example", "ssh")


# --------------------------------------------------------------------------------------------
# Context store


def test_missing_context_names_it_and_where_it_came_from(config: Path) -> None:
    with pytest.raises(ConfigError, match=r"docker context 'nope' \(from DOCKER_CONTEXT\)"):
        resolve_endpoint(env={"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "nope"})
    with pytest.raises(ConfigError, match=r"'nope' \(from context=\) does not exist"):
        resolve_endpoint(context="nope", env={"DOCKER_CONFIG": str(config)})


def test_context_store_errors(config: Path) -> None:
    digest = hashlib.sha256(b"broken").hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text("{not json")
    env = {"DOCKER_CONFIG": str(config)}
    with pytest.raises(ConfigError, match="cannot read docker context 'broken'"):
        resolve_endpoint(context="broken", env=env)
    (meta / "meta.json").write_text(json.dumps({"Name": "broken", "Endpoints": {}}))
    with pytest.raises(ConfigError, match="has no docker endpoint"):
        resolve_endpoint(context="broken", env=env)
    (config / "config.json").write_text('{"currentContext": 3}')
    with pytest.raises(ConfigError, match="currentContext"):
        resolve_endpoint(env=env)


def test_context_without_host_is_the_platform_default(config: Path) -> None:
    _write_context(config, "empty", None)
    endpoint = resolve_endpoint(context="empty", env={"DOCKER_CONFIG": str(config)})
    assert (endpoint.host, endpoint.context_name) == (DEFAULT_UNIX_HOST, "empty")


def test_context_tls_material(config: Path, pem: Path) -> None:
    files = {n: (pem / n).read_text() for n in ("ca.pem", "cert.pem", "key.pem")}
    tls_dir = _write_context(config, "secure", "tcp://secure.example:2376", tls_files=files)
    endpoint = resolve_endpoint(context="secure", env={"DOCKER_CONFIG": str(config)})
    assert endpoint.tls == TLSConfig(
        ca_cert=tls_dir / "ca.pem",
        client_cert=tls_dir / "cert.pem",
        client_key=tls_dir / "key.pem",
        verify=True,
    )


def test_context_skip_tls_verify_without_files(config: Path) -> None:
    _write_context(config, "skip", "tcp://skip.example:2376", skip_verify=True)
    endpoint = resolve_endpoint(context="skip", env={"DOCKER_CONFIG": str(config)})
    assert endpoint.tls == TLSConfig(verify=False)


def test_context_ca_only_verifies_without_client_certificate(config: Path, pem: Path) -> None:
    tls_dir = _write_context(
        config, "ca-only", "tcp://h:2376", tls_files={"ca.pem": (pem / "ca.pem").read_text()}
    )
    endpoint = resolve_endpoint(context="ca-only", env={"DOCKER_CONFIG": str(config)})
    assert endpoint.tls == TLSConfig(ca_cert=tls_dir / "ca.pem")


def test_context_tls_files_are_ignored_for_unix_and_ssh(config: Path, pem: Path) -> None:
    files = {"ca.pem": (pem / "ca.pem").read_text()}
    _write_context(config, "u", "unix:///run/u.sock", skip_verify=True, tls_files=files)
    _write_context(config, "s", "ssh://s.example", tls_files=files)
    env = {"DOCKER_CONFIG": str(config)}
    assert resolve_endpoint(context="u", env=env).tls is None
    assert resolve_endpoint(context="s", env=env).tls is None


def test_named_context_ignores_the_tls_environment(config: Path, tmp_path: Path) -> None:
    env = {
        "DOCKER_CONFIG": str(config),
        "DOCKER_CONTEXT": "current",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(tmp_path / "absent"),
    }
    endpoint = resolve_endpoint(env=env)
    assert (endpoint.host, endpoint.tls) == ("tcp://current.example:2375", None)


def test_explicit_tls_overrides_a_context(config: Path, pem: Path) -> None:
    env = {"DOCKER_CONFIG": str(config)}
    _write_context(config, "skip", "tcp://skip.example:2376", skip_verify=True)
    assert resolve_endpoint(context="skip", tls=True, env=env).tls == TLSConfig()
    assert resolve_endpoint(context="skip", tls=False, env=env).tls is None
    given_tls = TLSConfig(ca_cert=pem / "ca.pem")
    assert resolve_endpoint(context="current", tls=given_tls, env=env).tls == given_tls
    with pytest.raises(ConfigError, match="TLS applies to tcp:// engines only"):
        resolve_endpoint(context="other", tls=True, env=env)


# --------------------------------------------------------------------------------------------
# TLS environment of the default context


@pytest.fixture
def cert_dir(tmp_path: Path, pem: Path) -> Path:
    directory = tmp_path / "certs"
    directory.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        shutil.copy(pem / name, directory / name)
    return directory


def _full_tls(directory: Path, verify: bool) -> TLSConfig:
    return TLSConfig(
        ca_cert=directory / "ca.pem",
        client_cert=directory / "cert.pem",
        client_key=directory / "key.pem",
        verify=verify,
    )


@pytest.mark.parametrize(
    ("variables", "verify"),
    [
        ({"DOCKER_TLS_VERIFY": "1"}, True),
        ({"DOCKER_TLS_VERIFY": "0"}, True),  # any non-empty value turns verification on
        ({"DOCKER_TLS_VERIFY": "false"}, True),
        ({"DOCKER_TLS": "1"}, False),
        ({"DOCKER_TLS": "1", "DOCKER_TLS_VERIFY": "1"}, True),
    ],
)
def test_tls_environment(cert_dir: Path, variables: dict[str, str], verify: bool) -> None:
    env = {"DOCKER_HOST": "tcp://h.example:2376", "DOCKER_CERT_PATH": str(cert_dir), **variables}
    endpoint = resolve_endpoint(env=env)
    assert endpoint.tls == _full_tls(cert_dir, verify)


def test_no_tls_without_tls_variables(cert_dir: Path) -> None:
    env = {"DOCKER_HOST": "tcp://h.example:2376", "DOCKER_CERT_PATH": str(cert_dir)}
    assert resolve_endpoint(env=env).tls is None
    env["DOCKER_TLS"] = ""
    assert resolve_endpoint(env=env).tls is None


def test_cert_path_defaults_to_the_config_directory(cert_dir: Path) -> None:
    env = {"DOCKER_HOST": "tcp://h:1", "DOCKER_TLS_VERIFY": "1", "DOCKER_CONFIG": str(cert_dir)}
    assert resolve_endpoint(env=env).tls == _full_tls(cert_dir, True)


def test_tls_verify_without_ca_is_an_error_naming_the_file(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": "tcp://h:1", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"DOCKER_TLS_VERIFY is set but .*ca\.pem does not exist"):
        resolve_endpoint(env=env)


def test_tls_without_verification_needs_no_files(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": "tcp://h:1", "DOCKER_TLS": "1", "DOCKER_CERT_PATH": str(tmp_path)}
    assert resolve_endpoint(env=env).tls == TLSConfig(verify=False)


def test_tls_without_host_means_localhost_2376(cert_dir: Path) -> None:
    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(cert_dir)}
    endpoint = resolve_endpoint(env=env)
    assert endpoint.host == "tcp://localhost:2376"
    assert endpoint.tls == _full_tls(cert_dir, True)


@pytest.mark.parametrize(
    ("address", "host"),
    [("tcp://", "tcp://localhost:2375"), ("tcp://h.example", "tcp://h.example:2375")],
)
def test_tls_does_not_change_the_port_of_a_given_host(
    cert_dir: Path, address: str, host: str
) -> None:
    # CLI 28.2.2 sends TLS to port 2375 here; only an empty address gets 2376.
    env = {"DOCKER_HOST": address, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(cert_dir)}
    endpoint = resolve_endpoint(env=env)
    assert endpoint.host == host
    assert endpoint.tls is not None


def test_tls_environment_is_ignored_for_unix_and_ssh(tmp_path: Path) -> None:
    # The CA is missing, which would be an error for tcp; unix and ssh never read it.
    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}
    assert resolve_endpoint("unix:///x.sock", env=env).tls is None
    assert resolve_endpoint("ssh://h", env=env).tls is None


def test_https_forces_tls_with_verification() -> None:
    endpoint = resolve_endpoint("https://h.example", env={})
    assert endpoint.tls == TLSConfig()
    with pytest.raises(ConfigError, match="https:// but tls=False"):
        resolve_endpoint("https://h.example", tls=False, env={})


def test_https_uses_the_tls_environment(cert_dir: Path) -> None:
    env = {"DOCKER_TLS": "1", "DOCKER_CERT_PATH": str(cert_dir)}
    assert resolve_endpoint("https://h.example:1", env=env).tls == _full_tls(cert_dir, False)


def test_explicit_tls_for_the_default_context(cert_dir: Path, tmp_path: Path) -> None:
    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(cert_dir)}
    assert resolve_endpoint("tcp://h:1", tls=False, env=env).tls is None
    given_tls = TLSConfig(verify=False)
    assert resolve_endpoint("tcp://h:1", tls=given_tls, env=env).tls == given_tls
    # tls=True: verification on, with the files of DOCKER_CERT_PATH that exist.
    assert resolve_endpoint("tcp://h:1", tls=True, env=env).tls == _full_tls(cert_dir, True)
    empty = {"DOCKER_CERT_PATH": str(tmp_path / "none")}
    assert resolve_endpoint("tcp://h:1", tls=True, env=empty).tls == TLSConfig()
    assert resolve_endpoint(tls=True, env=empty).host == "tcp://localhost:2376"
    with pytest.raises(ConfigError, match="TLS applies to tcp:// engines only"):
        resolve_endpoint("unix:///x", tls=given_tls, env={})


# --------------------------------------------------------------------------------------------
# DOCKER_API_VERSION


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1.41", "1.41"), ("v1.41", "1.41"), (" 1.44 ", "1.44"), ("", None), ("1.9", "1.9")],
)
def test_api_version_from_env(value: str, expected: str | None) -> None:
    assert api_version_from_env({"DOCKER_API_VERSION": value}) == expected


def test_api_version_unset_and_invalid() -> None:
    assert api_version_from_env({}) is None
    with pytest.raises(ConfigError, match=r"DOCKER_API_VERSION='latest' is not an API version"):
        api_version_from_env({"DOCKER_API_VERSION": "latest"})


def test_the_former_module_path_gives_the_same_objects() -> None:
    # `buildsdk.config` was this module's name; programs importing by that path keep working.
    import buildsdk.config
    import buildsdk.endpoint

    assert buildsdk.config.__all__ == buildsdk.endpoint.__all__
    for name in buildsdk.endpoint.__all__:
        assert getattr(buildsdk.config, name) is getattr(buildsdk.endpoint, name), name
