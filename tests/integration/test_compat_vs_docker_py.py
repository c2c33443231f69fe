"""`buildsdk.compat.APIClient` and docker-py's `APIClient`, side by side on the same dockerd.

Each test makes the same `build(...)` call through both clients against the real engine and
compares what a user of docker-py can see: the messages the stream yields (same keys, same
texts once image and container ids are masked), the image that was built (labels, env, cmd
read back with `docker.APIClient.inspect_image`), and the errors. Builds use `nocache=True`
so the second client does not just replay the first one's cache, and `rm=True` unless the
test is about `rm`, so no intermediate containers pile up on the shared engine.

Both clients read an empty Docker configuration (`DOCKER_CONFIG` points at a temporary
directory), so a developer's credentials or proxies cannot change the requests.
"""

from __future__ import annotations

import base64
import gc
import io
import json
import re
import tarfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pydantic
import pytest

from buildsdk import compat
from buildsdk.errors import APIError, BuildSDKError
from tests.integration.client.conftest import HTTPFiles, http_files
from tests.integration.conftest import DockerEngine, Engines, engines_on_matrix, engines_unavailable

__all__ = [
    "Pair",
    "build_both",
    "comparable",
    "config_of",
    "decode_raw",
    "docker_config",
    "image_id_of",
    "masked",
    "pair",
    "unique_tag",
    "write_context",
]


@pytest.fixture(scope="session")
def engines(all_engines: Engines, docker_engine: DockerEngine) -> Engines:
    """Every test here runs on each Docker engine of the matrix."""
    return engines_on_matrix(all_engines, docker_engine)


pytestmark = [pytest.mark.engine, pytest.mark.dockerd]

# A fixture of the client tests, shared here: naming it makes pytest see it in this module.
_ = http_files

BASE = "busybox:latest"
_HEX_ID = re.compile(r"\b[0-9a-f]{12}\b|[0-9a-f]{64}")


def unique_tag(name: str) -> str:
    """A tag no other test run uses, so parallel runs cannot see each other's images."""
    return f"buildsdk-compat-{name}:{uuid.uuid4().hex[:10]}"


def write_context(root: Path, files: dict[str, str]) -> str:
    """Write `files` (relative name -> text) under `root` and return it as a string path."""
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return str(root)


def masked(value: Any) -> Any:
    """`value` with every 12- or 64-digit hex id replaced by `<id>`, recursively."""
    if isinstance(value, str):
        return _HEX_ID.sub("<id>", value)
    if isinstance(value, dict):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def comparable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with ids masked and adjacent `stream` texts joined.

    A RUN step's output reaches the engine in pieces whose boundaries depend on timing, so
    two runs of the same step may split the same text into different messages.
    """
    out: list[dict[str, Any]] = []
    for message in masked(messages):
        status = message.get("status")
        if isinstance(status, str):
            # Whether a pull found the image already there depends on which client pulled
            # first, not on the client.
            status = status.replace("Status: Downloaded newer image for ", "Status: pulled ")
            message = {
                **message,
                "status": status.replace("Status: Image is up to date for ", "Status: pulled "),
            }
        if set(message) == {"stream"} and out and set(out[-1]) == {"stream"}:
            out[-1] = {"stream": out[-1]["stream"] + message["stream"]}
        else:
            out.append(message)
    return out


def decode_raw(chunks: list[bytes]) -> list[dict[str, Any]]:
    """Decode docker-py's raw items, which may split or join messages, into the messages."""
    text = b"".join(chunks).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def image_id_of(messages: list[dict[str, Any]]) -> str:
    """The image id the stream reported in its `aux` message."""
    ids = [m["aux"]["ID"] for m in messages if isinstance(m.get("aux"), dict) and "ID" in m["aux"]]
    assert len(ids) == 1, messages
    return str(ids[0])


def config_of(api: docker.APIClient, image: str) -> dict[str, Any]:
    """The parts of an image's config a Dockerfile sets, read through docker-py."""
    config = api.inspect_image(image)["Config"]
    return {key: config.get(key) for key in ("Labels", "Env", "Cmd", "Entrypoint", "WorkingDir")}


