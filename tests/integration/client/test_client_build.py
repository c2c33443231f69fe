"""Builds through `Client` and `AsyncClient` on the real dockerd, with effects checked in the image.

Each option's effect is read back from what the engine produced, never from what buildsdk
sent: a `RUN` step writes what it sees (`/etc/hosts`, `ulimit -n`, the size of `/dev/shm`,
its network interfaces, its memory cgroup limit) into `/out`, and the test reads `/out` out
of the image through the engine's archive endpoint; labels come from image inspect.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Literal

import pytest

from buildsdk.build import BuildOptions, ContainerLimits, Ulimit
from buildsdk.context import prepare_context
from buildsdk.errors import UnsupportedOption
from buildsdk.events import ImageIdEvent, LogEvent, StatusEvent
from tests.integration.client.conftest import (
    HTTPFiles,
    Runner,
    image_files,
    inspect_image,
    unique_tag,
)

__all__: list[str] = []

pytestmark = [pytest.mark.anyio, pytest.mark.dockerd]

Builder = Literal["1", "2"]

_PROBE = """\
FROM busybox AS base
ARG GREETING=unset
RUN mkdir -p /out && echo "$GREETING" > /out/greeting && cat /etc/hosts > /out/hosts \\
 && ulimit -Sn > /out/nofile-soft && ulimit -Hn > /out/nofile-hard \\
 && df -k /dev/shm | tail -n 1 > /out/shm && cat /proc/net/dev > /out/netdev \\
 && (cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null \\
     || cat /sys/fs/cgroup/memory.max) > /out/memory
