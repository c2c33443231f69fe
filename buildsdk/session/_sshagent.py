"""An ssh-agent inside buildsdk: private key files served to `RUN --mount=type=ssh`.

Why: `docker build --ssh default=~/.ssh/id_ed25519` works without any ssh-agent running,
because the Docker CLI loads the key files itself and answers the agent protocol for the
build. buildsdk does the same here, in two parts:

- loading (`load_key`): a key file is read (bounded, never a FIFO or a directory) and
  parsed by the `cryptography` package, which is imported only when a key file is used.
  No cryptography is written here; this module only frames bytes.
- the protocol (`AgentConnection`): sans-I/O, like the rest of buildsdk's core. Bytes from
  one agent connection go in through `feed()`, the replies come out. It answers the two
  requests a client needs to authenticate (list identities, sign) and refuses every other
  one, so a build can neither add, remove nor lock keys: the keyring is read-only.

Messages follow draft-miller-ssh-agent: a uint32 big-endian length, a type byte, then the
fields; strings are a uint32 length and the bytes.
"""

from __future__ import annotations

import binascii
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from buildsdk.errors import MissingDependency, SSHKeyError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    # The key types the agent serves. The loaders' own return unions grow with each
    # cryptography release (51 added hybrid ML-DSA keys), so keys are narrowed to this
    # union by isinstance checks instead of being typed with the loaders' unions.
    _ServableKey = Ed25519PrivateKey | RSAPrivateKey | EllipticCurvePrivateKey

__all__ = [
    "MAX_KEY_FILE_SIZE",
    "MAX_MESSAGE_SIZE",
    "AgentConnection",
    "AgentKey",
    "load_key",
    "needs_passphrase",
]

MAX_KEY_FILE_SIZE: Final = 100 * 1024
"""The largest key file read, in bytes (BuildKit's limit too)."""

MAX_MESSAGE_SIZE: Final = 256 * 1024
"""The longest agent message accepted (OpenSSH's limit); a longer one ends the connection."""

FAILURE: Final = 5
REQUEST_IDENTITIES: Final = 11
IDENTITIES_ANSWER: Final = 12
SIGN_REQUEST: Final = 13
SIGN_RESPONSE: Final = 14
RSA_SHA2_256: Final = 2
RSA_SHA2_512: Final = 4

_SUPPORTED: Final = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)
_SUPPORTED_TEXT: Final = "ed25519, rsa, ecdsa p-256/p-384/p-521"
_OPENSSH_BEGIN: Final = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_OPENSSH_END: Final = b"-----END OPENSSH PRIVATE KEY-----"
_OPENSSH_MAGIC: Final = b"openssh-key-v1\x00"
_PUBLIC_KEY_STARTS: Final = (
    b"ssh-",
    b"ecdsa-",
    b"sk-",
    b"-----BEGIN PUBLIC KEY-----",
    b"-----BEGIN RSA PUBLIC KEY-----",
    b"---- BEGIN SSH2 PUBLIC KEY ----",
)
_INSTALL: Final = "pip install 'buildsdk[session]'"


# -- wire helpers --------------------------------------------------------------------------


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _mpint(value: int) -> bytes:
    # Two's complement, big-endian, no needless leading byte; a set top bit gets a zero
    # byte in front so that a positive number stays positive; zero is empty.
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return _string(raw)


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


