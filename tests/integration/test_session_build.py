"""BuildKit sessions against the real dockerd: secrets, ssh-agent forwarding, registry
logins, incremental context transfer, concurrency and cancellation.

Every scenario runs through `Client` and `AsyncClient` (the async one on a fresh event
loop per test). What is checked is what a user sees: the build log, the build's error,
the bytes the session had to send, and that no session thread or socket is left behind.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from buildsdk.aio import AsyncClient
from buildsdk.auth import DockerConfig
from buildsdk.build import BuildOptions
from buildsdk.client import Client
from buildsdk.errors import (
    BuildError,
    SecretUnavailable,
    SSHAgentUnavailable,
    SSHKeyError,
)
from buildsdk.results import BuildResult
from buildsdk.session import SSHForward, filesync
from tests.integration.conftest import DockerEngine, Engines, build_result, client_settings

pytestmark = [pytest.mark.engine, pytest.mark.dockerd]

FLAVORS = ("sync", "async")


def _session_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("buildsdk-session")]


def _write(directory: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return directory


@pytest.fixture
def dockerd(engines: Engines, docker_engine: DockerEngine) -> dict[str, Any]:
    """Client settings for the matrix dockerd, with an empty Docker configuration."""
    return client_settings(engines, "dockerd", docker_engine)


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_secrets_from_file_env_and_code_reach_run_steps(
    flavor: str, dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    values = {name: f"{name}-{secrets.token_hex(8)}" for name in ("file", "env", "code")}
    context = _write(
        tmp_path / "ctx",
        {
            "Dockerfile": f"FROM {engines.base_image}\n"
            "RUN --mount=type=secret,id=from_file cat /run/secrets/from_file\n"
            "RUN --mount=type=secret,id=from_env cat /run/secrets/from_env\n"
            "RUN --mount=type=secret,id=in_code,target=/tmp/c cat /tmp/c\n"
        },
    )
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(values["file"])
    settings = {**dockerd, "env": {"BUILDSDK_TEST_SECRET": values["env"]}}
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        secrets=[
            f"id=from_file,src={secret_file}",
            "id=from_env,env=BUILDSDK_TEST_SECRET",
            {"id": "in_code", "data": values["code"].encode()},
        ],
    )
    result = build_result(flavor, settings, options)
    for value in values.values():
        assert value in result.log
    assert not _session_threads()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_missing_required_secret_fails_with_the_engines_message(
    flavor: str,
    dockerd: dict[str, Any],
    docker_engine: DockerEngine,
    engines: Engines,
    tmp_path: Path,
) -> None:
    context = _write(
        tmp_path,
        {
            "Dockerfile": f"FROM {engines.base_image}\n"
            "RUN --mount=type=secret,id=optional cat /run/secrets/optional || echo skipped-ok\n"
            "RUN --mount=type=secret,id=absent,required=true cat /run/secrets/absent\n"
        },
    )
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        secrets=[{"id": "given", "data": b"x"}],
    )
    with pytest.raises(BuildError) as caught:
        build_result(flavor, dockerd, options)
    # BuildKit 0.13 (Docker 26.1) puts a colon after the id; 0.8 (Docker 20.10) does not.
    words = "secret absent not found" if docker_engine.is_20 else "secret absent: not found"
    assert words in str(caught.value)
    # The optional mount was skipped, not failed: NotFound means "not provided".
    assert "skipped-ok" in caught.value.log


@pytest.mark.parametrize("engine", ["dockerd_tls", "ssh"])
def test_secrets_over_tls_and_ssh_transports(engine: str, engines: Engines, tmp_path: Path) -> None:
    value = secrets.token_hex(12)
    context = _write(
        tmp_path,
        {
            "Dockerfile": f"FROM {engines.base_image}\n"
            "RUN --mount=type=secret,id=s cat /run/secrets/s\n"
        },
    )
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        secrets=[{"id": "s", "data": value}],
    )
    settings = client_settings(engines, engine)
    for flavor in FLAVORS:
        assert value in build_result(flavor, settings, options).log
    assert not _session_threads()


# -- ssh --------------------------------------------------------------------------------------


@pytest.fixture
def ssh_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A fresh ssh-agent holding one generated ed25519 key; yields (socket, key comment)."""
    for program in ("ssh-agent", "ssh-add", "ssh-keygen"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} (Debian's openssh-client) is needed for this test")
    directory = tmp_path_factory.mktemp("agent")
    comment = f"buildsdk-{secrets.token_hex(4)}"
    key = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
        check=True,
    )
    sock = directory / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline:
                pytest.fail("ssh-agent did not create its socket")
            time.sleep(0.05)
        subprocess.run(
            ["ssh-add", "-q", str(key)],
            check=True,
            env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
        )
        yield sock, comment
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)


