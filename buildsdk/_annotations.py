"""OCI annotations as `docker buildx build --annotation` reads them, and their exporter keys.

Why a module of its own: buildx (0.13, `util/buildflags` `ParseAnnotations`) accepts
`[TYPE[PLATFORM]:]KEY=VALUE`, where TYPE is `manifest`, `index`, `manifest-descriptor` or
`index-descriptor` (none: the manifest) and PLATFORM is parsed and normalised as containerd's
`platforms.Parse` does, then writes each one into every exporter's attributes under
BuildKit's key (`exptypes.AnnotationKey.String()`): `annotation.KEY`,
`annotation-manifest[linux/amd64].KEY`, `annotation-index.KEY` (an index has no platform,
so one given there is dropped). Both directions are pure text and are tested on their own.

Refused here and not by buildx: a platform of one part (`[amd64]`), which containerd
completes with the platform of the machine running the client, so the same text would mean
different annotations on different machines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

__all__ = ["ANNOTATION_TYPES", "annotation_attrs", "parse_annotations"]

ANNOTATION_TYPES: Final = ("manifest", "index", "manifest-descriptor", "index-descriptor")
"""The prefixes buildx accepts before `:` in an annotation key."""

# buildx's pattern, with Go's ASCII-only \S written out (Python's \S is Unicode-aware).
_NOT_SPACE: Final = r"[^\t\n\f\r ]"
_KEY_RE: Final = re.compile(
    rf"^(?:([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?:)?({_NOT_SPACE}+)$", re.ASCII
)
_PART_RE: Final = re.compile(r"^[A-Za-z0-9_-]+$", re.ASCII)


def _normalise_arch(arch: str, variant: str) -> tuple[str, str]:
    # containerd's normalizeArch (platforms/database.go, v1.7).
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("8", "v8") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def _platform(text: str) -> str:
    """`os/arch[/variant]` as containerd's `platforms.Format(platforms.Parse(text))` gives it."""
    parts = text.split("/")
    if not all(_PART_RE.match(part) for part in parts) or not 2 <= len(parts) <= 3:
        raise ValueError(
            f"annotation platform must be os/arch[/variant] such as linux/amd64, got {text!r}"
        )
    os_name = parts[0].lower()
    os_name = "darwin" if os_name == "macos" else os_name
    if len(parts) == 2:
        arch, variant = _normalise_arch(parts[1], "")
        if arch == "arm" and variant == "v7":
            variant = ""
    else:
        arch, variant = _normalise_arch(parts[1], parts[2])
        if arch == "arm64" and variant == "":
            variant = "v8"
    return "/".join(part for part in (os_name, arch, variant) if part)


def _attr(key: str) -> str:
    """The exporter attribute of one buildx annotation key (without its value)."""
    match = _KEY_RE.match(key)
    if match is None:
        raise ValueError(f"invalid annotation format, expected <type>:<key>=<value>, got {key!r}")
    kind, platform, name = match.groups()
    if kind is not None and kind not in ANNOTATION_TYPES:
        raise ValueError(
            f"unknown annotation type {kind!r}: use one of {', '.join(ANNOTATION_TYPES)}"
        )
    prefix = "annotation"
    if kind in ("manifest", "manifest-descriptor"):
        prefix += f"-{kind}"
        if platform is not None:
            prefix += f"[{_platform(platform)}]"
    elif kind is not None:
        if platform is not None:
            _platform(platform)  # checked as buildx checks it, then dropped as BuildKit does
        prefix += f"-{kind}"
    return f"{prefix}.{name}"


def parse_annotations(value: Mapping[str, str] | Sequence[str] | str) -> dict[str, str]:
    """buildx's `--annotation` values (`KEY=VALUE` texts, or a mapping of KEY to VALUE)
    checked and returned as a mapping; a later KEY replaces an earlier one.

    Raises `ValueError` naming the annotation for a text without `=`, an unknown type or a
    malformed platform.
    """
    items: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for key, text in value.items():
            if not isinstance(key, str):
                raise ValueError(f"annotation key {key!r} must be a str")
            items.append((key, text))
    else:
        for entry in [value] if isinstance(value, str) else value:
            if not isinstance(entry, str):
                raise ValueError(f"annotation {entry!r} must be a 'KEY=VALUE' text")
            key, sep, text = entry.partition("=")
            if not sep:
                raise ValueError(f"invalid annotation {entry!r}, expected key=value")
            items.append((key, text))
    out: dict[str, str] = {}
    for key, text in items:
        if not isinstance(text, str):
            raise ValueError(f"annotation {key!r} must have a str value")
        _attr(key)
        out[key] = text
    return out


def annotation_attrs(annotations: Mapping[str, str]) -> dict[str, str]:
    """The exporter attributes buildx adds to every output for `annotations` (already
    checked by `parse_annotations`): `manifest[linux/arm64]:k` gives
    `annotation-manifest[linux/arm64].k`."""
    return {_attr(key): text for key, text in annotations.items()}
