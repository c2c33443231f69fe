"""A clone stands on its own: nothing in the repository reads files from outside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests import VECTORS_DIR

REPO = Path(__file__).resolve().parents[2]


def _tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    return [REPO / name for name in listed.decode().split("\0") if name]


# Spelled in pieces so this file does not match itself.
_BESIDE = (b"../" + b"shared", b'"..", ' + b'"shared"', b'".." / ' + b'"shared"')


def test_no_tracked_file_names_a_directory_beside_the_clone() -> None:
    beside = []
    for path in _tracked_files():
        if not path.is_file():
            continue
        text = path.read_bytes()
        # The shared material sits beside a CI checkout, not beside anybody's clone:
        # a file that reads it would pass in CI and fail everywhere else.
        if any(needle in text for needle in _BESIDE):
            beside.append(str(path.relative_to(REPO)))
    assert beside == []


def test_every_vector_is_tracked_and_described() -> None:
    tracked = {p.name for p in _tracked_files() if p.parent == VECTORS_DIR}
    readme = (VECTORS_DIR / "README.md").read_text(encoding="utf-8")
    vectors = sorted(name for name in tracked if name.endswith(".json"))
    assert vectors == [
        "buildx_solve.json",
        "cli_build_requests.json",
        "context_trees_cli.json",
        "dockerignore_cases.json",
    ]
    for name in vectors:
        assert f"`{name}`" in readme
