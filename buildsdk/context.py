"""The build context: the tar the Docker CLI would send, produced while it is uploaded.

Why this module exists: what goes into the context decides what ends up in the image and
which cache keys match. The official `docker build` (legacy path) walks the directory in
a particular order, applies `.dockerignore` with rules of its own (see `dockerignore`),
re-includes the Dockerfile and `.dockerignore` in a particular way, and writes headers
with Go's `archive/tar` (USTAR unless PAX is needed, uid/gid 0, whole-second mtimes).
docker-py gets several of these wrong and writes the whole tar to a temporary file first.
This module reproduces the CLI's bytes and streams them with memory bounded by a few
chunks, whatever the size of the context.

Theory of operation: `prepare_context` does everything that can fail before the first
byte is sent (resolve the directory and the Dockerfile, read and compile `.dockerignore`,
the CLI's readability walk) and returns a `BuildContext`. Iterating it (sync or async)
walks the tree a second time and yields tar chunks; nothing is stored but the current
chunk and the inode table needed for hard links.

Paths: unlike the CLI's `-f`, which is relative to the current directory, `dockerfile`
here follows docker-py: relative to the context directory (an absolute path is allowed).
A command line built on this resolves `-f` against its working directory first.

Deliberate differences from the CLI, both where the CLI's output is broken:

- When the CLI's rule (which re-includes the Dockerfile with the deprecated
  single-ancestor matcher) would leave an in-context Dockerfile out of the tar, so that
  the engine fails with "Cannot locate specified Dockerfile", the Dockerfile is kept, at
  the place the walk would have visited it. Nothing else changes; the engine still
  removes it from the build context as `.dockerignore` says.
- When a Dockerfile from outside the context or from memory is added, the CLI's tar
  rewriter never closes its archive: the last entry is not padded and the two zero
  end-of-archive blocks are missing (verified against docker 28.2.2). The tar here is
  complete; every entry and header is otherwise the same.

The entries the CLI appends in that case (`.dockerfile.<20 hex>`, and `.dockerignore`
when there was none) come out in Go map order, which is random; here the Dockerfile is
always first.

POSIX only: devices, FIFOs, hard links and modes are read as Linux reports them.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import IO, Literal, NamedTuple

from buildsdk.dockerignore import MatchInfo, PatternMatcher, clean_path, read_dockerignore
from buildsdk.errors import ContextError

__all__ = [
    "BuildContext",
    "ContextEntry",
    "EntryType",
    "check_memory_dockerfile",
    "list_context",
    "prepare_context",
    "read_regular_file",
    "resolve_context_root",
    "resolve_dockerfile",
]

EntryType = Literal["file", "dir", "symlink", "hardlink", "fifo", "char", "block"]
"""The kinds of tar entries a context holds (sockets and other kinds are never sent)."""

_DEFAULT_CHUNK = 64 * 1024
_CONTENT_TYPE = "application/x-tar"
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_MAX_OCTAL_11 = 8**11  # what a 12-byte USTAR numeric field holds
_XATTR_CAPS = "security.capability"
_NAME_FILE_MODE = 0o600

_TYPEFLAGS: dict[str, bytes] = {
    "file": b"0",
    "hardlink": b"1",
    "symlink": b"2",
    "char": b"3",
    "block": b"4",
    "dir": b"5",
    "fifo": b"6",
}


@dataclass(frozen=True)
class ContextEntry:
    """One tar entry of a build context, as the engine receives it.

    `name` is relative with `/` separators (directories end in `/`); `size` is the number
    of content bytes (0 for everything but regular files); `mode` holds the permission,
    setuid, setgid and sticky bits; `linkname` is the target of a symlink or hard link.
    """

    name: str
    type: EntryType
    size: int
    mode: int
    linkname: str = ""


class _Item(NamedTuple):
    """An entry chosen by the walk, with what is needed to write its header and data."""

    name: str
    type: EntryType
    size: int
    mode: int
    mtime: int
    linkname: str
    source: str | None  # absolute path to read content from, if any
    devmajor: int = 0
    devminor: int = 0
    caps: bytes | None = None
    data: bytes | None = None  # content known in advance (rewritten .dockerignore etc.)


# --- the tar writer ----------------------------------------------------------------------


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    size = len(body) + len(str(len(body)))
    if len(str(size)) + len(body) != size:
        size = len(str(size)) + len(body)
    return str(size).encode() + body


def _to_ascii(name: str) -> bytes:
    return "".join(c for c in name if c.isascii() and c != "\0").encode("ascii")


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """Go's splitUSTARPath: a prefix/name split for ASCII names longer than 100 bytes."""
    length = len(name)
    if length <= 100:
        return None
    if length > 156:
        length = 156
    elif name[length - 1 : length] == b"/":
        length -= 1
    i = name.rfind(b"/", 0, length)
    nlen = len(name) - i - 1
    if i <= 0 or nlen > 100 or nlen == 0 or i > 155:
        return None
    return name[:i], name[i + 1 :]


