"""Progress renderers: turn a build's events into what a person reads in a terminal or a log.

Applications print docker-like progress with one call, sync or async:

```python
from buildsdk.progress import PlainProgress, render

with docker.build(options) as build:
    render(build, PlainProgress(sys.stderr))  # feeds every event, then closes the renderer
result = build.result()
```

(`await arender(build, TtyProgress(sys.stderr))` inside `async with` for `AsyncClient`).

Why rendering is separate from the clients: it is pure (events in, text out, a clock passed
in), so every renderer is tested with recorded streams and a fake clock, and the command
line only chooses one and feeds it. Four renderers exist:

* `PlainProgress` prints text that stays readable in a CI log. Classic-builder text is the
  engine's own; pull progress is printed as `id: status` once per change of status. A
  BuildKit build is printed as `docker buildx build --progress plain` prints it (buildkit's
  progressui text printer, as vendored in buildx 0.13): updates are gathered and printed at
  most every `interval` seconds (and when `tick` finds the engine silent); finished steps
  are printed first, in the order they finished; a step gets its `#N` when it is first
  printed, so steps that never ran get none; a failed build ends with the failed step's
  last ten output lines between `------` rules and `ERROR: failed to solve: <message>`.
* `TtyProgress` keeps a live region at the bottom of a terminal (BuildKit steps with timers,
  in the order they started, their latest log lines and byte counters; classic pull
  progress bars per layer) and redraws it in place with ANSI cursor movement, at most once
  per `interval` seconds. Finished text scrolls above it; a failed BuildKit build ends as
  the plain one does. A BuildKit build's region is laid out as `docker buildx build
  --progress tty` lays it out (buildkit's progressui console display, as vendored in buildx
  0.13): its final screen equals buildx's but for times, exported digests and buildx's
  builder name, which buildsdk does not have.
* `RawJsonProgress` prints each event as one line of its JSON form.
* `QuietProgress` prints nothing, but keeps the engine's text to show if the build fails.

`render` and `arender` drive any of them: they feed each event, call `tick` while the engine
is silent (so timers move and gathered updates come out), and `close` at the end, also when
the build raises.

Limits, admitted: BuildKit progress groups are shown as ordinary steps (buildx folds a
group's steps into one line); buildx's `#0 building with "default" instance using docker
driver` line names a buildx builder, which buildsdk does not have, and is not printed; the
Dockerfile excerpt Docker 23+ prints above a failure is printed from the `ErrorEvent`'s
`source`, which only a Control API build fills (the `POST /build` stream does not carry it).
"""

from __future__ import annotations

import codecs
import contextlib
import math
import os
import re
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TextIO

from buildsdk.events import (
    BuildEvent,
    ErrorEvent,
    LogEvent,
    StatusEvent,
    VertexEvent,
    VertexLogEvent,
    VertexStatusEvent,
    VertexWarningEvent,
)

__all__ = [
    "PlainProgress",
    "Progress",
    "QuietProgress",
    "RawJsonProgress",
    "TtyProgress",
    "arender",
    "format_bytes",
    "human_size",
    "render",
]


class Progress(Protocol):
    """What a renderer offers: events one by one, `tick` while nothing arrives, one `close`."""

    def feed(self, event: BuildEvent) -> None:
        """Render one event (or remember it for the next print)."""

    def tick(self) -> None:
        """Called periodically while the engine is silent: print what is due."""

    def close(self) -> None:
        """Write whatever is still pending; the build is over."""


def render(events: Iterable[BuildEvent], progress: Progress, *, period: float = 0.15) -> None:
    """Feed every event of `events` (a `Build`) to `progress`, ticking it every `period`
    seconds from a helper thread while the engine is silent, and close it at the end."""
    stop = threading.Event()

    def ticking() -> None:
        while not stop.wait(period):
            progress.tick()

    ticker = threading.Thread(target=ticking, name="buildsdk-progress", daemon=True)
    ticker.start()
    try:
        for event in events:
            progress.feed(event)
    finally:
        stop.set()
        ticker.join()
        progress.close()


async def arender(
    events: AsyncIterable[BuildEvent], progress: Progress, *, period: float = 0.15
) -> None:
    """Feed every event of `events` (an `AsyncBuild`) to `progress`, ticking it every
    `period` seconds from a task while the engine is silent, and close it at the end."""
    import asyncio  # only programs that render asynchronously pay for it

    async def ticking() -> None:
        while True:
            await asyncio.sleep(period)
            progress.tick()

    ticker = asyncio.ensure_future(ticking())
    try:
        async for event in events:
            progress.feed(event)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        progress.close()