class Pair:
    """A `buildsdk.compat.APIClient` and a docker-py `APIClient` on the same engine."""

    def __init__(self, ours: compat.APIClient, theirs: docker.APIClient) -> None:
        self.ours = ours
        self.theirs = theirs


@pytest.fixture
def docker_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """An empty Docker configuration directory, used by both clients through DOCKER_CONFIG."""
    directory = tmp_path_factory.mktemp("docker-config")
    (directory / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory


@pytest.fixture
def pair(engines: Engines, docker_config: Path) -> Iterator[Pair]:
    """Both clients on the plain dockerd, the API version negotiated by each."""
    if engines.dockerd_host is None:
        engines_unavailable("dockerd was not started (no BUILDSDK_DOCKERD_HOST)")
    theirs = docker.APIClient(base_url=engines.dockerd_host, version="auto")
    ours = compat.APIClient(base_url=engines.dockerd_host, version="auto")
    try:
        yield Pair(ours, theirs)
    finally:
        ours.close()
        theirs.close()


def build_both(pair: Pair, **kwargs: Any) -> tuple[list[Any], list[Any]]:
    """Run the same `build(**kwargs)` through both clients; return (ours, docker-py's) items.

    A `fileobj` given as bytes is wrapped in a fresh BytesIO for each client. Both build
    without the cache unless the test says otherwise: the second build would otherwise
    reuse the first one's layers and print other lines.
    """
    results: list[list[Any]] = []
    for client in (pair.ours, pair.theirs):
        call = {"nocache": True, **kwargs}
        if isinstance(call.get("fileobj"), bytes):
            call["fileobj"] = io.BytesIO(call["fileobj"])
        results.append(list(client.build(**call)))
    return results[0], results[1]


_CONFIG_DOCKERFILE = f"""\
FROM {BASE}
LABEL org.example.app=demo org.example.team="build tools"
ENV GREETING=hello PATH_EXTRA=/opt/bin
WORKDIR /srv
COPY greeting.txt /srv/
RUN cat /srv/greeting.txt
CMD ["cat", "/srv/greeting.txt"]
"""


def test_path_and_tag_give_the_same_stream_and_image(pair: Pair, tmp_path: Path) -> None:
    context = write_context(
        tmp_path, {"Dockerfile": _CONFIG_DOCKERFILE, "greeting.txt": "hi there\n"}
    )
    tag = unique_tag("path")
    ours, theirs = build_both(
        pair, path=context, tag=tag, decode=True, nocache=True, rm=True, network_mode="host"
    )
    assert comparable(ours) == comparable(theirs)
    assert {"stream": "hi there\n"} in ours
    assert {"stream": f"Successfully tagged {tag}\n"} in ours
    ours_config = config_of(pair.theirs, image_id_of(ours))
    assert ours_config == config_of(pair.theirs, image_id_of(theirs))
    assert ours_config["Labels"] == {"org.example.app": "demo", "org.example.team": "build tools"}
    assert ours_config["Cmd"] == ["cat", "/srv/greeting.txt"]
    assert ours_config["WorkingDir"] == "/srv"
    assert "GREETING=hello" in ours_config["Env"]
    # The tag went to the image built last (docker-py's).
    assert pair.theirs.inspect_image(tag)["Id"] == image_id_of(theirs)


def test_raw_items_are_whole_messages_with_the_same_content(pair: Pair, tmp_path: Path) -> None:
    context = write_context(tmp_path, {"Dockerfile": f"FROM {BASE}\nRUN echo one && echo two\n"})
    ours, theirs = build_both(pair, path=context, nocache=True, rm=True, network_mode="host")
    assert all(isinstance(item, bytes) for item in ours + theirs)
    # Ours: one message per item, exactly as the engine framed it.
    for item in ours:
        assert item.endswith(b"\r\n")
        assert isinstance(json.loads(item), dict)
    assert comparable(decode_raw(ours)) == comparable(decode_raw(theirs))
    assert "one\ntwo\n" in "".join(m.get("stream", "") for m in decode_raw(ours))


def test_fileobj_dockerfile(pair: Pair) -> None:
    dockerfile = f'FROM {BASE}\nLABEL from=fileobj\nCMD ["true"]\n'.encode()
    ours, theirs = build_both(pair, fileobj=dockerfile, decode=True, nocache=True, rm=True)
    assert comparable(ours) == comparable(theirs)
    assert config_of(pair.theirs, image_id_of(ours)) == config_of(pair.theirs, image_id_of(theirs))
    assert config_of(pair.theirs, image_id_of(ours))["Labels"] == {"from": "fileobj"}


def _tar(files: dict[str, bytes], *, gz: bool = False) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gz else "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize(
    ("gz", "encoding"), [(False, None), (True, "gzip")], ids=["plain", "gzip-encoding"]
)
def test_custom_context_tar(pair: Pair, gz: bool, encoding: str | None) -> None:
    archive = _tar(
        {
            "Dockerfile": f"FROM {BASE}\nCOPY data.txt /data.txt\nRUN cat /data.txt\n".encode(),
            "data.txt": b"from the custom tar\n",
        },
        gz=gz,
    )
    ours, theirs = build_both(
        pair,
        fileobj=archive,
        custom_context=True,
        encoding=encoding,
        decode=True,
        nocache=True,
        rm=True,
        network_mode="host",
    )
    assert comparable(ours) == comparable(theirs)
    assert {"stream": "from the custom tar\n"} in ours


