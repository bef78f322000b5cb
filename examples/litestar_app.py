"""A notes API on Litestar and dbaccess.

Run it with:  uvicorn examples.litestar_app:app
DATABASE_URL picks the database (default: sqlite:///notes.db).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from litestar import Litestar, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotFoundException, ValidationException

# Litestar 2.25's explicit markers (the inferred style is deprecated for Litestar 3).
from litestar.params import FromPath, JSONBody

from dbaccess import Database, IntegrityError, Record

metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(200), nullable=False, unique=True),
    sa.Column("done", sa.Boolean, nullable=False, default=False),
)


@dataclass
class NoteIn:
    text: str


@dataclass
class NotePatch:
    text: str | None = None
    done: bool | None = None


@dataclass
class Batch:
    texts: list[str]


def as_json(row: Record) -> dict[str, Any]:
    return {"id": row.id, "text": row.text, "done": row.done}


def check_text(text: str) -> None:
    if not 0 < len(text) <= 200:
        raise ValidationException("text must be a string of 1 to 200 characters")


def duplicate() -> HTTPException:
    return HTTPException(status_code=409, detail="a note with this text exists")


@get("/notes")
async def list_notes(state: State) -> list[dict[str, Any]]:
    database: Database = state.database
    return [as_json(row) for row in await database.fetch_all(sa.select(notes).order_by("id"))]


@post("/notes")  # Litestar answers a POST with 201 Created
async def create_note(data: JSONBody[NoteIn], state: State) -> dict[str, Any]:
    check_text(data.text)
    database: Database = state.database
    try:
        note_id = await database.execute(notes.insert(), {"text": data.text})
    except IntegrityError:
        raise duplicate() from None
    return {"id": note_id, "text": data.text, "done": False}


async def fetch_note(database: Database, note_id: int) -> dict[str, Any]:
    row = await database.fetch_one(sa.select(notes).where(notes.c.id == note_id))
    if row is None:
        raise NotFoundException("no such note")
    return as_json(row)


@get("/notes/{note_id:int}")
async def read_note(note_id: FromPath[int], state: State) -> dict[str, Any]:
    return await fetch_note(state.database, note_id)


@patch("/notes/{note_id:int}")
async def update_note(
    note_id: FromPath[int], data: JSONBody[NotePatch], state: State
) -> dict[str, Any]:
    changes = {key: value for key, value in vars(data).items() if value is not None}
    if not changes:
        raise ValidationException("give text and/or done")
    if "text" in changes:
        check_text(changes["text"])
    database: Database = state.database
    try:
        result = await database.execute_result(
            notes.update().where(notes.c.id == note_id).values(**changes)
        )
    except IntegrityError:
        raise duplicate() from None
    if result.rowcount == 0:
        raise NotFoundException("no such note")
    return await fetch_note(database, note_id)


@delete("/notes/{note_id:int}")  # 204 No Content
async def delete_note(note_id: FromPath[int], state: State) -> None:
    database: Database = state.database
    result = await database.execute_result(notes.delete().where(notes.c.id == note_id))
    if result.rowcount == 0:
        raise NotFoundException("no such note")


@post("/notes/batch")
async def create_notes(data: JSONBody[Batch], state: State) -> Response[list[dict[str, Any]]]:
    """Create several notes at once: all of them, or none if one fails."""
    if not data.texts:
        raise ValidationException("texts must not be empty")
    for text in data.texts:
        check_text(text)
    database: Database = state.database
    created = []
    try:
        async with database.transaction():
            for text in data.texts:
                note_id = await database.execute(notes.insert(), {"text": text})
                created.append({"id": note_id, "text": text, "done": False})
    except IntegrityError:
        raise HTTPException(
            status_code=409, detail="a note with one of these texts exists: none was created"
        ) from None
    return Response(created, status_code=201)


HANDLERS = [list_notes, create_note, read_note, update_note, delete_note, create_notes]


# --8<-- [start:lifespan]
def create_app(database_url: str | None = None) -> Litestar:
    """Build the app on ``database_url`` (default: $DATABASE_URL, else SQLite)."""
    database = Database(database_url or os.environ.get("DATABASE_URL", "sqlite:///notes.db"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with database:  # connect() at startup, disconnect() at shutdown
            # A real application creates its tables with migrations (migrations-example/).
            await database.execute(sa.schema.CreateTable(notes, if_not_exists=True))
            yield

    return Litestar(HANDLERS, lifespan=[lifespan], state=State({"database": database}))


# --8<-- [end:lifespan]


# --8<-- [start:hooks]
def create_app_with_hooks(database_url: str | None = None) -> Litestar:
    """The same app with Litestar's on_startup/on_shutdown hooks instead of a lifespan."""
    database = Database(database_url or os.environ.get("DATABASE_URL", "sqlite:///notes.db"))

    async def startup() -> None:
        await database.connect()
        await database.execute(sa.schema.CreateTable(notes, if_not_exists=True))

    return Litestar(
        HANDLERS,
        on_startup=[startup],
        on_shutdown=[database.disconnect],
        state=State({"database": database}),
    )


# --8<-- [end:hooks]


app = create_app()