_SI_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def _si_scaled(n: float, units: tuple[str, ...]) -> tuple[float, str]:
    # Divide by 1000 until the value is below 1000 or the largest unit is reached.
    value = float(n)
    i = 0
    while value >= 1000.0 and i < len(units) - 1:
        value /= 1000.0
        i += 1
    return value, units[i]


def format_bytes(n: int) -> str:
    """Format a byte count as BuildKit's printer does: `82B`, `9.41kB`, `27.51MB` (SI units)."""
    value, unit = _si_scaled(n, _SI_UNITS[:-1])
    return f"{n}B" if unit == "B" else f"{value:.2f}{unit}"


def human_size(n: float) -> str:
    """Format a size with four significant digits as the Docker CLI does: `12.35MB`, `512B`."""
    value, unit = _si_scaled(n, _SI_UNITS)
    return f"{value:.4g}{unit}"


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return 0.0
    return (end - start).total_seconds()


_LOGS_BUFFER = 10
"""How many of a failed step's last output lines the closing summary shows (as buildx)."""
_CANCELED = "context canceled"


def _merge(spans: dict[datetime, datetime | None]) -> list[tuple[datetime, datetime | None]]:
    """Merge overlapping runs of a step, as buildx does, except that a run never reported
    finished ends with the later run that follows it.

    buildx lets an unfinished run swallow every later one, so the step never finishes. On
    dockerd 20.10's `POST /build` stream about one cached `FROM` in fifteen starts, is
    never reported finished, and starts again (cached) and finishes; buildx, reading the
    Control API, got that report in every build we recorded. Without the exception the step
    would stay open and be cut off (`#4 ...`) instead of closing (`#4 CACHED`).
    """
    ordered = sorted(spans.items())
    if not ordered:
        return []
    merged: list[tuple[datetime, datetime | None]] = []
    cur_start, cur_stop = ordered[0]
    for start, stop in ordered[1:]:
        if cur_stop is None:
            cur_stop = stop
            continue
        if cur_stop < start:
            merged.append((cur_start, cur_stop))
            cur_start, cur_stop = start, stop
            continue
        if stop is None:
            cur_stop = None
            break
        if stop > cur_stop:
            cur_stop = stop
    merged.append((cur_start, cur_stop))
    return merged


@dataclass(eq=False)
class _Vertex:
    """What the renderers know about one BuildKit step, gathered from its events."""

    digest: str
    name: str = ""
    cached: bool = False
    error: str = ""
    prev: VertexEvent | None = None
    index: int = 0
    spans: dict[datetime, datetime | None] = field(default_factory=dict)
    merged: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    by_id: dict[str, VertexStatusEvent] = field(default_factory=dict)
    status_updates: set[str] = field(default_factory=set)
    logs: list[str] = field(default_factory=list)
    logs_partial: bool = False
    logs_offset: int = 0
    ring: list[str | None] = field(default_factory=lambda: [None] * _LOGS_BUFFER)
    ring_pos: int = 0
    tail: list[str] = field(default_factory=list)
    tail_partial: bool = False
    warnings: list[str] = field(default_factory=list)
    warnings_printed: int = 0
    count: int = 0
    last_block: float | None = None
    # Output arrives in chunks that may split a UTF-8 character.
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )

    @property
    def is_started(self) -> bool:
        return bool(self.merged)

    @property
    def is_completed(self) -> bool:
        return bool(self.merged) and self.merged[-1][1] is not None

    @property
    def started(self) -> datetime | None:
        return self.merged[-1][0] if self.merged else None

    @property
    def stopped(self) -> datetime | None:
        return self.merged[-1][1] if self.merged else None

    def duration(self) -> float:
        """Seconds spent running, counting overlapping runs once (as BuildKit merges them)."""
        return sum(_seconds(start, stop) for start, stop in self.merged)

    def bump(self, now: float) -> None:
        # The count of updates since the step was last printed, and when the first of them
        # came, tell the printer which of several running steps is the busiest.
        if self.count == 0:
            self.last_block = now
        self.count += 1

    def remember(self, line: str) -> None:
        # buildx's ring of printed lines: a partial line keeps overwriting its slot.
        self.ring[self.ring_pos] = line
        if not self.logs_partial:
            self.ring_pos = (self.ring_pos + 1) % _LOGS_BUFFER

    def last_lines(self) -> list[str]:
        """The ring's lines, oldest first."""
        ordered = self.ring[self.ring_pos :] + self.ring[: self.ring_pos]
        return [line for line in ordered if line is not None]


