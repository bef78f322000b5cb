"""ExecuteResult: everything running one statement reports, the same on every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .record import Record

__all__ = ["ExecuteResult"]


@dataclass(frozen=True)
class ExecuteResult:
    """What :meth:`Database.execute_result` returns.

    ``rowcount`` counts the rows the statement matched (-1 where the statement has no
    count, such as DDL); ``lastrowid`` is the new row's primary key after an INSERT
    (through RETURNING on PostgreSQL), else None; ``rows`` holds the rows of a
    RETURNING clause.
    """

    rowcount: int
    lastrowid: Any = None
    rows: list[Record] = field(default_factory=list)
