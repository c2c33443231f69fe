"""What `from buildsdk import Client, BuildOptions` imports, pinned so that a regression fails.

Start-up time is measured by benchmarks/bench_startup.py; this test pins its cause instead:
modules that only some programs need stay out of a fresh process until they are used.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# Each is imported by the code that needs it: the transports (httpcore, and h2 when it is
# installed; anyio) when a client is made, the event and result models when a build is
# described, the context tar code when one is sent, the session runtime and its asyncio
# when a build starts, the prune models by `prune_builds`.
_DEFERRED = [
    "anyio",
    "asyncio",
    "buildsdk.context",
    "buildsdk.events",
    "buildsdk.prune",
    "buildsdk.results",
    "buildsdk.session._messages",
    "buildsdk.session._runtime",
    "buildsdk.transports",
    "h2",
    "httpcore",
]


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.fixture(scope="module")
def after_import() -> set[str]:
    return _modules_after("from buildsdk import Client, BuildOptions")


@pytest.mark.parametrize("module", _DEFERRED)
def test_importing_the_client_and_options_leaves_out(module: str, after_import: set[str]) -> None:
    assert "buildsdk.client" in after_import
    assert module not in after_import


def test_making_a_client_imports_the_transports_but_no_session_machinery() -> None:
    loaded = _modules_after(
        "from buildsdk import Client, DockerConfig\n"
        "Client('unix:///nonexistent/docker.sock', env={},"
        " config=DockerConfig({}, env={}, detect_default_store=False)).close()"
    )
    assert {"buildsdk.transports", "httpcore"} <= loaded
    assert "buildsdk.session._runtime" not in loaded


def test_models_whose_validators_are_built_on_first_use_validate_in_a_fresh_process() -> None:
    code = (
        "from buildsdk import LogEvent, VersionInfo\n"
        "print(LogEvent.model_validate({'text': 'hi'}).model_dump_json())\n"
        "print(VersionInfo.model_validate({'Version': '27.0', 'Extra': 1}).version)\n"
        "try:\n"
        "    LogEvent.model_validate({'text': 3})\n"
        "except ValueError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ['{"kind":"log","text":"hi"}', "27.0", "ValidationError"]
