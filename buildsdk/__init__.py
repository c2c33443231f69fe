"""buildsdk: build container images through the Docker Engine API, typed and streamed."""

from buildsdk.errors import (
    APIError,
    BadRequest,
    BuildError,
    BuildSDKError,
    Conflict,
    ContextError,
    CredentialsError,
    EngineTimeout,
    EngineUnreachable,
    Forbidden,
    NotFound,
    ServerError,
    ServiceUnavailable,
    StreamError,
    Unauthorized,
    UnsupportedOption,
)
from buildsdk.versions import ApiVersion

__all__ = [
    "APIError",
    "ApiVersion",
    "BadRequest",
    "BuildError",
    "BuildSDKError",
    "Conflict",
    "ContextError",
    "CredentialsError",
    "EngineTimeout",
    "EngineUnreachable",
    "Forbidden",
    "NotFound",
    "ServerError",
    "ServiceUnavailable",
    "StreamError",
    "Unauthorized",
    "UnsupportedOption",
]
