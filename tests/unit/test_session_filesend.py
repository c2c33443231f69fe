"""Exports written through the session (`FileSend/DiffCopy`), without an engine.

`DirectoryWriter` is fed fsutil packets shaped as dockerd sends them for `type=local` (STATs
with Go file modes, an empty STAT, DATA per requested ID, FIN) and hostile variants of them;
what lands on disk is compared with what was sent. `FileSendService` is driven through the
session's gRPC server by an in-memory engine, for directories and archives, and the
/build-path planning (`client_exports`) is checked for what it sends and what it refuses.
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildsdk import BuildOptions, ExportError
from buildsdk.session._messages import (
    PACKET_DATA,
    PACKET_ERR,
    PACKET_FIN,
    PACKET_REQ,
    PACKET_STAT,
    BytesMessage,
    Packet,
    Stat,
)
from buildsdk.session._runtime import client_exports, needs_session, session_is_optional
from buildsdk.session.filesend import (
    DirectoryReceiver,
    DirectoryWriter,
    FileReceiver,
    FileSendService,
    StreamReceiver,
    unix_mode,
)
from buildsdk.session.filesync import walk_stats
from tests.unit.test_session_grpc import _serve_and_call

DIR = 1 << 31
SYMLINK = 1 << 27
PIPE = 1 << 25
SETUID = 1 << 23
T0 = 1_700_000_000_123_456_789
FILE_SEND = "/moby.filesync.v1.FileSend/DiffCopy"


def _stat(path: str, mode: int, **fields: object) -> Packet:
    return Packet(PACKET_STAT, stat=Stat(path=path, mode=mode, mod_time=T0, **fields))  # type: ignore[arg-type]


def _conversation(
    writer: DirectoryWriter, entries: list[Packet], contents: dict[str, bytes]
) -> list[Packet]:
    """Play the engine: STATs, the end of the list, DATA for each REQ (in 3-byte pieces,
    two files interleaved as fsutil's parallel senders do), then FIN; returns the replies."""
    replies: list[Packet] = []
    paths: dict[int, str] = {}
    for index, packet in enumerate(entries):
        assert packet.stat is not None
        paths[index] = packet.stat.path
        replies += writer.feed(packet)
    replies += writer.feed(Packet(PACKET_STAT))
    asked = [p.id for p in replies if p.type == PACKET_REQ]
    pieces = {
        i: [contents[paths[i]][k : k + 3] for k in range(0, len(contents[paths[i]]), 3)]
        for i in asked
    }
    while any(pieces.values()):
        for ident in asked:
            if pieces[ident]:
                replies += writer.feed(Packet(PACKET_DATA, id=ident, data=pieces[ident].pop(0)))
    for ident in asked:
        replies += writer.feed(Packet(PACKET_DATA, id=ident))
    replies += writer.feed(Packet(PACKET_FIN))
    return replies


def test_a_recorded_shape_export_is_written_with_modes_times_and_links(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    writer = DirectoryWriter(str(dest))
    entries = [
        _stat("bin", DIR | 0o755),
        _stat("bin/tool", SETUID | 0o755, size=7),
        _stat("bin/tool-link", SETUID | 0o755, linkname="bin/tool"),
        _stat("empty", 0o600),
        _stat("fifo", PIPE | 0o640),
        _stat("link", SYMLINK | 0o777, linkname="/etc/passwd", size=11),
        _stat("notes.txt", 0o644, size=2**62),  # a huge announced size allocates nothing
    ]
    replies = _conversation(
        writer, entries, {"bin/tool": b"#!tool\n", "empty": b"", "notes.txt": b"hi"}
    )
    assert [(p.type, p.id) for p in replies] == [
        (PACKET_REQ, 1),
        (PACKET_REQ, 3),
        (PACKET_REQ, 6),
        (PACKET_FIN, 0),
    ]
    assert writer.complete
    assert writer.answered
    assert (writer.entries, writer.files, writer.data_bytes) == (7, 3, 9)
    assert (dest / "bin/tool").read_bytes() == b"#!tool\n"
    assert stat.S_IMODE(os.lstat(dest / "bin/tool").st_mode) == 0o4755
    assert os.lstat(dest / "bin/tool").st_mtime_ns == T0
    assert os.lstat(dest / "bin/tool-link").st_ino == os.lstat(dest / "bin/tool").st_ino
    assert (dest / "empty").read_bytes() == b""
    assert stat.S_IMODE(os.lstat(dest / "empty").st_mode) == 0o600
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
    assert os.readlink(dest / "link") == "/etc/passwd"
    assert os.lstat(dest / "link").st_mtime_ns == T0
    assert (dest / "notes.txt").read_bytes() == b"hi"
    assert sorted(os.listdir(dest)) == ["bin", "empty", "fifo", "link", "notes.txt"]


def test_existing_entries_are_merged_replaced_and_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "kept.txt").write_text("mine")
    (dest / "file.txt").write_text("old contents, longer than the new ones")
    (dest / "was-dir").mkdir()
    (dest / "was-dir/inner").write_text("x")
    os.symlink(outside, dest / "sub")  # a symlink where the export has a directory
    writer = DirectoryWriter(str(dest))
    entries = [
        _stat("file.txt", 0o644),
        _stat("sub", DIR | 0o755),
        _stat("sub/x", 0o644),
        _stat("was-dir", SYMLINK | 0o777, linkname="file.txt"),
    ]
    _conversation(writer, entries, {"file.txt": b"new", "sub/x": b"x"})
    assert (dest / "kept.txt").read_text() == "mine"
    assert (dest / "file.txt").read_text() == "new"
    assert not (dest / "sub").is_symlink()
    assert (dest / "sub/x").read_text() == "x"
    assert os.listdir(outside) == []
    assert os.readlink(dest / "was-dir") == "file.txt"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([_stat("../escape", 0o644)], "escapes the destination"),
        ([_stat("a/../../escape", 0o644)], "escapes the destination"),
        ([_stat("/etc/escape", 0o644)], "absolute path"),
        ([_stat("a//b", 0o644)], "unclean path"),
        ([_stat("./a", 0o644)], "unclean path"),
        ([_stat("", 0o644)], "invalid path"),
        ([_stat("missing/parent", 0o644)], "not below a directory sent before it"),
        (
            [_stat("link", SYMLINK | 0o777, linkname=".."), _stat("link/escape", 0o644)],
            "not below a directory sent before it",
        ),
        ([_stat("a", 0o644), _stat("a", 0o644)], "sent twice"),
        ([_stat("h", 0o644, linkname="/etc/passwd")], "absolute path"),
        ([_stat("h", 0o644, linkname="nothing")], "not a file sent before it"),
        ([_stat("sock", (1 << 24) | 0o755)], "unsupported file type"),
    ],
)
def test_hostile_entries_are_refused_and_nothing_lands_outside(
    tmp_path: Path, entries: list[Packet], message: str
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    writer = DirectoryWriter(str(dest))
    for packet in entries[:-1]:
        writer.feed(packet)
    with pytest.raises(ExportError, match=message):
        writer.feed(entries[-1])
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert not [name for name in os.listdir(dest) if name.startswith(".tmp")]


def test_data_for_an_unrequested_or_finished_id_is_refused(tmp_path: Path) -> None:
    writer = DirectoryWriter(str(tmp_path))
    assert writer.feed(_stat("d", DIR | 0o755)) == []
    with pytest.raises(ExportError, match="invalid file request 0"):
        writer.feed(Packet(PACKET_DATA, id=0, data=b"x"))
    writer = DirectoryWriter(str(tmp_path))
    assert writer.feed(_stat("f", 0o644)) == [Packet(PACKET_REQ, id=0)]
    writer.feed(Packet(PACKET_DATA, id=0, data=b"x"))
    writer.feed(Packet(PACKET_DATA, id=0))
    with pytest.raises(ExportError, match="invalid file request 0"):
        writer.feed(Packet(PACKET_DATA, id=0, data=b"more"))
    with pytest.raises(ExportError, match="invalid file request 7"):
        writer.feed(Packet(PACKET_DATA, id=7, data=b"x"))


def test_an_early_fin_or_an_engine_error_fails_and_leaves_no_partial_file(tmp_path: Path) -> None:
    writer = DirectoryWriter(str(tmp_path))
    writer.feed(_stat("f", 0o644))
    writer.feed(Packet(PACKET_STAT))
    writer.feed(Packet(PACKET_DATA, id=0, data=b"half"))
    with pytest.raises(ExportError, match="1 file"):
        writer.feed(Packet(PACKET_FIN))
    writer.close()
    assert os.listdir(tmp_path) == []
    writer = DirectoryWriter(str(tmp_path))
    with pytest.raises(ExportError, match="the engine failed the export: disk full"):
        writer.feed(Packet(PACKET_ERR, data=b"disk full"))


def test_many_files_interleaved_arrive_whole_with_few_open_descriptors(tmp_path: Path) -> None:
    writer = DirectoryWriter(str(tmp_path))
    names = [f"f{i:02}" for i in range(40)]
    for name in names:
        writer.feed(_stat(name, 0o644))
    writer.feed(Packet(PACKET_STAT))
    before = len(os.listdir("/proc/self/fd"))
    for piece in (b"a", b"b", b"c"):
        for ident in range(len(names)):
            writer.feed(Packet(PACKET_DATA, id=ident, data=piece * (ident + 1)))
        assert len(os.listdir("/proc/self/fd")) <= before + 16
    replies = [r for ident in range(len(names)) for r in writer.feed(Packet(PACKET_DATA, id=ident))]
    assert replies == [Packet(PACKET_FIN)]
    for ident, name in enumerate(names):
        n = ident + 1
        assert (tmp_path / name).read_bytes() == b"a" * n + b"b" * n + b"c" * n


def test_hard_link_to_a_file_still_arriving_is_made_once_it_is_whole(tmp_path: Path) -> None:
    writer = DirectoryWriter(str(tmp_path))
    entries = [_stat("a", 0o644), _stat("b", 0o644, linkname="a")]
    _conversation(writer, entries, {"a": b"shared"})
    assert (tmp_path / "b").read_text() == "shared"
    assert os.lstat(tmp_path / "a").st_ino == os.lstat(tmp_path / "b").st_ino


# -- property: any tree, listed and sent as the engine sends it, arrives identical --------

_NAMES = st.text(alphabet="abcXY-_.0", min_size=1, max_size=6).filter(
    lambda n: n not in (".", "..")
)


@st.composite
def _trees(draw: st.DrawFn) -> dict[str, object]:
    """A nested dict: name -> bytes (file), str (symlink target), dict (directory)."""

    def level(depth: int) -> dict[str, object]:
        names = draw(st.lists(_NAMES, max_size=4, unique=True))
        out: dict[str, object] = {}
        for name in names:
            kind = draw(st.sampled_from(["file", "link", "dir"] if depth < 3 else ["file", "link"]))
            if kind == "file":
                out[name] = draw(st.binary(max_size=40))
            elif kind == "link":
                out[name] = draw(st.sampled_from(["x", "../up", "/abs/path", "a/b"]))
            else:
                out[name] = level(depth + 1)
        return out

    return level(0)


def _build(root: Path, tree: dict[str, object], modes: Iterator[int]) -> None:
    for name, value in tree.items():
        path = root / name
        if isinstance(value, bytes):
            path.write_bytes(value)
            os.chmod(path, next(modes))
            os.utime(path, ns=(T0, T0 + len(value)))
        elif isinstance(value, str):
            os.symlink(value, path)
        else:
            assert isinstance(value, dict)
            path.mkdir()
            _build(path, value, modes)
            os.chmod(path, 0o750)


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            rel = path.relative_to(root).as_posix()
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(path), info.st_mtime_ns)
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                mode = stat.S_IMODE(info.st_mode)
                out[rel] = ("file", path.read_bytes(), mode, info.st_mtime_ns)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees(), modes=st.lists(st.sampled_from([0o644, 0o600, 0o755, 0o4711]), min_size=1))