def _field(value: bytes, size: int) -> bytes:
    if len(value) >= size:
        out = value[:size]
        if len(value) > size and out.endswith(b"/"):
            # Go avoids a truncated name that ends in "/" looking like a directory.
            kept = len(value[: size - 1].rstrip(b"/"))
            out = out[:kept] + b"\0" + out[kept + 1 :]
        return out
    return value + bytes(size - len(value))


def _raw_header(
    name: bytes,
    mode: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes,
    prefix: bytes,
    devmajor: int,
    devminor: int,
) -> bytes:
    """One 512-byte USTAR-format block as Go's tar writer lays it out."""
    head = b"".join(
        (
            _field(name, 100),
            b"%07o\0" % mode,
            b"0000000\x000000000\x00",
            b"%011o\0" % (size if 0 <= size < _MAX_OCTAL_11 else 0),
            b"%011o\0" % (mtime if 0 <= mtime < _MAX_OCTAL_11 else 0),
            b"        ",
            typeflag,
            _field(linkname, 100),
            b"ustar\x0000",
            bytes(64),
            b"%07o\0%07o\0" % (devmajor, devminor),
            _field(prefix, 155),
            bytes(12),
        )
    )
    checksum = b"%06o\0 " % sum(head)
    return head[:148] + checksum + head[156:]


def _pax_header_block(name: str, records: bytes) -> bytes:
    """The `x` entry carrying PAX records for `name`, as Go's writeRawFile writes it."""
    directory, _, base = name.rpartition("/")
    if name.endswith("/"):
        directory, base = name, ""
    joined = clean_path("/".join(p for p in (directory, "PaxHeaders.0", base) if p))
    pax_name = _to_ascii(joined)[:100].rstrip(b"/")
    head = b"".join(
        (
            _field(pax_name, 100),
            b"0000000\0" * 3,
            b"%011o\0" % len(records),
            b"00000000000\0",
            b"        ",
            b"x",
            bytes(100),
            b"ustar\x0000",
            bytes(64 + 16 + 155 + 12),
        )
    )
    checksum = b"%06o\0 " % sum(head)
    block = head[:148] + checksum + head[156:]
    return block + records + _padding(len(records))


def _padding(size: int) -> bytes:
    rest = size % _BLOCK
    return bytes(_BLOCK - rest) if rest else b""


_USTAR_FIXED_SUM = sum(b"0000000\x000000000\x00" + b" " * 8 + b"ustar\x0000" + b"0000000\x00" * 2)
_FAST_TEMPLATE = (
    b"%b%07o\x000000000\x000000000\x00%011o\x00%011o\x00%06o\x00 %b%bustar\x0000"
    + bytes(64)
    + b"0000000\x000000000\x00"
    + bytes(167)
)


