"""docker-py's own build scenarios, run unchanged with docker-py and with `buildsdk.compat`.

The scenarios are those of docker-py's `tests/integration/api_build_test.py` and the build
tests of `models_images_test.py` (their behaviour, written fresh here; docker-py's files are
neither copied nor shipped in its sdist). Each runs twice on the same dockerd: once with
`docker.APIClient` / `docker.DockerClient`, once with `compat.APIClient` /
`compat.DockerClient`, through the same code. That is the promise of compat: code written
for docker-py (builds, then `create_container`, `inspect_image`, `containers.run(image)`,
`except docker.errors.X`) keeps working after the import changes. The few places where
compat deliberately differs are tested at the end, for compat alone.

Where docker-py's scenario needs what these engines lack (alpine, the internet, an
experimental daemon, the `bridge` network) the scenario uses busybox or a local file and
says so.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import re
import textwrap
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.models.images
import pytest

from buildsdk import compat
from tests.integration.conftest import DockerEngine, Engines, engines_on_matrix, engines_unavailable
from tests.integration.test_compat_vs_docker_py import BASE, docker_config, write_context

__all__ = ["Scenario", "api_client", "high_client", "scenario"]


@pytest.fixture(scope="session")
def engines(all_engines: Engines, docker_engine: DockerEngine) -> Engines:
    """Every test here runs on each Docker engine of the matrix."""
    return engines_on_matrix(all_engines, docker_engine)


pytestmark = [pytest.mark.engine, pytest.mark.dockerd]

# The fixture is shared with the side-by-side tests; naming it here makes pytest see it.
_ = docker_config

CLIENTS = ["docker-py", "compat"]


def random_name() -> str:
    """A name no other run uses (docker-py's tests use the same idea)."""
    return f"buildsdk-scenario-{uuid.uuid4().hex[:12]}"


def _dockerd(engines: Engines) -> str:
    if engines.dockerd_host is None:
        engines_unavailable("dockerd was not started (no BUILDSDK_DOCKERD_HOST)")
    return engines.dockerd_host


@pytest.fixture(params=CLIENTS)
def api_client(
    request: pytest.FixtureRequest, engines: Engines, docker_config: Path
) -> Iterator[Any]:
    """docker-py's `APIClient`, or compat's, on the plain dockerd (same arguments)."""
    module: Any = docker if request.param == "docker-py" else compat
    client = module.APIClient(base_url=_dockerd(engines), version="auto")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(params=CLIENTS)
def high_client(
    request: pytest.FixtureRequest,
    engines: Engines,
    docker_config: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    """`docker.from_env()` or `compat.from_env()`, with DOCKER_HOST naming the dockerd."""
    monkeypatch.setenv("DOCKER_HOST", _dockerd(engines))
    module: Any = docker if request.param == "docker-py" else compat
    client = module.from_env(version="auto")
    try:
        yield client
    finally:
        client.close()


class Scenario:
    """What docker-py's test base class gives a scenario: the client and clean-up lists."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.tmp_imgs: list[str] = []
        self.tmp_containers: list[Any] = []
        self.tmp_networks: list[str] = []

    def run_container(self, *args: Any, **kwargs: Any) -> Any:
        """Create and start a container, wait for it to exit, and remember to remove it."""
        container = self.client.create_container(*args, **kwargs)
        self.tmp_containers.append(container)
        self.client.start(container)
        self.client.wait(container)
        return container


@pytest.fixture
def scenario(api_client: Any, engines: Engines) -> Iterator[Scenario]:
    """A `Scenario` on `api_client`; what it made is removed afterwards through docker-py."""
    made = Scenario(api_client)
    yield made
    cleaner = docker.APIClient(base_url=_dockerd(engines), version="auto")
    try:
        for container in made.tmp_containers:
            cleaner.remove_container(container, force=True)
        for image in made.tmp_imgs:
            with contextlib.suppress(docker.errors.NotFound):
                cleaner.remove_image(image, force=True)
        for network in made.tmp_networks:
            cleaner.remove_network(network)
    finally:
        cleaner.close()


def _script(*lines: str) -> io.BytesIO:
    return io.BytesIO("\n".join(lines).encode("ascii"))


def _drain(stream: Iterator[Any]) -> list[Any]:
    return list(stream)


def _no_error(logs: list[dict[str, Any]]) -> None:
    errors = [chunk for chunk in logs if "error" in chunk]
    assert errors == []


# -- api_build_test.py -----------------------------------------------------------------------


def _proxy_config(directory: Path) -> None:
    proxies = {"ftpProxy": "a", "httpProxy": "b", "httpsProxy": "c", "noProxy": "d"}
    (directory / "config.json").write_text(json.dumps({"proxies": {"default": proxies}}))


def test_build_with_proxy(engines: Engines, docker_config: Path) -> None:
    # docker-py's scenario sets the client's private proxy object; both read config.json.
    _proxy_config(docker_config)
    for module in (docker, compat):
        client: Any = module.APIClient(base_url=_dockerd(engines), version="auto")
        with client:
            script = _script(
                f"FROM {BASE}",
                'RUN env | grep "FTP_PROXY=a"',
                'RUN env | grep "ftp_proxy=a"',
                'RUN env | grep "HTTP_PROXY=b"',
                'RUN env | grep "http_proxy=b"',
                'RUN env | grep "HTTPS_PROXY=c"',
                'RUN env | grep "https_proxy=c"',
                'RUN env | grep "NO_PROXY=d"',
                'RUN env | grep "no_proxy=d"',
            )
            _no_error(_drain(client.build(fileobj=script, decode=True, rm=True)))


def test_build_with_proxy_and_buildargs(engines: Engines, docker_config: Path) -> None:
    _proxy_config(docker_config)
    for module in (docker, compat):
        client: Any = module.APIClient(base_url=_dockerd(engines), version="auto")
        with client:
            script = _script(
                f"FROM {BASE}",
                'RUN env | grep "FTP_PROXY=XXX"',
                'RUN env | grep "ftp_proxy=xxx"',
                'RUN env | grep "HTTP_PROXY=b"',
                'RUN env | grep "http_proxy=b"',
                'RUN env | grep "HTTPS_PROXY=c"',
                'RUN env | grep "https_proxy=c"',
                'RUN env | grep "NO_PROXY=d"',
                'RUN env | grep "no_proxy=d"',
            )
            logs = client.build(
                fileobj=script,
                decode=True,
                rm=True,
                buildargs={"FTP_PROXY": "XXX", "ftp_proxy": "xxx"},
            )
            _no_error(_drain(logs))


def test_build_streaming(scenario: Scenario) -> None:
    # docker-py's scenario ADDs a file from the internet; these engines are offline.
    script = _script(f"FROM {BASE}", "RUN mkdir -p /tmp/test", "EXPOSE 8080")
    logs = _drain(scenario.client.build(fileobj=script, decode=True, rm=True))
    assert len(logs) > 0
    _no_error(logs)


def test_build_with_dockerignore(scenario: Scenario, tmp_path: Path) -> None:
    base_dir = tmp_path
    (base_dir / "Dockerfile").write_text(f"FROM {BASE}\nADD . /test")
    (base_dir / ".dockerignore").write_text(
        "\n".join(
            [
                "ignored",
                "Dockerfile",
                ".dockerignore",
                " ignored-with-spaces ",
                "!ignored/subdir/excepted-file",
                "! ignored/subdir/excepted-with-spaces  ",
                "",
                "#*",
            ]
        )
    )
    (base_dir / "not-ignored").write_text("this file should not be ignored")
    (base_dir / "#file.txt").write_text("this file should not be ignored")
    (base_dir / "ignored-with-spaces").write_text("this file should be ignored")
    subdir = base_dir / "ignored" / "subdir"
    subdir.mkdir(parents=True)
    (subdir / "file").write_text("this file should be ignored")
    (subdir / "excepted-file").write_text("this file should not be ignored")
    (subdir / "excepted-with-spaces").write_text("this file should not be ignored")
    tag = random_name()
    scenario.tmp_imgs.append(tag)
    _drain(scenario.client.build(path=str(base_dir), tag=tag, rm=True))
    container = scenario.run_container(tag, ["find", "/test", "-type", "f"])
    logs = scenario.client.logs(container).decode("utf-8")
    assert sorted(filter(None, logs.split("\n"))) == sorted(
        [
            "/test/#file.txt",
            "/test/ignored/subdir/excepted-with-spaces",
            "/test/ignored/subdir/excepted-file",
            "/test/not-ignored",
        ]
    )


def test_build_with_buildargs(scenario: Scenario) -> None:
    script = _script("FROM scratch", "ARG test", "USER $test")
    tag = random_name()
    scenario.tmp_imgs.append(tag)
    _drain(scenario.client.build(fileobj=script, tag=tag, buildargs={"test": "OK"}, rm=True))
    assert scenario.client.inspect_image(tag)["Config"]["User"] == "OK"


def test_build_shmsize(scenario: Scenario) -> None:
    script = _script("FROM scratch", "CMD sh -c \"echo 'Hello, World!'\"")
    tag = random_name()
    scenario.tmp_imgs.append(tag)
    logs = scenario.client.build(fileobj=script, tag=tag, shmsize=134217728, decode=True)
    _no_error(_drain(logs))
    assert scenario.client.inspect_image(tag)


def test_build_isolation(scenario: Scenario) -> None:
    script = _script("FROM scratch", "CMD sh -c \"echo 'Deaf To All But The Song'\"")
    tag = random_name()
    scenario.tmp_imgs.append(tag)
    logs = scenario.client.build(fileobj=script, tag=tag, isolation="default", decode=True)
    _no_error(_drain(logs))


def test_build_labels(scenario: Scenario) -> None:
    labels = {"test": "OK"}
    tag = random_name()
    scenario.tmp_imgs.append(tag)
    _drain(scenario.client.build(fileobj=_script("FROM scratch"), tag=tag, labels=labels))
    assert scenario.client.inspect_image(tag)["Config"]["Labels"] == labels


def test_build_with_cache_from(scenario: Scenario) -> None:
    # One BytesIO for all three builds, as docker-py's scenario has it.
    script = _script(f"FROM {BASE}", "ENV FOO=bar", "RUN touch baz", "RUN touch bax")
    build1, build2 = random_name(), random_name()
    scenario.tmp_imgs += [build1, build2]
    _drain(scenario.client.build(fileobj=script, tag=build1, rm=True))

    stream = scenario.client.build(
        fileobj=script, tag=build2, cache_from=[build1], decode=True, rm=True
    )
    counter = sum("Using cache" in chunk.get("stream", "") for chunk in stream)
    assert counter == 3
    scenario.client.remove_image(build2)

    stream = scenario.client.build(
        fileobj=script, tag=build2, cache_from=["nosuchtag"], decode=True, rm=True
    )
    counter = sum("Using cache" in chunk.get("stream", "") for chunk in stream)
    assert counter == 0


def test_build_container_with_target(scenario: Scenario) -> None:
    # docker-py's second stage starts FROM alpine; these engines only have busybox.
    script = _script(
        f"FROM {BASE} as first",
        "RUN mkdir -p /tmp/test",
        "RUN touch /tmp/silence.tar.gz",
        f"FROM {BASE}",
        "WORKDIR /root/",
        "COPY --from=first /tmp/silence.tar.gz .",
        'ONBUILD RUN echo "This should not be in the final image"',
    )
    tag = random_name()
    scenario.tmp_imgs.append(tag)
    _drain(scenario.client.build(fileobj=script, target="first", tag=tag, rm=True))
    info = scenario.client.inspect_image(tag)
    assert "OnBuild" not in info["Config"] or not info["Config"]["OnBuild"]


def test_build_with_network_mode(scenario: Scenario) -> None:
    client = scenario.client
    network = client.create_network(random_name())["Id"]
    scenario.tmp_networks.append(network)
    script = _script(f"FROM {BASE}", "RUN ip -o link show | grep -q eth0")
    tag = random_name()
    scenario.tmp_imgs.append(tag)
    # On the user network the step sees an interface; docker-py's scenario pings a
    # container there by name, which needs the engine's iptables (off on these engines).
    logs = _drain(client.build(fileobj=script, network_mode=network, tag=tag, decode=True))
    _no_error(logs)
    assert client.inspect_image(tag)

    script.seek(0)
    none_tag = random_name()
    scenario.tmp_imgs.append(none_tag)
    logs = _drain(
        client.build(fileobj=script, network_mode="none", tag=none_tag, nocache=True, decode=True)
    )
    assert "errorDetail" in logs[-1]
    assert logs[-1]["errorDetail"]["code"] == 1
    with pytest.raises(docker.errors.NotFound):
        client.inspect_image(none_tag)


def test_build_with_extra_hosts(scenario: Scenario) -> None:
    tag = random_name()
    scenario.tmp_imgs.append(tag)
    script = _script(
        f"FROM {BASE}",
        "RUN ping -c1 hello.world.test",
        "RUN ping -c1 extrahost.local.test",
        "RUN cp /etc/hosts /hosts-file",
    )
    stream = scenario.client.build(
        fileobj=script,
        tag=tag,
        extra_hosts={"extrahost.local.test": "127.0.0.1", "hello.world.test": "127.0.0.1"},
        decode=True,
        rm=True,
        network_mode="host",
    )
    for chunk in stream:
        if "errorDetail" in chunk:
            pytest.fail(str(chunk))
    assert scenario.client.inspect_image(tag)
    container = scenario.run_container(tag, "cat /hosts-file")
    logs = scenario.client.logs(container).decode("utf-8")
    assert "127.0.0.1\textrahost.local.test" in logs
    assert "127.0.0.1\thello.world.test" in logs


def test_build_squash_needs_an_experimental_engine(scenario: Scenario) -> None:
    # docker-py runs its squash scenario only on experimental engines; on these, both
    # clients meet the engine's refusal the same way.
    script = _script(f"FROM {BASE}", "RUN echo blah > /file_1")
    stream = scenario.client.build(fileobj=script, tag=random_name(), squash=True)
    with pytest.raises(docker.errors.APIError) as error:
        _drain(stream)
    assert error.value.is_client_error()
    assert "experimental" in error.value.explanation


def test_build_stderr_data(scenario: Scenario) -> None:
    control_chars = ["\x1b[91m", "\x1b[0m"]
    snippet = "Ancient Temple (Mystic Oriental Dream ~ Ancient Temple)"
    script = io.BytesIO(
        b"\n".join([f"FROM {BASE}".encode(), f"RUN sh -c \">&2 echo '{snippet}'\"".encode()])
    )
    stream = scenario.client.build(fileobj=script, decode=True, nocache=True, rm=True)
    lines = [chunk.get("stream") for chunk in stream]
    expected = f"{control_chars[0]}{snippet}\n{control_chars[1]}"
    assert any(line == expected for line in lines)


def test_build_gzip_encoding(scenario: Scenario, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nADD . /test")
    stream = scenario.client.build(path=str(tmp_path), decode=True, nocache=True, gzip=True)
    lines = list(stream)
    assert "Successfully built" in lines[-1]["stream"]


def test_build_with_dockerfile_empty_lines(scenario: Scenario, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\n")
    (tmp_path / ".dockerignore").write_text("\n".join(["   ", "", "\t\t", "\t     "]))
    stream = scenario.client.build(path=str(tmp_path), decode=True, nocache=True)
    lines = list(stream)
    assert "Successfully built" in lines[-1]["stream"]


def test_build_gzip_custom_encoding(scenario: Scenario) -> None:
    with pytest.raises(docker.errors.DockerException):
        scenario.client.build(path=".", gzip=True, encoding="text/html")


def test_build_invalid_platform(scenario: Scenario) -> None:
    script = io.BytesIO(f"FROM {BASE}\n".encode())
    with pytest.raises(docker.errors.APIError) as excinfo:
        _drain(scenario.client.build(fileobj=script, platform="foobar"))
    assert excinfo.value.is_error()
    assert "unknown operating system" in excinfo.exconly() or "invalid platform" in (
        excinfo.exconly()
    )


def _ls_after_build(scenario: Scenario, **kwargs: Any) -> list[bytes]:
    tag = random_name()
    scenario.tmp_imgs.append(tag)
    lines = list(scenario.client.build(tag=tag, decode=True, rm=True, **kwargs))
    assert "Successfully tagged" in lines[-1]["stream"]
    container = scenario.run_container(tag, "ls -a")
    listing: list[bytes] = scenario.client.logs(container).strip().split(b"\n")
    return sorted(listing)


_COPY_DOCKERFILE = f"FROM {BASE}\nCOPY . /src\nWORKDIR /src"


def test_build_out_of_context_dockerfile(scenario: Scenario, tmp_path: Path) -> None:
    base_dir = tmp_path / "base"
    write_context(base_dir, {"file.txt": "hello world", ".dockerignore": ".dockerignore\n"})
    df_name = tmp_path / "df" / "Dockerfile"
    write_context(df_name.parent, {"Dockerfile": _COPY_DOCKERFILE})
    listing = _ls_after_build(scenario, path=str(base_dir), dockerfile=str(df_name))
    assert listing == sorted([b".", b"..", b"file.txt"])


def test_build_in_context_dockerfile(scenario: Scenario, tmp_path: Path) -> None:
    write_context(tmp_path, {"file.txt": "hello world", "custom.dockerfile": _COPY_DOCKERFILE})
    listing = _ls_after_build(scenario, path=str(tmp_path), dockerfile="custom.dockerfile")
    assert listing == sorted([b".", b"..", b"file.txt", b"custom.dockerfile"])


def test_build_in_context_nested_dockerfile(scenario: Scenario, tmp_path: Path) -> None:
    write_context(
        tmp_path, {"file.txt": "hello world", "hello/world/custom.dockerfile": _COPY_DOCKERFILE}
    )
    listing = _ls_after_build(
        scenario, path=str(tmp_path), dockerfile="hello/world/custom.dockerfile"
    )
    assert listing == sorted([b".", b"..", b"file.txt", b"hello"])


def test_build_in_context_abs_dockerfile(scenario: Scenario, tmp_path: Path) -> None:
    write_context(tmp_path, {"file.txt": "hello world", "custom.dockerfile": _COPY_DOCKERFILE})
    listing = _ls_after_build(
        scenario, path=str(tmp_path), dockerfile=str(tmp_path / "custom.dockerfile")
    )
    assert listing == sorted([b".", b"..", b"file.txt", b"custom.dockerfile"])


def test_prune_builds(scenario: Scenario) -> None:
    prune_result = scenario.client.prune_builds()
    assert "SpaceReclaimed" in prune_result
    assert isinstance(prune_result["SpaceReclaimed"], int)


# -- models_images_test.py: client.images.build ----------------------------------------------


@contextlib.contextmanager
def _docker_py_leaks_collected() -> Iterator[None]:
    """Collect the sockets docker-py leaves behind here, so they cannot fail a later test.

    docker-py's `containers.run()` and a failing `images.build()` leave their unread
    responses to the garbage collector, which warns (an error under this suite's
    filterwarnings) whenever it runs. buildsdk's own leaks are not hidden: nothing of
    buildsdk is still open when this collects.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


def _run(client: Any, image: Any) -> bytes:
    """`client.containers.run(image, remove=True)`, docker-py's own call for both clients."""
    with _docker_py_leaks_collected():
        output: bytes = client.containers.run(image, remove=True)
    return output


def test_images_build(high_client: Any) -> None:
    image, _ = high_client.images.build(
        fileobj=io.BytesIO(f"FROM {BASE}\nCMD echo hello world".encode())
    )
    try:
        assert isinstance(image, docker.models.images.Image)
        assert _run(high_client, image) == b"hello world\n"
    finally:
        high_client.images.remove(image.id, force=True)


def test_images_build_with_error(high_client: Any) -> None:
    with _docker_py_leaks_collected(), pytest.raises(docker.errors.BuildError) as cm:
        high_client.images.build(fileobj=io.BytesIO(f"FROM {BASE}\nRUN exit 1".encode()))
    assert ("The command '/bin/sh -c exit 1' returned a non-zero code: 1") in cm.exconly()
    assert cm.value.build_log


def test_images_build_with_multiple_success(high_client: Any) -> None:
    tag = random_name()
    image, _ = high_client.images.build(
        tag=tag, fileobj=io.BytesIO(f"FROM {BASE}\nCMD echo hello world".encode())
    )
    try:
        assert _run(high_client, image) == b"hello world\n"
        assert f"{tag}:latest" in image.tags
    finally:
        high_client.images.remove(image.id, force=True)


def test_images_build_with_success_build_output(high_client: Any) -> None:
    tag = random_name()
    image, _ = high_client.images.build(
        tag=tag, fileobj=io.BytesIO(f"FROM {BASE}\nCMD echo Successfully built abcd1234".encode())
    )
    try:
        assert _run(high_client, image) == b"Successfully built abcd1234\n"
    finally:
        high_client.images.remove(image.id, force=True)


# -- where compat deliberately differs -------------------------------------------------------


@pytest.fixture
def api(engines: Engines, docker_config: Path) -> Iterator[compat.APIClient]:
    """A compat client on the plain dockerd, reading the test's Docker configuration."""
    with compat.APIClient(base_url=_dockerd(engines), version="auto") as client:
        yield client


def test_compat_builds_from_stringio(api: compat.APIClient) -> None:
    # docker-py refuses io.StringIO ("use io.BytesIO"; its scenario is disabled); compat
    # reads it as UTF-8 text.
    tag = random_name()
    messages = list(
        api.build(fileobj=io.StringIO(f"FROM {BASE}\nLABEL from=stringio\n"), tag=tag, decode=True)
    )
    _no_error(messages)
    try:
        assert api.inspect_image(tag)["Config"]["Labels"] == {"from": "stringio"}
    finally:
        api.remove_image(tag)


def test_compat_refuses_a_malformed_platform_before_sending(api: compat.APIClient) -> None:
    # docker-py sends it and raises the engine's APIError when the stream is read; compat
    # checks the os[/arch[/variant]] grammar first and raises InvalidArgument, which is a
    # docker.errors.DockerException but not an APIError.
    with pytest.raises(docker.errors.InvalidArgument, match="platform"):
        api.build(fileobj=io.BytesIO(f"FROM {BASE}\n".encode()), platform="foo bar")


def test_compat_images_build_returns_the_id_and_a_list(api: compat.APIClient) -> None:
    image_id, log = api.images_build(fileobj=io.BytesIO(f"FROM {BASE}\n".encode()), quiet=True)
    assert log == [{"stream": f"{image_id}\n"}]
    assert api.inspect_image(image_id)["Id"] == image_id


def _guide_examples(tab: str) -> list[str]:
    """The Python blocks under `=== "<tab>"` in the migration guide, dedented."""
    guide = (
        Path(__file__).resolve().parents[2] / "docs" / "migrating-from-docker-py.md"
    ).read_text()
    pattern = re.compile(rf'=== "{re.escape(tab)}"\n\n    ```python\n(.*?)\n    ```', re.DOTALL)
    return [textwrap.dedent(block) for block in pattern.findall(guide)]


@pytest.mark.parametrize("tab", ["docker-py", "buildsdk.compat"])
def test_the_migration_guide_s_one_import_examples_run(
    engines: Engines,
    docker_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tab: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = _dockerd(engines)
    monkeypatch.setenv("DOCKER_HOST", host)
    monkeypatch.chdir(tmp_path)
    tag = random_name()
    write_context(
        tmp_path / "app", {"Dockerfile": f'FROM {BASE}\nCMD ["echo", "from the guide"]\n'}
    )
    examples = _guide_examples(tab)[:2]
    assert len(examples) == 2
    try:
        for example in examples:
            code = example.replace("unix:///var/run/docker.sock", host).replace("app:1", tag)
            with _docker_py_leaks_collected():
                exec(compile(code, f"<migration guide, {tab}>", "exec"), {})
    finally:
        cleaner = docker.APIClient(base_url=host, version="auto")
        with contextlib.suppress(docker.errors.NotFound):
            cleaner.remove_image(tag, force=True)
        cleaner.close()
    out = capsys.readouterr().out
    assert "Successfully tagged" in out
    assert "SpaceReclaimed" in out
    assert "from the guide" in out
