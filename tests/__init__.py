"""buildsdk's test suite."""

from pathlib import Path

# Recorded vectors (tests/fixtures/vectors/README.md says where each came from). The tests
# read only these copies, so a clone passes with nothing beside it.
VECTORS_DIR = Path(__file__).resolve().parent / "fixtures" / "vectors"
