"""Finding and reading the Docker CLI's configuration directory and `config.json`.

The CLI keeps everything a client needs to talk to an engine as the user does — contexts,
credentials, proxies, extra headers — under one directory: `$DOCKER_CONFIG`, else
`~/.docker`. Both `config.py` (where the engine is) and `auth.py` (credentials, proxies)
read it through these two functions so that they agree on where it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from buildsdk.errors import BuildSDKError

__all__ = ["ConfigFileError", "config_dir", "load_config_file"]


class ConfigFileError(BuildSDKError):
    """`config.json` exists but cannot be read or is not a JSON object."""


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return the Docker CLI's configuration directory: `$DOCKER_CONFIG` or `~/.docker`."""
    environ = os.environ if env is None else env
    explicit = environ.get("DOCKER_CONFIG")
    if explicit:
        return Path(explicit)
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".docker"


def load_config_file(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read `config.json` from `config_dir(env)`; a missing file is an empty configuration."""
    path = config_dir(env) / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigFileError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path} must hold a JSON object")
    return data