class _Trace:
    """The BuildKit steps of one build, updated as buildkit's progressui trace is."""

    def __init__(self, clock: Callable[[], float], *, pending_logs: bool = True) -> None:
        self.clock = clock
        # The plain printer takes new log lines from `logs`; the live view only needs `tail`.
        self.pending_logs = pending_logs
        self.by_digest: dict[str, _Vertex] = {}
        self.started_order: list[_Vertex] = []
        self.updates: dict[str, None] = {}

    def on_vertex(self, event: VertexEvent) -> None:
        vertex = self.by_digest.get(event.digest)
        was_started = vertex is not None and vertex.is_started
        if vertex is None:
            vertex = self.by_digest[event.digest] = _Vertex(event.digest)
        if event.started is not None:
            old = vertex.prev
            changed = (
                old is None
                or event.name != old.name
                or event.started != old.started
                or event.completed is not None
                or event.cached != old.cached
                or event.error != old.error
            )
            if changed:
                vertex.bump(self.clock())
                self.updates[event.digest] = None
            vertex.prev = event
            if not was_started:
                self.started_order.append(vertex)
        # A repeated announcement of a step that already runs must not reset it.
        if not (was_started and event.started is None):
            vertex.name = event.name
            vertex.cached = event.cached
            vertex.error = event.error
        if event.started is not None:
            vertex.spans[event.started] = event.completed
            vertex.merged = _merge(vertex.spans)

    def on_status(self, event: VertexStatusEvent) -> None:
        vertex = self.by_digest.get(event.vertex)
        if vertex is None:
            return
        prev = vertex.by_id.get(event.id)
        if event.started is not None and (prev is None or prev.started is None):
            vertex.statuses.append(event.id)
        vertex.by_id[event.id] = event
        vertex.status_updates.add(event.id)
        self.updates[vertex.digest] = None
        vertex.bump(self.clock())

    def on_warning(self, event: VertexWarningEvent) -> None:
        vertex = self.by_digest.get(event.vertex)
        if vertex is None:
            return
        vertex.warnings.append(event.short.decode("utf-8", "replace"))
        vertex.bump(self.clock())

    def on_log(self, event: VertexLogEvent) -> None:
        vertex = self.by_digest.get(event.vertex)
        if vertex is None:
            return
        text = vertex.decoder.decode(event.data)
        pieces = text.split("\n")
        # An empty write counts as an unfinished line, as in BuildKit's splitter.
        complete = bool(event.data) and event.data.endswith(b"\n")
        if complete:
            pieces.pop()
        start = vertex.started
        offset = _seconds(start, event.timestamp) if start is not None else 0.0
        # More decimals for early lines: 0.123, 12.34, 123.4.
        precision = 3 if offset < 10 else 2 if offset < 100 else 1
        for i, piece in enumerate(pieces if event.data else []):
            if not self.pending_logs:
                pass
            elif i == 0 and vertex.logs_partial and vertex.logs:
                vertex.logs[-1] += piece
            else:
                vertex.logs.append(f"{offset:.{precision}f} {piece}")
            if i == 0 and vertex.tail_partial and vertex.tail:
                vertex.tail[-1] += piece
            else:
                vertex.tail.append(f"{offset:.{precision}f} {piece}")
        del vertex.tail[:-_LOGS_BUFFER]
        vertex.logs_partial = vertex.tail_partial = not complete
        self.updates[vertex.digest] = None
        vertex.bump(self.clock())

    def failed(self) -> list[_Vertex]:
        """Steps that failed (not those canceled because another failed), in start order."""
        return [v for v in self.started_order if v.error and not v.error.endswith(_CANCELED)]


def _status_line(status: VertexStatusEvent) -> str:
    counts = ""
    if status.total:
        counts = f" {format_bytes(status.current)} / {format_bytes(status.total)}"
    elif status.current:
        counts = f" {format_bytes(status.current)}"
    end = status.completed or status.timestamp
    timing = ""
    if status.started is not None and end is not None:
        elapsed = _seconds(status.started, end)
        if elapsed > 0.01:
            timing = f" {elapsed:.1f}s"
    if status.completed is not None:
        timing += " done"
    return f"{status.id}{counts}{timing}"


