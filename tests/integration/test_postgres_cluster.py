"""ThrowawayPostgres: a real server started and stopped, nothing left behind, clear errors."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from tmq.tools.postgres import PostgresError, ThrowawayPostgres, find_bin_dir


def group_alive(pgid: int) -> bool:
    """Whether any process is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_gone(pgid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def cluster_dir():
    """A directory the postgres OS user can reach (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="tmq-pg-test-"))
    directory.chmod(0o755)
    yield directory / "cluster"
    shutil.rmtree(directory, ignore_errors=True)


def fake_server_dir(root: Path, name: str) -> Path:
    """A directory with executable ``initdb`` and ``postgres`` stand-ins."""
    directory = root / name / "bin"
    directory.mkdir(parents=True)
    for program in ("initdb", "postgres"):
        (directory / program).write_text("#!/bin/sh\nexit 1\n")
        (directory / program).chmod(0o755)
    return directory


class ThrowawayPostgresTests:
    def test_serves_then_stops_leaving_no_process_and_no_directory(self):
        """A started cluster accepts connections on 127.0.0.1 and is durable by default;
        stop() ends the postmaster and every backend and removes its temporary directory."""
        cluster = ThrowawayPostgres().start()
        try:
            pid, directory = cluster.pid, cluster.directory
            with psycopg.connect(cluster.dsn()) as connection:
                assert connection.execute("SHOW fsync").fetchone() == ("on",)
                assert connection.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
                assert connection.execute("SELECT current_user").fetchone() == ("postgres",)
                assert group_alive(pid)
        finally:
            cluster.stop()
        assert not group_alive(pid)
        assert not directory.exists()
        assert not cluster.running
        cluster.stop()  # idempotent

    def test_stop_disconnects_clients(self):
        """stop() is a fast shutdown: an open client connection does not hold it up."""
        cluster = ThrowawayPostgres(durable=False).start()
        pid = cluster.pid
        connection = psycopg.connect(cluster.dsn())
        try:
            started = time.monotonic()
            cluster.stop()
            assert time.monotonic() - started < 10
            assert not group_alive(pid)
            with pytest.raises(psycopg.OperationalError):
                connection.execute("SELECT 1")
        finally:
            connection.close()

    def test_restart_in_the_same_directory_keeps_the_data(self, cluster_dir):
        """A cluster in a given directory survives stop(); start() reuses it, and the
        directory stays."""
        with ThrowawayPostgres(cluster_dir, durable=False) as cluster:
            dsn = cluster.create_database("kept")
            with psycopg.connect(dsn) as connection:
                connection.execute("CREATE TABLE t AS SELECT 42 AS answer")
        assert (cluster_dir / "data" / "PG_VERSION").exists()
        with ThrowawayPostgres(cluster_dir, durable=False) as cluster:
            with psycopg.connect(cluster.dsn("kept")) as connection:
                assert connection.execute("SELECT answer FROM t").fetchone() == (42,)
            assert (cluster_dir / f".s.PGSQL.{cluster.port}").is_socket()

    def test_create_and_drop_database(self, postgres_cluster):
        """create_database returns a working DSN; drop_database removes the database even
        with a client connected."""
        dsn = postgres_cluster.create_database("scratch_db")
        connection = psycopg.connect(dsn)
        postgres_cluster.drop_database("scratch_db")
        connection.close()
        with pytest.raises(psycopg.OperationalError, match="does not exist"):
            psycopg.connect(dsn)

    def test_session_cluster_is_not_durable(self, postgres_cluster):
        """durable=False turns fsync, synchronous_commit and full_page_writes off."""
        with psycopg.connect(postgres_cluster.dsn()) as connection:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                assert connection.execute(f"SHOW {setting}").fetchone() == ("off",)

    def test_port_in_use_fails_with_the_server_log(self):
        """A fixed port another socket holds: start() fails quoting the server's own
        complaint, and nothing is left running or on disk."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            cluster = ThrowawayPostgres(port=holder.getsockname()[1], durable=False)
            with pytest.raises(PostgresError) as failure:
                cluster.start()
        message = str(failure.value)
        assert "exited at start" in message
        assert "Address already in use" in message
        assert cluster.pid is None
        assert cluster.directory is None

    def test_failed_initdb_reports_its_output(self, cluster_dir):
        """initdb refusing a non-empty data directory fails start() with initdb's words."""
        (cluster_dir / "data").mkdir(parents=True)
        (cluster_dir / "data" / "stray").write_text("not a cluster")
        with pytest.raises(PostgresError, match=r"(?s)initdb failed.*is not empty"):
            ThrowawayPostgres(cluster_dir, durable=False).start()

    @pytest.mark.skipif(os.geteuid() != 0, reason="the check applies when running as root")
    def test_directory_the_postgres_user_cannot_reach(self, tmp_path):
        """As root, a directory under a private one (pytest's tmp_path) is refused up front,
        naming the directory in the way."""
        with pytest.raises(PostgresError, match=r"cannot reach.*not searchable"):
            ThrowawayPostgres(tmp_path / "cluster").start()

    def test_killed_parent_leaves_no_server(self, tmp_path):
        """The server of a process killed with SIGKILL shuts down by itself."""
        script = textwrap.dedent(
            """
            import time
            from tmq.tools.postgres import ThrowawayPostgres
            cluster = ThrowawayPostgres(durable=False).start()
            print(cluster.pid, cluster.directory, flush=True)
            time.sleep(120)
            """
        )
        # cwd outside the checkout: its ./tmq would shadow the installed package
        parent = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path
        )
        try:
            pid, directory = parent.stdout.readline().split()
        finally:
            parent.send_signal(signal.SIGKILL)
            parent.wait()
            parent.stdout.close()
        try:
            assert wait_until_gone(int(pid)), "the server outlived its parent"
        finally:
            shutil.rmtree(directory, ignore_errors=True)


class FindBinDirTests:
    def test_missing_server_names_the_debian_package(self, tmp_path):
        """No initdb on PATH nor under the Debian root: the error names `postgresql`."""
        with pytest.raises(PostgresError, match="apt-get install postgresql"):
            find_bin_dir(path=str(tmp_path / "empty"), debian_root=tmp_path / "none")

    def test_incomplete_bin_dir_is_refused(self, tmp_path):
        """A bin_dir without the server programs fails at construction, naming the package."""
        with pytest.raises(PostgresError, match=r"no initdb in .*apt-get install postgresql"):
            ThrowawayPostgres(bin_dir=tmp_path)

    def test_newest_debian_version_when_not_on_path(self, tmp_path):
        """Versions compare as numbers: 16 is newer than 9.6 and 15."""
        for version in ("9.6", "15", "16"):
            fake_server_dir(tmp_path, version)
        found = find_bin_dir(path=str(tmp_path / "empty"), debian_root=tmp_path)
        assert found == tmp_path / "16" / "bin"

    def test_path_wins_and_symlinks_are_resolved(self, tmp_path):
        """initdb on PATH, a symlink as Debian's /usr/local/bin ones are: its real directory
        is used, ahead of any newer Debian version."""
        real = fake_server_dir(tmp_path / "opt", "pg")
        fake_server_dir(tmp_path / "debian", "99")
        on_path = tmp_path / "path"
        on_path.mkdir()
        (on_path / "initdb").symlink_to(real / "initdb")
        found = find_bin_dir(path=str(on_path), debian_root=tmp_path / "debian")
        assert found == real.resolve()
