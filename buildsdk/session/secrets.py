"""Build secrets: `RUN --mount=type=secret` reads them from the client through the session.

A `BuildSecret` names where a secret comes from, like `docker build --secret`: a file
(`src`), an environment variable (`env`) or bytes given in code (`data`). The value is read
only when the engine asks (`Secrets/GetSecret`), is never part of a repr, log line or error,
and never travels in the build request. Unknown IDs are answered NotFound, which BuildKit
turns into "secret X not found" for a `required=true` mount and skips otherwise.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, field_validator, model_validator

from buildsdk._grpc.status import GrpcError, Status
from buildsdk.errors import SecretUnavailable

if TYPE_CHECKING:
    from buildsdk.session._server import Call

__all__ = ["MAX_SECRET_SIZE", "BuildSecret", "SecretsService"]

MAX_SECRET_SIZE: Final = 500 * 1024
"""The largest secret the engine accepts (BuildKit's limit), in bytes."""

GET_SECRET: Final = "/moby.buildkit.secrets.v1.Secrets/GetSecret"


class BuildSecret(BaseModel):
    """One secret a build may mount: an ID and exactly one source (file, env var or data)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    id: str = Field(description="The ID a `RUN --mount=type=secret,id=...` names.")
    src: str | None = Field(default=None, description="A file whose contents are the secret.")
    env: str | None = Field(
        default=None, description="An environment variable whose value is the secret."
    )
    data: SecretBytes | None = Field(default=None, description="The secret's bytes, given in code.")

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            id: str,
            src: str | os.PathLike[str] | None = None,
            env: str | None = None,
            data: bytes | str | SecretBytes | None = None,
        ) -> None: ...

    @field_validator("id", "env")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("src", mode="before")
    @classmethod
    def _path_text(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("data", mode="before")
    @classmethod
    def _data_bytes(cls, value: object) -> object:
        if isinstance(value, str):
            return value.encode("utf-8")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> BuildSecret:
        given = [name for name in ("src", "env", "data") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"secret {self.id!r} needs exactly one source: src (a file), env (an "
                f"environment variable) or data (bytes); got {', '.join(given) or 'none'}"
            )
        if self.src is not None and not os.path.isfile(self.src):
            raise ValueError(f"secret {self.id!r}: {self.src!r} is not a readable file")
        if self.data is not None and len(self.data.get_secret_value()) > MAX_SECRET_SIZE:
            raise ValueError(
                f"secret {self.id!r} is larger than the engine's limit of {MAX_SECRET_SIZE} bytes"
            )
        return self

    @classmethod
    def parse(
        cls,
        value: str,
        *,
        base: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> BuildSecret:
        """Parse `docker build --secret` as buildx does: `id=ID[,src=FILE|,env=VAR][,type=…]`.

        The value is CSV (a field may be quoted); keys are case-insensitive (`source` is
        `src`), an empty value counts as not given, and with `type=env` a `src` names the
        variable. With neither `src` nor `env`, the secret is the environment variable named
        like the ID when `env` (default: `os.environ`) has it, else the file of that name.
        With both, `src` must exist but the variable is what is read. A relative `src` is
        taken relative to `base` (default: the current directory).
        """
        try:
            fields = next(csv.reader([value], strict=True), [])
        except csv.Error as exc:
            raise ValueError(f"failed to parse csv secret: {exc}") from None
        ident = src = var = kind = ""
        for field in fields:
            key, sep, item = field.partition("=")
            key = key.lower()
            if not sep:
                raise ValueError(f"invalid field {field!r} must be a key=value pair")
            if key == "type":
                if item not in ("file", "env"):
                    raise ValueError(f"unsupported secret type {item!r}")
                kind = item
            elif key == "id":
                ident = item
            elif key in ("src", "source"):
                src = item
            elif key == "env":
                var = item
            else:
                raise ValueError(f"unexpected key {key!r} in {field!r}")
        if kind == "env" and not var:
            var, src = src, ""
        if not ident:
            raise ValueError("secret missing ID")
        if not var and not src:
            environ = os.environ if env is None else env
            if ident in environ:
                var = ident
            else:
                src = ident
        if src and base is not None:
            src = os.path.join(os.fspath(base), src)
        if var and src:
            # buildx checks the file, then reads the variable (BuildKit's store prefers env).
            if not os.path.exists(src):
                raise ValueError(f"secret {ident!r}: {src!r} is not a readable file")
            src = ""
        return cls(id=ident, src=src or None, env=var or None)

    def read(self, env: Mapping[str, str] | None = None) -> bytes:
        """The secret's value now (`SecretUnavailable` naming the source when it cannot be had)."""
        if self.data is not None:
            return self.data.get_secret_value()
        if self.env is not None:
            environ = os.environ if env is None else env
            if self.env not in environ:
                raise SecretUnavailable(
                    f"secret {self.id!r}: environment variable {self.env} is not set",
                    secret_id=self.id,
                )
            return environ[self.env].encode("utf-8")
        assert self.src is not None
        try:
            with Path(self.src).open("rb") as handle:
                data = handle.read(MAX_SECRET_SIZE + 1)
        except OSError as exc:
            raise SecretUnavailable(
                f"secret {self.id!r}: cannot read {self.src!r}: {exc.strerror}",
                secret_id=self.id,
            ) from None
        if len(data) > MAX_SECRET_SIZE:
            raise SecretUnavailable(
                f"secret {self.id!r} is larger than the engine's limit of {MAX_SECRET_SIZE} bytes",
                secret_id=self.id,
            )
        return data


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