def _ssh_add_context(directory: Path, base_image: str) -> Path:
    """A context whose RUN step lists the agent's keys with the host's own ssh-add.

    busybox has no ssh client and its nc cannot dial unix sockets, so the host's ssh-add
    travels with the context together with the libraries and loader it links to.
    """
    tools = directory / "tools"
    tools.mkdir(parents=True)
    ssh_add = shutil.which("ssh-add")
    assert ssh_add is not None
    shutil.copy(ssh_add, tools / "ssh-add")
    libraries = subprocess.run(["ldd", ssh_add], capture_output=True, text=True, check=True)
    for line in libraries.stdout.splitlines():
        for word in line.split():
            if word.startswith("/"):
                shutil.copy(os.path.realpath(word), tools / os.path.basename(word))
    loader = next(p.name for p in tools.iterdir() if p.name.startswith("ld-linux"))
    (directory / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY tools /tools\n"
        f"RUN --mount=type=ssh /tools/{loader} --library-path /tools /tools/ssh-add -l\n"
    )
    return directory


@pytest.mark.parametrize("flavor", FLAVORS)
def test_ssh_agent_is_reachable_from_run_mount(
    flavor: str,
    dockerd: dict[str, Any],
    engines: Engines,
    ssh_agent: tuple[Path, str],
    tmp_path: Path,
) -> None:
    sock, comment = ssh_agent
    context = _ssh_add_context(tmp_path / "ctx", engines.base_image)
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        ssh=[f"default={sock}"],
    )
    result = build_result(flavor, dockerd, options)
    assert comment in result.log
    assert "ED25519" in result.log


def test_ssh_default_uses_ssh_auth_sock(
    dockerd: dict[str, Any], engines: Engines, ssh_agent: tuple[Path, str], tmp_path: Path
) -> None:
    sock, comment = ssh_agent
    context = _ssh_add_context(tmp_path / "ctx", engines.base_image)
    settings = {**dockerd, "env": {"SSH_AUTH_SOCK": str(sock)}}
    options = BuildOptions(
        path=context, version="2", nocache=True, network_mode=engines.dockerd_network, ssh="default"
    )
    assert comment in build_result("sync", settings, options).log


# -- registry auth ----------------------------------------------------------------------------


def _registry_config(engines: Engines, directory: Path) -> DockerConfig:
    if not (engines.registry and engines.registry_user and engines.registry_password):
        pytest.fail("the registry was not started (no BUILDSDK_REGISTRY*)")
    login = f"{engines.registry_user}:{engines.registry_password}".encode()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(
        json.dumps({"auths": {engines.registry: {"auth": base64.b64encode(login).decode()}}})
    )
    return DockerConfig.load({"DOCKER_CONFIG": str(directory)})


