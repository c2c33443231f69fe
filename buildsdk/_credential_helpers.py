"""The Docker credential-helper protocol: running `docker-credential-<name>` programs.

Why this module exists: `credsStore` and `credHelpers` in config.json name programs that
hold the credentials (docker-credential-helpers: `get` reads a server URL on stdin and
prints `{"ServerURL","Username","Secret"}`, `Username == "<token>"` means the secret is an
identity token, `list` prints `{"<url>": "<username>"}`). Starting them, bounding them in
time and reading their answers is kept apart from the pure credential values
(`_registry_auth`) and from reading config.json (`auth`).

Helper output is never echoed when it could hold a secret: errors quote only a short
plain-text line, never JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import SecretStr

from buildsdk._registry_auth import RegistryAuth
from buildsdk.errors import CredentialsError

if TYPE_CHECKING:
    import subprocess

__all__ = [
    "DEFAULT_HELPER_TIMEOUT",
    "HELPER_PREFIX",
    "credential_helper_get",
    "credential_helper_list",
]

DEFAULT_HELPER_TIMEOUT = 30.0
"""Seconds a `docker-credential-*` program may run before it is killed."""

HELPER_PREFIX = "docker-credential-"
"""What a helper's program name starts with (`credsStore: "pass"` runs `docker-credential-pass`)."""
_TOKEN_USERNAME = "<token>"
_NOT_FOUND_MESSAGE = "credentials not found in native keychain"
_MAX_HELPER_MESSAGE = 200


def _run_helper(
    helper: str, action: str, stdin: str, environ: Mapping[str, str], timeout: float
) -> str:
    """Run `docker-credential-<helper> <action>` with `stdin`; return its standard output.

    The program is looked up on `environ["PATH"]` and runs with `environ` as its
    environment. Raises `CredentialsError` when it is missing, fails, or runs longer than
    `timeout` seconds (it is then killed with its children), and `_NotFound` when it
    answers with the protocol's "credentials not found" message.
    """
    program = HELPER_PREFIX + helper
    if not helper or "/" in helper or os.sep in helper:
        raise CredentialsError(f"credential helper name {helper!r} is not a plain program name")
    path = shutil.which(program, path=environ.get("PATH", os.defpath))
    if path is None:
        raise CredentialsError(f"credential helper {program} was not found on PATH")
    # Imported here: most programs never run a helper (and clients import this module).
    import subprocess

    try:
        proc = subprocess.Popen(
            [path, action],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environ,
            # Its own process group, so a timeout kills the helper's children too
            # (a shell-script helper would otherwise keep the pipes open).
            start_new_session=True,
        )
    except OSError as exc:
        raise CredentialsError(
            f"credential helper {program} could not be started: {exc.strerror or exc}"
        ) from None
    out = err = b""
    timed_out = False
    try:
        out, err = proc.communicate(stdin.encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        timed_out = True
    if timed_out:
        # Raised outside the handler so the error does not keep TimeoutExpired (and the
        # partial output it carries) as its context.
        raise CredentialsError(
            f"credential helper {program} did not answer {action!r} within {timeout:g} s"
        )
    text = out.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        if text.strip() == _NOT_FOUND_MESSAGE:
            raise _NotFound(program)
        detail = _helper_message(text) or _helper_message(err.decode("utf-8", "replace"))
        suffix = f": {detail}" if detail else ""
        raise CredentialsError(
            f"credential helper {program} failed on {action!r} "
            f"(exit status {proc.returncode}){suffix}"
        )
    return text


class _NotFound(Exception):
    """The helper answered that it holds no credentials for the server asked about."""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _helper_message(text: str) -> str:
    """A helper's error text fit for an exception: one short line, never JSON.

    Helpers print errors on stdout; a JSON answer on a failing exit could carry a secret,
    so only plain text is quoted.
    """
    stripped = text.strip()
    if not stripped or stripped[0] in "{[":
        return ""
    line = stripped.splitlines()[0]
    return line if len(line) <= _MAX_HELPER_MESSAGE else line[:_MAX_HELPER_MESSAGE] + "..."


def _helper_environ(
    env: Mapping[str, str] | None, extra_env: Mapping[str, str] | None
) -> dict[str, str]:
    environ = dict(os.environ if env is None else env)
    environ.update(extra_env or {})
    return environ


def credential_helper_get(
    helper: str,
    server: str,
    *,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_HELPER_TIMEOUT,
) -> RegistryAuth | None:
    """Ask `docker-credential-<helper> get` for `server`'s credentials; None if it has none.

    The helper runs with `env` (default `os.environ`) plus `extra_env`, found on that
    environment's PATH. A `Username` of `<token>` makes the secret an identity token.
    Raises `CredentialsError` when the helper is missing, fails, answers something that
    is not the protocol's JSON, or runs longer than `timeout` seconds.
    """
    program = HELPER_PREFIX + helper
    environ = _helper_environ(env, extra_env)
    try:
        out = _run_helper(helper, "get", server, environ, timeout)
    except _NotFound:
        return None
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise CredentialsError(
            f"credential helper {program} answered 'get' for {server} with something "
            "that is not the protocol's JSON object"
        )
    username = answer.get("Username")
    secret = answer.get("Secret")
    if not isinstance(username, str) or not isinstance(secret, str):
        raise CredentialsError(
            f"credential helper {program} answered 'get' for {server} without "
            "string Username and Secret fields"
        )
    if username == _TOKEN_USERNAME:
        return RegistryAuth(identity_token=SecretStr(secret), server_address=server)
    return RegistryAuth(
        username=username or None,
        password=SecretStr(secret) if secret else None,
        server_address=server,
    )


def credential_helper_list(
    helper: str,
    *,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_HELPER_TIMEOUT,
) -> list[str]:
    """The server URLs `docker-credential-<helper> list` holds credentials for.

    Runs like `credential_helper_get` and raises `CredentialsError` in the same cases.
    """
    program = HELPER_PREFIX + helper
    environ = _helper_environ(env, extra_env)
    try:
        out = _run_helper(helper, "list", "unused", environ, timeout)
    except _NotFound:
        return []
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    if answer is None and not out.strip():
        return []
    if not isinstance(answer, dict):
        raise CredentialsError(
            f"credential helper {program} answered 'list' with something that is not "
            "the protocol's JSON object"
        )
    return [key for key in answer if isinstance(key, str)]
