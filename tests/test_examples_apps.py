"""examples/: the Starlette, FastAPI and Litestar notes APIs, driven through their lifespan.

Each app runs on every backend, through httpx's ASGI transport and asgi-lifespan's
LifespanManager (startup, requests, shutdown), as a real server would drive it.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from dbaccess import Database, DatabaseURL, InterfaceError

from .conftest import released, skip_behind_pgbouncer

ROOT = Path(__file__).resolve().parent.parent

# name -> (module, factory, status of a request whose body is invalid)
APPS = {
    "starlette": ("examples.starlette_app", "create_app", 422),
    "fastapi": ("examples.fastapi_app", "create_app", 422),
    "fastapi-hooks": ("examples.fastapi_app", "create_app_with_hooks", 422),
    "litestar": ("examples.litestar_app", "create_app", 400),
    "litestar-hooks": ("examples.litestar_app", "create_app_with_hooks", 400),
}
LIFESPAN_APPS = ["starlette", "fastapi", "litestar"]


def factory(name: str) -> Callable[[str], Any]:
    module, function, _ = APPS[name]
    made: Callable[[str], Any] = getattr(importlib.import_module(module), function)
    return made


@pytest.fixture
async def app_database_url(database_url: str) -> AsyncIterator[str]:
    """The test server's URL, without the example's notes table before and after."""

    async def drop() -> None:
        if DatabaseURL(database_url).dialect != "sqlite":  # in memory: new for each app
            async with Database(database_url) as db:
                await db.execute("DROP TABLE IF EXISTS notes")

    await drop()
    try:
        yield database_url
    finally:
        await drop()


# --8<-- [start:serving]
@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan, yield a client talking to it, then shut it down."""
    # Requests go to the app itself, not to manager.app: that one hands every request
    # the same lifespan state dict (the ASGI spec asks for a copy each), where Litestar
    # keeps per-request flags. The examples keep their database in app.state instead.
    async with (
        LifespanManager(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://notes.test"
        ) as client,
    ):
        yield client


# --8<-- [end:serving]


def database_of(app: Any) -> Database:
    database: Database = app.state.database
    return database


@pytest.mark.parametrize("name", list(APPS))
async def test_every_endpoint(name: str, app_database_url: str) -> None:
    invalid = APPS[name][2]
    app = factory(name)(app_database_url)
    async with serving(app) as client:
        assert (await client.get("/notes")).json() == []

        created = await client.post("/notes", json={"text": "buy milk"})
        assert created.status_code == 201, created.text
        note = created.json()
        assert note == {"id": note["id"], "text": "buy milk", "done": False}
        assert (await client.get(f"/notes/{note['id']}")).json() == note

        assert (await client.post("/notes", json={"text": "buy milk"})).status_code == 409
        assert (await client.post("/notes", json={"text": ""})).status_code == invalid
        assert (await client.post("/notes", json={})).status_code == invalid

        patched = await client.patch(f"/notes/{note['id']}", json={"done": True})
        assert patched.status_code == 200, patched.text
        assert patched.json() == {**note, "done": True}
        renamed = await client.patch(f"/notes/{note['id']}", json={"text": "buy oat milk"})
        assert renamed.json() == {"id": note["id"], "text": "buy oat milk", "done": True}
        assert (await client.patch("/notes/999999", json={"done": True})).status_code == 404
        assert (await client.patch(f"/notes/{note['id']}", json={})).status_code == invalid

        batch = await client.post("/notes/batch", json={"texts": ["walk dog", "read"]})
        assert batch.status_code == 201, batch.text
        assert [n["text"] for n in batch.json()] == ["walk dog", "read"]
        listed = (await client.get("/notes")).json()
        assert [n["text"] for n in listed] == ["buy oat milk", "walk dog", "read"]

        deleted = await client.delete(f"/notes/{note['id']}")
        assert deleted.status_code == 204
        assert (await client.get(f"/notes/{note['id']}")).status_code == 404
        assert (await client.delete(f"/notes/{note['id']}")).status_code == 404
        assert [n["text"] for n in (await client.get("/notes")).json()] == ["walk dog", "read"]


@pytest.mark.parametrize("name", LIFESPAN_APPS)
async def test_a_failing_request_in_a_transaction_rolls_back(
    name: str, app_database_url: str
) -> None:
    app = factory(name)(app_database_url)
    async with serving(app) as client:
        assert (await client.post("/notes", json={"text": "taken"})).status_code == 201
        # The first two inserts succeed, the third violates the unique text: none stays.
        failed = await client.post("/notes/batch", json={"texts": ["new 1", "new 2", "taken"]})
        assert failed.status_code == 409, failed.text
        assert [n["text"] for n in (await client.get("/notes")).json()] == ["taken"]
        # A duplicate within the batch itself rolls back the same way.
        again = await client.post("/notes/batch", json={"texts": ["twin", "twin"]})
        assert again.status_code == 409
        assert [n["text"] for n in (await client.get("/notes")).json()] == ["taken"]
        assert await released(database_of(app))


