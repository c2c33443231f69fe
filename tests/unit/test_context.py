"""The build context tar: headers as Go writes them, every source, streaming and errors."""

from __future__ import annotations

import asyncio
import gzip as gzip_module
import io
import os
import re
import shutil
import socket
import stat
import tarfile
import threading
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildsdk.context import ContextEntry, _header, _Item, list_context, prepare_context
from buildsdk.errors import ContextError
from tests.unit._context_helpers import tar_members

DOCKERFILE = b"FROM scratch\n"
RANDOM_NAME = re.compile(r"^\.dockerfile\.[0-9a-f]{20}$")


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _body(root: Path, **kwargs: object) -> bytes:
    return b"".join(prepare_context(path=root, **kwargs))  # type: ignore[arg-type]


def _blocks(data: bytes) -> list[bytes]:
    return [data[i : i + 512] for i in range(0, len(data), 512)]


def _checksum_ok(block: bytes) -> bool:
    stored = int(block[148:154], 8)
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:])


# --- headers -------------------------------------------------------------------------------


def test_ustar_header_fields_as_go_writes_them(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "a.txt": b"hello\n"})
    os.utime(root / "a.txt", ns=(0, 1_700_000_000_999_999_999))
    data = _body(root)
    blocks = _blocks(data)
    # Dockerfile header, its data, a.txt header, its data, two zero blocks: no padding
    # to a 10240-byte record as GNU tar does.
    assert len(data) == 6 * 512
    assert blocks[-2:] == [bytes(512), bytes(512)]
    header = blocks[2]
    assert header[:100].rstrip(b"\0") == b"a.txt"
    assert header[100:108] == b"0000644\0"
    assert header[108:116] == b"0000000\0"  # uid 0
    assert header[116:124] == b"0000000\0"  # gid 0
    assert header[124:136] == b"00000000006\0"
    assert header[136:148] == b"%011o\0" % 1_700_000_000  # whole seconds, truncated
    assert header[154:156] == b"\0 "
    assert _checksum_ok(header)
    assert header[156:157] == b"0"
    assert header[257:265] == b"ustar\x0000"
    assert header[265:329] == bytes(64)  # empty uname and gname
    assert header[329:345] == b"0000000\x000000000\0"  # devmajor, devminor
    assert header[345:512] == bytes(167)
    assert blocks[3] == b"hello\n" + bytes(506)


def test_modes_and_special_bits_are_kept(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "run": b"#!/bin/sh\n"})
    os.chmod(root / "run", 0o4755)
    (root / "sticky").mkdir()
    os.chmod(root / "sticky", 0o1777)
    os.chmod(root / "Dockerfile", 0o600)
    modes = {m.name: m.mode for m in tar_members(_body(root))}
    assert modes == {"Dockerfile": 0o600, "run": 0o4755, "sticky": 0o1777}


def test_long_name_uses_ustar_prefix_without_pax(tmp_path: Path) -> None:
    long_dir = "d" * 60 + "/" + "e" * 60
    name = long_dir + "/" + "f" * 90
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, name: b"x\n"})
    data = _body(root)
    assert b"PaxHeaders.0" not in data
    members = tar_members(data)
    assert [m.name for m in members][-1] == name
    header = next(b for b in _blocks(data) if b.startswith(b"f" * 90))
    assert header[345:500].rstrip(b"\0") == long_dir.encode()


@pytest.mark.parametrize("name", ["k" * 101, "ü-name", "ß/a"])
def test_names_ustar_cannot_hold_use_pax(tmp_path: Path, name: str) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, name: b"x\n"})
    data = _body(root)
    members = tar_members(data)
    assert name in [m.name for m in members]
    pax = next(b for b in _blocks(data) if b"PaxHeaders.0" in b[:100])
    assert pax[156:157] == b"x"
    assert _checksum_ok(pax)
    encoded = name.encode()
    record = b" path=" + encoded + b"\n"
    assert (b"%d" % (len(record) + len(str(len(record) + 2)))) + record in data


def test_long_symlink_target_uses_pax_linkpath(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE})
    os.symlink("t" * 150, root / "link")
    data = _body(root)
    assert b" linkpath=" + b"t" * 150 + b"\n" in data
    link = next(m for m in tar_members(data) if m.name == "link")
    assert link.issym()
    assert link.linkname == "t" * 150


