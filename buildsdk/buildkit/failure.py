"""A failed `Control/Solve`, read from its gRPC status details, as `docker buildx build`
reports it.

Why a module of its own: BuildKit puts what a user needs about a failure in JSON records
attached to the call's `google.rpc.Status` (reference buildkit-control.md §11), not in its
message: `gatewayapi.ExitMessage+json` has the RUN step's exit code, `errdefs.Vertex+json`
the failing step's digest, `errdefs.Source+json` the Dockerfile and the lines at fault. This
turns them into a `SolveFailure` and prints the Dockerfile excerpt the way BuildKit's
`errdefs.Source.Print` does for buildx: a `Dockerfile:<line>` header, a rule, the lines
around the fault numbered and the faulty ones marked `>>>`, a rule. Pure: no socket.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from buildsdk._grpc.status import Detail

__all__ = ["SolveFailure", "failure_hint", "solve_failure", "source_excerpt"]

_PREFIX: Final = "github.com/moby/buildkit/"
_EXIT: Final = _PREFIX + "gatewayapi.ExitMessage+json"
_VERTEX: Final = _PREFIX + "errdefs.Vertex+json"
_SOURCE: Final = _PREFIX + "errdefs.Source+json"
_RULE: Final = "--------------------\n"
# The image BuildKit's dockerfile frontend runs to scan for an SBOM unless a generator is
# named (buildkit frontend/attestations; the name the engine reports when it cannot pull it).
_SBOM_SCANNER: Final = "docker/buildkit-syft-scanner"


@dataclass(frozen=True)
class SolveFailure:
    """What the status details of a failed Solve say: exit code, failing step, excerpt."""

    message: str
    """The engine's error text (the call's `grpc-message`)."""
    exit_code: int | None = None
    """The failing process's exit code (`ExitMessage.Code`), when a process failed."""
    vertex: str | None = None
    """The failing step's digest (`errdefs.Vertex`), to name it from the status stream."""
    source: str = ""
    """The Dockerfile excerpt(s), printed as buildx prints them; empty when none came."""


def _json(detail: Detail) -> Mapping[str, Any] | None:
    try:
        value = json.loads(detail.value)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _line(point: object) -> int:
    line = point.get("line", 0) if isinstance(point, dict) else 0
    return line if isinstance(line, int) else 0


def _source(record: Mapping[str, Any]) -> str:
    info = record.get("info")
    if not isinstance(info, dict):
        return ""
    try:
        data = base64.b64decode(str(info.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        return ""
    ranges: list[tuple[int, int]] = []
    for item in record.get("ranges") or ():
        if isinstance(item, dict):
            ranges.append((_line(item.get("start")), _line(item.get("end"))))
    return source_excerpt(str(info.get("filename", "")), data, ranges)


def source_excerpt(filename: str, data: bytes, ranges: Sequence[tuple[int, int]]) -> str:
    """The excerpt of `data` (a Dockerfile) around the 1-based line `ranges`, as buildx
    prints it; empty when there is no range or it lies outside the file."""
    if not ranges:
        return ""
    lines = data.decode("utf-8", "replace").split("\n")
    spans = [(start, max(start, end)) for start, end in ranges]
    start = min(first for first, _ in spans)
    end = max(last for _, last in spans)
    if start < 1 or start > len(lines):
        return ""
    end = min(end, len(lines))
    # BuildKit widens a one-line fault by up to four lines of context, a longer one by
    # two, alternating above and below; the header names the first faulty line.
    pad = 4 if start == end else 2
    header = start
    added = 0
    while added < pad:
        if start > 1:
            start -= 1
            added += 1
        if end != len(lines):
            end += 1
            added += 1
        added += 1
    out = [f"{filename}:{header}\n", _RULE]
    for number in range(start, end + 1):
        marker = ">>>" if any(a <= number <= b for a, b in spans) else "   "
        out.append(f" {number:3d} | {marker} {lines[number - 1]}\n")
    out.append(_RULE)
    return "".join(out)


def solve_failure(message: str, details: Sequence[Detail]) -> SolveFailure:
    """Read a failed Solve's `message` and status `details` (unknown records are skipped)."""
    exit_code: int | None = None
    vertex: str | None = None
    sources: list[str] = []
    for detail in details:
        if detail.type_url not in (_EXIT, _VERTEX, _SOURCE):
            continue
        record = _json(detail)
        if record is None:
            continue
        if detail.type_url == _EXIT and isinstance(record.get("Code"), int):
            exit_code = record["Code"]
        elif detail.type_url == _VERTEX and isinstance(record.get("digest"), str):
            vertex = record["digest"]
        elif detail.type_url == _SOURCE:
            sources.append(_source(record))
    return SolveFailure(message, exit_code, vertex, "".join(sources))


def failure_hint(
    message: str, *, platforms: Sequence[str], sbom: bool, foreign_binary: bool
) -> str:
    """A line that says why a Control API build of several or foreign `platforms`, or with an
    SBOM (`sbom`), failed, when the engine's `message` alone does not; empty otherwise.

    `foreign_binary` tells that the failing step's output says `exec format error`: the
    kernel refused a program built for another architecture, which only an emulator
    (binfmt_misc with QEMU) registered on the engine's host would have run.
    """
    if sbom and _SBOM_SCANNER in message:
        return (
            "sbom: the engine could not pull the SBOM scanner image (docker.io/"
            f"{_SBOM_SCANNER}) it runs to make the SBOM attestation; let the engine reach "
            "that registry, name a reachable scanner with sbom='generator=IMAGE', or build "
            "without sbom"
        )
    if foreign_binary and platforms:
        return (
            f"platform: a step ran a program built for another architecture than the "
            f"engine's (exec format error) while building for {', '.join(platforms)}; "
            "that needs an emulator for it (QEMU registered in binfmt_misc) on the engine's "
            "host, or a builder native to that platform"
        )
    return ""
