"""``ThrowawayPostgres``: a private PostgreSQL server for the demo and the tests.

One cluster lives in one directory::

    <directory>/data            the cluster (initdb; kept across stop()/start())
    <directory>/postgres.log    initdb's and the server's output, appended
    <directory>/.s.PGSQL.<port> the server's unix socket

The server listens on 127.0.0.1 only (and on that socket), with ``trust`` authentication for
the superuser ``postgres``; it is for throwaway data, never for anything reachable from
another host. ``durable=False`` turns off fsync, synchronous commit and full-page writes:
fast, and a crash of the machine may lose or corrupt the cluster.

Running as root, initdb and the server run as the ``postgres`` OS user (PostgreSQL refuses
root): the directory is handed to that user, and every directory above it must be searchable
by it (``/tmp`` is; pytest's ``tmp_path`` is not).

No process is left behind: the server runs in its own process group, which ``stop()`` shuts
down (fast shutdown, then SIGKILL of the whole group); ``stop()`` also runs at interpreter exit
and the server gets SIGINT (fast shutdown) when the thread that started it dies, so a killed
parent does not leave it running. Start it from a thread that lives as long as the cluster
(the main thread).
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from .processes import die_with_parent_hook, free_port, stop_process_group

__all__ = ["PostgresError", "ThrowawayPostgres", "find_bin_dir"]

SUPERUSER = "postgres"
OS_USER = "postgres"
#: Where Debian's ``postgresql-<major>`` packages put the server binaries.
DEBIAN_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "apt-get install postgresql"
#: Linux limits a unix socket path to 107 bytes.
MAX_SOCKET_PATH = 107

_ADDRESS_IN_USE = re.compile(r"could not (bind|create listen socket)|Address already in use")


class PostgresError(RuntimeError):
    """The server is not installed, cannot start, or cannot be reached."""


def find_bin_dir(path: str | None = None, debian_root: Path = DEBIAN_ROOT) -> Path:
    """The directory holding ``initdb`` and ``postgres``.

    ``initdb`` on ``path`` (default: ``$PATH``) wins, with symlinks resolved; otherwise the
    newest major version under ``debian_root/<major>/bin``.

    :raises PostgresError: no server binaries (naming the Debian package ``postgresql``).
    """
    found = shutil.which("initdb", path=path)
    candidates = [Path(found).resolve().parent] if found else []
    versions = sorted(
        (child for child in debian_root.glob("*") if child.name.replace(".", "").isdigit()),
        key=lambda child: [int(part) for part in child.name.split(".")],
        reverse=True,
    )
    candidates += [version / "bin" for version in versions]
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in ("initdb", "postgres")):
            return candidate
    raise PostgresError(
        f"the PostgreSQL server (initdb, postgres) is not installed: neither on PATH nor in "
        f"{debian_root}/*/bin; {INSTALL_HINT}"
    )


class ThrowawayPostgres:
    """A PostgreSQL cluster in ``directory``, started and stopped by this object.

    :param directory: the cluster's directory, created if missing; an existing cluster there
        is reused. ``None``: a new temporary directory, removed by ``stop()``.
    :param port: the TCP port on 127.0.0.1; ``None``: a free one (chosen again if taken by
        the time the server binds it).
    :param durable: ``False`` turns off fsync, synchronous_commit and full_page_writes.
    :param bin_dir: where ``initdb`` and ``postgres`` are; default ``find_bin_dir()``.
    :param settings: more server settings (``name -> value``), given with ``-c``.
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        port: int | None = None,
        durable: bool = True,
        bin_dir: Path | str | None = None,
        settings: dict[str, str] | None = None,
    ):
        self.bin_dir = Path(bin_dir) if bin_dir is not None else find_bin_dir()
        for name in ("initdb", "postgres"):
            if not os.access(self.bin_dir / name, os.X_OK):
                raise PostgresError(f"no {name} in {self.bin_dir}: {INSTALL_HINT}")
        self._own_directory = directory is None
        self.directory = Path(directory) if directory is not None else None
        self._fixed_port = port
        self.port = port
        self.durable = durable
        self.settings = dict(settings or {})
        self._process: subprocess.Popen | None = None

    # paths

    @property
    def data_dir(self) -> Path:
        return self._require_directory() / "data"

    @property
    def log_path(self) -> Path:
        return self._require_directory() / "postgres.log"

    def _require_directory(self) -> Path:
        if self.directory is None:
            raise PostgresError("the cluster has no directory until start()")
        return self.directory

    # lifecycle

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        return self._process.pid if self.running else None

    def start(self, timeout: float = 60.0) -> ThrowawayPostgres:
        """Create the cluster if needed, start the server and wait until it accepts
        connections.

        :raises PostgresError: initdb or the server failed, or the server did not accept
            connections within ``timeout`` seconds; the message ends with the log's tail.
            Nothing is left running, and a temporary directory is removed.
        """
        if self.running:
            return self
        try:
            run_as = self._os_user()
            self._prepare_directory(run_as)
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(run_as)
            self._launch_on_a_port(run_as, timeout)
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (fast shutdown: clients are disconnected); after ``timeout``
        seconds, SIGKILL its whole process group. Removes a temporary directory. Idempotent."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, timeout)
        self.port = self._fixed_port
        if self._own_directory and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # clients

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string for ``dbname`` over TCP."""
        if self.port is None:
            raise PostgresError("the server has no port until start()")
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its connection string."""
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its clients."""
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # internals

    @staticmethod
    def _os_user() -> pwd.struct_passwd | None:
        """The OS user to run the server as: ``postgres`` when we are root, else ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(OS_USER)
        except KeyError:
            raise PostgresError(
                f"running as root, the server must run as the {OS_USER!r} OS user, which does "
                f"not exist; {INSTALL_HINT} creates it"
            ) from None

    def _prepare_directory(self, run_as: pwd.struct_passwd | None) -> None:
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="tmq-pg-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        socket_path = self.directory / ".s.PGSQL.65535"
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            raise PostgresError(
                f"{self.directory} is too long for a unix socket path "
                f"({MAX_SOCKET_PATH} bytes at most): choose a shorter directory"
            )
        if run_as is None:
            return
        for ancestor in self.directory.resolve().parents:
            if not _searchable_by(ancestor, run_as):
                raise PostgresError(
                    f"the {OS_USER!r} OS user cannot reach {self.directory}: {ancestor} is not "
                    f"searchable by it; choose a directory under one it can reach (e.g. /tmp)"
                )
        os.chown(self.directory, run_as.pw_uid, run_as.pw_gid)
        self.directory.chmod(0o700)

    def _spawn(self, command: list, run_as: pwd.struct_passwd | None, **options):
        """Run ``command`` as the server's OS user, output appended to the log."""
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                [str(part) for part in command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env={**os.environ, "LC_ALL": "C", "LANG": "C"},
                user=run_as.pw_uid if run_as else None,
                group=run_as.pw_gid if run_as else None,
                extra_groups=[] if run_as else None,
                **options,
            )

    def _initdb(self, run_as: pwd.struct_passwd | None) -> None:
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        command = [
            self.bin_dir / "initdb",
            "--pgdata",
            self.data_dir,
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
        ]
        if not self.durable:
            command.append("--no-sync")
        process = self._spawn(command, run_as, process_group=0)
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            stop_process_group(process, 0)
        if process.returncode != 0:
            raise PostgresError(
                f"initdb failed (status {process.returncode}):\n{self._log_since(mark)}"
            )
        # Only the owner's socket and 127.0.0.1: nothing from another host gets in.
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        if run_as is not None:
            os.chown(hba, run_as.pw_uid, run_as.pw_gid)

    def _server_settings(self) -> dict[str, str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.directory),
            "logging_collector": "off",
            "TimeZone": "UTC",
            "log_timezone": "UTC",
            "max_wal_size": "2GB",
            # Files in the data directory: a container's small /dev/shm cannot break queries.
            "dynamic_shared_memory_type": "mmap",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        return settings | self.settings

    def _launch_on_a_port(self, run_as: pwd.struct_passwd | None, timeout: float) -> None:
        """Launch on the fixed port, or on a free one, choosing again (twice at most) if
        another process took it before the server could bind it."""
        attempts = 1 if self._fixed_port is not None else 3
        for attempt in range(1, attempts + 1):
            self.port = self._fixed_port or free_port()
            mark = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._launch(run_as, timeout)
            except PostgresError:
                if attempt == attempts or not _ADDRESS_IN_USE.search(self._log_since(mark)):
                    raise

    def _launch(self, run_as: pwd.struct_passwd | None, timeout: float) -> None:
        mark = self.log_path.stat().st_size
        command: list = [self.bin_dir / "postgres", "-D", self.data_dir, "-p", self.port]
        for name, value in self._server_settings().items():
            command += ["-c", f"{name}={value}"]
        self._process = self._spawn(
            command, run_as, process_group=0, preexec_fn=die_with_parent_hook()
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                status, self._process = self._process.returncode, None
                raise PostgresError(
                    f"the PostgreSQL server exited at start ({status}):\n{self._log_since(mark)}"
                )
            try:
                # Through this cluster's own socket: whatever else may hold the TCP port.
                psycopg.connect(
                    host=str(self.directory),
                    port=self.port,
                    user=SUPERUSER,
                    dbname="postgres",
                    connect_timeout=2,
                ).close()
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    process, self._process = self._process, None
                    stop_process_group(process, 10)
                    raise PostgresError(
                        f"the PostgreSQL server did not accept connections within {timeout}s "
                        f"({error}):\n{self._log_since(mark)}"
                    ) from None
            time.sleep(0.05)

    def _log_since(self, mark: int, limit: int = 4000) -> str:
        """The log written since byte ``mark``, its last ``limit`` characters."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(mark)
                text = log.read().decode(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return text[-limit:]


def _searchable_by(directory: Path, user: pwd.struct_passwd) -> bool:
    mode = os.stat(directory)
    if mode.st_uid == user.pw_uid:
        return bool(mode.st_mode & stat.S_IXUSR)
    groups = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    if mode.st_gid in groups:
        return bool(mode.st_mode & stat.S_IXGRP)
    return bool(mode.st_mode & stat.S_IXOTH)