@pytest.mark.registry
@pytest.mark.parametrize("flavor", FLAVORS)
def test_private_base_image_pulls_with_config_json_credentials(
    flavor: str, dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    config = _registry_config(engines, tmp_path / "docker")
    marker = secrets.token_hex(6)
    context = _write(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM {engines.registry_image}\nRUN echo pulled-{marker}\n"},
    )
    options = BuildOptions(
        path=context, version="2", pull=True, nocache=True, network_mode=engines.dockerd_network
    )
    result = build_result(flavor, {**dockerd, "config": config}, options)
    assert f"pulled-{marker}" in result.log


@pytest.mark.registry
def test_private_base_image_fails_without_credentials(
    dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    context = _write(tmp_path, {"Dockerfile": f"FROM {engines.registry_image}\nRUN true\n"})
    base = BuildOptions(
        path=context, version="2", pull=True, nocache=True, network_mode=engines.dockerd_network
    )
    # With a session (opened here for a secret) the engine asks for credentials, gets
    # none, and reports the registry's refusal.
    with_session = base.model_copy(
        update={
            "secrets": BuildOptions(
                path=context, version="2", secrets=[{"id": "unused", "data": b"x"}]
            ).secrets
        }
    )
    with pytest.raises(BuildError) as caught:
        build_result("sync", dockerd, with_session)
    assert "401 Unauthorized" in str(caught.value)
    # Without credentials anywhere no session is opened: the pull fails too.
    with pytest.raises(BuildError):
        build_result("sync", dockerd, base)


@pytest.mark.registry
def test_credentials_given_in_code_win(
    dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    from buildsdk.auth import RegistryAuth

    if not (engines.registry and engines.registry_user and engines.registry_password):
        pytest.fail("the registry was not started (no BUILDSDK_REGISTRY*)")
    context = _write(tmp_path, {"Dockerfile": f"FROM {engines.registry_image}\nRUN true\n"})
    options = BuildOptions(
        path=context, version="2", pull=True, nocache=True, network_mode=engines.dockerd_network
    )
    credentials = {
        engines.registry: RegistryAuth(
            username=engines.registry_user, password=SecretStr(engines.registry_password)
        )
    }
    assert build_result("async", {**dockerd, "credentials": credentials}, options).image_id


# -- incremental context ----------------------------------------------------------------------


@pytest.fixture
def transfers(monkeypatch: pytest.MonkeyPatch) -> list[filesync.FileSyncService]:
    """Every FileSyncService a build creates, to read what it sent."""
    made: list[filesync.FileSyncService] = []
    original = filesync.FileSyncService.for_build.__func__  # type: ignore[attr-defined]

    def for_build(
        cls: type[filesync.FileSyncService], /, context: str, dockerfile: str | None, **kwargs: Any
    ) -> filesync.FileSyncService:
        service: filesync.FileSyncService = original(cls, context, dockerfile, **kwargs)
        made.append(service)
        return service

    monkeypatch.setattr(filesync.FileSyncService, "for_build", classmethod(for_build))
    return made


@pytest.mark.slow
@pytest.mark.parametrize("flavor", FLAVORS)
def test_rebuild_transfers_only_the_changed_file(
    flavor: str,
    dockerd: dict[str, Any],
    docker_engine: DockerEngine,
    engines: Engines,
    tmp_path: Path,
    transfers: list[filesync.FileSyncService],
) -> None:
    context = tmp_path / "ctx"
    files: dict[str, str | bytes] = {
        f"blobs/{i:02d}.bin": os.urandom(1024 * 1024) for i in range(48)
    }
    files.update(
        {f"src/pkg{i}/mod{j}.py": f"# {i} {j}\n" * 40 for i in range(20) for j in range(25)}
    )
    files["src/changing.txt"] = "before\n"
    files["ignored/huge.bin"] = os.urandom(4 * 1024 * 1024)
    files[".dockerignore"] = "ignored\n"
    files["Dockerfile"] = (
        f"FROM {engines.base_image}\nCOPY . /app\n"
        "RUN cat /app/src/changing.txt && du -sk /app/blobs && test ! -e /app/ignored\n"
    )
    _write(context, files)
    options = BuildOptions(
        path=context, version="2", network_mode=engines.dockerd_network, context_transfer="session"
    )

    first = build_result(flavor, dockerd, options)
    assert "before" in first.log
    sent_first = sum(t.data_bytes for t in transfers[-1].transfers)
    assert sent_first > 48 * 1024 * 1024
    assert not any(p.startswith("ignored") for t in transfers[-1].transfers for p in t.paths)

    (context / "src/changing.txt").write_text("after, and longer\n")
    second = build_result(flavor, dockerd, options)
    assert "after, and longer" in second.log
    report = transfers[-1].transfers
    # BuildKit 0.13's Dockerfile frontend (Docker 26.1) fetches the Dockerfile and the
    # .dockerignore afresh for every build; docker buildx 0.13.1 re-sends them the same way.
    # The context itself is synced incrementally on every engine.
    resent = [] if docker_engine.is_20 else ["Dockerfile", ".dockerignore"]
    assert sorted(p for t in report for p in t.paths) == sorted([*resent, "src/changing.txt"])
    again = sum(len(files[name]) for name in resent)
    assert sum(t.data_bytes for t in report) == again + len("after, and longer\n")
    # Every entry was still listed: the engine decides what changed from the STATs.
    assert max(t.entries for t in report) >= len(files) - 1
    assert not _session_threads()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_session_context_follows_dockerfile_specific_ignore_and_exceptions(
    flavor: str, dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    context = _write(
        tmp_path,
        {
            "build/app.Dockerfile": f"FROM {engines.base_image}\nCOPY . /c\n"
            "RUN cd /c && find . | sort | sed 's/^/entry: /'\n",
            # BuildKit prefers <Dockerfile>.dockerignore next to the Dockerfile.
            "build/app.Dockerfile.dockerignore": "*\n!**/*.py\n",
            ".dockerignore": "nothing-from-here\n",
            "top.txt": "t",
            "deep/er/x.py": "x",
            "deep/er/y.txt": "y",
        },
    )
    options = BuildOptions(
        path=context,
        dockerfile="build/app.Dockerfile",
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        context_transfer="session",
    )
    log = build_result(flavor, dockerd, options).log
    entries = sorted(re.findall(r"^#\d+ [\d.]+ entry: (.*)$", log, flags=re.MULTILINE))
    # The wildcard exception re-includes a file two excluded directories deep, and the
    # directories are sent for it.
    assert entries == [".", "./deep", "./deep/er", "./deep/er/x.py"]


# -- concurrency and cancellation -------------------------------------------------------------


def test_eight_concurrent_session_builds_from_one_async_client(
    dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    context = _write(
        tmp_path,
        {
            "Dockerfile": f"FROM {engines.base_image}\nARG N\n"
            "RUN --mount=type=secret,id=s echo build $N && cat /run/secrets/s\n"
        },
    )
    values = [f"build-{i}-{secrets.token_hex(6)}" for i in range(8)]

    async def main() -> list[BuildResult]:
        async with AsyncClient(**dockerd) as client:
            builds = [
                client.build(
                    BuildOptions(
                        path=context,
                        version="2",
                        nocache=True,
                        network_mode=engines.dockerd_network,
                        secrets=[{"id": "s", "data": value}],
                        # BuildKit merges identical steps of concurrent builds (secrets
                        # are not part of the cache key): a build arg keeps them apart.
                        buildargs={"N": str(index)},
                    )
                ).result()
                for index, value in enumerate(values)
            ]
            return await asyncio.gather(*builds)

    results = asyncio.run(main())
    for value, result in zip(values, results, strict=True):
        assert value in result.log
        assert all(other not in result.log for other in values if other != value)


def test_closing_a_sync_session_build_ends_its_session_promptly(
    dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    context = _write(
        tmp_path,
        {
            "Dockerfile": f"FROM {engines.base_image}\n"
            "RUN --mount=type=secret,id=s echo started && sleep 60\n"
        },
    )
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        secrets=[{"id": "s", "data": b"x"}],
        # POST /build's session thread is the subject; a Control API build's thread is
        # checked in test_control_build.py.
        build_endpoint="build",
    )
    with Client(**dockerd) as client:
        build = client.build(options)
        with build:
            assert _session_threads()
            for event in build:
                if "started" in str(event):
                    break
        started = time.monotonic()
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while _session_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _session_threads()


def test_cancelling_an_async_session_build_ends_both_connections(
    dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    context = _write(
        tmp_path,
        {"Dockerfile": f"FROM {engines.base_image}\nRUN --mount=type=secret,id=s sleep 60\n"},
    )
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        secrets=[{"id": "s", "data": b"x"}],
    )

    async def main() -> float:
        async with AsyncClient(**dockerd) as client:
            task = asyncio.ensure_future(client.build(options).result())
            await asyncio.sleep(3)
            before = len(asyncio.all_tasks())
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            elapsed = time.monotonic() - started
            # The session's server task is gone with the build.
            await asyncio.sleep(0.2)
            assert len(asyncio.all_tasks()) < before
            return elapsed

    assert asyncio.run(main()) < 10


@pytest.mark.podman
@pytest.mark.parametrize("flavor", FLAVORS)
def test_engine_without_sessions_is_a_clear_error(
    flavor: str, engines: Engines, tmp_path: Path
) -> None:
    from buildsdk.errors import NotFound

    context = _write(tmp_path, {"Dockerfile": f"FROM {engines.base_image}\n"})
    options = BuildOptions(path=context, version="2", secrets=[{"id": "s", "data": b"x"}])
    with pytest.raises(NotFound, match="does not support BuildKit sessions"):
        build_result(flavor, client_settings(engines, "podman"), options)
    assert not _session_threads()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_session_context_with_a_dockerfile_from_memory(
    flavor: str, dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    import io

    marker = secrets.token_hex(6)
    context = _write(tmp_path, {"data.txt": marker, "Dockerfile": "FROM scratch\n"})
    dockerfile = f"FROM {engines.base_image}\nCOPY data.txt /\nRUN cat /data.txt\n"
    options = BuildOptions(
        path=context,
        fileobj=io.BytesIO(dockerfile.encode()),
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        context_transfer="session",
    )
    assert marker in build_result(flavor, dockerd, options).log


@pytest.mark.parametrize("engine", ["dockerd_tls", "ssh"])
def test_session_context_over_tls_and_ssh_transports(
    engine: str, engines: Engines, tmp_path: Path
) -> None:
    import hashlib

    blob = os.urandom(6 * 1024 * 1024)
    context = _write(
        tmp_path,
        {
            "blob.bin": blob,
            "Dockerfile": f"FROM {engines.base_image}\nCOPY blob.bin /\nRUN sha256sum /blob.bin\n",
        },
    )
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        context_transfer="session",
    )
    settings = client_settings(engines, engine)
    for flavor in FLAVORS:
        assert hashlib.sha256(blob).hexdigest() in build_result(flavor, settings, options).log
    assert not _session_threads()


def test_a_session_that_dies_is_reported(
    dockerd: dict[str, Any],
    engines: Engines,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import socket

    from buildsdk.session import _server

    servers: list[_server.SessionServer] = []
    original_init = _server.SessionServer.__init__

    def capture(self: _server.SessionServer, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        servers.append(self)

    monkeypatch.setattr(_server.SessionServer, "__init__", capture)
    context = _write(
        tmp_path,
        {
            "Dockerfile": f"FROM {engines.base_image}\n"
            "RUN --mount=type=secret,id=s echo started && sleep 5\n"
        },
    )
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        secrets=[{"id": "s", "data": b"x"}],
    )
    with Client(**dockerd) as client, client.build(options) as build:
        for event in build:
            if "started" in str(event):
                sock = servers[0]._stream_socket()
                assert sock is not None
                sock.shutdown(socket.SHUT_RDWR)
                break
        deadline = time.monotonic() + 10
        while not any("ended before its build" in r.message for r in caplog.records):
            assert time.monotonic() < deadline, "no warning about the dead session"
            time.sleep(0.05)
    assert not _session_threads()


@pytest.mark.podman
@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_login_only_session_is_skipped_on_engines_without_sessions(
    flavor: str, engines: Engines, tmp_path: Path
) -> None:
    from buildsdk.auth import RegistryAuth

    context = _write(tmp_path, {"Dockerfile": f"FROM {engines.base_image}\nLABEL x=y\n"})
    options = BuildOptions(path=context, version="2", network_mode=engines.podman_network)
    settings = client_settings(engines, "podman")
    # Credentials make buildsdk offer a session for BuildKit's registry logins; Podman has
    # no /session endpoint, and the build goes on without one.
    settings["credentials"] = {"registry.example": RegistryAuth(username="u")}
    assert build_result(flavor, settings, options).image_id
    assert not _session_threads()


# -- ssh key files (buildsdk's own agent) -------------------------------------------------------

_KEY_PASSPHRASE = "k3y-file-pass"


def _make_key(directory: Path, name: str, *flags: str, passphrase: str = "") -> tuple[Path, str]:
    """A key made by ssh-keygen; returns its path and SHA256 fingerprint."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", *flags, "-N", passphrase, "-C", "unused", "-f", str(key)],
        check=True,
    )
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True, check=True
    )
    return key, listed.stdout.split()[1]


def _sign_check_context(directory: Path, base_image: str, key: Path) -> Path:
    """A context whose RUN step lists the forwarded keys, then has the agent sign for the
    given key's public half and verifies the signature (`ssh-add -T`)."""
    _ssh_add_context(directory, base_image)
    shutil.copy(f"{key}.pub", directory / "pubkey")
    loader = next(p.name for p in (directory / "tools").iterdir() if p.name.startswith("ld-"))
    ssh_add = f"/tools/{loader} --library-path /tools /tools/ssh-add"
    (directory / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY tools /tools\nCOPY pubkey /pubkey\n"
        f"RUN --mount=type=ssh {ssh_add} -l && {ssh_add} -T /pubkey && echo signature-verified\n"
    )
    return directory


@pytest.mark.parametrize("flavor", FLAVORS)
def test_ssh_key_file_signs_inside_the_build(
    flavor: str, dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    key, fingerprint = _make_key(tmp_path / "keys", "id_ed25519", "-t", "ed25519")
    context = _sign_check_context(tmp_path / "ctx", engines.base_image, key)
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        ssh=[f"default={key}"],
    )
    log = build_result(flavor, dockerd, options).log
    # ssh-add -l: "256 SHA256:... <path as given> (ED25519)"
    assert f"{fingerprint} {key} (ED25519)" in log
    assert "signature-verified" in log
    assert _session_threads() == []


@pytest.mark.parametrize("flavor", FLAVORS)
def test_ssh_encrypted_keys_with_the_passphrase_in_code(
    flavor: str, dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    rsa, rsa_print = _make_key(keys, "id_rsa", "-t", "rsa", "-b", "2048", "-m", "PEM")
    ecdsa, ecdsa_print = _make_key(
        keys, "id_ecdsa", "-t", "ecdsa", "-b", "384", passphrase=_KEY_PASSPHRASE
    )
    context = _sign_check_context(tmp_path / "ctx", engines.base_image, ecdsa)
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        ssh=[SSHForward(id="default", keys=[rsa, ecdsa], passphrase=_KEY_PASSPHRASE)],
    )
    log = build_result(flavor, dockerd, options).log
    assert f"{rsa_print} {rsa} (RSA)" in log
    assert f"{ecdsa_print} {ecdsa} (ECDSA)" in log
    assert "signature-verified" in log
    assert _KEY_PASSPHRASE not in log


@pytest.mark.parametrize("flavor", FLAVORS)
def test_ssh_wrong_passphrase_fails_before_the_build_starts(
    flavor: str, dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    key, _ = _make_key(tmp_path / "keys", "id_ed25519", "-t", "ed25519", passphrase="right-one")
    context = _write(tmp_path / "ctx", {"Dockerfile": f"FROM {engines.base_image}\n"})
    options = BuildOptions(
        path=context,
        version="2",
        ssh=[SSHForward(keys=[key], passphrase="wrong-one")],
    )
    with pytest.raises(SSHKeyError) as caught:
        build_result(flavor, dockerd, options)
    assert str(caught.value) == f"ssh 'default': wrong passphrase for ssh key '{key}'"
    assert _session_threads() == []


@pytest.mark.parametrize("flavor", FLAVORS)
def test_what_the_session_cannot_serve_has_a_named_error(
    flavor: str, dockerd: dict[str, Any], engines: Engines, tmp_path: Path
) -> None:
    context = _write(tmp_path / "ctx", {"Dockerfile": f"FROM {engines.base_image}\n"})
    settings = {**dockerd, "env": {}}  # no secret variable, no SSH_AUTH_SOCK

    def build(**session: Any) -> None:
        build_result(flavor, settings, BuildOptions(path=context, version="2", **session))

    with pytest.raises(SecretUnavailable) as secret:
        build(secrets=["id=tok,env=BUILDSDK_TEST_UNSET_VARIABLE"])
    assert secret.value.secret_id == "tok"
    assert "BUILDSDK_TEST_UNSET_VARIABLE is not set" in str(secret.value)
    with pytest.raises(SSHAgentUnavailable, match="SSH_AUTH_SOCK is not set"):
        build(ssh="default")
    missing = tmp_path / "keys" / "id_missing"
    with pytest.raises(SSHKeyError, match=f"cannot read ssh key '{missing}'"):
        build(ssh=[SSHForward(keys=[missing])])
    assert _session_threads() == []


# -- the default transfer ---------------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_buildkit_builds_of_a_directory_use_a_session_by_default(
    flavor: str,
    dockerd: dict[str, Any],
    docker_engine: DockerEngine,
    engines: Engines,
    tmp_path: Path,
    transfers: list[filesync.FileSyncService],
) -> None:
    payload = os.urandom(64 * 1024)
    context = _write(
        tmp_path,
        {
            "Dockerfile": f"FROM {engines.base_image}\nCOPY . /c\n"
            "RUN cd /c && find . -type f | sort | sed 's/^/file: /'\n",
            ".dockerignore": "*.log\n",
            "payload.bin": payload,
            "debug.log": "left out",
        },
    )
    options = BuildOptions(path=context, version="2", nocache=True, network_mode="none")
    assert options.context_transfer == "auto"
    log = build_result(flavor, dockerd, options).log
    files = sorted(re.findall(r"^#\d+ [\d.]+ file: (.*)$", log, flags=re.MULTILINE))
    assert files == ["./.dockerignore", "./Dockerfile", "./payload.bin"]
    # The engine pulled the files through the session (the payload among them).
    assert len(transfers) == 1
    pulled = [path for t in transfers[0].transfers for path in t.paths]
    assert "payload.bin" in pulled
    assert "debug.log" not in pulled
    assert sum(t.data_bytes for t in transfers[0].transfers) >= len(payload)

    # Asked for a tar, the same build uploads it and no session serves the context.
    as_tar = options.model_copy(update={"context_transfer": "tar"})
    if docker_engine.containerd_store:
        # moby/moby#47717: with the containerd image store, BuildKit cannot read a context
        # uploaded as a tar without a session (Docker 26.1 still fails so): the default
        # session is what makes BuildKit builds work there.
        with pytest.raises(BuildError) as caught:
            build_result(flavor, dockerd, as_tar)
        assert "failed to read downloaded context" in caught.value.message
        assert not _session_threads()
        return
    log = build_result(flavor, dockerd, as_tar).log
    assert sorted(re.findall(r"^#\d+ [\d.]+ file: (.*)$", log, flags=re.MULTILINE)) == files
    assert len(transfers) == 1
    assert not _session_threads()


@pytest.mark.podman
@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_default_uploads_a_tar_to_engines_without_sessions(
    flavor: str, engines: Engines, tmp_path: Path, transfers: list[filesync.FileSyncService]
) -> None:
    import io

    marker = secrets.token_hex(6)
    context = _write(tmp_path, {"data.txt": marker, "Dockerfile": "FROM scratch\n"})
    # A Dockerfile from memory is read for the session plan, and still sent in the tar.
    dockerfile = f"FROM {engines.base_image}\nCOPY data.txt /\nRUN cat /data.txt\n"
    options = BuildOptions(
        path=context,
        fileobj=io.BytesIO(dockerfile.encode()),
        version="2",
        nocache=True,
        network_mode=engines.podman_network,
    )
    result = build_result(flavor, client_settings(engines, "podman"), options)
    assert marker in result.log
    assert result.image_id
    # A session was planned, refused by Podman, and never served a file.
    assert len(transfers) == 1
    assert transfers[0].transfers == []
    assert not _session_threads()


# -- the context listed ahead -------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["build", "grpc"])
@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_context_listed_at_the_start_answers_the_engine_s_request(
    flavor: str,
    endpoint: Literal["build", "grpc"],
    dockerd: dict[str, Any],
    engines: Engines,
    tmp_path: Path,
    transfers: list[filesync.FileSyncService],
) -> None:
    context = _write(
        tmp_path / "ctx",
        {
            "Dockerfile": f"FROM {engines.base_image}\nCOPY . /app\n"
            "RUN cd /app && find . -type f | sort | sed 's/^/file: /'\n",
            ".dockerignore": "# not these\n*.log\nsub/skip\n",
            "keep.txt": "k",
            "x.log": "l",
            "sub/keep": "s",
            "sub/skip": "s",
        },
    )
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        context_transfer="session",
        build_endpoint=endpoint,
    )
    log = build_result(flavor, dockerd, options).log
    files = sorted(re.findall(r"^#\d+ [\d.]+ file: (.*)$", log, flags=re.MULTILINE))
    assert files == ["./.dockerignore", "./Dockerfile", "./keep.txt", "./sub/keep"]
    # The frontend asked for the whole context with the .dockerignore patterns: the listing
    # started with the build answered, and only that request.
    [whole] = [t for t in transfers[-1].transfers if t.entries > 2]
    assert whole.listed_ahead
    assert [t.listed_ahead for t in transfers[-1].transfers].count(True) == 1
    assert not [t for t in threading.enumerate() if t.name == "buildsdk-context-listing"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_listing_no_request_takes_ends_with_the_session(
    flavor: str,
    dockerd: dict[str, Any],
    engines: Engines,
    tmp_path: Path,
    transfers: list[filesync.FileSyncService],
) -> None:
    files: dict[str, str | bytes] = {f"many/{i:04d}": "x" for i in range(3000)}
    files["Dockerfile"] = f"FROM {engines.base_image}\nCOPY sub /sub\nRUN cat /sub/keep\n"
    files["sub/keep"] = "kept-by-copy"
    context = _write(tmp_path / "ctx", files)
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        network_mode=engines.dockerd_network,
        context_transfer="session",
    )
    assert "kept-by-copy" in build_result(flavor, dockerd, options).log
    # `COPY sub` makes the frontend ask for that path only: the listing made ahead answers
    # nothing, and the session's end stopped it.
    assert not any(t.listed_ahead for t in transfers[-1].transfers)
    assert transfers[-1]._listings == {}
    assert not [t for t in threading.enumerate() if t.name == "buildsdk-context-listing"]
