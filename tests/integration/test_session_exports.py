"""Exports the engine writes through the session, against real engines: `outputs` of type
`local` (a directory) and `tar` (a file, or standard output for `dest="-"`).

Each build is first made by the Docker CLI 20.10 (`DOCKER_BUILDKIT=1 docker build -o ...`,
the classic `POST /build` path buildsdk takes too), then by buildsdk's `Client` and
`AsyncClient`; what lands on disk is compared entry by entry (type, mode, contents, link
target, file modification time, hard links) and archives byte for byte. The context goes
through the session (the default), which also keeps Docker 26's containerd image store
clear of moby/moby#47717.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from buildsdk.aio import AsyncClient
from buildsdk.build import BuildOptions
from buildsdk.errors import BuildError, NotFound
from buildsdk.outputs import LocalOutput, TarOutput
from tests.integration.conftest import DockerEngine, Engines, build_result, client_settings
from tests.integration.test_cli_vs_docker import run_buildsdk

pytestmark = [pytest.mark.engine, pytest.mark.dockerd]

FLAVORS = ("sync", "async")
DOCKER_CLI_20 = "/usr/bin/docker"


@pytest.fixture
def context(tmp_path: Path, engines: Engines) -> Path:
    """A `FROM scratch` result with a setuid file, a hard link, symlinks (one pointing out
    of the tree), nested directories and files from the context with their own modes."""
    root = tmp_path / "context"
    (root / "app/conf").mkdir(parents=True)
    (root / "Dockerfile").write_text(
        f"FROM {engines.base_image} AS build\n"
        "RUN mkdir -p /out/bin && printf 'built\\n' > /out/bin/tool && chmod 4755 "
        "/out/bin/tool && ln /out/bin/tool /out/bin/tool-hard && ln -s bin/tool "
        "/out/tool-link && ln -s /etc/passwd /out/abs-link\n"
        "FROM scratch\n"
        "COPY --from=build /out /\n"
        "COPY app /app\n"
    )
    (root / "app/run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(root / "app/run.sh", 0o750)
    (root / "app/conf/settings.ini").write_bytes(os.urandom(70_000))
    os.chmod(root / "app/conf/settings.ini", 0o600)
    return root


def _options(engines: Engines, context: Path, output_type: str, dest: str) -> BuildOptions:
    return BuildOptions(
        path=str(context),
        version="2",
        network_mode=engines.dockerd_network,
        outputs=[{"type": output_type, "attrs": {"dest": dest}}],
    )


def _docker_cli(
    engines: Engines, engine: DockerEngine, tmp_path: Path, context: Path, output: str
) -> bytes:
    if not os.access(DOCKER_CLI_20, os.X_OK):
        pytest.fail(f"the Docker CLI 20.10 is expected at {DOCKER_CLI_20}")
    config = tmp_path / "cli-config"
    config.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DOCKER_HOST": engine.host,
        "DOCKER_CONFIG": str(config),
        "DOCKER_BUILDKIT": "1",
    }
    done = subprocess.run(
        [
            DOCKER_CLI_20,
            "build",
            "--progress",
            "plain",
            *(["--network", engines.dockerd_network] if engines.dockerd_network else []),
            "-o",
            output,
            str(context),
        ],
        env=env,
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below `root` as a user sees it (directory times are left out: both
    writers create a directory's children after it, which moves its time to now)."""
    out: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            info = os.lstat(path)
            rel = path.relative_to(root).as_posix()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("symlink", os.readlink(path), info.st_mtime_ns)
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", mode)
            else:
                data = path.read_bytes()
                out[rel] = ("file", mode, data, info.st_mtime_ns, info.st_nlink)
    return out


@pytest.mark.parametrize("flavor", FLAVORS)
def test_local_output_writes_what_docker_build_o_writes(
    flavor: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path, context: Path
) -> None:
    expected = tmp_path / "by-cli"
    _docker_cli(engines, docker_engine, tmp_path, context, f"type=local,dest={expected}")
    dest = tmp_path / "by-buildsdk"
    options = _options(engines, context, "local", str(dest))
    build_result(flavor, client_settings(engines, "dockerd", docker_engine), options)
    got = _snapshot(dest)
    assert got == _snapshot(expected)
    assert got["bin/tool"][:3] == ("file", 0o4755, b"built\n")
    assert got["bin/tool"][4] == 2  # bin/tool-hard is the same file
    assert got["abs-link"][:2] == ("symlink", "/etc/passwd")
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700


