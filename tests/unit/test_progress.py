"""What the progress renderers print, fed with real engine streams and made-up edge cases.

The BuildKit plain output is checked on streams recorded from a real BuildKit
(tests/fixtures/streams, dockerd 20.10): `#N name` headers, log lines with their offsets,
status lines, `#N CACHED`, `#N DONE 0.2s`, `#N ERROR: …`. The live view is checked by
replaying its escape sequences on a small terminal model (`render_screen`), so the tests
see the screen a user sees, and its redraws are counted with a fake clock.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from buildsdk._decoder import EventDecoder
from buildsdk.buildkit.failure import source_excerpt
from buildsdk.events import (
    AnyBuildEvent,
    BuildEvent,
    ErrorEvent,
    LogEvent,
    ProgressDetail,
    StatusEvent,
    VertexEvent,
    VertexLogEvent,
    VertexStatusEvent,
    VertexWarningEvent,
)
from buildsdk.progress import (
    PlainProgress,
    QuietProgress,
    RawJsonProgress,
    TtyProgress,
    arender,
    format_bytes,
    human_size,
    render,
)

__all__ = ["render_screen"]

STREAMS = Path(__file__).resolve().parents[1] / "fixtures" / "streams"
T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


def recorded(name: str) -> list[BuildEvent]:
    decoder = EventDecoder()
    return decoder.feed((STREAMS / f"{name}.jsonl").read_bytes()) + decoder.flush()


def plain(events: list[BuildEvent], interval: float | None = None) -> str:
    """Print `events` in one pass at the end (`interval=None`), or each as it comes (0)."""
    out = io.StringIO()
    progress = PlainProgress(out, interval=interval, clock=lambda: 0.0)
    for event in events:
        progress.feed(event)
    progress.close()
    return out.getvalue()


def plain_live(timed: list[tuple[float, BuildEvent]], *, tick: float = 0.15) -> str:
    """Print events that arrive at the given seconds, with buildx's pacing on a fake clock:
    updates at most every 0.1 s, and a tick every `tick` seconds of silence (as `render`)."""
    now = [0.0]
    out = io.StringIO()
    progress = PlainProgress(out, clock=lambda: now[0])
    next_tick = tick
    for at, event in timed:
        while next_tick < at:
            now[0] = next_tick
            progress.tick()
            next_tick += tick
        now[0] = at
        progress.feed(event)
        next_tick = max(next_tick, at + tick)
    progress.close()
    return out.getvalue()


_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def render_screen(output: str, width: int = 200) -> list[str]:
    """Replay terminal output on a minimal terminal: text, CR, LF, cursor up and down, erase
    below.

    Colours and cursor visibility are accepted and ignored; any other control sequence
    fails the test, so the renderer cannot rely on something this model does not check.
    """
    lines: list[str] = [""]
    row, col = 0, 0
    i = 0
    while i < len(output):
        ch = output[i]
        if ch == "\x1b":
            match = _CSI.match(output, i)
            assert match is not None, f"unexpected escape at {output[i : i + 10]!r}"
            arg, op = match.groups()
            if op == "A":
                row = max(0, row - int(arg or "1"))
            elif op == "B":
                row += int(arg or "1")
                lines.extend("" for _ in range(row + 1 - len(lines)))
            elif op == "J":
                assert arg in ("", "0"), f"unsupported erase {arg!r}"
                lines[row] = lines[row][:col]
                del lines[row + 1 :]
            elif op == "K":
                lines[row] = lines[row][:col]
            elif op == "m" or (op in "lh" and arg == "?25"):
                pass
            else:
                raise AssertionError(f"unsupported control sequence {match.group(0)!r}")
            i = match.end()
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append("")
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1 :]
            col += 1
            assert col <= width, f"line longer than the terminal: {lines[row]!r}"
        i += 1
    while lines and lines[-1] == "":
        lines.pop()
    return lines


# -- plain, BuildKit ------------------------------------------------------------------------

# One pass at the end: each step that ran once, in the order the steps finished, as buildx
# prints a build whose updates all arrive between two of its prints. The engine's own text
# ("Successfully tagged") repeats the exporter's lines; docker's BuildKit output omits it.
BUILDKIT_OK = """\
#1 [internal] load remote build context
#1 DONE 0.0s

