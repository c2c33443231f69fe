"""`python -m buildsdk`: the same command as the `buildsdk` script."""

from __future__ import annotations

import sys

from buildsdk.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
