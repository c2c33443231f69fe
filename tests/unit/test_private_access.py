"""No module of buildsdk reaches into another module's private names.

A leading underscore says "this module's business": when another module imports such a
name or reads such an attribute, the two modules can no longer change apart, and the
private name has become an API nobody documented. Read from the source: an attribute
`obj._name` (on anything but `self` or `cls`) must be one its own module defines, and
`from buildsdk.x import _name` is refused outright.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "buildsdk"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_here(tree: ast.AST) -> set[str]:
    """The private names a module defines: functions, classes, attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return {n for n in names if _private(n)}


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(source: str, module: str) -> list[str]:
    """Each place in `source` that reads or imports another module's private name (the
    package's private modules themselves may be imported: they are the package's own)."""
    tree = ast.parse(source)
    own = _defined_here(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("buildsdk"):
            for alias in node.names:
                if _private(alias.name) and not _is_module(f"{node.module}.{alias.name}"):
                    found.append(f"{module}:{node.lineno} imports {node.module}.{alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if node.attr not in own:
                found.append(f"{module}:{node.lineno} reads .{node.attr}")
    return found


def test_the_check_sees_a_foreign_private_attribute_and_import() -> None:
    source = (
        "from buildsdk._protocol import _versioned\n"
        "class A:\n"
        "    def __init__(self): self._mine = 1\n"
        "def f(a, b):\n"
        "    return a._mine, b._theirs, a.__class__\n"
    )
    assert violations(source, "m") == [
        "m:1 imports buildsdk._protocol._versioned",
        "m:5 reads ._theirs",
    ]


def test_no_module_reads_another_modules_private_names() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = str(path.relative_to(PACKAGE.parent))
        found += violations(path.read_text(encoding="utf-8"), module)
    assert found == []
