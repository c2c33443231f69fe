"""docker-py's exception classes for `buildsdk.compat`, so `except docker.errors.X:` still works.

Why this module exists: code written for docker-py catches `docker.errors.APIError`,
`docker.errors.BuildError` and friends, and reads `explanation`, `response.status_code`,
`is_client_error()`, `build_log`. buildsdk raises its own tree (`buildsdk.errors`), which
docker-py's `except` clauses do not catch. compat therefore re-raises every buildsdk error
as an instance of a class that derives from both the buildsdk class (so `except
buildsdk.APIError` keeps working) and the docker-py class docker-py raises in that
situation, with docker-py's attributes on top of buildsdk's.

docker-py is optional: it is looked up when this module is imported, and without it
`translate` hands buildsdk's own errors back unchanged. The combined classes are made on
first use, one per (buildsdk class, docker-py class) pair, because their docker-py half
only exists at run time; an instance is re-made from the buildsdk error's attributes
without calling any `__init__`, since the two halves' constructors take different
arguments.

Which docker-py class stands for which buildsdk error:

```
buildsdk                          docker-py
APIError (any status)             APIError; NotFound for 404; ImageNotFound for a 404 about
                                  an image (docker-py decides by the engine's words, as here)
BuildError                        BuildError (compat.BuildError, with msg and build_log)
UnsupportedOption                 InvalidVersion
ConfigError about TLS files       TLSParameterError (raised by compat's constructor)
any other (ConfigError, ConfigFileError, ContextError, CredentialsError)
                                  DockerException
EngineUnreachable                 requests.exceptions.ConnectionError (what docker-py lets
                                  through when the engine cannot be reached)
EngineTimeout                     requests.exceptions.ReadTimeout
StreamError                       StreamParseError
```
"""

from __future__ import annotations

import http
import importlib
import json
from collections.abc import Sequence
from typing import Any

from buildsdk import errors as _errors
from buildsdk.endpoint import ConfigError

__all__ = [
    "DOCKER_PY",
    "ArgumentTypeError",
    "BuildError",
    "ErrorResponse",
    "InvalidArgument",
    "TLSParameterError",
    "translate",
]


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_docker_errors: Any = _import("docker.errors")
# docker-py depends on requests, so it is there whenever docker-py is.
_requests_errors: Any = _import("requests.exceptions") if _docker_errors is not None else None

DOCKER_PY = _docker_errors is not None
"""Whether docker-py is importable, and compat's errors are therefore also docker-py's."""


def _docker_bases(name: str) -> tuple[type[BaseException], ...]:
    """`(docker.errors.<name>,)` when docker-py is installed, else `()`."""
    if _docker_errors is None:
        return ()
    return (getattr(_docker_errors, name),)


# docker-py calls a 404 an ImageNotFound when the engine's message holds one of these.
_IMAGE_NOT_FOUND_WORDS = (
    "no such image",
    "not found: does not exist or no pull access",
    "repository does not exist",
    "was found but does not match the specified platform",
)


class ErrorResponse:
    """What an HTTP error's `response` offers, as docker-py's `requests.Response` does.

    Holds the status, its reason phrase, the URL path and the engine's message (as the
    JSON body `{"message": ...}` the engine sends); no headers, no credentials.
    """

    def __init__(self, status_code: int, message: str, url: str) -> None:
        self.status_code = status_code
        """The HTTP status code."""
        self.url = url
        """The request's address (without its query)."""
        self.message = message
        """The engine's error message."""
        try:
            self.reason = http.HTTPStatus(status_code).phrase
            """The status's reason phrase (`Not Found`)."""
        except ValueError:
            self.reason = ""
        self.ok = False
        """Always false: this is an error answer."""

    @property
    def text(self) -> str:
        """The error body as the engine sends it: `{"message": "..."}`."""
        return json.dumps({"message": self.message})

    @property
    def content(self) -> bytes:
        """`text` as bytes."""
        return self.text.encode()

    def json(self) -> dict[str, Any]:
        """The error body decoded: `{"message": ...}`."""
        return {"message": self.message}

    def __repr__(self) -> str:
        return f"<ErrorResponse [{self.status_code}]>"


class _DockerPyAPIError(_errors.BuildSDKError):
    """docker-py's `APIError` face, put in front of a buildsdk `APIError` subclass."""

    # docker-py's APIError is a requests.HTTPError, which has these two attributes.
    request: Any = None
    _base_url: str = ""

    @property
    def status_code(self) -> int:
        """The HTTP status code (docker-py reads it from `response`; both agree here)."""
        return int(self.__dict__["status_code"])

    @status_code.setter
    def status_code(self, value: int) -> None:
        self.__dict__["status_code"] = value

    @property
    def explanation(self) -> str:
        """The engine's message, as docker-py names it."""
        return str(self.__dict__.get("message", ""))

    @property
    def response(self) -> ErrorResponse:
        """The answer's status, reason and message, shaped like `requests.Response`."""
        path = str(self.__dict__.get("path", ""))
        return ErrorResponse(self.status_code, self.explanation, self._base_url + path)

    def is_error(self) -> bool:
        """Whether the status is a client or server error."""
        return self.is_client_error() or self.is_server_error()

    def is_client_error(self) -> bool:
        """Whether the status is 4xx."""
        return 400 <= self.status_code < 500

    def is_server_error(self) -> bool:
        """Whether the status is 5xx."""
        return 500 <= self.status_code < 600

    def __str__(self) -> str:
        # docker-py's wording, so logs and `str(exc)` checks read the same.
        response = self.response
        kind = "Client" if self.is_client_error() else "Server" if self.is_server_error() else ""
        text = str(self.args[0]) if self.args else ""
        if kind:
            text = f"{response.status_code} {kind} Error for {response.url}: {response.reason}"
        if self.explanation:
            text = f'{text} ("{self.explanation}")'
        return text


