"""The unit tests' in-memory store, held to the ``TelemetryStore`` contract that
``PostgresStore`` meets on real PostgreSQL (tests/integration/test_api_store_postgres.py)."""

from __future__ import annotations

from memory_store import MemoryStore
from store_contract import TelemetryStoreContract
from twisted.python.failure import Failure


class MemoryStoreContractTests(TelemetryStoreContract):
    def make_store(self, samples):
        return MemoryStore(samples)

    def run(self, call):
        outcome = []
        call().addBoth(outcome.append)
        assert outcome, "the memory store answers at once"
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        return outcome[0]