#2 copy /context /
#2 DONE 0.0s

#3 [internal] load metadata for docker.io/library/busybox:latest
#3 DONE 0.0s

#4 [1/3] FROM docker.io/library/busybox:latest
#4 DONE 0.0s

#5 [2/3] RUN echo "buildkit stdout" && echo "buildkit stderr" >&2
#5 0.189 buildkit stderr
#5 0.189 buildkit stdout
#5 DONE 0.2s

#6 [3/3] RUN for i in 1 2 3; do echo "line $i"; done; echo "naïve café ✓ 日本"
#6 0.158 line 1
#6 0.158 line 2
#6 0.158 line 3
#6 0.158 naïve café ✓ 日本
#6 DONE 0.2s

#7 exporting to image
#7 exporting layers 0.4s done
#7 writing image sha256:5be5c5b54b9f29cd47ffbab00a1aa9b7ab3dc5f41aa75e44f7cadf104c82e3b8 done
#7 naming to docker.io/library/fixture:bk done
#7 DONE 0.4s
"""


def test_buildkit_plain_on_a_real_build() -> None:
    assert plain(recorded("buildkit_ok")) == BUILDKIT_OK


def test_buildkit_plain_on_a_real_failure() -> None:
    text = plain(recorded("buildkit_fail"))
    message = (
        'executor failed running [/bin/sh -c echo "about to fail" && echo "failing now" >&2'
        " && exit 3]: exit code: 3"
    )
    # As buildx: the failed step, then its last lines between rules, then the error.
    assert text.endswith(
        '#5 [2/3] RUN echo "about to fail" && echo "failing now" >&2 && exit 3\n'
        "#5 0.185 about to fail\n"
        "#5 0.185 failing now\n"
        f"#5 ERROR: {message}\n"
        "------\n"
        ' > [2/3] RUN echo "about to fail" && echo "failing now" >&2 && exit 3:\n'
        "0.185 about to fail\n"
        "0.185 failing now\n"
        "------\n"
        f"ERROR: failed to solve: {message}\n"
    )
    assert "#4 [1/3] FROM docker.io/library/busybox:latest\n#4 CACHED\n" in text
    # The step after the failure never started, so it is never shown.
    assert "[3/3]" not in text


_FAIL_DOCKERFILE = (
    b"FROM busybox:latest\n"
    b'RUN echo "about to fail" && echo "failing now" >&2 && exit 3\n'
    b"RUN echo never\n"
)
_FAIL_EXCERPT = (
    "Dockerfile:2\n"
    "--------------------\n"
    "   1 |     FROM busybox:latest\n"
    '   2 | >>> RUN echo "about to fail" && echo "failing now" >&2 && exit 3\n'
    "   3 |     RUN echo never\n"
    "   4 |     \n"
    "--------------------\n"
)


def _failure_with_excerpt() -> list[BuildEvent]:
    """The recorded failure, its error carrying the excerpt as a Control API build's does."""
    events = recorded("buildkit_fail")
    assert isinstance(events[-1], ErrorEvent)
    source = source_excerpt("Dockerfile", _FAIL_DOCKERFILE, [(2, 2)])
    return [*events[:-1], events[-1].model_copy(update={"source": source})]


def test_buildkit_plain_prints_the_error_s_excerpt_above_it() -> None:
    message = (
        'executor failed running [/bin/sh -c echo "about to fail" && echo "failing now" >&2'
        " && exit 3]: exit code: 3"
    )
    for interval in (None, 0.0):
        text = plain(_failure_with_excerpt(), interval=interval)
        # As buildx: the step's last lines, the Dockerfile around it, then the error.
        assert text.endswith(
            f"0.185 failing now\n------\n{_FAIL_EXCERPT}ERROR: failed to solve: {message}\n"
        )


