"""BuildKit sessions: secrets, SSH forwarding, registry logins, context sync and exports.

A BuildKit build can call its client back while it runs: to read a secret, reach the
user's ssh-agent (or keys buildsdk serves from files), get registry credentials, pull
the build context file by file, or hand over a `local` or `tar` export to write. The
Docker CLI does this over a session (`POST /session`, upgraded to HTTP/2 with gRPC on it,
the engine being the caller). This package is that session in plain Python; it needs the
`h2` package, installed with the `session` extra (`pip install 'buildsdk[session]'`), and
imports it only when a build actually opens a session.

Users meet it through `BuildOptions(secrets=..., ssh=...)` and BuildKit builds of a local
directory, whose context goes through a session by default (`context_transfer`); the
clients open and close sessions themselves.
"""

from __future__ import annotations

from buildsdk._session_options import BuildSecret, SSHForward
from buildsdk.errors import MissingDependency

__all__ = ["BuildSecret", "SSHForward", "h2_available", "require_h2"]


def h2_available() -> bool:
    """Whether the `h2` package (the `session` extra) can be imported."""
    try:
        import h2.connection  # noqa: F401
    except ImportError:
        return False
    return True


def require_h2() -> None:
    """Raise `MissingDependency` naming the extra to install when `h2` is missing."""
    if not h2_available():
        raise MissingDependency(
            "BuildKit sessions (secrets, ssh, registry logins under BuildKit, session "
            "context transfer) need the h2 package: pip install 'buildsdk[session]'"
        )
