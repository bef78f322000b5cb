"""Facts about what was measured: versions, the machine, the dbaccess commit."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import importlib.metadata
import os
import platform
import sqlite3
import sys
from pathlib import Path
from typing import Any

__all__ = ["PROJECT_ROOT", "environment", "git_commit", "source_digest"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_PACKAGES = (
    "dbaccess",
    "asyncpg",
    "psycopg",
    "psycopg-pool",
    "aiomysql",
    "PyMySQL",
    "aiosqlite",
    "SQLAlchemy",
    "databases",
    "uvloop",
    "psutil",
)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """The commit checked out in ``root``, read from .git without running git (the
    working tree may differ from it: see :func:`source_digest`)."""
    git = root / ".git"
    try:
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        for base in (git, _common_dir(git)):
            path = base / ref
            if path.is_file():
                return path.read_text().strip()
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split(" ", 1)[0]
    except OSError:
        return None
    return None


def _common_dir(git: Path) -> Path:
    common = git / "commondir"
    return (git / common.read_text().strip()).resolve() if common.is_file() else git


def source_digest(root: Path = PROJECT_ROOT) -> str:
    """SHA-256 of dbaccess/**/*.py as measured: the code under test is dbaccess's
    working tree, which may hold changes not yet committed."""
    digest = hashlib.sha256()
    for path in sorted((root / "dbaccess").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def environment(loop: str) -> dict[str, Any]:
    """Versions and machine facts, taken inside the running event loop."""
    running = asyncio.get_running_loop()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
        "loop": loop,
        "loop_class": f"{type(running).__module__}.{type(running).__qualname__}",
        "packages": {name: _version(name) for name in _PACKAGES},
        "sqlite_library": sqlite3.sqlite_version,
        "dbaccess_commit": git_commit(),
        "dbaccess_source_sha256": source_digest(),
        "argv": sys.argv,
    }