def test_buildkit_plain_on_a_real_cached_build() -> None:
    text = plain(recorded("buildkit_cached"))
    for step in ("#5 [2/3] RUN", "#6 [3/3] RUN"):
        block = text[text.index(step) :].split("\n\n")[0]
        assert block.splitlines()[-1].endswith("CACHED"), block
    assert text.count("DONE") + text.count("CACHED") == text.count("\n\n") + 1


def _vertex(digest: str, name: str, **fields: object) -> VertexEvent:
    return VertexEvent(digest=digest, name=name, **fields)  # type: ignore[arg-type]


def test_switching_between_running_steps_marks_the_interruption() -> None:
    a = _vertex("sha256:a", "[a 1/2] RUN a", started=T0)
    b = _vertex("sha256:b", "[b 1/2] RUN b", started=T0)
    timed: list[tuple[float, BuildEvent]] = [
        (0.0, a),
        (1.0, VertexLogEvent(vertex="sha256:a", data=b"from a\n", timestamp=T0 + _s(1))),
        (1.2, b),
        # b's news waited over ten seconds while a held the screen: buildx switches to it.
        (12.0, VertexLogEvent(vertex="sha256:b", data=b"from b\n", timestamp=T0 + _s(12))),
        (12.5, _vertex("sha256:a", "[a 1/2] RUN a", started=T0, completed=T0 + _s(2))),
        (
            13.0,
            _vertex(
                "sha256:b",
                "[b 1/2] RUN b",
                started=T0,
                completed=T0 + _s(3),
                error="failed: context canceled",
            ),
        ),
    ]
    assert plain_live(timed) == (
        "#1 [a 1/2] RUN a\n"
        "#1 1.000 from a\n"
        "#1 ...\n"
        "\n"
        "#2 [b 1/2] RUN b\n"
        "#2 12.00 from b\n"
        "#2 ...\n"
        "\n"
        "#1 [a 1/2] RUN a\n"
        "#1 DONE 2.0s\n"
        "\n"
        "#2 [b 1/2] RUN b\n"
        "#2 CANCELED\n"
    )


def test_a_running_step_keeps_the_screen_while_another_starts() -> None:
    # buildx's anti-flicker rule: a second step's start does not interrupt the first.
    timed: list[tuple[float, BuildEvent]] = [
        (0.0, _vertex("sha256:a", "RUN a", started=T0)),
        (0.5, VertexLogEvent(vertex="sha256:a", data=b"one\n", timestamp=T0)),
        (1.0, _vertex("sha256:b", "RUN b", started=T0)),
        (1.5, VertexLogEvent(vertex="sha256:a", data=b"two\n", timestamp=T0)),
        (2.0, _vertex("sha256:a", "RUN a", started=T0, completed=T0 + _s(2))),
        (2.5, _vertex("sha256:b", "RUN b", started=T0, completed=T0 + _s(2), cached=True)),
    ]
    assert plain_live(timed) == (
        "#1 RUN a\n#1 0.000 one\n#1 0.000 two\n#1 DONE 2.0s\n\n#2 RUN b\n#2 CACHED\n"
    )


def _s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def test_partial_log_lines_are_joined() -> None:
    start = _vertex("sha256:a", "RUN a", started=T0)
    events: list[BuildEvent] = [
        start,
        VertexLogEvent(vertex="sha256:a", data=b"hel", timestamp=T0),
        VertexLogEvent(vertex="sha256:a", data=b"lo\nwor", timestamp=T0),
        VertexLogEvent(vertex="sha256:a", data=b"ld\n", timestamp=T0 + timedelta(seconds=150)),
    ]
    assert plain(events) == "#1 RUN a\n#1 0.000 hello\n#1 0.000 world\n"


def test_unfinished_line_is_ended_at_close() -> None:
    events: list[BuildEvent] = [
        _vertex("sha256:a", "RUN a", started=T0),
        VertexLogEvent(vertex="sha256:a", data=b"no newline", timestamp=T0),
    ]
    assert plain(events).endswith("#1 0.000 no newline\n")


