"""The timed mode: per backend, create the tables, open every contender, then run
interleaved rounds (each round: each workload, each contender in turn, the order of
the contenders rotating from round to round) and keep every time."""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import WORKLOADS, BackendConfig, Sizes
from .contenders import RAW, Contender, NotApplicable, for_backend, node_missing
from .dataset import Admin, open_admin
from .schema import ITEMS, SCRATCH

__all__ = ["BackendRun", "Cell", "expected_rows", "run_backend"]

#: Workloads that insert into bench_scratch: it is emptied (untimed) before each run.
SCRATCH_WORKLOADS = frozenset({"execute_many", "transactions"})
#: Seconds to open or close a contender before giving up on it.
_OPEN_TIMEOUT = 60.0


@dataclass
class Cell:
    """One contender on one workload: every round's seconds, or why there are none."""

    status: str = "ok"  # ok, failed (with the reason), n/a (not applicable)
    times: list[float] = field(default_factory=list)
    reason: str | None = None

    @property
    def best(self) -> float | None:
        return min(self.times) if self.status == "ok" and self.times else None

    def as_dict(self, raw: Cell | None) -> dict[str, Any]:
        best, raw_best = self.best, raw.best if raw is not None else None
        return {
            "status": self.status,
            "reason": self.reason,
            "best": best,
            "median": statistics.median(self.times) if self.times else None,
            "ratio": best / raw_best if best is not None and raw_best else None,
            "times": self.times,
        }


@dataclass
class BackendRun:
    backend: str
    raw: str
    contenders: list[str] = field(default_factory=list)
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)
    server_version: str | None = None
    described: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def as_dict(self, where: dict[str, Any]) -> dict[str, Any]:
        results = {}
        for workload, row in self.cells.items():
            raw = row.get(self.raw)
            results[workload] = {name: cell.as_dict(raw) for name, cell in row.items()}
        return {
            **where,
            "server_version": self.server_version,
            "raw": self.raw,
            "contenders": self.contenders,
            "contender_versions": self.described,
            "notes": self.notes,
            "error": self.error,
            "elapsed_seconds": round(self.seconds, 1),
            "results": results,
        }


def expected_rows(workload: str, sizes: Sizes) -> int:
    """How many rows a correct run of ``workload`` reports."""
    return {
        "point_core": sizes.point_queries,
        "point_raw": sizes.point_queries,
        "fetch_all": sizes.rows * sizes.fetch_all_repeats,
        "execute_many": sizes.execute_many_rows,
        "concurrent": sizes.concurrent_tasks * sizes.concurrent_queries,
        "transactions": sizes.transactions,
        "iterate": sizes.rows,
    }[workload]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _close(contender: Contender) -> None:
    try:
        await asyncio.wait_for(contender.close(), _OPEN_TIMEOUT)
    except Exception as exc:
        _progress(f"  (closing {contender.name} failed: {_reason(exc)})")


