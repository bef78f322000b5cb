"""The OpenTelemetry instrumentor: spans per statement, connect and transaction, and
pool metrics, read back with the SDK's in-memory exporter and metric reader."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra and the SDK")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from dbaccess import Database, DatabaseURL, DBAccessError, IntegrityError
from dbaccess.opentelemetry import DBAccessInstrumentor

from .conftest import notes, system_name


class Telemetry:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("tests")

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = self.exporter.get_finished_spans()
        return [s for s in spans if name is None or s.name == name or s.name.startswith(name)]

    def statements(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if "db.query.text" in (s.attributes or {})]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name == metric:
                        found.extend(item.data.data_points)
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    instrumentor = DBAccessInstrumentor()
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        yield telemetry
    finally:
        instrumentor.uninstrument()


def expected_server(url: DatabaseURL) -> dict[str, Any]:
    if url.dialect == "sqlite":
        return {}
    default = 5432 if url.dialect.startswith("postgres") else 3306
    return {"server.address": url.hostname, "server.port": url.port or default}


async def test_a_span_per_statement_with_the_semantic_conventions(
    db: Database, telemetry: Telemetry
) -> None:
    await db.execute(notes.insert(), {"text": "secret-value", "completed": False})
    assert await db.fetch_val(notes.select().where(notes.c.text == "secret-value")) == 1
    insert, select = telemetry.statements()
    attributes = dict(select.attributes or {})
    namespace = db.url.database if db.url.dialect != "sqlite" else None
    assert attributes.pop("db.system.name") == await system_name(db)
    assert attributes.pop("db.namespace", None) == namespace
    assert attributes.pop("db.operation.name") == "SELECT"
    text = str(attributes.pop("db.query.text"))
    assert text.startswith("SELECT dbaccess_notes.id")
    assert "secret-value" not in text  # values are left out
    assert attributes == expected_server(db.url)
    assert select.kind is SpanKind.CLIENT
    assert select.name == ("SELECT" if namespace is None else f"SELECT {namespace}")
    assert insert.attributes is not None and insert.attributes["db.operation.name"] == "INSERT"
    assert select.status.status_code is StatusCode.UNSET


async def test_a_failed_statement_records_its_error_type(
    db: Database, telemetry: Telemetry
) -> None:
    await db.execute(notes.insert(), {"id": 1, "text": "a", "completed": False})
    with pytest.raises(IntegrityError):
        await db.execute(notes.insert(), {"id": 1, "text": "b", "completed": False})
    failed = telemetry.statements()[-1]
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "dbaccess.IntegrityError"
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    (duration,) = [
        p for p in telemetry.points("db.client.operation.duration") if "error.type" in p.attributes
    ]
    assert duration.attributes["error.type"] == "dbaccess.IntegrityError"
    assert duration.count == 1


async def test_spans_nest_under_the_callers_span_across_tasks(
    database: Database, telemetry: Telemetry
) -> None:
    with telemetry.tracer.start_as_current_span("request") as request:
        values = await asyncio.gather(*(database.fetch_val(f"SELECT {i}") for i in range(4)))
        async for _ in database.iterate("SELECT 9"):
            pass
    assert values == [0, 1, 2, 3]
    statements = telemetry.statements()
    assert len(statements) == 5
    for span in statements:
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id
        assert span.context is not None
        assert span.context.trace_id == request.get_span_context().trace_id


async def test_statements_nest_under_their_transaction_and_savepoint(
    database: Database, telemetry: Telemetry
) -> None:
    async with database.transaction():
        await database.fetch_val("SELECT 1")
        async with database.transaction():
            await asyncio.gather(database.fetch_val("SELECT 2"), database.fetch_val("SELECT 3"))
        with pytest.raises(DBAccessError):
            async with database.transaction():
                await database.execute("SELECT * FROM dbaccess_no_such_table")
    (transaction,) = telemetry.spans("transaction")
    savepoints = telemetry.spans("savepoint")
    assert len(savepoints) == 2
    assert transaction.context is not None
    by_text = {(s.attributes or {})["db.query.text"]: s for s in telemetry.statements()}
    assert by_text["SELECT 1"].parent is not None
    assert by_text["SELECT 1"].parent.span_id == transaction.context.span_id
    for text in ("SELECT 2", "SELECT 3"):
        parent = by_text[text].parent
        assert parent is not None and savepoints[0].context is not None
        assert parent.span_id == savepoints[0].context.span_id
    for savepoint in savepoints:
        assert savepoint.parent is not None
        assert savepoint.parent.span_id == transaction.context.span_id
    outcomes = [
        str((s.attributes or {})["dbaccess.transaction.outcome"])
        for s in telemetry.spans()
        if s.name in ("transaction", "savepoint")
    ]
    assert sorted(outcomes) == ["commit", "commit", "rollback"]
    # Outside the transaction, statements are not its children any more.
    await database.fetch_val("SELECT 4")
    last = telemetry.statements()[-1]
    assert last.parent is None


async def test_a_span_per_connection_opened(database_url: str, telemetry: Telemetry) -> None:
    async with Database(database_url, min_size=2) as database:
        await database.fetch_val("SELECT 1")
        backend = await system_name(database)
    connects = telemetry.spans("connect")
    assert len(connects) == 2
    for span in connects:
        assert span.attributes is not None
        assert span.attributes["db.system.name"] == backend
    (created,) = telemetry.points("db.client.connection.create_time")
    assert created.count == 2


async def test_execute_many_reports_its_batch_size(db: Database, telemetry: Telemetry) -> None:
    rows = [{"text": f"n{i}", "completed": False} for i in range(3)]
    await db.execute_many(notes.insert(), rows)
    (span,) = [s for s in telemetry.statements() if "INSERT" in s.name]
    assert span.attributes is not None
    assert span.attributes["db.operation.batch.size"] == 3


async def test_pool_metrics(database_url: str, telemetry: Telemetry) -> None:
    async with Database(database_url, min_size=1, max_size=1) as database:
        held, done = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with database.connection():
                held.set()
                await done.wait()

        holder = asyncio.ensure_future(hold())
        await held.wait()
        waiter = asyncio.ensure_future(database.fetch_val("SELECT 1"))
        for _ in range(1000):  # until the waiter queues (a few loop turns)
            if database.pool_stats.waiting:
                break
            await asyncio.sleep(0)
        name = {"db.client.connection.pool.name": pool_name(database.url)}
        counts = {
            p.attributes["db.client.connection.state"]: p.value
            for p in telemetry.points("db.client.connection.count")
            if p.attributes.items() >= name.items()
        }
        assert counts == {"idle": 0, "used": 1}
        (pending,) = telemetry.points("db.client.connection.pending_requests")
        assert (pending.value, dict(pending.attributes)) == (1, name)
        (maximum,) = telemetry.points("db.client.connection.max")
        assert maximum.value == 1
        done.set()
        await holder
        assert await waiter == 1
        (waited,) = telemetry.points("db.client.connection.wait_time")
        assert waited.count == 1
        assert waited.sum > 0
        assert dict(waited.attributes) == name
    # Disconnected: the pool is no longer reported.
    assert [p for p in telemetry.points("db.client.connection.count") if p.value] == []


def pool_name(url: DatabaseURL) -> str:
    if url.dialect == "sqlite":
        return f"sqlite:{url.database}"
    return f"{url.hostname}:{url.port or ''}/{url.database}"


async def test_uninstrument_stops_and_instrument_twice_does_nothing(
    database: Database, telemetry: Telemetry
) -> None:
    instrumentor = DBAccessInstrumentor()
    assert instrumentor.is_instrumented
    instrumentor.instrument()  # already instrumented: no second span per statement
    await database.fetch_val("SELECT 1")
    assert len(telemetry.statements()) == 1
    instrumentor.uninstrument()
    assert not instrumentor.is_instrumented
    assert not database._engine.observer.watching()
    await database.fetch_val("SELECT 2")
    assert len(telemetry.statements()) == 1
    instrumentor.uninstrument()  # twice: nothing


async def test_query_text_can_be_left_out(database: Database) -> None:
    telemetry = Telemetry()
    instrumentor = DBAccessInstrumentor()
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        capture_query_text=False,
    )
    try:
        await database.fetch_val("SELECT 1")
    finally:
        instrumentor.uninstrument()
    (span,) = [s for s in telemetry.spans() if s.name.startswith("SELECT")]
    assert span.attributes is not None
    assert "db.query.text" not in span.attributes
    assert span.attributes["db.operation.name"] == "SELECT"