def test_any_tree_stated_and_sent_arrives_identical(
    tree: dict[str, object], modes: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as source_dir, tempfile.TemporaryDirectory() as dest_dir:
        source = Path(source_dir)
        cycle = iter(modes * 1000)
        _build(source, tree, cycle)
        stats = list(walk_stats(str(source)))
        contents = {
            s.path: (source / s.path).read_bytes() for s in stats if not s.mode & (DIR | SYMLINK)
        }
        writer = DirectoryWriter(dest_dir)
        replies = _conversation(writer, [Packet(PACKET_STAT, stat=s) for s in stats], contents)
        assert replies[-1] == Packet(PACKET_FIN)
        assert writer.complete
        assert _snapshot(Path(dest_dir)) == _snapshot(source)


def test_unix_mode_keeps_permission_and_special_bits() -> None:
    assert unix_mode(DIR | 0o755) == 0o755
    assert unix_mode(SETUID | (1 << 22) | (1 << 20) | 0o700) == 0o7700


# -- through the session's gRPC server ------------------------------------------------------


def test_service_routes_a_directory_export_by_exporter_id(tmp_path: Path) -> None:
    dest = tmp_path / "new" / "out"
    other = tmp_path / "other"
    service = FileSendService({0: DirectoryReceiver(str(other)), 1: DirectoryReceiver(str(dest))})
    engine_sends = [
        _stat("d", DIR | 0o755),
        _stat("d/f", 0o644, size=5),
        Packet(PACKET_STAT),
        Packet(PACKET_DATA, id=1, data=b"hello"),
        Packet(PACKET_DATA, id=1),
        Packet(PACKET_FIN),
    ]
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [
                (
                    FILE_SEND,
                    [p.encode() for p in engine_sends],
                    (("buildkit-attachable-exporter-id", "1"),),
                )
            ],
        )
    )
    replies = [Packet.decode(m) for m in engine.messages(stream)]
    assert replies == [Packet(PACKET_REQ, id=1), Packet(PACKET_FIN)]
    assert engine.status(stream) == (0, "")
    assert (dest / "d/f").read_text() == "hello"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700  # created as the CLI creates it
    assert not other.exists()