def test_queued_steps_are_silent_until_they_start() -> None:
    assert plain([_vertex("sha256:q", "[2/2] RUN later")]) == ""


def test_status_lines_show_bytes_time_and_done() -> None:
    v = "sha256:v"
    events: list[BuildEvent] = [
        _vertex(v, "[internal] load build context", started=T0),
        VertexStatusEvent(
            id="transferring context:", vertex=v, current=82, started=T0, timestamp=T0
        ),
        VertexStatusEvent(
            id="sha256:layer",
            vertex=v,
            current=1_500_000,
            total=27_510_000,
            started=T0,
            timestamp=T0 + timedelta(seconds=1),
        ),
        # Less than 10% more and under five seconds later: not worth a line.
        VertexStatusEvent(
            id="sha256:layer",
            vertex=v,
            current=2_000_000,
            total=27_510_000,
            started=T0,
            timestamp=T0 + timedelta(seconds=2),
        ),
        VertexStatusEvent(
            id="sha256:layer",
            vertex=v,
            current=27_510_000,
            total=27_510_000,
            started=T0,
            timestamp=T0 + timedelta(seconds=3),
            completed=T0 + timedelta(seconds=3),
        ),
        VertexWarningEvent(vertex=v, short=b"FromAsCasing: 'as' and 'FROM' keywords' casing"),
        _vertex(
            v, "[internal] load build context", started=T0, completed=T0 + timedelta(seconds=3)
        ),
    ]
    assert plain(events, interval=0.0) == (
        "#1 [internal] load build context\n"
        "#1 transferring context: 82B\n"
        "#1 sha256:layer 1.50MB / 27.51MB 1.0s\n"
        "#1 sha256:layer 27.51MB / 27.51MB 3.0s done\n"
        "#1 WARN: FromAsCasing: 'as' and 'FROM' keywords' casing\n"
        "#1 DONE 3.0s\n"
    )


# -- plain, classic ---------------------------------------------------------------------------


def test_classic_plain_is_the_engines_text() -> None:
    events = recorded("classic_ok")
    expected = "".join(e.text for e in events if isinstance(e, LogEvent))
    assert plain(events) == expected
    assert "Successfully tagged fixture:second\n" in expected


def test_classic_status_lines_once_per_change() -> None:
    def status(layer: str, text: str, current: int = 0) -> StatusEvent:
        detail = ProgressDetail(current=current, total=100) if current else None
        return StatusEvent(status=text, id=layer, progress_detail=detail)

    events: list[BuildEvent] = [
        LogEvent(text="Step 1/2 : FROM alpine"),
        StatusEvent(status="Pulling from library/alpine", id="latest"),
        status("abc", "Pulling fs layer"),
        status("abc", "Downloading", 10),
        status("abc", "Downloading", 60),
        status("abc", "Pull complete"),
        StatusEvent(status="Digest: sha256:1234"),
        LogEvent(text=" ---> 1234\n"),
    ]
    assert plain(events) == (
        "Step 1/2 : FROM alpine\n"
        "latest: Pulling from library/alpine\n"
        "abc: Pulling fs layer\n"
        "abc: Downloading\n"
        "abc: Pull complete\n"
        "Digest: sha256:1234\n"
        " ---> 1234\n"
    )


# -- rawjson and quiet ------------------------------------------------------------------------


def test_rawjson_prints_each_event_as_its_json() -> None:
    events = recorded("buildkit_ok")
    out = io.StringIO()
    progress = RawJsonProgress(out)
    for event in events:
        progress.feed(event)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == len(events)
    adapter: TypeAdapter[BuildEvent] = TypeAdapter(AnyBuildEvent)
    assert [adapter.validate_json(line) for line in lines] == events
    assert json.loads(lines[0])["kind"] == "vertex"


def test_quiet_keeps_the_text_for_a_failure() -> None:
    progress = QuietProgress()
    events = recorded("classic_fail")
    for event in events:
        progress.feed(event)
    progress.close()
    assert progress.text == "".join(e.text for e in events if isinstance(e, LogEvent))
    assert "about to fail\n" in progress.text


