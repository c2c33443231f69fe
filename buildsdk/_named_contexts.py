"""Named build contexts (buildx's `--build-context name=value`), read as buildx reads them.

Why apart: `BuildOptions.build_contexts` validates with these rules, the `SolveRequest`
turns them into frontend attributes and the session serves the local ones; one module keeps
the three in step, and it imports nothing but the reference grammar.

What buildx 0.13 does, and so what this module does:

* a name is read as an image reference (`ParseNormalizedNamed`), written back in its short
  form (`FamiliarString`) without a `:latest` suffix: `docker.io/library/alpine:latest` is
  `alpine`, `Base` is refused (uppercase);
* a value that is a remote URL (an `http://` or `https://` URL, or anything BuildKit's
  `ParseGitRef` takes for a git repository: `git://`, `ssh://`, `git@host:path`, a
  `github.com/` path, or a `host/path.git`) or starts with `docker-image://` is sent as
  given, as `context:NAME`;
* `oci-layout://dir[:tag][@digest]` is cut at the first `@`, then at the first `:` (tag
  `latest` when none); the client resolves the tag to a digest in `dir/index.json` (the
  manifest named so, else the only one) unless a digest is given, serves `dir` as the
  session content store `oci:<id>` (a random-looking 25-character id) and sends
  `context:NAME` = `oci-layout://<id>:<tag>@<digest>`;
* anything else is a local directory, served through the session under the dir-name NAME
  (`_context` and `_dockerfile` for the names `context` and `dockerfile`, which the main
  context and Dockerfile use), and sent as `context:NAME` = `local:<dir-name>`.

A quirk kept on purpose: like buildx, a local path ending in `.git` (`/src/repo.git`) is
taken for a git URL. Any named context adds `frontend.caps` =
`moby.buildkit.frontend.contexts+forward`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from buildsdk._reference import parse_reference

__all__ = [
    "CONTEXTS_CAP",
    "OCI_STORE_PREFIX",
    "ContextKind",
    "OCILayoutRef",
    "context_attrs",
    "context_kind",
    "context_name",
    "is_remote_url",
    "local_dir_name",
    "local_dirs",
    "oci_layout_stores",
    "oci_store_id",
    "parse_oci_layout",
    "url_has_credentials",
]

ContextKind = Literal["local", "docker-image", "oci-layout", "url"]
"""What a named context's value is: a local directory, an image, an OCI layout or a URL."""

CONTEXTS_CAP: Final = "moby.buildkit.frontend.contexts+forward"
"""The `frontend.caps` value buildx sends with any named context."""

_DOCKER_IMAGE: Final = "docker-image://"
_OCI_LAYOUT: Final = "oci-layout://"
_PROTO_RE: Final = re.compile(r"^[a-zA-Z0-9]+://")
_GIT_PROTOCOLS: Final = frozenset({"http", "https", "ssh", "git"})
_SCP_RE: Final = re.compile(r"^[a-zA-Z0-9_-]+@[a-zA-Z0-9.-]+:.*$", re.DOTALL)
# The dir-names the main context and Dockerfile take; buildx renames named ones.
_RESERVED: Final = frozenset({"context", "dockerfile"})
OCI_STORE_PREFIX: Final = "oci:"
"""What BuildKit's client puts before an oci-layout context's store id in the session."""
_SHA256_RE: Final = re.compile(r"^sha256:[a-f0-9]{64}$")
# The tag grammar of an image reference: BuildKit's frontend parses what is sent as one.
_TAG_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_BASE36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"


def context_name(name: str) -> str:
    """`name` as buildx keys it (short form of an image reference, no `:latest`), or
    `ValueError` naming the rule broken."""
    try:
        ref = parse_reference(name)
    except ValueError as exc:
        raise ValueError(f"invalid context name {name!r}: {exc}") from None
    path = ref.path
    if ref.domain == "docker.io":
        path = path.removeprefix("library/") if path.count("/") == 1 else path
        familiar = path
    else:
        familiar = ref.name
    if ref.tag is not None:
        familiar += f":{ref.tag}"
    if ref.digest is not None:
        familiar += f"@{ref.digest}"
    return familiar.removesuffix(":latest")


def _git_url_path_ok(url: str) -> bool:
    # Go's url.Parse, closely enough: an http(s) git remote is one whose path ends in .git.
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.path.endswith(".git")


def _is_git_ref(value: str) -> bool:
    """BuildKit's `gitutil.ParseGitRef` (v0.13) accepting `value`."""
    if value.startswith(("./", "../")):
        return False
    if value.startswith("github.com/"):
        return True
    match = _PROTO_RE.match(value)
    if match is not None:
        scheme = match.group(0)[:-3].lower()
        if scheme not in _GIT_PROTOCOLS:
            return False
        return scheme not in ("http", "https") or _git_url_path_ok(value)
    if _SCP_RE.match(value):
        return True
    return _git_url_path_ok("https://" + value)


