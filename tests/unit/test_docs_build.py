"""The documentation site builds with `mkdocs build --strict`, and its API reference is complete.

Strict mode turns every warning into a failure: a broken link between pages, a missing
anchor, a cross-reference to a name that does not exist, an example file the pages include
that is gone. The reference is generated from docstrings; every name in `buildsdk.__all__`
(and the public names of `buildsdk.compat`) must have its own entry, so a name added to the
public API without a place in the reference fails here.
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
from buildsdk import compat

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
    ]
    page = (site / "guides" / "examples" / "index.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    for script in sorted((REPO_ROOT / "examples").glob("*.py")):
        # Each script is included whole: its last line is on the page.
        assert script.read_text().rstrip().splitlines()[-1] in text, script.name
        assert script.read_text().splitlines()[0] in text, script.name
    migration = (site / "migrating-from-docker-py" / "index.html").read_text()
    assert "compat.APIClient" in migration