def _header(item: _Item) -> bytes:
    """The header block(s) for `item`: USTAR when it can hold everything, else PAX."""
    name = item.name
    typeflag = _TYPEFLAGS[item.type]
    size = item.size
    linkname = item.linkname
    mtime = item.mtime
    if (
        len(name) <= 100
        and name.isascii()
        and len(linkname) <= 100
        and linkname.isascii()
        and size < _MAX_OCTAL_11
        and 0 <= mtime < _MAX_OCTAL_11
        and item.caps is None
        and not (item.devmajor or item.devminor)
    ):
        # The common case, built in one formatting step; the checksum is the sum of the
        # fixed parts plus the variable fields.
        raw_name = name.encode("ascii")
        raw_link = linkname.encode("ascii")
        checksum = (
            _USTAR_FIXED_SUM
            + sum(raw_name)
            + sum(raw_link)
            + typeflag[0]
            + sum(b"%07o\0%011o\0%011o\0" % (item.mode, size, mtime))
        )
        return _FAST_TEMPLATE % (
            raw_name.ljust(100, b"\0"),
            item.mode,
            size,
            mtime,
            checksum,
            typeflag,
            raw_link.ljust(100, b"\0"),
        )
    records: dict[str, bytes] = {}
    raw_name = name.encode("utf-8", "surrogateescape")
    raw_link = linkname.encode("utf-8", "surrogateescape")
    split: tuple[bytes, bytes] | None = None
    if not name.isascii() or len(raw_name) > 100:
        # Go records the path even when a USTAR prefix split would also hold it.
        records["path"] = raw_name
        split = _split_ustar(raw_name) if name.isascii() else None
    ustar = split is not None
    if not linkname.isascii() or len(raw_link) > 100:
        records["linkpath"] = raw_link
        ustar = False
    if size >= _MAX_OCTAL_11:
        records["size"] = str(size).encode()
        ustar = False
    if not 0 <= item.mtime < _MAX_OCTAL_11:
        records["mtime"] = str(item.mtime).encode()
        ustar = False
    if item.caps is not None:
        records["SCHILY.xattr." + _XATTR_CAPS] = item.caps
        ustar = False
    if ustar and split is not None:
        prefix, short = split
        return _raw_header(
            short,
            item.mode,
            size,
            item.mtime,
            typeflag,
            raw_link,
            prefix,
            item.devmajor,
            item.devminor,
        )
    # In PAX form Go writes the whole name, ASCII characters only and cut, with no prefix.
    body = b"".join(_pax_record(key, records[key]) for key in sorted(records))
    main = _raw_header(
        _to_ascii(name),
        item.mode,
        size,
        item.mtime,
        typeflag,
        _to_ascii(linkname),
        b"",
        item.devmajor,
        item.devminor,
    )
    return _pax_header_block(name, body) + main


# --- the walk ----------------------------------------------------------------------------


