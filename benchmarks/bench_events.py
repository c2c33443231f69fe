"""Event stream: decoding a long recorded build stream from memory, messages per second.

The streams are made from the real recordings in tests/fixtures/streams/: the classic
messages are repeated with their 12-hex IDs varied; the BuildKit trace messages are
repeated as recorded. Two ways of cutting the bytes are measured: one message per piece
(how the engine flushes, and what a client keeps up with receives) and 64 KiB pieces
(what a client that fell behind reads from its socket at once).

buildsdk turns every message into a typed event (BuildKit traces: base64 + protobuf
decoded into vertex/status/log events); docker-py's `json_stream` (what `build(decode=True)`
uses) only yields dicts, leaving the BuildKit payload as a base64 string. So on the
BuildKit stream buildsdk does strictly more work per message.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import itertools
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from _common import REPO, Sample, Series, Table

__all__ = ["buildkit_stream", "chunked", "classic_stream", "run"]

_FIXTURES = REPO / "tests" / "fixtures" / "streams"
_HEX12 = re.compile(rb"\b[0-9a-f]{12}\b")


def _lines(names: Sequence[str]) -> list[bytes]:
    out: list[bytes] = []
    for name in names:
        for line in (_FIXTURES / name).read_bytes().split(b"\n"):
            if line.strip():
                out.append(line.rstrip(b"\r") + b"\r\n")
    return out


def classic_stream(count: int) -> list[bytes]:
    """`count` classic-builder messages, each ending in CRLF, IDs varied per repetition."""
    base = _lines(["classic_ok.jsonl", "classic_cached.jsonl", "classic_fail.jsonl"])
    out: list[bytes] = []
    for n, line in enumerate(itertools.islice(itertools.cycle(base), count)):
        tag = b"%012x" % (n * 2654435761 % (1 << 48))
        out.append(_HEX12.sub(tag, line))
    return out


def buildkit_stream(count: int) -> list[bytes]:
    """`count` BuildKit messages (mostly `moby.buildkit.trace`), repeated as recorded."""
    base = _lines(["buildkit_ok.jsonl", "buildkit_cached.jsonl"])
    return list(itertools.islice(itertools.cycle(base), count))


def chunked(messages: list[bytes], size: int) -> list[bytes]:
    """The stream's bytes cut into pieces of `size` bytes (cutting through messages)."""
    data = b"".join(messages)
    return [data[i : i + size] for i in range(0, len(data), size)]


def _buildsdk_sync(chunks: list[bytes]) -> int:
    from buildsdk import EventDecoder

    decoder = EventDecoder()
    count = 0
    for chunk in chunks:
        count += len(decoder.feed(chunk))
    return count + len(decoder.flush())


def _buildsdk_async(chunks: list[bytes]) -> int:
    from buildsdk import EventDecoder

    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def consume() -> int:
        decoder = EventDecoder()
        count = 0
        async for chunk in source():
            count += len(decoder.feed(chunk))
        return count + len(decoder.flush())

    return asyncio.run(consume())


def _docker_py(chunks: list[bytes]) -> int:
    from docker.utils.json_stream import json_stream

    count = 0
    for _ in json_stream(iter(chunks)):
        count += 1
    return count


