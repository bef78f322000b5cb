"""A notes API on Starlette and dbaccess.

Run it with:  uvicorn examples.starlette_app:app
DATABASE_URL picks the database (default: sqlite:///notes.db).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dbaccess import Database, IntegrityError, Record

metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(200), nullable=False, unique=True),
    sa.Column("done", sa.Boolean, nullable=False, default=False),
)


def as_json(row: Record) -> dict[str, Any]:
    return {"id": row.id, "text": row.text, "done": row.done}


def error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def valid_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200


async def list_notes(request: Request) -> Response:
    database: Database = request.app.state.database
    rows = await database.fetch_all(sa.select(notes).order_by(notes.c.id))
    return JSONResponse([as_json(row) for row in rows])


async def create_note(request: Request) -> Response:
    database: Database = request.app.state.database
    body = await request.json()
    if not isinstance(body, dict) or not valid_text(body.get("text")):
        return error(422, "text must be a string of 1 to 200 characters")
    try:
        note_id = await database.execute(notes.insert(), {"text": body["text"]})
    except IntegrityError:
        return error(409, "a note with this text exists")
    return JSONResponse({"id": note_id, "text": body["text"], "done": False}, status_code=201)


async def read_note(request: Request) -> Response:
    database: Database = request.app.state.database
    row = await database.fetch_one(
        sa.select(notes).where(notes.c.id == request.path_params["note_id"])
    )
    return error(404, "no such note") if row is None else JSONResponse(as_json(row))


async def update_note(request: Request) -> Response:
    database: Database = request.app.state.database
    note_id = request.path_params["note_id"]
    body = await request.json()
    changes = {key: body[key] for key in ("text", "done") if isinstance(body, dict) and key in body}
    if (
        not changes
        or ("text" in changes and not valid_text(changes["text"]))
        or ("done" in changes and not isinstance(changes["done"], bool))
    ):
        return error(422, "give text (1 to 200 characters) and/or done (a boolean)")
    # One connection for the update and the read that follows it.
    async with database.connection() as connection:
        try:
            result = await connection.execute_result(
                notes.update().where(notes.c.id == note_id).values(**changes)
            )
        except IntegrityError:
            return error(409, "a note with this text exists")
        if result.rowcount == 0:
            return error(404, "no such note")
        row = await connection.fetch_one(sa.select(notes).where(notes.c.id == note_id))
    # None only if another request deleted the note in between.
    return error(404, "no such note") if row is None else JSONResponse(as_json(row))


async def delete_note(request: Request) -> Response:
    database: Database = request.app.state.database
    result = await database.execute_result(
        notes.delete().where(notes.c.id == request.path_params["note_id"])
    )
    return error(404, "no such note") if result.rowcount == 0 else Response(status_code=204)


# --8<-- [start:batch]
async def create_notes(request: Request) -> Response:
    """Create several notes at once: all of them, or none if one fails."""
    database: Database = request.app.state.database
    body = await request.json()
    texts = body.get("texts") if isinstance(body, dict) else None
    if not isinstance(texts, list) or not texts or not all(map(valid_text, texts)):
        return error(422, "texts must be a non-empty list of strings of 1 to 200 characters")
    created = []
    try:
        async with database.transaction():
            for text in texts:
                note_id = await database.execute(notes.insert(), {"text": text})
                created.append({"id": note_id, "text": text, "done": False})
    except IntegrityError:
        return error(409, "a note with one of these texts exists: none was created")
    return JSONResponse(created, status_code=201)


# --8<-- [end:batch]


# --8<-- [start:lifespan]
def create_app(database_url: str | None = None) -> Starlette:
    """Build the app on ``database_url`` (default: $DATABASE_URL, else SQLite)."""
    database = Database(database_url or os.environ.get("DATABASE_URL", "sqlite:///notes.db"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Connect at startup, disconnect at shutdown (Starlette 1.0 removed the
        # on_startup/on_shutdown hooks: the lifespan is the one way).
        async with database:
            # A real application creates its tables with migrations (migrations-example/).
            await database.execute(sa.schema.CreateTable(notes, if_not_exists=True))
            yield

    app = Starlette(
        routes=[
            Route("/notes", list_notes, methods=["GET"]),
            Route("/notes", create_note, methods=["POST"]),
            Route("/notes/batch", create_notes, methods=["POST"]),
            Route("/notes/{note_id:int}", read_note, methods=["GET"]),
            Route("/notes/{note_id:int}", update_note, methods=["PATCH"]),
            Route("/notes/{note_id:int}", delete_note, methods=["DELETE"]),
        ],
        lifespan=lifespan,
    )
    app.state.database = database
    return app


# --8<-- [end:lifespan]


app = create_app()
