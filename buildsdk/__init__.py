"""buildsdk: build container images through the Docker Engine API, typed and streamed.

Everything a user needs is importable from here; the modules behind it are the
implementation and may move.
"""

from buildsdk._protocol import PingResult, VersionInfo
from buildsdk.aio import AsyncBuild, AsyncClient
from buildsdk.auth import DockerConfig, RegistryAuth
from buildsdk.build import BuildOptions, BuildOutput, ContainerLimits, Ulimit
from buildsdk.client import Build, Client
from buildsdk.config import ConfigError, Endpoint, TLSConfig
from buildsdk.context import ContextEntry, list_context
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
from buildsdk.events import (
    AuxEvent,
    BuildEvent,
    ErrorEvent,
    EventDecoder,
    ImageIdEvent,
    LogEvent,
    ProgressDetail,
    StatusEvent,
    UnknownEvent,
    VertexEvent,
    VertexLogEvent,
    VertexStatusEvent,
    VertexWarningEvent,
)
from buildsdk.prune import PruneFilters, PruneOptions, PruneResult
from buildsdk.results import BuildResult
from buildsdk.versions import ApiVersion

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "ApiVersion",
    "AsyncBuild",
    "AsyncClient",
    "AuxEvent",
    "BadRequest",
    "Build",
    "BuildError",
    "BuildEvent",
    "BuildOptions",
    "BuildOutput",
    "BuildResult",
    "BuildSDKError",
    "Client",
    "ConfigError",
    "Conflict",
    "ContainerLimits",
    "ContextEntry",
    "ContextError",
    "CredentialsError",
    "DockerConfig",
    "Endpoint",
    "EngineTimeout",
    "EngineUnreachable",
    "ErrorEvent",
    "EventDecoder",
    "Forbidden",
    "ImageIdEvent",
    "LogEvent",
    "NotFound",
    "PingResult",
    "ProgressDetail",
    "PruneFilters",
    "PruneOptions",
    "PruneResult",
    "RegistryAuth",
    "ServerError",
    "ServiceUnavailable",
    "StatusEvent",
    "StreamError",
    "TLSConfig",
    "Ulimit",
    "Unauthorized",
    "UnknownEvent",
    "UnsupportedOption",
    "VersionInfo",
    "VertexEvent",
    "VertexLogEvent",
    "VertexStatusEvent",
    "VertexWarningEvent",
    "list_context",
]
