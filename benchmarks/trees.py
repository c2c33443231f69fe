"""Deterministic build-context trees for the upload benchmarks.

Why generated: a benchmark anyone can rerun needs the same tree everywhere, and a real
repository cannot be shipped. The shapes are the ones that stress a context packer
differently: a repository (many small files, directories excluded and re-included by
`.dockerignore`, a few large assets), a flood of tiny files (per-file cost), and a few
huge files (raw throughput, and memory that must not grow with size).

File contents are slices of one seeded random pool: incompressible, reproducible, and
cheap to produce. `scale` shrinks a tree proportionally for the quick mode.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "DOCKERFILE",
    "DOCKERIGNORE",
    "TreeInfo",
    "ensure_tree",
    "make_huge",
    "make_repository",
    "make_tiny",
    "tree_info",
]

DOCKERFILE = b"FROM busybox:latest\nLABEL benchmark=context\n"
"""The Dockerfile at the root of every generated tree."""

DOCKERIGNORE = b"node_modules\n!node_modules/keep-me\n**/*.log\n"
"""The repository tree's `.dockerignore`: node_modules but one package, and logs."""

_POOL_SIZE = 8 << 20
_MIB = 1 << 20


class _Writer:
    """Writes files whose bytes come from a seeded random pool."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.pool = self.rng.randbytes(_POOL_SIZE)

    def write(self, rel: str, size: int) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            remaining = size
            while remaining > 0:
                take = min(remaining, _POOL_SIZE // 2)
                offset = self.rng.randrange(_POOL_SIZE - take + 1)
                f.write(self.pool[offset : offset + take])
                remaining -= take

    def between(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


def _count(value: int, scale: float) -> int:
    return max(1, round(value * scale))


def make_repository(root: Path, scale: float = 1.0) -> None:
    """A tree shaped like a real repository: about 26,000 files and 335 MB at scale 1.

    Python sources (1-8 KiB) with their `__pycache__`, docs and config files, a
    `node_modules` of 6,000 small files excluded except `keep-me`, a `.git` with 1,500
    loose objects and a pack, eight 8 MiB assets, and logs excluded by `**/*.log`.
    """
    w = _Writer(root, 1)
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_bytes(DOCKERFILE)
    (root / ".dockerignore").write_bytes(DOCKERIGNORE)
    packages = _count(400, scale)
    for i in range(_count(8000, scale)):
        pkg = f"src/app/pkg{i % packages:03d}"
        if i % packages % 7 == 0:
            pkg += f"/sub{i % 5}"
        name = f"module_{i:05d}"
        size = w.between(1024, 8192)
        w.write(f"{pkg}/{name}.py", size)
        w.write(f"{pkg}/__pycache__/{name}.cpython-311.pyc", size * 4 // 5)
    for i in range(_count(2000, scale)):
        kind = ("docs", "md"), ("config", "yaml"), ("tests/data", "json")
        folder, ext = kind[i % 3]
        w.write(f"{folder}/part{i % 40:02d}/file_{i:05d}.{ext}", w.between(1024, 8192))
    node_packages = _count(300, scale)
    for i in range(_count(6000, scale)):
        package = "keep-me" if i % node_packages == 0 else f"pkg-{i % node_packages:03d}"
        w.write(f"node_modules/{package}/lib/file_{i:05d}.js", w.between(1024, 4096))
    for _ in range(_count(1500, scale)):
        digest = f"{w.rng.getrandbits(160):040x}"
        w.write(f".git/objects/{digest[:2]}/{digest[2:]}", w.between(200, 4096))
    w.write(".git/objects/pack/pack-0001.pack", round(110 * _MIB * scale))
    w.write(".git/objects/pack/pack-0001.idx", round(2 * _MIB * scale))
    (root / ".git" / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    for i in range(8):
        w.write(f"assets/asset_{i}.bin", round(8 * _MIB * scale))
    for i in range(_count(500, scale)):
        w.write(f"logs/run{i % 10}/job_{i:04d}.log", w.between(16 * 1024, 220 * 1024))


def make_tiny(root: Path, count: int = 100_000) -> None:
    """`count` files of 0-256 bytes, 100 per directory."""
    w = _Writer(root, 2)
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_bytes(DOCKERFILE)
    for i in range(count):
        w.write(f"d{i // 10_000:02d}/d{i // 100 % 100:02d}/f{i:06d}.txt", w.between(0, 256))


def make_huge(root: Path, count: int = 4, size: int = 512 * _MIB) -> None:
    """`count` files of `size` random bytes each (written from a repeated random block)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_bytes(DOCKERFILE)
    block = random.Random(3).randbytes(16 * _MIB)
    for i in range(count):
        with open(root / f"blob_{i}.bin", "wb") as f:
            remaining = size
            # Rotate the block per file so that no two files are identical.
            rotated = block[i * 4096 :] + block[: i * 4096]
            while remaining > 0:
                take = min(remaining, len(rotated))
                f.write(rotated[:take])
                remaining -= take


def ensure_tree(cache: Path, name: str, build: Callable[[Path], None], key: str) -> Path:
    """Return `cache/name`, generating it with `build` unless a tree for `key` is there.

    A marker beside the tree (not inside: it would be part of the context) records the
    parameters it was generated with; a different `key` regenerates it.
    """
    import shutil

    root = cache / name
    marker = cache / f"{name}.done"
    if marker.exists() and marker.read_text() == key and root.is_dir():
        return root
    if root.exists():
        shutil.rmtree(root)
    marker.unlink(missing_ok=True)
    build(root)
    marker.write_text(key)
    return root


class TreeInfo:
    """How many files and bytes a tree holds."""

    def __init__(self, files: int, size: int) -> None:
        self.files = files
        self.size = size

    def __str__(self) -> str:
        return f"{self.files:,} files, {self.size / 1e6:,.0f} MB"


def tree_info(root: Path) -> TreeInfo:
    """Count the regular files and their bytes under `root`."""
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            files += 1
            size += st.st_size
    return TreeInfo(files, size)
