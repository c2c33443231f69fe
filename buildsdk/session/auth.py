"""Registry credentials for BuildKit: the session's `Auth` service.

BuildKit ignores `X-Registry-Config`; when it pulls a base image that needs a login it asks
the client through the session instead. `AuthService` answers `Auth/Credentials` from the
same sources as the classic path: credentials given to the client in code first, then
config.json (DOCKER_AUTH_CONFIG, credential helpers, `auths`). The engine asks for the host
it talks to, so Docker Hub arrives as `registry-1.docker.io` and is looked up under
`https://index.docker.io/v1/`, as the Docker CLI does.

Token authorities (`GetTokenAuthority`, `VerifyTokenAuthority`) and client-side token
fetching (`FetchToken`) are answered Unimplemented: the engine then fetches tokens itself
with the credentials it got, which is what the Docker CLI of the same era does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from buildsdk._grpc.status import GrpcError, Status
from buildsdk._registry_auth import RegistryAuth, auth_config_key
from buildsdk.errors import CredentialsError
from buildsdk.session._messages import CredentialsRequest, CredentialsResponse

if TYPE_CHECKING:
    from buildsdk.session._server import Call

__all__ = ["AUTH_METHODS", "CREDENTIALS", "AuthService", "credentials_response"]

logger = logging.getLogger("buildsdk.session")

CREDENTIALS: Final = "/moby.filesync.v1.Auth/Credentials"
_UNIMPLEMENTED: Final = (
    "/moby.filesync.v1.Auth/FetchToken",
    "/moby.filesync.v1.Auth/GetTokenAuthority",
    "/moby.filesync.v1.Auth/VerifyTokenAuthority",
)
AUTH_METHODS: Final = (CREDENTIALS, *_UNIMPLEMENTED)
"""Every Auth method a session exposes: Credentials answered, the token methods refused."""

Lookup = Callable[[str], "RegistryAuth | None"]
"""Finds the configured credentials for a registry host (may run a credential helper)."""


def credentials_response(auth: RegistryAuth | None) -> CredentialsResponse:
    """What the engine gets for `auth`: an identity token alone, else user and password."""
    if auth is None:
        return CredentialsResponse()
    if auth.identity_token is not None and auth.identity_token.get_secret_value():
        return CredentialsResponse("", auth.identity_token.get_secret_value())
    password = auth.password.get_secret_value() if auth.password is not None else ""
    return CredentialsResponse(auth.username or "", password)


class AuthService:
    """Answers `Auth/Credentials` from credentials given in code, then `lookup`."""

    def __init__(self, given: Mapping[str, RegistryAuth], lookup: Lookup) -> None:
        self._given = {auth_config_key(name): auth for name, auth in given.items()}
        self._lookup = lookup

    def handlers(self) -> dict[str, object]:
        """The gRPC methods this service answers."""
        methods: dict[str, object] = {CREDENTIALS: self.credentials}
        for method in _UNIMPLEMENTED:
            methods[method] = _unimplemented
        return methods

    def find(self, host: str) -> RegistryAuth | None:
        """The credentials for `host` (blocking: a credential helper may run)."""
        key = auth_config_key(host)
        if key in self._given:
            return self._given[key]
        try:
            return self._lookup(host)
        except CredentialsError as exc:
            # The engine then pulls anonymously and reports the registry's refusal; the
            # helper's failure is worth a warning of its own (it names no secret).
            logger.warning("%s", exc)
            return None

    async def credentials(self, call: Call) -> None:
        """Reply with the host's user name and password (both empty when there are none)."""
        request = CredentialsRequest.decode(await call.recv_one())
        auth = await asyncio.to_thread(self.find, request.host)
        await call.send(credentials_response(auth).encode())


async def _unimplemented(call: Call) -> None:
    raise GrpcError(Status.UNIMPLEMENTED, f"{call.method} is not implemented by buildsdk")
