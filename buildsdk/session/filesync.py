"""Incremental build contexts: the engine pulls files through the session (`DiffCopy`).

Why: a tar upload sends the whole context on every build. With `remote=client-session`
the engine instead opens `FileSync/DiffCopy` on the session, the client lists every entry
(path, mode, size, mtime...), and the engine asks only for the files that differ from what
it cached under the session's shared key. A rebuild with one changed file sends one file.

The engine opens three transfers per build: the `dockerfile` directory (followpaths
`Dockerfile`, `<Dockerfile>.dockerignore`), the `context` directory's `.dockerignore`, then
the context itself with the ignore file's patterns as `exclude-patterns`. It reads the
ignore files itself (preferring `<Dockerfile>.dockerignore`), so the client only applies
the patterns it is sent, with BuildKit's fsutil rules rather than the classic CLI's:

* excludes use `MatchesUsingParentResults`; an excluded directory is skipped unless some
  `!` exception could match inside it: when every exception is a plain prefix (no
  wildcard), only directories on an exception's path are entered; with a wildcard
  exception every excluded directory is walked, so `["*", "!**/*.py"]` works;
* a directory that is excluded but holds re-included entries is sent (lazily, just before
  its first re-included child), so the engine never meets an entry without its parent;
* `include-patterns` and `followpaths` restrict the walk to matching paths (and, for
  followpaths, the targets of symlinks named there), with their parent directories.

The protocol (fsutil `send`): a STAT packet per entry, depth-first with each directory's
names in byte order, then an empty STAT; every REQ packet names an entry by its index
among the STATs and is answered with DATA packets and an empty DATA; FIN is echoed and
ends the call. Ownership is sent as 0:0, as the Docker CLI does; symlinks are never
followed (only listed), sockets are left out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from buildsdk._grpc.status import GrpcError, Status
from buildsdk.context import (
    check_memory_dockerfile,
    read_regular_file,
    resolve_context_root,
    resolve_dockerfile,
)
from buildsdk.dockerignore import MatchInfo, PatternMatcher, read_dockerignore
from buildsdk.errors import ContextError
from buildsdk.session._messages import (
    PACKET_DATA,
    PACKET_ERR,
    PACKET_FIN,
    PACKET_REQ,
    PACKET_STAT,
    Packet,
    Stat,
)

if TYPE_CHECKING:
    from buildsdk.session._server import Call

__all__ = [
    "FileSyncService",
    "SyncedDir",
    "TransferStats",
    "WalkStopped",
    "go_file_mode",
    "walk_stats",
]

DIFF_COPY: Final = "/moby.filesync.v1.FileSync/DiffCopy"
_CHUNK: Final = 256 * 1024
_INLINE_READ: Final = 1024 * 1024
_MODE_DIR: Final = 1 << 31
_MODE_SYMLINK: Final = 1 << 27
_MODE_DEVICE: Final = 1 << 26
_MODE_NAMED_PIPE: Final = 1 << 25
_MODE_SETUID: Final = 1 << 23
_MODE_SETGID: Final = 1 << 22
_MODE_CHAR_DEVICE: Final = 1 << 21
_MODE_STICKY: Final = 1 << 20
_WILDCARDS: Final = frozenset("*?[\\^")


def go_file_mode(st: os.stat_result) -> int | None:
    """The Go `os.FileMode` of a stat result (permission bits plus Go's type bits).

    None for sockets, which are not sent.
    """
    mode = st.st_mode
    value = mode & 0o777
    # Most entries are plain files and directories without setuid, setgid or sticky bits.
    kind = mode & 0o177000
    if kind == 0o100000:
        return value
    if kind == 0o040000:
        return value | _MODE_DIR
    if mode & stat.S_ISUID:
        value |= _MODE_SETUID
    if mode & stat.S_ISGID:
        value |= _MODE_SETGID
    if mode & stat.S_ISVTX:
        value |= _MODE_STICKY
    if stat.S_ISDIR(mode):
        value |= _MODE_DIR
    elif stat.S_ISLNK(mode):
        value |= _MODE_SYMLINK
    elif stat.S_ISFIFO(mode):
        value |= _MODE_NAMED_PIPE
    elif stat.S_ISCHR(mode):
        value |= _MODE_DEVICE | _MODE_CHAR_DEVICE
    elif stat.S_ISBLK(mode):
        value |= _MODE_DEVICE
    elif stat.S_ISSOCK(mode):
        return None
    return value


def _go_glob(pattern: str) -> re.Pattern[str] | None:
    """Go's `filepath.Match` for one path as a regex (`*`, `?` stop at `/`); None if malformed."""
    out = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            i += 1
            if i >= n:
                return None
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2 if i + 1 < n and pattern[i + 1] == "^" else i + 1)
            if end < 0:
                return None
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            if negate:
                body = body[1:]
            if not body:
                return None
            body = body.replace("\\", "\\\\")
            out.append(f"[{'^/' if negate else ''}{body}]" if negate else f"[{body}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error:
        return None


@dataclass(frozen=True)
class _Include:
    """An include pattern cut per path depth, as fsutil's `matchPrefix` reads it."""

    parts: tuple[str, ...]

    def match(self, path: str) -> tuple[bool, bool]:
        """(matched, partial): partial means the pattern continues below `path`."""
        depth = path.count("/")
        parts = self.parts
        partial = False
        if len(parts) - 1 > depth:
            parts = parts[: depth + 1]
            partial = True
        regex = _go_glob("/".join(parts))
        return (regex is not None and regex.match(path) is not None), partial


def _clean(path: str) -> str:
    return os.path.normpath(path).replace(os.sep, "/").lstrip("/") or "."


def _follow_targets(root: str, paths: Sequence[str]) -> list[str]:
    """followpaths plus the in-root targets of those that are symlinks (one level)."""
    result: list[str] = []
    for raw in paths:
        path = _clean(raw)
        result.append(path)
        full = os.path.join(root, path)
        try:
            if not os.path.islink(full):
                continue
            target = os.readlink(full)
        except OSError:
            continue
        if os.path.isabs(target):
            resolved = _clean(target)
        else:
            resolved = _clean(os.path.join(os.path.dirname(path), target))
        if not resolved.startswith("../") and resolved != "..":
            result.append(resolved)
    return result


def _prefix_only(pattern: str) -> bool:
    for suffix in ("/**", "/*"):
        if pattern.endswith(suffix):
            pattern = pattern[: -len(suffix)]
            break
    return not any(c in _WILDCARDS for c in pattern)


def _sorted_names(directory: str) -> list[str]:
    names = os.listdir(directory)
    # Byte order, as Go sorts directory entries. Code point order is the same for names that
    # are ASCII (or valid UTF-8), not for the surrogate escapes of undecodable bytes.
    if all(name.isascii() for name in names):
        names.sort()
    else:
        names.sort(key=os.fsencode)
    return names


def walk_stats(
    root: str,
    *,
    excludes: Sequence[str] = (),
    includes: Sequence[str] = (),
    followpaths: Sequence[str] = (),
    stop: threading.Event | None = None,
) -> Iterator[Stat]:
    """The STATs fsutil would send for `root` with these filters, in the order it sends them.

    Raises `ContextError` for a bad pattern or an unreadable directory that is not excluded,
    `WalkStopped` when `stop` is set before the walk is done.
    """
    matcher = PatternMatcher(list(excludes)) if excludes else None
    exceptions = [p[1:] for p in matcher.patterns if p.startswith("!")] if matcher else []
    walk_excluded = bool(exceptions) and not all(_prefix_only(p) for p in exceptions)
    include_patterns = [_clean(p) for p in includes]
    if followpaths:
        include_patterns += _follow_targets(root, followpaths)
    include_list = [_Include(tuple(p.split("/"))) for p in dict.fromkeys(include_patterns)]
    use_includes = bool(includes) or bool(followpaths)
    inodes: dict[tuple[int, int], str] = {}
    pending: list[Stat] = []

    def make(rel: str, full: str, st: os.stat_result, mode: int) -> Stat:
        linkname = ""
        # fsutil sends every non-directory's lstat size (a symlink's is its target's length).
        size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
        if stat.S_ISLNK(st.st_mode):
            linkname = os.readlink(full)
        elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = inodes.get(key)
            if first is None:
                inodes[key] = rel
            else:
                linkname, size = first, 0
        devmajor = devminor = 0
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            devmajor, devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        return Stat(
            path=rel,
            mode=mode,
            size=size,
            mod_time=st.st_mtime_ns,
            linkname=linkname,
            devmajor=devmajor,
            devminor=devminor,
        )

    # Entries are appended to one list rather than yielded through a generator per
    # directory level: a generator chain costs every entry a resumption per level of depth.
    found: list[Stat] = []

    def walk(directory: str, prefix: str, parent: MatchInfo | None, included: bool) -> None:
        if stop is not None and stop.is_set():
            raise WalkStopped(root)
        try:
            names = _sorted_names(directory)
        except OSError as exc:
            raise ContextError(
                f"cannot list {prefix or '.'}: {exc.strerror}", path=directory
            ) from None
        base = directory if directory.endswith("/") else directory + "/"
        for name in names:
            rel = f"{prefix}{name}"
            full = base + name
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            mode = go_file_mode(st)
            if mode is None:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            child_included = included
            if use_includes and not included:
                matched = partial = False
                for pattern in include_list:
                    hit, part = pattern.match(rel)
                    if hit:
                        matched = True
                        partial = part
                        if not part:
                            break
                if not matched:
                    continue
                child_included = not partial
                if partial and not is_dir:
                    continue
            info: MatchInfo | None = None
            excluded = False
            if matcher is not None:
                excluded, info = matcher.matches_using_parent_results(rel, parent)
            entry_stat = make(rel, full, st, mode)
            if excluded:
                if not is_dir:
                    continue
                if not exceptions:
                    continue
                if not walk_excluded:
                    dir_slash = rel + "/"
                    if not any((p + "/").startswith(dir_slash) for p in exceptions):
                        continue
                pending.append(entry_stat)
                walk(full, rel + "/", info, child_included)
                if pending and pending[-1] is entry_stat:
                    pending.pop()
                continue
            if use_includes and not child_included and is_dir:
                # A directory on the way to an include pattern: sent only if something
                # below it is.
                pending.append(entry_stat)
                walk(full, rel + "/", info, child_included)
                if pending and pending[-1] is entry_stat:
                    pending.pop()
                continue
            found.extend(pending)
            pending.clear()
            found.append(entry_stat)
            if is_dir:
                walk(full, rel + "/", info, child_included)

    walk(root, "", None, False)
    yield from found


class WalkStopped(Exception):
    """A listing of a directory was stopped before it was done (nobody wanted it any more)."""


@dataclass
class TransferStats:
    """What a session sent for one synced directory: entries listed, files and bytes sent."""

    entries: int = 0
    files: int = 0
    data_bytes: int = 0
    paths: list[str] = field(default_factory=list)
    listed_ahead: bool = False
    """Whether the listing started with the build answered (see `list_context_ahead()`)."""


@dataclass(frozen=True)
class SyncedDir:
    """A directory the engine may pull under a name (`context`, `dockerfile`): a local path,
    or files held in memory (a Dockerfile given as `fileobj`)."""

    name: str
    path: str
    files: Mapping[str, bytes] | None = None

    def stats(
        self,
        excludes: Sequence[str],
        includes: Sequence[str],
        follow: Sequence[str],
        stop: threading.Event | None = None,
    ) -> list[Stat]:
        """The entries to send, filtered as the engine asked (`stop` ends a walk early)."""
        if self.files is None:
            return list(
                walk_stats(
                    self.path, excludes=excludes, includes=includes, followpaths=follow, stop=stop
                )
            )
        # Files in memory are new on every build: a fresh mtime makes the engine take them.
        now = time.time_ns()
        return [
            Stat(path=name, mode=0o644, size=len(data), mod_time=now)
            for name, data in sorted(self.files.items())
        ]


def _named_root(name: str, path: str) -> str:
    """The real path of named context directory `path` (`ContextError` when it is not one)."""
    # buildx stats the path (following a symlink given as the path itself) and wants a
    # directory; the walk below it never follows symlinks.
    try:
        root = os.path.realpath(os.path.abspath(path), strict=True)
    except OSError as exc:
        raise ContextError(
            f"failed to get build context {name.lstrip('_')}: {path!r}: {exc.strerror}", path
        ) from None
    if not os.path.isdir(root):
        raise ContextError(f"failed to get build context path {path!r}: not a directory", path)
    return root


class _Listing:
    """A listing of one synced directory made ahead of the engine's request, in a thread."""

    def __init__(self, synced: SyncedDir, excludes: tuple[str, ...]) -> None:
        self.excludes = excludes
        self.result: concurrent.futures.Future[list[Stat]] = concurrent.futures.Future()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(synced,), name="buildsdk-context-listing", daemon=True
        )
        self._thread.start()

    def _run(self, synced: SyncedDir) -> None:
        try:
            stats = synced.stats(self.excludes, (), (), stop=self._stop)
        except BaseException as exc:
            self.result.set_exception(exc)
        else:
            self.result.set_result(stats)

    def stop(self) -> None:
        """Stop the walk (it notices before its next directory) and wait for the thread."""
        self._stop.set()
        self._thread.join()


