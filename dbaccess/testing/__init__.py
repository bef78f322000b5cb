"""dbaccess.testing: throw-away test databases and their schemas, for the pytest plugin
(``dbaccess.testing.pytest_plugin``) and for test set-ups of your own."""

from .databases import create_database as create_database
from .databases import database_exists as database_exists
from .databases import drop_database as drop_database
from .databases import worker_database_url as worker_database_url
from .schema import clear_tables as clear_tables
from .schema import create_tables as create_tables
from .schema import list_tables as list_tables
from .schema import run_alembic as run_alembic
from .schema import run_schema as run_schema

__all__ = [
    "clear_tables",
    "create_database",
    "create_tables",
    "database_exists",
    "drop_database",
    "list_tables",
    "run_alembic",
    "run_schema",
    "worker_database_url",
]
