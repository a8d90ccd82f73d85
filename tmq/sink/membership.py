"""A sink instance's membership: its heartbeat row and its partition locks, on one dedicated
PostgreSQL connection.

The advisory locks that prove partition ownership (``tmq.sink.ownership``) are session locks,
so they live exactly as long as this connection: it is never pooled nor shared with the
writers, and it is opened with TCP keepalives so that the server drops a dead instance's
session (and with it the locks) within about ``keepalive_s`` seconds. When a call finds the
connection broken the instance has lost every lock: the call fails with
``MembershipLostError``, and the next ``heartbeat`` connects again with no lock held.

Blocking psycopg 3 calls run one at a time on a thread pool of their own (started and stopped
by the caller); every method returns a Deferred fired on the reactor.
"""

from __future__ import annotations

from typing import Any

import psycopg
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.threads import deferToThreadPool

from .ownership import lock_key

__all__ = ["Membership", "MembershipLostError"]

_JOIN = """
    INSERT INTO sink_instances (consumer_group, instance_id) VALUES (%s, %s)
    ON CONFLICT (consumer_group, instance_id) DO UPDATE SET heartbeat_at = now()
"""
_EXPIRE = """
    DELETE FROM sink_instances
    WHERE consumer_group = %s AND heartbeat_at < now() - make_interval(secs => %s)
"""
_LIVE = "SELECT count(*) FROM sink_instances WHERE consumer_group = %s"
_LEAVE = "DELETE FROM sink_instances WHERE consumer_group = %s AND instance_id = %s"


class MembershipLostError(Exception):
    """The dedicated connection broke: every partition lock is gone."""


class Membership:
    """Heartbeats and partition locks of one instance.

    :param reactor: the reactor the Deferreds fire on.
    :param threadpool: a started pool of its own for the blocking calls.
    :param dsn: a libpq connection string.
    :param group: the consumer group the instances share.
    :param topic: the topic whose partitions are locked.
    :param instance_id: this instance's id, unique within the group.
    :param ttl_s: an instance whose heartbeat is older than this no longer counts (and its row
        is removed by the next live instance's heartbeat).
    :param keepalive_s: roughly how soon the server notices this connection died.
    """

    def __init__(
        self,
        reactor: Any,
        threadpool: Any,
        dsn: str,
        *,
        group: str,
        topic: str,
        instance_id: str,
        ttl_s: float = 10.0,
        keepalive_s: int = 10,
    ):
        self._reactor = reactor
        self._threadpool = threadpool
        self._dsn = dsn
        self.group = group
        self.topic = topic
        self.instance_id = instance_id
        self._ttl_s = ttl_s
        self._keepalive_s = keepalive_s
        self._connection: psycopg.Connection | None = None
        self._lock = DeferredLock()

    def heartbeat(self) -> Deferred[int]:
        """Refresh this instance's row, remove expired ones; fires with the number of live
        instances (this one included)."""
        return self._call(self._heartbeat)

    def try_lock(self, partition: int) -> Deferred[bool]:
        """Try to take ``partition``'s lock without waiting; fires with whether it is held."""
        return self._call(self._try_lock, partition)

    def unlock(self, partition: int) -> Deferred[None]:
        """Release ``partition``'s lock."""
        return self._call(self._unlock, partition)

    def leave(self) -> Deferred[None]:
        """Remove this instance's row and close the connection (releasing every lock)."""
        return self._call(self._leave)

    # -- in the pool -----------------------------------------------------------------------

    def _call(self, function, *args) -> Deferred:
        return self._lock.run(
            deferToThreadPool, self._reactor, self._threadpool, self._guarded, function, *args
        )

    def _guarded(self, function, *args):
        try:
            return function(*args)
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            self._close()
            raise MembershipLostError(f"sink membership connection lost: {error}") from error

    def _connected(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            idle = max(1, self._keepalive_s // 2)
            self._connection = psycopg.connect(
                self._dsn,
                autocommit=True,
                keepalives=1,
                keepalives_idle=idle,
                keepalives_interval=max(1, idle // 2),
                keepalives_count=2,
                application_name=f"tmq-sink {self.instance_id} membership",
            )
        return self._connection

    def _heartbeat(self) -> int:
        connection = self._connected()
        connection.execute(_JOIN, (self.group, self.instance_id))
        connection.execute(_EXPIRE, (self.group, self._ttl_s))
        (live,) = connection.execute(_LIVE, (self.group,)).fetchone()
        return live

    def _try_lock(self, partition: int) -> bool:
        key = lock_key(self.group, self.topic, partition)
        (held,) = self._connected().execute("SELECT pg_try_advisory_lock(%s, %s)", key).fetchone()
        return held

    def _unlock(self, partition: int) -> None:
        if self._connection is None:
            return  # no connection, no lock
        key = lock_key(self.group, self.topic, partition)
        self._connection.execute("SELECT pg_advisory_unlock(%s, %s)", key)

    def _leave(self) -> None:
        try:
            if self._connection is not None:
                self._connection.execute(_LEAVE, (self.group, self.instance_id))
        finally:
            self._close()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