class _Session:
    """The contenders of one backend run, and their cells."""

    def __init__(self, backend: BackendConfig, sizes: Sizes, admin: Admin, run: BackendRun):
        self.backend, self.sizes, self.admin, self.run = backend, sizes, admin, run
        self.open: dict[str, Contender] = {}

    def fail_all(self, name: str, reason: str) -> None:
        for row in self.run.cells.values():
            cell = row[name]
            if cell.status == "ok":
                cell.status, cell.reason = "failed", reason

    async def start(self, cls: type[Contender]) -> Contender | None:
        contender = cls(self.backend, self.sizes)
        try:
            await asyncio.wait_for(contender.open(), _OPEN_TIMEOUT)
        except Exception as exc:
            await _close(contender)
            self.fail_all(cls.name, f"cannot connect: {_reason(exc)}")
            _progress(f"  {cls.name}: cannot connect: {_reason(exc)}")
            return None
        self.open[cls.name] = contender
        self.run.described[cls.name] = contender.describe()
        return contender

    async def stop(self, name: str) -> None:
        contender = self.open.pop(name, None)
        if contender is not None:
            await _close(contender)

    async def measure(self, contender: Contender, workload: str) -> tuple[str, str]:
        """Run ``workload`` once on ``contender``; return (status, shown text)."""
        cell = self.run.cells[workload][contender.name]
        sizes, admin = self.sizes, self.admin
        if workload in SCRATCH_WORKLOADS:
            await admin.reset_scratch()
        gc.collect()
        try:
            result = await asyncio.wait_for(contender.run(workload), sizes.timeout)
        except NotApplicable as exc:
            cell.status, cell.reason = "n/a", str(exc)
            return "n/a", str(exc)
        except Exception as exc:
            cell.status, cell.reason = "failed", _reason(exc)
            # Its connections may be in any state: start it afresh for the next workload.
            del self.open[contender.name]
            await _close(contender)
            await self.start(type(contender))
            return "failed", cell.reason
        expected = expected_rows(workload, sizes)
        found = result.rows
        if workload in SCRATCH_WORKLOADS:
            found = await admin.count(SCRATCH)
        if found != expected:
            cell.status = "failed"
            cell.reason = f"wrong result: {found} rows where {expected} were expected"
            return "failed", cell.reason
        cell.times.append(result.seconds)
        return "ok", f"{result.seconds:.4f} s"


async def run_backend(
    backend: BackendConfig,
    sizes: Sizes,
    names: set[str] | None = None,
    workloads: Sequence[str] = WORKLOADS,
) -> BackendRun:
    """Prepare ``backend``, run each of ``workloads`` for every contender over the
    rounds, then drop the tables. Failures are recorded in the cells, never raised."""
    started = time.perf_counter()
    classes = for_backend(backend, names)
    run = BackendRun(backend.name, RAW[backend.name], [cls.name for cls in classes])
    run.cells = {w: {cls.name: Cell() for cls in classes} for w in workloads}
    if backend.name == "postgresql" and (missing := node_missing()) is not None:
        run.notes.append(f"Node.js columns skipped: {missing}")
    try:
        admin = await open_admin(backend)
    except Exception as exc:
        run.error = f"cannot connect to {backend.name}: {_reason(exc)}"
        _progress(run.error)
        return run
    session = _Session(backend, sizes, admin, run)
    try:
        run.server_version = await admin.server_version()
        _progress(f"[{backend.name}] {run.server_version}: creating {sizes.rows} rows")
        await admin.create_filled(ITEMS, sizes.rows)
        await admin.create(SCRATCH)
        # A contender is open only for its turn in a round: every PostgreSQL contender's
        # pool at once would pass the server's default max_connections (100).
        by_name = {cls.name: cls for cls in classes}
        for round_index in range(sizes.rounds):
            names_now = run.contenders
            shift = round_index % len(names_now) if names_now else 0
            for name in names_now[shift:] + names_now[:shift]:
                if all(run.cells[w][name].status != "ok" for w in workloads):
                    continue
                contender = await session.start(by_name[name])
                if contender is None:
                    continue
                try:
                    for workload in workloads:
                        if run.cells[workload][name].status != "ok":
                            continue
                        status, shown = await session.measure(contender, workload)
                        if status != "n/a":
                            _progress(
                                f"[{backend.name} {round_index + 1}/{sizes.rounds}] "
                                f"{workload:<13} {name:<14} {shown}"
                            )
                finally:
                    await session.stop(name)
    except Exception as exc:
        run.error = f"{backend.name}: {_reason(exc)}"
        _progress(run.error)
    finally:
        for contender in session.open.values():
            await _close(contender)
        try:
            for table in (ITEMS, SCRATCH):
                await admin.execute(f"DROP TABLE IF EXISTS {table.name}")
        finally:
            await admin.close()
        run.seconds = time.perf_counter() - started
    return run
