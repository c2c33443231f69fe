"""Bad input everywhere: only the documented errors may come out, never a crash.

Hypothesis throws arbitrary values at every option field, arbitrary bytes at a context's
.dockerignore, arbitrary bytes (cut at arbitrary points) at the stream decoder. (Arbitrary
pattern text and arbitrary protobuf bytes are thrown in tests/unit: test_dockerignore.py and
test_buildkit.py.)
Odd file trees (newlines and invalid UTF-8 in names, 255-byte names, deep nesting, files
that vanish or change while the tar is produced, directories a non-root user cannot read)
are packed for real and the tar is read back.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildsdk import ContextError, StreamError, UnsupportedOption
from buildsdk._decoder import EventDecoder
from buildsdk._protobuf import field_bytes, field_string
from buildsdk.build import BuildOptions
from buildsdk.context import prepare_context
from buildsdk.events import BuildEvent
from buildsdk.prune import PruneOptions
from buildsdk.versions import ApiVersion

VERSIONS = [ApiVersion(1, 24), ApiVersion(1, 41), ApiVersion(1, 44), ApiVersion(1, 51)]
REPO = Path(__file__).resolve().parents[2]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from(["", " ", "-1", "0", "1g", "512m", "linux/amd64", "a:b", "\x00", "é"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=10), inner, max_size=4),
        st.frozensets(st.text(max_size=5), max_size=3),
    ),
    max_leaves=8,
)


def _check_message(exc: Exception) -> None:
    assert str(exc).strip(), f"{type(exc).__name__} without a message"


def _check_validation(exc: pydantic.ValidationError) -> None:
    assert exc.errors(), "a ValidationError that names no field"


def _check_unsupported(exc: UnsupportedOption) -> None:
    assert exc.option, "UnsupportedOption that names no option"
    _check_message(exc)


def _check_context_error(exc: ContextError) -> None:
    _check_message(exc)


def _serialize_build(options: BuildOptions) -> None:
    for version in VERSIONS:
        try:
            options.to_query(version)
        except UnsupportedOption as exc:
            _check_unsupported(exc)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(sorted(BuildOptions.model_fields)), _values, min_size=1, max_size=4
    )
)
def test_build_options_take_any_value(fields: dict[str, Any]) -> None:
    """Any value for any field: a ValidationError at construction, else serializable."""
    fields.pop("fileobj", None)  # a file object is checked in its own test below
    try:
        options = BuildOptions(**fields)
    except pydantic.ValidationError as exc:
        _check_validation(exc)
        return
    _serialize_build(options)


@settings(max_examples=100, deadline=None)
@given(_values)
def test_build_options_fileobj_any_value(value: object) -> None:
    try:
        BuildOptions(fileobj=value)  # type: ignore[arg-type]
    except pydantic.ValidationError:
        return


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["memory", "memswap", "cpushares", "cpusetcpus", "cpuperiod", "cpuquota", "cpusetmems"]
        ),
        _values,
        max_size=4,
    ),
    st.lists(st.dictionaries(st.sampled_from(["name", "soft", "hard"]), _values), max_size=2),
)
def test_nested_limits_take_any_value(
    limits: dict[str, Any], ulimits: list[dict[str, Any]]
) -> None:
    try:
        options = BuildOptions(container_limits=limits, ulimits=ulimits)
    except pydantic.ValidationError:
        return
    _serialize_build(options)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(PruneOptions.model_fields)), _values, min_size=1, max_size=4
    ),
    st.dictionaries(
        st.sampled_from(
            ["until", "id", "parent", "type", "description", "inuse", "shared", "private"]
        ),
        _values,
        max_size=3,
    ),
)
def test_prune_options_take_any_value(fields: dict[str, Any], filters: dict[str, Any]) -> None:
    if filters:
        fields["filters"] = filters
    try:
        options = PruneOptions(**fields)
    except pydantic.ValidationError as exc:
        _check_validation(exc)
        return
    for version in VERSIONS:
        try:
            options.to_query(version)
        except UnsupportedOption as exc:
            _check_unsupported(exc)


# -- .dockerignore ------------------------------------------------------------------------------


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=120))
def test_dockerignore_file_any_bytes(tmp_path: Path, data: bytes) -> None:
    """Packing a context whose .dockerignore holds any bytes: a tar or ContextError."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "a" / "b").write_text("b")
    (tmp_path / ".dockerignore").write_bytes(data)
    try:
        body = b"".join(prepare_context(path=tmp_path))
    except ContextError as exc:
        _check_context_error(exc)
        return
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert "Dockerfile" in tar.getnames()


# -- streams --------------------------------------------------------------------------------------


def _trace(payload: bytes) -> bytes:
    aux = base64.b64encode(payload).decode()
    return json.dumps({"id": "moby.buildkit.trace", "aux": aux}).encode() + b"\r\n"


