"""buildsdk's test suite."""

import os
from pathlib import Path

# Recorded vectors (tests/fixtures/vectors/README.md says where each came from). The tests
# read only these copies, so a clone passes with nothing beside it.
VECTORS_DIR = Path(__file__).resolve().parent / "fixtures" / "vectors"

# scripts/check sets BUILDSDK_FAST_CHECK=1 to stay near a minute: property tests then run a
# tenth of their examples. scripts/test and CI run them all.
_FAST_CHECK = os.environ.get("BUILDSDK_FAST_CHECK") == "1"


def examples(n: int) -> int:
    """How many examples a property test runs: `n`, or a tenth (at least 20) in the fast check."""
    return max(n // 10, 20) if _FAST_CHECK else n