def _failure_summary(
    failed: list[_Vertex], error: str | None, *, from_tail: bool, excerpt: str = ""
) -> str:
    """What buildx prints after a failed build: each failed step's last output lines
    between rules, the Dockerfile excerpt of the failure when known, then the build's error."""
    parts: list[str] = []
    for vertex in failed:
        parts.append(f"------\n > {vertex.name}:\n")
        lines = vertex.tail if from_tail else vertex.last_lines()
        parts.extend(line + "\n" for line in lines)
        parts.append("------\n")
    parts.append(excerpt)
    if error is not None:
        parts.append(f"ERROR: failed to solve: {error}\n")
    return "".join(parts)


_INTERVAL = 0.1
"""buildx prints gathered BuildKit updates at most this often (seconds)."""
_SILENCE = 0.15
"""After this long without an event, buildx prints what it has gathered (seconds)."""
_ANTI_FLICKER = 5.0
_MAX_DELAY = 10.0
_MIN_TIME_DELTA = 5.0
_MIN_PROGRESS_DELTA = 0.05


class PlainProgress:
    """Line-oriented output for logs and pipes: classic text as the engine sends it, BuildKit
    steps as `docker buildx build --progress plain` prints them.

    `interval` is how often gathered BuildKit updates are printed (buildx: 0.1 s; `None`
    prints everything at `close`, in one pass, which gives a log that does not depend on
    timing); `clock` is the time source, replaced by a fake one in tests. A program that
    feeds events itself should call `tick` now and then, or let `render` do both.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        interval: float | None = _INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._interval = interval
        self._clock = clock
        self._trace = _Trace(clock)
        self._current = ""
        self._next_index = 0
        self._printed_any = False
        self._last_counts: dict[str, tuple[int, datetime | None]] = {}
        self._last_print: float | None = None
        self._last_feed = clock()
        self._buildkit = False
        self._error: str | None = None
        self._excerpt = ""
        self._closed = False
        self._last_status: dict[str, str] = {}
        # Whether the engine's classic text left the cursor mid-line.
        self._text_open = False
        # `tick` may come from a timer thread while `feed` runs in the reading thread.
        self._lock = threading.Lock()

    def vertex_name(self, digest: str) -> str | None:
        """The name of the step `digest` seen so far (`[2/2] RUN make`), if any."""
        with self._lock:
            vertex = self._trace.by_digest.get(digest)
        return vertex.name if vertex is not None and vertex.name else None

    @property
    def reported_error(self) -> bool:
        """Whether `close` printed the build's `ERROR: failed to solve: …` line."""
        return self._closed and self._buildkit and self._error is not None

    def feed(self, event: BuildEvent) -> None:
        """Print what `event` adds to the build's story (BuildKit updates when due)."""
        with self._lock:
            self._feed(event)
            self._out.flush()

    def _feed(self, event: BuildEvent) -> None:
        if isinstance(event, LogEvent):
            # Under BuildKit the engine's few text messages ("Successfully tagged") repeat
            # what the steps said; docker's BuildKit output leaves them out too.
            if not self._buildkit:
                self._write(event.text)
                self._text_open = bool(event.text) and not event.text.endswith("\n")
            return
        if isinstance(event, StatusEvent):
            self._on_status(event)
            return
        if isinstance(event, ErrorEvent):
            if self._error is None:
                self._error = event.message
                self._excerpt = event.source
            return
        if isinstance(event, VertexEvent):
            self._trace.on_vertex(event)
        elif isinstance(event, VertexStatusEvent):
            self._trace.on_status(event)
        elif isinstance(event, VertexLogEvent):
            self._trace.on_log(event)
        elif isinstance(event, VertexWarningEvent):
            self._trace.on_warning(event)
        else:
            return
        self._buildkit = True
        now = self._clock()
        self._last_feed = now
        if self._interval is None:
            return
        # A token bucket of one: an update prints when the last print is `interval` old.
        if self._last_print is None or now - self._last_print >= self._interval:
            self._last_print = now
            self._print()

    def tick(self) -> None:
        """Print gathered BuildKit updates once the engine has been silent for a while."""
        with self._lock:
            if self._closed or self._interval is None or not self._buildkit:
                return
            if self._clock() - self._last_feed >= _SILENCE:
                self._print()
                self._out.flush()

    def close(self) -> None:
        """Print what is pending; after a failed BuildKit build, the failed steps' last
        lines and `ERROR: failed to solve: <message>`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._buildkit:
                self._print()
                running = self._trace.by_digest.get(self._current)
                if running is not None and running.logs_partial:
                    # A step cut off mid-line: end the line, so what follows starts on its own.
                    self._write("\n")
                if self._text_open:
                    self._write("\n")
                    self._text_open = False
                summary = _failure_summary(
                    self._trace.failed(), self._error, from_tail=False, excerpt=self._excerpt
                )
                self._write(summary)
            elif self._text_open:
                self._write("\n")
                self._text_open = False
            self._out.flush()

    def _write(self, text: str) -> None:
        if text:
            self._out.write(text)

    def _on_status(self, event: StatusEvent) -> None:
        if self._text_open:
            self._write("\n")
            self._text_open = False
        if event.id:
            # The engine repeats a layer's status with every byte counter update; the
            # counters are noise in a log, the change of status is the story.
            if self._last_status.get(event.id) == event.status:
                return
            self._last_status[event.id] = event.status
            self._write(f"{event.id}: {event.status}\n")
        else:
            self._write(f"{event.status}\n")

    # -- BuildKit: the order rules of buildkit's progressui text printer ---------------------

    def _print(self) -> None:
        trace = self._trace
        completed: list[str] = []
        rest: list[str] = []
        for digest in trace.updates:
            vertex = trace.by_digest[digest]
            (completed if vertex.is_completed else rest).append(digest)
        current = self._current
        # Steps that finished come first, the one on screen before the others.
        if current in completed:
            self._print_vertex(current)
        completed.sort(key=lambda d: trace.by_digest[d].stopped or datetime.min)
        for digest in completed:
            if digest != current:
                self._print_vertex(digest)
        if not rest:
            running = trace.by_digest.get(current)
            if running is not None and running.is_started and not running.is_completed:
                return
            # Show a step that still runs, if any, so its later output has a header.
            for digest, vertex in trace.by_digest.items():
                if vertex.is_started and not vertex.is_completed:
                    self._print_vertex(digest)
                    return
            return
        if current in rest:
            self._print_vertex(current)
        # Of the steps with news, show the busiest; switch away from the one on screen only
        # when another has waited too long or it has had its fair share of the screen.
        now = self._clock()
        candidates = list(rest)
        if current and current not in candidates:
            candidates.append(current)
        speeds: dict[str, float] = {}
        waits: dict[str, float] = {}
        busiest = ""
        for digest in candidates:
            candidate = trace.by_digest.get(digest)
            if candidate is None or candidate.last_block is None:
                continue
            waited = now - candidate.last_block
            speed = candidate.count / waited if waited > 0 else math.inf
            speeds[digest], waits[digest] = speed, waited
            over = waited > _MAX_DELAY and digest != current
            if over or not busiest or speeds[busiest] < speed:
                busiest = digest
        if not busiest:
            return
        if current in completed or not current:
            self._print_vertex(busiest)
            return
        for digest in rest:
            if digest in waits and waits[digest] > _MAX_DELAY and digest != current:
                self._print_vertex(digest)
                return
        total = sum(speeds.values())
        share = speeds.get(current, 0.0) / total if total and not math.isinf(total) else 0.0
        if share < 1.0 and _ANTI_FLICKER / (1.0 - share) < waits.get(current, 0.0):
            self._print_vertex(busiest)

    def _print_vertex(self, digest: str) -> None:
        trace = self._trace
        vertex = trace.by_digest.get(digest)
        if vertex is None:
            return
        w = self._write
        if vertex.index == 0:
            self._next_index += 1
            vertex.index = self._next_index
        if digest != self._current:
            old = trace.by_digest.get(self._current)
            if old is not None:
                if old.logs_partial:
                    w("\n")
                old.logs_offset = 0
                old.count = 0
                w(f"#{old.index} ...\n")
            if self._printed_any:
                w("\n")
            self._printed_any = True
            w(f"#{vertex.index} {vertex.name}\n")
        open_status = self._print_statuses(vertex)
        for short in vertex.warnings[vertex.warnings_printed :]:
            w(f"#{vertex.index} WARN: {short}\n")
        vertex.warnings_printed = len(vertex.warnings)
        self._print_logs(vertex)
        self._current = digest
        if vertex.is_completed and not open_status:
            self._current = ""
            vertex.count = 0
            if vertex.logs_partial:
                w("\n")
            w(f"#{vertex.index} {self._closing(vertex)}\n")
        trace.updates.pop(digest, None)

    def _print_statuses(self, vertex: _Vertex) -> bool:
        open_status = False
        for status_id in vertex.statuses:
            if status_id not in vertex.status_updates:
                continue
            status = vertex.by_id[status_id]
            last = self._last_counts.get(status_id)
            if last is not None and status.completed is None:
                # Byte counters print again after 5% more of the total or five seconds.
                current, stamp = last
                grown = (status.current - current) / status.total if status.total else 0.0
                if grown < _MIN_PROGRESS_DELTA and _seconds(stamp, status.timestamp) < (
                    _MIN_TIME_DELTA
                ):
                    continue
            self._last_counts[status_id] = (status.current, status.timestamp)
            if status.completed is None:
                open_status = True
            self._write(f"#{vertex.index} {_status_line(status)}\n")
        vertex.status_updates.clear()
        return open_status

    def _print_logs(self, vertex: _Vertex) -> None:
        last = len(vertex.logs) - 1
        # `logs` holds only what is not printed yet, except that a partial last line stays
        # (its printed part is `logs_offset` characters long).
        for i, line in enumerate(vertex.logs):
            if i == 0 and vertex.logs_offset:
                line = line[vertex.logs_offset :]
                self._write(line)
            else:
                self._write(f"#{vertex.index} {line}")
            if i != last or not vertex.logs_partial:
                self._write("\n")
            vertex.remember(line)
        if vertex.logs:
            if vertex.logs_partial:
                del vertex.logs[:-1]
                vertex.logs_offset = len(vertex.logs[0])
            else:
                vertex.logs.clear()
                vertex.logs_offset = 0

    @staticmethod
    def _closing(vertex: _Vertex) -> str:
        if vertex.error:
            if vertex.error.endswith(_CANCELED):
                return "CANCELED"
            return f"ERROR: {vertex.error}"
        if vertex.cached:
            return "CACHED"
        if vertex.merged:
            return f"DONE {vertex.duration():.1f}s"
        return "DONE"


class RawJsonProgress:
    """One JSON line per event: the event models' own JSON, for machines."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def feed(self, event: BuildEvent) -> None:
        """Print `event` as one line of JSON."""
        self._out.write(event.model_dump_json() + "\n")
        self._out.flush()

    def tick(self) -> None:
        """Nothing waits for time."""

    def close(self) -> None:
        """Nothing is buffered; flush the stream."""
        self._out.flush()


