"""Session context transfer: the entries fsutil would send, and the DiffCopy conversation.

`walk_stats` is checked on real temporary trees for BuildKit's rules (walk order, Go file
modes, hard links, symlinks never followed, exclude patterns with exceptions, followpaths);
`FileSyncService` is driven through the gRPC server by an in-memory engine that asks for
one file and finishes, as dockerd does.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsdk.errors import ContextError
from buildsdk.session import filesync
from buildsdk.session._messages import (
    PACKET_DATA,
    PACKET_FIN,
    PACKET_REQ,
    PACKET_STAT,
    Packet,
)
from buildsdk.session.filesync import FileSyncService, go_file_mode, walk_stats
from tests.unit.test_session_grpc import _serve_and_call

DIR = 1 << 31
SYMLINK = 1 << 27


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def _paths(
    root: Path,
    *,
    excludes: Sequence[str] = (),
    includes: Sequence[str] = (),
    followpaths: Sequence[str] = (),
) -> list[str]:
    stats = walk_stats(str(root), excludes=excludes, includes=includes, followpaths=followpaths)
    return [stat.path for stat in stats]


def test_depth_first_with_names_in_byte_order(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        dict.fromkeys((".dockerignore", "B", "_z", "a/x", "a-b", "a.txt", "a0"), "x"),
    )
    assert _paths(tmp_path) == [".dockerignore", "B", "_z", "a", "a/x", "a-b", "a.txt", "a0"]


def test_stats_carry_go_modes_sizes_and_nanosecond_times(tmp_path: Path) -> None:
    _tree(tmp_path, {"d/f": "hello"})
    os.chmod(tmp_path / "d/f", 0o4755)
    os.symlink("/etc/passwd", tmp_path / "link")
    os.mkfifo(tmp_path / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        stats = {stat.path: stat for stat in walk_stats(str(tmp_path))}
    finally:
        sock.close()
    assert stats["d"].mode == DIR | (os.lstat(tmp_path / "d").st_mode & 0o777)
    assert stats["d/f"].mode == (1 << 23) | 0o755
    assert stats["d/f"].size == 5
    assert stats["d/f"].mod_time == os.lstat(tmp_path / "d/f").st_mtime_ns
    assert stats["d/f"].uid == stats["d/f"].gid == 0
    # The link is listed with its raw target and never followed.
    assert stats["link"].mode & SYMLINK
    assert stats["link"].linkname == "/etc/passwd"
    assert stats["link"].size == len("/etc/passwd")
    assert stats["pipe"].mode & (1 << 25)
    assert "sock" not in stats


def test_go_file_mode_of_a_socket_is_none(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s"))
    try:
        assert go_file_mode(os.lstat(tmp_path / "s")) is None
    finally:
        sock.close()


# Go's os.FileMode type bits for each Unix file type (syscall's fillFileStatFromSys).
_GO_TYPE = {
    stat.S_IFREG: 0,
    stat.S_IFDIR: 1 << 31,
    stat.S_IFLNK: 1 << 27,
    stat.S_IFIFO: 1 << 25,
    stat.S_IFCHR: (1 << 26) | (1 << 21),
    stat.S_IFBLK: 1 << 26,
}


@given(
    kind=st.sampled_from([*_GO_TYPE, stat.S_IFSOCK]),
    bits=st.integers(0, 0o7777),
)
def test_go_file_mode_of_every_type_and_permission(kind: int, bits: int) -> None:
    result = go_file_mode(os.stat_result((kind | bits, 0, 0, 0, 0, 0, 0, 0, 0, 0)))
    if kind == stat.S_IFSOCK:
        assert result is None
        return
    expected = bits & 0o777 | _GO_TYPE[kind]
    # setuid, setgid and sticky: Go's ModeSetuid, ModeSetgid, ModeSticky.
    for unix, go in ((0o4000, 1 << 23), (0o2000, 1 << 22), (0o1000, 1 << 20)):
        if bits & unix:
            expected |= go
    assert result == expected


@pytest.mark.parametrize(
    "names",
    [
        ["b", "B", "a", "_", "Z"],
        ["é", "z", "e\udcff", "\udc80x", "日本", "a"],
    ],
)
def test_names_are_sent_in_byte_order(tmp_path: Path, names: list[str]) -> None:
    for name in names:
        (tmp_path / name).write_text("")
    listed = [s.path for s in walk_stats(str(tmp_path))]
    assert listed == sorted(names, key=os.fsencode)


def test_hard_links_point_at_the_first_path(tmp_path: Path) -> None:
    _tree(tmp_path, {"a": "data"})
    os.link(tmp_path / "a", tmp_path / "b")
    stats = {stat.path: stat for stat in walk_stats(str(tmp_path))}
    assert (stats["a"].linkname, stats["a"].size) == ("", 4)
    assert stats["b"].linkname == "a"
    assert stats["b"].size == 0


def _listed(monkeypatch: pytest.MonkeyPatch, root: Path) -> list[str]:
    """Record which directories the walk lists (relative to `root`)."""
    listed: list[str] = []
    original = filesync._sorted_names

    def spy(directory: str) -> list[str]:
        listed.append(os.path.relpath(directory, root))
        return original(directory)

    monkeypatch.setattr(filesync, "_sorted_names", spy)
    return listed


def test_plain_excludes_skip_directories_without_walking_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, {"keep/a": "1", "skip/b": "2", "skip/deep/c": "3", "x.log": "4"})
    listed = _listed(monkeypatch, tmp_path)
    assert _paths(tmp_path, excludes=["skip", "*.log"]) == ["keep", "keep/a"]
    assert listed == [".", "keep"]


def test_wildcard_exception_walks_excluded_dirs_and_sends_their_parents(tmp_path: Path) -> None:
    _tree(tmp_path, {"top.txt": "", "deep/er/x.py": "", "deep/er/y.txt": "", "z.py": ""})
    # The classic CLI's walker would not find deep/er/x.py here (docker/cli#2919).
    assert _paths(tmp_path, excludes=["*", "!**/*.py"]) == [
        "deep",
        "deep/er",
        "deep/er/x.py",
        "z.py",
    ]


def test_prefix_exception_enters_only_the_directories_on_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, {"foo/bar/a.py": "", "foo/bar/b.py": "", "foo/other/c.py": "", "zed/d": ""})
    listed = _listed(monkeypatch, tmp_path)
    paths = _paths(tmp_path, excludes=["foo", "zed", "!foo/bar/a.py"])
    assert paths == ["foo", "foo/bar", "foo/bar/a.py"]
    assert listed == [".", "foo", "foo/bar"]


def test_exclusion_under_a_reincluded_parent_uses_parent_results(tmp_path: Path) -> None:
    _tree(tmp_path, {"a/b/c": "", "a/d": ""})
    # MatchesUsingParentResults: `a/b` matched itself, so it stays excluded though `!a`
    # comes later; `a` and `a/d` are re-included.
    assert _paths(tmp_path, excludes=["a/b", "!a"]) == ["a", "a/d"]


def test_last_matching_pattern_wins_under_an_excluded_parent(tmp_path: Path) -> None:
    _tree(tmp_path, {"data/file1": "", "data/file2": "", "other": ""})
    assert _paths(tmp_path, excludes=["*", "!data", "data/file1"]) == ["data", "data/file2"]


def test_followpaths_restrict_the_walk_and_follow_symlinks_one_level(tmp_path: Path) -> None:
    _tree(tmp_path, {"Dockerfile": "", "real.dockerignore": "", "src/a": "", "zz": ""})
    os.symlink("real.dockerignore", tmp_path / ".dockerignore")
    paths = _paths(tmp_path, followpaths=["Dockerfile", "Dockerfile.dockerignore", ".dockerignore"])
    assert paths == [".dockerignore", "Dockerfile", "real.dockerignore"]


def test_include_patterns_send_parent_directories_only_when_needed(tmp_path: Path) -> None:
    _tree(tmp_path, {"src/a.py": "", "src/b.txt": "", "docs/c.py": "", "setup.py": ""})
    assert _paths(tmp_path, includes=["src/*.py", "setup.py"]) == ["setup.py", "src", "src/a.py"]
    assert _paths(tmp_path, includes=["src"]) == ["src", "src/a.py", "src/b.txt"]


def test_bad_exclude_pattern_is_a_context_error(tmp_path: Path) -> None:
    _tree(tmp_path, {"a": ""})
    with pytest.raises(ContextError):
        _paths(tmp_path, excludes=["["])


def test_for_build_serves_the_dockerfile_directory(tmp_path: Path) -> None:
    _tree(tmp_path, {"build/app.Dockerfile": "FROM x\n", "src/a": ""})
    service = FileSyncService.for_build(str(tmp_path), "build/app.Dockerfile")
    assert service.dockerfile_name == "app.Dockerfile"
    with pytest.raises(ContextError, match="Dockerfile"):
        FileSyncService.for_build(str(tmp_path), None)
    (tmp_path / "dockerfile").write_text("FROM y\n")
    assert FileSyncService.for_build(str(tmp_path), None).dockerfile_name == "dockerfile"


def test_diff_copy_conversation(tmp_path: Path) -> None:
    big = os.urandom(600_000)  # several DATA packets
    _tree(tmp_path, {"Dockerfile": "FROM x\n", "a/small": "hi", "skip/no": "x"})
    (tmp_path / "a/big").write_bytes(big)
    service = FileSyncService.for_build(str(tmp_path), None)
    # IDs are indexes among the STATs: Dockerfile 0, a 1, a/big 2, a/small 3.
    requests = [Packet(PACKET_REQ, id=2), Packet(PACKET_REQ, id=3), Packet(PACKET_FIN)]
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [
                (
                    "/moby.filesync.v1.FileSync/DiffCopy",
                    [p.encode() for p in requests],
                    (("dir-name", "context"), ("exclude-patterns", "skip")),
                )
            ],
        )
    )
    packets = [Packet.decode(m) for m in engine.messages(stream)]
    stats = [p.stat.path for p in packets if p.type == PACKET_STAT and p.stat is not None]
    assert stats == ["Dockerfile", "a", "a/big", "a/small"]
    assert any(p.type == PACKET_STAT and p.stat is None for p in packets)
    data: dict[int, bytes] = {}
    ends: list[int] = []
    for packet in packets:
        if packet.type == PACKET_DATA:
            if packet.data:
                data[packet.id] = data.get(packet.id, b"") + packet.data
            else:
                ends.append(packet.id)
    assert data == {2: big, 3: b"hi"}
    assert ends == [2, 3]
    assert packets[-1].type == PACKET_FIN
    assert engine.status(stream) == (0, "")
    report = service.transfers[-1]
    assert (report.entries, report.files, report.data_bytes) == (4, 2, len(big) + 2)


def test_diff_copy_refuses_unknown_directories(tmp_path: Path) -> None:
    _tree(tmp_path, {"Dockerfile": ""})
    service = FileSyncService.for_build(str(tmp_path), None)
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [("/moby.filesync.v1.FileSync/DiffCopy", b"", (("dir-name", "/etc"),))],
        )
    )
    assert engine.status(stream) == (5, "no access allowed to dir '/etc'")


def test_dockerfile_from_memory_is_served_as_dockerfile(tmp_path: Path) -> None:
    _tree(tmp_path, {"a": ""})
    service = FileSyncService.for_build(str(tmp_path), None, dockerfile_data=b"FROM mem\n")
    requests = [Packet(PACKET_REQ, id=0), Packet(PACKET_FIN)]
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [
                (
                    "/moby.filesync.v1.FileSync/DiffCopy",
                    [p.encode() for p in requests],
                    (("dir-name", "dockerfile"), ("followpaths", "Dockerfile")),
                )
            ],
        )
    )
    packets = [Packet.decode(m) for m in engine.messages(stream)]
    assert [p.stat.path for p in packets if p.stat is not None] == ["Dockerfile"]
    assert b"".join(p.data for p in packets if p.type == PACKET_DATA) == b"FROM mem\n"
    assert service.dockerfile_name == "Dockerfile"


def test_undecodable_file_names_are_sent_as_their_bytes(tmp_path: Path) -> None:
    raw = b"caf\xe9.txt"  # Latin-1, not UTF-8
    with open(os.path.join(os.fsencode(tmp_path), raw), "wb") as handle:
        handle.write(b"x")
    (stat,) = list(walk_stats(str(tmp_path)))
    assert Packet(PACKET_STAT, stat=stat).encode().count(raw) == 1


def test_named_context_directories_are_served_under_their_dir_names(tmp_path: Path) -> None:
    main = _tree(tmp_path / "main", {"Dockerfile": "FROM base\n"})
    other = _tree(tmp_path / "other", {"x.txt": "x\n", "drop.txt": "no\n"})
    (other / "link").symlink_to("/etc/passwd")
    service = FileSyncService.for_build(str(main), None, named={"other": str(other)})
    # The engine sends the named directory's own .dockerignore back as exclude patterns.
    requests = [Packet(PACKET_REQ, id=1), Packet(PACKET_FIN)]
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [
                (
                    "/moby.filesync.v1.FileSync/DiffCopy",
                    [p.encode() for p in requests],
                    (("dir-name", "other"), ("exclude-patterns", "drop.txt")),
                )
            ],
        )
    )
    packets = [Packet.decode(m) for m in engine.messages(stream)]
    stats = [p.stat for p in packets if p.type == PACKET_STAT and p.stat is not None]
    assert [stat.path for stat in stats] == ["link", "x.txt"]
    # The symlink is listed as a link, never followed.
    assert stats[0].linkname == "/etc/passwd"
    assert stats[0].mode & SYMLINK
    assert b"".join(p.data for p in packets if p.type == PACKET_DATA) == b"x\n"
    assert engine.status(stream) == (0, "")


def test_a_named_context_that_is_no_directory_is_a_context_error(tmp_path: Path) -> None:
    _tree(tmp_path, {"Dockerfile": "", "file.txt": ""})
    with pytest.raises(ContextError, match=r"failed to get build context other: .*missing"):
        FileSyncService.for_build(str(tmp_path), None, named={"other": str(tmp_path / "missing")})
    with pytest.raises(ContextError, match="not a directory"):
        FileSyncService.for_build(str(tmp_path), None, named={"o": str(tmp_path / "file.txt")})


# -- the context listed ahead of the engine's request ------------------------------------------


def _listed_paths(service: FileSyncService, *metadata: tuple[str, str]) -> list[str]:
    """The STAT paths the service sends for one DiffCopy with `metadata`, asking no file."""
    engine, (stream,) = asyncio.run(
        _serve_and_call(
            service.handlers(),  # type: ignore[arg-type]
            [
                (
                    "/moby.filesync.v1.FileSync/DiffCopy",
                    [Packet(PACKET_FIN).encode()],
                    (("dir-name", "context"), *metadata),
                )
            ],
        )
    )
    packets = [Packet.decode(m) for m in engine.messages(stream)]
    return [p.stat.path for p in packets if p.type == PACKET_STAT and p.stat is not None]


def _listing_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "buildsdk-context-listing"]


def test_a_request_like_the_frontend_s_takes_the_listing_made_ahead(tmp_path: Path) -> None:
    _tree(tmp_path, {"Dockerfile": "", ".dockerignore": "# c\n/logs\n!logs/keep\n", "a": ""})
    _tree(tmp_path, {"logs/x": "", "logs/keep": ""})
    service = FileSyncService.for_build(str(tmp_path), None)
    service.list_context_ahead()
    listing = service._listings["context"]
    listing.result.result(timeout=10)
    # Made after the listing: absent from an answer that used it, present in a fresh one.
    (tmp_path / "late").write_text("")
    patterns = (("exclude-patterns", "logs"), ("exclude-patterns", "!logs/keep"))
    taken = _listed_paths(service, *patterns)
    assert taken == [".dockerignore", "Dockerfile", "a", "logs", "logs/keep"]
    fresh = [".dockerignore", "Dockerfile", "a", "late", "logs", "logs/keep"]
    assert _listed_paths(service, *patterns) == fresh
    first, second = service.transfers
    assert first.listed_ahead
    assert not second.listed_ahead
    service.close()
    assert _listing_threads() == []


@pytest.mark.parametrize(
    "metadata",
    [
        (("exclude-patterns", "other"),),  # other patterns
        (),  # none where .dockerignore has some
        (("exclude-patterns", "logs"), ("exclude-patterns", "!logs/keep"), ("followpaths", "a2")),
        (
            ("exclude-patterns", "logs"),
            ("exclude-patterns", "!logs/keep"),
            ("include-patterns", "a2"),
        ),
    ],
)
def test_any_other_request_lists_afresh(
    tmp_path: Path, metadata: tuple[tuple[str, str], ...]
) -> None:
    _tree(tmp_path, {"Dockerfile": "", ".dockerignore": "logs\n!logs/keep\n", "a": ""})
    service = FileSyncService.for_build(str(tmp_path), None)
    service.list_context_ahead()
    service._listings["context"].result.result(timeout=10)
    (tmp_path / "a2").write_text("")
    assert "a2" in _listed_paths(service, *metadata)
    # The listing made ahead is still there for a request that matches; close() ends it.
    assert "context" in service._listings
    service.close()
    assert service._listings == {}
    assert _listing_threads() == []


def test_a_dockerfile_s_own_ignore_file_comes_before_dockerignore(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "build/app.Dockerfile": "",
            "build/app.Dockerfile.dockerignore": "secret\n",
            ".dockerignore": "other\n",
            "secret": "",
            "other": "",
        },
    )
    service = FileSyncService.for_build(str(tmp_path), "build/app.Dockerfile")
    service.list_context_ahead()
    assert service._listings["context"].excludes == ("secret",)
    assert "secret" not in service._listings["context"].result.result(timeout=10)[0].path
    service.close()


@pytest.mark.parametrize("ignore", ["long", "fifo", "symlink"])
def test_an_ignore_file_the_engine_must_judge_lists_nothing_ahead(
    tmp_path: Path, ignore: str
) -> None:
    _tree(tmp_path, {"Dockerfile": "", "real": "x\n"})
    path = tmp_path / ".dockerignore"
    if ignore == "long":
        # Longer than Go's bufio.Scanner takes: the engine's frontend reports that itself.
        path.write_text("x" * 70_000 + "\n")
    elif ignore == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(tmp_path / "real")
    service = FileSyncService.for_build(str(tmp_path), None)
    service.list_context_ahead()
    assert service._listings == {}


def test_close_stops_a_listing_under_way(tmp_path: Path) -> None:
    _tree(tmp_path, {"Dockerfile": ""})
    for i in range(200):
        _tree(tmp_path, {f"d{i:03}/f": ""})
    service = FileSyncService.for_build(str(tmp_path), None)
    gate = threading.Event()
    real = filesync._sorted_names

    def slow(directory: str) -> list[str]:
        gate.wait(10)
        return real(directory)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(filesync, "_sorted_names", slow)
        service.list_context_ahead()
        listing = service._listings["context"]
        # The walk waits in its first directory; close() stops it at the next one.
        threading.Timer(0.2, gate.set).start()
        service.close()
    assert listing.result.done()
    with pytest.raises(filesync.WalkStopped):
        listing.result.result()
    assert _listing_threads() == []
