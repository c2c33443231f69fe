"""The `--metadata-file` object of `docker buildx build`, made from what a build returned.

Why a module of its own: the command writes it and `BuildResult` offers it, and both must
write the same object. buildx writes the Control API's `ExporterResponse` with
`containerimage.descriptor` decoded from base64 into an object, plus
`buildx.build.ref` = `<builder>/<node>/<Ref>` (reference buildkit-control.md §5). A build
sent as `POST /build` returns no exporter response: only the image ID and the tags are
known, and which digest the image ID is depends on the engine's image store.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from buildsdk._reference import parse_reference

__all__ = ["BUILD_REF_PREFIX", "metadata_from_exporter", "metadata_from_image_id"]

BUILD_REF_PREFIX: Final = "default/default/"
"""What buildx puts before the `Ref` in `buildx.build.ref`: the default builder (the
engine's own BuildKit, which is the one the Control API path talks to) and its node."""

_DECODED: Final = ("containerimage.descriptor",)


def metadata_from_exporter(exporter_response: Mapping[str, str], *, ref: str) -> dict[str, Any]:
    """buildx's metadata object from a Control API build's `ExporterResponse` and `Ref`.

    Base64 JSON values buildx decodes (`containerimage.descriptor`) become objects; a value
    that is not valid base64 JSON is kept as the text it was.
    """
    metadata: dict[str, Any] = {}
    for key in sorted(exporter_response):
        value: Any = exporter_response[key]
        if key in _DECODED:
            try:
                value = json.loads(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                value = exporter_response[key]
        metadata[key] = value
    metadata["buildx.build.ref"] = BUILD_REF_PREFIX + ref
    return metadata


def metadata_from_image_id(
    image_id: str, tags: Sequence[str] = (), *, containerd_store: bool = False
) -> dict[str, Any]:
    """What a `POST /build` build can tell of buildx's metadata object: the image ID, and the
    tags, normalised, as `image.name`.

    The image ID is the config digest on the classic image store (`containerimage.config.digest`)
    and the digest of the image's index or manifest on the containerd store
    (`containerimage.digest`), as buildx reports them. There is no descriptor and no
    `buildx.build.ref`: the engine returns no exporter response on that endpoint.
    """
    key = "containerimage.digest" if containerd_store else "containerimage.config.digest"
    metadata: dict[str, Any] = {key: image_id}
    if tags:
        names = []
        for tag in tags:
            reference = parse_reference(tag)
            names.append(f"{reference.name}:{reference.tag or 'latest'}")
        metadata["image.name"] = ",".join(names)
    return metadata
