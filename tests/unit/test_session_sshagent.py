"""Key files forwarded with `--ssh ID=KEY`: buildsdk's own agent, checked by real OpenSSH.

Keys are made by `ssh-keygen`; the agent (`AgentConnection`) is served on a temporary unix
socket and OpenSSH's `ssh-add` lists the keys and has them sign (`-T` verifies the
signature), exactly what a `RUN --mount=type=ssh` step would do. Errors are the ones a user
sees for unusable files, and the passphrase shows up nowhere.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pty
import re
import select
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from buildsdk._grpc.status import GrpcError, Status
from buildsdk._session_options import load_forward_keys
from buildsdk.cli import EXIT_USAGE, build_options_from_args, main, parse_args
from buildsdk.errors import BuildSDKError
from buildsdk.session import SSHForward
from buildsdk.session._messages import BytesMessage, CheckAgentRequest
from buildsdk.session._sshagent import (
    MAX_MESSAGE_SIZE,
    AgentConnection,
    AgentKey,
    load_key,
    needs_passphrase,
)
from buildsdk.session.ssh import SSHService
from tests import examples

PASSPHRASE = "c0rrect-h0rse-pw"
REPO = Path(__file__).resolve().parents[2]

KEY_TYPES = {
    "ed25519": ["-t", "ed25519"],
    "rsa": ["-t", "rsa", "-b", "2048"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "rsa_pem": ["-t", "rsa", "-b", "2048", "-m", "PEM"],
    "ecdsa_pem": ["-t", "ecdsa", "-b", "256", "-m", "PEM"],
    "rsa_pkcs8": ["-t", "rsa", "-b", "2048", "-m", "PKCS8"],
}
ENCRYPTED = {
    "ed25519_enc": ["-t", "ed25519"],
    "rsa_pem_enc": ["-t", "rsa", "-b", "2048", "-m", "PEM"],
    "ecdsa_pkcs8_enc": ["-t", "ecdsa", "-b", "384", "-m", "PKCS8"],
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} (Debian's openssh-client) is needed for these tests")
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Private key files made by ssh-keygen, by name; `<name>.pub` beside each."""
    directory = tmp_path_factory.mktemp("keys")
    made: dict[str, Path] = {}
    for table, passphrase in ((KEY_TYPES, ""), (ENCRYPTED, PASSPHRASE)):
        for name, flags in table.items():
            path = directory / name
            subprocess.run(
                [_tool("ssh-keygen"), "-q", *flags, "-N", passphrase, "-C", name, "-f", str(path)],
                check=True,
            )
            made[name] = path
    assert _first_line(made["rsa_pkcs8"]) == "-----BEGIN PRIVATE KEY-----"
    assert _first_line(made["ecdsa_pkcs8_enc"]) == "-----BEGIN ENCRYPTED PRIVATE KEY-----"
    assert _first_line(made["rsa_pem_enc"]) == "-----BEGIN RSA PRIVATE KEY-----"
    return made


def _first_line(path: Path) -> str:
    """The first line of a key file: which format ssh-keygen wrote."""
    return path.read_text().splitlines()[0]


class _AgentServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, agent_keys: tuple[AgentKey, ...]) -> None:
        self.agent_keys = agent_keys
        super().__init__(path, _AgentHandler)


class _AgentHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = cast(_AgentServer, self.server)
        connection = AgentConnection(server.agent_keys)
        sock: socket.socket = self.request
        while not connection.closed:
            data = sock.recv(4096)
            if not data:
                return
            sock.sendall(connection.feed(data))


