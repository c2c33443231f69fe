"""A real dockerd killed with SIGKILL while a Control API call waits on its `/grpc` connection.

The engine is a private one (see `test_engine_kill.PrivateEngine`), so the shared engines are
not disturbed. A `Control/Status` stream for a ref no build uses never ends on its own: the
call is certainly in flight when the engine dies. What is checked: the caller gets a
`StreamError` naming the call within seconds (no hang), and once the channel is closed no
thread or file descriptor it opened is left.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from buildsdk import transports
from buildsdk._protobuf import field_string
from buildsdk.buildkit.control import (
    CONTROL_LIST_WORKERS,
    CONTROL_STATUS,
    ControlChannel,
    open_control,
)
from buildsdk.endpoint import resolve_endpoint
from buildsdk.errors import StreamError
from tests.reliability.conftest import Measure
from tests.reliability.test_engine_kill import PrivateEngine

pytestmark = pytest.mark.slow

_STATUS = field_string(1, "buildsdk-killed-engine-ref")


@pytest.fixture
def bare_dockerd(short_tmp: Path) -> Iterator[PrivateEngine]:
    """A private dockerd with no image: the Control API needs none."""
    engine = PrivateEngine("dockerd", short_tmp)
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settled(start_fds: int, start_threads: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gc.collect()
        if _fds() <= start_fds and threading.active_count() <= start_threads:
            return
        time.sleep(0.1)
    assert _fds() <= start_fds, f"{_fds() - start_fds} file descriptors leaked"
    assert threading.active_count() <= start_threads, "channel threads left running"


def test_engine_killed_mid_call_sync(bare_dockerd: PrivateEngine, measure: Measure) -> None:
    gc.collect()
    start_fds, start_threads = _fds(), threading.active_count()
    endpoint = resolve_endpoint(bare_dockerd.host, env={})
    with ControlChannel(endpoint, env={}) as channel:
        assert channel.unary(CONTROL_LIST_WORKERS, b"")
        killed: list[float] = []

        def kill() -> None:
            killed.append(time.monotonic())
            bare_dockerd.kill()

        timer = threading.Timer(0.5, kill)
        timer.start()
        with (
            pytest.raises(StreamError) as info,
            channel.server_stream(CONTROL_STATUS, _STATUS) as stream,
        ):
            list(stream)
        elapsed = time.monotonic() - killed[0]
        timer.join()
        assert elapsed < 5
        assert "Control/Status" in str(info.value)
        measure.error("dockerd SIGKILLed mid Control API call (sync)", info.value, elapsed)
        # Later calls fail at once with the same kind of error.
        with pytest.raises(StreamError):
            channel.unary(CONTROL_LIST_WORKERS, b"")
    _settled(start_fds, start_threads)


def test_engine_killed_mid_call_async(bare_dockerd: PrivateEngine, measure: Measure) -> None:
    gc.collect()
    start_fds, start_threads = _fds(), threading.active_count()
    endpoint = resolve_endpoint(bare_dockerd.host, env={})

    killed: list[float] = []

    def kill_soon() -> None:
        time.sleep(0.5)
        killed.append(time.monotonic())
        bare_dockerd.kill()

    async def call_and_kill() -> None:
        transport, base_url = transports.create_async_transport(endpoint, env={})
        async with (
            httpx.AsyncClient(transport=transport, base_url=base_url) as http,
            open_control(http, endpoint) as channel,
        ):
            assert await channel.unary(CONTROL_LIST_WORKERS, b"")
            killer = asyncio.get_running_loop().run_in_executor(None, kill_soon)
            stream = channel.server_stream(CONTROL_STATUS, _STATUS)
            with pytest.raises(StreamError) as info:
                await stream.__anext__()
            elapsed = time.monotonic() - killed[0]
            await killer
            assert elapsed < 5
            assert "Control/Status" in str(info.value)
            measure.error("dockerd SIGKILLed mid Control API call (async)", info.value, elapsed)
            with pytest.raises(StreamError):
                await channel.unary(CONTROL_LIST_WORKERS, b"")

    asyncio.run(call_and_kill())
    _settled(start_fds, start_threads)
