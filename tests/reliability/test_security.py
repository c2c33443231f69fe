"""Nothing leaves the machine that should not, and nothing secret shows up where users look.

The fault engine records every byte the client sent, so these tests read the real upload:
a symlink to /etc/passwd travels as a link, never as the file; a Dockerfile outside the
context is the only outside file ever read. Credentials are looked for in every error,
repr, log record and URL these faults produce. TLS is checked against the real TLS dockerd:
verification is on unless turned off, and a wrong CA is a clear, quick error.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from buildsdk import BuildSDKError, EngineUnreachable, StreamError
from buildsdk.auth import DockerConfig, RegistryAuth
from buildsdk.build import BuildOptions
from buildsdk.client import Client
from buildsdk.endpoint import ConfigError, TLSConfig, resolve_endpoint
from buildsdk.errors import BuildError
from tests.integration.conftest import Engines, TLSFiles
from tests.reliability.conftest import Measure, clean_config, expect_error
from tests.reliability.fault_engine import Exchange, FaultEngine

IMAGE_ID = "sha256:" + "7a" * 32
PASSWORD = "pa55-Wd_only-in-config"
TOKEN = "identity-t0ken-never-shown"


def _tar(body: bytes) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(body))


def _build(engine: FaultEngine, **options: object) -> None:
    with Client(engine.unix_host, env={}, config=clean_config()) as client:
        client.build(BuildOptions(**options)).result()  # type: ignore[arg-type]


# -- what goes on the wire ---------------------------------------------------------------------


def test_symlink_to_passwd_is_sent_as_a_link(fault_engine: FaultEngine, tmp_path: Path) -> None:
    passwd = Path("/etc/passwd").read_bytes()
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (tmp_path / "passwd").symlink_to("/etc/passwd")
    (tmp_path / "etc").symlink_to("/etc")
    (tmp_path / "relative").symlink_to("../../../../../../../../etc/passwd")
    _build(fault_engine, path=str(tmp_path))

    body = bytes(fault_engine.builds()[0].body)
    with _tar(body) as tar:
        links = {m.name: m.linkname for m in tar.getmembers() if m.issym()}
        assert all(m.size == 0 for m in tar.getmembers() if m.issym())
        assert sorted(tar.getnames()) == ["Dockerfile", "etc", "passwd", "relative"]
    assert links == {
        "passwd": "/etc/passwd",
        "etc": "/etc",
        "relative": "../../../../../../../../etc/passwd",
    }
    assert passwd not in body
    for line in passwd.splitlines():
        if len(line) > 12:  # the root line is short and generic; longer ones are distinctive
            assert line not in body


def test_dockerignore_exception_through_a_symlinked_dir(
    fault_engine: FaultEngine, tmp_path: Path
) -> None:
    """A pattern cannot reach through a symlinked directory to pull outside files in."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "etc").symlink_to("/etc")
    (tmp_path / ".dockerignore").write_text("*\n!Dockerfile\n!etc/passwd\n")
    _build(fault_engine, path=str(tmp_path))
    body = bytes(fault_engine.builds()[0].body)
    with _tar(body) as tar:
        assert sorted(tar.getnames()) == [".dockerignore", "Dockerfile"]
    assert Path("/etc/passwd").read_bytes() not in body


def test_dockerfile_outside_the_context(fault_engine: FaultEngine, tmp_path: Path) -> None:
    """Like the CLI: the outside Dockerfile travels as `.dockerfile.<20 hex>`, nothing else."""
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "app.txt").write_text("app")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\nCOPY app.txt /\n")
    (outside / "neighbour-secret").write_text("NEIGHBOUR-SECRET-CONTENT")
    _build(fault_engine, path=str(context), dockerfile="../elsewhere/Dockerfile")

    request = fault_engine.builds()[0]
    body = bytes(request.body)
    with _tar(body) as tar:
        names = tar.getnames()
        assert len(names) == 3
        assert names[0] == "app.txt"
        random_name = names[1]
        assert re.fullmatch(r"\.dockerfile\.[0-9a-f]{20}", random_name)
        assert names[2] == ".dockerignore"
        dockerfile = tar.extractfile(random_name)
        ignore = tar.extractfile(".dockerignore")
        assert dockerfile is not None
        assert ignore is not None
        assert dockerfile.read() == b"FROM scratch\nCOPY app.txt /\n"
        assert ignore.read() == f".dockerignore\n{random_name}\n".encode()
    assert f"dockerfile={random_name}" in request.target
    assert b"NEIGHBOUR-SECRET-CONTENT" not in body


