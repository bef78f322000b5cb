"""Nothing lost: many tasks transfer amounts between accounts in transactions while
others cancel them at random and the server kills their connections at random.

At the end the total is unchanged; every transfer whose caller saw it commit is there;
none whose caller saw it fail or be cancelled before COMMIT is; a transfer interrupted
during COMMIT (its outcome unknowable to the caller) is there entirely or not at all;
every balance matches the transfers that are there (no half transfer); the pool is
whole and the server holds no open transaction.

DBACCESS_SOAK_SECONDS sets how long each backend is soaked (default 10), and
DBACCESS_SOAK_SEED replays a run (the seed is in every failure message).
DBACCESS_SOAK_REPORT names a file to which each run appends its figures as a JSON
line; CI prints it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field

import pytest
import sqlalchemy as sa

from dbaccess import Database, DatabaseError, DatabaseURL

from .conftest import accounts, released

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("DBACCESS_SOAK_SECONDS", "10"))
ACCOUNTS = 20
INITIAL_BALANCE = 1_000
WORKERS = 16
POOL_SIZE = 8

transfers = sa.Table(
    "dbaccess_transfers",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("source", sa.Integer, nullable=False),
    sa.Column("target", sa.Integer, nullable=False),
    sa.Column("amount", sa.Integer, nullable=False),
)
TABLES = [accounts, transfers]

#: The server's id for the connection a statement runs on.
CONNECTION_ID = {
    "postgresql": "SELECT pg_backend_pid()",
    "mysql": "SELECT CONNECTION_ID()",
}
#: Which of the given server ids are connections to this database still open.
ALIVE = {
    "postgresql": "SELECT pid FROM pg_stat_activity "
    "WHERE pid IN :ids AND datname = current_database()",
    "mysql": "SELECT id FROM information_schema.processlist WHERE id IN :ids",
}
KILL = {
    # A pid can be reused by another process once its connection ended: only this
    # database's.
    "postgresql": "SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) "
    "FROM pg_stat_activity WHERE pid = :pid AND datname = current_database()",
    "mysql": "KILL :pid",
}
#: Which of the soak pool's connections still hold a transaction (there must be none).
OPEN_TRANSACTIONS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity "
    "WHERE pid IN :ids AND state LIKE 'idle in transaction%'",
    "mysql": "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id IN :ids",
}


@dataclass
class Figures:
    """What one soak run did and saw."""

    url: str
    seed: int
    seconds: float
    transfers_started: int = 0
    committed: int = 0
    failed_before_commit: int = 0
    cancelled_before_commit: int = 0
    interrupted_at_commit: int = 0
    interrupted_at_commit_found_committed: int = 0
    tasks_cancelled: int = 0
    connections_killed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Ledger:
    """What each transfer's caller saw happen to it."""

    def __init__(self) -> None:
        self.committed: set[int] = set()
        self.not_committed: set[int] = set()  # failed or cancelled before COMMIT
        self.in_doubt: set[int] = set()  # failed or cancelled during COMMIT
        self.cancelled_before_commit = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.error_of: dict[int, str] = {}  # for the failure message
        #: Server ids of the soak pool's connections, the only ones the killer kills.
        self.connection_ids: set[int] = set()

    def saw_fail(self, transfer_id: int, committing: bool, error: str) -> None:
        (self.in_doubt if committing else self.not_committed).add(transfer_id)
        self.error_of[transfer_id] = error
        if error.startswith("CancelledError") and not committing:
            self.cancelled_before_commit += 1
        self.errors[error.partition(":")[0]] += 1


async def transfer(
    db: Database, dialect: str, ledger: Ledger, transfer_id: int, rng: random.Random
) -> None:
    source, target = rng.sample(range(ACCOUNTS), 2)
    amount = rng.randint(1, 100)
    committing = False
    try:
        async with db.transaction():
            # Rows are locked in id order, so transfers never deadlock one another.
            for account, delta in sorted([(source, -amount), (target, amount)]):
                await db.execute(
                    accounts.update()
                    .where(accounts.c.id == account)
                    .values(balance=accounts.c.balance + delta)
                )
            if dialect in CONNECTION_ID:
                ledger.connection_ids.add(await db.fetch_val(CONNECTION_ID[dialect]))
            await db.execute(
                transfers.insert(),
                {"id": transfer_id, "source": source, "target": target, "amount": amount},
            )
            committing = True
    except asyncio.CancelledError:
        ledger.saw_fail(transfer_id, committing, "CancelledError")
        raise
    except DatabaseError as exc:  # anything else is a bug, not an injected fault
        ledger.saw_fail(transfer_id, committing, f"{type(exc).__name__}: {exc}")
    else:
        ledger.committed.add(transfer_id)


async def run_transfers(
    db: Database, dialect: str, ledger: Ledger, figures: Figures, rng: random.Random
) -> None:
    """Keep WORKERS transfers in flight until the time is up; cancel some at random."""
    deadline = time.monotonic() + SECONDS
    running: set[asyncio.Task[None]] = set()
    next_id = 0
    while time.monotonic() < deadline:
        while len(running) < WORKERS:
            running.add(asyncio.create_task(transfer(db, dialect, ledger, next_id, rng)))
            next_id += 1
        done, running = await asyncio.wait(running, timeout=rng.uniform(0.0, 0.01))
        for task in done:
            if not task.cancelled():
                task.result()  # re-raises what is not an injected fault
        if running and rng.random() < 0.5:
            rng.choice(sorted(running, key=id)).cancel()
            figures.tasks_cancelled += 1
    await asyncio.gather(*running, return_exceptions=True)
    figures.transfers_started = next_id


