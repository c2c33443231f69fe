"""Build secrets: `RUN --mount=type=secret` reads them from the client through the session.

The option model, `BuildSecret`, lives with the other option models in
`buildsdk._session_options` and is re-exported here. A `BuildSecret` names where a secret
comes from, like `docker build --secret`: a file (`src`), an environment variable (`env`)
or bytes given in code (`data`). The value is read only when the engine asks
(`Secrets/GetSecret`), is never part of a repr, log line or error, and never travels in the
build request. Unknown IDs are answered NotFound, which BuildKit turns into "secret X not
found" for a `required=true` mount and skips otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from buildsdk._grpc.status import GrpcError, Status
from buildsdk._session_options import MAX_SECRET_SIZE, BuildSecret
from buildsdk.errors import SecretUnavailable

if TYPE_CHECKING:
    from buildsdk.session._server import Call

__all__ = ["MAX_SECRET_SIZE", "BuildSecret", "SecretsService"]

GET_SECRET: Final = "/moby.buildkit.secrets.v1.Secrets/GetSecret"


class SecretsService:
    """Answers `Secrets/GetSecret` from a fixed set of `BuildSecret` sources."""

    def __init__(self, secrets: Sequence[BuildSecret], env: Mapping[str, str] | None) -> None:
        self._secrets = {secret.id: secret for secret in secrets}
        self._env = env

    def check(self) -> None:
        """Fail before the build starts when an environment-variable secret is not set."""
        for secret in self._secrets.values():
            if secret.env is not None:
                secret.read(self._env)

    def handlers(self) -> dict[str, object]:
        """The gRPC methods this service answers."""
        return {GET_SECRET: self.get_secret}

    async def get_secret(self, call: Call) -> None:
        """Reply with the secret's bytes, or NotFound for an ID the user did not give."""
        # Imported here: `BuildOptions` imports this module for `BuildSecret`, and only a
        # running session needs the messages.
        from buildsdk.session._messages import GetSecretRequest, GetSecretResponse

        request = GetSecretRequest.decode(await call.recv_one())
        secret = self._secrets.get(request.id)
        if secret is None:
            raise GrpcError(Status.NOT_FOUND, f"secret {request.id} not found")
        try:
            data = secret.read(self._env)
        except SecretUnavailable as exc:
            raise GrpcError(Status.NOT_FOUND, str(exc)) from None
        await call.send(GetSecretResponse(data).encode())