def is_remote_url(value: str) -> bool:
    """Whether buildx sends `value` to the engine as a URL (buildx's `IsRemoteURL`)."""
    return value.startswith(("http://", "https://")) or _is_git_ref(value)


def context_kind(value: str) -> ContextKind:
    """The kind of named context `value` names, decided as buildx decides it."""
    if is_remote_url(value):
        return "url"
    if value.startswith(_DOCKER_IMAGE):
        return "docker-image"
    if value.startswith(_OCI_LAYOUT):
        return "oci-layout"
    return "local"


def local_dir_name(name: str) -> str:
    """The session dir-name a local named context `name` is served under."""
    return f"_{name}" if name in _RESERVED else name


@dataclass(frozen=True)
class OCILayoutRef:
    """An `oci-layout://` value cut as buildx cuts it: the directory, the tag (`latest`
    when none) and the digest when one is given or resolved."""

    directory: str
    tag: str
    digest: str | None = None

    def value(self) -> str:
        """The value written back, tag always explicit: `oci-layout://DIR:TAG[@DIGEST]`."""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return f"{_OCI_LAYOUT}{self.directory}:{self.tag}{digest}"


def parse_oci_layout(value: str) -> OCILayoutRef:
    """Cut `oci-layout://DIR[:TAG][@DIGEST]` at the first `@`, then at the first `:`, as
    buildx does; `ValueError` when the directory is empty, the tag is not an image tag (the
    engine would refuse it) or the digest is not a sha256 digest (the session's content
    store keeps sha256 blobs only)."""
    if not value.startswith(_OCI_LAYOUT):
        raise ValueError(f"{value!r} is not an oci-layout:// value")
    rest, at, digest = value.removeprefix(_OCI_LAYOUT).partition("@")
    directory, colon, tag = rest.partition(":")
    if not directory:
        raise ValueError(f"{value!r} names no directory")
    if colon and not _TAG_RE.match(tag):
        raise ValueError(
            f"invalid oci-layout tag {tag!r}: BuildKit reads it as an image tag "
            "([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
        )
    if at and not _SHA256_RE.match(digest):
        raise ValueError(f"invalid oci-layout digest {digest!r}: expected sha256:<64 hex digits>")
    return OCILayoutRef(directory, tag if colon else "latest", digest if at else None)


def oci_store_id(name: str) -> str:
    """The store id an oci-layout context `name` is served under: 25 base-36 characters, the
    shape of buildx's random ids, derived from the name so a request can be reproduced."""
    number = int.from_bytes(hashlib.sha256(name.encode()).digest()[:17], "big") | 1 << 135
    digits = ""
    while number:
        number, rest = divmod(number, 36)
        digits = _BASE36[rest] + digits
    return digits[1:26]


def oci_layout_stores(contexts: Mapping[str, str]) -> dict[str, str]:
    """The OCI layout directories among `contexts`, keyed by the session store id BuildKit
    reads them under (`oci:<id>`)."""
    return {
        OCI_STORE_PREFIX + oci_store_id(name): parse_oci_layout(value).directory
        for name, value in contexts.items()
        if context_kind(value) == "oci-layout"
    }


def context_attrs(contexts: Mapping[str, str]) -> dict[str, str]:
    """The frontend attributes of `contexts` (names already normalised): `context:NAME` per
    context and `frontend.caps` when there is any. An `oci-layout` value gets an attribute
    only once its digest is resolved (the caller refuses it before)."""
    attrs: dict[str, str] = {}
    for name, value in contexts.items():
        kind = context_kind(value)
        if kind == "local":
            attrs[f"context:{name}"] = f"local:{local_dir_name(name)}"
        elif kind == "oci-layout":
            ref = parse_oci_layout(value)
            if ref.digest is not None:
                layout = f"{_OCI_LAYOUT}{oci_store_id(name)}:{ref.tag}@{ref.digest}"
                attrs[f"context:{name}"] = layout
        else:
            attrs[f"context:{name}"] = value
    if contexts:
        attrs["frontend.caps"] = CONTEXTS_CAP
    return attrs


def local_dirs(contexts: Mapping[str, str]) -> dict[str, str]:
    """The local directories among `contexts`, keyed by the dir-name the session serves them
    under."""
    return {
        local_dir_name(name): value
        for name, value in contexts.items()
        if context_kind(value) == "local"
    }


def url_has_credentials(value: str) -> bool:
    """Whether remote URL `value` may carry a credential: a password in any URL, or any user
    information in an http(s) URL (`https://TOKEN@host/`; `git@host:repo` and `ssh://git@`
    name an ssh login, not a secret)."""
    if not is_remote_url(value) or _PROTO_RE.match(value) is None:
        return False
    try:
        parts = urlsplit(value)
        if parts.password is not None:
            return True
        return parts.scheme.lower() in ("http", "https") and parts.username is not None
    except ValueError:
        return False