@pytest.mark.parametrize("name", LIFESPAN_APPS)
async def test_100_concurrent_requests_lose_and_mix_nothing(
    name: str, app_database_url: str
) -> None:
    app = factory(name)(app_database_url)
    async with serving(app) as client:
        texts = [f"note {i}" for i in range(100)]
        responses = await asyncio.gather(*(client.post("/notes", json={"text": t}) for t in texts))
        assert [r.status_code for r in responses] == [201] * 100
        by_id = {r.json()["id"]: r.json()["text"] for r in responses}
        assert sorted(by_id.values()) == sorted(texts)  # 100 distinct ids, each its own text

        reads = await asyncio.gather(*(client.get(f"/notes/{i}") for i in by_id))
        assert {r.json()["id"]: r.json()["text"] for r in reads} == by_id

        # Transactions side by side: every other batch fails on a text taken above.
        batches = [
            [f"batch {i} a", f"batch {i} b", "note 0" if i % 2 else f"batch {i} c"]
            for i in range(20)
        ]
        results = await asyncio.gather(
            *(client.post("/notes/batch", json={"texts": b}) for b in batches)
        )
        assert [r.status_code for r in results] == [409 if i % 2 else 201 for i in range(20)]
        expected = set(texts) | {t for i, b in enumerate(batches) if i % 2 == 0 for t in b}
        listed = (await client.get("/notes")).json()
        assert len(listed) == len(expected) == 100 + 30
        assert {n["text"] for n in listed} == expected
        assert await released(database_of(app))


async def server_sessions(url: str) -> int:
    """Sessions other than this one connected to the test database on its server."""
    query = {
        "postgresql": "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        "mysql": "SELECT count(*) FROM information_schema.processlist "
        "WHERE db = DATABASE() AND id <> CONNECTION_ID()",
    }[DatabaseURL(url).dialect]
    async with Database(url, min_size=1, max_size=1) as db:
        count: int = await db.fetch_val(query)
        return count


@pytest.mark.parametrize("name", list(APPS))
async def test_shutdown_returns_every_connection(name: str, app_database_url: str) -> None:
    skip_behind_pgbouncer(app_database_url, "server sessions")
    app = factory(name)(app_database_url)
    database = database_of(app)
    on_server = DatabaseURL(app_database_url).dialect != "sqlite"
    assert not database.is_connected
    async with serving(app) as client:
        assert database.is_connected
        await asyncio.gather(*(client.post("/notes", json={"text": f"n{i}"}) for i in range(30)))
        await asyncio.gather(*(client.get("/notes") for _ in range(30)))
        assert await released(database)
        stats = database.pool_stats
        assert (stats.in_use, stats.waiting) == (0, 0)
        assert stats.idle == stats.size >= 1
        if on_server:
            assert await server_sessions(app_database_url) >= stats.size
    assert not database.is_connected
    with pytest.raises(InterfaceError, match="pool_stats"):
        database.pool_stats  # noqa: B018 - reading it is the test
    if on_server:
        # The server notices a closed session a moment after the client closes it.
        for _ in range(500):
            if await server_sessions(app_database_url) == 0:
                break
            await asyncio.sleep(0.01)
        assert await server_sessions(app_database_url) == 0


async def test_an_app_served_by_uvicorn_over_http(app_database_url: str) -> None:
    # The socket is bound here and handed to uvicorn (--fd): no race for a free port.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "examples.fastapi_app:app",
        "--fd",
        str(listener.fileno()),
        pass_fds=[listener.fileno()],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": app_database_url},
        stderr=asyncio.subprocess.PIPE,
    )
    listener.close()
    assert server.stderr is not None
    log: list[str] = []
    try:
        while "Application startup complete." not in "".join(log):
            line = (await asyncio.wait_for(server.stderr.readline(), 60)).decode()
            assert line, f"uvicorn exited before starting: {''.join(log)}"
            log.append(line)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            created = await client.post("/notes", json={"text": "over the wire"})
            assert created.status_code == 201, created.text
            note = created.json()
            batch = await client.post("/notes/batch", json={"texts": ["a", "b"]})
            assert batch.status_code == 201
            listed = (await client.get("/notes")).json()
            assert [n["text"] for n in listed] == ["over the wire", "a", "b"]
            assert (await client.get(f"/notes/{note['id']}")).json() == note
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGINT)  # what Ctrl-C does: lifespan shutdown
        rest = await asyncio.wait_for(server.stderr.read(), 60)
        await asyncio.wait_for(server.wait(), 60)
    log.append(rest.decode())
    assert server.returncode == 0, "".join(log)
    assert "Application shutdown complete." in "".join(log)
