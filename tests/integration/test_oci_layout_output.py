"""An OCI layout directory output (`type=oci,dest=DIR,tar=false`) on Docker 26.1 with the
containerd store: the engine writes the blobs through the session's content store (store id
`export`) and the client finishes `index.json` and `oci-layout`. What is asserted is the
directory a user gets: every blob the index reaches is there, whole (its sha256 and size are
the descriptor's), the index names the built image, and nothing half-written is left."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from buildsdk import BuildOptions
from buildsdk.outputs import OCIOutput
from tests.integration.conftest import Engines, build_result, client_settings, docker_engine_of

pytestmark = [pytest.mark.engine, pytest.mark.dockerd, pytest.mark.docker26_containerd]

_INDEXES = ("application/vnd.oci.image.index.v1+json",)


def _blob(layout: Path, descriptor: dict[str, Any]) -> bytes:
    digest: str = descriptor["digest"]
    data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    assert len(data) == descriptor["size"]
    return data


def _walk(layout: Path, descriptor: dict[str, Any]) -> int:
    """Check every blob below `descriptor`; return how many there were."""
    data = _blob(layout, descriptor)
    if descriptor["mediaType"] in _INDEXES:
        return 1 + sum(_walk(layout, child) for child in json.loads(data)["manifests"])
    if descriptor["mediaType"].endswith("manifest.v1+json"):
        manifest = json.loads(data)
        return 1 + sum(_walk(layout, d) for d in [manifest["config"], *manifest["layers"]])
    return 1


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_an_oci_layout_directory_holds_the_whole_image(
    flavor: str, all_engines: Engines, tmp_path: Path
) -> None:
    engine = docker_engine_of(all_engines, "dockerd26-containerd")
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {all_engines.base_image}\nCOPY a.txt /a.txt\nRUN echo {flavor} > /b.txt\n"
    )
    (context / "a.txt").write_text("a\n")
    layout = tmp_path / "layout"
    options = BuildOptions(
        path=str(context),
        version="2",
        network_mode=all_engines.dockerd_network,
        outputs=[OCIOutput(dest=str(layout), tar=False, name=("layout:1",))],
    )
    result = build_result(flavor, client_settings(all_engines, "dockerd", engine), options)
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == result.image_digest
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == result.image_name
    # The image index, its manifest(s), configs and layers: base layer, COPY, RUN at least.
    assert _walk(layout, entry) >= 5
    assert not [p.name for p in (layout / "blobs" / "sha256").iterdir() if p.name.startswith(".")]
