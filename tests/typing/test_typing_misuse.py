"""mypy rejects misuse of the option models (checked with warn_unused_ignores)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from mypy import api
from pydantic import BaseModel

from buildsdk.build import BuildOptions, ContainerLimits
from buildsdk.prune import PruneFilters, PruneOptions

ROOT = Path(__file__).resolve().parents[2]
MISUSE = Path(__file__).resolve().parent / "misuse.py"


def test_mypy_rejects_every_misuse_and_accepts_correct_use() -> None:
    stdout, stderr, status = api.run(
        [
            "--config-file",
            str(ROOT / "mypy.ini"),
            "--warn-unused-ignores",
            "--no-incremental",
            str(MISUSE),
        ]
    )
    assert status == 0, stdout + stderr
    assert "Success: no issues found in 1 source file" in stdout


def test_the_misuse_file_is_not_vacuous() -> None:
    text = MISUSE.read_text(encoding="utf-8")
    ignores = re.findall(r"# type: ignore\[[a-z-]+\]", text)
    assert len(ignores) >= 25
    # Every ignore names its error code: a bare ignore would hide which error happened.
    assert text.count("# type: ignore") == len(ignores)


def _declared_init_parameters(module: Path, class_name: str) -> dict[str, str]:
    """Keyword names and default source text of the typed `__init__` a model declares."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in ast.walk(node):
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = item.args
                    return {
                        arg.arg: ast.unparse(default) if default is not None else ""
                        for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                    }
    raise AssertionError(f"{class_name} declares no __init__ for type checkers")


@pytest.mark.parametrize(
    ("module", "model"),
    [
        ("build.py", BuildOptions),
        ("build.py", ContainerLimits),
        ("prune.py", PruneOptions),
        ("prune.py", PruneFilters),
    ],
)
def test_typed_init_matches_the_fields(module: str, model: type[BaseModel]) -> None:
    # The __init__ seen by mypy is written by hand; it must name every field with its default.
    declared = _declared_init_parameters(ROOT / "buildsdk" / module, model.__name__)
    assert list(declared) == list(model.model_fields)
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        expected = "None" if default in ((), {}) else repr(default)
        assert declared[name] == expected, name
