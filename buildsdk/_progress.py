"""Renderers that turn a build's events into what a person reads in a terminal or a log.

Why this module is separate from the command: rendering is pure (events in, text out, a
clock passed in), so every renderer is tested with recorded streams and a fake clock, and
the command only chooses one and feeds it. Four renderers exist:

* `PlainProgress` prints text that stays readable in a CI log. Classic-builder text is the
  engine's own; pull progress is printed as `id: status` once per change of status. BuildKit
  vertices are printed like BuildKit's own plain printer: a `#N name` header when a step
  starts or output switches to it, `#N <status> <bytes> <t>s done`, log lines prefixed with
  the seconds since the step started, `#N WARN: …`, and one closing line per step
  (`#N CACHED`, `#N DONE 0.4s`, `#N ERROR: …`, `#N CANCELED`). When output switches away
  from a step that has not finished, `#N ...` marks the interruption.
* `TtyProgress` keeps a live region at the bottom of a terminal (BuildKit steps with timers,
  their latest log lines and byte counters; classic pull progress bars per layer) and
  redraws it in place with ANSI cursor movement, at most once per `interval` seconds
  (`tick` redraws without an event, so timers move during a silent step). Finished text
  scrolls above it.
* `RawJsonProgress` prints each event as one line of its JSON form.
* `QuietProgress` prints nothing, but keeps the engine's text to show if the build fails.

Limits, admitted: the BuildKit plain printer here prints a vertex as soon as its update
arrives, while BuildKit's own printer batches updates and chooses which of several running
steps to show; on a parallel build both interleave steps with `#N ...` markers, but not at
the same places. Progress groups are shown as ordinary steps.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TextIO

from buildsdk.events import (
    BuildEvent,
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
    "format_bytes",
    "human_size",
]


class Progress(Protocol):
    """What the command needs from a renderer: events one by one, then one `close`."""

    def feed(self, event: BuildEvent) -> None:
        """Render one event (or remember it for the next redraw)."""

    def close(self) -> None:
        """Write whatever is still pending; the build is over."""


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


@dataclass
class _Vertex:
    """What the renderers know about one BuildKit step, gathered from its events."""

    digest: str
    name: str = ""
    index: int = 0
    started: datetime | None = None
    completed: datetime | None = None
    cached: bool = False
    error: str = ""
    intervals: dict[datetime, datetime] = field(default_factory=dict)
    statuses: dict[str, VertexStatusEvent] = field(default_factory=dict)
    status_updates: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    logs_partial: bool = False
    partial_offset: int = 0
    warnings: list[str] = field(default_factory=list)
    warnings_printed: int = 0
    closing: str = ""

    @property
    def is_started(self) -> bool:
        return self.started is not None

    @property
    def is_completed(self) -> bool:
        return self.completed is not None

    def duration(self) -> float:
        """Seconds spent running, counting overlapping runs once (as BuildKit merges them)."""
        spans = sorted(self.intervals.items())
        total = 0.0
        cur_start: datetime | None = None
        cur_end: datetime | None = None
        for start, end in spans:
            if cur_start is None or cur_end is None or start > cur_end:
                if cur_start is not None:
                    total += _seconds(cur_start, cur_end)
                cur_start, cur_end = start, end
            elif end > cur_end:
                cur_end = end
        if cur_start is not None:
            total += _seconds(cur_start, cur_end)
        return total


class _Trace:
    """The BuildKit steps of one build, in the order they were first seen."""

    def __init__(self, keep_logs: int | None = None) -> None:
        self.vertices: dict[str, _Vertex] = {}
        self.keep_logs = keep_logs

    def get(self, digest: str) -> _Vertex:
        vertex = self.vertices.get(digest)
        if vertex is None:
            vertex = self.vertices[digest] = _Vertex(digest)
        return vertex

    def on_vertex(self, event: VertexEvent) -> _Vertex:
        vertex = self.get(event.digest)
        vertex.name = event.name or vertex.name
        vertex.started = event.started
        vertex.completed = event.completed
        vertex.cached = event.cached
        vertex.error = event.error
        if event.started is not None and event.completed is not None:
            vertex.intervals[event.started] = event.completed
        return vertex

    def on_status(self, event: VertexStatusEvent) -> _Vertex:
        vertex = self.get(event.vertex)
        vertex.statuses[event.id] = event
        if event.id not in vertex.status_updates:
            vertex.status_updates.append(event.id)
        return vertex

    def on_log(self, event: VertexLogEvent) -> _Vertex:
        vertex = self.get(event.vertex)
        text = event.data.decode("utf-8", "replace")
        pieces = text.split("\n")
        complete = text.endswith("\n")
        if complete:
            pieces.pop()
        offset = _seconds(vertex.started, event.timestamp) if vertex.started else 0.0
        # BuildKit prints more decimals for early lines: 0.123, 12.34, 123.4.
        precision = 3 if offset < 10 else 2 if offset < 100 else 1
        for i, piece in enumerate(pieces):
            if i == 0 and vertex.logs_partial and vertex.logs:
                vertex.logs[-1] += piece
            else:
                vertex.logs.append(f"{offset:.{precision}f} {piece}")
        vertex.logs_partial = not complete
        if self.keep_logs is not None and len(vertex.logs) > 2 * self.keep_logs:
            drop = len(vertex.logs) - self.keep_logs
            del vertex.logs[:drop]
        return vertex

    def on_warning(self, event: VertexWarningEvent) -> _Vertex:
        vertex = self.get(event.vertex)
        vertex.warnings.append(event.short.decode("utf-8", "replace"))
        return vertex


class PlainProgress:
    """Line-oriented output for logs and pipes (classic text as is, BuildKit as `#N` lines)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._trace = _Trace()
        self._current = ""
        self._next_index = 0
        self._printed_any = False
        self._last_status: dict[str, str] = {}
        self._last_counts: dict[str, tuple[int, datetime | None]] = {}
        # Whether the engine's classic text left the cursor mid-line.
        self._text_open = False

    def feed(self, event: BuildEvent) -> None:
        """Print what `event` adds to the build's story."""
        if isinstance(event, LogEvent):
            self._write(event.text)
            self._text_open = bool(event.text) and not event.text.endswith("\n")
        elif isinstance(event, StatusEvent):
            self._on_status(event)
        elif isinstance(event, VertexEvent):
            vertex = self._trace.on_vertex(event)
            if vertex.is_started or vertex.is_completed:
                self._print_vertex(vertex)
        elif isinstance(event, VertexStatusEvent):
            self._print_vertex(self._trace.on_status(event))
        elif isinstance(event, VertexLogEvent):
            self._print_vertex(self._trace.on_log(event))
        elif isinstance(event, VertexWarningEvent):
            self._print_vertex(self._trace.on_warning(event))
        self._out.flush()

    def close(self) -> None:
        """End an unfinished log line so the shell prompt starts on its own line."""
        current = self._trace.vertices.get(self._current)
        if current is not None and current.logs_partial and current.partial_offset:
            self._write("\n")
        if self._text_open:
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

    def _print_vertex(self, vertex: _Vertex) -> None:
        if not (vertex.is_started or vertex.is_completed):
            # Queued steps stay silent until they start, as in BuildKit's printer.
            return
        if (
            vertex.closing
            and vertex.is_completed
            and not vertex.status_updates
            and not vertex.logs
            and vertex.warnings_printed == len(vertex.warnings)
            and self._closing(vertex) == vertex.closing
        ):
            # The engine repeats a finished step without news (a second identical run of
            # an internal step): its story is already told.
            return
        if vertex.index == 0:
            self._next_index += 1
            vertex.index = self._next_index
        w = self._write
        header = vertex.digest != self._current
        if header:
            old = self._trace.vertices.get(self._current)
            if old is not None:
                if old.logs_partial and old.partial_offset:
                    w("\n")
                # Coming back to it later repeats its unfinished line in full.
                old.partial_offset = 0
                w(f"#{old.index} ...\n")
            if self._printed_any:
                w("\n")
            w(f"#{vertex.index} {vertex.name}\n")
            self._printed_any = True
        open_status = self._print_statuses(vertex)
        for short in vertex.warnings[vertex.warnings_printed :]:
            w(f"#{vertex.index} WARN: {short}\n")
        vertex.warnings_printed = len(vertex.warnings)
        self._print_logs(vertex, continuing=not header)
        self._current = vertex.digest
        if vertex.is_completed and not open_status:
            self._current = ""
            if vertex.logs_partial and vertex.partial_offset:
                w("\n")
            vertex.logs_partial = False
            vertex.logs.clear()
            vertex.partial_offset = 0
            vertex.closing = self._closing(vertex)
            w(f"#{vertex.index} {vertex.closing}\n")

    def _print_logs(self, vertex: _Vertex, *, continuing: bool) -> None:
        last = len(vertex.logs) - 1
        # `logs` holds only what is not printed yet, except that a partial last line stays
        # (its printed part is `partial_offset` characters long).
        for i, line in enumerate(vertex.logs):
            if i == 0 and vertex.partial_offset and continuing:
                # The start of this line is already on screen: print only what was added.
                self._write(line[vertex.partial_offset :])
            else:
                self._write(f"#{vertex.index} {line}")
            if i != last or not vertex.logs_partial:
                self._write("\n")
        if vertex.logs_partial and vertex.logs:
            vertex.partial_offset = len(vertex.logs[-1])
            del vertex.logs[:-1]
        else:
            vertex.partial_offset = 0
            vertex.logs.clear()

    @staticmethod
    def _closing(vertex: _Vertex) -> str:
        if vertex.error:
            if vertex.error.endswith("context canceled"):
                return "CANCELED"
            return f"ERROR: {vertex.error}"
        if vertex.cached:
            return "CACHED"
        if vertex.intervals:
            return f"DONE {vertex.duration():.1f}s"
        return "DONE"

    def _print_statuses(self, vertex: _Vertex) -> bool:
        open_status = False
        for status_id in vertex.status_updates:
            status = vertex.statuses[status_id]
            if status.completed is None:
                open_status = True
                last = self._last_counts.get(status_id)
                if last is not None:
                    # Throttle byte counters as BuildKit does: print again after 5% more
                    # of the total or five seconds, whichever comes first.
                    current, stamp = last
                    grown = (status.current - current) / status.total if status.total else 0.0
                    waited = _seconds(stamp, status.timestamp)
                    if grown < 0.05 and waited < 5.0:
                        continue
            self._last_counts[status_id] = (status.current, status.timestamp)
            self._write(f"#{vertex.index} {self._status_line(status)}\n")
        vertex.status_updates = []
        return open_status

    @staticmethod
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


