"""Fixtures of the broker tests."""

from __future__ import annotations

import pytest
from memory_cluster import MemoryCluster, fired


@pytest.fixture
def cluster():
    """Three brokers in memory (``memory_cluster.MemoryCluster``), stopped afterwards."""
    made = MemoryCluster()
    yield made
    for node in made.nodes.values():
        fired(node.broker.stop())
