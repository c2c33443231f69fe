"""`python -m buildsdk`: the same command as the `buildsdk` script."""

from __future__ import annotations

from buildsdk.cli import run

__all__: list[str] = []

if __name__ == "__main__":
    run()
