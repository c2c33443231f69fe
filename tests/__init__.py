"""buildsdk's test suite."""
