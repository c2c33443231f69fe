"""What `from buildsdk import Client, BuildOptions` imports, pinned so that a regression fails.

Start-up time is measured by benchmarks/bench_startup.py; this test pins its cause instead:
modules that only some programs need stay out of a fresh process until they are used.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


_CLASSIC_BUILD = """
import sys
import httpx
import buildsdk.transports
from buildsdk import BuildOptions, Client, DockerConfig

def answer(request):
    if request.url.path.endswith("/_ping"):
        return httpx.Response(200, headers={"Api-Version": "1.41"})
    request.read()
    body = b'{"stream":"Step 1/1 : FROM scratch"}\\r\\n{"aux":{"ID":"sha256:' + b"a" * 64 + b'"}}'
    return httpx.Response(200, stream=httpx.ByteStream(body + b"\\r\\n"))

buildsdk.transports.create_transport = lambda *args, **kwargs: (httpx.MockTransport(answer), "http://e")
config = DockerConfig({}, env={}, detect_default_store=False)
with Client("unix:///mock/docker.sock", env={}, config=config) as docker:
    result = docker.build(BuildOptions(path=sys.argv[1])).result()
print(result.image_id)
print("\\n".join(sorted(sys.modules)))
"""


def test_a_build_without_a_session_never_imports_asyncio(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    done = subprocess.run(
        [sys.executable, "-c", _CLASSIC_BUILD, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    image_id, *modules = done.stdout.split()
    assert image_id == "sha256:" + "a" * 64
    assert "buildsdk.session._runtime" in modules
    assert "asyncio" not in modules


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