def _sorted_entries(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        entries = list(it)
    names = [e.name for e in entries]
    if all(n.isascii() for n in names):
        entries.sort(key=lambda e: e.name)
    else:
        # Go sorts by the bytes of the name; code points of surrogate-escaped bytes differ.
        entries.sort(key=lambda e: os.fsencode(e.name))
    return entries


class _Walker:
    """Chooses entries in the CLI's order and with its rules, tracking hard links."""

    def __init__(
        self,
        root: str,
        matcher: PatternMatcher | None,
        keep: str | None,
        replace: dict[str, bytes],
        read_caps: bool = True,
    ) -> None:
        self.root = root
        self.matcher = matcher
        self.keep = keep
        self.keep_emitted = False
        self.replace = replace
        self.seen_inodes: dict[int, str] = {}
        self.read_caps = read_caps

    def _item(self, name: str, path: str, st: os.stat_result) -> _Item | None:
        mode = st.st_mode
        fmt = stat.S_IFMT(mode)
        perm = mode & 0o7777
        mtime = st.st_mtime_ns // 1_000_000_000
        if fmt == stat.S_IFDIR:
            return _Item(name + "/", "dir", 0, perm, mtime, "", None)
        kind: EntryType
        link = ""
        size = 0
        devmajor = devminor = 0
        caps = None
        if fmt == stat.S_IFREG:
            kind = "file"
            size = st.st_size
            if self.read_caps:
                caps = self._caps(path)
        elif fmt == stat.S_IFLNK:
            kind = "symlink"
            try:
                link = os.readlink(path)
            except OSError as exc:
                raise ContextError(f"can't read symlink {name!r}: {exc.strerror}", path) from None
        elif fmt == stat.S_IFIFO:
            kind = "fifo"
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            kind = "char" if fmt == stat.S_IFCHR else "block"
            devmajor, devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        else:
            # Sockets (and anything else tar cannot hold): the CLI logs and skips them.
            return None
        if st.st_nlink > 1:
            first = self.seen_inodes.get(st.st_ino)
            if first is not None:
                # Go reads the capability before turning the entry into a link, so a
                # link to a file with capabilities carries the PAX record too.
                return _Item(name, "hardlink", 0, perm, mtime, first, None, caps=caps)
            self.seen_inodes[st.st_ino] = name
        data = self.replace.get(name)
        if data is not None:
            size = len(data)
        return _Item(
            name,
            kind,
            size,
            perm,
            mtime,
            link,
            path if kind == "file" and data is None else None,
            devmajor,
            devminor,
            caps,
            data,
        )

    def _caps(self, path: str) -> bytes | None:
        # Listing is cheaper than a failing getxattr (no exception) on the usual file
        # that has no capability.
        try:
            names = os.listxattr(path, follow_symlinks=False)
            if _XATTR_CAPS not in names:
                return None
            value = os.getxattr(path, _XATTR_CAPS, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (95, 38):  # ENOTSUP, ENOSYS: no xattrs here at all
                self.read_caps = False
            return None
        if len(value) > 3 and value[3] == 3:
            # A v3 capability names a root uid that means nothing elsewhere; Go writes v2.
            value = value[:3] + b"\x02" + value[4:20]
        return value

    def _keep_item(self) -> _Item | None:
        assert self.keep is not None
        if self.keep_emitted:
            return None
        self.keep_emitted = True
        path = os.path.join(self.root, self.keep)
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise ContextError(f"can't stat {self.keep!r}: {exc.strerror}", path) from None
        return self._item(self.keep, path, st)

    def __iter__(self) -> Iterator[_Item]:
        matcher = self.matcher
        exception_dirs = matcher.exception_dirs if matcher is not None else []
        exclusions = matcher.exclusions if matcher is not None else False
        keep = self.keep
        # Each frame: directory path, name prefix, its sorted entries, position, match info.
        root_entries = self._list(self.root, "", included=True)
        stack: list[tuple[str, list[os.DirEntry[str]], int, MatchInfo]] = [
            ("", root_entries, 0, MatchInfo())
        ]
        while stack:
            prefix, entries, index, info = stack[-1]
            if index >= len(entries):
                stack.pop()
                continue
            stack[-1] = (prefix, entries, index + 1, info)
            entry = entries[index]
            name = prefix + entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            skip = False
            child_info = info
            if matcher is not None:
                skip, child_info = matcher.matches_using_parent_results(name, info)
            if skip:
                if name == keep:
                    item = self._keep_item()
                    if item is not None:
                        yield item
                    continue
                if not is_dir:
                    continue
                dir_slash = name + "/"
                descend = exclusions and any(p.startswith(dir_slash) for p in exception_dirs)
                if not descend:
                    if keep is not None and keep.startswith(dir_slash):
                        item = self._keep_item()
                        if item is not None:
                            yield item
                    continue
                children = self._list(entry.path, name, included=False)
                stack.append((dir_slash, children, 0, child_info))
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                raise ContextError(f"can't stat {name!r}: {exc.strerror}", entry.path) from None
            if name == keep:
                if self.keep_emitted:
                    continue
                self.keep_emitted = True
            item = self._item(name, entry.path, st)
            if item is None:
                continue
            yield item
            if is_dir:
                children = self._list(entry.path, name, included=True)
                stack.append((name + "/", children, 0, child_info))

    def _list(self, path: str, name: str, *, included: bool) -> list[os.DirEntry[str]]:
        try:
            return _sorted_entries(path)
        except OSError as exc:
            if not included:
                # The CLI logs and carries on when a directory it only looks into for
                # exceptions cannot be read; nothing of it would be sent anyway.
                return []
            raise ContextError(
                f"can't read directory {name or '.'!r}: {exc.strerror}", path
            ) from None


def _validate(root: str, matcher: PatternMatcher) -> None:
    """The CLI's ValidateContextDirectory: every file that will be sent must be readable.

    Walks with the untrimmed patterns and `matches_or_parent_matches`, skipping excluded
    directories, and checks (without opening) that regular files and devices can be
    read. Also surfaces patterns that only fail when matched, as the CLI does.
    """
    # Top-level entries have no ancestors; below, each directory passes its results on.
    top_hits = (False,) * len(matcher.patterns)
    stack: list[tuple[str, str, tuple[bool, ...]]] = [(root, "", top_hits)]
    matches = matcher.matches_or_parent_matches
    has_patterns = bool(top_hits)
    while stack:
        path, prefix, hits = stack.pop()
        try:
            entries = os.scandir(path)
        except PermissionError:
            raise ContextError(f"error checking context: can't stat '{path}'", path) from None
        except FileNotFoundError:
            raise ContextError(
                f"error checking context: file ('{path}') not found or excluded by .dockerignore",
                path,
            ) from None
        with entries:
            for entry in entries:
                name = prefix + entry.name
                if has_patterns and matches(name, hits):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if has_patterns:
                        stack.append((entry.path, name + "/", matcher.ancestor_results(name, hits)))
                    else:
                        stack.append((entry.path, name + "/", hits))
                    continue
                if entry.is_file(follow_symlinks=False):
                    if not os.access(entry.path, os.R_OK):
                        raise ContextError(
                            f"error checking context: no permission to read from '{entry.path}'",
                            entry.path,
                        )
                    continue
                if entry.is_symlink():
                    continue
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode
                except FileNotFoundError:
                    continue
                if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                    continue
                if not os.access(entry.path, os.R_OK):
                    raise ContextError(
                        f"error checking context: no permission to read from '{entry.path}'",
                        entry.path,
                    )


def _package_matches(path: str, patterns: list[str]) -> bool:
    """patternmatcher's package-level Matches as TrimBuildFilesFromExcludes calls it."""
    try:
        matcher = PatternMatcher(patterns)
        path = clean_path(path)
        if path == ".":
            return False
        return matcher.matches_deprecated(path)
    except ContextError:
        return False


def _trim(excludes: list[str], dockerfile: str, from_stdin: bool) -> list[str]:
    trimmed = list(excludes)
    if _package_matches(".dockerignore", trimmed):
        trimmed.append("!.dockerignore")
    if _package_matches(dockerfile, trimmed) and not from_stdin:
        trimmed.append("!" + dockerfile)
    return trimmed


# --- the public face ---------------------------------------------------------------------


def _read_fileobj(fileobj: IO[bytes] | IO[str]) -> bytes:
    data = fileobj.read()
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


class BuildContext:
    """A prepared build context: the tar body of `POST /build`, produced while it is sent.

    Iterate it (`for chunk in ctx` or `async for chunk in ctx`) to get the body in chunks;
    memory stays bounded by a few chunks and no temporary file is written. A BuildContext
    can be iterated once only: a second iteration raises `ContextError`. Errors found
    while streaming (a file vanished, changed size or became unreadable) raise
    `ContextError` naming the path, so the upload can be aborted before the engine builds.
    """

    content_type: str
    """The Content-Type to send with the body: the CLI sends `application/x-tar`."""

    dockerfile: str | None
    """The `dockerfile` query value: the in-context path, the random `.dockerfile.<hex>`
    name, or None when the caller's value (if any) is to be sent unchanged."""

    def __init__(
        self,
        produce: Callable[[], Iterator[bytes]],
        *,
        dockerfile: str | None,
        gzip: bool,
        chunk_size: int,
        items: Callable[[], Iterator[_Item]] | None = None,
    ) -> None:
        self.content_type = _CONTENT_TYPE
        self.dockerfile = dockerfile
        self.gzip = gzip
        self.chunk_size = chunk_size
        self._produce = produce
        self._items = items
        self._used = False

    def __repr__(self) -> str:
        return f"BuildContext(dockerfile={self.dockerfile!r}, gzip={self.gzip})"

    def _claim(self) -> None:
        if self._used:
            raise ContextError("this build context was already sent; prepare a new one")
        self._used = True

    def __iter__(self) -> Iterator[bytes]:
        """Yield the body in chunks of about `chunk_size` bytes, reading files as it goes."""
        self._claim()
        chunks = self._produce()
        if self.gzip:
            chunks = _gzip_chunks(chunks)
        return chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        """Yield the body like `__iter__`, with all file I/O done in a worker thread.

        Chunks are fetched a few at a time per thread hop, so the event loop is never
        blocked by disk reads and the per-chunk overhead stays small.
        """
        return self._aiter(iter(self))

    async def _aiter(self, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
        import anyio.to_thread

        batch_bytes = 4 * self.chunk_size

        def fetch() -> list[bytes]:
            batch: list[bytes] = []
            total = 0
            for chunk in chunks:
                batch.append(chunk)
                total += len(chunk)
                if total >= batch_bytes:
                    break
            return batch

        while True:
            batch = await anyio.to_thread.run_sync(fetch)
            if not batch:
                return
            for chunk in batch:
                yield chunk

    def entries(self) -> list[ContextEntry]:
        """The entries this context would send, without reading any file content.

        Does not consume the context. Raises `ContextError` for a custom (passthrough)
        context, whose entries are not known.
        """
        if self._items is None:
            raise ContextError("the entries of a custom context archive are not known")
        return [
            ContextEntry(item.name, item.type, item.size, item.mode, item.linkname)
            for item in self._items()
        ]


def _gzip_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def _tar_chunks(items: Iterator[_Item], chunk_size: int) -> Iterator[bytes]:
    """Serialize `items` as Go's tar writer would, in chunks of at least `chunk_size`."""
    buf = bytearray()
    read = os.read
    for item in items:
        buf += _header(item)
        size = item.size
        if item.type != "file" or size == 0:
            if len(buf) >= chunk_size:
                yield bytes(buf)
                buf.clear()
            continue
        if item.data is not None:
            buf += item.data
            buf += _padding(size)
            if len(buf) >= chunk_size:
                yield bytes(buf)
                buf.clear()
            continue
        source = item.source
        assert source is not None
        try:
            fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            raise ContextError(
                f"can't read {item.name!r} while sending the context: {exc.strerror}", source
            ) from None
        try:
            if size < chunk_size:
                data = read(fd, size + 1)
                while len(data) < size:
                    more = read(fd, size + 1 - len(data))
                    if not more:
                        break
                    data += more
                if len(data) != size:
                    raise _changed(item, source)
                buf += data
            else:
                if buf:
                    yield bytes(buf)
                    buf.clear()
                remaining = size
                while remaining > 0:
                    data = read(fd, min(chunk_size, remaining))
                    if not data:
                        raise _changed(item, source)
                    remaining -= len(data)
                    yield data
                if read(fd, 1):
                    raise _changed(item, source)
        except OSError as exc:
            raise ContextError(
                f"can't read {item.name!r} while sending the context: {exc.strerror}", source
            ) from None
        finally:
            os.close(fd)
        buf += _padding(size)
        if len(buf) >= chunk_size:
            yield bytes(buf)
            buf.clear()
    buf += _ZERO_BLOCK
    buf += _ZERO_BLOCK
    yield bytes(buf)


def _changed(item: _Item, source: str) -> ContextError:
    return ContextError(
        f"file {item.name!r} changed size while the context was being sent "
        f"(expected {item.size} bytes)",
        source,
    )


def _now_item(name: str, data: bytes) -> _Item:
    # Go rounds (not truncates) the current time when the header has no explicit format.
    mtime = int(time.time() + 0.5)
    return _Item(name, "file", len(data), _NAME_FILE_MODE, mtime, "", None, data=data)


def read_regular_file(path: str, *, follow_symlinks: bool = True) -> bytes:
    """Read a whole file that must be a regular one (symlinks followed, as the CLI's Open,
    unless `follow_symlinks` is false: then a symlink is an `OSError`).

    A FIFO would block the open until a writer comes and a device such as /dev/zero would
    never end; the CLI hangs on both. Opened non-blocking and checked before reading, they
    are an `OSError` instead, which callers report as a `ContextError`.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags if follow_symlinks else flags | os.O_NOFOLLOW)
    with open(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return f.read()


def resolve_context_root(path: str) -> str:
    """The real path of context directory `path` (`ContextError` when it is not one)."""
    try:
        root = os.path.realpath(os.path.abspath(path), strict=True)
    except OSError as exc:
        raise ContextError(
            f"unable to evaluate symlinks in context path: {path!r}: {exc.strerror}", path
        ) from None
    if not os.path.isdir(root):
        raise ContextError(f"context must be a directory: {root}", root)
    return root


def check_memory_dockerfile(dockerfile: str | None) -> None:
    """Refuse a Dockerfile name given together with a Dockerfile from memory (`fileobj`)."""
    if dockerfile not in (None, "Dockerfile", "-"):
        raise ContextError(
            "give the Dockerfile either as fileobj or as dockerfile, not both", dockerfile
        )


def resolve_dockerfile(root: str, dockerfile: str | None) -> str:
    """The real path of the Dockerfile in directory `root`, found as the CLI finds it
    (`dockerfile` relative to `root` or absolute, lowercase fallback, symlinks followed)."""
    if dockerfile is None:
        candidate = os.path.join(root, "Dockerfile")
        if not os.path.lexists(candidate):
            alternative = os.path.join(root, "dockerfile")
            if os.path.lexists(alternative):
                candidate = alternative
    else:
        candidate = os.path.join(root, os.fspath(dockerfile))
    try:
        resolved = os.path.realpath(candidate, strict=True)
    except OSError:
        raise ContextError(f'Cannot locate Dockerfile: "{candidate}"', candidate) from None
    if os.path.isdir(resolved):
        raise ContextError(f'Dockerfile is a directory: "{candidate}"', candidate)
    return resolved


def prepare_context(
    *,
    path: str | os.PathLike[str] | None,
    dockerfile: str | None = None,
    fileobj: IO[bytes] | IO[str] | None = None,
    custom_context: bool = False,
    gzip: bool = False,
    chunk_size: int = _DEFAULT_CHUNK,
) -> BuildContext:
    """Check and prepare the build context for `POST /build`, without reading file contents.

    Sources, as docker-py's `build()` accepts them: a directory `path` (with `dockerfile`
    relative to it, or absolute; outside the directory it is sent as
    `.dockerfile.<20 hex>` like the CLI); `fileobj` alone (a context holding only that
    Dockerfile); `fileobj` with `path` (that Dockerfile from memory plus the directory);
    `custom_context` (the `fileobj` bytes are sent unchanged). `gzip` compresses the tar.

    Raises `ContextError`, naming the path or pattern, for a missing directory or
    Dockerfile, a bad `.dockerignore` and a file the CLI's check finds unreadable.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    if custom_context:
        if fileobj is None:
            raise ContextError("custom_context needs fileobj: the archive to send")
        return _passthrough(fileobj, dockerfile, chunk_size)
    if path is None:
        if fileobj is None:
            raise ContextError("nothing to send: give a context path or a fileobj")
        content = _read_fileobj(fileobj)
        # The CLI writes a Dockerfile read from stdin to a fresh 0644 file and tars that.
        single = _Item(
            "Dockerfile", "file", len(content), 0o644, int(time.time()), "", None, data=content
        )
        return BuildContext(
            lambda: _tar_chunks(iter([single]), chunk_size),
            dockerfile="Dockerfile",
            gzip=gzip,
            chunk_size=chunk_size,
            items=lambda: iter([single]),
        )
    return _prepare_directory(os.fspath(path), dockerfile, fileobj, gzip, chunk_size)


def _passthrough(
    fileobj: IO[bytes] | IO[str], dockerfile: str | None, chunk_size: int
) -> BuildContext:
    def produce() -> Iterator[bytes]:
        while True:
            chunk = fileobj.read(chunk_size)
            if not chunk:
                return
            if isinstance(chunk, str):
                raise ContextError("a custom_context fileobj must be opened in binary mode")
            yield bytes(chunk)

    # docker-py sends a custom archive as given, whatever `gzip` says; so do we.
    return BuildContext(produce, dockerfile=dockerfile, gzip=False, chunk_size=chunk_size)


def _prepare_directory(
    path: str,
    dockerfile: str | None,
    fileobj: IO[bytes] | IO[str] | None,
    gzip: bool,
    chunk_size: int,
) -> BuildContext:
    root = resolve_context_root(path)

    extra: bytes | None = None  # Dockerfile content sent under a random name
    if fileobj is not None:
        check_memory_dockerfile(dockerfile)
        extra = _read_fileobj(fileobj)
        rel_dockerfile = "-"
    else:
        resolved = resolve_dockerfile(root, dockerfile)
        rel_dockerfile = os.path.relpath(resolved, root)
        if rel_dockerfile.startswith("../"):
            try:
                extra = read_regular_file(resolved)
            except OSError as exc:
                raise ContextError(
                    f"unable to open Dockerfile: {resolved!r}: {exc.strerror}", resolved
                ) from None

    ignore_path = os.path.join(root, ".dockerignore")
    ignore_bytes: bytes | None
    try:
        ignore_bytes = read_regular_file(ignore_path)
    except FileNotFoundError:
        ignore_bytes = None
    except OSError as exc:
        raise ContextError(f"error reading .dockerignore: {exc.strerror}", ignore_path) from None
    excludes = read_dockerignore(ignore_bytes) if ignore_bytes is not None else []

    try:
        checker = PatternMatcher(excludes)
        _validate(root, checker)
    except ContextError as exc:
        if exc.message.startswith("error checking context"):
            raise
        raise ContextError(f"error checking context: {exc.message}", exc.path) from None

    trimmed = _trim(excludes, rel_dockerfile, rel_dockerfile == "-")
    try:
        matcher = PatternMatcher(trimmed) if trimmed else None
    except ContextError as exc:
        raise ContextError(f"error checking context: {exc.message}", exc.path) from None

    keep = None if extra is not None else rel_dockerfile
    random_name = ""
    replace: dict[str, bytes] = {}
    if extra is not None:
        random_name = ".dockerfile." + secrets.token_hex(10)
        if ignore_bytes is not None:
            if os.path.islink(ignore_path):
                raise ContextError(
                    "cannot add the Dockerfile to the context: .dockerignore is a symlink "
                    "(the Docker CLI fails here too with 'archive/tar: write too long')",
                    ignore_path,
                )
            replace[".dockerignore"] = ignore_bytes + b"\n" + random_name.encode() + b"\n"

    def items() -> Iterator[_Item]:
        walker = _Walker(root, matcher, keep, replace)
        yield from walker
        if extra is not None:
            yield _now_item(random_name, extra)
            if ignore_bytes is None:
                yield _now_item(".dockerignore", b".dockerignore\n" + random_name.encode() + b"\n")

    return BuildContext(
        lambda: _tar_chunks(items(), chunk_size),
        dockerfile=random_name or rel_dockerfile,
        gzip=gzip,
        chunk_size=chunk_size,
        items=items,
    )


def list_context(
    path: str | os.PathLike[str], *, dockerfile: str | None = None
) -> list[ContextEntry]:
    """List the entries a directory context would send, in order, without sending anything.

    `dockerfile` is relative to `path` (or absolute), as in `prepare_context`. Raises
    `ContextError` as `prepare_context` does.
    """
    return prepare_context(path=path, dockerfile=dockerfile).entries()