def _serve(directory: Path, agent_keys: tuple[AgentKey, ...]) -> Iterator[str]:
    path = str(directory / "agent.sock")
    server = _AgentServer(path, agent_keys)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def agent(keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A socket served by buildsdk's agent holding every generated key (one passphrase)."""
    forward = SSHForward(keys=[str(path) for path in keys.values()], passphrase=PASSPHRASE)
    yield from _serve(tmp_path_factory.mktemp("agent"), load_forward_keys(forward))


def _ssh_add(sock: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"SSH_AUTH_SOCK": sock, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(
        [_tool("ssh-add"), *args], env=env, capture_output=True, text=True, timeout=30
    )


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(
        [_tool("ssh-keygen"), "-l", "-f", str(pub)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[1]


# -- real OpenSSH against the agent ---------------------------------------------------------


def test_ssh_add_lists_every_key_with_its_path_as_comment(
    agent: str, keys: dict[str, Path]
) -> None:
    listed = _ssh_add(agent, "-l")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == len(keys)
    for line, path in zip(lines, keys.values(), strict=True):
        # "<bits> SHA256:<fingerprint> <comment> (<TYPE>)", in the order given.
        _, fingerprint, comment, _ = line.split()
        assert fingerprint == _fingerprint(path.with_name(path.name + ".pub"))
        assert comment == str(path)


@pytest.mark.parametrize("name", [*KEY_TYPES, *ENCRYPTED])
def test_ssh_add_has_each_key_sign_and_verifies_it(
    agent: str, keys: dict[str, Path], name: str
) -> None:
    pub = keys[name].with_name(name + ".pub")
    tested = _ssh_add(agent, "-T", str(pub))
    assert tested.returncode == 0, tested.stderr


def test_keys_are_read_only_for_the_build(
    agent: str, keys: dict[str, Path], tmp_path: Path
) -> None:
    removed = _ssh_add(agent, "-D")
    assert removed.returncode != 0
    assert "Failed to remove all identities" in removed.stderr
    deleted = _ssh_add(agent, "-d", str(keys["ed25519"].with_name("ed25519.pub")))
    assert deleted.returncode != 0
    spare = tmp_path / "spare"
    subprocess.run(
        [_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(spare)], check=True
    )
    added = _ssh_add(agent, str(spare))
    assert added.returncode != 0
    # Everything is still there.
    assert len(_ssh_add(agent, "-l").stdout.splitlines()) == len(keys)


def test_a_key_the_agent_does_not_hold_is_refused(agent: str, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(
        [_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True
    )
    tested = _ssh_add(agent, "-T", str(other) + ".pub")
    assert tested.returncode != 0


# -- signatures, checked with the public keys -----------------------------------------------


def _request(kind: int, body: bytes = b"") -> bytes:
    payload = bytes([kind]) + body
    return len(payload).to_bytes(4, "big") + payload


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _strings(data: bytes) -> list[bytes]:
    items = []
    while data:
        size = int.from_bytes(data[:4], "big")
        items.append(data[4 : 4 + size])
        data = data[4 + size :]
    return items


def _sign(key: AgentKey, data: bytes, flags: int) -> tuple[bytes, bytes]:
    reply = AgentConnection([key]).feed(
        _request(13, _string(key.blob) + _string(data) + flags.to_bytes(4, "big"))
    )
    assert int.from_bytes(reply[:4], "big") == len(reply) - 4
    assert reply[4] == 14
    (signature,) = _strings(reply[5:])
    name, blob = _strings(signature)
    return name, blob


def _public(path: Path) -> Any:
    return serialization.load_ssh_public_key(path.with_name(path.name + ".pub").read_bytes())


@pytest.mark.parametrize(
    ("flags", "name", "digest"),
    [
        (0, b"ssh-rsa", hashes.SHA1()),
        (2, b"rsa-sha2-256", hashes.SHA256()),
        (4, b"rsa-sha2-512", hashes.SHA512()),
        (6, b"rsa-sha2-256", hashes.SHA256()),
    ],
)
def test_rsa_signature_follows_the_flags(
    keys: dict[str, Path], flags: int, name: bytes, digest: hashes.HashAlgorithm
) -> None:
    for which in ("rsa", "rsa_pem", "rsa_pkcs8"):
        signed, blob = _sign(load_key(str(keys[which])), b"challenge", flags)
        assert signed == name
        public = _public(keys[which])
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(blob, b"challenge", padding.PKCS1v15(), digest)
        with pytest.raises(InvalidSignature):
            public.verify(blob, b"other", padding.PKCS1v15(), digest)


@pytest.mark.parametrize(
    ("which", "name", "digest"),
    [
        ("ecdsa256", b"ecdsa-sha2-nistp256", hashes.SHA256()),
        ("ecdsa384", b"ecdsa-sha2-nistp384", hashes.SHA384()),
        ("ecdsa521", b"ecdsa-sha2-nistp521", hashes.SHA512()),
    ],
)
def test_ecdsa_signature_is_two_mpints(
    keys: dict[str, Path], which: str, name: bytes, digest: hashes.HashAlgorithm
) -> None:
    for _ in range(8):  # r and s vary: some need a leading zero byte, some do not
        signed, blob = _sign(load_key(str(keys[which])), b"challenge", 0)
        assert signed == name
        r_bytes, s_bytes = _strings(blob)
        for part in (r_bytes, s_bytes):
            assert part[0] & 0x80 == 0
            assert part[0] != 0 or part[1] & 0x80
        r, s = int.from_bytes(r_bytes, "big"), int.from_bytes(s_bytes, "big")
        public = _public(keys[which])
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(encode_dss_signature(r, s), b"challenge", ec.ECDSA(digest))


def test_ed25519_signature(keys: dict[str, Path]) -> None:
    signed, blob = _sign(load_key(str(keys["ed25519"])), b"challenge", 4)
    assert signed == b"ssh-ed25519"
    public = _public(keys["ed25519"])
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(blob, b"challenge")


def test_requests_split_and_joined_get_one_reply_each(keys: dict[str, Path]) -> None:
    key = load_key(str(keys["ed25519"]))
    stream = _request(11) + _request(19) + _request(27, _string(b"session-bind@openssh.com"))
    agent = AgentConnection([key])
    replies = b"".join(agent.feed(stream[i : i + 3]) for i in range(0, len(stream), 3))
    answers = []
    while replies:
        size = int.from_bytes(replies[:4], "big")
        answers.append(replies[4 : 4 + size])
        replies = replies[4 + size :]
    assert [answer[0] for answer in answers] == [12, 5, 5]
    assert answers[0][1:5] == (1).to_bytes(4, "big")
    assert _strings(answers[0][5:]) == [key.blob, str(keys["ed25519"]).encode()]


def test_an_oversized_message_closes_the_connection(keys: dict[str, Path]) -> None:
    agent = AgentConnection([load_key(str(keys["ed25519"]))])
    too_long = (MAX_MESSAGE_SIZE + 1).to_bytes(4, "big")
    assert agent.feed(_request(11) + too_long + b"\x0b") == _identities_reply(agent)
    assert agent.closed
    assert agent.feed(_request(11)) == b""
    fits = AgentConnection([])
    assert fits.feed(MAX_MESSAGE_SIZE.to_bytes(4, "big") + b"\x11" * 1000) == b""
    assert not fits.closed


def _identities_reply(agent: AgentConnection) -> bytes:
    return AgentConnection(agent._keys).feed(_request(11))


@st.composite
def _client_bytes(draw: st.DrawFn, blob: bytes) -> bytes:
    parts = draw(
        st.lists(
            st.one_of(
                st.binary(max_size=40),
                st.builds(_request, st.integers(0, 255), st.binary(max_size=40)),
                st.builds(
                    lambda data, flags: _request(
                        13, _string(blob) + _string(data) + flags.to_bytes(4, "big")
                    ),
                    st.binary(max_size=40),
                    st.integers(0, 2**32 - 1),
                ),
                st.just(_request(11)),
            ),
            max_size=12,
        )
    )
    return b"".join(parts)


_HYPOTHESIS_KEY = ed25519.Ed25519PrivateKey.generate()
_HYPOTHESIS_BLOB = base64.b64decode(
    _HYPOTHESIS_KEY.public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .split()[1]
)


@settings(max_examples=examples(300), deadline=None)
@given(st.data())
def test_any_bytes_get_well_formed_replies_or_a_close(data: st.DataObject) -> None:
    stream = data.draw(_client_bytes(_HYPOTHESIS_BLOB))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    key = AgentKey(
        blob=_HYPOTHESIS_BLOB, comment="mem", kind="ssh-ed25519", _private=_HYPOTHESIS_KEY
    )
    agent = AgentConnection([key])
    out = b""
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += agent.feed(stream[start:end])
    # What a reader of the input expects: one reply per complete frame, until a frame
    # announces more than the limit.
    expected, at, closes = 0, 0, False
    while len(stream) - at >= 4:
        size = int.from_bytes(stream[at : at + 4], "big")
        if size > MAX_MESSAGE_SIZE:
            closes = True
            break
        if len(stream) - at - 4 < size:
            break
        expected += 1
        at += 4 + size
    assert agent.closed is closes
    replies = 0
    while out:
        size = int.from_bytes(out[:4], "big")
        assert 1 <= size <= len(out) - 4
        reply, out = out[4 : 4 + size], out[4 + size :]
        assert reply[0] in (5, 12, 14)
        if reply[0] == 14:
            name, signature = _strings(_strings(reply[1:])[0])
            assert name == b"ssh-ed25519"
            assert len(signature) == 64
        if reply[0] == 12:
            assert reply == bytes([12]) + (1).to_bytes(4, "big") + _string(
                _HYPOTHESIS_BLOB
            ) + _string(b"mem")
        replies += 1
    assert replies == expected


# -- errors a user sees -----------------------------------------------------------------------


def _load_error(*paths: str | Path, passphrase: str | None = None) -> str:
    forward = SSHForward(id="gh", keys=[str(path) for path in paths], passphrase=passphrase)
    with pytest.raises(BuildSDKError) as caught:
        forward.check()
    return str(caught.value)


def test_unusable_files_are_named_in_clear_errors(tmp_path: Path, keys: dict[str, Path]) -> None:
    missing = tmp_path / "missing"
    assert _load_error(missing) == (
        f"ssh 'gh': cannot read ssh key '{missing}': No such file or directory"
    )
    assert "is a directory, not a private key file" in _load_error(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert "is not a regular file" in _load_error(fifo)
    assert time.monotonic() - started < 5
    pub = keys["ed25519"].with_name("ed25519.pub")
    assert "is a public key: give the private key file (without .pub)" in _load_error(pub)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\xffnot a key at all\n")
    assert "is not a private key (OpenSSH or PEM format expected)" in _load_error(garbage)
    huge = tmp_path / "huge"
    huge.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + b"A" * 200_000)
    assert "is larger than 100 KiB" in _load_error(huge)
    # Damage the private part of a real key: named, but nothing of its content shown.
    text = keys["rsa_pem"].read_text().splitlines()
    text[5] = "A" * len(text[5])
    broken = tmp_path / "broken"
    broken.write_text("\n".join(text) + "\n")
    message = _load_error(broken)
    assert f"'{broken}' is not a valid private key file" in message
    assert not any(line in message for line in text[1:-1])


def test_dsa_and_security_key_types_are_refused(tmp_path: Path) -> None:
    dsa = tmp_path / "dsa"
    subprocess.run([_tool("ssh-keygen"), "-q", "-t", "dsa", "-N", "", "-f", str(dsa)], check=True)
    assert "is a ssh-dss key, which buildsdk cannot serve" in _load_error(dsa)
    # An sk-ssh-ed25519 key (needs a hardware token to make): only its header matters here.
    kind = b"sk-ssh-ed25519@openssh.com"
    body = (
        b"openssh-key-v1\x00"
        + _string(b"none")
        + _string(b"none")
        + _string(b"")
        + (1).to_bytes(4, "big")
        + _string(_string(kind) + _string(b"\x01" * 32) + _string(b"ssh:"))
    )
    encoded = base64.b64encode(body).decode()
    sk = tmp_path / "sk"
    sk.write_text(
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{encoded}\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    assert "is a sk-ssh-ed25519@openssh.com key" in _load_error(sk)


@pytest.mark.parametrize("name", list(ENCRYPTED))
def test_encrypted_keys_need_the_right_passphrase(keys: dict[str, Path], name: str) -> None:
    path = str(keys[name])
    assert needs_passphrase(path)
    message = _load_error(path)
    assert message == (
        f"ssh 'gh': ssh key '{path}' is encrypted: give its passphrase (SSHForward(passphrase="
        "...), or run `buildsdk build` on a terminal to be asked for it)"
    )
    assert (
        _load_error(path, passphrase="wrong-one")
        == f"ssh 'gh': wrong passphrase for ssh key '{path}'"
    )
    assert SSHForward(keys=[path], passphrase=PASSPHRASE).encrypted_keys() == (path,)
    SSHForward(keys=[path], passphrase=PASSPHRASE).check()


def test_a_passphrase_is_ignored_for_plain_keys(keys: dict[str, Path]) -> None:
    assert not needs_passphrase(str(keys["ed25519"]))
    SSHForward(keys=[keys["ed25519"], keys["ed25519_enc"]], passphrase=PASSPHRASE).check()


def test_a_symlinked_key_is_followed_and_listed_under_the_given_path(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    link = tmp_path / "id_ed25519"
    link.symlink_to(keys["ed25519"])
    assert load_key(str(link)).comment == str(link)


def test_the_passphrase_never_shows(keys: dict[str, Path], tmp_path: Path) -> None:
    forward = SSHForward(keys=[keys["ed25519_enc"]], passphrase=PASSPHRASE)
    texts = [repr(forward), str(forward), forward.model_dump_json(), repr(forward.model_dump())]
    with pytest.raises(ValidationError) as invalid:
        SSHForward(passphrase=PASSPHRASE)
    texts.append(str(invalid.value))
    texts.append(_load_error(keys["ed25519_enc"], passphrase=PASSPHRASE + "x"))
    texts.append(repr(load_forward_keys(forward)))
    assert all(PASSPHRASE not in text for text in texts)
    assert "**********" in repr(forward)


# -- the model and its syntax ---------------------------------------------------------------


def test_parse_tells_sockets_from_key_files(tmp_path: Path, keys: dict[str, Path]) -> None:
    sock = tmp_path / "agent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    try:
        assert SSHForward.parse(f"a={sock}") == SSHForward(id="a", socket=str(sock))
        with pytest.raises(ValueError, match="invalid combination of keys and sockets"):
            SSHForward.parse(f"a={keys['rsa']},{sock}")
    finally:
        listener.close()
    one = SSHForward.parse(f"a={keys['rsa']}")
    assert (one.socket, one.keys) == (None, (str(keys["rsa"]),))
    two = SSHForward.parse("b=rsa,ed25519", base=keys["rsa"].parent)
    assert two.keys == (str(keys["rsa"]), str(keys["ed25519"]))


def test_parse_expands_the_home_directory(
    keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(keys["rsa"].parent))
    assert SSHForward.parse("default=~/rsa").keys == (str(keys["rsa"]),)


def test_socket_and_keys_exclude_each_other() -> None:
    with pytest.raises(ValidationError, match="not both"):
        SSHForward(socket="/run/agent.sock", keys=["/k"])
    with pytest.raises(ValidationError, match="only used with key files"):
        SSHForward(socket="/run/agent.sock", passphrase="x")
    with pytest.raises(ValidationError, match="must not be empty"):
        SSHForward(keys=[""])
    assert SSHForward(keys=Path("/k")).keys == ("/k",)
    with pytest.raises(BuildSDKError, match="serves key files"):
        SSHForward(keys=["/k"]).resolve({})


# -- the session service --------------------------------------------------------------------


class _FakeCall:
    def __init__(self, ident: str, incoming: list[bytes]) -> None:
        self.metadata = {"buildkit.ssh.id": (ident,)}
        self._incoming: list[bytes | None] = [*incoming, None]
        self.sent: list[bytes] = []

    def first(self, key: str) -> str | None:
        values = self.metadata.get(key)
        return values[0] if values else None

    async def recv(self) -> bytes | None:
        return self._incoming.pop(0) if self._incoming else None

    async def recv_one(self) -> bytes:
        message = await self.recv()
        return message if message is not None else b""

    async def send(self, message: bytes) -> None:
        self.sent.append(message)


def test_service_loads_keys_when_made_and_answers_the_engine(keys: dict[str, Path]) -> None:
    with pytest.raises(BuildSDKError, match="is encrypted"):
        SSHService([SSHForward(id="gh", keys=[keys["ed25519_enc"]])], {})
    service = SSHService([SSHForward(id="gh", keys=[keys["ed25519"]])], {})
    key = load_key(str(keys["ed25519"]))

    async def run() -> None:
        check = _FakeCall("", [CheckAgentRequest("gh").encode()])
        await service.check_agent(cast(Any, check))
        assert check.sent == [b""]
        with pytest.raises(GrpcError) as unknown:
            await service.check_agent(cast(Any, _FakeCall("", [CheckAgentRequest("x").encode()])))
        assert unknown.value.status == Status.NOT_FOUND
        # The request split over two messages still gets its one reply.
        request = _request(11)
        forward = _FakeCall(
            "gh", [BytesMessage(request[:3]).encode(), BytesMessage(request[3:]).encode()]
        )
        await service.forward_agent(cast(Any, forward))
        assert [BytesMessage.decode(m).data for m in forward.sent] == [
            AgentConnection([key]).feed(request)
        ]
        # An oversized message ends the call, whatever follows.
        closing = _FakeCall(
            "gh",
            [
                BytesMessage((MAX_MESSAGE_SIZE + 1).to_bytes(4, "big")).encode(),
                BytesMessage(request).encode(),
            ],
        )
        await service.forward_agent(cast(Any, closing))
        assert closing.sent == []
        assert closing._incoming == [BytesMessage(request).encode(), None]

    asyncio.run(run())


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


def test_cli_ssh_key_flags(ctx: Path, keys: dict[str, Path]) -> None:
    args = parse_args(["build", "--ssh", f"default={keys['rsa']},{keys['ed25519']}", str(ctx)])
    built = build_options_from_args(args, env={}, cwd=ctx)
    assert built.ssh == (SSHForward(keys=[keys["rsa"], keys["ed25519"]]),)
    assert built.version == "2"


def test_cli_encrypted_key_without_a_terminal_exits_2(
    ctx: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    key = keys["ed25519_enc"]
    code = main(["build", "-H", "unix:///nonexistent.sock", "--ssh", f"default={key}", str(ctx)])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"ssh 'default': {key} is encrypted and stdin is not a terminal" in err
    missing = ctx / "nope"
    code = main(["build", "-H", "unix:///nonexistent.sock", "--ssh", f"x=k,{missing}", str(ctx)])
    assert code == EXIT_USAGE
    assert "cannot read ssh key" in capsys.readouterr().err


def _run_in_pty(argv: list[str], answer: str, cwd: Path) -> tuple[int, str]:
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True
    )
    os.close(slave)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                output += data
            if not answered and re.search(rb"Enter passphrase for \S+: ", output):
                os.write(master, answer.encode() + b"\n")
                answered = True
            if not ready and process.poll() is not None:
                break
        status = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return status, output.decode(errors="replace")


@pytest.mark.parametrize(("answer", "status"), [(PASSPHRASE, 0), ("wrong-one", EXIT_USAGE)])
def test_cli_asks_for_the_passphrase_on_a_terminal(
    ctx: Path, keys: dict[str, Path], answer: str, status: int
) -> None:
    key = keys["ed25519_enc"]
    argv = [sys.executable, "-m", "buildsdk", "build", "--dry-run"]
    argv += ["-H", "unix:///nonexistent.sock", "--ssh", f"default={key}", str(ctx)]
    code, output = _run_in_pty(argv, answer, ctx)
    assert f"Enter passphrase for {key}: " in output
    assert answer not in output  # not echoed
    assert code == status, output
    if status:
        assert f"wrong passphrase for ssh key '{key}'" in output
    else:
        assert "POST /v" in output


# -- missing optional packages ------------------------------------------------------------------


def test_without_cryptography_the_error_names_the_extra(
    keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.exceptions", None)
    message = _load_error(keys["ed25519"])
    assert "needs the cryptography package" in message
    assert "pip install 'buildsdk[session]'" in message


def test_without_bcrypt_an_encrypted_openssh_key_names_the_extra(
    keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # cryptography binds bcrypt's kdf when it is imported, and puts in its place one that
    # raises this when bcrypt is missing; the same is done here, and bcrypt hidden.
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import ssh

    def no_bcrypt(*args: object) -> bytes:
        raise UnsupportedAlgorithm("Need bcrypt module")

    monkeypatch.setattr(ssh, "_bcrypt_kdf", no_bcrypt, raising=True)
    monkeypatch.setitem(sys.modules, "bcrypt", None)
    message = _load_error(keys["ed25519_enc"], passphrase=PASSPHRASE)
    assert "pip install 'buildsdk[session]'" in message
    # PEM encryption needs no bcrypt.
    SSHForward(keys=[keys["rsa_pem_enc"]], passphrase=PASSPHRASE).check()
