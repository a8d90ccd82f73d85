"""The API's database: txpostgres' ``ConnectionPool`` made to reconnect (DESIGN §7).

txpostgres' pool opens its connections once and never again, and takes no reactor. Here
each pooled connection carries a ``DeadConnectionDetector`` on the injected reactor: when a
query shows the connection dead (or its socket closes between queries), the detector
reconnects it in the background, retrying on a backoff (0.1 s doubling to at most 2 s), and
queries on it fail at once meanwhile. A query goes to a live connection when there is one.

Contract of ``Database.query``: a Deferred firing with the rows, or failing with
``DatabaseUnavailable`` when the server cannot be reached, a connection died, the schema is
missing or the statement timed out (all of them a 503 for the API, and all of them pass by
themselves); any other database error fails with psycopg2's own exception (a bug: a 500).
``start`` never fails: a database that is down at start is the same as one that goes down
later. Connections use the UTC time zone, the ISO date style and a server-side statement
timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors
from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure
from txpostgres.reconnection import ConnectionDead, DeadConnectionDetector
from txpostgres.txpostgres import Connection, ConnectionPool, RollbackFailed

__all__ = ["Database", "DatabaseUnavailable", "check_dsn"]

#: The failures that mean the connection is gone (and a reconnect is due).
_DEATHS = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    RollbackFailed,
    ConnectionDone,
    ConnectionLost,
)

#: Failures that pass by themselves: unreachable, reconnecting, timed out.
_UNAVAILABLE = (*_DEATHS, ConnectionDead)

#: A statement timeout. (txpostgres turns psycopg2's QueryCanceled into CancelledError.)
_TIMED_OUT = (psycopg2.errors.QueryCanceled, CancelledError)


def _is_death(failure: Failure) -> bool:
    # QueryCanceled is an OperationalError, but the connection survives it.
    return failure.check(*_DEATHS) is not None and failure.check(*_TIMED_OUT) is None


class DatabaseUnavailable(Exception):
    """The database cannot answer now; ``str()`` says why, for the 503."""


def check_dsn(dsn: str) -> None:
    """Raise ``ValueError`` naming the problem if ``dsn`` is not a libpq connection string."""
    try:
        psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as error:
        raise ValueError(str(error).strip()) from None


def _backoff() -> Iterator[float]:
    delay = 0.1
    yield 0.0
    while True:
        yield delay
        delay = min(delay * 2, 2.0)


class _Connection(Connection):
    """A pooled connection with its own detector. txpostgres watches the socket between
    queries (for NOTIFY); when the server goes away then, psycopg2's error would reach the
    reactor as an unhandled error: here it is a lost connection, which the detector sees."""

    def __init__(self, reactor: Any, cooperator: Any = None):
        detector = DeadConnectionDetector(
            deathChecker=_is_death,
            reconnectionIterator=_backoff,
            reactor=reactor,
        )
        super().__init__(reactor=reactor, cooperator=cooperator, detector=detector)
        #: Why the connection is down, for 503s; ``None`` while up.
        self.last_error: str | None = None
        detector.addRecoveryHandler(self._recovered)

    def _recovered(self) -> None:
        self.last_error = None

    @property
    def alive(self) -> bool:
        return (
            not self.detector.connectionIsDead
            and self._connection is not None
            and not self._connection.closed
        )

    def close(self) -> None:
        """Close, even when the socket is already gone (txpostgres' ``close`` first asks the
        reactor to stop watching it, which raises then, and the connection stayed open)."""
        try:
            super().close()
        except Exception:
            if self._connection is not None and not self._connection.closed:
                self._connection.close()

    def doRead(self):
        try:
            return super().doRead()
        except _DEATHS as error:
            self.last_error = _reason(error)
            return ConnectionLost(self.last_error)


class _Pool(ConnectionPool):
    """txpostgres' pool with the reactor injected and queries sent to live connections."""

    connectionFactory = _Connection

    def __init__(self, reactor: Any, dsn: str, size: int, options: str):
        self.reactor = reactor
        super().__init__(None, dsn, min=size, options=options, connect_timeout=5)
        #: Every connection: ``connections`` holds only those not running a query.
        self.every: tuple[_Connection, ...] = tuple(self.connections)

    def _runQuery(self, *args, **kwargs):
        alive = [connection for connection in self.connections if connection.alive]
        connection = alive[0] if alive else next(iter(self.connections))
        self.connections.remove(connection)
        return connection.runQuery(*args, **kwargs).addBoth(self._putBackAndPassthrough, connection)


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class Database:
    """``size`` connections to ``dsn`` on ``reactor``.

    :param statement_timeout_ms: the server cancels a statement running longer (a 503).
    """

    def __init__(self, reactor: Any, dsn: str, size: int = 4, statement_timeout_ms: int = 10_000):
        check_dsn(dsn)
        # The ISO date style is what the page statements' time text relies on.
        options = (
            f"-c TimeZone=UTC -c DateStyle=ISO -c statement_timeout={int(statement_timeout_ms)}"
        )
        self._pool = _Pool(reactor, dsn, size, options)
        self._started = False

    def start(self) -> Deferred[None]:
        """Connect every connection; one that cannot connect keeps trying in the background.
        Fires once each has connected or failed its first attempt."""
        attempts = []
        for connection in self._pool.every:
            attempt = connection.connect(*self._pool.connargs, **self._pool.connkw)
            attempt.addErrback(self._first_attempt_failed, connection)
            attempts.append(attempt)

        def started(_):
            self._started = True

        return DeferredList(attempts).addCallback(started)

    def _first_attempt_failed(self, failure: Failure, connection: _Connection) -> None:
        connection.last_error = _reason(failure.value)
        connection.detector.checkForDeadConnection(failure)

    def close(self) -> None:
        for connection in self._pool.every:
            connection.detector.setReconnectable(_Closed())
            if connection._connection is not None and not connection._connection.closed:
                connection.close()

    @property
    def available(self) -> bool:
        """Whether some connection is up now (it may still find the server gone)."""
        return self._started and any(c.alive for c in self._pool.every)

    def unavailable_reason(self) -> str:
        reasons = [c.last_error for c in self._pool.every if c.last_error]
        return reasons[0] if reasons else "not connected to PostgreSQL yet"

    def query(self, sql: str, params: dict[str, Any] | None = None) -> Deferred[list[tuple]]:
        """The rows of one statement, or ``DatabaseUnavailable`` (see the module)."""
        if not self.available:
            return fail(DatabaseUnavailable(self.unavailable_reason()))
        return self._pool.runQuery(sql, params).addErrback(self._translate)

    def _translate(self, failure: Failure):
        if failure.check(psycopg2.errors.UndefinedTable):
            raise DatabaseUnavailable(
                "the telemetry schema is missing: start tmq sink once (it migrates the database)"
            )
        if failure.check(*_TIMED_OUT):
            raise DatabaseUnavailable("the query took longer than the statement timeout")
        if failure.check(*_UNAVAILABLE):
            raise DatabaseUnavailable(
                "PostgreSQL is unreachable: "
                + (_reason(failure.value) if failure.check(*_DEATHS) else "reconnecting")
            )
        return failure


class _Closed:
    """What a closed Database's detectors reconnect: nothing."""

    def close(self) -> None:
        pass

    def connect(self, *args, **kwargs) -> Deferred[None]:
        return succeed(None)