def test_buildargs_labels_target(pair: Pair, tmp_path: Path) -> None:
    dockerfile = (
        f'FROM {BASE} AS first\nARG WHO=nobody\nRUN echo "hello $WHO"\nLABEL stage=first\n'
        f"FROM first\nRUN echo never-run\nLABEL stage=second\n"
    )
    context = write_context(tmp_path, {"Dockerfile": dockerfile})
    ours, theirs = build_both(
        pair,
        path=context,
        buildargs={"WHO": "compat"},
        labels={"org.example.k": "v"},
        target="first",
        decode=True,
        nocache=True,
        rm=True,
        network_mode="host",
    )
    assert comparable(ours) == comparable(theirs)
    assert {"stream": "hello compat\n"} in ours
    assert not any("never-run" in m.get("stream", "") for m in ours)
    labels = config_of(pair.theirs, image_id_of(ours))["Labels"]
    assert labels == {"stage": "first", "org.example.k": "v"}
    assert labels == config_of(pair.theirs, image_id_of(theirs))["Labels"]


def test_nocache_false_uses_the_cache_like_docker_py(pair: Pair, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    context = write_context(tmp_path, {"Dockerfile": f"FROM {BASE}\nRUN echo {marker}\n"})
    list(pair.theirs.build(path=context, rm=True, network_mode="host"))  # warm the cache
    ours, theirs = build_both(
        pair, path=context, decode=True, nocache=False, rm=True, network_mode="host"
    )
    assert comparable(ours) == comparable(theirs)
    assert {"stream": " ---> Using cache\n"} in ours
    assert image_id_of(ours) == image_id_of(theirs)
    ours, theirs = build_both(
        pair, path=context, decode=True, nocache=True, rm=True, network_mode="host"
    )
    assert comparable(ours) == comparable(theirs)
    assert {"stream": " ---> Using cache\n"} not in ours


def _run_containers(messages: list[dict[str, Any]]) -> list[str]:
    found = (re.match(r" ---> Running in ([0-9a-f]{12})\n", m.get("stream", "")) for m in messages)
    return [match.group(1) for match in found if match]


@pytest.mark.parametrize(("rm", "forcerm"), [(False, False), (True, False), (False, True)], ids=str)
def test_rm_and_forcerm_keep_or_remove_containers_alike(
    pair: Pair, tmp_path: Path, rm: bool, forcerm: bool
) -> None:
    context = write_context(tmp_path, {"Dockerfile": f"FROM {BASE}\nRUN echo step\n"})
    # rm is left out when False: docker-py's default (keep containers) is also compat's.
    kwargs: dict[str, Any] = {"rm": True} if rm else {}
    ours, theirs = build_both(
        pair,
        path=context,
        forcerm=forcerm,
        decode=True,
        nocache=True,
        network_mode="host",
        **kwargs,
    )
    assert comparable(ours) == comparable(theirs)
    for messages in (ours, theirs):
        containers = _run_containers(messages)
        assert containers
        kept = []
        for container in containers:
            try:
                pair.theirs.inspect_container(container)
            except docker.errors.NotFound:
                continue
            kept.append(container)
            pair.theirs.remove_container(container)
        assert bool(kept) == (not rm and not forcerm)


def test_failed_build_yields_its_error_like_docker_py(pair: Pair, tmp_path: Path) -> None:
    context = write_context(tmp_path, {"Dockerfile": f"FROM {BASE}\nRUN echo failing; exit 7\n"})
    for decode in (True, False):
        ours, theirs = build_both(
            pair, path=context, decode=decode, nocache=True, rm=True, network_mode="host"
        )
        if not decode:
            ours, theirs = decode_raw(ours), decode_raw(theirs)
        assert comparable(ours) == comparable(theirs)
        last = ours[-1]
        assert last["errorDetail"] == {
            "code": 7,
            "message": "The command '/bin/sh -c echo failing; exit 7' returned a non-zero code: 7",
        }
        assert last["error"] == last["errorDetail"]["message"]


def test_http_error_is_raised_on_first_iteration_like_docker_py(pair: Pair) -> None:
    # A custom context without the named Dockerfile: the engine answers with an HTTP error.
    archive = _tar({"other.txt": b"x"})
    ours = pair.ours.build(fileobj=io.BytesIO(archive), custom_context=True, dockerfile="Nope")
    theirs = pair.theirs.build(fileobj=io.BytesIO(archive), custom_context=True, dockerfile="Nope")
    with pytest.raises(docker.errors.APIError) as their_error:
        next(iter(theirs))
    with pytest.raises(docker.errors.APIError) as our_error:
        next(iter(ours))
    assert isinstance(our_error.value, APIError)
    assert type(their_error.value) in type(our_error.value).__mro__
    ours_seen: Any = our_error.value  # docker-py's attributes are not typed
    theirs_seen: Any = their_error.value
    for name in ("status_code", "explanation"):
        assert getattr(ours_seen, name) == getattr(theirs_seen, name), name
    assert ours_seen.response.status_code == theirs_seen.response.status_code
    assert ours_seen.response.reason == theirs_seen.response.reason
    assert ours_seen.is_client_error() == theirs_seen.is_client_error()
    assert ours_seen.is_server_error() == theirs_seen.is_server_error()
    # The same text but for the query string, which docker-py puts in the URL.
    their_text = re.sub(r"\?[^:]*:", ":", str(theirs_seen), count=1)
    assert str(ours_seen) == their_text


def test_image_not_found_is_the_same_class(pair: Pair) -> None:
    dockerfile = b"FROM buildsdk-compat-nosuch/image:404\n"
    errors = []
    for client in (pair.ours, pair.theirs):
        messages = list(client.build(fileobj=io.BytesIO(dockerfile), decode=True, pull=True))
        errors.append(messages[-1].get("error"))
    assert errors[0] == errors[1]
    assert errors[0]


def test_quiet_yields_only_the_image_id(pair: Pair, tmp_path: Path) -> None:
    context = write_context(tmp_path, {"Dockerfile": f"FROM {BASE}\nLABEL quiet=yes\n"})
    ours, theirs = build_both(pair, path=context, quiet=True, decode=True, nocache=True, rm=True)
    assert comparable(ours) == comparable(theirs) == [{"stream": "sha256:<id>\n"}]


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_dockerfile_option(pair: Pair, tmp_path: Path, where: str) -> None:
    context = tmp_path / "ctx"
    write_context(context, {"keep.txt": "kept\n"})
    dockerfile = f"FROM {BASE}\nCOPY . /ctx/\nRUN echo listing: $(ls -A /ctx)\n"
    if where == "inside":
        write_context(context, {"build/Custom.dockerfile": dockerfile})
        name = "build/Custom.dockerfile"
    else:
        write_context(tmp_path, {"elsewhere/Dockerfile": dockerfile})
        name = "../elsewhere/Dockerfile"
    ours, theirs = build_both(
        pair,
        path=str(context),
        dockerfile=name,
        decode=True,
        nocache=True,
        rm=True,
        network_mode="host",
    )
    assert comparable(ours) == comparable(theirs)
    # Inside, the Dockerfile's directory is part of the context; outside, the Dockerfile
    # travels under a hidden name that the engine removes again, so only the context is left.
    expected = "listing: build keep.txt\n" if where == "inside" else "listing: keep.txt\n"
    assert {"stream": expected} in ours


def test_container_limits_extra_hosts_network_mode(pair: Pair, tmp_path: Path) -> None:
    dockerfile = (
        f"FROM {BASE}\n"
        "RUN grep compat-test /etc/hosts"
        " && (cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
        " || cat /sys/fs/cgroup/memory.max)"
        " && tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '\n"
    )
    context = write_context(tmp_path, {"Dockerfile": dockerfile})
    ours, theirs = build_both(
        pair,
        path=context,
        container_limits={"memory": 64 * 1024 * 1024, "memswap": -1},
        extra_hosts={"compat-test.internal": "10.9.8.7"},
        network_mode="none",
        decode=True,
        nocache=True,
        rm=True,
    )
    assert comparable(ours) == comparable(theirs)
    text = "".join(m.get("stream", "") for m in ours)
    assert "10.9.8.7\tcompat-test.internal\n" in text
    assert f"{64 * 1024 * 1024}\n" in text
    assert "lo\n" in text
    assert "eth0" not in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"tag": "Not A Tag"},
        {"container_limits": {"cpus": 2}},
        {"gzip": True, "encoding": "text/html"},
        {"custom_context": True},
        {"path": "/nonexistent/buildsdk-context"},
    ],
    ids=["no-source", "bad-tag", "limits-key", "gzip-encoding", "custom-no-fileobj", "no-dir"],
)
def test_bad_arguments_raise_docker_py_s_class(
    pair: Pair, tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    if kwargs and "path" not in kwargs:
        kwargs = {"path": str(tmp_path), **kwargs}
    with pytest.raises(Exception) as their_error:  # docker-py decides which class
        pair.theirs.build(**kwargs)
    expected = type(their_error.value)
    assert expected in (TypeError, docker.errors.DockerException)
    with pytest.raises(expected) as our_error:
        pair.ours.build(**kwargs)
    assert isinstance(our_error.value, BuildSDKError)


def test_values_docker_py_sends_are_refused_before_sending(pair: Pair, tmp_path: Path) -> None:
    # docker-py sends a non-string build arg and the engine refuses it mid-upload; compat
    # refuses it before connecting, with a DockerException that names the option.
    with pytest.raises(docker.errors.DockerException, match="buildargs") as error:
        pair.ours.build(path=str(tmp_path), buildargs={"N": 1})  # type: ignore[dict-item]
    assert isinstance(error.value.__cause__, pydantic.ValidationError)


def test_tls_engine_with_docker_py_tls_config(
    all_engines: Engines, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engines = all_engines  # the TLS dockerd is Docker 20.10: not one test per matrix engine
    if engines.dockerd_tls_host is None or engines.dockerd_tls is None:
        engines_unavailable("the TLS dockerd was not started (no BUILDSDK_DOCKERD_TLS_*)")
    # These make requests (docker-py) trust another CA bundle instead of its ca_cert.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    files = engines.dockerd_tls
    tls = docker.tls.TLSConfig(
        client_cert=(str(files.cert), str(files.key)), ca_cert=str(files.ca), verify=True
    )
    theirs = docker.APIClient(base_url=engines.dockerd_tls_host, tls=tls, version="auto")
    ours = compat.APIClient(base_url=engines.dockerd_tls_host, tls=tls, version="auto")
    try:
        dockerfile = f"FROM {BASE}\nLABEL over=tls\n".encode()
        messages = []
        for client in (ours, theirs):
            messages.append(
                list(
                    client.build(fileobj=io.BytesIO(dockerfile), decode=True, rm=True, nocache=True)
                )
            )
        assert comparable(messages[0]) == comparable(messages[1])
        assert theirs.inspect_image(image_id_of(messages[0]))["Config"]["Labels"] == {"over": "tls"}
    finally:
        ours.close()
        theirs.close()
    # Without the CA, verification fails for compat as it does for docker-py.
    with (
        compat.APIClient(base_url=engines.dockerd_tls_host, tls=True) as unverified,
        pytest.raises(BuildSDKError),
    ):
        unverified.build(fileobj=io.BytesIO(b"FROM busybox\n"))


def test_prune_builds_returns_docker_py_s_dict(pair: Pair) -> None:
    # A filter that matches nothing recent, so builds of other tests keep their cache.
    theirs = pair.theirs.prune_builds(filters={"until": "87600h"}, keep_storage=1, all=True)
    ours = pair.ours.prune_builds(filters={"until": "87600h"}, keep_storage=1, all=True)
    assert set(ours) == set(theirs) == {"CachesDeleted", "SpaceReclaimed"}
    assert isinstance(ours["SpaceReclaimed"], int)
    assert ours["CachesDeleted"] is None or isinstance(ours["CachesDeleted"], list)


def test_images_build_matches_docker_py_images_build(
    engines: Engines, pair: Pair, tmp_path: Path
) -> None:
    context = write_context(tmp_path, {"Dockerfile": f"FROM {BASE}\nRUN echo built\n"})
    theirs = docker.DockerClient(base_url=engines.dockerd_host, version="auto")
    ours = compat.DockerClient(base_url=engines.dockerd_host, version="auto")
    try:
        list(pair.theirs.build(path=context, rm=True, network_mode="host"))  # warm the cache
        their_image, their_log = theirs.images.build(path=context, rm=True, network_mode="host")
        our_image, our_log = ours.images.build(path=context, rm=True, network_mode="host")
        assert type(our_image) is type(their_image)
        assert our_image == their_image  # cached: the same image
        assert (our_image.id, our_image.tags, our_image.labels) == (
            their_image.id,
            their_image.tags,
            their_image.labels,
        )
        our_messages = list(our_log)
        assert comparable(our_messages) == comparable(list(their_log))
        image_id, api_log = pair.ours.images_build(path=context, rm=True, network_mode="host")
        assert image_id == their_image.id
        assert comparable(api_log) == comparable(our_messages)

        failing = write_context(tmp_path / "bad", {"Dockerfile": f"FROM {BASE}\nRUN exit 1\n"})
        with warnings.catch_warnings():
            # docker-py leaves the failed build's response to the garbage collector.
            warnings.simplefilter("ignore", ResourceWarning)
            with pytest.raises(docker.errors.BuildError) as their_error:
                theirs.images.build(path=failing, rm=True, network_mode="host")
            gc.collect()
        with pytest.raises(docker.errors.BuildError) as our_error:
            ours.images.build(path=failing, rm=True, network_mode="host")
        assert isinstance(our_error.value, compat.BuildError)
        assert our_error.value.msg == their_error.value.msg
        assert str(our_error.value) == str(their_error.value)
        assert comparable(list(our_error.value.build_log)) == comparable(
            list(their_error.value.build_log)
        )
        # Everything that is not a build is docker-py's own, on the same engine.
        with pytest.raises(docker.errors.ImageNotFound) as missing:
            ours.images.get("buildsdk-compat-nosuch:404")
        assert type(missing.value) is docker.errors.ImageNotFound
        assert ours.api.inspect_image(their_image.id)["Id"] == their_image.id
    finally:
        ours.close()
        theirs.close()


def test_remote_context_url(pair: Pair, http_files: HTTPFiles) -> None:
    name = f"context-{uuid.uuid4().hex[:8]}.tar"
    archive = _tar(
        {
            "Dockerfile": f"FROM {BASE}\nCOPY note.txt /note.txt\nRUN cat /note.txt\n".encode(),
            "note.txt": b"fetched by the engine\n",
        }
    )
    (http_files.root / name).write_bytes(archive)
    ours, theirs = build_both(
        pair, path=http_files.url(name), decode=True, nocache=True, rm=True, network_mode="host"
    )
    assert comparable(ours) == comparable(theirs)
    assert "fetched by the engine\n" in "".join(m.get("stream", "") for m in ours)


def test_gzip_and_platform(pair: Pair, tmp_path: Path) -> None:
    context = write_context(
        tmp_path, {"Dockerfile": f"FROM {BASE}\nCOPY a.txt /a.txt\n", "a.txt": "a\n"}
    )
    ours, theirs = build_both(
        pair, path=context, gzip=True, platform="linux/amd64", decode=True, nocache=True, rm=True
    )
    assert comparable(ours) == comparable(theirs)
    image = pair.theirs.inspect_image(image_id_of(ours))
    assert (image["Os"], image["Architecture"]) == ("linux", "amd64")


@pytest.mark.registry
def test_private_base_image_with_config_json_credentials(
    engines: Engines, pair: Pair, docker_config: Path
) -> None:
    if not (engines.registry_image and engines.registry_user and engines.registry_password):
        engines_unavailable("the registry was not started (no BUILDSDK_REGISTRY_*)")
    dockerfile = f"FROM {engines.registry_image}\nLABEL private=yes\n".encode()
    # No credentials: the engine's pull fails in the stream, for both, with the same words.
    ours, theirs = build_both(pair, fileobj=dockerfile, pull=True, decode=True, rm=True)
    assert comparable(ours) == comparable(theirs)
    assert "no basic auth credentials" in ours[-1]["error"]
    # `docker login`'s config.json entry: both send it in X-Registry-Config. The clients
    # read the file when they build, so the same clients now pull.
    token = base64.b64encode(
        f"{engines.registry_user}:{engines.registry_password}".encode()
    ).decode()
    registry = engines.registry_image.split("/", 1)[0]
    (docker_config / "config.json").write_text(json.dumps({"auths": {registry: {"auth": token}}}))
    # The first pull of an engine without the layers (Docker 26 starts with none; 20.10 got
    # them when it pushed the image) reports downloads, any later one "Image is up to date":
    # one pull first, so both clients meet the same engine.
    list(pair.theirs.build(fileobj=io.BytesIO(dockerfile), pull=True, decode=True, rm=True))
    ours, theirs = build_both(pair, fileobj=dockerfile, pull=True, decode=True, rm=True)
    assert comparable(ours) == comparable(theirs)
    assert "error" not in ours[-1]
    assert config_of(pair.theirs, image_id_of(ours))["Labels"] == {"private": "yes"}


@pytest.mark.dockerd_tls
def test_from_env_on_the_tls_engine_builds_and_runs_like_docker_py(
    all_engines: Engines, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engines = all_engines  # the TLS dockerd is Docker 20.10: not one test per matrix engine
    if engines.dockerd_tls_host is None or engines.dockerd_tls is None:
        engines_unavailable("the TLS dockerd was not started (no BUILDSDK_DOCKERD_TLS_*)")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("DOCKER_HOST", engines.dockerd_tls_host)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(engines.dockerd_tls.ca.parent))
    outputs = []
    for module in (docker, compat):
        client: Any = module.from_env(version="auto")
        try:
            image, _ = client.images.build(
                fileobj=io.BytesIO(f"FROM {BASE}\nCMD echo over tls".encode()), rm=True
            )
            # The container calls go through docker-py's own client, which compat made
            # from the TLS settings it found in the environment.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                outputs.append(client.containers.run(image, remove=True))
                gc.collect()
            client.images.remove(image.id, force=True)
        finally:
            client.close()
    assert outputs == [b"over tls\n", b"over tls\n"]
