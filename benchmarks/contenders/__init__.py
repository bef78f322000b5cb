"""The libraries measured, one module each, in the order of the table's columns.

Modules are imported on first use: a library that is missing or fails to import
becomes a contender that cannot connect, with the import error as the reason, and the
run goes on without it."""

from __future__ import annotations

import importlib
from typing import ClassVar

from ..config import BackendConfig
from .base import Contender, NotApplicable, PartialContender, RunResult

__all__ = [
    "NAMES",
    "RAW",
    "Contender",
    "NotApplicable",
    "PartialContender",
    "RunResult",
    "for_backend",
    "load",
    "node_missing",
]

#: Column order: the library under test, the raw driver (the 1.00 baseline), the others.
#: name -> (module, class, the backends it runs on).
_REGISTRY: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "dbaccess": ("lib_dbaccess", "DBAccess", ("postgresql", "mysql", "sqlite")),
    "asyncpg": ("raw_asyncpg", "RawAsyncpg", ("postgresql",)),
    "dbaccess-psycopg": ("lib_dbaccess", "DBAccessPsycopg", ("postgresql",)),
    # prepared_statements=false (for PgBouncer's transaction mode), on the same server.
    "dbaccess-unprepared": ("lib_dbaccess", "DBAccessUnprepared", ("postgresql",)),
    "dbaccess-psycopg-unprepared": ("lib_dbaccess", "DBAccessPsycopgUnprepared", ("postgresql",)),
    "psycopg": ("raw_psycopg", "RawPsycopg", ("postgresql",)),
    # Reads routed to a replica (here the same database) against the same calls without.
    "dbaccess-per-call": ("lib_dbaccess", "DBAccessPerCall", ("postgresql", "mysql", "sqlite")),
    "dbaccess-replicas": ("lib_dbaccess", "DBAccessReplicas", ("postgresql", "mysql", "sqlite")),
    "aiomysql": ("raw_aiomysql", "RawAiomysql", ("mysql",)),
    "aiosqlite": ("raw_aiosqlite", "RawAiosqlite", ("sqlite",)),
    "databases": ("lib_databases", "Databases", ("postgresql", "mysql", "sqlite")),
    "sqlalchemy": ("lib_sqlalchemy", "SQLAlchemy", ("postgresql", "mysql", "sqlite")),
    "asyncpg-queue": ("raw_asyncpg", "AsyncpgQueue", ("postgresql",)),
    "node-postgres": ("node", "NodePostgres", ("postgresql",)),
    "postgres.js": ("node", "PostgresJs", ("postgresql",)),
}
NAMES = tuple(_REGISTRY)

#: The raw driver of each backend: the denominator of every ratio.
RAW = {"postgresql": "asyncpg", "mysql": "aiomysql", "sqlite": "aiosqlite"}


def _unimportable(contender: str, error: Exception) -> type[Contender]:
    class Unimportable(PartialContender):
        name: ClassVar[str] = contender
        scope: ClassVar[str] = "cannot be imported"

        async def open(self) -> None:
            raise RuntimeError(f"cannot import: {type(error).__name__}: {error}") from error

        async def close(self) -> None:
            return None

    return Unimportable


def load(name: str) -> type[Contender]:
    """The contender class called ``name``."""
    module_name, class_name, _ = _REGISTRY[name]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ImportError as exc:
        return _unimportable(name, exc)
    cls: type[Contender] = getattr(module, class_name)
    return cls


def node_missing() -> str | None:
    """Why the Node.js columns cannot run, or None when they can."""
    from .node import node_missing as missing

    return missing()


def for_backend(backend: BackendConfig, names: set[str] | None = None) -> list[type[Contender]]:
    """The contenders that run on ``backend``, in column order (only ``names`` when given;
    ``raw`` names the backend's raw driver)."""
    chosen = []
    for name, (_, _, backends) in _REGISTRY.items():
        if backend.name not in backends:
            continue
        wanted = names is None or name in names or ("raw" in names and name == RAW[backend.name])
        if not wanted:
            continue
        cls = load(name)
        if cls.applicable(backend):
            chosen.append(cls)
    return chosen