class QuietProgress:
    """Prints nothing while the build runs, but keeps the engine's text for a failure.

    As `docker build -q` does, the command shows that text only when the build fails, so
    the reason is not lost; the text kept is capped at `limit` characters (the latest).
    """

    def __init__(self, limit: int = 1 << 20) -> None:
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0

    def feed(self, event: BuildEvent) -> None:
        """Keep the text of a log or status event."""
        if isinstance(event, LogEvent):
            text = event.text
        elif isinstance(event, StatusEvent):
            text = f"{event.id}: {event.status}\n" if event.id else event.status + "\n"
        elif isinstance(event, VertexLogEvent):
            text = event.data.decode("utf-8", "replace")
        else:
            return
        self._parts.append(text)
        self._size += len(text)
        while self._size > self._limit and len(self._parts) > 1:
            self._size -= len(self._parts.pop(0))

    @property
    def text(self) -> str:
        """The text kept so far (the latest `limit` characters or so)."""
        return "".join(self._parts)

    def tick(self) -> None:
        """Nothing waits for time."""

    def close(self) -> None:
        """Nothing to write."""


_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"
_CLEAR_DOWN = "\x1b[J"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"
_RESET = "\x1b[0m"
_BLUE = "\x1b[34m"
_YELLOW = "\x1b[33m"
_FIRST_DRAW = "\x1b[1A\x1b[1B"
"""buildx moves up and down one line before its first frame: a no-op below a prompt, a blank
first line at the top of the screen. Written too, so both leave the same screen."""
_MIN_SECONDS = 0.05
"""buildx shows shorter times as 0.0s."""
_LOG_TAIL = 6
"""How many of a running step's latest log lines the live view shows."""


