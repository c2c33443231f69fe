"""BuildKit's Control API messages for the official `protobuf` package, built at run time.

Written from BuildKit v0.13.2's `api/services/control/control.proto`, `api/types/worker.proto`
and `solver/pb/ops.proto` (same packages, message names, field names and numbers; only the
fields buildsdk models, plus the StatusResponse family), so the tests and the protobuf
benchmark compare buildsdk's hand-written encoders with protobuf's own without generated code.
Maps are declared as protobuf declares them: a repeated nested `<Field>Entry` message with
the `map_entry` option.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

__all__ = ["CONTROL_MESSAGES", "control_classes"]

_F = descriptor_pb2.FieldDescriptorProto
_TS = ".google.protobuf.Timestamp"
_TYPES = {
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "bool": _F.TYPE_BOOL,
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
}

# message -> [(field name, number, type, repeated)]; a type is a scalar name, "map" (string to
# string) or a fully qualified message name.
_PB: dict[str, list[tuple[str, int, str, bool]]] = {
    "Platform": [
        ("Architecture", 1, "string", False),
        ("OS", 2, "string", False),
        ("Variant", 3, "string", False),
        ("OSVersion", 4, "string", False),
        ("OSFeatures", 5, "string", True),
    ],
    "ProgressGroup": [("id", 1, "string", False), ("name", 2, "string", False)],
    "Position": [("line", 1, "int32", False), ("character", 2, "int32", False)],
    "Range": [("start", 1, ".pb.Position", False), ("end", 2, ".pb.Position", False)],
    "SourceInfo": [
        ("filename", 1, "string", False),
        ("data", 2, "bytes", False),
        ("definition", 3, "bytes", False),
        ("language", 4, "string", False),
    ],
}
_TYPES_PKG: dict[str, list[tuple[str, int, str, bool]]] = {
    "WorkerRecord": [
        ("ID", 1, "string", False),
        ("Labels", 2, "map", False),
        ("platforms", 3, ".pb.Platform", True),
        ("GCPolicy", 4, ".moby.buildkit.v1.types.GCPolicy", True),
        ("BuildkitVersion", 5, ".moby.buildkit.v1.types.BuildkitVersion", False),
    ],
    "GCPolicy": [
        ("all", 1, "bool", False),
        ("keepDuration", 2, "int64", False),
        ("keepBytes", 3, "int64", False),
        ("filters", 4, "string", True),
    ],
    "BuildkitVersion": [
        ("package", 1, "string", False),
        ("version", 2, "string", False),
        ("revision", 3, "string", False),
    ],
}
CONTROL_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "Exporter": [("Type", 1, "string", False), ("Attrs", 2, "map", False)],
    "CacheOptionsEntry": [("Type", 1, "string", False), ("Attrs", 2, "map", False)],
    "CacheOptions": [
        ("Exports", 4, ".moby.buildkit.v1.CacheOptionsEntry", True),
        ("Imports", 5, ".moby.buildkit.v1.CacheOptionsEntry", True),
    ],
    "SolveRequest": [
        ("Ref", 1, "string", False),
        ("ExporterDeprecated", 3, "string", False),
        ("ExporterAttrsDeprecated", 4, "map", False),
        ("Session", 5, "string", False),
        ("Frontend", 6, "string", False),
        ("FrontendAttrs", 7, "map", False),
        ("Cache", 8, ".moby.buildkit.v1.CacheOptions", False),
        ("Entitlements", 9, "string", True),
        ("Internal", 11, "bool", False),
        ("Exporters", 13, ".moby.buildkit.v1.Exporter", True),
    ],
    "SolveResponse": [("ExporterResponse", 1, "map", False)],
    "StatusRequest": [("Ref", 1, "string", False)],
    "ListWorkersRequest": [("filter", 1, "string", True)],
    "ListWorkersResponse": [("record", 1, ".moby.buildkit.v1.types.WorkerRecord", True)],
    "DiskUsageRequest": [("filter", 1, "string", True)],
    "DiskUsageResponse": [("record", 1, ".moby.buildkit.v1.UsageRecord", True)],
    "UsageRecord": [
        ("ID", 1, "string", False),
        ("Mutable", 2, "bool", False),
        ("InUse", 3, "bool", False),
        ("Size", 4, "int64", False),
        ("Parent", 5, "string", False),
        ("CreatedAt", 6, _TS, False),
        ("LastUsedAt", 7, _TS, False),
        ("UsageCount", 8, "int64", False),
        ("Description", 9, "string", False),
        ("RecordType", 10, "string", False),
        ("Shared", 11, "bool", False),
        ("Parents", 12, "string", True),
    ],
    "PruneRequest": [
        ("filter", 1, "string", True),
        ("all", 2, "bool", False),
        ("keepDuration", 3, "int64", False),
        ("keepBytes", 4, "int64", False),
    ],
    "StatusResponse": [
        ("vertexes", 1, ".moby.buildkit.v1.Vertex", True),
        ("statuses", 2, ".moby.buildkit.v1.VertexStatus", True),
        ("logs", 3, ".moby.buildkit.v1.VertexLog", True),
        ("warnings", 4, ".moby.buildkit.v1.VertexWarning", True),
    ],
    "Vertex": [
        ("digest", 1, "string", False),
        ("inputs", 2, "string", True),
        ("name", 3, "string", False),
        ("cached", 4, "bool", False),
        ("started", 5, _TS, False),
        ("completed", 6, _TS, False),
        ("error", 7, "string", False),
        ("progressGroup", 8, ".pb.ProgressGroup", False),
    ],
    "VertexStatus": [
        ("ID", 1, "string", False),
        ("vertex", 2, "string", False),
        ("name", 3, "string", False),
        ("current", 4, "int64", False),
        ("total", 5, "int64", False),
        ("timestamp", 6, _TS, False),
        ("started", 7, _TS, False),
        ("completed", 8, _TS, False),
    ],
    "VertexLog": [
        ("vertex", 1, "string", False),
        ("timestamp", 2, _TS, False),
        ("stream", 3, "int64", False),
        ("msg", 4, "bytes", False),
    ],
    "VertexWarning": [
        ("vertex", 1, "string", False),
        ("level", 2, "int64", False),
        ("short", 3, "bytes", False),
        ("detail", 4, "bytes", True),
        ("url", 5, "string", False),
        ("info", 6, ".pb.SourceInfo", False),
        ("ranges", 7, ".pb.Range", True),
    ],
}


def _file(
    name: str, package: str, messages: dict[str, list[tuple[str, int, str, bool]]], deps: list[str]
) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")
    proto.dependency.extend(deps)
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        for field_name, number, kind, repeated in fields:
            label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            if kind == "map":
                entry = message.nested_type.add(name=f"{field_name}Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
                entry.field.add(
                    name="value", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL
                )
                message.field.add(
                    name=field_name,
                    number=number,
                    type=_F.TYPE_MESSAGE,
                    label=_F.LABEL_REPEATED,
                    type_name=f".{package}.{message_name}.{field_name}Entry",
                )
            elif kind.startswith("."):
                message.field.add(
                    name=field_name,
                    number=number,
                    type=_F.TYPE_MESSAGE,
                    label=label,
                    type_name=kind,
                )
            else:
                message.field.add(name=field_name, number=number, type=_TYPES[kind], label=label)
    return proto


def control_classes() -> dict[str, Any]:
    """The message classes of `moby.buildkit.v1` (Control API) by message name."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(_file("ops.proto", "pb", _PB, []))
    pool.Add(_file("worker.proto", "moby.buildkit.v1.types", _TYPES_PKG, ["ops.proto"]))
    pool.Add(
        _file(
            "control.proto",
            "moby.buildkit.v1",
            CONTROL_MESSAGES,
            ["google/protobuf/timestamp.proto", "ops.proto", "worker.proto"],
        )
    )
    classes = {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"moby.buildkit.v1.{name}")
        )
        for name in CONTROL_MESSAGES
    }
    for name in _TYPES_PKG:
        full = f"moby.buildkit.v1.types.{name}"
        classes[name] = message_factory.GetMessageClass(pool.FindMessageTypeByName(full))
    classes["Platform"] = message_factory.GetMessageClass(pool.FindMessageTypeByName("pb.Platform"))
    return classes
