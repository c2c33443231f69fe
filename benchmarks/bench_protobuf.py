"""Protobuf: buildsdk's hand-written encoder and decoder against the `protobuf` package (upb).

Two jobs of the Control API path are timed in memory, each as the best of several rounds
(on a shared machine the minimum is the stable figure for work this small):

- encoding a `SolveRequest` with maps and nested messages (a build with 12 build args,
  6 labels, 2 tags, 2 cache sources, an exporter): buildsdk's `SolveRequest.encode()` against
  upb's `SerializeToString()`, both from a message already built, and both including the
  construction of the message from Python values (what a client does once per build);
- decoding the recorded BuildKit progress (`StatusResponse` messages from
  tests/fixtures/streams/): buildsdk's `decode_status_response` (bytes to typed events)
  against upb's `FromString` alone and upb's `FromString` followed by reading every field a
  progress display needs (what a user of the package must do to get the same information).

upb's message classes are built at run time from the .proto field definitions in
tests/control_protos.py (no generated code). Ratios are buildsdk's time / upb's time:
below 1 buildsdk is faster.

Usage: benchmarks/bench_protobuf.py [--quick]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from google.protobuf import json_format  # noqa: E402
from google.protobuf.internal import api_implementation  # noqa: E402

from buildsdk.build import BuildOptions  # noqa: E402
from buildsdk.buildkit.solve import SolveRequest, solve_request  # noqa: E402
from buildsdk.buildkit.status import decode_status_response  # noqa: E402
from tests.control_protos import control_classes  # noqa: E402

STREAMS = REPO / "tests" / "fixtures" / "streams"


def _options() -> BuildOptions:
    return BuildOptions(
        path=str(REPO),
        version="2",
        tag=["registry.example.com/team/app:1.2.3", "registry.example.com/team/app:latest"],
        buildargs={f"ARG_{n}": f"value-{n}-" + "x" * n for n in range(12)},
        labels={f"org.opencontainers.image.l{n}": f"label {n}" for n in range(6)},
        cache_from=["registry.example.com/team/app:cache", "registry.example.com/team/app:1.2.2"],
        network_mode="host",
        target="runtime",
        platform="linux/amd64",
    )


def _traces() -> list[bytes]:
    out = []
    for name in ("buildkit_ok.jsonl", "buildkit_cached.jsonl", "buildkit_fail.jsonl"):
        for line in (STREAMS / name).read_bytes().splitlines():
            message = json.loads(line)
            if message.get("id") == "moby.buildkit.trace":
                out.append(base64.b64decode(message["aux"]))
    return out


def _time(function: Callable[[], object], loops: int, rounds: int) -> float:
    """Seconds per call in the fastest of `rounds` rounds of `loops` calls (after a warm-up)."""
    function()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(loops):
            function()
        samples.append((time.perf_counter() - start) / loops)
    return min(samples)


def _upb_walk(pb: Any, data: bytes) -> int:
    """Parse with upb and read what buildsdk's decoder turns into events."""
    message = pb.FromString(data)
    count = 0
    for vertex in message.vertexes:
        _ = (vertex.digest, list(vertex.inputs), vertex.name, vertex.cached, vertex.error)
        _ = (vertex.started.ToDatetime() if vertex.HasField("started") else None,)
        _ = (vertex.completed.ToDatetime() if vertex.HasField("completed") else None,)
        count += 1
    for status in message.statuses:
        _ = (status.ID, status.vertex, status.name, status.current, status.total)
        _ = (status.timestamp.ToDatetime(),)
        _ = (status.started.ToDatetime() if status.HasField("started") else None,)
        _ = (status.completed.ToDatetime() if status.HasField("completed") else None,)
        count += 1
    for log in message.logs:
        _ = (log.vertex, log.stream, log.msg, log.timestamp.ToDatetime())
        count += 1
    for warning in message.warnings:
        _ = (warning.vertex, warning.level, warning.short, list(warning.detail), warning.url)
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    """Time both jobs and print a markdown table with the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (CI smoke run)")
    args = parser.parse_args(argv)
    loops, rounds = (200, 3) if args.quick else (2000, 9)

    pb = control_classes()
    options = _options()
    request = solve_request(options, ref="r" * 25, session_id="s" * 25, engine="containerd")
    as_json = request.to_json()
    official = json_format.ParseDict(as_json, pb["SolveRequest"]())
    # Same message; the bytes differ only in map order where one key is a prefix of another
    # (ARG_1, ARG_10): buildsdk sorts as Go does, upb puts the longer key first.
    assert pb["SolveRequest"].FromString(request.encode()) == official

    def build_ours() -> bytes:
        return SolveRequest(
            ref=request.ref,
            exporter_deprecated=request.exporter_deprecated,
            exporter_attrs_deprecated=dict(request.exporter_attrs_deprecated),
            session=request.session,
            frontend=request.frontend,
            frontend_attrs=dict(request.frontend_attrs),
            cache=request.cache,
            entitlements=request.entitlements,
            exporters=request.exporters,
        ).encode()

    def build_upb() -> bytes:
        message = pb["SolveRequest"](
            Ref=request.ref,
            ExporterDeprecated=request.exporter_deprecated,
            ExporterAttrsDeprecated=dict(request.exporter_attrs_deprecated),
            Session=request.session,
            Frontend=request.frontend,
            FrontendAttrs=dict(request.frontend_attrs),
            Cache=pb["CacheOptions"](
                Imports=[
                    pb["CacheOptionsEntry"](Type=e.type, Attrs=dict(e.attrs))
                    for e in request.cache.imports  # type: ignore[union-attr]
                ]
            ),
            Entitlements=list(request.entitlements),
            Exporters=[pb["Exporter"](Type=e.type, Attrs=dict(e.attrs)) for e in request.exporters],
        )
        return bytes(message.SerializeToString(deterministic=True))

    assert pb["SolveRequest"].FromString(build_ours()) == pb["SolveRequest"].FromString(build_upb())
    traces = _traces()
    status = pb["StatusResponse"]
    assert sum(len(decode_status_response(t)) for t in traces) == sum(
        _upb_walk(status, t) for t in traces
    )

    def decode_ours() -> None:
        for trace in traces:
            decode_status_response(trace)

    def parse_upb() -> None:
        for trace in traces:
            status.FromString(trace)

    def walk_upb() -> None:
        for trace in traces:
            _upb_walk(status, trace)

    trace_loops = max(loops // 20, 10)
    rows = [
        (
            f"SolveRequest encode ({len(request.encode())} bytes, message built)",
            _time(request.encode, loops, rounds),
            _time(lambda: official.SerializeToString(deterministic=True), loops, rounds),
        ),
        (
            "SolveRequest build + encode",
            _time(build_ours, loops, rounds),
            _time(build_upb, loops, rounds),
        ),
        (
            f"StatusResponse decode to events vs upb parse only ({len(traces)} messages)",
            _time(decode_ours, trace_loops, rounds),
            _time(parse_upb, trace_loops, rounds),
        ),
        (
            f"StatusResponse decode to events vs upb parse + read fields ({len(traces)} messages)",
            _time(decode_ours, trace_loops, rounds),
            _time(walk_upb, trace_loops, rounds),
        ),
    ]
    print(f"protobuf {api_implementation.Type()} implementation, Python {sys.version.split()[0]}")
    print()
    print("| job | buildsdk (µs) | protobuf (µs) | ratio |")
    print("|---|---:|---:|---:|")
    for name, ours, theirs in rows:
        print(f"| {name} | {ours * 1e6:.1f} | {theirs * 1e6:.1f} | {ours / theirs:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
