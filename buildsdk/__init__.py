"""buildsdk: build container images through the Docker Engine API, typed and streamed.

Everything a user needs is importable from here; the modules behind it are the
implementation and may move.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from buildsdk._decoder import EventDecoder
    from buildsdk._protocol import PingResult, VersionInfo
    from buildsdk._session_options import BuildSecret, SSHForward
    from buildsdk.aio import AsyncBuild, AsyncClient
    from buildsdk.auth import DockerConfig, RegistryAuth
    from buildsdk.build import BuildOptions, BuildOutput, ContainerLimits, Ulimit
    from buildsdk.cache import CachePruneOptions, CachePruneResult, CacheRecord
    from buildsdk.client import Build, Client
    from buildsdk.context import ContextEntry, list_context
    from buildsdk.endpoint import ConfigError, Endpoint, TLSConfig
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
        ExportError,
        Forbidden,
        MissingDependency,
        NotFound,
        SecretUnavailable,
        ServerError,
        ServiceUnavailable,
        SessionError,
        SSHAgentUnavailable,
        SSHKeyError,
        StreamError,
        Unauthorized,
        UnsupportedEngine,
        UnsupportedOption,
    )
    from buildsdk.events import (
        AuxEvent,
        BuildEvent,
        ErrorEvent,
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
    from buildsdk.results import BuildResult, PlatformImage
    from buildsdk.versions import ApiVersion

from buildsdk._version import __version__ as __version__

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
    "BuildSecret",
    "CachePruneOptions",
    "CachePruneResult",
    "CacheRecord",
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
    "ExportError",
    "Forbidden",
    "ImageIdEvent",
    "LogEvent",
    "MissingDependency",
    "NotFound",
    "PingResult",
    "PlatformImage",
    "ProgressDetail",
    "PruneFilters",
    "PruneOptions",
    "PruneResult",
    "RegistryAuth",
    "SSHAgentUnavailable",
    "SSHForward",
    "SSHKeyError",
    "SecretUnavailable",
    "ServerError",
    "ServiceUnavailable",
    "SessionError",
    "StatusEvent",
    "StreamError",
    "TLSConfig",
    "Ulimit",
    "Unauthorized",
    "UnknownEvent",
    "UnsupportedEngine",
    "UnsupportedOption",
    "VersionInfo",
    "VertexEvent",
    "VertexLogEvent",
    "VertexStatusEvent",
    "VertexWarningEvent",
    "list_context",
]

# Submodules load on first use (PEP 562), so `import buildsdk` costs almost nothing and
# a program that only builds options never imports httpx.
_LAZY: dict[str, str] = {
    "APIError": "buildsdk.errors",
    "ApiVersion": "buildsdk.versions",
    "AsyncBuild": "buildsdk.aio",
    "AsyncClient": "buildsdk.aio",
    "AuxEvent": "buildsdk.events",
    "BadRequest": "buildsdk.errors",
    "Build": "buildsdk.client",
    "BuildError": "buildsdk.errors",
    "BuildEvent": "buildsdk.events",
    "BuildOptions": "buildsdk.build",
    "BuildOutput": "buildsdk.build",
    "BuildResult": "buildsdk.results",
    "BuildSecret": "buildsdk._session_options",
    "BuildSDKError": "buildsdk.errors",
    "Client": "buildsdk.client",
    "ConfigError": "buildsdk.endpoint",
    "Conflict": "buildsdk.errors",
    "CachePruneOptions": "buildsdk.cache",
    "CachePruneResult": "buildsdk.cache",
    "CacheRecord": "buildsdk.cache",
    "ContainerLimits": "buildsdk.build",
    "ContextEntry": "buildsdk.context",
    "ContextError": "buildsdk.errors",
    "CredentialsError": "buildsdk.errors",
    "DockerConfig": "buildsdk.auth",
    "Endpoint": "buildsdk.endpoint",
    "EngineTimeout": "buildsdk.errors",
    "EngineUnreachable": "buildsdk.errors",
    "ExportError": "buildsdk.errors",
    "ErrorEvent": "buildsdk.events",
    "EventDecoder": "buildsdk._decoder",
    "Forbidden": "buildsdk.errors",
    "ImageIdEvent": "buildsdk.events",
    "LogEvent": "buildsdk.events",
    "MissingDependency": "buildsdk.errors",
    "NotFound": "buildsdk.errors",
    "PingResult": "buildsdk._protocol",
    "PlatformImage": "buildsdk.results",
    "ProgressDetail": "buildsdk.events",
    "PruneFilters": "buildsdk.prune",
    "PruneOptions": "buildsdk.prune",
    "PruneResult": "buildsdk.prune",
    "RegistryAuth": "buildsdk.auth",
    "SSHAgentUnavailable": "buildsdk.errors",
    "SSHForward": "buildsdk._session_options",
    "SSHKeyError": "buildsdk.errors",
    "SecretUnavailable": "buildsdk.errors",
    "ServerError": "buildsdk.errors",
    "ServiceUnavailable": "buildsdk.errors",
    "SessionError": "buildsdk.errors",
    "StatusEvent": "buildsdk.events",
    "StreamError": "buildsdk.errors",
    "TLSConfig": "buildsdk.endpoint",
    "Ulimit": "buildsdk.build",
    "Unauthorized": "buildsdk.errors",
    "UnknownEvent": "buildsdk.events",
    "UnsupportedEngine": "buildsdk.errors",
    "UnsupportedOption": "buildsdk.errors",
    "VersionInfo": "buildsdk._protocol",
    "VertexEvent": "buildsdk.events",
    "VertexLogEvent": "buildsdk.events",
    "VertexStatusEvent": "buildsdk.events",
    "VertexWarningEvent": "buildsdk.events",
    "list_context": "buildsdk.context",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'buildsdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
