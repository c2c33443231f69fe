"""Every error buildsdk raises, in one small tree.

```
BuildSDKError
├── ContextError            the build context cannot be packed (unreadable file, bad pattern,
│                           missing Dockerfile, a file that changed while it was read)
├── UnsupportedOption       an option needs a newer API version or another builder
├── CredentialsError        a credential helper is missing or failed when its credentials
│                           were needed
├── ConfigError             the engine address, TLS files or a docker context are unusable
│                           (defined in buildsdk.endpoint; also a ValueError)
├── ConfigFileError         config.json exists but cannot be read (buildsdk._configfile)
├── MissingDependency       an optional package is not installed (h2 for sessions,
│                           cryptography for ssh key files); names the extra to install
├── EngineUnreachable       no connection could be made; names the address tried
├── UnsupportedEngine       the engine's API version is older than buildsdk supports
├── EngineTimeout           connecting or reading took longer than allowed
├── StreamError             the response stream broke off or is not the engine's JSON
├── SessionError            a BuildKit session cannot be opened, or cannot serve the build
│   ├── SecretUnavailable   a secret's environment variable is not set, or its file
│   │                       cannot be read or is too large
│   ├── SSHAgentUnavailable no ssh-agent socket to forward (SSH_AUTH_SOCK is not set, or
│   │                       the path is not a socket)
│   ├── SSHKeyError         an ssh key file cannot be read, decrypted or served
│   └── ExportError         an export the engine sends through the session cannot be
│                           written (a path escaping its destination, an unwritable file)
├── BuildError              the engine reported that the build failed
├── GrpcCallError           a BuildKit Control API call (POST /grpc) ended with a gRPC
│                           error status: code, message and the decoded details
└── APIError                the engine answered with an HTTP error status
    ├── BadRequest          400
    ├── Unauthorized        401
    ├── Forbidden           403
    ├── NotFound            404
    ├── Conflict            409
    ├── ServerError         500 and any other 5xx not listed
    └── ServiceUnavailable  503
```

Invalid option values are reported by pydantic as `pydantic.ValidationError` while the
options object is constructed, before anything is sent; that class is pydantic's own and
is not part of this tree.

No error message here ever contains a credential: messages are built from the engine's
answer, paths and option names only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from buildsdk._grpc.status import Detail
    from buildsdk.events import BuildEvent

__all__ = [
    "APIError",
    "BadRequest",
    "BuildError",
    "BuildSDKError",
    "Conflict",
    "ContextError",
    "CredentialsError",
    "EngineTimeout",
    "EngineUnreachable",
    "ExportError",
    "Forbidden",
    "GrpcCallError",
    "MissingDependency",
    "NotFound",
    "SSHAgentUnavailable",
    "SSHKeyError",
    "SecretUnavailable",
    "ServerError",
    "ServiceUnavailable",
    "SessionError",
    "StreamError",
    "Unauthorized",
    "UnsupportedEngine",
    "UnsupportedOption",
    "api_error_for_status",
]


class BuildSDKError(Exception):
    """Base class of every error buildsdk raises on purpose."""


class ContextError(BuildSDKError):
    """The build context could not be packed; `path` names the file or pattern at fault."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class UnsupportedOption(BuildSDKError):
    """An option cannot be sent: the API version is too old, or the builder ignores it."""

    def __init__(
        self,
        option: str,
        message: str,
        *,
        required: str | None = None,
        given: str | None = None,
    ) -> None:
        super().__init__(message)
        self.option = option
        self.required = required
        self.given = given


class CredentialsError(BuildSDKError):
    """A credential helper is missing or failed while its credentials were needed."""


class MissingDependency(BuildSDKError, ImportError):
    """An optional package a feature needs is not installed; the message names the extra."""


class EngineUnreachable(BuildSDKError):
    """No connection to the engine could be made at `address`."""

    def __init__(self, address: str, reason: str, hint: str | None = None) -> None:
        text = f"cannot reach the engine at {address}: {reason}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)
        self.address = address
        self.reason = reason
        self.hint = hint


