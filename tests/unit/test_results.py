"""BuildResult and BuildError from recorded and hand-made event sequences."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from buildsdk._decoder import EventDecoder
from buildsdk.errors import BuildError
from buildsdk.events import (
    BuildEvent,
    ErrorEvent,
    ImageIdEvent,
    LogEvent,
    ProgressDetail,
    StatusEvent,
    VertexEvent,
    VertexLogEvent,
    VertexWarningEvent,
)
from buildsdk.results import BuildResult, ResultCollector

STREAMS = Path(__file__).resolve().parents[1] / "fixtures" / "streams"
CLASSIC_ID = "sha256:6ddd71fe305fc353495358458455e074de1820540ee76a1c4fc57bf665957c20"
BUILDKIT_ID = "sha256:5be5c5b54b9f29cd47ffbab00a1aa9b7ab3dc5f41aa75e44f7cadf104c82e3b8"
FAIL_MESSAGE = (
    'The command \'/bin/sh -c echo "about to fail" && echo "failing now" >&2 && exit 3\''
    " returned a non-zero code: 3"
)
BK_FAIL_MESSAGE = (
    'executor failed running [/bin/sh -c echo "about to fail" && echo "failing now" >&2'
    " && exit 3]: exit code: 3"
)


def _events(name: str) -> list[BuildEvent]:
    decoder = EventDecoder()
    return decoder.feed((STREAMS / name).read_bytes()) + decoder.flush()


def _collect(
    events: list[BuildEvent], tags: tuple[str, ...] = (), keep_events: bool = True
) -> ResultCollector:
    collector = ResultCollector(tags, keep_events=keep_events)
    for event in events:
        collector.add(event)
    return collector


def test_classic_success() -> None:
    result = _collect(_events("classic_ok.jsonl"), ("fixture:classic", "fixture:second")).finish(
        2.5
    )
    assert result.image_id == CLASSIC_ID
    assert result.tags == ("fixture:classic", "fixture:second")
    assert result.warnings == ("One or more build-args [UNUSED] were not consumed",)
    assert result.duration == 2.5
    assert result.events_count == 31
    assert result.log.startswith("Step 1/5 : FROM busybox:latest\n ---> 930c44a094ba\n")
    assert "hello from stdout\n" in result.log
    assert "line 1\nline 2\nline 3\nnaïve café ✓ 日本\n" in result.log
    assert result.log.endswith("Successfully tagged fixture:second\n")


def test_classic_failure_raises_build_error_with_log_and_events() -> None:
    events = _events("classic_fail.jsonl")
    with pytest.raises(BuildError) as info:
        _collect(events).finish(1.0)
    error = info.value
    assert error.message == FAIL_MESSAGE
    assert str(error) == FAIL_MESSAGE
    assert error.code == 3
    assert "about to fail\n\x1b[91mfailing now\n\x1b[0m" in error.log
    assert error.events == events


def test_classic_pull_failure() -> None:
    with pytest.raises(BuildError, match=r"registry-1\.docker\.io") as info:
        _collect(_events("classic_pull_fail.jsonl")).finish(1.0)
    assert info.value.code is None
    assert info.value.log == "Step 1/2 : FROM alpine:3.19\n"


@pytest.mark.parametrize(
    ("name", "image_id"),
    [("classic_quiet.jsonl", CLASSIC_ID), ("buildkit_quiet.jsonl", BUILDKIT_ID)],
)
def test_quiet_mode_image_id_comes_from_the_only_stream_message(name: str, image_id: str) -> None:
    assert _collect(_events(name)).finish(0.1).image_id == image_id


def test_remote_context_log_skips_progress_ticks() -> None:
    result = _collect(_events("classic_remote.jsonl")).finish(1.0)
    assert "Downloading context" not in result.log
    assert result.log.startswith("Step 1/3 : FROM busybox:latest\n")


def test_buildkit_success_log_is_numbered_per_vertex() -> None:
    result = _collect(_events("buildkit_ok.jsonl"), ("fixture:bk",)).finish(3.0)
    assert result.image_id == BUILDKIT_ID
    assert result.warnings == ()
    # What `docker buildx build --progress plain` prints: steps in the order they finished
    # (so [1/3] before [2/3]), numbered in that order, each closed once.
    assert result.log == (
        "#1 [internal] load remote build context\n"
        "#1 DONE 0.0s\n"
        "\n"
        "#2 copy /context /\n"
        "#2 DONE 0.0s\n"
        "\n"
        "#3 [internal] load metadata for docker.io/library/busybox:latest\n"
        "#3 DONE 0.0s\n"
        "\n"
        "#4 [1/3] FROM docker.io/library/busybox:latest\n"
        "#4 DONE 0.0s\n"
        "\n"
        '#5 [2/3] RUN echo "buildkit stdout" && echo "buildkit stderr" >&2\n'
        "#5 0.189 buildkit stderr\n"
        "#5 0.189 buildkit stdout\n"
        "#5 DONE 0.2s\n"
        "\n"
        '#6 [3/3] RUN for i in 1 2 3; do echo "line $i"; done; echo "naïve café ✓ 日本"\n'
        "#6 0.158 line 1\n"
        "#6 0.158 line 2\n"
        "#6 0.158 line 3\n"
        "#6 0.158 naïve café ✓ 日本\n"
        "#6 DONE 0.2s\n"
        "\n"
        "#7 exporting to image\n"
        "#7 exporting layers 0.4s done\n"
        f"#7 writing image {BUILDKIT_ID} done\n"
        "#7 naming to docker.io/library/fixture:bk done\n"
        "#7 DONE 0.4s\n"
    )


def test_buildkit_cached_rebuild_marks_cached_vertices() -> None:
    log = _collect(_events("buildkit_cached.jsonl")).finish(1.0).log
    assert '#5 [2/3] RUN echo "buildkit stdout" && echo "buildkit stderr" >&2\n#5 CACHED\n' in log
    assert "buildkit stdout" not in log.replace('echo "buildkit stdout"', "")


def test_buildkit_failure() -> None:
    with pytest.raises(BuildError) as info:
        _collect(_events("buildkit_fail.jsonl")).finish(1.0)
    error = info.value
    assert error.message == BK_FAIL_MESSAGE
    # BuildKit sends no code field; the exit status is the one its message ends with.
    assert error.code == 3
    # The log ends with the failure, as buildx's output does; the step after it never ran
    # and is not listed.
    assert error.log.endswith(
        "#4 [1/3] FROM docker.io/library/busybox:latest\n"
        "#4 CACHED\n"
        "\n"
        '#5 [2/3] RUN echo "about to fail" && echo "failing now" >&2 && exit 3\n'
        "#5 0.185 about to fail\n"
        "#5 0.185 failing now\n"
        f"#5 ERROR: {BK_FAIL_MESSAGE}\n"
        "------\n"
        ' > [2/3] RUN echo "about to fail" && echo "failing now" >&2 && exit 3:\n'
        "0.185 about to fail\n"
        "0.185 failing now\n"
        "------\n"
        f"ERROR: failed to solve: {BK_FAIL_MESSAGE}\n"
    )
    assert "[3/3]" not in error.log


def test_vertex_error_without_final_error_message_still_fails() -> None:
    events = _events("buildkit_fail.jsonl")
    assert isinstance(events[-1], ErrorEvent)
    with pytest.raises(BuildError) as info:
        _collect(events[:-1]).finish(1.0)
    assert info.value.message == BK_FAIL_MESSAGE
    assert info.value.code == 3


@pytest.mark.parametrize(
    ("message", "code"),
    [
        # Docker 23+ (BuildKit 0.11+) words it this way.
        ('process "/bin/sh -c exit 1" did not complete successfully: exit code: 1', 1),
        ("executor failed running [/bin/sh -c exit 255]: exit code: 255", 255),
        # Only the end of the message counts: a step's own text proves nothing.
        ('process "/bin/sh -c echo exit code: 7; false" did not complete', None),
        ("failed to compute cache key: not found", None),
    ],
)
def test_buildkit_error_code_comes_from_the_end_of_the_message(
    message: str, code: int | None
) -> None:
    with pytest.raises(BuildError) as info:
        _collect([ErrorEvent(message=message)]).finish(1.0)
    assert info.value.code == code


def test_vertex_error_followed_by_an_image_is_a_warning() -> None:
    events: list[BuildEvent] = [
        VertexEvent(digest="sha256:1", name="importing cache manifest", error="not found"),
        ImageIdEvent(image_id=BUILDKIT_ID),
    ]
    result = _collect(events).finish(1.0)
    assert result.image_id == BUILDKIT_ID
    assert result.warnings == ("not found",)


def test_missing_image_id_is_an_error() -> None:
    events: list[BuildEvent] = [
        LogEvent(text="Step 1/1 : FROM x\n"),
        # docker-py would take this for the image id; it is RUN output (pip prints it).
        LogEvent(text="Successfully built cffi\n"),
    ]
    with pytest.raises(BuildError, match="ended without reporting an image id") as info:
        _collect(events).finish(1.0)
    assert info.value.log == "Step 1/1 : FROM x\nSuccessfully built cffi\n"


def test_quiet_shaped_text_counts_only_as_the_last_log_message() -> None:
    quiet = LogEvent(text=f"{CLASSIC_ID}\n")
    with pytest.raises(BuildError, match="without reporting an image id"):
        _collect([quiet, LogEvent(text="more\n")]).finish(1.0)
    for text in (
        f"{CLASSIC_ID}",
        f" {CLASSIC_ID}\n",
        f"{CLASSIC_ID}\n\n",
        f"{CLASSIC_ID.upper()}\n",
    ):
        with pytest.raises(BuildError):
            _collect([LogEvent(text=text)]).finish(1.0)


def test_aux_image_id_wins_over_quiet_shaped_text() -> None:
    events: list[BuildEvent] = [
        ImageIdEvent(image_id=BUILDKIT_ID),
        LogEvent(text=f"{CLASSIC_ID}\n"),
    ]
    assert _collect(events).finish(1.0).image_id == BUILDKIT_ID


def test_last_image_id_wins() -> None:
    # With `squash` the engine reports the squashed image after the unsquashed one.
    events: list[BuildEvent] = [
        ImageIdEvent(image_id=CLASSIC_ID),
        ImageIdEvent(image_id=BUILDKIT_ID),
    ]
    assert _collect(events).finish(1.0).image_id == BUILDKIT_ID


def test_no_image_expected() -> None:
    collector = ResultCollector(expect_image=False)
    collector.add(LogEvent(text="exported\n"))
    result = collector.finish(1.0)
    assert result.image_id == ""
    assert result.log == "exported\n"


def test_first_error_message_is_kept() -> None:
    events: list[BuildEvent] = [ErrorEvent(message="first", code=2), ErrorEvent(message="second")]
    with pytest.raises(BuildError, match=r"^first$") as info:
        _collect(events).finish(1.0)
    assert info.value.code == 2


def test_without_keep_events_no_events_are_held() -> None:
    events = _events("classic_fail.jsonl")
    collector = _collect(events, keep_events=False)
    assert collector.events == []
    with pytest.raises(BuildError) as info:
        collector.finish(1.0)
    assert info.value.events == []
    assert "about to fail" in info.value.log


def test_warnings_from_buildkit_and_classic() -> None:
    events: list[BuildEvent] = [
        LogEvent(text="[Warning] first\nplain\n[Warning] second\n"),
        VertexWarningEvent(vertex="v", short=b"FROM uses a moving tag \xe2\x9c"),
        ImageIdEvent(image_id=CLASSIC_ID),
    ]
    assert _collect(events).finish(1.0).warnings == (
        "first",
        "second",
        "FROM uses a moving tag \ufffd",
    )


def test_status_lines_in_the_classic_log() -> None:
    events: list[BuildEvent] = [
        StatusEvent(status="Pulling from library/alpine", id="3.19"),
        StatusEvent(status="Pulling fs layer", id="a1", progress_detail=ProgressDetail()),
        StatusEvent(status="Downloading", id="a1", progress_detail=ProgressDetail(current=1)),
        StatusEvent(status="Digest: sha256:00"),
        ImageIdEvent(image_id=CLASSIC_ID),
    ]
    assert _collect(events).finish(1.0).log == (
        "3.19: Pulling from library/alpine\na1: Pulling fs layer\nDigest: sha256:00\n"
    )


def test_vertex_log_split_inside_lines_and_characters() -> None:
    t0 = datetime(2026, 12, 7, 6, 0, tzinfo=timezone.utc)
    events: list[BuildEvent] = [
        VertexEvent(digest="sha256:x", name="RUN x", started=t0),
        VertexLogEvent(vertex="sha256:x", stream=1, data=b"par", timestamp=t0),
        VertexLogEvent(vertex="sha256:x", stream=1, data="tial ✓".encode()[:-1], timestamp=t0),
        VertexLogEvent(
            vertex="sha256:x", stream=1, data="✓".encode()[-1:] + b"\nnext", timestamp=t0
        ),
        VertexEvent(digest="sha256:x", name="RUN x", started=t0, completed=t0),
        ImageIdEvent(image_id=CLASSIC_ID),
    ]
    assert _collect(events).finish(1.0).log == (
        "#1 RUN x\n#1 0.000 partial ✓\n#1 0.000 next\n#1 DONE 0.0s\n"
    )


def test_single_tag_string_and_result_model() -> None:
    collector = ResultCollector("app:1")
    collector.add(ImageIdEvent(image_id=CLASSIC_ID))
    assert collector.image_id == CLASSIC_ID
    result = collector.finish(0.5)
    assert result == BuildResult(
        image_id=CLASSIC_ID, tags=("app:1",), log="", warnings=(), duration=0.5, events_count=1
    )
    with pytest.raises(ValidationError, match="frozen"):
        result.image_id = "x"  # type: ignore[misc]


def test_a_control_api_result_reads_the_exporter_response_as_buildx_does() -> None:
    import base64
    import json

    from buildsdk.results import BuildResult

    descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json", "size": 1}
    response = {
        "containerimage.digest": "sha256:" + "a" * 64,
        "containerimage.descriptor": base64.b64encode(json.dumps(descriptor).encode()).decode(),
        "image.name": "docker.io/library/a:1",
    }
    result = BuildResult(image_id="").with_exporter_response(response, "ref1")
    # No config digest (the containerd store's index): the image digest is the id.
    assert result.image_id == "sha256:" + "a" * 64
    assert result.descriptor == descriptor
    assert result.image_name == "docker.io/library/a:1"
    assert result.metadata() == {
        **response,
        "containerimage.descriptor": descriptor,
        "buildx.build.ref": "default/default/ref1",
    }
    classic = BuildResult(image_id="").with_exporter_response(
        {**response, "containerimage.config.digest": "sha256:" + "c" * 64}, "ref2"
    )
    assert classic.image_id == classic.config_digest == "sha256:" + "c" * 64