def _status_response_class() -> Any:
    """BuildKit's StatusResponse for the official protobuf package, built at run time.

    Only the fields a 20.10 engine sends are declared (numbers from BuildKit's
    control.proto); anything else is kept as unknown fields, as protobuf does.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    proto = descriptor_pb2.FieldDescriptorProto
    ts = ".google.protobuf.Timestamp"
    pkg = ".moby.buildkit.v1."
    messages: dict[str, list[tuple[str, int, int, int, str]]] = {
        "StatusResponse": [
            ("vertexes", 1, proto.TYPE_MESSAGE, proto.LABEL_REPEATED, pkg + "Vertex"),
            ("statuses", 2, proto.TYPE_MESSAGE, proto.LABEL_REPEATED, pkg + "VertexStatus"),
            ("logs", 3, proto.TYPE_MESSAGE, proto.LABEL_REPEATED, pkg + "VertexLog"),
        ],
        "Vertex": [
            ("digest", 1, proto.TYPE_STRING, proto.LABEL_OPTIONAL, ""),
            ("inputs", 2, proto.TYPE_STRING, proto.LABEL_REPEATED, ""),
            ("name", 3, proto.TYPE_STRING, proto.LABEL_OPTIONAL, ""),
            ("cached", 4, proto.TYPE_BOOL, proto.LABEL_OPTIONAL, ""),
            ("started", 5, proto.TYPE_MESSAGE, proto.LABEL_OPTIONAL, ts),
            ("completed", 6, proto.TYPE_MESSAGE, proto.LABEL_OPTIONAL, ts),
            ("error", 7, proto.TYPE_STRING, proto.LABEL_OPTIONAL, ""),
        ],
        "VertexStatus": [
            ("ID", 1, proto.TYPE_STRING, proto.LABEL_OPTIONAL, ""),
            ("vertex", 2, proto.TYPE_STRING, proto.LABEL_OPTIONAL, ""),
            ("name", 3, proto.TYPE_STRING, proto.LABEL_OPTIONAL, ""),
            ("current", 4, proto.TYPE_INT64, proto.LABEL_OPTIONAL, ""),
            ("total", 5, proto.TYPE_INT64, proto.LABEL_OPTIONAL, ""),
            ("timestamp", 6, proto.TYPE_MESSAGE, proto.LABEL_OPTIONAL, ts),
            ("started", 7, proto.TYPE_MESSAGE, proto.LABEL_OPTIONAL, ts),
            ("completed", 8, proto.TYPE_MESSAGE, proto.LABEL_OPTIONAL, ts),
        ],
        "VertexLog": [
            ("vertex", 1, proto.TYPE_STRING, proto.LABEL_OPTIONAL, ""),
            ("timestamp", 2, proto.TYPE_MESSAGE, proto.LABEL_OPTIONAL, ts),
            ("stream", 3, proto.TYPE_INT64, proto.LABEL_OPTIONAL, ""),
            ("msg", 4, proto.TYPE_BYTES, proto.LABEL_OPTIONAL, ""),
        ],
    }
    file = descriptor_pb2.FileDescriptorProto(
        name="bench_control.proto", package="moby.buildkit.v1", syntax="proto3"
    )
    file.dependency.append("google/protobuf/timestamp.proto")
    for name, fields in messages.items():
        message = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("moby.buildkit.v1.StatusResponse")
    )


def _docker_py_protobuf(chunks: list[bytes]) -> int:
    from docker.utils.json_stream import json_stream

    parse = _STATUS_RESPONSE[0].FromString if _STATUS_RESPONSE else None
    if parse is None:
        _STATUS_RESPONSE.append(_status_response_class())
        parse = _STATUS_RESPONSE[0].FromString
    decode = base64.b64decode
    count = 0
    for msg in json_stream(iter(chunks)):
        if msg.get("id") == "moby.buildkit.trace":
            parse(decode(msg["aux"]))
        count += 1
    return count


_STATUS_RESPONSE: list[Any] = []


def _measure(fn: Callable[[list[bytes]], int], chunks: list[bytes]) -> Sample:
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    fn(chunks)
    return Sample(time.perf_counter() - start, cpu=time.process_time() - cpu)


def _compare(
    title: str, messages: list[bytes], pieces: int | None, repeat: int, with_protobuf: bool
) -> Table:
    chunks = messages if pieces is None else chunked(messages, pieces)
    contenders: list[tuple[str, Callable[[list[bytes]], int]]] = [
        ("buildsdk EventDecoder (sync)", _buildsdk_sync),
        ("buildsdk EventDecoder (async generator)", _buildsdk_async),
        ("docker-py json_stream", _docker_py),
    ]
    # Every contender must see the whole stream: a silent early stop would look fast.
    produced = {name: fn(chunks) for name, fn in contenders}
    if produced["docker-py json_stream"] != len(messages):
        raise RuntimeError(f"docker-py decoded {produced['docker-py json_stream']} messages")
    if produced["buildsdk EventDecoder (sync)"] < len(messages):
        raise RuntimeError("buildsdk decoded fewer events than there are messages")
    if with_protobuf:
        name = "docker-py json_stream + protobuf decode"
        contenders.append((name, _docker_py_protobuf))
        produced[name] = _docker_py_protobuf(chunks)
    rows = [Series(name) for name, _ in contenders]
    for _ in range(repeat):
        for (_, fn), row in zip(contenders, rows, strict=True):
            row.samples.append(_measure(fn, chunks))
    table = Table(title, "docker-py json_stream", rate=(len(messages), "messages/s"))
    for row in rows:
        table.add(row)
    events = produced["buildsdk EventDecoder (sync)"]
    table.notes.append(
        f"{len(messages):,} messages ({sum(map(len, messages)) / 1e6:.1f} MB) in "
        f"{len(chunks):,} pieces; buildsdk yields {events:,} typed events, docker-py "
        f"{len(messages):,} dicts. In-process, {repeat} run(s), ratio = messages/s over "
        "docker-py's (target ≥ 3)."
    )
    if with_protobuf:
        table.notes.append(
            "docker-py leaves each BuildKit trace as a base64 string; the last row adds what "
            "a docker-py user must do to see the progress: base64 and the official protobuf "
            "package (C implementation) into StatusResponse messages."
        )
    return table


def run(quick: bool, cache: Path | None) -> list[Table]:
    """Measure both streams with both cuttings; print and return the tables."""
    del cache
    # BuildKit messages are six times the size of classic ones and carry protobuf; 50,000
    # of them (16 MB) keep the full run within its time budget.
    streams = (("classic", classic_stream, 200_000), ("BuildKit", buildkit_stream, 50_000))
    repeat = 1 if quick else 5
    tables = []
    for kind, make, count in streams:
        print(f"[events] {kind} stream ...", file=sys.stderr, flush=True)
        messages = make(2_000 if quick else count)
        for pieces, how in ((None, "one message per piece"), (65536, "64 KiB pieces")):
            table = _compare(
                f"Event stream: {kind}, {how}", messages, pieces, repeat, kind == "BuildKit"
            )
            table.print()
            tables.append(table)
    return tables


def main() -> int:
    """Run this benchmark alone."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    run(args.quick, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
