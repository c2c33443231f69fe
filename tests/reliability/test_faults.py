"""What a user gets when the engine misbehaves: the exact error, and how fast.

Each case scripts the fault engine (tests/reliability/fault_engine.py) to fail in one way,
runs a real `Client` (and for the streaming cases an `AsyncClient`) against it over a unix
socket and over TCP, and checks the error type, its message and that it arrived within a
generous bound. The measured times feed docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildsdk import (
    APIError,
    BadRequest,
    BuildSDKError,
    EngineTimeout,
    EngineUnreachable,
    ServerError,
    StreamError,
)
from buildsdk.aio import AsyncClient
from buildsdk.build import BuildOptions
from buildsdk.client import Client
from buildsdk.events import LogEvent
from tests.reliability.conftest import Measure, clean_config, expect_error
from tests.reliability.fault_engine import Exchange, FaultEngine, answer_build, build_stream

IMAGE_ID = "sha256:" + "5e" * 32
TRANSPORTS = ["unix", "tcp"]


@pytest.fixture
def small_context(tmp_path: Path) -> Path:
    """A context of one Dockerfile."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


@pytest.fixture
def big_context(tmp_path: Path) -> Path:
    """A context far larger than socket buffers, so the upload is still running on a fault."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY blob /\n")
    (tmp_path / "blob").write_bytes(os.urandom(1024 * 1024) * 24)
    return tmp_path


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """The address kind the client uses to reach the fault engine."""
    return str(request.param)


@pytest.fixture
def client(fault_engine: FaultEngine, transport: str) -> Iterator[Client]:
    """A sync client on the fault engine, with no configuration from this machine."""
    with Client(fault_engine.host(transport), env={}, config=clean_config(), timeout=5.0) as c:
        yield c


def _where(engine: FaultEngine, transport: str) -> str:
    return engine.socket_path if transport == "unix" else f"127.0.0.1:{engine.port}"


def _build(client: Client, context: Path, **extra: object) -> object:
    return client.build(BuildOptions(path=str(context), **extra)).result()  # type: ignore[arg-type]


# -- connection faults --------------------------------------------------------------------------


def test_refused_connection(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
) -> None:
    fault_engine.refuse()
    error, elapsed = expect_error(EngineUnreachable, lambda: _build(client, small_context))
    assert error.address == client.endpoint.__str__()
    assert _where(fault_engine, transport) in str(error)
    assert "Connection refused" in error.reason
    assert "Is the docker daemon running?" in str(error)
    measure.error(f"connection refused ({transport})", error, elapsed)


def test_socket_file_missing(short_tmp: Path, small_context: Path, measure: Measure) -> None:
    path = short_tmp / "absent.sock"
    with Client(f"unix://{path}", env={}, config=clean_config()) as client:
        error, elapsed = expect_error(EngineUnreachable, lambda: _build(client, small_context))
    assert str(path) in str(error)
    assert "No such file or directory" in error.reason
    measure.error("socket file missing", error, elapsed)


def test_reset_during_upload(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    big_context: Path,
    measure: Measure,
) -> None:
    def reset_after_some(exchange: Exchange) -> None:
        exchange.read_body(limit=256 * 1024)
        exchange.reset()

    fault_engine.handler = reset_after_some
    error, elapsed = expect_error(StreamError, lambda: _build(client, big_context))
    assert _where(fault_engine, transport) in str(error)
    assert "broke" in str(error)
    assert 0 < len(fault_engine.builds()[0].body) < 24 * 1024 * 1024
    measure.error(f"reset during upload ({transport})", error, elapsed)


def _like_dockerd_after_a_reset() -> Callable[[Exchange], None]:
    """Reset the first upload; then answer as dockerd 20.10 does (checked with curl): a good
    query with an empty body is a 500 "Cannot locate specified Dockerfile: Dockerfile"."""
    calls: list[int] = []

    def handler(exchange: Exchange) -> None:
        calls.append(1)
        if len(calls) == 1:
            exchange.read_body(limit=256 * 1024)
            exchange.reset()
            return
        if not exchange.read_body():
            exchange.respond_error(500, "Cannot locate specified Dockerfile: Dockerfile")
            return
        answer_build(exchange, IMAGE_ID)

    return handler


def test_reset_during_upload_by_a_live_engine(
    fault_engine: FaultEngine, client: Client, transport: str, big_context: Path
) -> None:
    """A connection cut mid-upload while the engine lives on (a proxy, a network hiccup) is a
    broken stream; the engine's view of an empty body must not be reported instead."""
    fault_engine.handler = _like_dockerd_after_a_reset()
    error, _ = expect_error(StreamError, lambda: _build(client, big_context))
    assert "Cannot locate specified Dockerfile" not in str(error)
    assert client.build(BuildOptions(path=str(big_context))).result().image_id == IMAGE_ID