@pytest.mark.parametrize("flavor", FLAVORS)
def test_local_output_merges_into_an_existing_directory_like_the_cli(
    flavor: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path, context: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    expected, dest = tmp_path / "by-cli", tmp_path / "by-buildsdk"
    for directory in (expected, dest):
        (directory / "bin").mkdir(parents=True)
        (directory / "bin/tool").write_text("stale")
        (directory / "kept.txt").write_text("not exported, kept")
        os.utime(directory / "kept.txt", ns=(1_700_000_000_000_000_000,) * 2)
        os.symlink(outside, directory / "app")  # replaced by the exported directory
    _docker_cli(engines, docker_engine, tmp_path, context, f"type=local,dest={expected}")
    options = _options(engines, context, "local", str(dest))
    build_result(flavor, client_settings(engines, "dockerd", docker_engine), options)
    assert _snapshot(dest) == _snapshot(expected)
    assert (dest / "kept.txt").read_text() == "not exported, kept"
    assert (dest / "bin/tool").read_text() == "built\n"
    assert os.listdir(outside) == []


@pytest.mark.parametrize("flavor", FLAVORS)
def test_tar_output_to_a_file_is_the_cli_s_archive(
    flavor: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path, context: Path
) -> None:
    expected = tmp_path / "by-cli.tar"
    _docker_cli(engines, docker_engine, tmp_path, context, f"type=tar,dest={expected}")
    dest = tmp_path / "by-buildsdk.tar"
    options = _options(engines, context, "tar", str(dest))
    build_result(flavor, client_settings(engines, "dockerd", docker_engine), options)
    assert dest.read_bytes() == expected.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == stat.S_IMODE(expected.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")) == []


@pytest.mark.parametrize("flavor", FLAVORS)
def test_tar_output_to_standard_output_is_the_cli_s_stream(
    flavor: str,
    engines: Engines,
    docker_engine: DockerEngine,
    tmp_path: Path,
    context: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    expected = _docker_cli(engines, docker_engine, tmp_path, context, "-")
    options = _options(engines, context, "tar", "-")
    build_result(flavor, client_settings(engines, "dockerd", docker_engine), options)
    assert capsysbinary.readouterr().out == expected
    assert len(expected) > 70_000


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_destination_that_cannot_be_written_fails_the_build_with_the_reason(
    flavor: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path, context: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    options = _options(engines, context, "local", str(blocker / "out"))
    with pytest.raises(BuildError, match="cannot create the output directory"):
        build_result(flavor, client_settings(engines, "dockerd", docker_engine), options)
    assert blocker.read_text() == "in the way"
    shutil.rmtree(tmp_path / "context")


def test_a_tar_export_cancelled_mid_way_leaves_no_file_behind(
    engines: Engines, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    """The engine sends no event while it streams the archive, so the build is cancelled
    from a task watching the destination's directory (the sync client has no cross-thread
    cancel; both run the same receiver)."""
    context = tmp_path / "big"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {engines.base_image} AS build\n"
        "RUN head -c 100000000 /dev/urandom > /big\n"
        "FROM scratch\n"
        "COPY --from=build /big /big\n"
    )
    dest = tmp_path / "out" / "image.tar"
    dest.parent.mkdir()
    options = _options(engines, context, "tar", str(dest))
    settings = client_settings(engines, "dockerd", docker_engine)

    def arriving() -> bool:
        return any(entry.stat().st_size > 0 for entry in dest.parent.iterdir())

    async def main() -> None:
        async with AsyncClient(**settings) as client:
            task = asyncio.ensure_future(client.build(options).result())
            while not task.done() and not arriving():
                await asyncio.sleep(0.005)
            assert not task.done(), "the build ended before its archive arrived"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert os.listdir(dest.parent) == []


@pytest.mark.podman
@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_engine_without_sessions_refuses_an_export_by_name(
    flavor: str, engines: Engines, tmp_path: Path, context: Path
) -> None:
    options = _options(engines, context, "local", str(tmp_path / "out"))
    with pytest.raises(NotFound, match="local or tar outputs with a dest need dockerd"):
        build_result(flavor, client_settings(engines, "podman"), options)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["-", "type=tar,dest=-"])
def test_buildsdk_build_o_dash_prints_the_cli_s_archive(
    flag: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path, context: Path
) -> None:
    expected = _docker_cli(engines, docker_engine, tmp_path, context, "-")
    network = ["--network", engines.dockerd_network] if engines.dockerd_network else []
    done = run_buildsdk(
        ["build", "-H", docker_engine.host, *network, "-o", flag, str(context)],
        {"PATH": os.environ.get("PATH", ""), "DOCKER_CONFIG": str(tmp_path / "cli-config")},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli-config", "context"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_typed_outputs_write_what_the_generic_ones_write(
    flavor: str, engines: Engines, docker_engine: DockerEngine, tmp_path: Path, context: Path
) -> None:
    settings = client_settings(engines, "dockerd", docker_engine)
    generic_dir, typed_dir = tmp_path / "generic", tmp_path / "typed"
    build_result(flavor, settings, _options(engines, context, "local", str(generic_dir)))
    typed_local = BuildOptions(
        path=str(context),
        version="2",
        network_mode=engines.dockerd_network,
        outputs=[LocalOutput(dest=typed_dir)],
    )
    build_result(flavor, settings, typed_local)
    assert _snapshot(typed_dir) == _snapshot(generic_dir)

    generic_tar = tmp_path / "generic.tar"
    build_result(flavor, settings, _options(engines, context, "tar", str(generic_tar)))
    stream = io.BytesIO()
    typed_tar = BuildOptions(
        path=str(context),
        version="2",
        network_mode=engines.dockerd_network,
        outputs=[TarOutput(dest=stream)],
    )
    build_result(flavor, settings, typed_tar)
    assert stream.getvalue() == generic_tar.read_bytes()
