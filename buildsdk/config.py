"""The former name of `buildsdk.endpoint` (where the engine is), kept so that imports by
path keep working.

"Config" now means the Docker CLI's configuration file only (`buildsdk.auth.DockerConfig`).
New code imports `buildsdk.endpoint`, or the names `buildsdk` itself exports.
"""

from __future__ import annotations

from buildsdk.endpoint import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_NPIPE_HOST,
    DEFAULT_UNIX_HOST,
    SSH_BASE_URL,
    SSH_CONFIG_ENV,
    ConfigError,
    Endpoint,
    SSHTarget,
    TLSConfig,
    api_version_from_env,
    resolve_endpoint,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_NPIPE_HOST",
    "DEFAULT_UNIX_HOST",
    "SSH_BASE_URL",
    "SSH_CONFIG_ENV",
    "ConfigError",
    "Endpoint",
    "SSHTarget",
    "TLSConfig",
    "api_version_from_env",
    "resolve_endpoint",
]
