"""Build with BuildKit: a secret mounted into one RUN step, never stored in the image.

Usage:
    python examples/buildkit_build.py [TAG]

The secret's value comes from the environment variable API_TOKEN (a made-up value is used
when it is unset). Secrets travel over a BuildKit session, which needs the `session`
extra: pip install 'buildsdk[session]'. The engine is DOCKER_HOST or the current docker
context; engines without a bridge network (such as those of scripts/engines) need
BUILD_NETWORK=host:

    eval "$(scripts/engines env)"
    DOCKER_HOST=$BUILDSDK_DOCKERD_HOST BUILD_NETWORK=host python examples/buildkit_build.py
"""

from __future__ import annotations

import io
import os
import sys

from buildsdk import BuildError, BuildOptions, BuildSDKError, Client, VertexLogEvent

DOCKERFILE = b"""\
FROM busybox
# The secret is a file under /run/secrets for this step only; it is not in any layer.
RUN --mount=type=secret,id=api_token \\
    echo "the token has $(wc -c < /run/secrets/api_token) bytes" \\
 && test ! -e /run/secrets/api_token.copy
LABEL org.example.built-with=buildkit
"""


def main(argv: list[str]) -> int:
    """Run the BuildKit build; return the process exit status."""
    if len(argv) > 1 or any(arg.startswith("-") for arg in argv):
        print(__doc__)
        return 2
    os.environ.setdefault("API_TOKEN", "not-a-real-token")
    options = BuildOptions(
        fileobj=io.BytesIO(DOCKERFILE),  # a Dockerfile from memory; the context is empty
        tag=argv[0] if argv else "buildsdk-example:buildkit",
        version="2",  # BuildKit
        secrets=["id=api_token,env=API_TOKEN"],  # like `docker build --secret`
        network_mode=os.environ.get("BUILD_NETWORK") or None,
        nocache=True,  # so the RUN step (and its output) runs every time
    )
    try:
        with Client() as docker, docker.build(options) as build:
            for event in build:
                # BuildKit reports each step's output as log events tied to the step.
                if isinstance(event, VertexLogEvent):
                    print(event.data.decode("utf-8", "replace"), end="", flush=True)
            result = build.result()
    except BuildError as exc:
        print(f"build failed: {exc.message}\n\n{exc.log}", file=sys.stderr)
        return 1
    except BuildSDKError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {result.image_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