class _Truncated(Exception):
    """A field ran past the end of its message."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def uint32(self) -> int:
        end = self._at + 4
        if end > len(self._data):
            raise _Truncated
        value = int.from_bytes(self._data[self._at : end], "big")
        self._at = end
        return value

    def string(self) -> bytes:
        size = self.uint32()
        end = self._at + size
        if end > len(self._data):
            raise _Truncated
        value = self._data[self._at : end]
        self._at = end
        return value


# -- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentKey:
    """One loaded private key: its public blob, the comment listed with it, its type name."""

    blob: bytes
    comment: str
    kind: str
    _private: _ServableKey = field(repr=False, compare=False)

    def sign(self, data: bytes, flags: int) -> bytes:
        """An SSH signature of `data` (string algorithm name, string blob).

        `flags` choose the hash of an RSA signature: RSA_SHA2_256, else RSA_SHA2_512, else
        SHA-1 (`ssh-rsa`), as OpenSSH's agent chooses; other key types ignore them.
        """
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        key = self._private
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return _string(b"ssh-ed25519") + _string(key.sign(data))
        if isinstance(key, rsa.RSAPrivateKey):
            name: bytes
            digest: hashes.HashAlgorithm
            if flags & RSA_SHA2_256:
                name, digest = b"rsa-sha2-256", hashes.SHA256()
            elif flags & RSA_SHA2_512:
                name, digest = b"rsa-sha2-512", hashes.SHA512()
            else:
                name, digest = b"ssh-rsa", hashes.SHA1()
            return _string(name) + _string(key.sign(data, padding.PKCS1v15(), digest))
        if isinstance(key, ec.EllipticCurvePrivateKey):
            bits = key.curve.key_size
            curve_hash: hashes.HashAlgorithm = hashes.SHA512()
            if bits <= 384:
                curve_hash = hashes.SHA256() if bits <= 256 else hashes.SHA384()
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(curve_hash)))
            return _string(self.kind.encode()) + _string(_mpint(r) + _mpint(s))
        raise SSHKeyError(f"cannot sign with a {self.kind} key")  # pragma: no cover


def _read_key_file(path: str) -> bytes:
    # A key named explicitly by the user may be a symlink (~/.ssh is often linked to a
    # dotfiles checkout): following it is what was asked for. What it points at must still
    # be a regular file; a FIFO is opened non-blocking so that it cannot hang the build.
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise SSHKeyError(f"cannot read ssh key {path!r}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise SSHKeyError(f"ssh key {path!r} is a directory, not a private key file")
    if stat.S_ISSOCK(mode):
        raise SSHKeyError(
            f"ssh key {path!r} is a unix socket (an agent?), not a private key file; "
            "forward a socket on its own"
        )
    if not stat.S_ISREG(mode):
        raise SSHKeyError(f"ssh key {path!r} is not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SSHKeyError(f"cannot read ssh key {path!r}: {exc.strerror}") from None
    try:
        # Checked again on what was opened: the path may have changed since the stat.
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SSHKeyError(f"ssh key {path!r} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_KEY_FILE_SIZE:
            chunk = os.read(fd, MAX_KEY_FILE_SIZE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SSHKeyError(f"cannot read ssh key {path!r}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_KEY_FILE_SIZE:
        raise SSHKeyError(
            f"ssh key {path!r} is larger than {MAX_KEY_FILE_SIZE // 1024} KiB: not a private key"
        )
    return b"".join(chunks)


def _openssh_key_type(data: bytes) -> str | None:
    """The key type an OpenSSH-format file declares in its (never encrypted) public part."""
    start = data.find(_OPENSSH_BEGIN)
    end = data.find(_OPENSSH_END, start)
    if start < 0 or end < 0:
        return None
    try:
        body = binascii.a2b_base64(b"".join(data[start + len(_OPENSSH_BEGIN) : end].split()))
    except (binascii.Error, ValueError):
        return None
    if not body.startswith(_OPENSSH_MAGIC):
        return None
    reader = _Reader(body[len(_OPENSSH_MAGIC) :])
    try:
        reader.string()  # cipher
        reader.string()  # kdf
        reader.string()  # kdf options
        if reader.uint32() != 1:
            return None
        kind = _Reader(reader.string()).string()
    except _Truncated:
        return None
    return kind.decode("ascii", "replace")


def _crypto_missing() -> MissingDependency:
    return MissingDependency(
        "forwarding ssh key files needs the cryptography package (and bcrypt for "
        f"encrypted OpenSSH keys): {_INSTALL}"
    )


class _Encrypted(SSHKeyError):
    """The key file is encrypted and no passphrase was given."""


def _parse(path: str, data: bytes, passphrase: bytes | None) -> object:
    """Parse a key file's bytes; errors name the file, never its content."""
    stripped = data.lstrip()
    if stripped.startswith(_PUBLIC_KEY_STARTS):
        raise SSHKeyError(
            f"ssh key {path!r} is a public key: give the private key file (without .pub)"
        )
    if b"-----BEGIN DSA PRIVATE KEY-----" in data:
        raise SSHKeyError(f"ssh key {path!r} is a DSA key; supported: {_SUPPORTED_TEXT}")
    openssh = _OPENSSH_BEGIN in data
    if openssh:
        kind = _openssh_key_type(data)
        if kind is None:
            raise SSHKeyError(f"ssh key {path!r} is not a valid OpenSSH private key file")
        if kind not in _SUPPORTED:
            raise SSHKeyError(
                f"ssh key {path!r} is a {kind} key, which buildsdk cannot serve; "
                f"supported: {_SUPPORTED_TEXT}"
            )
    elif b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise SSHKeyError(f"ssh key {path!r} is not a private key (OpenSSH or PEM format expected)")
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise _crypto_missing() from None
    load = serialization.load_ssh_private_key if openssh else serialization.load_pem_private_key
    try:
        return load(data, None)
    except TypeError:
        # The only TypeError without a password: the key needs one.
        if passphrase is None:
            raise _Encrypted(
                f"ssh key {path!r} is encrypted: give its passphrase (SSHForward("
                "passphrase=...), or run `buildsdk build` on a terminal to be asked for it)"
            ) from None
    except UnsupportedAlgorithm:
        raise SSHKeyError(
            f"ssh key {path!r} uses a key type or format buildsdk cannot load; "
            f"supported: {_SUPPORTED_TEXT}"
        ) from None
    except ValueError:
        raise SSHKeyError(f"ssh key {path!r} is not a valid private key file") from None
    try:
        return load(data, passphrase)
    except ValueError:
        raise SSHKeyError(f"wrong passphrase for ssh key {path!r}") from None
    except UnsupportedAlgorithm:
        if openssh:
            try:
                import bcrypt  # noqa: F401
            except ImportError:
                raise _crypto_missing() from None
        raise SSHKeyError(
            f"ssh key {path!r} is encrypted with a cipher buildsdk cannot decrypt"
        ) from None


