"""Run a command (the test suite) with its PostgreSQL URLs going through a PgBouncer in
transaction mode: ``python -m tests.through_pgbouncer python -m pytest ...``.

A private PgBouncer (tests/servers.py) is started in front of the PostgreSQL of the first
PostgreSQL URL in DBACCESS_TEST_URLS; every PostgreSQL URL is rewritten to reach it, with
``prepared_statements=false``; DBACCESS_TEST_PGBOUNCER holds its port, for the tests that
need one server session across transactions to skip themselves. The PgBouncer is removed
when the command ends; its exit status is the command's.

A failure explains itself: should PgBouncer exit while the command runs, a line says so
at once (between the test results: which test was running); its log is copied to
DBACCESS_PGBOUNCER_LOG (``.pgbouncer.log`` unless told otherwise) before its directory
goes, and its tail printed when the command failed or PgBouncer died.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from dbaccess import DatabaseURL

from .servers import PrivatePgBouncer

#: What a pool of more clients than server connections looks like in production.
POOL_SIZE = 8
#: How much of PgBouncer's log a failure prints (the whole log is copied).
LOG_TAIL = 6000


def through(url: str, port: int) -> str:
    """``url`` rewritten to reach PgBouncer on ``port``, without prepared statements."""
    parsed = DatabaseURL(url)
    if not parsed.dialect.startswith("postgres"):
        return url
    options = {**parsed.options, "prepared_statements": "false"}
    return str(parsed.replace(hostname="127.0.0.1", port=port).replace(options=options))


def describe(status: int) -> str:
    """PgBouncer's exit status in words (as root it runs under runuser, which exits with
    128 + the signal that ended its child)."""
    number = -status if status < 0 else status - 128 if status > 128 else 0
    if number and number in signal.valid_signals():
        return f"exit status {status} ({signal.Signals(number).name})"
    return f"exit status {status}"


def watch(bouncer: PrivatePgBouncer, ending: threading.Event) -> None:
    """Say at once when PgBouncer exits before the command ends (else every later test
    fails with "connection refused" and nothing says since when)."""
    while not ending.wait(0.5):
        status = bouncer.exit_status()
        if status is not None:
            print(
                f"\n*** PgBouncer on port {bouncer.port} exited at "
                f"{time.strftime('%H:%M:%S')} with {describe(status)}",
                file=sys.stderr,
                flush=True,
            )
            return


def keep_log(bouncer: PrivatePgBouncer, failed: bool) -> None:
    """Copy PgBouncer's log out of its directory (removed next); print its tail and the
    copy's place when the command failed or PgBouncer is not running any more."""
    destination = Path(os.environ.get("DBACCESS_PGBOUNCER_LOG", ".pgbouncer.log"))
    if bouncer.log_file.exists():
        shutil.copyfile(bouncer.log_file, destination)
    status = bouncer.exit_status()
    if not failed and status is None:
        return
    state = "still running" if status is None else f"exited with {describe(status)}"
    print(
        f"\n*** PgBouncer on port {bouncer.port} ({state}); the last of its log "
        f"(all of it: {destination.resolve()}):\n{bouncer.log(LOG_TAIL)}",
        file=sys.stderr,
        flush=True,
    )


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
    ending = threading.Event()
    returncode = 1
    try:
        bouncer.start()
        threading.Thread(target=watch, args=(bouncer, ending), daemon=True).start()
        env = {
            **os.environ,
            "DBACCESS_TEST_URLS": ",".join(through(url, bouncer.port) for url in urls if url),
            "DBACCESS_TEST_PGBOUNCER": str(bouncer.port),
        }
        print(f"through PgBouncer on port {bouncer.port}: {env['DBACCESS_TEST_URLS']}", flush=True)
        returncode = subprocess.run(command, env=env).returncode
        return returncode
    finally:
        ending.set()
        keep_log(bouncer, failed=returncode != 0)
        bouncer.remove()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
