"""The package's version: the one place it is written.

pyproject.toml reads it at build time (hatch's version source), and `buildsdk.__version__`
and the `User-Agent` header import it. It is a module, not package metadata read at run
time, because `importlib.metadata` costs about 100 ms to import, more than buildsdk itself.
"""

__version__ = "0.1.0"