def test_quiet_keeps_only_the_latest_text() -> None:
    progress = QuietProgress(limit=100)
    for i in range(50):
        progress.feed(LogEvent(text=f"line {i:02d}\n"))
    assert progress.text.endswith("line 49\n")
    assert len(progress.text) <= 108
    assert "line 00" not in progress.text


# -- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0B"),
        (82, "82B"),
        (999, "999B"),
        (1000, "1.00kB"),
        (9410, "9.41kB"),
        (27_510_000, "27.51MB"),
        (3 * 10**9, "3.00GB"),
    ],
)
def test_format_bytes_like_buildkit(n: int, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0B"), (512, "512B"), (12_345_678, "12.35MB"), (1_000_000_000, "1GB")],
)
def test_human_size_like_the_docker_cli(n: int, text: str) -> None:
    assert human_size(n) == text


@given(st.integers(min_value=0, max_value=10**18))
def test_format_bytes_reads_back_close_to_the_count(n: int) -> None:
    text = format_bytes(n)
    match = re.fullmatch(r"([0-9.]+)(B|kB|MB|GB|TB|PB)", text)
    assert match is not None, text
    scale = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15}
    value = float(match.group(1)) * scale[match.group(2)]
    if n < 1000:
        assert text == f"{n}B"
    else:
        assert abs(value - n) <= 0.0051 * scale[match.group(2)]


# -- the live view -----------------------------------------------------------------------------


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tty_final_screen_of_a_real_buildkit_build() -> None:
    clock = FakeClock()
    out = io.StringIO()
    view = TtyProgress(out, width=80, height=30, clock=clock)
    for event in recorded("buildkit_ok"):
        clock.now += 0.05
        view.feed(event)
    view.close()
    screen = render_screen(out.getvalue(), width=80)
    # buildx's first frame leaves the top line of a fresh screen blank; so does this one.
    assert screen[0] == ""
    # The engine's "Successfully tagged" text is left out, as in docker's BuildKit view.
    assert re.fullmatch(r"\[\+\] Building \d+\.\ds \(7/7\) FINISHED", screen[1])
    step_lines = [line for line in screen if line.startswith(" => [2/3] RUN")]
    assert len(step_lines) == 1
    assert step_lines[0].endswith(" 0.2s")
    # As buildx: the timer ends one column short of the terminal's width.
    assert len(step_lines[0]) == 79
    (naming,) = [line for line in screen if "naming to" in line]
    assert re.fullmatch(r" => => naming to docker.io/library/fixture:bk +\d\.\ds", naming)
    assert len(naming) == 79
    # Each step is on screen once: the redraws replaced, not appended.
    assert sum(line.startswith(" => exporting to image") for line in screen) == 1


def test_tty_prints_the_error_s_excerpt_above_it() -> None:
    clock = FakeClock()
    out = io.StringIO()
    view = TtyProgress(out, width=80, height=30, clock=clock)
    for event in _failure_with_excerpt():
        clock.now += 0.05
        view.feed(event)
    view.close()
    # The summary below the live region is plain text: the terminal wraps its long lines.
    screen = render_screen(out.getvalue(), width=200)
    end = screen.index(_FAIL_EXCERPT.splitlines()[0])
    assert screen[end - 1] == "------"
    assert screen[end : end + 7] == _FAIL_EXCERPT.splitlines()
    assert screen[end + 7].startswith("ERROR: failed to solve: executor failed running")
    assert view.reported_error


