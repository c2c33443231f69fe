"""Exports the engine writes through the session: `FileSend/DiffCopy`.

Why: a BuildKit build exported with `type=local` (a directory) or `type=tar` (an archive;
BuildKit's `oci` and `docker` exporters send the same way) does not leave its result on the
engine's side. The engine calls the client back on the session, and the client writes the
files where the user asked; the destination never has to exist on the engine's machine.

The engine opens one `moby.filesync.v1.FileSend/DiffCopy` call per export and names the
export by its index in the metadata `buildkit-attachable-exporter-id` (Docker 20.10 sends
no such key: its single export is index 0). `FileSendService` routes each call to the
receiver registered for that index. The call carries one of two encodings:

* a directory (`DirectoryReceiver`): fsutil packets with the roles of a context transfer
  reversed. The engine sends a STAT per entry, depth-first, then an empty STAT; the client
  answers each regular file's STAT with `PACKET_REQ{ID}` (ID = index among the STATs), the
  engine sends that file's DATA packets and an empty DATA; once every file arrived the client
  sends FIN and the engine answers FIN. `DirectoryWriter` holds that conversation's rules;
* a byte stream (`FileReceiver`, `StreamReceiver`): `BytesMessage{data}` chunks of the
  archive until the engine half-closes the call.

What is written matches what the Docker CLI writes (fsutil's receiver in merge mode): the
destination directory is created (mode 0700) if missing, entries already there that the
export does not name are kept, entries it names are replaced (a directory by a file too);
regular files, directories, symlinks (created as links, never followed), hard links and
FIFOs get the exported permission bits and modification times; ownership is the current
user's, as the CLI maps it; extended attributes are not applied. Nothing is written outside
the destination: an entry whose path is absolute, not clean (`..`, `//`), or below anything
but a directory received earlier in the same transfer (a symlink, say) ends the export with
`ExportError`, which the client reports to the engine as fsutil does (`PACKET_ERR`), so the
build fails with the reason.

Writes happen on the session's event loop, inline: they go to the page cache and are short,
and a thread per packet would let a cancelled call race with the writes it left running.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets as _random
import shutil
import stat
import sys
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Final, Protocol

from buildsdk._grpc.status import GrpcError, Status
from buildsdk._protobuf import ProtobufError
from buildsdk.errors import ExportError
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

if TYPE_CHECKING:
    from buildsdk.outputs import BinaryWriter
    from buildsdk.session._server import Call

__all__ = [
    "EXPORTER_ID_KEY",
    "FILE_SEND",
    "DirectoryReceiver",
    "DirectoryWriter",
    "ExportReceiver",
    "FileReceiver",
    "FileSendService",
    "StreamReceiver",
    "export_receiver",
    "unix_mode",
]

FILE_SEND: Final = "/moby.filesync.v1.FileSend/DiffCopy"
"""The gRPC method the engine calls to hand an export to the client."""
EXPORTER_ID_KEY: Final = "buildkit-attachable-exporter-id"
"""Call metadata naming the export (its index among the build's exporters)."""

_MODE_DIR: Final = 1 << 31
_MODE_SYMLINK: Final = 1 << 27
_MODE_DEVICE: Final = 1 << 26
_MODE_NAMED_PIPE: Final = 1 << 25
_MODE_SOCKET: Final = 1 << 24
_MODE_SETUID: Final = 1 << 23
_MODE_SETGID: Final = 1 << 22
_MODE_CHAR_DEVICE: Final = 1 << 21
_MODE_STICKY: Final = 1 << 20
_MODE_IRREGULAR: Final = 1 << 19
_TYPE_BITS: Final = (
    _MODE_DIR
    | _MODE_SYMLINK
    | _MODE_DEVICE
    | _MODE_NAMED_PIPE
    | _MODE_SOCKET
    | _MODE_CHAR_DEVICE
    | _MODE_IRREGULAR
    | (1 << 30)  # append-only
    | (1 << 29)  # exclusive
    | (1 << 28)  # temporary
)
_OPEN_FILES: Final = 16
_TEMP_PREFIX: Final = ".tmp.buildsdk-"


def unix_mode(go_mode: int) -> int:
    """The permission bits (with setuid, setgid and sticky) of a Go `os.FileMode`."""
    mode = go_mode & 0o777
    if go_mode & _MODE_SETUID:
        mode |= stat.S_ISUID
    if go_mode & _MODE_SETGID:
        mode |= stat.S_ISGID
    if go_mode & _MODE_STICKY:
        mode |= stat.S_ISVTX
    return mode


def _is_regular(go_mode: int) -> bool:
    return not go_mode & _TYPE_BITS


def _check_path(path: str) -> None:
    """Refuse a path that could land outside the destination or is not fsutil's form."""
    if not path or "\x00" in path:
        raise ExportError(f"export refused: invalid path {path!r}")
    if path.startswith("/"):
        raise ExportError(f"export refused: absolute path {path!r}")
    parts = path.split("/")
    if ".." in parts:
        raise ExportError(f"export refused: path {path!r} escapes the destination")
    if posixpath.normpath(path) != path or "." in parts:
        raise ExportError(f"export refused: unclean path {path!r}")


def _temp_name(directory: str) -> str:
    return os.path.join(directory, _TEMP_PREFIX + _random.token_hex(8))


def _set_metadata(path: str, entry: Stat) -> None:
    if not entry.mode & _MODE_SYMLINK:
        os.chmod(path, unix_mode(entry.mode))
    os.utime(path, ns=(entry.mod_time, entry.mod_time), follow_symlinks=False)


@dataclass
class _Incoming:
    """A regular file whose contents were asked for: written to a temporary name, renamed
    into place when its last DATA packet arrived."""

    entry: Stat
    final: str
    temp: str
    written: int = 0
    started: bool = False


@dataclass
class DirectoryWriter:
    """The receiving side of one directory export: fed the engine's fsutil packets, it
    writes entries under `dest` and returns the packets to answer with.

    Pure protocol plus file system calls, no socket: `feed()` raises `ExportError` for
    anything it refuses; `close()` removes files left half-written.
    """

    dest: str
    complete: bool = field(default=False, init=False)
    """Every file arrived and FIN was answered: the export is on disk."""
    entries: int = field(default=0, init=False)
    """Entries written (directories, files, links)."""
    files: int = field(default=0, init=False)
    """Regular files whose contents arrived."""
    data_bytes: int = field(default=0, init=False)
    _index: int = field(default=0, init=False)
    _dirs: set[str] = field(default_factory=lambda: {""}, init=False)
    _regular: set[str] = field(default_factory=set, init=False)
    _seen: set[str] = field(default_factory=set, init=False)
    _pending: dict[int, _Incoming] = field(default_factory=dict, init=False)
    _pending_paths: set[str] = field(default_factory=set, init=False)
    _links: dict[str, list[tuple[str, Stat]]] = field(default_factory=dict, init=False)
    _handles: OrderedDict[int, IO[bytes]] = field(default_factory=OrderedDict, init=False)
    _listed: bool = field(default=False, init=False)
    _fin_sent: bool = field(default=False, init=False)

    def feed(self, packet: Packet) -> list[Packet]:
        """Take one packet from the engine; return the packets to send back, in order."""
        if self.complete:
            raise ExportError("export refused: packets after the transfer ended")
        if packet.type == PACKET_STAT:
            if packet.stat is None:
                self._listed = True
                return self._maybe_finish()
            return self._stat(packet.stat)
        if packet.type == PACKET_DATA:
            self._data(packet.id, packet.data)
            return self._maybe_finish() if not packet.data else []
        if packet.type == PACKET_FIN:
            if not self._fin_sent:
                missing = len(self._pending)
                what = f"with {missing} file(s) unsent" if missing else "before the end of the list"
                raise ExportError(f"export refused: the engine ended the transfer {what}")
            self.complete = True
            return []
        if packet.type == PACKET_ERR:
            raise ExportError(
                f"the engine failed the export: {packet.data.decode('utf-8', 'replace')}"
            )
        raise ExportError(f"export refused: unexpected packet type {packet.type}")

    @property
    def answered(self) -> bool:
        """Whether every file arrived and FIN was sent (the engine's FIN may still come)."""
        return self._fin_sent

    def close(self) -> None:
        """Close open files and remove those that did not arrive whole."""
        for handle in self._handles.values():
            with contextlib.suppress(OSError):
                handle.close()
        self._handles.clear()
        for incoming in self._pending.values():
            with contextlib.suppress(OSError):
                os.unlink(incoming.temp)
        self._pending.clear()

    # -- entries ------------------------------------------------------------------------

    def _stat(self, entry: Stat) -> list[Packet]:
        if self._listed:
            raise ExportError("export refused: an entry after the end of the list")
        ident = self._index
        self._index += 1
        path = entry.path
        _check_path(path)
        if path in self._seen:
            raise ExportError(f"export refused: {path!r} was sent twice")
        self._seen.add(path)
        parent = posixpath.dirname(path)
        if parent not in self._dirs:
            raise ExportError(
                f"export refused: {path!r} is not below a directory sent before it "
                "(out of order, or through a symlink)"
            )
        self.entries += 1
        # Whatever stood here before is replaced: it is no longer a directory to write into,
        # nor a file a hard link may name.
        self._dirs.discard(path)
        self._regular.discard(path)
        target = os.path.join(self.dest, *path.split("/"))
        mode = entry.mode
        try:
            if mode & _MODE_DIR:
                self._directory(target, entry)
                self._dirs.add(path)
                return []
            if mode & _MODE_SYMLINK:
                self._place(target, entry, lambda temp: os.symlink(entry.linkname, temp))
                return []
            if _is_regular(mode) and entry.linkname:
                self._hard_link(target, entry)
                self._regular.add(path)
                return []
            if _is_regular(mode):
                temp = _temp_name(os.path.dirname(target))
                self._pending[ident] = _Incoming(entry, target, temp)
                self._pending_paths.add(path)
                self._regular.add(path)
                return [Packet(PACKET_REQ, id=ident)]
            if mode & _MODE_NAMED_PIPE:
                self._place(target, entry, lambda temp: os.mkfifo(temp, unix_mode(mode)))
                return []
            if mode & _MODE_DEVICE:
                kind = stat.S_IFCHR if mode & _MODE_CHAR_DEVICE else stat.S_IFBLK
                device = os.makedev(entry.devmajor, entry.devminor)
                self._place(
                    target, entry, lambda temp: os.mknod(temp, kind | unix_mode(mode), device)
                )
                return []
        except OSError as exc:
            raise ExportError(f"cannot write {path!r}: {exc.strerror or exc}") from None
        raise ExportError(f"export refused: {path!r} has an unsupported file type ({mode:#x})")

    def _directory(self, target: str, entry: Stat) -> None:
        try:
            existing = os.lstat(target)
        except FileNotFoundError:
            existing = None
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            # A file or a symlink where a directory goes: replaced, never followed.
            os.unlink(target)
            existing = None
        if existing is None:
            os.mkdir(target, 0o700)
        _set_metadata(target, entry)

    def _place(self, target: str, entry: Stat, make: _Maker) -> None:
        temp = _temp_name(os.path.dirname(target))
        make(temp)
        try:
            _set_metadata(temp, entry)
            self._replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _hard_link(self, target: str, entry: Stat) -> None:
        source = entry.linkname
        _check_path(source)
        if source not in self._regular:
            raise ExportError(
                f"export refused: hard link {entry.path!r} names {source!r}, "
                "which is not a file sent before it"
            )
        if source in self._pending_paths:
            # Linked once its contents are in place, as the file does not exist before.
            self._links.setdefault(source, []).append((target, entry))
            return
        self._link_now(target, entry)

    def _link_now(self, target: str, entry: Stat) -> None:
        origin = os.path.join(self.dest, *entry.linkname.split("/"))
        self._place(target, entry, lambda temp: os.link(origin, temp, follow_symlinks=False))

    @staticmethod
    def _replace(temp: str, target: str) -> None:
        try:
            existing = os.lstat(target)
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(target)
        os.replace(temp, target)

    # -- contents -----------------------------------------------------------------------

    def _data(self, ident: int, data: bytes) -> None:
        incoming = self._pending.get(ident)
        if incoming is None:
            raise ExportError(f"export refused: invalid file request {ident}")
        try:
            handle = self._handle(ident, incoming)
            if data:
                handle.write(data)
                incoming.written += len(data)
                self.data_bytes += len(data)
                return
            handle.close()
            del self._handles[ident]
            del self._pending[ident]
            try:
                _set_metadata(incoming.temp, incoming.entry)
                self._replace(incoming.temp, incoming.final)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(incoming.temp)
                raise
            self.files += 1
            self._pending_paths.discard(incoming.entry.path)
            for target, link in self._links.pop(incoming.entry.path, ()):
                self._link_now(target, link)
        except OSError as exc:
            path = incoming.entry.path
            raise ExportError(f"cannot write {path!r}: {exc.strerror or exc}") from None

    def _handle(self, ident: int, incoming: _Incoming) -> IO[bytes]:
        handle = self._handles.get(ident)
        if handle is not None:
            self._handles.move_to_end(ident)
            return handle
        flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        # Created once, exclusively; reopened for appending after the bound below closed it.
        flags |= os.O_APPEND if incoming.started else os.O_CREAT | os.O_EXCL
        handle = os.fdopen(os.open(incoming.temp, flags, 0o600), "wb")
        incoming.started = True
        self._handles[ident] = handle
        # The engine interleaves a few files at a time; a bound on open files keeps a
        # stream that interleaves thousands from exhausting descriptors.
        while len(self._handles) > _OPEN_FILES:
            _, oldest = self._handles.popitem(last=False)
            oldest.close()
        return handle

    def _maybe_finish(self) -> list[Packet]:
        if self._listed and not self._pending and not self._fin_sent:
            self._fin_sent = True
            return [Packet(PACKET_FIN)]
        return []


class _Maker(Protocol):
    def __call__(self, temp: str, /) -> None: ...


class ExportReceiver(Protocol):
    """Something that takes one `FileSend/DiffCopy` call and writes what it carries."""

    async def receive(self, call: Call) -> None:
        """Read the call to its end; raise `ExportError` to fail the export."""
        ...


@dataclass
class DirectoryReceiver:
    """Writes a `type=local` export into the directory `dest` (created, mode 0700, if
    missing; what is there already and not exported is kept, as the Docker CLI does)."""

    dest: str
    writer: DirectoryWriter | None = field(default=None, init=False, compare=False)
    """The last transfer's writer: its counts say what arrived."""

    async def receive(self, call: Call) -> None:
        """Run the fsutil conversation of one directory export."""
        try:
            os.makedirs(self.dest, 0o700, exist_ok=True)
        except OSError as exc:
            raise ExportError(
                f"cannot create the output directory {self.dest}: {exc.strerror or exc}"
            ) from None
        writer = DirectoryWriter(self.dest)
        self.writer = writer
        try:
            while True:
                message = await call.recv()
                if message is None:
                    if not writer.answered:
                        raise ExportError("export refused: the engine ended the transfer early")
                    return
                try:
                    packet = Packet.decode(message)
                    replies = writer.feed(packet)
                except ProtobufError as exc:
                    await _report(call, f"malformed packet: {exc}")
                    raise ExportError(f"export refused: malformed packet: {exc}") from None
                except ExportError as exc:
                    await _report(call, str(exc))
                    raise
                for reply in replies:
                    await call.send(reply.encode())
                if writer.complete:
                    return
        finally:
            writer.close()


async def _report(call: Call, message: str) -> None:
    # fsutil's sender reads PACKET_ERR as "error from receiver: ..." and fails the build.
    with contextlib.suppress(GrpcError):
        await call.send(Packet(PACKET_ERR, data=message.encode()).encode())


@dataclass
class FileReceiver:
    """Writes a `type=tar` (or oci/docker archive) export to the file `path`.

    The archive goes to a temporary file beside `path` and is renamed over it only when the
    engine finished: a failed or cancelled export leaves `path` as it was, never a truncated
    archive that looks whole. A new file gets mode 0666 less the umask (as the Docker CLI
    creates it); an existing file keeps its mode. A destination that is not a regular file
    (`/dev/null`, a FIFO) is written to directly.
    """

    path: str
    data_bytes: int = field(default=0, init=False, compare=False)

    async def receive(self, call: Call) -> None:
        """Append every chunk of the call, then put the file in place."""
        target = os.path.realpath(self.path)
        try:
            existing: os.stat_result | None = os.stat(target)
        except FileNotFoundError:
            existing = None
        except OSError as exc:
            raise ExportError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise ExportError(f"cannot write {self.path}: destination file is a directory")
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            with _open_or_fail(self.path, lambda: open(target, "wb")) as handle:
                await self._copy(call, handle)
            return
        temp = _temp_name(os.path.dirname(target))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        done = False
        try:
            # 0666 less the umask, as Go's os.Create makes it.
            opener = lambda: os.fdopen(os.open(temp, flags, 0o666), "wb")  # noqa: E731
            with _open_or_fail(self.path, opener) as handle:
                await self._copy(call, handle)
            try:
                if existing is not None:
                    os.chmod(temp, stat.S_IMODE(existing.st_mode))
                os.replace(temp, target)
            except OSError as exc:
                raise ExportError(f"cannot write {self.path}: {exc.strerror or exc}") from None
            done = True
        finally:
            if not done:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    async def _copy(self, call: Call, handle: IO[bytes]) -> None:
        while True:
            message = await call.recv()
            if message is None:
                return
            try:
                chunk = BytesMessage.decode(message).data
            except ProtobufError as exc:
                raise ExportError(f"export refused: malformed message: {exc}") from None
            try:
                handle.write(chunk)
            except OSError as exc:
                raise ExportError(f"cannot write {self.path}: {exc.strerror or exc}") from None
            self.data_bytes += len(chunk)


@contextlib.contextmanager
def _open_or_fail(path: str, opener: _Opener) -> Iterator[IO[bytes]]:
    try:
        handle = opener()
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield handle
    finally:
        handle.close()


class _Opener(Protocol):
    def __call__(self) -> IO[bytes]: ...


@dataclass
class StreamReceiver:
    """Writes a `type=tar` (or oci/docker archive) export to a binary writer the caller
    owns (standard output for `dest="-"`); it is flushed at the end, never closed.

    The writer is called from the session's event loop: a `Client` build runs it in the
    session's thread, an `AsyncClient` build on the caller's loop, so it should not block.
    """

    writer: BinaryWriter
    data_bytes: int = field(default=0, init=False, compare=False)

    async def receive(self, call: Call) -> None:
        """Hand every chunk of the call to the writer."""
        while True:
            message = await call.recv()
            if message is None:
                break
            try:
                chunk = BytesMessage.decode(message).data
            except ProtobufError as exc:
                raise ExportError(f"export refused: malformed message: {exc}") from None
            self.writer.write(chunk)
            self.data_bytes += len(chunk)
        flush = getattr(self.writer, "flush", None)
        if flush is not None:
            flush()


def export_receiver(kind: str, dest: str | BinaryWriter) -> ExportReceiver:
    """The receiver that writes an export of exporter `kind` to `dest`, for both endpoints:
    a directory for `local`; otherwise a file, the caller's stream, or standard output for
    `"-"`. Raises `ExportError` before anything is sent for a file dest that is a directory
    or a `"-"` that is a terminal, as the Docker CLI refuses them."""
    if not isinstance(dest, str):
        return StreamReceiver(dest)
    if kind == "local":
        return DirectoryReceiver(dest)
    if dest == "-":
        stdout = sys.stdout.buffer
        if stdout.isatty():
            raise ExportError(f"{kind} output to dest='-' refused: standard output is a terminal")
        return StreamReceiver(stdout)
    if os.path.isdir(dest):
        raise ExportError(f"{kind} output dest {dest!r} is a directory, not a file")
    return FileReceiver(dest)


class FileSendService:
    """Answers `FileSend/DiffCopy`: each call goes to the receiver of its export index."""

    def __init__(self, receivers: Mapping[int, ExportReceiver]) -> None:
        self.receivers = dict(receivers)
        self.errors: list[ExportError] = []
        """What each failed export raised (the engine also fails the build with it)."""

    def handlers(self) -> dict[str, object]:
        """The gRPC methods this service answers."""
        return {FILE_SEND: self.diff_copy}

    async def diff_copy(self, call: Call) -> None:
        """Route one export to its receiver; a receiver's `ExportError` ends the call."""
        # Docker 20.10's BuildKit has one export and names none.
        raw = call.first(EXPORTER_ID_KEY) or "0"
        receiver = self.receivers.get(int(raw)) if raw.isdecimal() and len(raw) < 10 else None
        if receiver is None:
            raise GrpcError(Status.NOT_FOUND, f"no export destination for exporter {raw}")
        try:
            await receiver.receive(call)
        except ExportError as exc:
            self.errors.append(exc)
            raise GrpcError(Status.UNKNOWN, str(exc)) from None
