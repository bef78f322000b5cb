"""Run a command (the test suite) with its PostgreSQL URLs going through a PgBouncer in
transaction mode: ``python -m tests.through_pgbouncer python -m pytest ...``.

A private PgBouncer (tests/servers.py) is started in front of the PostgreSQL of the first
PostgreSQL URL in DBACCESS_TEST_URLS; every PostgreSQL URL is rewritten to reach it, with
``prepared_statements=false``; DBACCESS_TEST_PGBOUNCER holds its port, for the tests that
need one server session across transactions to skip themselves. The PgBouncer is removed
when the command ends; its exit status is the command's.
"""

from __future__ import annotations

import os
import subprocess
import sys

from dbaccess import DatabaseURL

from .servers import PrivatePgBouncer

#: What a pool of more clients than server connections looks like in production.
POOL_SIZE = 8


def through(url: str, port: int) -> str:
    """``url`` rewritten to reach PgBouncer on ``port``, without prepared statements."""
    parsed = DatabaseURL(url)
    if not parsed.dialect.startswith("postgres"):
        return url
    options = {**parsed.options, "prepared_statements": "false"}
    return str(parsed.replace(hostname="127.0.0.1", port=port).replace(options=options))


def main(command: list[str]) -> int:
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    urls = [url.strip() for url in os.environ.get("DBACCESS_TEST_URLS", "").split(",")]
    postgres = [DatabaseURL(url) for url in urls if url and url.startswith("postgres")]
    if not postgres:
        print("DBACCESS_TEST_URLS holds no PostgreSQL URL", file=sys.stderr)
        return 2
    bouncer = PrivatePgBouncer(
        postgres[0].hostname or "127.0.0.1", postgres[0].port or 5432, POOL_SIZE
    )
    try:
        bouncer.start()
        env = {
            **os.environ,
            "DBACCESS_TEST_URLS": ",".join(through(url, bouncer.port) for url in urls if url),
            "DBACCESS_TEST_PGBOUNCER": str(bouncer.port),
        }
        print(f"through PgBouncer on port {bouncer.port}: {env['DBACCESS_TEST_URLS']}", flush=True)
        return subprocess.run(command, env=env).returncode
    finally:
        bouncer.remove()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