def test_service_reports_a_refused_entry_to_the_engine(tmp_path: Path) -> None:
    service = FileSendService({0: DirectoryReceiver(str(tmp_path / "out"))})
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [(FILE_SEND, [_stat("../x", 0o644).encode()], ())],  # no id: Docker 20.10
        )
    )
    (reply,) = [Packet.decode(m) for m in engine.messages(stream)]
    assert reply.type == PACKET_ERR
    assert reply.data == b"export refused: path '../x' escapes the destination"
    assert engine.status(stream) == (2, "export refused: path '../x' escapes the destination")
    assert [str(e) for e in service.errors] == [reply.data.decode()]
    assert not (tmp_path / "x").exists()


def test_service_refuses_an_export_it_has_no_receiver_for(tmp_path: Path) -> None:
    service = FileSendService({0: StreamReceiver(io.BytesIO())})
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [(FILE_SEND, b"", (("buildkit-attachable-exporter-id", "3"),))],
        )
    )
    assert engine.status(stream) == (5, "no export destination for exporter 3")


def test_tar_export_is_written_whole_then_renamed_into_place(tmp_path: Path) -> None:
    target = tmp_path / "image.tar"
    chunks = [os.urandom(4096) for _ in range(3)] + [b"end"]
    receiver = FileReceiver(str(target))
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            FileSendService({0: receiver}).handlers(),  # type: ignore[arg-type]
            [(FILE_SEND, [BytesMessage(c).encode() for c in chunks], ())],
        )
    )
    assert engine.status(stream) == (0, "")
    assert target.read_bytes() == b"".join(chunks)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert receiver.data_bytes == 4096 * 3 + 3
    assert os.listdir(tmp_path) == ["image.tar"]