def test_dockerfile_symlink_leaving_the_context(fault_engine: FaultEngine, tmp_path: Path) -> None:
    """A Dockerfile symlinked outside is resolved as the CLI does (EvalSymlinks) and sent as
    the Dockerfile under the random name; the link's own entry stays a link."""
    context = tmp_path / "ctx"
    context.mkdir()
    real = tmp_path / "real.Dockerfile"
    real.write_text("FROM scratch\n")
    (context / "Dockerfile").symlink_to(real)
    _build(fault_engine, path=str(context))
    body = bytes(fault_engine.builds()[0].body)
    with _tar(body) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["Dockerfile"].issym()
    assert members["Dockerfile"].linkname == str(real)
    extra = [n for n in members if n.startswith(".dockerfile.")]
    assert len(extra) == 1
    assert members[extra[0]].size == len(b"FROM scratch\n")


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        ("../missing/Dockerfile", "Cannot locate Dockerfile"),
        ("..", "Dockerfile is a directory"),
    ],
)
def test_bad_outside_dockerfile_sends_nothing(
    fault_engine: FaultEngine, tmp_path: Path, dockerfile: str, message: str
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(BuildSDKError) as info:
        _build(fault_engine, path=str(tmp_path), dockerfile=dockerfile)
    assert message in str(info.value)
    assert fault_engine.builds() == []


# -- credentials never shown -------------------------------------------------------------------


def _config_with_secrets(tmp_path: Path) -> DockerConfig:
    auth = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    data = {
        "auths": {
            "registry.example:5000": {"auth": auth},
            "https://index.docker.io/v1/": {"identitytoken": TOKEN, "auth": auth},
        },
        # Proxy settings become build args in the query, as the CLI sends them; a password
        # in a proxy URL would travel (and be logged by httpx at INFO) like any build arg.
        "proxies": {"default": {"httpProxy": "http://proxy.example:3128"}},
    }
    return DockerConfig(data, env={}, path=tmp_path / "config.json", detect_default_store=False)


_SECRET_FORMS = [
    PASSWORD,
    TOKEN,
    base64.b64encode(f"alice:{PASSWORD}".encode()).decode(),
    base64.urlsafe_b64encode(PASSWORD.encode()).decode().rstrip("="),
]


def _assert_clean(text: str, where: str) -> None:
    for secret in _SECRET_FORMS:
        assert secret not in text, f"a credential appears in {where}: {text[:300]!r}"


def _error_texts(exc: BaseException) -> list[str]:
    texts = []
    current: BaseException | None = exc
    while current is not None:
        texts += [str(current), repr(current), repr(current.args)]
        if isinstance(current, BuildError):
            texts += [current.log, repr(current.events)]
        current = current.__cause__ or current.__context__
    return texts


def _faults() -> list[tuple[str, object]]:
    def reject(exchange: Exchange) -> None:
        exchange.respond_error(400, "invalid reference format")
        exchange.read_body()

    def cut(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(200)
        exchange.send_chunk(b'{"stream":"Step 1/1\\n"}\r\n{"str')
        exchange.reset()

    def failing(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(200)
        exchange.send_chunk(
            b'{"errorDetail":{"message":"pull access denied"},"error":"pull access denied"}\r\n'
        )
        exchange.end_chunks()

    def garbage(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.respond(200, b"<html>proxy login</html>\n")

    return [("400", reject), ("cut", cut), ("build error", failing), ("garbage", garbage)]


def test_credentials_never_in_errors_reprs_logs_or_urls(
    fault_engine: FaultEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    config = _config_with_secrets(tmp_path)
    credentials = {
        "registry.example:5000": RegistryAuth(username="alice", password=SecretStr(PASSWORD)),
        "other.example": RegistryAuth(identity_token=SecretStr(TOKEN)),
    }
    caplog.set_level(logging.DEBUG)
    texts: list[tuple[str, str]] = []
    for transport in ("unix", "tcp"):
        with Client(
            fault_engine.host(transport), env={}, config=config, credentials=credentials
        ) as client:
            texts.append(("client repr", repr(client)))
            texts.append(("config repr", repr(config)))
            texts += [("credentials repr", repr(c)) for c in credentials.values()]
            for name, handler in _faults():
                fault_engine.handler = handler  # type: ignore[assignment]
                options = BuildOptions(path=str(tmp_path), tag=["app:1"])
                build = client.build(options)
                texts.append((f"{name}: build repr", repr(build)))
                with pytest.raises(BuildSDKError) as info:
                    build.result()
                texts += [(f"{name}: error", t) for t in _error_texts(info.value)]
            # And for BuildKit, where the client warns that credentials are not sent.
            fault_engine.handler = _faults()[0][1]  # type: ignore[assignment]
            with pytest.raises(BuildSDKError) as info:
                client.build(BuildOptions(path=str(tmp_path), version="2")).result()
            texts += [("buildkit: error", t) for t in _error_texts(info.value)]
    texts += [("log", record.getMessage()) for record in caplog.records]
    texts += [("log", repr(record.args)) for record in caplog.records]
    for request in fault_engine.requests:
        texts.append(("URL", request.target))
        # X-Registry-Config is where the classic builder takes credentials; every other
        # header must be clean.
        texts += [
            (f"header {k}", v) for k, v in request.headers.items() if k != "x-registry-config"
        ]
    # Four classic builds per transport; the BuildKit build opens its session first.
    assert len(fault_engine.builds()) == 8
    sessions = [r for r in fault_engine.requests if r.path.endswith("/session")]
    assert len(sessions) == 2
    for where, text in texts:
        _assert_clean(text, where)
    # The classic builder does get them (that is its protocol)...
    for request in fault_engine.builds():
        header = request.headers["x-registry-config"]
        assert PASSWORD in base64.urlsafe_b64decode(header + "==").decode()
    # ...the BuildKit session does not.
    for request in sessions:
        _assert_clean(repr(request.headers), "BuildKit session headers")


def test_host_with_userinfo_is_not_echoed(fault_engine: FaultEngine, tmp_path: Path) -> None:
    """A password pasted into DOCKER_HOST must not come back in an error message."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    fault_engine.refuse()
    host = f"tcp://bob:{PASSWORD}@127.0.0.1:{fault_engine.port}"
    with Client(host, env={}, config=clean_config()) as client:
        assert str(client.endpoint) == f"tcp://127.0.0.1:{fault_engine.port}"
        with pytest.raises(EngineUnreachable) as info:
            client.build(BuildOptions(path=str(tmp_path))).result()
    for text in [*_error_texts(info.value), repr(client), repr(client.endpoint)]:
        _assert_clean(text, "error for a host with userinfo")


# -- TLS ----------------------------------------------------------------------------------------


def _tls_engine(engines: Engines) -> tuple[str, TLSFiles]:
    # dockerd_tls_http has checked that the TLS engine is configured and answers.
    assert engines.dockerd_tls_host is not None
    assert engines.dockerd_tls is not None
    return engines.dockerd_tls_host, engines.dockerd_tls


def _wrong_ca(directory: Path) -> Path:
    key, ca = directory / "wrong-ca-key.pem", directory / "wrong-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=not the engine's CA", "-keyout", str(key), "-out", str(ca)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return ca


@pytest.mark.dockerd_tls
def test_tls_right_ca_works(engines: Engines, dockerd_tls_http: httpx.Client) -> None:
    host, files = _tls_engine(engines)
    tls = TLSConfig(ca_cert=files.ca, client_cert=files.cert, client_key=files.key)
    with Client(host, tls=tls, env={}, config=clean_config()) as client:
        assert client.ping().api_version


@pytest.mark.dockerd_tls
def test_tls_verifies_by_default(
    engines: Engines, dockerd_tls_http: httpx.Client, measure: Measure
) -> None:
    """A client certificate alone, no CA: the system CAs do not know the engine -> refused."""
    host, files = _tls_engine(engines)
    tls = TLSConfig(client_cert=files.cert, client_key=files.key)
    assert tls.verify is True
    with Client(host, tls=tls, env={}, config=clean_config()) as client:
        error, elapsed = expect_error(EngineUnreachable, client.ping)
    assert "CERTIFICATE_VERIFY_FAILED" in error.reason
    assert error.hint == (
        "the engine's certificate is not trusted: check DOCKER_CERT_PATH or the TLS CA"
    )
    measure.error("TLS engine, system CAs only", error, elapsed)


@pytest.mark.dockerd_tls
def test_tls_wrong_ca_is_a_clear_error(
    engines: Engines, dockerd_tls_http: httpx.Client, short_tmp: Path, measure: Measure
) -> None:
    host, files = _tls_engine(engines)
    tls = TLSConfig(ca_cert=_wrong_ca(short_tmp), client_cert=files.cert, client_key=files.key)
    with Client(host, tls=tls, env={}, config=clean_config()) as client:
        error, elapsed = expect_error(EngineUnreachable, client.ping)
    assert error.address == host
    assert "certificate verify failed" in error.reason
    assert "not trusted" in str(error)
    measure.error("TLS engine, wrong CA", error, elapsed)


@pytest.mark.dockerd_tls
def test_tls_env_verify_and_explicit_off(
    engines: Engines, dockerd_tls_http: httpx.Client, short_tmp: Path
) -> None:
    """DOCKER_TLS_VERIFY=1 verifies with DOCKER_CERT_PATH; only verify=False turns it off."""
    host, files = _tls_engine(engines)
    cert_dir = files.ca.parent
    env = {
        "DOCKER_HOST": host,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(cert_dir),
    }
    with Client(env=env, config=clean_config()) as client:
        assert client.ping().api_version
    off = TLSConfig(ca_cert=_wrong_ca(short_tmp), client_cert=files.cert, client_key=files.key,
                    verify=False)  # fmt: skip
    with Client(host, tls=off, env={}, config=clean_config()) as client:
        assert client.ping().api_version


def test_tls_verification_defaults(tmp_path: Path) -> None:
    """Every way to turn TLS on verifies, except the CLI's own opt-out, DOCKER_TLS alone."""
    host = "tcp://127.0.0.1:2376"
    assert TLSConfig().verify is True
    on = resolve_endpoint(host, tls=True, env={})
    assert on.tls is not None
    assert on.tls.verify is True
    # DOCKER_TLS_VERIFY without the files is an error, never a silent unverified connection.
    with pytest.raises(ConfigError) as info:
        resolve_endpoint(
            env={"DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "1", "HOME": "/nonexistent"}
        )
    assert "DOCKER_CERT_PATH" in str(info.value)
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("")
    cli_verify = resolve_endpoint(
        env={"DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}
    )
    assert cli_verify.tls is not None
    assert cli_verify.tls.verify is True
    assert cli_verify.tls.ca_cert == tmp_path / "ca.pem"
    # `docker --tls` without --tlsverify encrypts without verifying; DOCKER_TLS=1 is that.
    cli_tls_only = resolve_endpoint(env={"DOCKER_HOST": host, "DOCKER_TLS": "1"})
    assert cli_tls_only.tls is not None
    assert cli_tls_only.tls.verify is False
    assert resolve_endpoint(env={"DOCKER_HOST": host}).tls is None


def test_plain_http_to_tls_port_is_a_clear_error(fault_engine: FaultEngine, tmp_path: Path) -> None:
    """TLS spoken to a plain-HTTP engine fails fast with a hint about DOCKER_TLS_VERIFY."""
    tls = TLSConfig(verify=True)
    with Client(fault_engine.tcp_host, tls=tls, env={}, config=clean_config()) as client:
        error, _ = expect_error(BuildSDKError, client.ping)
    assert isinstance(error, EngineUnreachable | StreamError)
    assert "TLS" in str(error)
