"""Build FROM an image in a private registry that needs a login.

Usage:
    python examples/private_base_image.py BASE_IMAGE

BASE_IMAGE is the private image, e.g. registry.example.com:5000/team/base:1. Credentials
come from REGISTRY_USER and REGISTRY_PASSWORD when both are set (given to the client in
code as a `RegistryAuth`), otherwise from the Docker configuration as `docker login` left
it (config.json `auths`, credsStore or credHelpers). The engine is DOCKER_HOST or the
current docker context. With the engines of scripts/engines:

    eval "$(scripts/engines env)"
    DOCKER_HOST=$BUILDSDK_DOCKERD_HOST REGISTRY_USER=$BUILDSDK_REGISTRY_USER \\
        REGISTRY_PASSWORD=$BUILDSDK_REGISTRY_PASSWORD \\
        python examples/private_base_image.py "$BUILDSDK_REGISTRY_IMAGE"
"""

from __future__ import annotations

import io
import os
import sys

from pydantic import SecretStr

from buildsdk import BuildError, BuildOptions, BuildSDKError, Client, RegistryAuth


def credentials(image: str) -> dict[str, RegistryAuth]:
    """Credentials given in code for the image's registry, or none (use config.json)."""
    user, password = os.environ.get("REGISTRY_USER"), os.environ.get("REGISTRY_PASSWORD")
    if not (user and password):
        return {}
    registry = image.split("/", 1)[0]  # host[:port] of the image reference
    auth = RegistryAuth(username=user, password=SecretStr(password), server_address=registry)
    return {registry: auth}  # the password never appears in a repr, log or error


def main(argv: list[str]) -> int:
    """Build on top of the private image; return the process exit status."""
    if len(argv) != 1 or argv[0].startswith("-") or "/" not in argv[0]:
        print(__doc__)
        return 2
    base = argv[0]
    options = BuildOptions(
        fileobj=io.BytesIO(b"ARG BASE\nFROM $BASE\nLABEL org.example.base-was-private=yes\n"),
        buildargs={"BASE": base},
        tag="buildsdk-example:private-base",
        pull=True,  # always ask the registry, so the login is really used
    )
    try:
        with Client(credentials=credentials(base)) as docker:
            result = docker.build(options).result()
    except BuildError as exc:
        print(f"build failed: {exc.message}", file=sys.stderr)
        return 1
    except BuildSDKError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {result.image_id} from {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
