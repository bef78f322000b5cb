"""A notes API on FastAPI and dbaccess, with a connection or a transaction per request.

Run it with:  uvicorn examples.fastapi_app:app
DATABASE_URL picks the database (default: sqlite:///notes.db).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, Field

from dbaccess import Connection, Database, IntegrityError

metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(200), nullable=False, unique=True),
    sa.Column("done", sa.Boolean, nullable=False, default=False),
)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=200)


class NotePatch(BaseModel):
    text: str | None = Field(default=None, min_length=1, max_length=200)
    done: bool | None = None


class Note(BaseModel):
    id: int
    text: str
    done: bool


class Batch(BaseModel):
    texts: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1)


# -- dependencies: the database, a connection, a transaction ---------------------------
# --8<-- [start:dependencies]


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_connection(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[Connection]:
    """One pooled connection for the whole request, given back when the handler ends."""
    async with database.connection() as connection:
        yield connection


async def get_transaction(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[Connection]:
    """A connection in a transaction: committed when the handler returns, rolled back
    when it raises (an HTTPException included)."""
    async with database.connection() as connection, connection.transaction():
        yield connection


# scope="function": the connection goes back (and the transaction commits) when the
# handler returns, before the response is sent, so a client that gets the response
# sees the data, and a failed commit is an error response, not a lost write.
DB = Annotated[Connection, Depends(get_connection, scope="function")]
InTransaction = Annotated[Connection, Depends(get_transaction, scope="function")]
# --8<-- [end:dependencies]

NOT_FOUND = HTTPException(status_code=404, detail="no such note")
DUPLICATE = HTTPException(status_code=409, detail="a note with this text exists")


# --8<-- [start:lifespan]
def create_app(database_url: str | None = None) -> FastAPI:
    """Build the app on ``database_url`` (default: $DATABASE_URL, else SQLite)."""
    database = Database(database_url or os.environ.get("DATABASE_URL", "sqlite:///notes.db"))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with database:  # connect() at startup, disconnect() at shutdown
            # A real application creates its tables with migrations (migrations-example/).
            await database.execute(sa.schema.CreateTable(notes, if_not_exists=True))
            yield

    app = FastAPI(lifespan=lifespan)
    app.state.database = database
    add_routes(app)
    return app


# --8<-- [end:lifespan]


def add_routes(app: FastAPI) -> None:
    @app.get("/notes")
    async def list_notes(db: DB) -> list[Note]:
        rows = await db.fetch_all(sa.select(notes).order_by(notes.c.id))
        return [Note.model_validate(dict(row)) for row in rows]

    @app.post("/notes", status_code=201)
    async def create_note(note: NoteIn, db: DB) -> Note:
        try:
            note_id = await db.execute(notes.insert(), {"text": note.text})
        except IntegrityError:
            raise DUPLICATE from None
        return Note(id=note_id, text=note.text, done=False)

    @app.get("/notes/{note_id}")
    async def read_note(note_id: int, db: DB) -> Note:
        row = await db.fetch_one(sa.select(notes).where(notes.c.id == note_id))
        if row is None:
            raise NOT_FOUND
        return Note.model_validate(dict(row))

    @app.patch("/notes/{note_id}")
    async def update_note(note_id: int, patch: NotePatch, db: DB) -> Note:
        changes = patch.model_dump(exclude_none=True)
        if not changes:
            raise HTTPException(status_code=422, detail="give text and/or done")
        try:
            result = await db.execute_result(
                notes.update().where(notes.c.id == note_id).values(**changes)
            )
        except IntegrityError:
            raise DUPLICATE from None
        if result.rowcount == 0:
            raise NOT_FOUND
        return await read_note(note_id, db)

    @app.delete("/notes/{note_id}", status_code=204)
    async def delete_note(note_id: int, db: DB) -> Response:
        result = await db.execute_result(notes.delete().where(notes.c.id == note_id))
        if result.rowcount == 0:
            raise NOT_FOUND
        return Response(status_code=204)

    # --8<-- [start:batch]
    @app.post("/notes/batch", status_code=201)
    async def create_notes(batch: Batch, db: InTransaction) -> list[Note]:
        """All the notes, or none: the HTTPException rolls the transaction back."""
        created = []
        for text in batch.texts:
            try:
                note_id = await db.execute(notes.insert(), {"text": text})
            except IntegrityError:
                raise HTTPException(
                    status_code=409, detail=f"a note {text!r} exists: none was created"
                ) from None
            created.append(Note(id=note_id, text=text, done=False))
        return created

    # --8<-- [end:batch]


# --8<-- [start:hooks]
def create_app_with_hooks(database_url: str | None = None) -> FastAPI:
    """The same app with FastAPI's older startup/shutdown hooks instead of a lifespan."""
    database = Database(database_url or os.environ.get("DATABASE_URL", "sqlite:///notes.db"))

    async def startup() -> None:
        await database.connect()
        await database.execute(sa.schema.CreateTable(notes, if_not_exists=True))

    app = FastAPI(on_startup=[startup], on_shutdown=[database.disconnect])
    app.state.database = database
    add_routes(app)
    return app


# --8<-- [end:hooks]


app = create_app()
