"""A real engine killed with SIGKILL mid-build and mid-upload, then restarted.

The shared engines of `scripts/engines` must not be disturbed, so each engine here is a
private one started by the test (own data root, exec root, pid file and socket under a
short temporary directory) and stopped at the end, with every process it left behind
(containerd, shims, the build's `sleep`) found by that directory or namespace in its
command line and killed by pid.

What is checked: the client reports `StreamError` within seconds of the kill (no hang);
after the engine is restarted on the same socket, the very same `Client` builds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from pydantic import SecretStr

from buildsdk import BuildSDKError, StreamError
from buildsdk.aio import AsyncClient
from buildsdk.auth import RegistryAuth
from buildsdk.build import BuildOptions
from buildsdk.client import Client
from buildsdk.events import LogEvent, VertexLogEvent
from buildsdk.results import BuildResult
from buildsdk.session._runtime import needs_session
from tests.integration.conftest import Engines
from tests.reliability.conftest import Measure, clean_config

pytestmark = pytest.mark.slow

BASE = "busybox:latest"
_START_TIMEOUT = 90.0


def _processes_mentioning(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry))
    return pids


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _unmount_under(directory: Path) -> None:
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for mount in sorted((m for m in mounts if m.startswith(str(directory))), reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)


class PrivateEngine:
    """A dockerd or Podman service of this test's own, on a socket in `directory`."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.directory = directory
        self.tag = f"bsr{uuid.uuid4().hex[:8]}"
        self.socket_path = str(directory / "engine.sock")
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def host(self) -> str:
        """The engine's `unix://` address."""
        return f"unix://{self.socket_path}"

    def _argv(self) -> tuple[list[str], dict[str, str]]:
        d = self.directory
        env = dict(os.environ)
        if self.kind == "dockerd":
            (d / "daemon.json").write_text("{}\n")
            return [
                "dockerd", "--config-file", str(d / "daemon.json"),
                "--storage-driver=vfs", "--iptables=false", "--ip-forward=false",
                "--ip-masq=false", "--bridge=none", "--userland-proxy=false",
                "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
                "--pidfile", str(d / "dockerd.pid"),
                "--containerd-namespace", self.tag,
                "--containerd-plugins-namespace", f"{self.tag}-plugins",
                "-H", self.host,
            ], env  # fmt: skip
        (d / "tmp").mkdir(exist_ok=True)
        (d / "containers.conf").write_text(
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{d}/events.log"\n'
            f'tmp_dir = "{d}/tmp"\n'
            f'volume_path = "{d}/volumes"\n'
            "[network]\n"
            f'network_config_dir = "{d}/networks"\n'
        )
        env["CONTAINERS_CONF"] = str(d / "containers.conf")
        return [
            "podman", "--root", str(d / "root"), "--runroot", str(d / "runroot"),
            "--storage-driver", "vfs", "system", "service", "--time=0", self.host,
        ], env  # fmt: skip

    def start(self) -> None:
        """Start the engine and wait until it answers /_ping."""
        argv, env = self._argv()
        if self._log is not None:
            self._log.close()
        self._log = open(self.directory / f"{self.kind}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.kind} exited at start: {self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.2)
        pytest.fail(f"{self.kind} did not answer in {_START_TIMEOUT}s: {self.log_tail()}")

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(2)
                probe.connect(self.socket_path)
                probe.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return b" 200 " in probe.recv(4096)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the engine process (only it: its children live on, as after a crash)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def _kill_leftovers(self) -> None:
        killed = []
        for marker in (str(self.directory), self.tag):
            for pid in _processes_mentioning(marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
        # SIGKILL is not instant: wait until each is dead (a zombie counts), so that the
        # next start does not find one of them still alive.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(map(_is_zombie_or_gone, killed)):
            time.sleep(0.05)

    def restart(self) -> None:
        """Start again after a kill, as a service manager would.

        The dead engine's children (its containerd, shims, the build's processes) are
        killed first, as systemd's default KillMode=control-group does when a unit dies:
        dockerd 20.10 finds its old containerd "still running" but cannot talk to it once
        the pipe it logged to has no reader.
        """
        self._kill_leftovers()
        time.sleep(0.5)
        # This machine's init does not reap orphans promptly: the killed containerd stays a
        # zombie, which dockerd takes for "still running" and then waits for in vain. A
        # pid file naming a zombie is stale, so it goes.
        pidfile = self.directory / "exec" / "containerd" / "containerd.pid"
        with contextlib.suppress(OSError, ValueError):
            if _is_zombie_or_gone(int(pidfile.read_text().strip())):
                pidfile.unlink()
        self.start()

    def log_tail(self) -> str:
        """The end of the engine's log, for failure messages."""
        with contextlib.suppress(OSError):
            return (self.directory / f"{self.kind}.log").read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        """Stop the engine and everything it left running; unmount what it mounted."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._kill_leftovers()
        time.sleep(0.5)
        _unmount_under(self.directory)
        if self._log is not None:
            self._log.close()


def _engine(kind: str, short_tmp: Path, engines: Engines) -> Iterator[PrivateEngine]:
    if engines.state_dir is None or not (engines.state_dir / "busybox.tar").is_file():
        pytest.fail("the engines state directory has no busybox.tar (run scripts/engines up)")
    engine = PrivateEngine(kind, short_tmp)
    try:
        engine.start()
        with (
            Client(engine.host, env={}, config=clean_config()) as client,
            open(engines.state_dir / "busybox.tar", "rb") as context,
        ):
            options = BuildOptions(fileobj=context, custom_context=True, tag=[BASE])
            client.build(options).result()
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def private_dockerd(short_tmp: Path, engines: Engines) -> Iterator[PrivateEngine]:
    """A dockerd of this test's own, with the busybox base image built in."""
    yield from _engine("dockerd", short_tmp, engines)


@pytest.fixture
def private_podman(short_tmp: Path, engines: Engines) -> Iterator[PrivateEngine]:
    """A Podman service of this test's own, with the busybox base image built in."""
    yield from _engine("podman", short_tmp, engines)


def _sleeper(root: Path, run_id: str) -> Path:
    path = root / f"sleeper-{run_id}"
    path.mkdir()
    (path / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo started-{run_id} && sleep 120\n")
    return path


def _quick(root: Path, run_id: str) -> Path:
    path = root / f"quick-{run_id}"
    path.mkdir()
    (path / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo again-{run_id}\n")
    return path


def _kill_mid_build(
    engine: PrivateEngine, tmp_path: Path, network: str, measure: Measure, label: str
) -> None:
    run_id = uuid.uuid4().hex[:8]
    with Client(engine.host, env={}, config=clean_config()) as client:
        options = BuildOptions(path=str(_sleeper(tmp_path, run_id)), network_mode=network)
        killed: list[float] = []

        def watch_and_kill() -> None:
            with client.build(options) as build:
                for event in build:
                    if isinstance(event, LogEvent) and f"started-{run_id}" in event.text:
                        engine.kill()
                        killed.append(time.monotonic())
                build.result()

        with pytest.raises(StreamError) as info:
            watch_and_kill()
        killed_at = killed[0] if killed else None
        assert killed_at is not None, "the build never printed its marker"
        elapsed = time.monotonic() - killed_at
        assert elapsed < 10, f"the error came {elapsed:.1f}s after the kill"
        assert engine.socket_path in str(info.value)
        measure.error(f"{label} SIGKILLed mid-build", info.value, elapsed)

        engine.restart()
        again = BuildOptions(path=str(_quick(tmp_path, run_id)), network_mode=network)
        result = client.build(again).result()
    assert f"again-{run_id}" in result.log
    assert result.image_id.startswith("sha256:")


def _kill_mid_build_async(
    engine: PrivateEngine, tmp_path: Path, network: str, measure: Measure, label: str
) -> None:
    run_id = uuid.uuid4().hex[:8]
    options = BuildOptions(path=str(_sleeper(tmp_path, run_id)), network_mode=network)
    again = BuildOptions(path=str(_quick(tmp_path, run_id)), network_mode=network)

    async def main() -> tuple[BaseException | None, float | None, BuildResult]:
        killed_at: float | None = None
        error: BaseException | None = None
        async with AsyncClient(engine.host, env={}, config=clean_config()) as client:
            try:
                async with client.build(options) as build:
                    async for event in build:
                        if isinstance(event, LogEvent) and f"started-{run_id}" in event.text:
                            engine.kill()
                            killed_at = time.monotonic()
                    await build.result()
            except BuildSDKError as exc:
                error = exc
            elapsed = None if killed_at is None else time.monotonic() - killed_at
            await asyncio.to_thread(engine.restart)
            result = await client.build(again).result()
        return error, elapsed, result

    error, elapsed, result = asyncio.run(main())
    assert elapsed is not None, "the build never printed its marker"
    assert isinstance(error, StreamError), repr(error)
    assert engine.socket_path in str(error)
    assert elapsed < 10
    measure.error(f"{label} SIGKILLed mid-build (AsyncClient)", error, elapsed)
    assert f"again-{run_id}" in result.log


def _kill_mid_buildkit_build(
    engine: PrivateEngine, tmp_path: Path, network: str, measure: Measure
) -> None:
    """BuildKit opens a session (a second, hijacked connection) beside the build stream:
    after the kill both end, and no session thread or socket is left behind."""
    run_id = uuid.uuid4().hex[:8]
    options = BuildOptions(path=str(_sleeper(tmp_path, run_id)), network_mode=network, version="2")
    marker = f"started-{run_id}".encode()
    # Registry credentials make the client open a session for BuildKit's registry login.
    credentials = {"registry.example": RegistryAuth(username="u", password=SecretStr("p"))}
    assert needs_session(options, config=clean_config(), credentials=credentials)
    gc.collect()
    start_fds, start_threads = _fds(), threading.active_count()
    with Client(engine.host, env={}, config=clean_config(), credentials=credentials) as client:
        killed: list[float] = []

        def watch_and_kill() -> None:
            with client.build(options) as build:
                for event in build:
                    if isinstance(event, VertexLogEvent) and marker in event.data and not killed:
                        engine.kill()
                        killed.append(time.monotonic())
                build.result()

        with pytest.raises(StreamError) as info:
            watch_and_kill()
        assert killed, "the build never printed its marker"
        elapsed = time.monotonic() - killed[0]
        assert elapsed < 10
        measure.error("dockerd SIGKILLed mid-build (BuildKit, session open)", info.value, elapsed)
        engine.restart()
        again = BuildOptions(path=str(_quick(tmp_path, run_id)), network_mode=network, version="2")
        result = client.build(again).result()
    assert f"again-{run_id}" in result.log
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        gc.collect()
        if _fds() <= start_fds and threading.active_count() <= start_threads:
            break
        time.sleep(0.2)
    assert _fds() <= start_fds, f"{_fds() - start_fds} file descriptors leaked"
    assert threading.active_count() <= start_threads, "session threads left running"


class _SlowTar:
    """A tar file object of a 256 MiB entry, read slowly once 4 MiB went out.

    Used as a custom context so the test knows exactly when the upload is under way.
    """

    def __init__(self) -> None:
        self.midway = threading.Event()
        self._sent = 0
        info = tarfile.TarInfo("Dockerfile")
        dockerfile = f"FROM {BASE}\nCOPY blob /blob\n".encode()
        info.size = len(dockerfile)
        head = info.tobuf(format=tarfile.USTAR_FORMAT) + dockerfile
        head += bytes(-len(head) % 512)
        blob = tarfile.TarInfo("blob")
        blob.size = 256 * 1024 * 1024
        self._head = head + blob.tobuf(format=tarfile.USTAR_FORMAT)
        self._left = blob.size

    def read(self, size: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head, b""
            return out
        if self._left <= 0:
            return b""
        if self._sent >= 4 * 1024 * 1024:
            self.midway.set()
            time.sleep(0.01)
        n = min(size if size > 0 else 65536, self._left)
        self._left -= n
        self._sent += n
        return bytes(n)


def _kill_mid_upload(
    engine: PrivateEngine, tmp_path: Path, network: str, measure: Measure, label: str
) -> None:
    run_id = uuid.uuid4().hex[:8]
    with Client(engine.host, env={}, config=clean_config()) as client:
        body = _SlowTar()
        options = BuildOptions(fileobj=body, custom_context=True)
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                client.build(options).result()
            except BaseException as exc:  # handed to the test thread
                outcome.append(exc)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        assert body.midway.wait(60), "the upload never got under way"
        engine.kill()
        killed_at = time.monotonic()
        worker.join(30)
        elapsed = time.monotonic() - killed_at
        assert not worker.is_alive(), "the client hangs after the engine died mid-upload"
        assert len(outcome) == 1
        error = outcome[0]
        assert isinstance(error, StreamError), repr(error)
        assert engine.socket_path in str(error)
        assert elapsed < 10
        measure.error(f"{label} SIGKILLed mid-upload", error, elapsed)

        engine.restart()
        again = BuildOptions(path=str(_quick(tmp_path, run_id)), network_mode=network)
        result = client.build(again).result()
    assert f"again-{run_id}" in result.log


@pytest.mark.dockerd
def test_unreachable_while_down(
    private_dockerd: PrivateEngine, tmp_path: Path, measure: Measure
) -> None:
    """Between the kill and the restart the socket file is stale: refused, at once."""
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\n")
    with Client(private_dockerd.host, env={}, config=clean_config()) as client:
        client.ping()
        private_dockerd.kill()
        started = time.monotonic()
        with pytest.raises(BuildSDKError) as info:
            client.build(BuildOptions(path=str(tmp_path))).result()
        elapsed = time.monotonic() - started
        assert "Connection refused" in str(info.value)
        assert elapsed < 10
        measure.error("dockerd dead, stale socket", info.value, elapsed)
        private_dockerd.restart()
        assert client.build(BuildOptions(path=str(tmp_path))).result().image_id


@pytest.mark.dockerd
def _kill_mid_control_build(
    engine: PrivateEngine, tmp_path: Path, network: str, measure: Measure, flavor: str
) -> None:
    """A build through the Control API holds two hijacked connections (`/grpc`, where Solve
    and Status wait, and `/session`): after the kill the user gets a `StreamError` within
    seconds, and no thread, socket or file of the build is left."""
    run_id = uuid.uuid4().hex[:8]
    options = BuildOptions(
        path=str(_sleeper(tmp_path, run_id)),
        network_mode=network,
        version="2",
        build_endpoint="grpc",
    )
    marker = f"started-{run_id}".encode()
    gc.collect()
    start_fds, start_threads = _fds(), threading.active_count()
    killed: list[float] = []

    def seen(event: object) -> bool:
        return isinstance(event, VertexLogEvent) and marker in event.data and not killed

    def kill() -> None:
        engine.kill()
        killed.append(time.monotonic())

    def run_sync() -> None:
        with (
            Client(engine.host, env={}, config=clean_config()) as client,
            client.build(options) as build,
        ):
            for event in build:
                if seen(event):
                    kill()
            build.result()

    if flavor == "sync":
        with pytest.raises(StreamError) as info:
            run_sync()
    else:

        async def main() -> None:
            async with AsyncClient(engine.host, env={}, config=clean_config()) as client:
                build = client.build(options)
                try:
                    async for event in build:
                        if seen(event):
                            kill()
                    await build.result()
                finally:
                    await build.close()

        with pytest.raises(StreamError) as info:
            asyncio.run(main())
    assert killed, "the build never printed its marker"
    elapsed = time.monotonic() - killed[0]
    assert elapsed < 10
    measure.error(f"dockerd SIGKILLed mid Control API build ({flavor})", info.value, elapsed)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        gc.collect()
        if _fds() <= start_fds and threading.active_count() <= start_threads:
            break
        time.sleep(0.2)
    assert _fds() <= start_fds, f"{_fds() - start_fds} file descriptors leaked"
    assert threading.active_count() <= start_threads, "build threads left running"


@pytest.mark.dockerd
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_dockerd_killed_mid_control_api_build(
    private_dockerd: PrivateEngine,
    engines: Engines,
    tmp_path: Path,
    measure: Measure,
    flavor: str,
) -> None:
    _kill_mid_control_build(private_dockerd, tmp_path, engines.dockerd_network, measure, flavor)


def test_dockerd_killed_mid_build(
    private_dockerd: PrivateEngine, engines: Engines, tmp_path: Path, measure: Measure
) -> None:
    _kill_mid_build(private_dockerd, tmp_path, engines.dockerd_network, measure, "dockerd")


@pytest.mark.dockerd
def test_dockerd_killed_mid_build_async(
    private_dockerd: PrivateEngine, engines: Engines, tmp_path: Path, measure: Measure
) -> None:
    _kill_mid_build_async(private_dockerd, tmp_path, engines.dockerd_network, measure, "dockerd")


@pytest.mark.dockerd
def test_dockerd_killed_mid_buildkit_build(
    private_dockerd: PrivateEngine, engines: Engines, tmp_path: Path, measure: Measure
) -> None:
    _kill_mid_buildkit_build(private_dockerd, tmp_path, engines.dockerd_network, measure)


@pytest.mark.dockerd
def test_dockerd_killed_mid_upload(
    private_dockerd: PrivateEngine, engines: Engines, tmp_path: Path, measure: Measure
) -> None:
    _kill_mid_upload(private_dockerd, tmp_path, engines.dockerd_network, measure, "dockerd")


@pytest.mark.podman
def test_podman_killed_mid_build(
    private_podman: PrivateEngine, engines: Engines, tmp_path: Path, measure: Measure
) -> None:
    _kill_mid_build(private_podman, tmp_path, engines.podman_network, measure, "Podman")


@pytest.mark.podman
def test_podman_killed_mid_build_async(
    private_podman: PrivateEngine, engines: Engines, tmp_path: Path, measure: Measure
) -> None:
    _kill_mid_build_async(private_podman, tmp_path, engines.podman_network, measure, "Podman")


@pytest.mark.podman
def test_podman_killed_mid_upload(
    private_podman: PrivateEngine, engines: Engines, tmp_path: Path, measure: Measure
) -> None:
    _kill_mid_upload(private_podman, tmp_path, engines.podman_network, measure, "Podman")