FROM base AS chosen
RUN echo chosen > /out/stage
FROM chosen
RUN echo past-the-target > /out/stage
"""


def _interfaces(netdev: str) -> set[str]:
    """Interface names in a `/proc/net/dev` text."""
    return {line.split(":", 1)[0].strip() for line in netdev.splitlines()[2:] if ":" in line}


def _context(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


async def test_classic_build_options_take_effect_inside_the_image(
    dockerd: Runner, tmp_path: Path
) -> None:
    context = _context(tmp_path, {"Dockerfile": _PROBE})
    options = BuildOptions(
        path=context,
        tag=unique_tag("probe"),
        nocache=True,
        buildargs={"GREETING": "hello from buildargs"},
        labels={"org.example.role": "probe", "empty": ""},
        target="chosen",
        extra_hosts={"buildsdk-test.internal": "10.1.2.3"},
        network_mode="none",
        shmsize="96m",
        container_limits=ContainerLimits(memory="64m"),
        ulimits=[Ulimit(name="nofile", soft=1024, hard=2048)],
    )
    result = (await dockerd.build(options)).ok()

    files = image_files(dockerd.raw, result.image_id)
    assert files["greeting"] == "hello from buildargs\n"
    assert "10.1.2.3\tbuildsdk-test.internal\n" in files["hosts"]
    assert files["nofile-soft"] == "1024\n"
    assert files["nofile-hard"] == "2048\n"
    assert files["shm"].split()[1] == str(96 * 1024)  # df -k: 1K blocks
    assert files["memory"] == f"{64 * 1024 * 1024}\n"
    assert _interfaces(files["netdev"]) == {"lo"}  # network_mode none
    assert files["stage"] == "chosen\n"  # the stage after the target did not run
    config = inspect_image(dockerd.raw, result.image_id)["Config"]
    assert config["Labels"] == {"org.example.role": "probe", "empty": ""}
    assert inspect_image(dockerd.raw, options.tag[0])["Id"] == result.image_id


async def test_buildkit_build_options_take_effect_inside_the_image(
    dockerd: Runner, tmp_path: Path
) -> None:
    context = _context(tmp_path, {"Dockerfile": _PROBE})
    options = BuildOptions(
        path=context,
        version="2",
        tag=unique_tag("probe-bk"),
        nocache=True,
        buildargs={"GREETING": "hello from buildkit"},
        labels={"org.example.role": "probe"},
        target="chosen",
        extra_hosts=["buildsdk-test.internal:10.4.5.6"],
        network_mode="host",
    )
    result = (await dockerd.build(options)).ok()

    files = image_files(dockerd.raw, result.image_id)
    assert files["greeting"] == "hello from buildkit\n"
    assert "10.4.5.6\tbuildsdk-test.internal\n" in files["hosts"]
    # network_mode host: the step saw this host's interfaces, not a private namespace.
    assert _interfaces(files["netdev"]) == _interfaces(Path("/proc/net/dev").read_text())
    assert files["stage"] == "chosen\n"
    config = inspect_image(dockerd.raw, result.image_id)["Config"]
    assert config["Labels"] == {"org.example.role": "probe"}


async def test_buildkit_limits_are_applied_or_refused_where_ignored(
    dockerd: Runner, tmp_path: Path
) -> None:
    context = _context(tmp_path, {"Dockerfile": _PROBE})
    options = BuildOptions(
        path=context,
        version="2",
        nocache=True,
        target="chosen",
        network_mode="host",
        shmsize="96m",
        ulimits=[Ulimit(name="nofile", soft=1024, hard=2048)],
    )
    assert dockerd.docker is not None
    if not dockerd.docker.is_20:
        # Docker 23.0+ (API 1.42+) applies them: buildsdk sends them and the step sees them.
        result = (await dockerd.build(options)).ok()
        files = image_files(dockerd.raw, result.image_id)
        assert files["nofile-soft"] == "1024\n"
        assert files["shm"].split()[1] == str(96 * 1024)
        return
    # The fact behind the refusal: sent anyway (as API 1.42 would carry them), dockerd
    # 20.10 builds with BuildKit's own limits.
    query = options.to_query("1.42")
    tar = b"".join(prepare_context(path=context))
    answer = dockerd.raw.post(
        "/build", params=tuple(query), content=tar, headers={"Content-Type": "application/x-tar"}
    )
    assert answer.status_code == 200, answer.text
    messages = [json.loads(line) for line in answer.text.splitlines() if line.strip()]
    # BuildKit traces are "aux" strings too; the image ID is the one object with an ID.
    image = [m["aux"]["ID"] for m in messages if isinstance(m.get("aux"), dict)]
    assert len(image) == 1, answer.text
    dockerd.built.append(image[0])
    files = image_files(dockerd.raw, image[0])
    assert files["nofile-soft"] != "1024\n"
    assert files["shm"].split()[1] != str(96 * 1024)

    # buildsdk refuses them on this engine, naming the option, before anything is sent.
    with pytest.raises(UnsupportedOption) as refused:
        await dockerd.build(options)
    assert refused.value.option == "ulimits"
    assert "ignored by BuildKit before API 1.42" in str(refused.value)


@pytest.mark.parametrize("builder", ["1", "2"])
async def test_one_build_gets_several_tags(
    dockerd: Runner, tmp_path: Path, builder: Builder
) -> None:
    context = _context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo tagged > /tagged\n"})
    tags = [unique_tag("tags"), unique_tag("tags"), unique_tag("other")]
    options = BuildOptions(
        path=context, tag=tags, version=builder, network_mode=dockerd.network, nocache=True
    )
    run = await dockerd.build(options)
    result = run.ok()

    assert result.tags == tuple(tags)
    assert [e.image_id for e in run.events if isinstance(e, ImageIdEvent)] == [result.image_id]
    for tag in tags:
        assert inspect_image(dockerd.raw, tag)["Id"] == result.image_id


@pytest.mark.parametrize(("builder", "ids"), [("1", 2), ("2", 1)])
async def test_a_multi_stage_build_reports_an_image_id_per_classic_stage(
    dockerd: Runner, tmp_path: Path, builder: Builder, ids: int
) -> None:
    # As documented on ImageIdEvent: the classic builder reports each stage's image, the
    # last one is the result; BuildKit reports only the result.
    dockerfile = (
        "FROM busybox AS base\nRUN echo one > /one\nFROM busybox\nCOPY --from=base /one /one\n"
    )
    context = _context(tmp_path, {"Dockerfile": dockerfile})
    options = BuildOptions(
        path=context, version=builder, network_mode=dockerd.network, nocache=True
    )
    run = await dockerd.build(options)
    result = run.ok()

    reported = [e.image_id for e in run.events if isinstance(e, ImageIdEvent)]
    assert len(reported) == ids
    assert reported[-1] == result.image_id
    assert len(set(reported)) == ids


@pytest.mark.parametrize("builder", ["1", "2"])
async def test_dockerfile_outside_the_context(
    dockerd: Runner, tmp_path: Path, builder: Builder
) -> None:
    context = _context(tmp_path / "context", {"data.txt": "from the context\n"})
    dockerfile = tmp_path / "elsewhere" / "Build.dockerfile"
    _context(dockerfile.parent, {dockerfile.name: "FROM busybox\nCOPY data.txt /out/data.txt\n"})
    options = BuildOptions(path=context, dockerfile=str(dockerfile), version=builder, nocache=True)
    result = (await dockerd.build(options)).ok()

    assert image_files(dockerd.raw, result.image_id) == {"data.txt": "from the context\n"}


@pytest.mark.parametrize("builder", ["1", "2"])
async def test_dockerfile_from_fileobj_with_a_context_directory(
    dockerd: Runner, tmp_path: Path, builder: Builder
) -> None:
    context = _context(
        tmp_path,
        {"data.txt": "beside it\n", "Dockerfile": "FROM busybox\nRUN false\n"},
    )
    dockerfile = io.BytesIO(b"FROM busybox\nCOPY data.txt /out/data.txt\n")
    options = BuildOptions(path=context, fileobj=dockerfile, version=builder, nocache=True)
    result = (await dockerd.build(options)).ok()

    # The fileobj's Dockerfile was used, not the one in the directory (which would fail).
    assert image_files(dockerd.raw, result.image_id) == {"data.txt": "beside it\n"}


def _tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("builder", ["1", "2"])
async def test_remote_tarball_context_from_a_loopback_server(
    dockerd: Runner, http_files: HTTPFiles, builder: Builder
) -> None:
    name = f"context-{unique_tag('remote').rsplit(':', 1)[1]}.tar.gz"
    (http_files.root / name).write_bytes(
        _tarball(
            {
                "Dockerfile": "FROM busybox\nCOPY payload.txt /out/payload.txt\n",
                "payload.txt": "fetched by the engine\n",
            }
        )
    )
    options = BuildOptions(path=http_files.url(name), version=builder, nocache=True)
    run = await dockerd.build(options)
    result = run.ok()

    assert image_files(dockerd.raw, result.image_id) == {"payload.txt": "fetched by the engine\n"}
    if builder == "1":
        # The classic builder reports the download it made; dockerd 20.10 sends the URL as
        # `status` and "Downloading context" as `id`, the reverse of what its docs suggest.
        downloads = [e for e in run.events if isinstance(e, StatusEvent)]
        assert any(http_files.url(name) in (e.id, e.status) for e in downloads), downloads


async def test_remote_plain_dockerfile_from_a_loopback_server(
    dockerd: Runner, http_files: HTTPFiles
) -> None:
    name = f"Dockerfile-{unique_tag('remote').rsplit(':', 1)[1]}"
    (http_files.root / name).write_text(
        "FROM busybox\nRUN mkdir /out && echo built from a URL > /out/origin\n"
    )
    options = BuildOptions(remote=http_files.url(name), network_mode=dockerd.network)
    result = (await dockerd.build(options)).ok()

    assert image_files(dockerd.raw, result.image_id) == {"origin": "built from a URL\n"}


async def test_classic_log_holds_run_output_and_image_id_comes_from_aux(
    dockerd: Runner, tmp_path: Path
) -> None:
    # A RUN that prints what docker-py's regex takes for an image id must not fool us.
    context = _context(
        tmp_path,
        {
            "Dockerfile": "FROM busybox\n"
            "RUN echo 'Successfully built cffi' && echo 'Successfully built 0123456789ab'\n"
        },
    )
    options = BuildOptions(path=context, network_mode=dockerd.network, nocache=True)
    run = await dockerd.build(options)
    result = run.ok()

    assert "Successfully built cffi\n" in result.log
    assert result.image_id.startswith("sha256:")
    assert inspect_image(dockerd.raw, result.image_id)["Id"] == result.image_id
    texts = "".join(e.text for e in run.events if isinstance(e, LogEvent))
    assert "Step 2/2 : RUN echo" in texts
    assert result.log == texts


async def test_buildkit_cacheonly_output_succeeds_or_is_refused_where_it_fails(
    dockerd: Runner, tmp_path: Path
) -> None:
    context = _context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo cache only\n"})
    options = BuildOptions(
        path=context,
        version="2",
        network_mode=dockerd.network,
        outputs=[{"type": "cacheonly"}],
        nocache=True,
    )
    assert dockerd.docker is not None
    if not dockerd.docker.is_20:
        # The fact behind the refusal: Docker 26 fails the build after the upload.
        query = options.to_query("1.44")
        tar = b"".join(prepare_context(path=context))
        answer = dockerd.raw.post(
            "/build",
            params=tuple(query),
            content=tar,
            headers={"Content-Type": "application/x-tar"},
        )
        assert answer.status_code == 500, answer.text
        assert answer.json()["message"] == 'exporter "" could not be found'
        # Pinned to POST /build, buildsdk refuses it before sending anything, naming the
        # option and the engine.
        with pytest.raises(UnsupportedOption) as refused:
            await dockerd.build(options.model_copy(update={"build_endpoint": "build"}))
        assert refused.value.option == "outputs"
        assert "fails on Docker Engine 26 and later" in str(refused.value)
    # "auto" takes the Control API on Docker 26, where cacheonly works, and POST /build on
    # Docker 20.10, where it works too.
    run = await dockerd.build(options)
    result = run.ok()

    assert result.image_id == ""
    assert not [e for e in run.events if isinstance(e, ImageIdEvent)]
    assert "[2/2] RUN echo cache only\n" in result.log


async def test_classic_warnings_reach_the_result(dockerd: Runner, tmp_path: Path) -> None:
    context = _context(tmp_path, {"Dockerfile": "FROM busybox\nLABEL warned=yes\n"})
    options = BuildOptions(path=context, buildargs={"NOT_DECLARED": "x"}, nocache=True)
    result = (await dockerd.build(options)).ok()

    assert result.warnings == ("One or more build-args [NOT_DECLARED] were not consumed",)
    assert result.duration > 0
    assert result.events_count > 0
