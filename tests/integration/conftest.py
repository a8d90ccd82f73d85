"""Fixtures of the integration tier: real broker processes on 127.0.0.1, real clients.

Every test here is marked ``integration`` (the tox env ``integration`` runs them). A binary
a test needs that is missing fails the test with the Debian package to install (``make test``
installs them when run as root).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from integration_helpers import BrokerProcess


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
