"""Fixtures of the integration tier: real broker processes on 127.0.0.1, real clients.

Every test here is marked ``integration`` (the tox env ``integration`` runs them). A binary
a test needs that is missing fails the test with the Debian package to install (``make test``
installs them when run as root).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import process_cluster
import pytest
from integration_helpers import BrokerProcess

REPO = Path(__file__).resolve().parents[2]

# Tests start children (etcd, PostgreSQL) with a preexec_fn, i.e. a real fork(), while gRPC
# clients of the etcd store may be busy in this process; grpcio's fork handlers then break
# about 3 children in 100 ("epoll_wait error: Bad file descriptor"). The children never use
# gRPC, so the handlers are not needed. Set before anything imports grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")


#: ``cluster_factory(size=3, *settings, metadata="etcd", racks=...)``: etcd and brokers.
cluster_factory = pytest.fixture(process_cluster.cluster_factory)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def broker_factory(tmp_path):
    """Start brokers (``broker_factory(*settings)``); every one is stopped at the end."""
    started: list[BrokerProcess] = []

    def start(*settings: str, data_dir: Path | None = None, port: int | None = None):
        directory = data_dir or tmp_path / f"data-{len(started)}"
        directory.mkdir(exist_ok=True)
        broker = BrokerProcess(directory, *settings, port=port).start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop(signal.SIGKILL)


@pytest.fixture
def broker(broker_factory):
    """One broker with default settings."""
    return broker_factory()


# What a copy of the source tree for a wheel build leaves out (as tests/test_packaging.py does):
# virtualenvs, caches and earlier build output.
_NOT_SOURCE = {
    ".git",
    ".venv",
    ".tox",
    "build",
    "dist",
    "tests",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
}


def _ignore_non_source(directory: str, names: list[str]) -> set[str]:
    if Path(directory) == REPO:
        return {name for name in names if name in _NOT_SOURCE or name.endswith(".egg-info")}
    return {"__pycache__"} & set(names)


@pytest.fixture(scope="session")
def installed_site(tmp_path_factory) -> Path:
    """A directory holding tmq installed from a freshly built wheel (non-editable, with the
    twistd plugin under twisted/plugins), to put on PYTHONPATH.

    The dev venv's editable install hides the plugin from twistd (DESIGN §1), so the twistd
    tests run against this install, as the tox env does. The wheel is pure Python, so
    unpacking it is installing it.
    """
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=_ignore_non_source)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", work, source],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = work.glob("tmq-*.whl")
    site = work / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


@pytest.fixture(scope="session")
def postgres_cluster():
    """One throwaway PostgreSQL server for the session (fsync off), on 127.0.0.1; stopped at
    the end, leaving no process behind."""
    from tmq.tools.postgres import PostgresError, ThrowawayPostgres

    try:
        cluster = ThrowawayPostgres(durable=False).start()
    except PostgresError as error:
        pytest.fail(f"{error} (make test installs it, as root)")
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_dsn(postgres_cluster):
    """The connection string of a new, empty database of ``postgres_cluster``, dropped after
    the test."""
    from uuid import uuid4

    name = f"test_{uuid4().hex[:16]}"
    dsn = postgres_cluster.create_database(name)
    yield dsn
    postgres_cluster.drop_database(name)
