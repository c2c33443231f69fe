"""Engine API versions: parsing, comparison, negotiation, and which option needs which version.

The engine serves every API version between its minimum and its maximum under
`/v{major}.{minor}/`. A client negotiates the lower of its own maximum and the
engine's (the `Api-Version` header of `/_ping`), as the Go client does. Gates are keyed by
the query parameter the option is sent as, because that is what an old engine does not
understand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from buildsdk.errors import UnsupportedOption

__all__ = [
    "BUILD_PARAM_MIN_VERSION",
    "MAX_API_VERSION",
    "MIN_API_VERSION",
    "PRUNE_PARAM_MIN_VERSION",
    "ApiVersion",
    "api_too_old",
    "negotiate",
]

_VERSION_RE = re.compile(r"^v?(\d{1,4})\.(\d{1,4})$")


@dataclass(frozen=True, order=True)
class ApiVersion:
    """An engine API version such as `1.41`, ordered numerically (1.9 < 1.10)."""

    major: int
    minor: int

    @classmethod
    def parse(cls, value: str | ApiVersion) -> ApiVersion:
        """Parse `"1.41"` (a leading `v` is tolerated, as the Go client does)."""
        if isinstance(value, ApiVersion):
            return value
        match = _VERSION_RE.match(value.strip())
        if match is None:
            raise ValueError(f"invalid API version {value!r}: expected MAJOR.MINOR such as 1.41")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


MIN_API_VERSION: Final = ApiVersion(1, 24)
"""The oldest API version buildsdk speaks (Docker Engine 1.12), as docker-py."""

MAX_API_VERSION: Final = ApiVersion(1, 51)
"""The newest API version buildsdk knows; newer engines are spoken to in this version."""


def negotiate(server_max: str | None) -> ApiVersion:
    """Choose the version to speak: the lower of the engine's maximum and ours.

    An engine that sends no `Api-Version` header is spoken to in `MAX_API_VERSION`, as the
    Go client does. Raises `ValueError` when the engine is older than `MIN_API_VERSION`.
    """
    if not server_max:
        return MAX_API_VERSION
    server = ApiVersion.parse(server_max)
    if server < MIN_API_VERSION:
        raise ValueError(
            f"the engine speaks API {server}, older than {MIN_API_VERSION}, "
            "the oldest version buildsdk supports"
        )
    return min(server, MAX_API_VERSION)


BUILD_PARAM_MIN_VERSION: Final[dict[str, ApiVersion]] = {
    "cachefrom": ApiVersion(1, 25),
    "networkmode": ApiVersion(1, 25),
    "squash": ApiVersion(1, 25),
    "securityopt": ApiVersion(1, 25),
    "extrahosts": ApiVersion(1, 28),
    "target": ApiVersion(1, 29),
    "session": ApiVersion(1, 31),
    # Engines below 1.32 silently ignore `platform`: refusing is kinder than building
    # for the wrong platform.
    "platform": ApiVersion(1, 32),
    "version": ApiVersion(1, 38),
    "buildid": ApiVersion(1, 38),
    "outputs": ApiVersion(1, 40),
}
"""The first API version that understands each `/build` query parameter (older ones are 1.24)."""

PRUNE_PARAM_MIN_VERSION: Final[dict[str, ApiVersion]] = {
    "all": ApiVersion(1, 39),
    "filters": ApiVersion(1, 39),
    "keep-storage": ApiVersion(1, 39),
    "reserved-space": ApiVersion(1, 48),
    "max-used-space": ApiVersion(1, 48),
    "min-free-space": ApiVersion(1, 48),
}
"""The first API version that understands each `/build/prune` query parameter."""

PRUNE_MIN_VERSION: Final = ApiVersion(1, 31)
"""`POST /build/prune` itself exists from this version on."""

CANCEL_MIN_VERSION: Final = ApiVersion(1, 38)
"""`POST /build/cancel` exists from this version on (Docker Engine 18.06)."""


def api_too_old(
    option: str, what: str, required: ApiVersion, given: ApiVersion, *, consequence: str = ""
) -> UnsupportedOption | None:
    """The `UnsupportedOption` for `option` when `given` is older than `required`, else None.

    Every version gate words it the same: "<what> needs API version <required> or newer; the
    engine speaks <given>", then `consequence` (what the engine would do instead) if any.
    """
    if given >= required:
        return None
    message = f"{what} needs API version {required} or newer; the engine speaks {given}"
    if consequence:
        message += f", {consequence}"
    return UnsupportedOption(option, message, required=str(required), given=str(given))