def test_huge_size_goes_to_pax_record() -> None:
    size = 8 * 1024**3
    item = _Item("big", "file", size, 0o644, 1, "", None)
    blocks = _blocks(_header(item))
    assert len(blocks) == 3  # pax header, its records, the main header
    assert blocks[0][:100].rstrip(b"\0") == b"PaxHeaders.0/big"
    assert blocks[1].rstrip(b"\0") == b"%d size=%d\n" % (len(f" size={size}\n") + 2, size)
    assert blocks[2][124:136] == b"00000000000\0"
    assert _checksum_ok(blocks[2])


def test_hard_links_symlinks_fifos_and_sockets(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "a1": b"same\n"})
    os.link(root / "a1", root / "b2")
    os.symlink("/etc/passwd", root / "abs")
    os.symlink("missing", root / "dangling")
    os.mkfifo(root / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        sock.bind("sock")
    finally:
        os.chdir(cwd)
    try:
        members = tar_members(_body(root))
    finally:
        sock.close()
    by_name = {m.name: m for m in members}
    assert list(by_name) == ["Dockerfile", "a1", "abs", "b2", "dangling", "pipe"]
    assert by_name["a1"].isreg()
    assert by_name["a1"].size == 5
    assert by_name["b2"].islnk()
    assert by_name["b2"].linkname == "a1"
    assert by_name["b2"].size == 0
    assert by_name["abs"].issym()
    assert by_name["abs"].linkname == "/etc/passwd"
    assert by_name["dangling"].linkname == "missing"
    assert by_name["pipe"].isfifo()


def test_character_device_header(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE})
    try:
        os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs privileges")
    member = next(m for m in tar_members(_body(root)) if m.name == "null")
    assert member.ischr()
    assert (member.devmajor, member.devminor) == (1, 3)


def test_symlinked_directory_is_stored_as_link_not_followed(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "real/f": b"f\n"})
    os.symlink("real", root / "alias")
    names = [m.name for m in tar_members(_body(root))]
    assert names == ["Dockerfile", "alias", "real", "real/f"]


def test_symlinked_context_directory_is_resolved(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "x": b"x\n"})
    os.symlink(root, tmp_path / "link")
    assert _body(tmp_path / "link") == _body(root)


# --- context sources -----------------------------------------------------------------------


def test_dockerfile_relative_to_context_and_lowercase_fallback(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"dockerfile": DOCKERFILE, "sub/Build": DOCKERFILE})
    assert prepare_context(path=root).dockerfile == "dockerfile"
    assert prepare_context(path=root, dockerfile="sub/Build").dockerfile == "sub/Build"
    absolute = str(root / "sub" / "Build")
    assert prepare_context(path=root, dockerfile=absolute).dockerfile == "sub/Build"


def test_dockerfile_outside_context_is_added_under_random_name(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {".dockerignore": b"sub\n!sub/keep\n", "sub/keep": b"k\n"})
    outside = _tree(tmp_path / "o", {"Dockerfile": b"FROM scratch\nCOPY . /\n"})
    context = prepare_context(path=root, dockerfile=str(outside / "Dockerfile"))
    name = context.dockerfile
    assert name is not None
    assert RANDOM_NAME.match(name)
    with tarfile.open(fileobj=io.BytesIO(b"".join(context))) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [".dockerignore", "sub/keep", name]
        ignore = tar.extractfile(".dockerignore")
        assert ignore is not None
        assert ignore.read() == b"sub\n!sub/keep\n\n" + name.encode() + b"\n"
        assert members[0].mode == 0o644  # the original header is kept
        added = tar.extractfile(name)
        assert added is not None
        assert added.read() == b"FROM scratch\nCOPY . /\n"
        assert members[-1].mode == 0o600
        assert members[-1].uid == 0


def test_relative_dockerfile_leaving_the_context_counts_as_outside(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"x": b"x\n"})
    _tree(tmp_path / "o", {"Dockerfile": DOCKERFILE})
    context = prepare_context(path=root, dockerfile="../o/Dockerfile")
    assert context.dockerfile is not None
    assert RANDOM_NAME.match(context.dockerfile)


def test_fileobj_with_path_sends_directory_and_dockerfile_from_memory(tmp_path: Path) -> None:
    # Like `docker build -f - DIR`: the on-disk Dockerfile stays excluded, the one from
    # memory is added, and .dockerignore (absent here) is created naming it.
    root = _tree(tmp_path / "c", {"Dockerfile": b"FROM old\n", "x": b"x\n"})
    context = prepare_context(path=root, fileobj=io.StringIO("FROM new\n"))
    name = context.dockerfile
    assert name is not None
    assert RANDOM_NAME.match(name)
    with tarfile.open(fileobj=io.BytesIO(b"".join(context))) as tar:
        assert tar.getnames() == ["Dockerfile", "x", name, ".dockerignore"]
        added = tar.extractfile(name)
        ignore = tar.extractfile(".dockerignore")
        assert added is not None
        assert ignore is not None
        assert added.read() == b"FROM new\n"
        assert ignore.read() == b".dockerignore\n" + name.encode() + b"\n"
        assert tar.getmember(".dockerignore").mode == 0o600


