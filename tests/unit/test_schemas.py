"""The committed schemas/*.json are exactly what the models produce."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildsdk import _schemas
from buildsdk.build import BuildOptions

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


@pytest.mark.parametrize("name", sorted(_schemas.render()))
def test_committed_schema_matches_the_model(name: str) -> None:
    path = SCHEMA_DIR / name
    assert path.exists(), f"{path} is missing: run python -m buildsdk._schemas"
    assert path.read_text(encoding="utf-8") == _schemas.render()[name], (
        f"{path} is stale: run python -m buildsdk._schemas"
    )


def test_every_model_has_a_file_and_no_file_is_orphaned() -> None:
    expected = {f"{model.__name__}.json" for model in _schemas.MODELS}
    assert expected == set(_schemas.render())
    committed = {path.name for path in SCHEMA_DIR.glob("*.json")}
    assert expected <= committed


def test_check_mode_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _schemas.main(["--dir", str(tmp_path)]) == 0
    assert _schemas.main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "Ulimit.json").write_text("{}\n", encoding="utf-8")
    capsys.readouterr()
    assert _schemas.main(["--check", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out == (
        f"stale schema: {tmp_path / 'Ulimit.json'} (run python -m buildsdk._schemas)\n"
    )


def test_build_options_schema_describes_the_fields() -> None:
    schema = json.loads((SCHEMA_DIR / "BuildOptions.json").read_text(encoding="utf-8"))
    assert schema["additionalProperties"] is False
    # fileobj is a Python object and has no JSON form.
    assert set(schema["properties"]) == set(BuildOptions.model_fields) - {"fileobj"}
    assert schema["properties"]["version"]["enum"] == ["1", "2"]
