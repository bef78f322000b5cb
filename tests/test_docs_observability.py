"""The code samples of docs/observability.md and README's Observability section, run."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from dbaccess import DBAccessError

ROOT = Path(__file__).resolve().parent.parent


def example(document: str, marker: str) -> str:
    """The Python code block of ``document`` that contains ``marker``."""
    text = (ROOT / document).read_text(encoding="utf-8")
    blocks: list[str] = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, f"expected one example with {marker!r} in {document}"
    return found[0]


def run(code: str, database_url: str) -> dict[str, Any]:
    assert '"postgresql://localhost/app"' in code
    namespace: dict[str, Any] = {}
    exec(code.replace('"postgresql://localhost/app"', repr(database_url)), namespace)
    return namespace


def python_blocks(document: str) -> int:
    return len(re.findall(r"```python\n", (ROOT / document).read_text(encoding="utf-8")))


def test_every_sample_of_the_guide_is_run_here() -> None:
    assert python_blocks("docs/observability.md") == 4


async def test_logging_example(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("dbaccess")
    level = logger.level
    try:
        namespace = run(example("docs/observability.md", "log_parameters=True"), database_url)
        database = namespace["database"]
        async with database:
            await database.fetch_val("SELECT :value", {"value": 12345})
    finally:
        logger.setLevel(level)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("statement")]
    assert len(lines) == 1
    assert lines[0].endswith("parameters: (12345,)")


async def test_query_hooks_example(database_url: str) -> None:
    namespace = run(example("docs/observability.md", "add_query_hook"), database_url)
    database = namespace["database"]
    async with database:
        await database.fetch_val("SELECT 1")
        with pytest.raises(DBAccessError, match="dbaccess_missing"):
            await database.fetch_all("select * from dbaccess_missing")
    assert namespace["statements"] == {"SELECT": 2}
    (failure,) = namespace["failures"]
    assert "dbaccess_missing" in failure.sql
    namespace["hook"].remove()


async def test_opentelemetry_example(database_url: str) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from dbaccess import Database
    from dbaccess.opentelemetry import DBAccessInstrumentor

    code = example("docs/observability.md", "DBAccessInstrumentor().instrument(")
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    try:
        exporter = InMemorySpanExporter()
        namespace["tracer_provider"].add_span_processor(SimpleSpanProcessor(exporter))
        async with Database(database_url) as database:
            await database.fetch_val("SELECT 1")
        assert [s.name for s in exporter.get_finished_spans()].count("connect") == 1
        assert any(s.name.startswith("SELECT") for s in exporter.get_finished_spans())
    finally:
        DBAccessInstrumentor().uninstrument()
        namespace["meter_provider"].shutdown()
        namespace["tracer_provider"].shutdown()


async def test_pool_stats_example(database_url: str) -> None:
    from dbaccess import Database

    namespace: dict[str, Any] = {"Database": Database}
    exec(example("docs/observability.md", "async def report("), namespace)
    async with Database(database_url, min_size=1) as database:
        await database.fetch_val("SELECT 1")
        line = await namespace["report"](database)
    assert line == (
        "0/10 in use, 1 idle, 0 waiting; 1 opened, 0 failed; 0 of 1 loans waited, 0.0 ms on average"
    )


async def test_readme_example(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dbaccess")
    namespace = run(example("README.md", "slow_statement_threshold="), database_url)
    database = namespace["database"]
    async with database:
        await database.fetch_val("SELECT 1")
    assert namespace["seen"] == ["SELECT 1"]
    assert not [r for r in caplog.records if r.getMessage().startswith("slow")]