def test_fileobj_with_path_keeps_an_excluded_dockerfile_out(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": b"FROM old\n", ".dockerignore": b"Dockerfile\n"})
    context = prepare_context(path=root, fileobj=io.BytesIO(b"FROM new\n"))
    names = [m.name for m in tar_members(b"".join(context))]
    assert names == [".dockerignore", context.dockerfile]


def test_fileobj_alone_is_a_context_holding_only_that_dockerfile() -> None:
    context = prepare_context(path=None, fileobj=io.BytesIO(b"FROM alpine\n"))
    assert context.dockerfile == "Dockerfile"
    with tarfile.open(fileobj=io.BytesIO(b"".join(context))) as tar:
        (member,) = tar.getmembers()
        assert member.name == "Dockerfile"
        assert member.mode == 0o644
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        content = tar.extractfile(member)
        assert content is not None
        assert content.read() == b"FROM alpine\n"


def test_custom_context_is_passed_through_unchanged() -> None:
    archive = os.urandom(200_000)
    context = prepare_context(
        path=None, fileobj=io.BytesIO(archive), custom_context=True, dockerfile="x/Df"
    )
    assert context.dockerfile == "x/Df"
    assert context.content_type == "application/x-tar"
    assert b"".join(context) == archive


def test_custom_context_needs_binary_fileobj() -> None:
    context = prepare_context(path=None, fileobj=io.StringIO("text"), custom_context=True)
    with pytest.raises(ContextError, match="binary"):
        b"".join(context)


def test_gzip_compresses_the_whole_tar(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "a": b"a" * 100_000})
    plain = _body(root)
    packed = _body(root, gzip=True)
    assert packed[:2] == b"\x1f\x8b"
    assert len(packed) < len(plain) // 10
    assert gzip_module.decompress(packed) == plain


def test_list_context_reports_entries_without_sending(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "c",
        {"Dockerfile": DOCKERFILE, ".dockerignore": b"*.log\n", "a.log": b"l\n", "d/b": b"bb\n"},
    )
    os.symlink("d/b", root / "ln")
    assert list_context(root) == [
        ContextEntry(".dockerignore", "file", 6, 0o644),
        ContextEntry("Dockerfile", "file", 13, 0o644),
        ContextEntry("d/", "dir", 0, 0o755),
        ContextEntry("d/b", "file", 3, 0o644),
        ContextEntry("ln", "symlink", 0, 0o777, "d/b"),
    ]


def test_dockerfile_kept_where_the_cli_would_drop_it(tmp_path: Path) -> None:
    # The documented difference: "**/c" excludes a/b/c, the CLI's re-include check misses
    # it, and the CLI sends no Dockerfile. Only the Dockerfile is added back.
    root = _tree(
        tmp_path / "c",
        {".dockerignore": b"**/c\n", "a/b/c/d/Dockerfile": DOCKERFILE, "a/b/c/d/other": b"o\n"},
    )
    names = [e.name for e in list_context(root, dockerfile="a/b/c/d/Dockerfile")]
    assert names == [".dockerignore", "a/", "a/b/", "a/b/c/d/Dockerfile"]


# --- errors --------------------------------------------------------------------------------


def test_missing_dockerfile(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"x": b"x\n"})
    with pytest.raises(ContextError, match="Cannot locate Dockerfile") as info:
        prepare_context(path=root)
    assert info.value.path == str(root / "Dockerfile")
    with pytest.raises(ContextError, match="Cannot locate Dockerfile"):
        prepare_context(path=root, dockerfile="nope/Dockerfile")


def test_context_must_be_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="context path"):
        prepare_context(path=tmp_path / "missing")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ContextError, match="context must be a directory"):
        prepare_context(path=tmp_path / "file")


def test_bad_patterns_fail_before_sending(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, ".dockerignore": b"[z-a]\n"})
    with pytest.raises(ContextError, match=r"^error checking context: syntax error in pattern"):
        prepare_context(path=root)
    (root / ".dockerignore").write_bytes(b"a" * 70_000 + b"\n")
    with pytest.raises(ContextError, match=r"error reading \.dockerignore"):
        prepare_context(path=root)


