"""A failed Solve's status details -> exit code, failing step and buildx's Dockerfile excerpt."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from buildsdk._grpc.status import Detail
from buildsdk.buildkit.failure import solve_failure, source_excerpt
from tests import VECTORS_DIR

_PREFIX = "github.com/moby/buildkit/"


def _wire_detail(recorded: dict[str, Any]) -> Detail:
    """A detail as the engine sends it: the recorded JSON, the Dockerfile base64-encoded."""
    value = json.loads(json.dumps(recorded["value"]))
    if isinstance(value, dict) and "info" in value:
        value["info"]["data"] = base64.b64encode(value["info"]["data"].encode()).decode()
    return Detail(str(recorded["type_url"]), json.dumps(value).encode())


def _fail_run() -> tuple[dict[str, Any], dict[str, Any]]:
    vectors = json.loads((VECTORS_DIR / "buildx_solve.json").read_text())
    case = next(case for case in vectors["cases"] if case["name"] == "fail_run")
    solve = next(
        call
        for call in case["calls"]
        if call["path"].endswith("Control/Solve") and call["grpc_status"] == "2"
    )
    return case, solve


def test_the_recorded_failure_gives_buildx_s_excerpt_exit_code_and_vertex() -> None:
    case, solve = _fail_run()
    recorded = solve["status_details"]["details"]
    details = [_wire_detail(item) for item in recorded if "Stack" not in item["type_url"]]
    failure = solve_failure(solve["grpc_message"], details)

    assert failure.exit_code == 3
    assert failure.vertex == "<DIGEST_3>"
    assert failure.message == solve["grpc_message"]
    # What `docker buildx build` printed between the failed step's lines and its ERROR line.
    tail = case["stderr_tail"]
    start = tail.index("Dockerfile:2")
    assert failure.source.splitlines() == tail[start : start + 6]


def test_unknown_and_malformed_details_are_skipped() -> None:
    details = [
        Detail(_PREFIX + "stack.Stack+json", b"{}"),
        Detail(_PREFIX + "gatewayapi.ExitMessage+json", b"not json"),
        Detail(_PREFIX + "errdefs.Source+json", b'{"info": {"data": "!!"}, "ranges": []}'),
    ]
    failure = solve_failure("boom", details)
    assert (failure.exit_code, failure.vertex, failure.source) == (None, None, "")


def test_a_range_outside_the_file_prints_nothing() -> None:
    assert source_excerpt("Dockerfile", b"FROM a\n", [(5, 5)]) == ""
    assert source_excerpt("Dockerfile", b"FROM a\n", []) == ""


def test_a_multi_line_range_gets_two_lines_of_context() -> None:
    data = b"\n".join(f"L{n}".encode() for n in range(1, 11))
    assert source_excerpt("Dockerfile", data, [(4, 5)]).splitlines() == [
        "Dockerfile:4",
        "--------------------",
        "   3 |     L3",
        "   4 | >>> L4",
        "   5 | >>> L5",
        "   6 |     L6",
        "--------------------",
    ]


@given(
    lines=st.lists(st.text(alphabet="abc ", max_size=5), min_size=1, max_size=30),
    data=st.data(),
)
def test_excerpts_mark_exactly_the_faulty_lines_in_order(
    lines: list[str], data: st.DataObject
) -> None:
    start = data.draw(st.integers(1, len(lines)))
    end = data.draw(st.integers(start, len(lines)))
    text = source_excerpt("Dockerfile", "\n".join(lines).encode(), [(start, end)])
    printed = text.splitlines()
    assert printed[0] == f"Dockerfile:{start}"
    assert printed[1] == printed[-1] == "-" * 20
    body = printed[2:-1]
    numbers = [int(line[:5]) for line in body]
    assert numbers == list(range(numbers[0], numbers[-1] + 1))
    marked = [int(line[:5]) for line in body if line[7:10] == ">>>"]
    assert marked == list(range(start, end + 1))
    for line in body:
        assert line[10:] == " " + lines[int(line[:5]) - 1]
    # Never more than four lines of context around the fault.
    assert len(body) - len(marked) <= 4
