"""Image references (`registry:5000/team/app:1.2`) checked with the engine's own grammar.

Why: the engine parses every `t` value of `POST /build` with distribution/reference's
`ParseNormalizedNamed`, and an invalid one fails the request with an HTTP 500 after the
whole context was uploaded. Checking the same grammar before sending turns that into an
immediate `ValidationError`.

The grammar, as the engine applies it:

* `name[:tag][@digest]`, where `name` is `[domain/]path`;
* `domain` is a host (dot-separated components of letters, digits and inner dashes, or an
  IPv6 address in brackets) with an optional `:port`; the first `/`-separated part counts
  as a domain only if it is `localhost`, contains `.` or `:`, or has an uppercase letter;
* `path` components are lowercase letters and digits joined by `.`, `_`, `__` or dashes;
* `tag` is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`;
* a bare 64-hex string is refused (it looks like an image ID);
* names without a domain are normalised to `docker.io/library/...` before further checks.

Length: distribution/reference limits the repository path to 255 characters in its latest
release but older engines limited the whole normalised name (domain included) to 255; the
stricter, older rule is applied so that a tag accepted here works on every engine.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

__all__ = ["ImageReference", "parse_reference", "validate_build_tag", "validate_image_reference"]

NAME_TOTAL_LENGTH_MAX: Final = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6 + r")(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"

_REFERENCE_RE: Final = re.compile(
    r"^(?P<name>(?:(?P<domain>" + _DOMAIN_AND_PORT + r")/)?(?P<path>" + _REMOTE_NAME + r"))"
    r"(?::(?P<tag>" + _TAG + r"))?(?:@(?P<digest>" + _DIGEST + r"))?$",
    re.ASCII,
)
_IDENTIFIER_RE: Final = re.compile(r"^[a-f0-9]{64}$")

_DEFAULT_DOMAIN: Final = "docker.io"
_LEGACY_DEFAULT_DOMAIN: Final = "index.docker.io"
_OFFICIAL_PREFIX: Final = "library/"


class ImageReference(NamedTuple):
    """A parsed, normalised image reference (`docker.io/library/app`, tag, digest)."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The normalised repository name, `domain/path` (just `path` when there is no domain).

        The domain is empty only for names like `a_b.c/d` whose first part has a dot but is
        no valid host: the engine then reads the whole name as a path.
        """
        return f"{self.domain}/{self.path}" if self.domain else self.path


def parse_reference(value: str) -> ImageReference:
    """Parse `value` as the engine's `ParseNormalizedNamed` does, or raise `ValueError`.

    The message is the reason the engine would give (e.g. "invalid reference format",
    "repository name (...) must be lowercase").
    """
    if _IDENTIFIER_RE.match(value):
        raise ValueError(
            f"invalid repository name ({value}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_domain(value)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise ValueError(f"invalid reference format: repository name ({remote}) must be lowercase")
    candidate = f"{domain}/{remainder}"
    match = _REFERENCE_RE.match(candidate)
    if match is None:
        if _REFERENCE_RE.match(candidate.lower()):
            raise ValueError("invalid reference format: repository name must be lowercase")
        raise ValueError("invalid reference format")
    if len(match.group("name")) > NAME_TOTAL_LENGTH_MAX:
        raise ValueError(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters "
            f"(counted as {match.group('name')!r})"
        )
    return ImageReference(
        domain=match.group("domain") or "",
        path=match.group("path"),
        tag=match.group("tag"),
        digest=match.group("digest"),
    )


def validate_build_tag(value: str) -> str:
    """Return `value` if the engine accepts it as a `t` of `POST /build`, else raise `ValueError`.

    Digests are refused: a build produces a new image, it cannot be named by content.
    """
    try:
        ref = parse_reference(value)
    except ValueError as exc:
        raise ValueError(f"invalid tag {value!r}: {exc}") from None
    if ref.digest is not None:
        raise ValueError(f"invalid tag {value!r}: build tag cannot contain a digest")
    return value


def validate_image_reference(value: str) -> str:
    """Return `value` if it is a valid image reference (tag and digest allowed), else raise."""
    try:
        parse_reference(value)
    except ValueError as exc:
        raise ValueError(f"invalid image reference {value!r}: {exc}") from None
    return value


def _split_domain(name: str) -> tuple[str, str]:
    """Split off the registry part the way distribution/reference decides what a domain is."""
    first, slash, rest = name.partition("/")
    if not slash:
        return _DEFAULT_DOMAIN, _OFFICIAL_PREFIX + name
    if first == "localhost" or ("." in first or ":" in first) or first.lower() != first:
        domain, remote = first, rest
    else:
        domain, remote = _DEFAULT_DOMAIN, name
    if domain == _LEGACY_DEFAULT_DOMAIN:
        domain = _DEFAULT_DOMAIN
    if domain == _DEFAULT_DOMAIN and "/" not in remote:
        remote = _OFFICIAL_PREFIX + remote
    return domain, remote
