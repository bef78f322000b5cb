"""Database servers of the tests' own: a private MariaDB, a private PostgreSQL, a
streaming replica of a private PostgreSQL and a private PgBouncer (in transaction mode,
in front of a PostgreSQL).

Each runs from a data directory under a temporary directory, on a free port of its own
and with its socket in that directory, so that a test can freeze it (SIGSTOP of its own
processes only) without touching the servers other tests share. They are started once
per session, on first use, and removed at the end.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = [
    "PrivateMariaDB",
    "PrivatePgBouncer",
    "PrivatePostgreSQL",
    "PrivateReplica",
    "PrivateServer",
]

#: Long enough for a slow, shared machine to initialise and start a server.
START_WITHIN = 120.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_user(user: str, argv: list[str]) -> list[str]:
    """Run ``argv`` as ``user`` when we are root (the servers refuse to run as root)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", user, "--", *argv]


def _beside_pg_ctl(program: str) -> str:
    """A PostgreSQL program of the same release as pg_ctl (Debian's /usr/bin wrapper of
    pg_basebackup could pick another installed release)."""
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None:
        candidate = Path(os.path.realpath(pg_ctl)).with_name(program)
        if candidate.exists():
            return str(candidate)
    return program


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=START_WITHIN)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr[-2000:]}")


