"""The cost of observability, measured: ``python -m benchmarks.observability [mode...]``.

Runs many thousands of ``fetch_val`` calls (``point_raw``: one raw SQL statement with a
parameter, outside any block) on SQLite in memory and prints the best of N rounds, in
microseconds per statement. Each mode is switched on and off round after round on one
Database, so that both see the same load on the machine: ``hook`` (one sync after-hook),
``debug`` (DEBUG logging to a null handler), ``otel`` (the OpenTelemetry instrumentor with
the SDK and an exporter that exports nothing). On a checkout without observability, only
``off`` runs.

``--check``: time the one check every statement pays with nothing on, alone.

``--baseline DIR``: compare ``off`` with another checkout of dbaccess in the same process,
round after round (so both see the same load on the machine). DIR holds that checkout's
package renamed ``dbaccess_base``, made with::

    git archive COMMIT dbaccess | tar -x -C DIR && cd DIR && mv dbaccess dbaccess_base
    sed -i 's/"dbaccess\\.backends\\./"dbaccess_base.backends./' dbaccess_base/backends/*.py
    cp THIS_CHECKOUT/dbaccess/_record*.so dbaccess_base/  # the C record module, if built
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from dbaccess import Database

CALLS = int(os.environ.get("OBS_CALLS", "20000"))
ROUNDS = int(os.environ.get("OBS_ROUNDS", "7"))
SQL = "SELECT :value"


async def _round(database: Database) -> float:
    fetch_val = database.fetch_val
    values = {"value": 1}
    started = time.perf_counter()
    for _ in range(CALLS):
        await fetch_val(SQL, values)
    return (time.perf_counter() - started) / CALLS * 1e6


def _switch(mode: str, database: Database) -> Callable[[], Any]:
    """Turn ``mode`` on; return what turns it off again."""
    if mode == "hook":
        return database.add_query_hook(after=lambda event: None).remove
    if mode == "debug":
        logger = logging.getLogger("dbaccess")
        handler = logging.NullHandler()
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)

        def quiet() -> None:
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)

        return quiet
    if mode == "otel":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

        from dbaccess.opentelemetry import DBAccessInstrumentor

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(SpanExporter()))  # exports nothing
        instrumentor = DBAccessInstrumentor()
        instrumentor.instrument(tracer_provider=provider, meter_provider=MeterProvider())
        return instrumentor.uninstrument
    raise SystemExit(f"unknown mode {mode!r}: expected off, hook, debug or otel")


async def measure(mode: str) -> tuple[float, float]:
    """Best of ROUNDS with everything off and with ``mode`` on, rounds interleaved on one
    Database (so both see the same load on the machine)."""
    off: list[float] = []
    on: list[float] = []
    async with Database("sqlite:///:memory:") as database:
        await _round(database)  # warm up: statement cache, allocator
        for _ in range(ROUNDS):
            off.append(await _round(database))
            if mode != "off":
                switch_off = _switch(mode, database)
                try:
                    on.append(await _round(database))
                finally:
                    switch_off()
    return min(off), min(on or off)


async def compare(baseline: str) -> None:
    """Best of ROUNDS for ``off``, this checkout against ``baseline``, rounds interleaved."""
    sys.path.insert(0, baseline)
    base_module = importlib.import_module("dbaccess_base")
    base = base_module.Database("sqlite:///:memory:")
    new = Database("sqlite:///:memory:")
    async with base, new:
        times: dict[str, list[float]] = {"baseline": [], "this": []}
        await _round(base)
        await _round(new)
        for _ in range(ROUNDS):
            times["baseline"].append(await _round(base))
            times["this"].append(await _round(new))
    for name, values in times.items():
        print(f"{name:8} off {min(values):7.2f} us per fetch_val (best of {ROUNDS})")


def check_cost() -> float:
    """Microseconds the one check every statement pays when nothing is on (no I/O, so
    steadier than the end-to-end rounds on a busy machine)."""
    watching = Database("sqlite:///:memory:")._engine.observer.watching
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS * 10):
            watching()
        best = min(best, (time.perf_counter() - started) / (CALLS * 10) * 1e6)
    return best


def main(argv: list[str]) -> None:
    if argv[:1] == ["--check"]:
        print(f"the check with nothing on: {check_cost():.3f} us per statement")
        return
    if argv[:1] == ["--baseline"]:
        asyncio.run(compare(argv[1]))
        return
    modes = argv or ["hook", "debug", "otel"]
    if not hasattr(Database, "add_query_hook"):
        modes = ["off"]
    for mode in modes:
        off, on = asyncio.run(measure(mode))
        print(
            f"{mode:6} off {off:7.2f} us, on {on:7.2f} us per fetch_val: "
            f"{on - off:+.2f} us per statement (best of {ROUNDS})"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