def test_a_tar_export_broken_mid_way_leaves_the_old_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "image.tar"
    target.write_bytes(b"previous archive")
    os.chmod(target, 0o640)
    # A second message that is not a BytesMessage (a varint where bytes belong).
    messages = [BytesMessage(b"new data").encode(), b"\x08\x01"]
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            FileSendService({0: FileReceiver(str(target))}).handlers(),  # type: ignore[arg-type]
            [(FILE_SEND, messages, ())],
        )
    )
    status, message = engine.status(stream)
    assert status == 2
    assert "malformed message" in message
    assert target.read_bytes() == b"previous archive"
    assert os.listdir(tmp_path) == ["image.tar"]


def test_tar_export_over_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "image.tar"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    asyncio.run(
        _serve_and_call(
            FileSendService({0: FileReceiver(str(target))}).handlers(),  # type: ignore[arg-type]
            [(FILE_SEND, [BytesMessage(b"new").encode()], ())],
        )
    )
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_stream_export_goes_to_the_callers_writer() -> None:
    sink = io.BytesIO()
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            FileSendService({0: StreamReceiver(sink)}).handlers(),  # type: ignore[arg-type]
            [(FILE_SEND, [BytesMessage(b"ab").encode(), BytesMessage(b"cd").encode()], ())],
        )
    )
    assert engine.status(stream) == (0, "")
    assert sink.getvalue() == b"abcd"
    assert not sink.closed