@pytest.mark.parametrize(
    ("status", "kind", "message"),
    [
        (400, BadRequest, "invalid reference format: repository name must be lowercase"),
        (500, ServerError, "failed to create temp dir: no space left on device"),
    ],
)
def test_error_answer_before_reading_body(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    big_context: Path,
    measure: Measure,
    status: int,
    kind: type[BadRequest | ServerError],
    message: str,
) -> None:
    """dockerd rejects bad parameters before reading the upload, then drops the connection."""

    def reject(exchange: Exchange) -> None:
        exchange.respond_error(status, message)
        # Like Go's server: read a little of the unread body, then close (RST on TCP when
        # unread data is left).
        exchange.read_body(limit=256 * 1024)
        exchange.reset()

    fault_engine.handler = reject
    error, elapsed = expect_error(kind, lambda: _build(client, big_context))
    assert error.status_code == status
    assert error.message == message
    assert str(error) == f"{status}: {message} (POST /v1.41/build)"
    measure.error(f"{status} before the upload is read ({transport})", error, elapsed)


# -- broken streams -----------------------------------------------------------------------------


def test_stream_cut_mid_json(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
) -> None:
    def cut(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(200, [("Content-Type", "application/json")])
        exchange.send_chunk(b'{"stream":"Step 1/2 : FROM scratch\\n"}\r\n{"stream":"Step 2/')
        exchange.close()

    fault_engine.handler = cut
    seen: list[str] = []

    def run() -> None:
        with client.build(BuildOptions(path=str(small_context))) as build:
            seen.extend(e.text for e in build if isinstance(e, LogEvent))

    error, elapsed = expect_error(StreamError, run)
    assert seen == ["Step 1/2 : FROM scratch\n"]
    assert "broke off or sent invalid HTTP" in str(error)
    measure.error(f"connection closed mid-JSON ({transport})", error, elapsed)


def test_body_ends_mid_json(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
) -> None:
    """A clean end of the HTTP body that leaves a message unfinished."""

    def cut(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(200, [("Content-Type", "application/json")])
        exchange.send_chunk(b'{"stream":"Step 1/2\\n"}\r\n{"stream":"Ste')
        exchange.end_chunks()

    fault_engine.handler = cut
    error, elapsed = expect_error(StreamError, lambda: _build(client, small_context))
    assert str(error) == 'stream ended in the middle of a message: \'{"stream":"Ste\''
    measure.error(f"body ends mid-JSON ({transport})", error, elapsed)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>502 Bad Gateway</body></html>\r\n", "not JSON"),
        (b'["a list"]\r\n', "not a JSON object"),
        (b"\xff\xfe\x00garbage\n", "not UTF-8"),
    ],
    ids=["html", "json-list", "binary"],
)
def test_garbage_stream(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
    body: bytes,
    message: str,
) -> None:
    def garbage(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.respond(200, body)

    fault_engine.handler = garbage
    error, elapsed = expect_error(StreamError, lambda: _build(client, small_context))
    assert message in str(error)
    measure.error(f"non-JSON stream: {message} ({transport})", error, elapsed)


def test_invalid_http_status_line(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
) -> None:
    def bad_status(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.send(b"HTTP/1.1 OK\r\n\r\n")
        exchange.close()

    fault_engine.handler = bad_status
    error, elapsed = expect_error(StreamError, lambda: _build(client, small_context))
    assert str(error) == (
        f"the engine at {fault_engine.host(transport)} broke off or sent invalid HTTP: "
        "illegal status line: bytearray(b'HTTP/1.1 OK')"
    )
    measure.error(f"invalid HTTP status line ({transport})", error, elapsed)


def test_redirect_is_an_error(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
) -> None:
    """A proxy that redirects: an APIError saying so, never read as an (empty) build."""

    def redirect(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(
            302,
            [("Location", "http://user:secret@elsewhere.example/build")],
            chunked=False,
            content_length=0,
        )

    fault_engine.handler = redirect
    error, elapsed = expect_error(APIError, lambda: _build(client, small_context))
    assert error.status_code == 302
    assert str(error) == "302: unexpected redirect in response (POST /v1.41/build)"
    assert "secret" not in repr(error)
    assert len(fault_engine.builds()) == 1  # not followed
    with pytest.raises(APIError) as info:
        _async_build(fault_engine.host(transport), small_context)
    assert info.value.message == "unexpected redirect in response"
    measure.error(f"302 redirect ({transport})", error, elapsed)


def test_huge_error_body_is_capped(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
) -> None:
    """A proxy's 50 MB error page: read up to the cap, never buffered whole."""
    size = 50 * 1024 * 1024

    def huge_error(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(
            502, [("Content-Type", "text/html")], chunked=False, content_length=size
        )
        block = b"<p>bad gateway</p>" * 4096
        sent = 0
        while sent < size:
            exchange.send(block[: size - sent])
            sent += len(block[: size - sent])

    fault_engine.handler = huge_error
    error, elapsed = expect_error(ServerError, lambda: _build(client, small_context))
    assert error.status_code == 502
    assert error.message.startswith("<p>bad gateway</p>")
    assert len(error.message) <= 1024 * 1024
    measure.record(
        f"502 with a 50 MB HTML body ({transport})",
        f"ServerError: 502: <p>bad gateway</p>... (message cut at {len(error.message)} chars)",
        elapsed,
    )


def test_messages_in_one_unchunked_body(
    fault_engine: FaultEngine, client: Client, transport: str, small_context: Path
) -> None:
    """A proxy may buffer the stream into one body with a Content-Length and no newlines."""
    body = build_stream(IMAGE_ID, ["Step 1/2\n", "Step 2/2\n"]).replace(b"\r\n", b"")

    def whole(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.respond(200, body)

    fault_engine.handler = whole
    result = client.build(BuildOptions(path=str(small_context))).result()
    assert result.image_id == IMAGE_ID
    assert result.log == f"Step 1/2\nStep 2/2\nSuccessfully built {IMAGE_ID[7:19]}\n"


def test_messages_until_connection_close(
    fault_engine: FaultEngine, client: Client, transport: str, small_context: Path
) -> None:
    """HTTP/1.0 style: no length, no chunks, the body ends when the engine closes."""

    def until_close(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(200, chunked=False)
        exchange.send(build_stream(IMAGE_ID))
        exchange.close()

    fault_engine.handler = until_close
    assert client.build(BuildOptions(path=str(small_context))).result().image_id == IMAGE_ID


def test_ten_megabyte_log_line(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
) -> None:
    line = "x" * (10 * 1024 * 1024) + "\n"

    def huge(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(200, [("Content-Type", "application/json")])
        data = json.dumps({"stream": line}).encode() + b"\r\n" + build_stream(IMAGE_ID)
        for start in range(0, len(data), 65536):
            exchange.send_chunk(data[start : start + 65536])
        exchange.end_chunks()

    fault_engine.handler = huge
    started = time.monotonic()
    with client.build(BuildOptions(path=str(small_context))) as build:
        texts = [e.text for e in build if isinstance(e, LogEvent)]
        result = build.result()
    elapsed = time.monotonic() - started
    assert texts[0] == line
    assert result.image_id == IMAGE_ID
    assert result.log.startswith(line)
    assert elapsed < 30
    measure.record(
        f"one 10 MB log line ({transport})", "BuildResult; the line arrives whole", elapsed
    )


def test_a_message_without_end_is_refused_at_the_cap(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
) -> None:
    sent: list[int] = []

    def endless(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(200, [("Content-Type", "application/json")])
        exchange.send_chunk(b'{"stream":"')
        piece = b"x" * 65536
        try:
            # Up to 200 MB, far past the cap: the client must give up long before.
            for _ in range(200 * 16):
                exchange.send_chunk(piece)
                sent.append(len(piece))
        except OSError:
            return

    fault_engine.handler = endless
    error, elapsed = expect_error(StreamError, lambda: _build(client, small_context), bound=30.0)
    assert str(error).startswith("the engine sent a message longer than 64 MiB")
    # The client hung up soon after the cap: the engine could not send its 200 MB.
    assert sum(sent) < 200 * 1024 * 1024
    measure.record(f"a message that never ends ({transport})", f"StreamError: {error}", elapsed)


def test_drip_one_byte_per_second(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
) -> None:
    """A slow engine is not a dead one: each byte restarts the read timeout."""
    stream = build_stream(IMAGE_ID)
    tail = 4

    def drip(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(200, [("Content-Type", "application/json")])
        exchange.send_chunk(stream[:-tail])
        for i in range(len(stream) - tail, len(stream)):
            time.sleep(1.0)
            exchange.send_chunk(stream[i : i + 1])
        exchange.end_chunks()

    fault_engine.handler = drip
    started = time.monotonic()
    result = client.build(BuildOptions(path=str(small_context), timeout=2.5)).result()
    elapsed = time.monotonic() - started
    assert result.image_id == IMAGE_ID
    assert tail - 0.5 < elapsed < 30
    measure.record(
        f"drip 1 byte/s, read timeout 2.5 s ({transport})",
        "BuildResult: the build completes, no timeout",
        elapsed,
    )


def test_never_answers_build(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
) -> None:
    def silent(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.wait_closed(60)
        exchange.close()

    fault_engine.handler = silent
    error, elapsed = expect_error(EngineTimeout, lambda: _build(client, small_context, timeout=1.5))
    assert str(error) == (f"the engine at {client.endpoint} sent nothing within the read timeout")
    assert elapsed >= 1.4
    measure.error(f"never answers, timeout=1.5 ({transport})", error, elapsed)


def test_close_from_another_thread_unblocks_a_silent_build(
    fault_engine: FaultEngine,
    client: Client,
    transport: str,
    small_context: Path,
    measure: Measure,
) -> None:
    """The sync user's own deadline: `Build.close()` from a watchdog thread ends the read
    that waits on a silent engine (no read timeout set), and the engine sees the close."""
    closed = threading.Event()

    def silent_after_one_line(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(200)
        exchange.send_chunk(b'{"stream":"Step 1/1\\n"}\r\n')
        if exchange.wait_closed(60):
            closed.set()
        exchange.close()

    fault_engine.handler = silent_after_one_line
    build = client.build(BuildOptions(path=str(small_context)))
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.extend(build)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcome, "the first event never arrived"
    started = time.monotonic()
    build.close()
    reader.join(10)
    elapsed = time.monotonic() - started
    assert not reader.is_alive(), "close() from another thread did not end the read"
    assert closed.wait(10), "the engine never saw the connection close"
    assert isinstance(outcome[0], LogEvent)
    # The reader learns that the stream it was reading is gone.
    assert len(outcome) == 1 or isinstance(outcome[-1], StreamError)
    measure.record(
        f"Build.close() from another thread, silent engine ({transport})",
        "the blocked read ends; the engine sees the close",
        elapsed,
    )


def test_never_answers_ping(
    fault_engine: FaultEngine, transport: str, small_context: Path, measure: Measure
) -> None:
    def silent(exchange: Exchange) -> None:
        exchange.wait_closed(60)
        exchange.close()

    fault_engine.ping_handler = silent
    with Client(fault_engine.host(transport), env={}, config=clean_config(), timeout=1.0) as client:
        error, elapsed = expect_error(EngineTimeout, lambda: _build(client, small_context))
    assert "sent nothing within the read timeout" in str(error)
    measure.error(f"never answers /_ping, timeout=1 ({transport})", error, elapsed)


def test_version_too_new_once(
    fault_engine: FaultEngine, transport: str, small_context: Path, measure: Measure
) -> None:
    """A pinned version the engine rejects: the engine's words, and the client stays usable."""
    answered: list[str] = []
    message = "client version 1.47 is too new. Maximum supported API version is 1.41"

    def too_new_once(exchange: Exchange) -> None:
        answered.append(exchange.request.path)
        if len(answered) == 1:
            exchange.respond_error(400, message)
            exchange.read_body()
        else:
            answer_build(exchange, IMAGE_ID)

    fault_engine.handler = too_new_once
    with Client(
        fault_engine.host(transport), env={}, config=clean_config(), api_version="1.47"
    ) as client:
        error, elapsed = expect_error(BadRequest, lambda: _build(client, small_context))
        assert error.message == message
        assert str(error) == f"400: {message} (POST /v1.47/build)"
        result = client.build(BuildOptions(path=str(small_context))).result()
    assert result.image_id == IMAGE_ID
    assert answered == ["/v1.47/build", "/v1.47/build"]
    measure.error(f"'client version is too new' ({transport})", error, elapsed)


def test_client_recovers_after_faults(
    fault_engine: FaultEngine, client: Client, transport: str, small_context: Path
) -> None:
    """After a cut stream and a reset, the same client builds again on fresh connections."""
    calls: list[int] = []

    def flaky(exchange: Exchange) -> None:
        calls.append(1)
        if len(calls) == 1:
            exchange.read_body()
            exchange.start_response(200)
            exchange.send_chunk(b'{"stream":')
            exchange.reset()
        elif len(calls) == 2:
            exchange.reset()
        else:
            answer_build(exchange, IMAGE_ID)

    fault_engine.handler = flaky
    expect_error(StreamError, lambda: _build(client, small_context))
    expect_error(StreamError, lambda: _build(client, small_context))
    result = client.build(BuildOptions(path=str(small_context))).result()
    assert result.image_id == IMAGE_ID


# -- the async client ---------------------------------------------------------------------------


def _async_build(host: str, context: Path, **extra: object) -> object:
    async def main() -> object:
        async with AsyncClient(host, env={}, config=clean_config(), timeout=5.0) as client:
            build = client.build(BuildOptions(path=str(context), **extra))  # type: ignore[arg-type]
            return await build.result()

    return asyncio.run(main())


def test_async_reset_during_upload(
    fault_engine: FaultEngine, transport: str, big_context: Path, measure: Measure
) -> None:
    def reset_after_some(exchange: Exchange) -> None:
        exchange.read_body(limit=256 * 1024)
        exchange.reset()

    fault_engine.handler = reset_after_some
    error, elapsed = expect_error(
        StreamError, lambda: _async_build(fault_engine.host(transport), big_context)
    )
    # Either the write or the read meets the reset first; either way the errno is named
    # (anyio's own exception has an empty message).
    assert str(error) in (
        f"the engine at {fault_engine.host(transport)} broke off or sent invalid HTTP: "
        "Server disconnected without sending a response.",
        f"the connection to the engine at {fault_engine.host(transport)} broke: "
        "[Errno 104] Connection reset by peer",
    )
    measure.error(f"async: reset during upload ({transport})", error, elapsed)


def test_async_reset_during_upload_by_a_live_engine(
    fault_engine: FaultEngine, transport: str, big_context: Path
) -> None:
    fault_engine.handler = _like_dockerd_after_a_reset()
    error, _ = expect_error(
        StreamError, lambda: _async_build(fault_engine.host(transport), big_context)
    )
    assert "Cannot locate specified Dockerfile" not in str(error)


def test_async_error_before_reading_body(
    fault_engine: FaultEngine, transport: str, big_context: Path, measure: Measure
) -> None:
    """asyncio drops what a TCP socket received once a write fails, so the client asks
    again with an empty body to learn the engine's 400; over unix nothing is lost."""

    def reject(exchange: Exchange) -> None:
        exchange.respond_error(400, "invalid tag")
        exchange.read_body(limit=256 * 1024)
        exchange.reset()

    fault_engine.handler = reject
    error, elapsed = expect_error(
        BadRequest, lambda: _async_build(fault_engine.host(transport), big_context)
    )
    assert error.message == "invalid tag"
    measure.error(f"async: 400 before the upload is read ({transport})", error, elapsed)


def test_async_cut_mid_json(
    fault_engine: FaultEngine, transport: str, small_context: Path, measure: Measure
) -> None:
    def cut(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.start_response(200)
        exchange.send_chunk(b'{"stream":"Step 1/2\\n"}\r\n{"str')
        exchange.close()

    fault_engine.handler = cut
    error, elapsed = expect_error(
        StreamError, lambda: _async_build(fault_engine.host(transport), small_context)
    )
    assert "broke off or sent invalid HTTP" in str(error)
    measure.error(f"async: connection closed mid-JSON ({transport})", error, elapsed)


def test_async_never_answers(
    fault_engine: FaultEngine, transport: str, small_context: Path, measure: Measure
) -> None:
    def silent(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.wait_closed(60)
        exchange.close()

    fault_engine.handler = silent
    error, elapsed = expect_error(
        EngineTimeout,
        lambda: _async_build(fault_engine.host(transport), small_context, timeout=1.5),
    )
    assert "sent nothing within the read timeout" in str(error)
    measure.error(f"async: never answers, timeout=1.5 ({transport})", error, elapsed)


def test_async_cancel_silent_build(
    fault_engine: FaultEngine, transport: str, small_context: Path, measure: Measure
) -> None:
    """With no read timeout, cancelling the task is the user's bound; it closes the socket."""
    closed = threading.Event()

    def silent(exchange: Exchange) -> None:
        exchange.read_body()
        if exchange.wait_closed(60):
            closed.set()
        exchange.close()

    fault_engine.handler = silent

    async def main() -> float:
        async with AsyncClient(
            fault_engine.host(transport), env={}, config=clean_config()
        ) as client:
            build = client.build(BuildOptions(path=str(small_context)))
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):  # not the builtin one before 3.11
                await asyncio.wait_for(build.result(), 1.0)
            return time.monotonic() - started

    elapsed = asyncio.run(main())
    assert closed.wait(10), "the engine never saw the connection close"
    assert elapsed < 10
    measure.record(
        f"async: wait_for(1 s) on a silent engine ({transport})",
        "TimeoutError from asyncio; the engine sees the connection closed",
        elapsed,
    )


def test_async_refused(
    fault_engine: FaultEngine, transport: str, small_context: Path, measure: Measure
) -> None:
    fault_engine.refuse()
    error, elapsed = expect_error(
        EngineUnreachable, lambda: _async_build(fault_engine.host(transport), small_context)
    )
    assert error.address == fault_engine.host(transport)
    # The same words as the sync client, not anyio's "All connection attempts failed".
    assert error.reason == "[Errno 111] Connection refused"
    assert "Is the docker daemon running?" in str(error)
    measure.error(f"async: connection refused ({transport})", error, elapsed)


# -- anything at all -----------------------------------------------------------------------------

_status_lines = st.sampled_from(
    [b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 500 X", b"HTTP/1.0 200 OK",
     b"HTTP/1.1 302 Found", b"HTTP/1.1 101 Switching", b"HTTP/2 200", b"HTTP/1.1 999 ?",
     b"garbage", b""]
)  # fmt: skip
_headers = st.lists(
    st.sampled_from(
        [b"Content-Type: application/json", b"Transfer-Encoding: chunked",
         b"Content-Length: 5", b"Content-Length: 100000", b"Content-Length: -1",
         b"Connection: close", b"Content-Encoding: gzip", b"X: \xff", b"Bad header"]
    ),
    max_size=4,
)  # fmt: skip
_bodies = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [b'{"stream":"a\\n"}\r\n', b'{"aux":{"ID":"sha256:' + b"a" * 64 + b'"}}\r\n',
             b'{"error":"e"}\r\n', b"5\r\nhello\r\n", b"0\r\n\r\n", b"zz\r\n", b"{"]
        ),
        max_size=6,
    ).map(b"".join),
)  # fmt: skip


def _scripted_answer(
    status: bytes, headers: list[bytes], body: bytes, *, reset: bool
) -> Callable[[Exchange], None]:
    """A handler that reads the upload, sends exactly these bytes, then resets or closes."""

    def answer(exchange: Exchange) -> None:
        exchange.read_body()
        exchange.send(b"\r\n".join([status, *headers]) + b"\r\n\r\n" + body)
        if reset:
            exchange.reset()
        else:
            exchange.close()

    return answer


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(status=_status_lines, headers=_headers, body=_bodies, reset=st.booleans())
def test_any_answer_gives_a_result_or_a_buildsdk_error(
    fault_engine: FaultEngine,
    small_context: Path,
    status: bytes,
    headers: list[bytes],
    body: bytes,
    reset: bool,
) -> None:
    """Whatever bytes come back, the user gets a result or a BuildSDKError, quickly."""

    fault_engine.handler = _scripted_answer(status, headers, body, reset=reset)
    with Client(fault_engine.unix_host, env={}, config=clean_config(), timeout=5.0) as client:
        started = time.monotonic()
        with contextlib.suppress(BuildSDKError):
            _build(client, small_context, timeout=5.0)
        assert time.monotonic() - started < 10


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(status=_status_lines, headers=_headers, body=_bodies, reset=st.booleans())
def test_any_answer_async(
    fault_engine: FaultEngine,
    small_context: Path,
    status: bytes,
    headers: list[bytes],
    body: bytes,
    reset: bool,
) -> None:
    """The same for `AsyncClient`."""

    fault_engine.handler = _scripted_answer(status, headers, body, reset=reset)
    started = time.monotonic()
    with contextlib.suppress(BuildSDKError):
        _async_build(fault_engine.unix_host, small_context, timeout=5.0)
    assert time.monotonic() - started < 10