def test_tty_redraws_are_rate_limited() -> None:
    clock = FakeClock()
    out = io.StringIO()
    view = TtyProgress(out, width=80, height=30, interval=0.1, clock=clock)
    v = "sha256:v"
    view.feed(_vertex(v, "RUN a", started=T0))
    first = out.getvalue()
    for i in range(50):  # a burst within the interval draws nothing
        view.feed(VertexLogEvent(vertex=v, data=f"line {i}\n".encode(), timestamp=T0))
    assert out.getvalue() == first
    clock.now += 0.25
    view.feed(VertexLogEvent(vertex=v, data=b"line 50\n", timestamp=T0))
    redraw = out.getvalue()[len(first) :]
    # One redraw: back up over the two lines drawn before, erase, draw the new region.
    assert redraw.startswith("\r\x1b[2A\r\x1b[J")
    screen = render_screen(out.getvalue())
    assert screen[2] == " => RUN a".ljust(74) + " 0.2s"
    assert screen[-1].endswith("line 50")
    assert len(screen) == 3 + 6  # blank, header, step, its six latest log lines


def test_tty_classic_pull_bars_redraw_in_place() -> None:
    clock = FakeClock()
    out = io.StringIO()
    view = TtyProgress(out, width=100, height=30, interval=0.0, clock=clock)
    view.feed(LogEvent(text="Step 1/2 : FROM alpine\n"))
    for layer in ("aaa", "bbb"):
        view.feed(StatusEvent(status="Pulling fs layer", id=layer))
    for current in (10, 50, 100):
        view.feed(
            StatusEvent(
                status="Downloading",
                id="aaa",
                progress_detail=ProgressDetail(current=current * 10**6, total=100 * 10**6),
            )
        )
        screen = render_screen(out.getvalue())
        assert screen[-2].startswith("aaa: Downloading [")
        assert screen[-2].endswith(f"{human_size(current * 10**6)}/100MB")
        assert screen[-1] == "bbb: Pulling fs layer"
    view.feed(LogEvent(text=" ---> 1234\n"))
    view.close()
    assert render_screen(out.getvalue()) == [
        "Step 1/2 : FROM alpine",
        "aaa: Downloading [==============================] 100MB/100MB",
        "bbb: Pulling fs layer",
        " ---> 1234",
    ]
    assert "\x1b[2A" in out.getvalue()
    assert out.getvalue().endswith("\x1b[?25h")


def test_tty_cuts_lines_to_the_terminal_width() -> None:
    out = io.StringIO()
    view = TtyProgress(out, width=40, height=10, clock=FakeClock())
    view.feed(_vertex("sha256:v", "RUN " + "x" * 100, started=T0))
    view.close()
    screen = render_screen(out.getvalue(), width=40)
    assert all(len(line) <= 40 for line in screen)
    # buildx cuts the name to leave room for the timer, without an ellipsis.
    assert screen[2] == " => RUN " + "x" * 25 + "  0.0s"


def test_tty_tick_moves_the_timer_of_a_silent_step() -> None:
    clock = FakeClock()
    out = io.StringIO()
    view = TtyProgress(out, width=60, height=10, interval=0.1, clock=clock)
    view.feed(_vertex("sha256:v", "RUN sleep 10", started=T0))
    assert render_screen(out.getvalue())[2].endswith(" 0.0s")
    clock.now += 0.05
    view.tick()  # within the interval: nothing is drawn
    assert render_screen(out.getvalue())[2].endswith(" 0.0s")
    clock.now += 7.3
    view.tick()
    screen = render_screen(out.getvalue())
    assert screen[1] == "[+] Building 7.3s (0/1)"
    assert screen[2] == " => RUN sleep 10".ljust(54) + " 7.3s"
    view.close()
    view.tick()  # after close: the final screen stays as it is
    assert out.getvalue().endswith("\x1b[?25h")


def test_byte_counters_print_again_after_five_percent_or_five_seconds() -> None:
    v = "sha256:v"

    def counter(current: int, seconds: float) -> VertexStatusEvent:
        return VertexStatusEvent(
            id="layer",
            vertex=v,
            current=current,
            total=1000,
            started=T0,
            timestamp=T0 + timedelta(seconds=seconds),
        )

    events: list[BuildEvent] = [
        _vertex(v, "pull", started=T0),
        counter(100, 1),
        counter(140, 2),  # +4%, 1 s later: skipped
        counter(160, 3),  # +6% since the last printed line: printed
        counter(170, 8.5),  # +1%, but 5.5 s since the last printed line: printed
    ]
    assert plain(events, interval=0.0).splitlines()[1:] == [
        "#1 layer 100B / 1.00kB 1.0s",
        "#1 layer 160B / 1.00kB 3.0s",
        "#1 layer 170B / 1.00kB 8.5s",
    ]