_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _cursor_up(n: int) -> str:
    return f"\x1b[{n}A"


def _bar(current: int, total: int, width: int = 30) -> str:
    if total <= 0:
        return ""
    filled = min(width, current * width // total)
    arrow = ">" if filled < width else ""
    return "[" + "=" * filled + arrow + " " * (width - filled - len(arrow)) + "]"


class TtyProgress:
    """A live view for terminals, redrawn in place at most once per `interval` seconds.

    BuildKit builds show a `[+] Building 3.2s (4/7)` header and one line per step with its
    time, in the order the steps started (as buildx); running steps show their byte
    counters and latest log lines, and a failed build ends with the failed step's last
    lines and `ERROR: failed to solve: …`. Classic builds print the engine's text above a
    region of per-layer progress bars. `width` and `height` bound
    the region (lines are cut at `width`, the oldest steps scroll off above `height`).
    `color` None colours BuildKit steps as buildx does unless `NO_COLOR` is set.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        width: int = 80,
        height: int = 24,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        color: bool | None = None,
    ) -> None:
        self._out = out
        # As buildx: colours unless NO_COLOR is set (https://no-color.org/).
        self._color = not os.environ.get("NO_COLOR") if color is None else color
        self._width = max(20, width)
        self._height = max(4, height)
        self._interval = interval
        self._clock = clock
        self._start = clock()
        self._trace = _Trace(clock, pending_logs=False)
        self._error: str | None = None
        self._excerpt = ""
        self._pending_text = ""
        self._layers: dict[str, StatusEvent] = {}
        self._drawn_lines = 0
        self._last_draw: float | None = None
        self._buildkit = False
        self._closed = False
        self._seen_running: dict[str, float] = {}
        # `tick` may come from a timer thread while `feed` runs in the reading thread.
        self._lock = threading.Lock()
        self._out.write(_HIDE_CURSOR)

    def feed(self, event: BuildEvent) -> None:
        """Record `event` and redraw if the last redraw is older than `interval`."""
        with self._lock:
            if self._record(event):
                self._maybe_redraw()

    def tick(self) -> None:
        """Redraw if `interval` has passed, so timers move while the engine is silent."""
        with self._lock:
            if not self._closed and self._last_draw is not None:
                self._maybe_redraw()

    def _maybe_redraw(self) -> None:
        now = self._clock()
        if self._last_draw is None or now - self._last_draw >= self._interval:
            self._redraw(now, final=False)

    def _record(self, event: BuildEvent) -> bool:
        if isinstance(event, LogEvent):
            if self._buildkit:
                # As in the plain output: docker's BuildKit view omits the engine's text.
                return False
            if self._layers:
                self._commit_layers()
            self._pending_text += event.text
        elif isinstance(event, StatusEvent):
            if event.id:
                self._layers[event.id] = event
            else:
                self._commit_layers()
                self._pending_text += event.status + "\n"
        elif isinstance(event, ErrorEvent):
            if self._error is None:
                self._error = event.message
                self._excerpt = event.source
            return False
        elif isinstance(event, VertexEvent):
            self._buildkit = True
            self._trace.on_vertex(event)
        elif isinstance(event, VertexStatusEvent):
            self._buildkit = True
            self._trace.on_status(event)
        elif isinstance(event, VertexLogEvent):
            self._buildkit = True
            self._trace.on_log(event)
        elif isinstance(event, VertexWarningEvent):
            self._buildkit = True
            self._trace.on_warning(event)
        else:
            return False
        return True

    @property
    def reported_error(self) -> bool:
        """Whether `close` printed the build's `ERROR: failed to solve: …` line."""
        return self._closed and self._buildkit and self._error is not None

    def close(self) -> None:
        """Draw the final state and leave it on screen, show the cursor again; after a failed
        BuildKit build, print the failed steps' last lines and the error below it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._commit_layers()
            self._redraw(self._clock(), final=True)
            self._out.write(_SHOW_CURSOR)
            if self._buildkit:
                summary = _failure_summary(
                    self._trace.failed(), self._error, from_tail=True, excerpt=self._excerpt
                )
                self._out.write(summary)
            self._out.flush()

    def _commit_layers(self) -> None:
        # Finished pull lines leave the live region and become ordinary text, so the
        # region never grows with the number of layers ever seen.
        for line in self._layer_lines():
            self._pending_text += line + "\n"
        self._layers.clear()

    def _layer_lines(self) -> list[str]:
        lines = []
        for layer_id, status in self._layers.items():
            text = f"{layer_id}: {status.status}"
            detail = status.progress_detail
            if detail is not None and detail.total:
                current = detail.current or 0
                text += f" {_bar(current, detail.total)} "
                text += f"{human_size(current)}/{human_size(detail.total)}"
            elif status.progress:
                text += f" {status.progress}"
            lines.append(text)
        return lines

    def _redraw(self, now: float, *, final: bool) -> None:
        lines = self._buildkit_lines(now, final=final) if self._buildkit else []
        lines += self._layer_lines()
        if not lines and not self._drawn_lines and "\n" not in self._pending_text and not final:
            return
        parts: list[str] = []
        if self._drawn_lines:
            parts.append("\r" + _cursor_up(self._drawn_lines))
        elif self._last_draw is None and self._buildkit:
            parts.append(_FIRST_DRAW)
        parts.append("\r" + _CLEAR_DOWN)
        # Only whole lines scroll out above the region; a partial one waits for its end.
        cut = len(self._pending_text) if final else self._pending_text.rfind("\n") + 1
        text, self._pending_text = self._pending_text[:cut], self._pending_text[cut:]
        if final and text and not text.endswith("\n"):
            text += "\n"
        parts.append(text)
        if not final and len(lines) > self._height - 1:
            lines = lines[:1] + lines[-(self._height - 2) :]
        for line in lines:
            parts.append(self._fit(line) + "\n")
        self._drawn_lines = len(lines)
        self._last_draw = now
        self._out.write("".join(parts))
        self._out.flush()

    def _fit(self, line: str) -> str:
        visible = _ANSI_RE.sub("", line)
        if len(visible) <= self._width:
            return line
        return visible[: self._width - 1] + "…"

    def _buildkit_lines(self, now: float, *, final: bool) -> list[str]:
        # Steps are listed in the order they started, as buildx lists them.
        shown = self._trace.started_order
        done = sum(1 for v in self._trace.by_digest.values() if v.is_completed)
        total = len(self._trace.by_digest)
        header = f"[+] Building {now - self._start:.1f}s ({done}/{total})"
        if final and done and done == total:
            header += " FINISHED"
        lines = [header]
        for vertex in shown:
            lines.extend(self._vertex_lines(vertex, now))
        return lines

    def _job_line(self, name: str, seconds: float, status: str = "") -> str | None:
        """One step or status line as buildx's tty display lays it out: the name cut (not
        ellipsised) to leave room for the status and the timer, which ends one column short
        of the terminal's width; None when the terminal is too narrow to show it."""
        timer = f" {seconds if seconds >= _MIN_SECONDS else 0.0:.1f}s"
        # buildx counts the newline ending the timer in its arithmetic.
        slot = len(timer) + 1
        room = self._width - len(" => ") - slot - 1
        show_status = bool(status) and room + len(status) > 20
        if show_status:
            room -= len(status) + 1
        if room < 12:
            return None
        text = " => " + name[:room] + (" " + status if show_status else "")
        return text.ljust(self._width - slot - 1) + " " + timer

    def _paint(self, line: str, colour: str) -> str:
        return colour + line + _RESET if self._color else line

    def _vertex_lines(self, vertex: _Vertex, now: float) -> list[str]:
        name = vertex.name
        canceled = vertex.error.endswith(_CANCELED)
        if vertex.error:
            name = ("CANCELED " if canceled else "ERROR ") + name
        if vertex.cached:
            name = "CACHED " + name
        if vertex.is_completed:
            seconds = vertex.duration()
        else:
            # The engine's clock may differ from ours; a running step's timer counts from
            # when we first saw it running.
            seconds = now - self._seen_running.setdefault(vertex.digest, now)
        lines: list[str] = []
        line = self._job_line(name, max(seconds, 0.0))
        if line is not None:
            if vertex.is_completed:
                colour = _YELLOW if canceled else _RED if vertex.error else _BLUE
                line = self._paint(line, colour)
            lines.append(line)
        for status_id in vertex.statuses:
            status = vertex.by_id[status_id]
            counts = ""
            if status.total:
                counts = f"{format_bytes(status.current)} / {format_bytes(status.total)}"
            elif status.current:
                counts = format_bytes(status.current)
            end = status.completed or status.timestamp
            elapsed = _seconds(status.started, end) if status.started is not None else 0.0
            line = self._job_line("=> " + status_id, max(elapsed, 0.0), counts)
            if line is not None:
                lines.append(self._paint(line, _BLUE) if status.completed else line)
        latest = vertex.merged[-1] if vertex.merged else None
        warned = _seconds(*latest) if latest is not None and latest[1] is not None else seconds
        for warning in vertex.warnings:
            # buildx shows a step's warnings below it, timed as its latest run, in yellow.
            line = self._job_line("WARN: " + warning, max(warned, 0.0))
            if line is not None:
                lines.append(self._paint(line, _YELLOW))
        if not vertex.is_completed:
            for log in vertex.tail[-_LOG_TAIL:]:
                # Faint is not a colour: buildx dims these lines also under NO_COLOR.
                lines.append(_DIM + self._fit(" => => # " + log) + _RESET)
        return lines