class FileSyncService:
    """Answers `FileSync/DiffCopy` for the build's context and Dockerfile directories."""

    def __init__(self, dirs: Sequence[SyncedDir], dockerfile_name: str) -> None:
        self._dirs = {d.name: d for d in dirs}
        self.dockerfile_name = dockerfile_name
        self.transfers: list[TransferStats] = []
        self._listings: dict[str, _Listing] = {}

    def list_context_ahead(self) -> None:
        """Start listing the context whole, in a thread, before the engine asks for it.

        The listing is the slow part of a large context's transfer, and the engine asks for
        the context only once the build is under way. The listing applies the exclude
        patterns the Dockerfile frontend will send (a `<Dockerfile>.dockerignore` beside
        the Dockerfile, else `.dockerignore`); a request for the whole context with exactly
        those patterns takes it (the tree at the build's start, as a tar upload reads it),
        any other request lists afresh. Nothing is listed when an ignore file cannot be read
        as the engine reads it.
        """
        context = self._dirs.get("context")
        if context is None or context.files is not None or "context" in self._listings:
            return
        candidates = []
        dockerfile_dir = self._dirs.get("dockerfile")
        if dockerfile_dir is not None and dockerfile_dir.files is None:
            specific = self.dockerfile_name + ".dockerignore"
            candidates.append(os.path.join(dockerfile_dir.path, specific))
        candidates.append(os.path.join(context.path, ".dockerignore"))
        excludes: list[str] = []
        for candidate in candidates:
            try:
                # Not through a symlink: the engine's transfer sends it as one, unread.
                data = read_regular_file(candidate, follow_symlinks=False)
                if data:
                    excludes = read_dockerignore(data)
                    break
            except FileNotFoundError:
                continue
            except (OSError, ContextError):
                # The engine reads it and says what is wrong; nothing is listed ahead.
                return
        self._listings["context"] = _Listing(context, tuple(excludes))

    def close(self) -> None:
        """Stop the listings no request took and wait for their threads."""
        listings = list(self._listings.values())
        self._listings.clear()
        for listing in listings:
            listing.stop()

    async def _stats(
        self,
        synced: SyncedDir,
        excludes: Sequence[str],
        includes: Sequence[str],
        followpaths: Sequence[str],
    ) -> tuple[list[Stat], bool]:
        """The entries for a request, and whether the listing made ahead provided them."""
        listing = self._listings.get(synced.name)
        if (
            listing is not None
            and not includes
            and not followpaths
            and tuple(excludes) == listing.excludes
        ):
            del self._listings[synced.name]
            return await asyncio.wrap_future(listing.result), True
        return await asyncio.to_thread(synced.stats, excludes, includes, followpaths), False

    @classmethod
    def for_build(
        cls,
        context: str,
        dockerfile: str | None,
        *,
        dockerfile_data: bytes | None = None,
        named: Mapping[str, str] | None = None,
    ) -> FileSyncService:
        """Serve `context` and the directory of its Dockerfile (relative to the context,
        `Dockerfile` by default, `dockerfile` when only that exists), or a Dockerfile given
        as bytes (`dockerfile_data`), served as `Dockerfile` from memory; and each local
        named context of `named` (dir-name to directory) under its dir-name."""
        # The same checks and messages as a tar upload: the transfer is the only difference.
        root = resolve_context_root(context)
        extra = [SyncedDir(name, _named_root(name, path)) for name, path in (named or {}).items()]
        if dockerfile_data is not None:
            check_memory_dockerfile(dockerfile)
            memory = SyncedDir("dockerfile", "", {"Dockerfile": dockerfile_data})
            return cls([SyncedDir("context", root), memory, *extra], "Dockerfile")
        full = resolve_dockerfile(root, dockerfile)
        dirs = [SyncedDir("context", root), SyncedDir("dockerfile", os.path.dirname(full))]
        return cls([*dirs, *extra], os.path.basename(full))

    def handlers(self) -> dict[str, object]:
        """The gRPC methods this service answers."""
        return {DIFF_COPY: self.diff_copy}

    async def diff_copy(self, call: Call) -> None:
        """Send one directory with fsutil's protocol, as the call's metadata filters it."""
        name = call.first("dir-name") or ""
        synced = self._dirs.get(name)
        if synced is None:
            raise GrpcError(Status.NOT_FOUND, f"no access allowed to dir {name!r}")
        excludes = call.metadata.get("exclude-patterns", ())
        includes = call.metadata.get("include-patterns", ())
        followpaths = call.metadata.get("followpaths", ())
        try:
            stats, ahead = await self._stats(synced, excludes, includes, followpaths)
        except (ContextError, OSError) as exc:
            await call.send(Packet(PACKET_ERR, data=str(exc).encode()).encode())
            raise GrpcError(Status.INVALID_ARGUMENT, str(exc)) from None
        report = TransferStats(entries=len(stats), listed_ahead=ahead)
        self.transfers.append(report)
        requests: asyncio.Queue[int | None] = asyncio.Queue()
        sender = asyncio.ensure_future(self._serve_requests(call, synced, stats, requests, report))
        try:
            for entry in stats:
                await call.send(Packet(PACKET_STAT, stat=entry).encode())
            await call.send(Packet(PACKET_STAT).encode())
            while True:
                message = await call.recv()
                if message is None:
                    return
                packet = Packet.decode(message)
                if packet.type == PACKET_REQ:
                    requests.put_nowait(packet.id)
                elif packet.type == PACKET_FIN:
                    requests.put_nowait(None)
                    await sender
                    await call.send(Packet(PACKET_FIN).encode())
                    return
                elif packet.type == PACKET_ERR:
                    raise GrpcError(
                        Status.UNKNOWN,
                        f"error from receiver: {packet.data.decode('utf-8', 'replace')}",
                    )
        finally:
            if not sender.done():
                sender.cancel()

    async def _serve_requests(
        self,
        call: Call,
        synced: SyncedDir,
        stats: list[Stat],
        requests: asyncio.Queue[int | None],
        report: TransferStats,
    ) -> None:
        while True:
            ident = await requests.get()
            if ident is None:
                return
            if not 0 <= ident < len(stats) or stats[ident].mode & 0xFFF00000 & ~(
                _MODE_SETUID | _MODE_SETGID | _MODE_STICKY
            ):
                raise GrpcError(Status.INVALID_ARGUMENT, f"invalid file request {ident}")
            rel = stats[ident].path
            path = os.path.join(synced.path, *rel.split("/"))
            report.files += 1
            report.paths.append(rel)
            if synced.files is not None:
                data = synced.files[rel]
                report.data_bytes += len(data)
                if data:
                    await call.send(Packet(PACKET_DATA, id=ident, data=data).encode())
            elif stats[ident].size <= _INLINE_READ:
                # Most context files are small and in the page cache: a thread hop per
                # file would cost more than the read and stall the engine's pipeline.
                for chunk in _read_small(path):
                    report.data_bytes += len(chunk)
                    await call.send(Packet(PACKET_DATA, id=ident, data=chunk).encode())
            else:
                await self._send_large(call, path, ident, report)
            await call.send(Packet(PACKET_DATA, id=ident).encode())

    async def _send_large(self, call: Call, path: str, ident: int, report: TransferStats) -> None:
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except OSError:
            # fsutil sends the end marker alone when the file vanished.
            return
        try:
            while True:
                chunk = await asyncio.to_thread(handle.read, _CHUNK)
                if not chunk:
                    return
                report.data_bytes += len(chunk)
                await call.send(Packet(PACKET_DATA, id=ident, data=chunk).encode())
        finally:
            handle.close()


def _read_small(path: str) -> list[bytes]:
    """A small file's contents in chunks; nothing when it vanished or cannot be read."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return []
    return [data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK)]