class BuildError(*_docker_bases("BuildError"), _errors.BuildError):  # type: ignore[misc]
    """A failed build: `buildsdk.BuildError` plus docker-py's `msg` and `build_log`.

    With docker-py installed it is also a `docker.errors.BuildError`. `build_log` is every
    message the engine sent, as dicts, in order (docker-py gives an iterator over the same
    dicts; a list iterates the same way).
    """

    def __init__(
        self,
        reason: str,
        build_log: Sequence[dict[str, Any]],
        *,
        code: int | None = None,
        log: str = "",
        events: Sequence[Any] = (),
    ) -> None:
        # buildsdk's constructor, not docker-py's: the two take different arguments.
        _errors.BuildError.__init__(self, reason, code=code, log=log, events=events)
        self.msg = reason
        """The engine's error message (docker-py's name for it)."""
        self.build_log = list(build_log)
        """Every message of the build, decoded, in stream order."""


class InvalidArgument(_errors.BuildSDKError, ValueError, *_docker_bases("InvalidArgument")):  # type: ignore[misc]
    """A build argument docker-py would refuse with `DockerException`, or one buildsdk checks.

    With docker-py installed it is a `docker.errors.InvalidArgument` (a `DockerException`):
    a bad tag, an unknown `container_limits` key, `gzip` with an `encoding`, and every other
    value buildsdk refuses before sending (docker-py sends those and the engine refuses them).
    The pydantic error that found it, if any, is its `__cause__`.
    """


class ArgumentTypeError(_errors.BuildSDKError, TypeError):
    """Arguments that do not make a build, where docker-py raises `TypeError`.

    Neither `path` nor `fileobj`; `custom_context` without `fileobj`; a `path` that is
    neither a directory nor a remote URL.
    """


class TLSParameterError(ConfigError, *_docker_bases("TLSParameterError")):  # type: ignore[misc]
    """The TLS settings given to compat's constructor are unusable (a file missing or bad).

    A `buildsdk.endpoint.ConfigError`, and with docker-py installed also a
    `docker.errors.TLSParameterError`; `msg` is the reason.
    """

    def __init__(self, msg: str) -> None:
        # Not docker-py's constructor: it leaves `args` empty, which hides the reason.
        Exception.__init__(self, msg)
        self.msg = msg
        """Why the TLS settings cannot be used."""

    def __str__(self) -> str:
        return self.msg


def _docker_class_for(error: _errors.BuildSDKError) -> Any:
    """The docker-py (or requests) class docker-py raises where buildsdk raised `error`."""
    errors = _docker_errors
    if isinstance(error, _errors.APIError):
        if error.status_code == 404:
            words = error.message.lower()
            if any(fragment in words for fragment in _IMAGE_NOT_FOUND_WORDS):
                return errors.ImageNotFound
            return errors.NotFound
        return errors.APIError
    if isinstance(error, _errors.UnsupportedOption):
        return errors.InvalidVersion
    if isinstance(error, _errors.EngineUnreachable):
        return _requests_errors.ConnectionError
    if isinstance(error, _errors.EngineTimeout):
        return _requests_errors.ReadTimeout
    if isinstance(error, _errors.StreamError):
        return errors.StreamParseError
    return errors.DockerException


_combined: dict[tuple[type[Exception], Any], type[Exception]] = {}


def _combined_class(cls: type[Exception], docker_cls: Any) -> type[Exception]:
    key = (cls, docker_cls)
    found = _combined.get(key)
    if found is None:
        namespace: dict[str, Any] = {
            "__module__": "buildsdk.compat",
            "__doc__": f"buildsdk's {cls.__name__} that is also docker-py's {docker_cls.__name__}.",
        }
        face: tuple[type, ...] = ()
        if issubclass(cls, _errors.APIError):
            face = (_DockerPyAPIError,)
        else:
            # requests' exceptions carry these; the instance is never constructed by
            # requests, so they would otherwise be missing.
            namespace.update(request=None, response=None)
        found = type(cls.__name__, (cls, *face, docker_cls), namespace)
        _combined[key] = found
    return found


def translate(error: Exception, base_url: str = "") -> Exception:
    """`error` as compat raises it: also an instance of docker-py's class when it is installed.

    Errors that are not buildsdk's, or already docker-py's, come back unchanged. `base_url`
    (`http+docker://localhost`, `https://host:2376`) starts the URL of an HTTP error's
    `response`, as docker-py's does.
    """
    if _docker_errors is None or not isinstance(error, _errors.BuildSDKError):
        return error
    docker_exception: type[Exception] = _docker_errors.DockerException
    if isinstance(error, docker_exception):
        return error
    if isinstance(error, _errors.BuildError):
        failure: Exception = BuildError(
            error.message, (), code=error.code, log=error.log, events=error.events
        )
        failure.__suppress_context__ = True
        return failure.with_traceback(error.__traceback__)
    cls = _combined_class(type(error), _docker_class_for(error))
    # Re-made from the attributes, not constructed: the buildsdk and docker-py halves
    # expect different constructor arguments.
    twin: Exception = cls.__new__(cls, *error.args)
    twin.args = error.args
    twin.__dict__.update(error.__dict__)
    if isinstance(twin, _DockerPyAPIError):
        twin._base_url = base_url
    if isinstance(twin, _docker_errors.StreamParseError):
        twin.msg = str(error)
    # Raised in place of `error`: show the cause `error` had, not `error` itself.
    twin.__cause__ = error.__cause__
    twin.__suppress_context__ = True
    return twin.with_traceback(error.__traceback__)