class RawJsonProgress:
    """One JSON line per event: the event models' own JSON, for machines."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def feed(self, event: BuildEvent) -> None:
        """Print `event` as one line of JSON."""
        self._out.write(event.model_dump_json() + "\n")
        self._out.flush()

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

    def close(self) -> None:
        """Nothing to write."""


_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"
_CLEAR_DOWN = "\x1b[J"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"
_RESET = "\x1b[0m"
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
    time; running steps show their byte counters and latest log lines. Classic builds print
    the engine's text above a region of per-layer progress bars. `width` and `height` bound
    the region (lines are cut at `width`, the oldest steps scroll off above `height`).
    """

    def __init__(
        self,
        out: TextIO,
        *,
        width: int = 80,
        height: int = 24,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._width = max(20, width)
        self._height = max(4, height)
        self._interval = interval
        self._clock = clock
        self._start = clock()
        self._trace = _Trace(keep_logs=_LOG_TAIL)
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
            if self._layers:
                self._commit_layers()
            self._pending_text += event.text
        elif isinstance(event, StatusEvent):
            if event.id:
                self._layers[event.id] = event
            else:
                self._commit_layers()
                self._pending_text += event.status + "\n"
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

    def close(self) -> None:
        """Draw the final state, leave it on screen and show the cursor again."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._commit_layers()
            self._redraw(self._clock(), final=True)
            self._out.write(_SHOW_CURSOR)
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
        shown = [v for v in self._trace.vertices.values() if v.is_started or v.is_completed]
        done = sum(1 for v in self._trace.vertices.values() if v.is_completed)
        total = len(self._trace.vertices)
        state = "Finished" if final else "Building"
        lines = [f"[+] {state} {now - self._start:.1f}s ({done}/{total})"]
        for vertex in shown:
            lines.extend(self._vertex_lines(vertex, now))
        return lines

    def _vertex_lines(self, vertex: _Vertex, now: float) -> list[str]:
        prefix = " => "
        if vertex.error:
            prefix += "ERROR "
        elif vertex.cached:
            prefix += "CACHED "
        if vertex.is_completed:
            seconds = vertex.duration()
        else:
            # The engine's clock may differ from ours; a running step's timer counts from
            # when we first saw it running.
            seconds = now - self._seen_running.setdefault(vertex.digest, now)
        timer = f"{max(seconds, 0.0):.1f}s"
        head = prefix + vertex.name
        room = self._width - len(timer) - 1
        if len(head) > room:
            head = head[: max(room - 1, 0)] + "…"
        line = head.ljust(room) + " " + timer
        if vertex.error:
            line = _RED + line + _RESET
        lines = [line]
        for status in vertex.statuses.values():
            lines.append(" => => " + PlainProgress._status_line(status))
        if not vertex.is_completed or vertex.error:
            for log in vertex.logs[-_LOG_TAIL:]:
                lines.append(_DIM + self._fit(" => => # " + log) + _RESET)
        return lines