def _describe(path: str, key: object) -> AgentKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ed25519.Ed25519PrivateKey):
        kind = "ssh-ed25519"
    elif isinstance(key, rsa.RSAPrivateKey):
        kind = "ssh-rsa"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
    ):
        kind = f"ecdsa-sha2-nistp{key.curve.key_size}"
    else:
        raise SSHKeyError(
            f"ssh key {path!r} is of a type buildsdk cannot serve; supported: {_SUPPORTED_TEXT}"
        )
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    blob = binascii.a2b_base64(line.split()[1])
    return AgentKey(blob=blob, comment=path, kind=kind, _private=key)


def load_key(path: str, passphrase: str | None = None) -> AgentKey:
    """Load the private key file at `path` (listed with `path` as its comment).

    `passphrase` opens an encrypted key and is ignored for a plain one. Raises
    `SSHKeyError` naming the file when it cannot be used, `MissingDependency` without the
    cryptography package.
    """
    data = _read_key_file(path)
    secret = passphrase.encode("utf-8") if passphrase is not None else None
    return _describe(path, _parse(path, data, secret))


def needs_passphrase(path: str) -> bool:
    """Whether the key file at `path` is encrypted (`SSHKeyError` if it is unusable)."""
    try:
        load_key(path)
    except _Encrypted:
        return True
    return False


# -- the protocol --------------------------------------------------------------------------


class AgentConnection:
    """The agent side of one connection: `feed()` takes the client's bytes, returns replies.

    Each request gets exactly one reply, in order. A message announcing more than
    `MAX_MESSAGE_SIZE` bytes sets `closed`: the connection must then be ended, and further
    bytes are ignored. Nothing else raises: a malformed or unknown request gets FAILURE.
    """

    def __init__(self, keys: Sequence[AgentKey]) -> None:
        self._keys = tuple(keys)
        self._buffer = b""
        self.closed = False

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the client; return the replies to every request now complete."""
        if self.closed:
            return b""
        buffer = self._buffer + data
        at = 0
        replies: list[bytes] = []
        while len(buffer) - at >= 4:
            length = int.from_bytes(buffer[at : at + 4], "big")
            if length > MAX_MESSAGE_SIZE:
                self.closed = True
                self._buffer = b""
                return b"".join(replies)
            if len(buffer) - at - 4 < length:
                break
            request = buffer[at + 4 : at + 4 + length]
            at += 4 + length
            replies.append(_frame(self._answer(request)))
        self._buffer = buffer[at:]
        return b"".join(replies)

    def _answer(self, request: bytes) -> bytes:
        if not request:
            return bytes([FAILURE])
        kind = request[0]
        if kind == REQUEST_IDENTITIES:
            body = [len(self._keys).to_bytes(4, "big")]
            for listed in self._keys:
                comment = listed.comment.encode("utf-8", "replace")
                body.append(_string(listed.blob) + _string(comment))
            return bytes([IDENTITIES_ANSWER]) + b"".join(body)
        if kind == SIGN_REQUEST:
            reader = _Reader(request[1:])
            try:
                blob = reader.string()
                data = reader.string()
                flags = reader.uint32()
            except _Truncated:
                return bytes([FAILURE])
            key = next((key for key in self._keys if key.blob == blob), None)
            if key is None:
                return bytes([FAILURE])
            try:
                signature = key.sign(data, flags)
            except Exception:
                return bytes([FAILURE])
            return bytes([SIGN_RESPONSE]) + _string(signature)
        # Adding, removing, locking and every extension (session-bind@openssh.com, ...)
        # are refused: the build gets to use the keys, not to change the keyring.
        return bytes([FAILURE])
