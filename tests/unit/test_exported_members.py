"""The public door: `buildsdk.__all__` is sorted, complete and documented."""

from __future__ import annotations

import inspect

import buildsdk


def test_all_is_sorted_and_unique() -> None:
    assert list(buildsdk.__all__) == sorted(set(buildsdk.__all__))


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in buildsdk.__all__:
        member = getattr(buildsdk, name)
        doc = inspect.getdoc(member)
        assert doc, f"buildsdk.{name} has no docstring"


def test_public_names_are_all_exported() -> None:
    public = {
        name
        for name, member in vars(buildsdk).items()
        if not name.startswith("_") and not inspect.ismodule(member)
    }
    assert public == set(buildsdk.__all__)


def test_version_is_the_packages() -> None:
    from importlib.metadata import version

    assert buildsdk.__version__ == version("buildsdk")
