"""What the API reads: the ``TelemetryStore`` interface and its PostgreSQL implementation.

``TelemetryStore`` answers the checked queries of ``tmq.api.validation`` with the JSON bodies
of DESIGN §7 (a dict, or the body already encoded). Every method returns a Deferred; one that
fails with ``tmq.api.database.DatabaseUnavailable`` becomes a 503. Pages hold ``items``,
``total``, ``limit`` and ``offset``; their orders are stable (``/gpus`` by uuid, samples by
time then metric name, ``/latest`` by metric name, buckets by start).

``PostgresStore`` runs ``tmq.api.queries`` on a ``Database``. The unit tests' in-memory
store is held to the same contract tests as this one.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed

from . import queries
from .database import Database
from .validation import GpuListQuery, LatestQuery, MetricsQuery, TelemetryQuery

__all__ = ["PostgresStore", "TelemetryStore"]

#: A JSON answer: a dict, or its encoding (a page whose items PostgreSQL built).
Body = dict[str, Any] | bytes


class TelemetryStore(Protocol):
    def gpu_id(self, uuid: str) -> Deferred[int | None]:
        """The store's key of GPU ``uuid``; ``None`` when there is no such GPU."""

    def gpus(self, query: GpuListQuery) -> Deferred[Body]:
        """A page of GPUs."""

    def telemetry(self, query: TelemetryQuery, gpu: int) -> Deferred[Body]:
        """A page of the samples of GPU ``gpu`` (a ``gpu_id`` answer)."""

    def metrics(self, query: MetricsQuery, gpu: int) -> Deferred[Body]:
        """One aggregate, or a page of buckets."""

    def latest(self, query: LatestQuery, gpu: int) -> Deferred[Body]:
        """A page of the newest sample of each metric."""

    def schema_version(self) -> Deferred[int]:
        """The schema version; fails with ``DatabaseUnavailable`` when the store cannot
        answer (readiness)."""

    def available(self) -> bool:
        """Whether the database is reachable now, as far as the store knows without asking
        it (``tmq_api_database_up``)."""


class PostgresStore:
    """``TelemetryStore`` over the sink's tables (``tmq.sink.schema``)."""

    def __init__(self, database: Database):
        self._database = database
        self._gpu_ids = queries.GpuIds()

    def gpu_id(self, uuid: str) -> Deferred[int | None]:
        known = self._gpu_ids.get(uuid)
        if known is not None:
            return succeed(known)

        def found(rows: list[tuple]) -> int | None:
            if not rows:
                return None
            self._gpu_ids.put(uuid, rows[0][0])
            return rows[0][0]

        return self._database.query(queries.GPU_ID, {"uuid": uuid}).addCallback(found)

    def gpus(self, query: GpuListQuery) -> Deferred[Body]:
        statement = queries.gpus(query)
        return self._database.query(*statement).addCallback(
            queries.page_body, query.limit, query.offset
        )

    def telemetry(self, query: TelemetryQuery, gpu: int) -> Deferred[Body]:
        statement = queries.telemetry(query, gpu)
        return self._database.query(*statement).addCallback(
            queries.page_body, query.limit, query.offset
        )

    def metrics(self, query: MetricsQuery, gpu: int) -> Deferred[Body]:
        statement = queries.metrics(query, gpu)
        return self._database.query(*statement).addCallback(queries.aggregate_result, query)

    def latest(self, query: LatestQuery, gpu: int) -> Deferred[Body]:
        statement = queries.latest(query, gpu)
        return self._database.query(*statement).addCallback(
            queries.page_body, query.limit, query.offset, gpu_id=query.gpu_id
        )

    def schema_version(self) -> Deferred[int]:
        return self._database.query(queries.READY).addCallback(lambda rows: rows[0][0] or 0)

    def available(self) -> bool:
        return self._database.available
