"""The cost of read-replica routing, measured: ``python -m benchmarks.routing [URL]``.

Runs many thousands of top-level calls (outside any block, where reads may go to a
replica) on one Database without replicas and on one with ``replicas=[the same URL]``,
round after round interleaved (so that both see the same load on the machine), and
prints the best of N rounds in microseconds per call: ``fetch_val`` of raw SQL, of a
Core ``select()``, and ``execute`` (a write, which starts the read-your-writes window).
URL: a SQLite file in a temporary directory unless given (``ROUTING_URL`` too).

``--check``: time what routing adds to a call without I/O, alone: the classification of
a query and the choice of the node (steadier than the rounds on a busy machine).

Without replicas, a call pays one ``is None`` check: compare a plain Database with the
commit before replicas with ``python -m benchmarks.observability --baseline DIR``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dbaccess import Database
from dbaccess.replicas import is_read

CALLS = int(os.environ.get("ROUTING_CALLS", "5000"))
ROUNDS = int(os.environ.get("ROUTING_ROUNDS", "7"))
SQL = "SELECT :value"
TABLE = sa.table("routing_items", sa.column("id", sa.Integer))
CORE = sa.select(TABLE.c.id).where(TABLE.c.id == 1)


def _calls(database: Database) -> dict[str, Callable[[], Awaitable[Any]]]:
    values = {"value": 1}
    return {
        "fetch_val raw": lambda: database.fetch_val(SQL, values),
        "fetch_val core": lambda: database.fetch_val(CORE),
        "execute": lambda: database.execute("UPDATE routing_items SET id = 1 WHERE id = 0"),
    }


async def _round(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        await call()
    return (time.perf_counter() - started) / CALLS * 1e6


async def measure(url: str) -> dict[str, tuple[float, float]]:
    """Best of ROUNDS per call kind: (without replicas, with replicas=[url])."""
    plain = Database(url)
    routed = Database(url, replicas=[url])
    async with plain, routed:
        await plain.execute("DROP TABLE IF EXISTS routing_items")
        await plain.execute("CREATE TABLE routing_items (id INTEGER PRIMARY KEY)")
        await plain.execute("INSERT INTO routing_items (id) VALUES (1)")
        try:
            results = {}
            for (name, off), on in zip(_calls(plain).items(), _calls(routed).values()):
                await _round(off)  # warm up: statement caches, the pools
                await _round(on)
                times: tuple[list[float], list[float]] = ([], [])
                for _ in range(ROUNDS):
                    times[0].append(await asyncio.create_task(_round(off)))
                    # A task of its own: the writes of the rounds before are not its own.
                    times[1].append(await asyncio.create_task(_round(on)))
                results[name] = (min(times[0]), min(times[1]))
        finally:
            await plain.execute("DROP TABLE routing_items")
    return results


async def check_cost(url: str) -> dict[str, float]:
    """Microseconds of the classification and of the choice of a node, without I/O (on
    a connected Database, whose replica is healthy)."""
    async with Database(url, replicas=[url]) as database:
        replicas = database._replicas
        assert replicas is not None
        work: dict[str, Callable[[], Any]] = {
            "is_read raw": lambda: is_read(SQL),
            "is_read core": lambda: is_read(CORE),
            "choose raw": lambda: replicas._choose(SQL),
            "choose core": lambda: replicas._choose(CORE),
        }
        best: dict[str, float] = {}
        for name, function in work.items():
            best[name] = float("inf")
            for _ in range(ROUNDS):
                started = time.perf_counter()
                for _ in range(CALLS * 20):
                    function()
                elapsed = (time.perf_counter() - started) / (CALLS * 20) * 1e6
                best[name] = min(best[name], elapsed)
    return best


def main(argv: list[str]) -> None:
    check = argv[:1] == ["--check"]
    if check:
        argv = argv[1:]
    with tempfile.TemporaryDirectory() as folder:
        default = f"sqlite:///{Path(folder) / 'routing.db'}"
        url = argv[0] if argv else os.environ.get("ROUTING_URL", default)
        if check:
            for name, micros in asyncio.run(check_cost(url)).items():
                print(f"{name:15} {micros:6.3f} us per call (best of {ROUNDS})")
            return
        for name, (off, on) in asyncio.run(measure(url)).items():
            print(
                f"{name:15} without {off:7.2f} us, with replicas {on:7.2f} us per call: "
                f"{on - off:+.2f} us ({on / off:.3f}x, best of {ROUNDS})"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