def _reap(process: subprocess.Popen[bytes], within: float, pid: int | None = None) -> None:
    """Wait up to ``within`` seconds for ``process`` to exit, then kill ``pid`` (the
    process itself unless told otherwise: the server under runuser)."""
    try:
        process.wait(within)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.kill(process.pid if pid is None else pid, signal.SIGKILL)
        process.wait(10)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # The fields after the command name (which may hold spaces, in parentheses).
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` has stopped (state T in /proc).

    kill(SIGSTOP) returns before the stop takes effect: one thread of the process has to
    be scheduled to begin the group stop, and on a loaded machine a thread may meanwhile
    read a query and answer it."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return True  # the process exited: it answers nothing either
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread exited meanwhile
        if stat.rsplit(")", 1)[1].split()[0] not in ("T", "t", "Z", "X"):
            return False
    return True


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


class PrivateServer:
    """A server process of our own: start, freeze, thaw, remove."""

    #: The user the server's processes run as when the tests run as root.
    user: str
    #: What URLs for this server start with, and how to make one for a scheme.
    name: str

    def __init__(self) -> None:
        self.port = _free_port()
        self.directory = Path(tempfile.mkdtemp(prefix=f"dbaccess-{self.name}-"))
        self.directory.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.directory, self.user, self.user)
        self._process: subprocess.Popen[bytes] | None = None
        self._initialised = False
        self.running = False

    def url(self, scheme: str) -> str:
        raise NotImplementedError

    def _start(self) -> None:
        raise NotImplementedError

    def _initialise(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def _main_pid(self) -> int:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        """Start the server (its data directory is made on the first start)."""
        if not self._initialised:
            self._initialise()
            self._initialised = True
        self._start()
        deadline = time.monotonic() + START_WITHIN
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private {self.name} did not start: {self.log()}")
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"the private {self.name} exited: {self.log()}")
            time.sleep(0.2)
        self.running = True

    def stop(self) -> None:
        """Stop the server as a restart would (clients disconnected), keeping its data."""
        self._stop()
        self.running = False

    def ensure_running(self) -> None:
        """Start it again if a test stopped it (and thaw it, if one left it frozen)."""
        if not self.running:
            self.start()

    @property
    def log_file(self) -> Path:
        """Where the server writes its log (removed with its directory)."""
        return self.directory / "server.log"

    def log(self, last: int = 2000) -> str:
        """The last ``last`` characters of the server's log."""
        path = self.log_file
        return path.read_text(errors="replace")[-last:] if path.exists() else "(no log)"

    def exit_status(self) -> int | None:
        """The exit status of the process we started (negative: the signal that ended
        it), or None while it runs (or when it was never started)."""
        return None if self._process is None else self._process.poll()

    def pids(self) -> list[int]:
        """This server's processes: its main process first, then its children."""
        main = self._main_pid()
        return [main, *_children(main)]

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Stop every process of this server (it keeps its sockets, answers nothing),
        and resume them on the way out, whatever happens meanwhile."""
        stopped: list[int] = []
        try:
            # The main process first: once it is stopped it forks no new child.
            for pid in self.pids():
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            deadline = time.monotonic() + START_WITHIN
            while not all(_stopped(pid) for pid in stopped):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the private {self.name} did not freeze")
                time.sleep(0.01)
            yield
        finally:
            for pid in reversed(stopped):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def remove(self) -> None:
        raise NotImplementedError


class PrivateMariaDB(PrivateServer):
    user = "mysql"
    name = "mariadb"
    #: Server options of a subclass's own (a binlog for replicas, a server id).
    options: tuple[str, ...] = ()

    def url(self, scheme: str = "mysql") -> str:
        return f"{scheme}://root@127.0.0.1:{self.port}/test"

    def _initialise(self) -> None:
        data = self.directory / "data"
        _run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={data}",
                f"--user={self.user if os.geteuid() == 0 else getpass.getuser()}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]
        )

    def _start(self) -> None:
        data = self.directory / "data"
        argv = [
            "mariadbd",
            "--no-defaults",
            f"--datadir={data}",
            f"--port={self.port}",
            f"--socket={self.directory / 'mariadb.sock'}",
            f"--pid-file={self.directory / 'mariadb.pid'}",
            f"--log-error={self.directory / 'server.log'}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--max-connections=200",
            *self.options,
        ]
        if os.geteuid() == 0:
            argv.append(f"--user={self.user}")
        self._process = subprocess.Popen(
            [shutil.which("mariadbd") or "/usr/sbin/mariadbd", *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _ready(self) -> bool:
        if not _accepts(self.port):
            return False
        result = subprocess.run(
            self._client("CREATE DATABASE IF NOT EXISTS test"), capture_output=True, timeout=30
        )
        return result.returncode == 0

    def _client(self, statements: str) -> list[str]:
        """The mariadb command line that runs ``statements`` as root on this server."""
        return [
            "mariadb",
            "--no-defaults",
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "-P",
            str(self.port),
            "-u",
            "root",
            "-e",
            statements,
        ]

    def _main_pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the private MariaDB was not started")
        return self._process.pid

    def _stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        # SIGTERM is MariaDB's clean shutdown: it disconnects its clients, as a restart
        # does; wait for the process itself, or the next start finds its files in use.
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        _reap(process, START_WITHIN)

    def remove(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)  # in case a test left it frozen
            process.terminate()
            _reap(process, 60)
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateMariaDBPrimary(PrivateMariaDB):
    """A private MariaDB that writes a binlog, for a replica of its own."""

    name = "mariadb-primary"
    options = ("--log-bin=binlog", "--server-id=1", "--binlog-format=ROW")


class PrivateMariaDBReplica(PrivateMariaDB):
    """A binlog replica of a PrivateMariaDBPrimary, replicating from the start of its
    binlog (both begin empty) once started."""

    name = "mariadb-replica"
    options = ("--server-id=2", "--relay-log=relay")

    def __init__(self, primary: PrivateMariaDBPrimary) -> None:
        super().__init__()
        self.primary = primary

    def start(self) -> None:
        super().start()
        _run(
            self._client(
                "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', "
                f"MASTER_PORT={self.primary.port}, MASTER_USER='root', MASTER_PASSWORD='', "
                "MASTER_USE_GTID=no; START SLAVE"
            )
        )


class PrivatePostgreSQL(PrivateServer):
    user = "postgres"
    name = "postgresql"

    def url(self, scheme: str = "postgresql") -> str:
        return f"{scheme}://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def _data(self) -> Path:
        return self.directory / "data"

    def _initialise(self) -> None:
        _run(
            _as_user(self.user, ["initdb", "-D", str(self._data), "-A", "trust", "-U", "postgres"])
        )

    def _start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        _run(
            _as_user(
                self.user,
                [
                    "pg_ctl",
                    "-D",
                    str(self._data),
                    "-l",
                    str(self.directory / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(int(START_WITHIN)),
                    "start",
                ],
            )
        )

    def _ready(self) -> bool:
        return _accepts(self.port)

    def _main_pid(self) -> int:
        # The first line of postmaster.pid is the postmaster's pid.
        return int((self._data / "postmaster.pid").read_text().split()[0])

    def _stop(self) -> None:
        # fast: disconnect the clients and stop, as a restart does.
        _run(_as_user(self.user, ["pg_ctl", "-D", str(self._data), "-m", "fast", "-w", "stop"]))

    def remove(self) -> None:
        pid_file = self._data / "postmaster.pid"
        if pid_file.exists():
            for pid in self.pids():  # in case a test left it frozen
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            subprocess.run(
                _as_user(self.user, ["pg_ctl", "-D", str(self._data), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateReplica(PrivatePostgreSQL):
    """A streaming replica (hot standby) of a private PostgreSQL, made by pg_basebackup
    from it, on a port and in a directory of its own; :meth:`promote` makes it a primary.

    initdb's pg_hba.conf already lets local replication connections in (trust), and
    PostgreSQL's defaults (wal_level=replica, max_wal_senders=10) let the copy stream."""

    name = "postgresql-replica"

    def __init__(self, primary: PrivatePostgreSQL) -> None:
        super().__init__()
        self.primary = primary

    def _initialise(self) -> None:
        # -R: standby.signal and primary_conninfo, so that it starts as a streaming standby.
        _run(
            _as_user(
                self.user,
                [
                    _beside_pg_ctl("pg_basebackup"),
                    "-D",
                    str(self._data),
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.primary.port),
                    "-U",
                    "postgres",
                ],
            )
        )

    def _ready(self) -> bool:
        # A standby accepts connections once it has reached a consistent state.
        return _accepts(self.port)

    def promote(self) -> None:
        """End recovery: the replica becomes a primary, accepting writes (pg_ctl -w waits)."""
        _run(_as_user(self.user, ["pg_ctl", "-D", str(self._data), "-w", "promote"]))


class PrivatePgBouncer(PrivateServer):
    """Debian's pgbouncer in transaction mode, in front of a PostgreSQL (the shared one
    unless told otherwise), with fewer server connections than the tests' clients."""

    user = "postgres"
    name = "pgbouncer"

    def __init__(
        self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432, pool_size: int = 4
    ) -> None:
        super().__init__()
        self.upstream = (upstream_host, upstream_port)
        self.pool_size = pool_size

    def url(self, scheme: str = "postgresql", database: str = "postgres") -> str:
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{database}?prepared_statements=false"

    @property
    def _config(self) -> Path:
        return self.directory / "pgbouncer.ini"

    def _initialise(self) -> None:
        host, port = self.upstream
        (self.directory / "users.txt").write_text('"postgres" ""\n')
        self._config.write_text(
            "[databases]\n"
            # Any database name, to the same name on the upstream server.
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.directory}\n"
            "auth_type = trust\n"
            f"auth_file = {self.directory / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            f"pidfile = {self.directory / 'pgbouncer.pid'}\n"
            "admin_users = postgres\n"
            # Sent by the drivers; PgBouncer refuses unknown startup parameters.
            "ignore_startup_parameters = extra_float_digits\n"
        )
        if os.geteuid() == 0:
            for path in self.directory.iterdir():
                shutil.chown(path, self.user, self.user)

    def _start(self) -> None:
        # In the foreground, as our child: its pid is the process's, and it dies with it.
        # It logs to stderr there (no logfile setting), into the log file: one file that
        # also holds what is said before its logging starts (runuser's "failed to
        # execute", a configuration PgBouncer refuses), else the death is silent.
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                _as_user(
                    self.user,
                    [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", str(self._config)],
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def _ready(self) -> bool:
        return _accepts(self.port)

    def _main_pid(self) -> int:
        return int((self.directory / "pgbouncer.pid").read_text().split()[0])

    def _stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        # SIGINT: PgBouncer's "safe shutdown" would wait for clients; SIGTERM closes now.
        pid = self._main_pid()
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        _reap(process, START_WITHIN, pid)

    def remove(self) -> None:
        try:
            os.kill(self._main_pid(), signal.SIGCONT)  # in case a test left it frozen
        except (ProcessLookupError, FileNotFoundError, ValueError):
            if self._process is not None and self._process.poll() is None:
                self._process.kill()  # not up yet: no pid file
                self._process.wait(10)
        else:
            self._stop()
        shutil.rmtree(self.directory, ignore_errors=True)