def test_unreadable_file_fails_before_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "d/secret": b"s\n"})
    secret = str(root / "d" / "secret")
    real_access = os.access
    # Tests may run as root, who can read anything: make the check see a denied file.
    monkeypatch.setattr(os, "access", lambda p, m: p != secret and real_access(p, m))
    with pytest.raises(ContextError, match="no permission to read from") as info:
        prepare_context(path=root)
    assert info.value.path == secret
    (root / ".dockerignore").write_bytes(b"d\n")
    prepare_context(path=root)  # excluded files are not checked, as in the CLI


def test_file_vanishing_before_it_is_sent(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "gone": b"g\n"})
    context = prepare_context(path=root)
    chunks = iter(context)
    (root / "gone").unlink()
    # The walk lists the directory when it gets there, so the file is simply absent;
    # a file that disappears between listing and reading is reported by name.
    assert [m.name for m in tar_members(b"".join(chunks))] == ["Dockerfile"]


def test_directory_unreadable_while_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "d/f": b"f\n"})
    context = prepare_context(path=root)
    real_scandir = os.scandir
    denied = str(root / "d")

    def scandir(path: str) -> object:
        if path == denied:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ContextError, match="can't read directory 'd'") as info:
        b"".join(context)
    assert info.value.path == denied


@pytest.mark.parametrize("change", ["shrink", "grow"])
def test_file_changing_size_while_sent(tmp_path: Path, change: str) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "big": bytes(1_000_000)})
    chunks = iter(prepare_context(path=root, chunk_size=64 * 1024))
    next(chunks)
    with open(root / "big", "r+b") as f:
        if change == "shrink":
            f.truncate(10)
        else:
            f.seek(0, os.SEEK_END)
            f.write(b"more")
    with pytest.raises(ContextError, match="changed size") as info:
        for _ in chunks:
            pass
    assert info.value.path == str(root / "big")


def test_context_is_sent_once(tmp_path: Path) -> None:
    context = prepare_context(path=_tree(tmp_path / "c", {"Dockerfile": DOCKERFILE}))
    b"".join(context)
    with pytest.raises(ContextError, match="already"):
        iter(context)


def test_dockerignore_symlink_with_outside_dockerfile(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"ignore": b"x\n"})
    os.symlink("ignore", root / ".dockerignore")
    outside = _tree(tmp_path / "o", {"Dockerfile": DOCKERFILE})
    with pytest.raises(ContextError, match="symlink"):
        prepare_context(path=root, dockerfile=str(outside / "Dockerfile"))


# --- streaming -----------------------------------------------------------------------------


def test_async_iteration_yields_the_same_bytes(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "c",
        {
            "Dockerfile": DOCKERFILE,
            **{f"d{i}/f{j}": os.urandom(5000) for i in range(5) for j in range(30)},
        },
    )
    (root / "big").write_bytes(os.urandom(700_000))
    expected = _body(root, chunk_size=8192)

    async def collect() -> list[bytes]:
        return [chunk async for chunk in prepare_context(path=root, chunk_size=8192)]

    chunks = asyncio.run(collect())
    assert b"".join(chunks) == expected
    assert len(chunks) > 10


def test_async_iteration_reads_files_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "a": b"a" * 10, "b": bytes(200_000)})
    threads: set[int] = set()
    real_read = os.read

    def read(fd: int, n: int) -> bytes:
        threads.add(threading.get_ident())
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", read)

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in prepare_context(path=root)])

    body = asyncio.run(collect())
    assert [m.name for m in tar_members(body)] == ["Dockerfile", "a", "b"]
    assert threads
    assert threading.get_ident() not in threads


def test_chunks_are_bounded(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "big": bytes(3_000_000)})
    for i in range(50):
        (root / f"s{i}").write_bytes(bytes(3000))
    sizes = [len(c) for c in prepare_context(path=root, chunk_size=65536)]
    assert max(sizes) < 2 * 65536 + 1024


@pytest.mark.slow
def test_memory_stays_bounded_for_a_large_context(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE})
    for i in range(3):
        with open(root / f"sparse{i}", "wb") as f:
            f.truncate(100 * 1024 * 1024)  # 300 MB in all, stored sparsely on disk
    for i in range(200):
        (root / "small" / f"{i:03}").parent.mkdir(exist_ok=True)
        (root / "small" / f"{i:03}").write_bytes(b"x" * 4000)
    context = prepare_context(path=root)
    tracemalloc.start()
    try:
        total = 0
        for chunk in context:
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 300 * 1024 * 1024
    assert peak < 1024 * 1024  # a few 64 KiB chunks, whatever the context size


# --- the real CLI --------------------------------------------------------------------------


