"""`oci-layout://DIR` named contexts on Docker 26.1, with `Client` and `AsyncClient`.

The layout is made the way a user makes one: an image built from a `FROM scratch` stage
with a file, written by `OCIOutput(tar=False)` on the containerd image store. A second
build then starts `FROM base` with `base=oci-layout://DIR[:TAG]`, and what is checked is
the filesystem it exported (a local directory output): the file from the layout is there.
The layout directory is compared before and after: the engine only read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from buildsdk import BuildOptions, ContextError, UnsupportedOption
from buildsdk._named_contexts import oci_store_id
from buildsdk.outputs import LocalOutput, OCIOutput
from tests.integration.conftest import Engines, build_result, client_settings, docker_engine_of

pytestmark = [pytest.mark.engine, pytest.mark.dockerd]

FLAVORS = ("sync", "async")
REF = "org.opencontainers.image.ref.name"


def _context(root: Path, dockerfile: str, **files: str) -> Path:
    root.mkdir()
    (root / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _make_layout(
    engines: Engines,
    tmp_path: Path,
    text: str,
    names: tuple[str, ...] = (),
    layout_name: str = "layout",
) -> Path:
    """An OCI layout directory holding a FROM scratch image with /base.txt = `text`, named
    `names` (the engine writes them as full references; none: `latest`)."""
    engine = docker_engine_of(engines, "dockerd26-containerd")
    context = _context(
        tmp_path / f"base-{text}", "FROM scratch\nCOPY base.txt /base.txt\n", **{"base.txt": text}
    )
    layout = tmp_path / layout_name
    options = BuildOptions(
        path=str(context),
        version="2",
        network_mode=engines.dockerd_network,
        outputs=[OCIOutput(dest=str(layout), tar=False, name=names)],
    )
    build_result("sync", client_settings(engines, "dockerd", engine), options)
    assert (layout / "index.json").is_file()
    return layout


def _from_base(engines: Engines, tmp_path: Path, value: str, out: Path) -> BuildOptions:
    context = _context(
        tmp_path / "ctx", "FROM base\nCOPY extra.txt /extra.txt\n", **{"extra.txt": "extra"}
    )
    return BuildOptions(
        path=str(context),
        version="2",
        network_mode=engines.dockerd_network,
        build_contexts={"base": value},
        outputs=[LocalOutput(dest=str(out))],
    )


@pytest.mark.docker26_containerd
@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("suffix", ["", ":latest"])
def test_from_an_oci_layout_context_on_the_containerd_store(
    flavor: str, suffix: str, all_engines: Engines, tmp_path: Path
) -> None:
    layout = _make_layout(all_engines, tmp_path, flavor)
    before = _snapshot(layout)
    out = tmp_path / "out"
    options = _from_base(all_engines, tmp_path, f"oci-layout://{layout}{suffix}", out)
    engine = docker_engine_of(all_engines, "dockerd26-containerd")
    build_result(flavor, client_settings(all_engines, "dockerd", engine), options)
    assert (out / "base.txt").read_text() == flavor
    assert (out / "extra.txt").read_text() == "extra"
    # The engine only read the layout: not a byte of it changed, nothing was added.
    assert _snapshot(layout) == before


@pytest.mark.docker26_containerd
@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_tag_chooses_among_the_images_of_a_layout(
    flavor: str, all_engines: Engines, tmp_path: Path
) -> None:
    layout = _make_layout(all_engines, tmp_path, "first", ("first",))
    _make_layout(all_engines, tmp_path, "second", ("second",))
    # The engine names them as full references (docker.io/library/first:latest), which no
    # tag can name; tools such as skopeo name them with bare tags, as here.
    index_file = layout / "index.json"
    index = json.loads(index_file.read_text())
    for entry in index["manifests"]:
        name = entry["annotations"][REF]
        entry["annotations"][REF] = name.removeprefix("docker.io/library/").split(":")[0]
    index_file.write_text(json.dumps(index))
    value = f"oci-layout://{layout}:first"
    out = tmp_path / "out"
    options = _from_base(all_engines, tmp_path, value, out)
    engine = docker_engine_of(all_engines, "dockerd26-containerd")
    build_result(flavor, client_settings(all_engines, "dockerd", engine), options)
    assert (out / "base.txt").read_text() == "first"


@pytest.mark.docker26_containerd
@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_unknown_tag_is_refused_before_the_build(
    flavor: str, all_engines: Engines, tmp_path: Path
) -> None:
    # Two names: with a single manifest buildx (and buildsdk) would take it whatever the tag.
    layout = _make_layout(all_engines, tmp_path, flavor, ("v1", "v0"))
    options = _from_base(all_engines, tmp_path, f"oci-layout://{layout}:v2", tmp_path / "out")
    engine = docker_engine_of(all_engines, "dockerd26-containerd")
    names = "docker.io/library/v0:latest, docker.io/library/v1:latest"
    with pytest.raises(ContextError) as caught:
        build_result(flavor, client_settings(all_engines, "dockerd", engine), options)
    assert f"could not be resolved: no manifest named 'v2' in {layout}/index.json" in str(
        caught.value
    )
    assert f"(names there: {names})" in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.docker26
@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_classic_store_is_refused_before_the_build(
    flavor: str, all_engines: Engines, tmp_path: Path
) -> None:
    # Sent anyway (as buildx does), Docker 26.1's classic store fails the build with
    # "unknown scheme oci-layout: not found"; buildsdk says why before a session opens.
    layout = _make_layout(all_engines, tmp_path, flavor)
    options = _from_base(all_engines, tmp_path, f"oci-layout://{layout}", tmp_path / "out")
    engine = docker_engine_of(all_engines, "dockerd26")
    with pytest.raises(UnsupportedOption) as caught:
        build_result(flavor, client_settings(all_engines, "dockerd", engine), options)
    assert "an oci-layout:// context needs the containerd image store" in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.docker26_containerd
def test_the_dry_run_shows_the_resolved_layout_and_its_read_only_store(
    all_engines: Engines, tmp_path: Path
) -> None:
    engine = docker_engine_of(all_engines, "dockerd26-containerd")
    context = _context(tmp_path / "ctx", "FROM base\n")
    digest = "sha256:" + "a" * 64
    layout = tmp_path / "l"
    layout.mkdir()
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1}
    entry.update(digest=digest, annotations={REF: "v1"})
    index = {"schemaVersion": 2, "manifests": [entry]}
    (layout / "index.json").write_text(json.dumps(index))
    argv = ["-H", engine.host, "--dry-run", "--build-context", "base=oci-layout://l:v1"]
    done = subprocess.run(
        [sys.executable, "-m", "buildsdk", "build", *argv, str(context)],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    store_id = oci_store_id("base")
    assert f'"context:base": "oci-layout://{store_id}:v1@{digest}"' in done.stdout
    assert f"content store oci:{store_id}: {layout} (read-only)\n" in done.stdout
    assert "/containerd.services.content.v1.Content/Read\n" in done.stdout
