"""A transaction's BEGIN held back until its first statement, for the backends whose
drivers can send both at once (SQLite in one call to its thread, MySQL in one
multi-statement query): one round trip fewer, and none for a transaction that runs no
statement.

Its state is one :class:`BeginState`, changed only by the methods of
:class:`DeferredBegin`, which each backend connection holds one of::

    NONE ──defer()──▶ PENDING ──take()──▶ SENT ──end()──▶ NONE
                        │  ▲                │
                        │  └──put_back()────┤ (refused before the server saw it)
                        │                   └──failed()──▶ FAILED ──end()──▶ NONE
                        └──end()──▶ NONE  (no statement ran: nothing to end)
"""

from __future__ import annotations

import enum

__all__ = ["BeginState", "DeferredBegin"]


class BeginState(enum.Enum):
    #: No transaction: each statement commits by itself.
    NONE = "none"
    #: begin() was called; the BEGIN goes out with the first statement.
    PENDING = "pending"
    #: The BEGIN went out: the server holds the transaction (unless it ended it).
    SENT = "sent"
    #: The BEGIN went out with the first statement and did not take (SQLite's
    #: SQLITE_BUSY): there is nothing to roll back, and nothing to commit.
    FAILED = "failed"


# BeginState's members as module globals, read on the path of every call: on Python
# 3.11 `BeginState.X` is a lookup through the enum's metaclass, ~0.1 us each time.
_NONE, _PENDING, _SENT, _FAILED = (
    BeginState.NONE,
    BeginState.PENDING,
    BeginState.SENT,
    BeginState.FAILED,
)


class DeferredBegin:
    """Where a connection's transaction is, between begin() and its first statement.

    (Read ``state is _PENDING`` where a property would do: it is read on the
    path of every statement.)"""

    __slots__ = ("_statements", "state")

    def __init__(self) -> None:
        self.state = _NONE
        self._statements: tuple[str, ...] = ()

    def defer(self, statements: tuple[str, ...]) -> None:
        """begin(): hold ``statements`` (SET TRANSACTION..., BEGIN) for the next statement."""
        self.state = _PENDING
        self._statements = statements

    def take(self) -> tuple[str, ...]:
        """The statements to send before this one: the pending BEGIN, now SENT; ()
        when none is pending."""
        if self.state is not _PENDING:
            return ()
        statements, self._statements = self._statements, ()
        self.state = _SENT
        return statements

    def put_back(self, statements: tuple[str, ...]) -> None:
        """What :meth:`take` gave never reached the server: it waits again."""
        self.defer(statements)

    def failed(self) -> None:
        """What :meth:`take` gave reached the server, and no transaction began."""
        self.state = _FAILED

    def end(self) -> BeginState:
        """commit() or rollback(): back to NONE; return the state it ended in (PENDING:
        no statement ran, FAILED: nothing began; both mean no round trip)."""
        state, self.state, self._statements = self.state, _NONE, ()
        return state