def test_partial_line_is_repeated_in_full_after_an_interruption() -> None:
    timed: list[tuple[float, BuildEvent]] = [
        (0.0, _vertex("sha256:a", "RUN a", started=T0)),
        (0.0, VertexLogEvent(vertex="sha256:a", data=b"hel", timestamp=T0)),
        (0.5, _vertex("sha256:b", "RUN b", started=T0)),
        # b waited over ten seconds: it gets the screen, cutting a's line.
        (11.0, VertexLogEvent(vertex="sha256:b", data=b"b\n", timestamp=T0)),
        (22.0, VertexLogEvent(vertex="sha256:a", data=b"lo\n", timestamp=T0)),
    ]
    assert plain_live(timed) == (
        "#1 RUN a\n#1 0.000 hel\n#1 ...\n\n#2 RUN b\n#2 0.000 b\n#2 ...\n\n"
        "#1 RUN a\n#1 0.000 hello\n"
    )


def test_a_run_never_reported_finished_ends_with_the_next_run() -> None:
    # Seen on dockerd 20.10's /build stream: a cached FROM starts, is never reported
    # finished, then starts again and finishes. It must close, not stay open forever.
    name = "[1/2] FROM docker.io/library/busybox:latest"
    events: list[BuildEvent] = [
        _vertex("sha256:f", name),
        _vertex("sha256:f", name, started=T0),
        _vertex("sha256:f", name, started=T0 + _s(1), completed=T0 + _s(1), cached=True),
        _vertex("sha256:r", "[2/2] RUN true", started=T0 + _s(2), completed=T0 + _s(3)),
    ]
    for interval in (None, 0.0):
        assert plain(events, interval=interval) == (
            f"#1 {name}\n#1 CACHED\n\n#2 [2/2] RUN true\n#2 DONE 1.0s\n"
        )


# -- render / arender ------------------------------------------------------------------------


