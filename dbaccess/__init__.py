"""dbaccess: async database access for PostgreSQL, MySQL/MariaDB and SQLite."""

from .connection import Connection as Connection
from .database import Database as Database
from .errors import ConfigurationError as ConfigurationError
from .errors import DatabaseError as DatabaseError
from .errors import DataError as DataError
from .errors import DBAccessError as DBAccessError
from .errors import IntegrityError as IntegrityError
from .errors import InterfaceError as InterfaceError
from .errors import InternalError as InternalError
from .errors import NotSupportedError as NotSupportedError
from .errors import OperationalError as OperationalError
from .errors import ProgrammingError as ProgrammingError
from .migrations import migrate as migrate
from .migrations import sqlalchemy_url as sqlalchemy_url
from .observe import QueryEvent as QueryEvent
from .observe import QueryHook as QueryHook
from .pool import PoolStats as PoolStats
from .record import Record as Record
from .replicas import ReplicaNode as ReplicaNode
from .result import ExecuteResult as ExecuteResult
from .transaction import Transaction as Transaction
from .transaction import TransactionState as TransactionState
from .url import DatabaseURL as DatabaseURL

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "Connection",
    "DBAccessError",
    "DataError",
    "Database",
    "DatabaseError",
    "DatabaseURL",
    "ExecuteResult",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "PoolStats",
    "ProgrammingError",
    "QueryEvent",
    "QueryHook",
    "Record",
    "ReplicaNode",
    "Transaction",
    "TransactionState",
    "migrate",
    "sqlalchemy_url",
]