_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)
_vertex = st.builds(
    lambda digest, name: field_bytes(1, field_string(1, digest) + field_string(3, name)),
    st.text(max_size=10),
    st.text(max_size=10),
)
_messages = st.one_of(
    st.binary(max_size=60),
    st.builds(lambda t: json.dumps({"stream": t}).encode() + b"\r\n", st.text(max_size=30)),
    st.builds(lambda v: json.dumps(v).encode() + b"\r\n", _json_values),
    st.builds(
        lambda v: json.dumps({"aux": v, "id": "moby.image.id"}).encode() + b"\r\n", _json_values
    ),
    st.builds(
        lambda v: json.dumps({"errorDetail": v, "error": "e"}).encode() + b"\r\n", _json_values
    ),
    st.builds(_trace, st.binary(max_size=60)),
    st.builds(_trace, st.lists(_vertex, max_size=3).map(b"".join)),
    st.sampled_from([b"\r\n", b"\n", b"{", b"}", b'{"aux":', b"\xff", b"\xe2\x82", b"[" * 3000]),
)


@settings(max_examples=800, deadline=None)
@given(st.lists(_messages, max_size=8).map(b"".join), st.data())
def test_event_decoder_any_bytes_any_split(data: bytes, draw: st.DataObject) -> None:
    """Only events or StreamError; and splitting never changes the outcome."""
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=6)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    whole = _decode([data])
    split = _decode(pieces)
    if isinstance(whole, list) and isinstance(split, list):
        assert [e.model_dump() for e in whole] == [e.model_dump() for e in split]
    else:
        # The same bytes either decode or fail, however they were cut.
        assert isinstance(whole, StreamError) == isinstance(split, StreamError)


def _decode(pieces: list[bytes]) -> list[BuildEvent] | StreamError:
    decoder = EventDecoder()
    events: list[BuildEvent] = []
    try:
        for piece in pieces:
            events.extend(decoder.feed(piece))
        events.extend(decoder.flush())
    except StreamError as exc:
        _check_message(exc)
        return exc
    assert all(isinstance(e, BuildEvent) for e in events)
    return events


# -- odd file trees -----------------------------------------------------------------------------


def _tar_names(body: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(body), errors="surrogateescape") as tar:
        return tar.getnames()


