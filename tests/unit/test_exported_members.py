"""The public door: `buildsdk.__all__` is sorted, complete and documented."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

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
        for name in dir(buildsdk)
        if not name.startswith("_") and not inspect.ismodule(getattr(buildsdk, name))
    }
    public -= {"annotations", "TYPE_CHECKING", "Any"}
    assert public == set(buildsdk.__all__)


def test_importing_the_package_loads_no_transport() -> None:
    # Programs that only describe builds (or the CLI's --help) should not pay for httpx.
    code = "import sys, buildsdk; print('httpx' in sys.modules, 'pydantic' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        buildsdk.Nope  # noqa: B018


def test_version_is_the_packages() -> None:
    from importlib.metadata import version

    assert buildsdk.__version__ == version("buildsdk")


def test_user_agent_names_the_packages_version() -> None:
    from importlib.metadata import version

    from buildsdk._protocol import USER_AGENT

    assert USER_AGENT.split("/") == ["buildsdk", version("buildsdk")]