def test_bytes_equal_docker_cli_for_tricky_tree(tmp_path: Path) -> None:
    """Long and non-ASCII names, links, a FIFO and special modes, against `docker build`."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed")
    from tests.unit._context_helpers import capture_cli_context

    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE})
    long_dir = "d" * 60 + "/" + "e" * 60
    files = {
        long_dir + "/" + "f" * 90: b"x\n",
        "g" * 120 + "/h": b"y\n",
        "ü-name": b"z\n",
        "ß/a": b"a\n",
        "k" * 101: b"k\n",
        "/".join(["p" * 40] * 5) + "/q": b"q\n",
        "big": os.urandom(300_000),
        "empty": b"",
        "hl1": b"hard\n",
    }
    _tree(root, files)
    os.link(root / "hl1", root / "hl2")
    os.symlink("t" * 150, root / "longlink")
    os.symlink("ziel-ä", root / "ulink")
    os.mkfifo(root / "fifo")
    os.chmod(root / "empty", 0o4755)
    (root / "sticky").mkdir()
    os.chmod(root / "sticky", 0o1777)
    with open(os.path.join(os.fsencode(root), b"bad\xffname"), "wb") as f:
        f.write(b"b\n")
    (root / ".dockerignore").write_bytes(b"*.tmp\n")
    (root / "capbin").write_bytes(b"c\n")
    try:
        # cap_net_bind_service, effective; the CLI sends it as a PAX xattr record.
        os.setxattr(root / "capbin", "security.capability", _CAP_V2)
        os.link(root / "capbin", root / "capbin2")
    except OSError:
        pass  # no privilege or no xattr support here: the rest is still compared
    assert _body(root) == capture_cli_context(docker, root, tmp_path)


_CAP_V2 = bytes.fromhex("01000002" + "00040000" + "00" * 12)


def test_file_capability_is_sent_as_pax_xattr_v2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path / "c", {"Dockerfile": DOCKERFILE, "bin": b"b\n"})
    target = str(root / "bin")
    # A v3 capability (with a root uid) as a user namespace would store it.
    v3 = bytes.fromhex("01000003" + "00040000" + "00" * 12 + "e8030000")
    real_list, real_get = os.listxattr, os.getxattr
    monkeypatch.setattr(
        os,
        "listxattr",
        lambda p, **kw: ["security.capability"] if p == target else real_list(p, **kw),
    )
    monkeypatch.setattr(
        os, "getxattr", lambda p, n, **kw: v3 if p == target else real_get(p, n, **kw)
    )
    data = _body(root)
    record = b" SCHILY.xattr.security.capability=" + _CAP_V2 + b"\n"
    assert b"%d" % (len(record) + 2) + record in data
    member = next(m for m in tar_members(data) if m.name == "bin")
    assert member.pax_headers["SCHILY.xattr.security.capability"] == _CAP_V2.decode(
        "utf-8", "surrogateescape"
    )


# --- properties ----------------------------------------------------------------------------

_name_parts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\0"),
    min_size=1,
    max_size=60,
)


@given(
    parts=st.lists(_name_parts, min_size=1, max_size=5),
    kind=st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"]),
    size=st.one_of(st.integers(0, 10**6), st.integers(8 * 1024**3 - 2, 8 * 1024**3 + 2)),
    mode=st.integers(0, 0o7777),
    mtime=st.integers(0, 2**33 - 1),
    link=st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\0"),
        max_size=200,
    ),
)
def test_headers_read_back_with_tarfile(
    parts: list[str], kind: str, size: int, mode: int, mtime: int, link: str
) -> None:
    name = "/".join(p for p in parts if p not in (".", ".."))
    if not name:
        return
    if kind == "dir":
        name += "/"
    if kind != "file":
        size = 0
    linkname = link if kind in ("symlink", "hardlink") else ""
    item = _Item(name, kind, size, mode, mtime, linkname, None)  # type: ignore[arg-type]
    header = _header(item)
    assert len(header) % 512 == 0
    data = header + bytes(1024)
    info = tarfile.TarInfo.frombuf(header[-512:], "utf-8", "surrogateescape")
    assert _checksum_ok(header[-512:])
    assert info.uid == info.gid == 0
    assert info.mode == mode
    if len(header) == 512:
        assert info.mtime == mtime
        assert info.size == size
    if size == 0 and kind != "file":
        # Read the whole entry as an engine would (PAX records applied).
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            (member,) = tar.getmembers()
        assert member.name == name.rstrip("/")
        assert member.linkname == linkname
        assert member.mtime == mtime
