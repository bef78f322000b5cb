"""What every contender implements: one coroutine per workload, each returning how many
rows it saw, so that the runner can check the work was really done."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa

from ..config import BackendConfig, Sizes
from ..schema import ITEMS, SCRATCH, scratch_rows

__all__ = ["SCRATCH_INSERT", "Contender", "NotApplicable", "PartialContender", "RunResult"]


def build_point_query(i: int) -> sa.Select[Any]:
    """The Core statement of point_core, which every Core user builds for each query:
    the raw drivers build it too (and run their SQL string), so that their point_core
    is the limit of a library's: the driver plus building the statement."""
    return sa.select(ITEMS).where(ITEMS.c.id == i)


def read_by_name(row: Any) -> None:
    """Read every column of a row by name, as an application would (the same for all)."""
    _ = (row["id"], row["name"], row["value"], row["flag"], row["created_at"])


class NotApplicable(Exception):
    """The contender has no such workload on this backend (not a failure)."""


@dataclass(frozen=True)
class RunResult:
    seconds: float
    rows: int


class Contender(abc.ABC):
    """One library measured on one backend.

    Subclasses implement :meth:`open`, :meth:`close` and the workload coroutines. Each
    workload reads every column of every row it gets, in the library's usual way
    (``row["name"]``, ``row.name``, tuple unpacking), so that libraries that convert
    values lazily are not flattered, and returns the number of rows it got (for
    point queries: the number of queries that found their row). Everything a workload
    needs (ids, rows to insert, SQL text) is prepared in ``__init__`` or :meth:`open`,
    outside the timer.
    """

    #: The column header.
    name: ClassVar[str]
    #: Whether the --memory mode measures it (it has a streaming API).
    streams: ClassVar[bool] = True

    def __init__(self, backend: BackendConfig, sizes: Sizes) -> None:
        self.backend = backend
        self.sizes = sizes
        rows = sizes.rows
        #: Primary keys of the sequential point queries.
        self.point_ids = [i % rows + 1 for i in range(sizes.point_queries)]
        #: Primary keys of each task of the concurrent workload.
        per_task = sizes.concurrent_queries
        self.task_ids = [
            [(task * per_task + j) % rows + 1 for j in range(per_task)]
            for task in range(sizes.concurrent_tasks)
        ]
        #: Rows for execute_many, then for transactions (dicts; raw drivers convert them).
        self.many_rows = scratch_rows(sizes.execute_many_rows)
        self.transaction_rows = scratch_rows(sizes.transactions)

    @classmethod
    def applicable(cls, backend: BackendConfig) -> bool:
        """Whether this contender runs on ``backend`` at all."""
        return True

    def describe(self) -> dict[str, str]:
        """Facts worth recording beside the results (versions the contender found)."""
        return {}

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, with every pool filled to ``sizes.pool_size`` connections."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def run(self, workload: str) -> RunResult:
        """Run one workload, timed from its first statement to its last row."""
        method = getattr(self, workload)
        start = time.perf_counter()
        rows = await method()
        seconds = time.perf_counter() - start
        return RunResult(seconds, int(rows))

    # -- the workloads --------------------------------------------------------------

    @abc.abstractmethod
    async def point_core(self) -> int:
        """``sizes.point_queries`` sequential fetch_one by id, SQLAlchemy Core, one held
        connection (raw drivers: the statement built, then their SQL string run)."""

    @abc.abstractmethod
    async def point_raw(self) -> int:
        """The same with a SQL string."""

    @abc.abstractmethod
    async def fetch_all(self) -> int:
        """Every row of bench_items, ``sizes.fetch_all_repeats`` times."""

    @abc.abstractmethod
    async def execute_many(self) -> int:
        """Insert ``sizes.execute_many_rows`` rows into bench_scratch in one call."""

    @abc.abstractmethod
    async def concurrent(self) -> int:
        """``concurrent_tasks`` tasks of ``concurrent_queries`` point queries each, through
        the pool (a connection per query)."""

    @abc.abstractmethod
    async def transactions(self) -> int:
        """``sizes.transactions`` transactions of one insert each, on one connection."""

    async def iterate(self) -> int:
        """Stream every row of bench_items."""
        return await self.stream(ITEMS)

    @abc.abstractmethod
    async def stream(self, table: sa.Table) -> int:
        """Stream every row of ``table`` without holding them all (also the --memory mode)."""


class PartialContender(Contender):
    """A contender that runs only some workloads (a pool alternative, another
    language): the others raise :class:`NotApplicable`, shown as n/a."""

    streams: ClassVar[bool] = False
    #: What the n/a cells say.
    scope: ClassVar[str] = "not measured"

    def _not_applicable(self) -> NotApplicable:
        return NotApplicable(f"{self.name}: {self.scope}")

    async def point_core(self) -> int:
        raise self._not_applicable()

    async def point_raw(self) -> int:
        raise self._not_applicable()

    async def fetch_all(self) -> int:
        raise self._not_applicable()

    async def execute_many(self) -> int:
        raise self._not_applicable()

    async def concurrent(self) -> int:
        raise self._not_applicable()

    async def transactions(self) -> int:
        raise self._not_applicable()

    async def stream(self, table: sa.Table) -> int:
        raise self._not_applicable()


#: The Core insert of execute_many.
SCRATCH_INSERT = SCRATCH.insert()
