"""The errors dbaccess raises.

    DBAccessError
    ├── ConfigurationError       bad URL, unknown backend or option, missing driver
    ├── InterfaceError           misuse: wrong lifecycle state, bad parameters
    └── DatabaseError            the database refused or failed
        ├── DataError            a value the column cannot hold
        ├── IntegrityError       a constraint was violated
        ├── InternalError        the database reports an internal failure
        ├── NotSupportedError    the backend cannot do what was asked
        ├── OperationalError     connection lost, timeout, lock, server down
        └── ProgrammingError     bad SQL, unknown table or column, wrong parameters

Driver errors are translated once, where a backend meets its driver (see
:func:`translate`). The translated error keeps the driver's error as ``.orig`` and
as ``__cause__``, and is also an instance of the driver's own class, so code that
catches ``asyncpg.UniqueViolationError`` or ``sqlite3.OperationalError`` keeps working.

Every dbaccess error pickles (pytest-xdist, multiprocessing, task queues): it unpickles
as the same class, the run-time ones included, with its message, its attributes and
``.orig`` where those pickle themselves.
"""

from __future__ import annotations

import contextlib
import pickle
from typing import Any

__all__ = [
    "ConfigurationError",
    "DBAccessError",
    "DataError",
    "DatabaseError",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
]


class DBAccessError(Exception):
    """Root of every error dbaccess raises."""

    #: The driver's exception this error was translated from, if any.
    orig: BaseException | None = None
    #: For a value the database or driver refused: the name of its parameter, when
    #: known, and its position among the statement's arguments.
    parameter: str | None = None
    argument_index: int | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # A class made by translate() is found again by its two bases, not by its name
        # (which is the dbaccess base's). Attributes that do not pickle (a driver's
        # handle, an unpicklable .orig) are left behind rather than fail the whole error.
        cls = type(self)
        ours, theirs = _bases.get(cls, (cls, None))
        state = {key: value for key, value in vars(self).items() if _pickles(value)}
        return _rebuild, (ours, theirs, self.args, state)


class ConfigurationError(DBAccessError):
    """The URL, an option or the installed packages do not allow the requested setup."""


class InterfaceError(DBAccessError):
    """dbaccess was used in a way its current state does not allow."""


class DatabaseError(DBAccessError):
    """The database reported an error."""


class DataError(DatabaseError):
    """A value is not valid for its column or parameter."""


class IntegrityError(DatabaseError):
    """A constraint (unique, foreign key, not null, check) was violated."""


class InternalError(DatabaseError):
    """The database reports an internal failure."""


class NotSupportedError(DatabaseError):
    """The backend does not support the requested feature."""


class OperationalError(DatabaseError):
    """The connection or the server failed: lost connection, timeout, lock, restart."""


class ProgrammingError(DatabaseError):
    """The SQL or its parameters are wrong: syntax, unknown table or column, arity."""


_combined: dict[tuple[type[DBAccessError], type[BaseException]], type[DBAccessError]] = {}
#: The inverse of _combined: a run-time class -> its dbaccess base and driver base.
_bases: dict[type[DBAccessError], tuple[type[DBAccessError], type[BaseException]]] = {}


def _combined_class(ours: type[DBAccessError], theirs: type[BaseException]) -> type[DBAccessError]:
    # One class per (dbaccess class, driver class) pair, created on first use, so that
    # `except asyncpg.UniqueViolationError` and `except dbaccess.IntegrityError` both
    # catch the same raised error. Its name is the dbaccess one, as users see it.
    cls = _combined.get((ours, theirs))
    if cls is None:
        namespace: dict[str, Any] = {
            "__module__": ours.__module__,
            "__qualname__": ours.__qualname__,
        }
        if issubclass(theirs, UnicodeError):
            # UnicodeError's own __str__ reads fields that only its __init__ sets, which
            # translate() does not call: the message would be empty.
            namespace["__str__"] = BaseException.__str__
        cls = _combined[ours, theirs] = type(ours.__name__, (ours, theirs), namespace)
        _bases[cls] = (ours, theirs)
    return cls


def _new(cls: type[DBAccessError], args: tuple[Any, ...]) -> DBAccessError:
    # __new__ alone: a driver's __init__ may require arguments of its own (asyncpg's).
    error = cls.__new__(cls, *args)
    error.args = args
    return error


def _rebuild(
    ours: type[DBAccessError],
    theirs: type[BaseException] | None,
    args: tuple[Any, ...],
    state: dict[str, Any],
) -> DBAccessError:
    """Unpickle a dbaccess error (see DBAccessError.__reduce__)."""
    error = _new(ours if theirs is None else _combined_class(ours, theirs), args)
    if theirs is not None:
        # The driver's class may keep internals its methods read (psycopg's _info, a
        # server result that does not pickle): its __init__ sets them to their empty
        # values, and the attributes that did pickle come back over them.
        with contextlib.suppress(Exception):
            theirs.__init__(error, *args)
    error.__dict__.update(state)
    return error


def _pickles(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # whatever pickling raises: PicklingError, TypeError, ...
        return False
    return True


def translate(
    orig: BaseException, ours: type[DBAccessError], message: str | None = None
) -> DBAccessError:
    """Return a dbaccess error of class ``ours`` that wraps the driver error ``orig``.

    ``message`` replaces the driver's when it has none worth showing (a bare timeout).
    The caller raises it ``from orig``.
    """
    if message is None and isinstance(orig, UnicodeError):
        message = str(orig)  # its args are the codec's parts, not a message
    args = orig.args if message is None else (message,)
    error = _new(_combined_class(ours, type(orig)), args)
    # Driver errors carry details as attributes (asyncpg: sqlstate, constraint_name;
    # sqlite3: sqlite_errorcode); keep them reachable on the translated error.
    error.__dict__.update(getattr(orig, "__dict__", {}))
    error.orig = orig
    return error