class UnsupportedEngine(BuildSDKError):
    """The engine's API version is older than the oldest one buildsdk speaks."""


class EngineTimeout(BuildSDKError):
    """Connecting to the engine or waiting for its answer took longer than allowed."""


class StreamError(BuildSDKError):
    """The engine's response stream broke off or could not be decoded."""


class SessionError(BuildSDKError):
    """A BuildKit session could not be opened, or cannot serve what the build needs."""


class SecretUnavailable(SessionError):
    """A secret's value cannot be had: its variable is unset, or its file is unreadable or
    too large. `secret_id` names the secret; the message names the source, never the value."""

    def __init__(self, message: str, *, secret_id: str) -> None:
        super().__init__(message)
        self.secret_id = secret_id


class SSHAgentUnavailable(SessionError):
    """No ssh-agent socket to forward: `SSH_AUTH_SOCK` is not set, or the path is not a socket."""


class SSHKeyError(SessionError):
    """An ssh key file cannot be used: missing, unreadable, encrypted without its
    passphrase, or of a type buildsdk cannot serve."""


class ExportError(SessionError):
    """An export the engine sends through the session (`local` or `tar` output with a
    destination) cannot be written: an entry escapes the destination, the stream breaks the
    transfer protocol, or the file system refuses a write."""


class BuildError(BuildSDKError):
    """The engine reported a failed build; carries its message, exit code, the whole log, the
    events and, for a Control API build, the failing step and its Dockerfile excerpt."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        log: str = "",
        events: Sequence[BuildEvent] = (),
        step: str | None = None,
        source: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.log = log
        self.events = list(events)
        self.step = step
        """The failing step's name (Control API builds), e.g. `[2/2] RUN make`."""
        self.source = source
        """The Dockerfile excerpt of the failing step as buildx prints it (Control API)."""


class GrpcCallError(BuildSDKError):
    """A BuildKit Control API call ended with a gRPC error status: `code` and `code_name`
    (`12`, `"UNIMPLEMENTED"`), the engine's `message`, and `details`, the decoded
    `google.rpc.Status` details (BuildKit's stack, source and exit-code records)."""

    def __init__(
        self,
        method: str,
        code: int,
        message: str,
        *,
        code_name: str = "",
        details: Sequence[Detail] = (),
    ) -> None:
        name = code_name or str(code)
        super().__init__(f"{method} failed: {name} ({code}): {message}")
        self.method = method
        self.code = code
        self.code_name = name
        self.message = message
        self.details = tuple(details)


class APIError(BuildSDKError):
    """The engine answered with an HTTP error; `message` is the engine's own text."""

    def __init__(self, status_code: int, message: str, *, method: str = "", path: str = "") -> None:
        where = f" ({method} {path})" if method and path else ""
        super().__init__(f"{status_code}: {message}{where}")
        self.status_code = status_code
        self.message = message
        self.method = method
        self.path = path


class BadRequest(APIError):
    """The engine rejected the request as invalid (HTTP 400)."""


class Unauthorized(APIError):
    """The engine or a registry behind it refused the credentials (HTTP 401)."""


class Forbidden(APIError):
    """The engine refused the operation (HTTP 403)."""


class NotFound(APIError):
    """The engine does not know the object or endpoint (HTTP 404)."""


class Conflict(APIError):
    """The request conflicts with the engine's state (HTTP 409)."""


class ServerError(APIError):
    """The engine failed while handling the request (HTTP 500 and other 5xx)."""


class ServiceUnavailable(APIError):
    """The engine is not able to serve the request now (HTTP 503)."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    503: ServiceUnavailable,
}


def api_error_for_status(
    status_code: int, message: str, *, method: str = "", path: str = ""
) -> APIError:
    """Return the `APIError` subclass instance that fits an HTTP status code."""
    cls = _BY_STATUS.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else APIError
    return cls(status_code, message, method=method, path=path)
