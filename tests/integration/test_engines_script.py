"""Behaviour of ``scripts/engines`` itself: idempotent ``up``, ``env`` output, clean ``down``.

The engines the rest of the suite uses are only ever asked to come ``up`` again here; the
``down`` test starts a second, separate set in its own state directory and tears that down.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import REPO_ROOT, Engines, engines_unavailable, load_engines

__all__: list[str] = []

_SCRIPT = REPO_ROOT / "scripts" / "engines"


def _run(
    args: list[str],
    state_dir: Path,
    timeout: float = 300.0,
    extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDSDK_")}
    env["BUILDSDK_ENGINES_DIR"] = str(state_dir)
    env.update(extra or {})
    return subprocess.run(
        [str(_SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _pids(state_dir: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (state_dir / "pids").glob("*.pid")}


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # A zombie has exited; only its parent can still reap it.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
    return found


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if text in cmdline and _running(int(proc.name)):
            found.append(f"{proc.name}: {cmdline}")
    return found


def _state_dir(engines: Engines) -> Path:
    if engines.state_dir is None or not (engines.state_dir / "pids").is_dir():
        engines_unavailable("the engines were not started by scripts/engines on this machine")
    return engines.state_dir


def test_without_a_command_it_prints_usage(tmp_path: Path) -> None:
    done = _run([], tmp_path / "state")
    assert done.returncode == 2
    assert "usage:" in done.stderr
    assert "up [" in done.stderr


def test_an_unknown_service_is_refused_before_anything_starts(tmp_path: Path) -> None:
    done = _run(["up", "dockerd", "nosuch"], tmp_path / "state")
    assert done.returncode == 1
    assert "unknown service nosuch" in done.stderr
    assert not (tmp_path / "state").exists()


def test_env_before_up_says_how_to_start(tmp_path: Path) -> None:
    done = _run(["env"], tmp_path / "state")
    assert done.returncode == 1
    assert "run scripts/engines up first" in done.stderr
    assert done.stdout == ""


def test_env_prints_the_env_file_as_exports(engines: Engines) -> None:
    state_dir = _state_dir(engines)
    done = _run(["env"], state_dir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines
    assert all(line.startswith("export BUILDSDK_") for line in lines), lines
    settings = (state_dir / "env").read_text().splitlines()
    assert lines == [f"export {s}" for s in settings if s and not s.startswith("#")]


@pytest.mark.slow
def test_up_again_is_harmless(engines: Engines) -> None:
    state_dir = _state_dir(engines)
    if os.geteuid() != 0:
        engines_unavailable("scripts/engines up needs root")
    pids_before = _pids(state_dir)
    env_before = (state_dir / "env").read_bytes()
    done = _run(["up", *engines.services], state_dir)
    assert done.returncode == 0, done.stderr
    for service, pid in pids_before.items():
        assert f"{service} already running (pid {pid})" in done.stderr
    if "docker26-cli" in engines.services:
        # The Docker 26 tools are unpacked once, not fetched again.
        assert "already unpacked" in done.stderr
        assert "downloading" not in done.stderr
    assert _pids(state_dir) == pids_before
    assert (state_dir / "env").read_bytes() == env_before


@pytest.mark.slow
@pytest.mark.parametrize(
    "services",
    [
        pytest.param(("dockerd", "registry", "sshd"), id="dockerd20"),
        # The containerd image store mounts overlayfs snapshots and runs trixie's containerd.
        pytest.param(("dockerd26-containerd",), id="dockerd26-containerd"),
    ],
)
def test_down_stops_what_up_started_and_leaves_no_state(
    tmp_path: Path, engines: Engines, services: tuple[str, ...]
) -> None:
    if os.geteuid() != 0:
        engines_unavailable("scripts/engines up needs root")
    state_dir = tmp_path / "engines"
    extra: dict[str, str] = {}
    if engines.state_dir is not None and (engines.state_dir / "cache" / "debs").is_dir():
        # Reuse the suite's downloaded .debs rather than fetch them again.
        extra["BUILDSDK_ENGINES_CACHE"] = str(engines.state_dir / "cache")
    try:
        up = _run(["up", *services], state_dir, extra=extra)
        assert up.returncode == 0, up.stderr
        run_dir = Path(
            next(
                line.split("=", 1)[1].strip("'")
                for line in (state_dir / "env").read_text().splitlines()
                if line.startswith("BUILDSDK_ENGINES_RUN_DIR=")
            )
        )
        started = _pids(state_dir)
        assert set(started) == set(services)
        # dockerd runs its own containerd (unless a system one is at the default socket);
        # whatever it started must go too.
        family = set(started.values()) | _children(started[services[0]])
        assert all(_running(pid) for pid in family)
    finally:
        down = _run(["down"], state_dir, extra=extra)
    assert down.returncode == 0, down.stderr
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(state_dir) not in mounts
    assert str(run_dir) not in mounts
    assert [pid for pid in family if _running(pid)] == []
    assert _processes_mentioning(str(state_dir)) == []
    assert _processes_mentioning(str(run_dir)) == []
    assert not state_dir.exists()
    assert not run_dir.exists()


def test_environment_overrides_the_env_file_and_hides_the_password(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(
        "# comment\n"
        "BUILDSDK_DOCKERD_HOST='unix:///from/file.sock'\n"
        "BUILDSDK_REGISTRY='127.0.0.1:5000'\n"
        "BUILDSDK_REGISTRY_USER=buildsdk\n"
        "BUILDSDK_REGISTRY_PASSWORD='s3cret-from-file'\n"
        "BUILDSDK_ENGINES_SERVICES='dockerd registry'\n"
    )
    loaded = load_engines(
        {
            "BUILDSDK_ENGINES_ENV": str(env_file),
            "BUILDSDK_DOCKERD_HOST": "unix:///from/environment.sock",
        }
    )
    assert loaded is not None
    assert loaded.env_file == env_file
    assert loaded.dockerd_host == "unix:///from/environment.sock"
    assert loaded.registry == "127.0.0.1:5000"
    assert loaded.registry_password == "s3cret-from-file"
    assert loaded.services == ("dockerd", "registry")
    assert loaded.podman_host is None
    assert "s3cret" not in repr(loaded)


def test_no_env_file_and_no_variables_means_no_engines(tmp_path: Path) -> None:
    assert load_engines({"BUILDSDK_ENGINES_DIR": str(tmp_path)}) is None