async def kill_connections(
    admin: Database, dialect: str, ledger: Ledger, figures: Figures, rng: random.Random
) -> None:
    """Kill one of the soak pool's server connections every few tens of milliseconds."""
    while True:
        await asyncio.sleep(rng.uniform(0.02, 0.15))
        if not ledger.connection_ids:
            continue
        # Most connections the soak pool ever had are gone (each cancelled statement
        # closes one): choose among those still open.
        rows = await admin.fetch_all(ALIVE[dialect], {"ids": sorted(ledger.connection_ids)})
        alive = {row[0] for row in rows}
        ledger.connection_ids &= alive
        if not alive:
            continue
        pid = rng.choice(sorted(alive))
        try:
            killed = await admin.fetch_val(KILL[dialect], {"pid": pid})
        except DatabaseError:
            killed = False  # MySQL: no such connection any more
        if killed is False:
            ledger.connection_ids.discard(pid)  # it ended by itself meanwhile
        else:
            figures.connections_killed += 1


def append_line(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(line + "\n")


@pytest.fixture
async def soak_db(database_url: str) -> AsyncIterator[Database]:
    """The pool the transfers run on, with the accounts set up, and dropped after."""
    async with Database(database_url, min_size=1, max_size=POOL_SIZE) as db:
        for table in reversed(TABLES):
            await db.execute(sa.schema.DropTable(table, if_exists=True))
        for table in TABLES:
            await db.execute(sa.schema.CreateTable(table))
        await db.execute_many(
            accounts.insert(),
            [{"id": n, "balance": INITIAL_BALANCE} for n in range(ACCOUNTS)],
        )
        try:
            yield db
        finally:
            for table in reversed(TABLES):
                await db.execute(sa.schema.DropTable(table, if_exists=True))


@pytest.fixture
async def admin(database_url: str, dialect: str) -> AsyncIterator[Database | None]:
    """On a server, a pool of one that kills the soak pool's connections."""
    if dialect not in KILL:
        yield None  # SQLite: no server to kill connections; cancellations only
        return
    async with Database(database_url, min_size=1, max_size=1) as admin:
        yield admin


async def test_no_transfer_is_lost_under_cancellations_and_killed_connections(
    database_url: str, dialect: str, soak_db: Database, admin: Database | None
) -> None:
    seed = int(os.environ.get("DBACCESS_SOAK_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    figures = Figures(url=DatabaseURL(database_url).obscure_password, seed=seed, seconds=SECONDS)
    ledger = Ledger()
    db = soak_db

    killer = None
    if admin is not None:
        killer = asyncio.create_task(kill_connections(admin, dialect, ledger, figures, rng))
    try:
        await run_transfers(db, dialect, ledger, figures, rng)
    finally:
        if killer is not None:
            killer.cancel()
            await asyncio.gather(killer, return_exceptions=True)
    assert await released(db), f"seed {seed}: {db.pool_stats}"

    # The pool still works after all that: the checks run on it.
    present = {row.id: row for row in await db.fetch_all(sa.select(transfers))}
    balances = {row.id: row.balance for row in await db.fetch_all(sa.select(accounts))}
    context = f"seed {seed}"
    assert sum(balances.values()) == ACCOUNTS * INITIAL_BALANCE, context
    assert ledger.committed <= present.keys(), f"{context}: committed transfers are missing"
    wrongly_there = sorted(ledger.not_committed & present.keys())
    assert not wrongly_there, (
        f"{context}: transfers that failed before COMMIT are there: "
        + "; ".join(f"{n}: {ledger.error_of[n]}" for n in wrongly_there)
    )
    assert present.keys() <= ledger.committed | ledger.in_doubt, context
    expected = dict.fromkeys(range(ACCOUNTS), INITIAL_BALANCE)
    for row in present.values():
        expected[row.source] -= row.amount
        expected[row.target] += row.amount
    assert balances == expected, f"{context}: a transfer is there in part"
    if admin is not None:
        ids = {"ids": sorted(ledger.connection_ids)}
        assert await admin.fetch_val(OPEN_TRANSACTIONS[dialect], ids) == 0, context

    figures.committed = len(ledger.committed)
    figures.cancelled_before_commit = ledger.cancelled_before_commit
    figures.failed_before_commit = len(ledger.not_committed) - ledger.cancelled_before_commit
    figures.interrupted_at_commit = len(ledger.in_doubt)
    figures.interrupted_at_commit_found_committed = len(ledger.in_doubt & present.keys())
    figures.errors = dict(ledger.errors)
    report = os.environ.get("DBACCESS_SOAK_REPORT")
    if report:
        append_line(report, json.dumps(asdict(figures)))
    # The run must have injected faults and still committed work, or it proved nothing.
    assert figures.committed > 0 and figures.tasks_cancelled > 0, figures
    if admin is not None:
        assert figures.connections_killed > 0, figures
