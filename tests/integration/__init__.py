"""Tests against real engines started by scripts/engines."""
