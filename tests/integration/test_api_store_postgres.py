"""``PostgresStore`` on real PostgreSQL, held to the ``TelemetryStore`` contract
(tests/api/store_contract.py) that the unit tests' in-memory store also meets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from api_helpers import load_samples

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from store_contract import TelemetryStoreContract

from tmq.api.database import Database
from tmq.api.store import PostgresStore
from tmq.client.sync import shared_reactor_thread


class PostgresStoreContractTests(TelemetryStoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, pg_dsn):
        self.dsn = pg_dsn
        self.reactor_thread = shared_reactor_thread()
        self.databases = []
        yield
        for database in self.databases:
            self.reactor_thread.call(database.close)

    def make_store(self, samples):
        load_samples(self.dsn, samples)
        database = Database(self.reactor_thread.reactor, self.dsn, size=2)
        self.databases.append(database)
        self.reactor_thread.call(database.start)
        return PostgresStore(database)

    def run(self, call_store):
        """The store's answer as the API sends it, read back as JSON."""
        answer = self.reactor_thread.call(call_store)
        return json.loads(answer) if isinstance(answer, bytes) else answer