class _Recorder:
    """A renderer that records the calls it gets, to check how render drives one."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def feed(self, event: BuildEvent) -> None:
        self.calls.append(f"feed {event.kind}")

    def tick(self) -> None:
        if not self.calls or self.calls[-1] != "tick":
            self.calls.append("tick")

    def close(self) -> None:
        self.calls.append("close")


def _slow_events(fail: bool = False) -> Iterator[BuildEvent]:
    yield LogEvent(text="Step 1/1 : FROM scratch\n")
    time.sleep(0.35)  # silence: the renderer is ticked meanwhile
    if fail:
        raise RuntimeError("the stream broke")
    yield LogEvent(text="done\n")


def _assert_ticked_in_silence(calls: list[str]) -> None:
    # A loaded machine may let the ticker run before the first event or after the last;
    # what must hold is that the silence between the two events was ticked, and that close
    # comes last, once.
    assert [call for call in calls if call != "tick"] == ["feed log", "feed log", "close"]
    first, second = (index for index, call in enumerate(calls) if call == "feed log")
    assert "tick" in calls[first + 1 : second], calls


def test_render_feeds_ticks_during_silence_and_closes() -> None:
    recorder = _Recorder()
    render(_slow_events(), recorder, period=0.05)
    _assert_ticked_in_silence(recorder.calls)


def test_render_closes_when_the_build_raises() -> None:
    recorder = _Recorder()
    with pytest.raises(RuntimeError, match="the stream broke"):
        render(_slow_events(fail=True), recorder, period=0.05)
    assert recorder.calls[-1] == "close"


async def _aslow_events() -> AsyncIterator[BuildEvent]:
    yield LogEvent(text="Step 1/1 : FROM scratch\n")
    await asyncio.sleep(0.35)
    yield LogEvent(text="done\n")


def test_arender_feeds_ticks_during_silence_and_closes() -> None:
    recorder = _Recorder()
    asyncio.run(arender(_aslow_events(), recorder, period=0.05))
    _assert_ticked_in_silence(recorder.calls)


def test_render_prints_a_buildkit_build_as_plain_progress() -> None:
    out = io.StringIO()
    render(recorded("buildkit_ok"), PlainProgress(out))
    # However the prints fell, every step that ran is closed once and the exporter names
    # the image once.
    text = out.getvalue()
    assert text.count("#7 naming to docker.io/library/fixture:bk done\n") == 1
    for number in range(1, 8):
        assert re.search(rf"^#{number} (DONE \d+\.\ds|CACHED)$", text, re.MULTILINE), text


def _tty_final(events: list[BuildEvent], *, color: bool, width: int = 60) -> str:
    out = io.StringIO()
    view = TtyProgress(out, width=width, height=30, clock=FakeClock(), color=color)
    for event in events:
        view.feed(event)
    view.close()
    return out.getvalue()


def _done(digest: str, name: str, seconds: float, **fields: object) -> VertexEvent:
    return _vertex(digest, name, started=T0, completed=T0 + _s(seconds), **fields)


def test_tty_lays_out_steps_statuses_and_warnings_as_buildx() -> None:
    events: list[BuildEvent] = [
        _done("sha256:a", "[1/3] FROM base", 0.01, cached=True),
        VertexStatusEvent(
            id="sha256:layer",
            vertex="sha256:a",
            current=1500,
            total=3000,
            started=T0,
            timestamp=T0 + _s(1),
        ),
        _done("sha256:b", "[2/3] RUN x", 1.26),
        VertexWarningEvent(vertex="sha256:b", level=1, short=b"something odd"),
        _done("sha256:c", "[3/3] RUN y", 0.5, error="boom"),
        _done("sha256:d", "[4/3] RUN z", 0.3, error="context canceled"),
    ]
    screen = render_screen(_tty_final(events, color=False), width=60)
    assert screen[2:8] == [
        " => CACHED [1/3] FROM base".ljust(54) + " 0.0s",
        # A running status: its bytes before the timer, which counts to its latest news.
        " => => sha256:layer 1.50kB / 3.00kB".ljust(54) + " 1.0s",
        " => [2/3] RUN x".ljust(54) + " 1.3s",
        " => WARN: something odd".ljust(54) + " 1.3s",
        " => ERROR [3/3] RUN y".ljust(54) + " 0.5s",
        " => CANCELED [4/3] RUN z".ljust(54) + " 0.3s",
    ]


def test_tty_colours_are_buildx_s_unless_turned_off() -> None:
    events: list[BuildEvent] = [
        _done("sha256:a", "RUN ok", 1.0),
        _done("sha256:b", "RUN bad", 1.0, error="boom"),
        _done("sha256:c", "RUN other", 1.0, error="context canceled"),
        _vertex("sha256:d", "RUN running", started=T0),
    ]
    coloured = _tty_final(events, color=True)
    assert "\x1b[34m => RUN ok" in coloured
    assert "\x1b[31m => ERROR RUN bad" in coloured
    assert "\x1b[33m => CANCELED RUN other" in coloured
    assert "m => RUN running" not in coloured  # a running step is not coloured
    plain = _tty_final(events, color=False)
    assert not re.search(r"\x1b\[3\dm", plain)
    assert render_screen(plain) == render_screen(coloured)


def test_tty_no_color_turns_colours_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = io.StringIO()
    view = TtyProgress(out, width=60, clock=FakeClock())
    view.feed(_done("sha256:a", "RUN ok", 1.0))
    view.close()
    assert "\x1b[34m" not in out.getvalue()
    monkeypatch.delenv("NO_COLOR")
    out = io.StringIO()
    view = TtyProgress(out, width=60, clock=FakeClock())
    view.feed(_done("sha256:a", "RUN ok", 1.0))
    view.close()
    assert "\x1b[34m" in out.getvalue()
