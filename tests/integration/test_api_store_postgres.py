"""``PostgresStore`` on real PostgreSQL, held to the ``TelemetryStore`` contract
(tests/api/store_contract.py) that the unit tests' in-memory store also meets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from api_helpers import load_samples
from reactor_thread import call, running_reactor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from store_contract import TelemetryStoreContract

from tmq.api.database import Database
from tmq.api.store import PostgresStore


class PostgresStoreContractTests(TelemetryStoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, pg_dsn):
        self.dsn = pg_dsn
        self.databases = []
        yield
        for database in self.databases:
            call(database.close)

    def make_store(self, samples):
        load_samples(self.dsn, samples)
        database = Database(running_reactor(), self.dsn, size=2)
        self.databases.append(database)
        call(database.start)
        return PostgresStore(database)

    def run(self, call_store):
        return call(call_store)