def test_names_with_newlines_and_invalid_utf8(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    odd = [b"line\nbreak", b"bad\xff\xfeutf8", b"tab\tand\rcr", b"x" * 255, "é☺".encode()]
    for name in odd:
        with open(os.path.join(os.fsencode(tmp_path), name), "wb") as f:
            f.write(name)
    body = b"".join(prepare_context(path=tmp_path))
    names = _tar_names(body)
    assert sorted(names) == sorted(["Dockerfile", *(os.fsdecode(n) for n in odd)])
    with tarfile.open(fileobj=io.BytesIO(body), errors="surrogateescape") as tar:
        for name in odd:
            member = tar.extractfile(os.fsdecode(name))
            assert member is not None
            assert member.read() == name


def test_long_names_and_deep_nesting(tmp_path: Path) -> None:
    """255-byte components and a 1500-level tree: PAX names, no recursion limit."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    long_dir = tmp_path / ("d" * 255) / ("e" * 255)
    long_dir.mkdir(parents=True)
    (long_dir / ("f" * 255)).write_text("deep")
    deep = tmp_path / "n"
    deep_path = str(deep)
    os.mkdir(deep_path)
    for _ in range(1499):  # os.makedirs itself recurses too deep for this
        deep_path = os.path.join(deep_path, "n")
        os.mkdir(deep_path)
    Path(deep_path, "leaf").write_text("leaf")
    try:
        names = _tar_names(b"".join(prepare_context(path=tmp_path)))
    finally:
        _remove_chain(deep_path, stop=str(tmp_path))
    assert "/".join(["d" * 255, "e" * 255, "f" * 255]) in names
    assert "/".join(["n"] * 1500 + ["leaf"]) in names
    assert len(names) == 1 + 3 + 1500 + 1


def _remove_chain(deepest: str, *, stop: str) -> None:
    """Remove a one-directory-per-level chain from the bottom up, to `stop` (excluded).

    pytest's clean-up of old temporary directories recurses once per level and fails on a
    1500-level tree, leaving it behind for every later run to trip over.
    """
    for name in os.listdir(deepest):
        os.unlink(os.path.join(deepest, name))
    path = deepest
    while path != stop:
        os.rmdir(path)
        path = os.path.dirname(path)


def test_file_vanishing_during_the_walk(tmp_path: Path) -> None:
    """A file deleted after the check but before it is read is a ContextError naming it."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "a-first").write_bytes(os.urandom(300_000))
    (tmp_path / "z-later").write_bytes(b"later")
    chunks = iter(prepare_context(path=tmp_path, chunk_size=4096))
    next(chunks)
    (tmp_path / "z-later").unlink()
    with pytest.raises(ContextError) as info:
        b"".join(chunks)
    assert "z-later" in info.value.message
    assert info.value.path is not None
    assert info.value.path.endswith("z-later")


@pytest.mark.parametrize("new_size", [10, 600_000])
def test_file_changing_size_while_it_is_read(tmp_path: Path, new_size: int) -> None:
    """A file cut or grown while its bytes are being sent: ContextError, no corrupt tar."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "a-first").write_bytes(os.urandom(300_000))
    chunks = iter(prepare_context(path=tmp_path, chunk_size=4096))
    next(chunks)
    (tmp_path / "a-first").write_bytes(b"x" * new_size)
    with pytest.raises(ContextError) as info:
        b"".join(chunks)
    assert info.value.message == (
        "file 'a-first' changed size while the context was being sent (expected 300000 bytes)"
    )


def test_directory_vanishing_before_the_walk(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "f").write_text("f")
    context = prepare_context(path=tmp_path)
    (sub / "f").unlink()
    sub.rmdir()
    # The tar is produced by a second walk: what is gone by then is simply not sent.
    assert _tar_names(b"".join(context)) == ["Dockerfile"]


@pytest.mark.parametrize("kind", ["device", "fifo outside", "fifo .dockerignore"])
def test_special_files_where_a_file_is_read_whole(tmp_path: Path, kind: str) -> None:
    """/dev/zero as the Dockerfile, a FIFO as the outside Dockerfile or as .dockerignore:
    the CLI blocks or reads forever on these; here they are a ContextError, at once."""
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    dockerfile: str | None = None
    if kind == "device":
        dockerfile = "/dev/zero"
    elif kind == "fifo outside":
        os.mkfifo(tmp_path / "Dockerfile.fifo")
        dockerfile = "../Dockerfile.fifo"
    else:
        os.mkfifo(context / ".dockerignore")
    started = time.monotonic()
    with pytest.raises(ContextError) as info:
        prepare_context(path=context, dockerfile=dockerfile)
    assert time.monotonic() - started < 5
    assert info.value.message.endswith(": not a regular file")
    if kind == "fifo .dockerignore":
        assert info.value.message == "error reading .dockerignore: not a regular file"
    else:
        assert info.value.message.startswith("unable to open Dockerfile: ")


_AS_NOBODY = textwrap.dedent(
    """
    import json, sys
    from buildsdk.context import prepare_context
    from buildsdk.errors import ContextError
    try:
        body = b"".join(prepare_context(path=sys.argv[1]))
    except ContextError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": exc.message, "path": exc.path}))
    else:
        print(json.dumps({"size": len(body)}))
    """
)


def _pack_as_nobody(context: Path) -> dict[str, Any]:
    if os.geteuid() != 0:
        command = [sys.executable, "-c", _AS_NOBODY, str(context)]
    else:
        command = [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            sys.executable,
            "-c",
            _AS_NOBODY,
            str(context),
        ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def world_tmp(short_tmp: Path) -> Path:
    """A directory the unprivileged user can enter."""
    short_tmp.chmod(0o755)
    (short_tmp / "Dockerfile").write_text("FROM scratch\n")
    (short_tmp / "Dockerfile").chmod(0o644)
    return short_tmp


def test_permission_denied_directory(world_tmp: Path) -> None:
    """As a non-root user, an unreadable directory fails like the CLI: can't stat."""
    locked = world_tmp / "locked"
    locked.mkdir()
    (locked / "secret").write_text("s")
    locked.chmod(0o000)
    result = _pack_as_nobody(world_tmp)
    assert result == {
        "error": "ContextError",
        "message": f"error checking context: can't stat '{locked}'",
        "path": str(locked),
    }


def test_permission_denied_file(world_tmp: Path) -> None:
    secret = world_tmp / "secret"
    secret.write_text("s")
    secret.chmod(0o600)
    result = _pack_as_nobody(world_tmp)
    assert result == {
        "error": "ContextError",
        "message": f"error checking context: no permission to read from '{secret}'",
        "path": str(secret),
    }


def test_permission_denied_but_ignored(world_tmp: Path) -> None:
    """An unreadable directory excluded by .dockerignore is fine, as in the CLI."""
    locked = world_tmp / "locked"
    locked.mkdir()
    locked.chmod(0o000)
    (world_tmp / ".dockerignore").write_text("locked\n")
    (world_tmp / ".dockerignore").chmod(0o644)
    result = _pack_as_nobody(world_tmp)
    assert set(result) == {"size"}