# -- the /build path: what is sent, what is refused ----------------------------------------


def _options(tmp_path: Path, *outputs: Mapping[str, Any]) -> BuildOptions:
    return BuildOptions(path=str(tmp_path), version="2", outputs=list(outputs))


def test_local_output_loses_dest_and_tar_keeps_it_as_docker_cli_20_10_sends(
    tmp_path: Path,
) -> None:
    local = _options(tmp_path, {"type": "local", "attrs": {"dest": "out", "x": "1"}})
    outputs, receivers = client_exports(local)
    assert [o.to_engine() for o in outputs] == [{"Type": "local", "Attrs": {"x": "1"}}]
    assert receivers[0] == DirectoryReceiver("out")
    tar = _options(tmp_path, {"type": "tar", "attrs": {"dest": str(tmp_path / "o.tar")}})
    outputs, receivers = client_exports(tar)
    assert [o.to_engine() for o in outputs] == [
        {"Type": "tar", "Attrs": {"dest": str(tmp_path / "o.tar")}}
    ]
    assert receivers[0] == FileReceiver(str(tmp_path / "o.tar"))
    assert needs_session(tar)
    assert not session_is_optional(tar)


def test_outputs_the_engine_keeps_need_no_session(tmp_path: Path) -> None:
    for output in ({"type": "moby"}, {"type": "local"}, {"type": "tar", "attrs": {"x": "y"}}):
        options = _options(tmp_path, output).model_copy(update={"context_transfer": "tar"})
        assert not needs_session(options)
        assert client_exports(options)[1] == {}


def test_tar_to_a_directory_or_a_terminal_is_refused_before_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ExportError, match="is a directory"):
        client_exports(_options(tmp_path, {"type": "tar", "attrs": {"dest": str(tmp_path)}}))

    class Terminal(io.BytesIO):
        def isatty(self) -> bool:
            return True

    class Stdout:
        buffer = Terminal()

    monkeypatch.setattr("sys.stdout", Stdout())
    with pytest.raises(ExportError, match="standard output is a terminal"):
        client_exports(_options(tmp_path, {"type": "tar", "attrs": {"dest": "-"}}))
