"""The documentation site builds with `mkdocs build --strict`, and its API reference is complete.

Strict mode turns every warning into a failure: a broken link between pages, a missing
anchor, a cross-reference to a name that does not exist, an example file the pages include
that is gone. The reference is generated from docstrings; every name in `buildsdk.__all__`
(and the public names of `buildsdk.compat`) must have its own entry, so a name added to the
public API without a place in the reference fails here.

Strict mode does not notice a snippet marker that pymdownx leaves alone (ruff's Markdown
formatting turns a one-line `--8<-- "file"` inside a Python block into `--8 < --"file"`),
so the built pages are searched for markers and for the code of every included file. Pages
include code in the block form (`--8<--`, the path, `--8<--`), which is not Python and so
is left alone by the formatter.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import buildsdk
from buildsdk import compat, progress

__all__: list[str] = []

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once for this module, in a temporary directory."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _reference_anchors(site: Path) -> set[str]:
    html = "".join(path.read_text() for path in (site / "reference").rglob("*.html"))
    return set(re.findall(r'id="(buildsdk\.[\w.]+)"', html))


def test_every_public_name_has_a_reference_entry(site: Path) -> None:
    anchors = _reference_anchors(site)
    missing = [name for name in buildsdk.__all__ if f"buildsdk.{name}" not in anchors]
    assert missing == []


def test_compat_names_have_reference_entries(site: Path) -> None:
    anchors = _reference_anchors(site)
    missing = [name for name in compat.__all__ if f"buildsdk.compat.{name}" not in anchors]
    assert missing == []


def test_progress_names_have_reference_entries(site: Path) -> None:
    anchors = _reference_anchors(site)
    missing = [name for name in progress.__all__ if f"buildsdk.progress.{name}" not in anchors]
    assert missing == []


def test_guides_and_examples_are_published(site: Path) -> None:
    guides = sorted(path.name for path in (site / "guides").iterdir() if path.is_dir())
    assert guides == [
        "async",
        "buildkit",
        "cli",
        "contexts",
        "engines",
        "errors",
        "events",
        "examples",
        "getting-started",
        "options",
        "performance",
        "remote-buildkit",
    ]
    page = (site / "guides" / "examples" / "index.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    for script in sorted((REPO_ROOT / "examples").glob("*.py")):
        # Each script is included whole: its last line is on the page.
        assert script.read_text().rstrip().splitlines()[-1] in text, script.name
        assert script.read_text().splitlines()[0] in text, script.name
    migration = (site / "migrating-from-docker-py" / "index.html").read_text()
    assert "compat.APIClient" in migration


# A snippet marker in any spelling a formatter may leave: `--8<--`, `--8 < --`, `- -8<- -`.
_MARKER = re.compile(r"-\s*-\s*8\s*<\s*-\s*-")


def _page_text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def _included_files(source: str) -> list[str]:
    """The files a page's snippet markers name, whether pymdownx would expand them or not."""
    lines = [line.strip() for line in source.splitlines()]
    names = []
    index = 0
    while index < len(lines):
        found = _MARKER.match(lines[index])
        index += 1
        if found is None:
            continue
        rest = lines[index - 1][found.end() :].strip().strip("\"'")
        if rest:
            names.append(rest)  # one-line form: --8<-- "path"
            continue
        # Block form: one path a line, up to the closing marker.
        while index < len(lines) and not _MARKER.match(lines[index]):
            if lines[index]:
                names.append(lines[index])
            index += 1
        index += 1
    return names


def _built_page(site: Path, source: Path) -> Path:
    relative = source.relative_to(REPO_ROOT / "docs").with_suffix("")
    if relative.name == "index":
        return site / relative.parent / "index.html"
    return site / relative / "index.html"


def test_no_page_shows_a_snippet_marker(site: Path) -> None:
    # A marker that is not expanded ends up on the page as text and `--strict` says nothing.
    shown = [
        str(page.relative_to(site))
        for page in site.rglob("*.html")
        if _MARKER.search(_page_text(page))
    ]
    assert shown == []


def test_every_included_file_is_on_its_page(site: Path) -> None:
    sources = sorted((REPO_ROOT / "docs").rglob("*.md"))
    included = [
        (source, name) for source in sources for name in _included_files(source.read_text())
    ]
    # The guides include the examples; a marker lost from the sources would pass unseen.
    assert ("getting-started.md", "examples/minimal_build.py") in {
        (source.name, name) for source, name in included
    }
    for source, name in included:
        text = _page_text(_built_page(site, source))
        lines = [line for line in (REPO_ROOT / name).read_text().splitlines() if line.strip()]
        if name.endswith(".md"):
            # Included Markdown is rendered: its title is on the page, without the `#`.
            assert lines[0].lstrip("#").strip() in text, f"{source.name}: {name}"
            continue
        # Included code is shown as it is: its first, last and longest lines are on the page.
        for line in (lines[0], lines[-1], max(lines, key=len)):
            assert line.strip() in text, f"{source.name}: {name}: {line!r} is not on the page"
