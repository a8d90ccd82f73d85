"""Blocking wrappers for plain scripts: ``SyncProducer``, ``SyncConsumer``, ``SyncAdmin``.

The Twisted client runs in a reactor; these wrappers run that reactor in a dedicated daemon
thread (``ReactorThread``) and hand every call to it, blocking the calling thread until the
result is there::

    with SyncProducer("localhost:9092") as producer:
        future = producer.send("gpu-telemetry", b"...", key=b"GPU-...")
        producer.flush()
        print(future.result().offset)

They must not be used from the reactor thread itself (that would deadlock: a ``RuntimeError``
says so). The thread is started the first time a wrapper is made without a ``runner``, using the
process's global reactor (imported then, not at import time); if that reactor already runs in
another thread, it is reused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread
from twisted.python import threadable

from .admin import Admin, ClusterInfo, GroupDescription, GroupList, GroupOffset, NewTopic
from .cluster import Cluster
from .connection import Connector
from .consumer import Consumer, ConsumerRecord, TopicPartition
from .errors import KafkaError
from .producer import Producer, RecordMetadata

__all__ = [
    "ReactorThread",
    "Runner",
    "SyncAdmin",
    "SyncConsumer",
    "SyncProducer",
    "shared_reactor_thread",
]


class Runner(Protocol):
    """Where the wrapped client runs: ``ReactorThread``, or an in-test stand-in."""

    reactor: Any

    def call(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run ``function`` on the reactor; block for its result (a Deferred's result)."""

    def submit(self, function: Callable, *args: Any, **kwargs: Any) -> Future:
        """Run ``function`` on the reactor; return a ``Future`` of its (Deferred's) result."""


class ReactorThread:
    """A reactor running in another thread, and the calls into it.

    :param reactor: a reactor that runs (or will run) in a thread other than the caller's.
    """

    def __init__(self, reactor: Any):
        self.reactor = reactor

    def call(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` in the reactor thread and return its result,
        waiting for it if it is a Deferred; its exception is raised here.

        :raises RuntimeError: called from the reactor thread.
        """
        if threadable.isInIOThread():
            raise RuntimeError("the blocking tmq client cannot be used from the reactor thread")
        return blockingCallFromThread(self.reactor, function, *args, **kwargs)

    def submit(self, function: Callable, *args: Any, **kwargs: Any) -> Future:
        """Run ``function(*args, **kwargs)`` in the reactor thread without waiting.

        :returns: a ``Future`` of its result (of the Deferred's result, if it returns one).
        """
        future: Future = Future()
        self.reactor.callFromThread(_run_into, future, function, args, kwargs)
        return future


def _run_into(future: Future, function: Callable, args: tuple, kwargs: dict) -> None:
    try:
        result = function(*args, **kwargs)
    except Exception as e:
        future.set_exception(e)
        return
    if isinstance(result, Deferred):
        result.addCallbacks(future.set_result, lambda failure: future.set_exception(failure.value))
    else:
        future.set_result(result)


_shared: ReactorThread | None = None
_shared_lock = threading.Lock()


def shared_reactor_thread() -> ReactorThread:
    """The process's ``ReactorThread``: the global reactor, started in a daemon thread named
    ``tmq-reactor`` unless it already runs."""
    global _shared
    with _shared_lock:
        if _shared is None:
            from twisted.internet import reactor  # the global reactor, only when asked for

            if not reactor.running:
                threading.Thread(
                    target=reactor.run,
                    kwargs={"installSignalHandlers": False},
                    name="tmq-reactor",
                    daemon=True,
                ).start()
            _shared = ReactorThread(reactor)
        return _shared


class _SyncClient:
    """Owns a ``Cluster`` in the runner's reactor; closes it on ``close``."""

    def __init__(
        self,
        bootstrap: str,
        runner: Runner | None,
        client_id: str,
        request_timeout_ms: int,
        connect: Connector | None,
    ):
        self._runner = runner if runner is not None else shared_reactor_thread()
        self._cluster: Cluster = self._runner.call(
            Cluster,
            self._runner.reactor,
            bootstrap,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            connect=connect,
        )

    def __enter__(self):
        return self

    def __exit__(self, *_exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections to the brokers."""
        self._runner.call(self._cluster.close)


class SyncProducer(_SyncClient):
    """A blocking ``Producer``.

    :param bootstrap: ``HOST:PORT[,HOST:PORT...]``.
    :param runner: where the client runs; ``shared_reactor_thread()`` by default.
    :param connect: how connections are made (tests); TCP by default.
    :param options: ``Producer`` options (``acks``, ``compression``, ``linger_ms``, ...).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "tmq",
        request_timeout_ms: int = 30_000,
        runner: Runner | None = None,
        connect: Connector | None = None,
        **options: Any,
    ):
        super().__init__(bootstrap, runner, client_id, request_timeout_ms, connect)
        self._producer: Producer = self._runner.call(Producer, self._cluster, **options)

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Iterable[tuple[str, bytes | None]] = (),
        timestamp_ms: int | None = None,
    ) -> Future:
        """Queue a record without waiting.

        :returns: a ``Future`` of its ``RecordMetadata`` (``future.result()`` blocks).
        """
        return self._runner.submit(
            self._producer.send, topic, value, key, partition, tuple(headers), timestamp_ms
        )

    def send_and_wait(self, topic: str, value: bytes | None, **kwargs: Any) -> RecordMetadata:
        """Send one record and block until it is delivered (slow: one linger per record)."""
        return self._runner.call(self._producer.send, topic, value, **kwargs)

    def flush(self) -> None:
        """Block until every record sent so far is delivered or failed."""
        self._runner.call(self._producer.flush)

    def close(self, timeout_ms: float | None = None) -> None:
        """Deliver what is queued (failing what is left after ``timeout_ms``), then close."""
        self._runner.call(self._producer.close, timeout_ms)
        super().close()


class SyncConsumer(_SyncClient):
    """A blocking ``Consumer``; iterating over it polls forever.

    :param options: ``Consumer`` options (``auto_offset_reset``, ``max_wait_ms``, ...).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "tmq",
        request_timeout_ms: int = 30_000,
        runner: Runner | None = None,
        connect: Connector | None = None,
        **options: Any,
    ):
        super().__init__(bootstrap, runner, client_id, request_timeout_ms, connect)
        self._consumer: Consumer = self._runner.call(Consumer, self._cluster, **options)

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """See ``Consumer.assign``."""
        self._runner.call(self._consumer.assign, list(partitions))

    def seek(self, partition: tuple[str, int], offset: int) -> None:
        """See ``Consumer.seek``."""
        self._runner.call(self._consumer.seek, partition, offset)

    def seek_to_beginning(self, *partitions: tuple[str, int]) -> None:
        """See ``Consumer.seek_to_beginning``."""
        self._runner.call(self._consumer.seek_to_beginning, *partitions)

    def seek_to_end(self, *partitions: tuple[str, int]) -> None:
        """See ``Consumer.seek_to_end``."""
        self._runner.call(self._consumer.seek_to_end, *partitions)

    def position(self, partition: tuple[str, int]) -> int | None:
        """See ``Consumer.position``."""
        return self._runner.call(self._consumer.position, partition)

    def poll(self, timeout_ms: float = 1000) -> list[ConsumerRecord]:
        """Block up to ``timeout_ms`` for records."""
        return self._runner.call(self._consumer.poll, timeout_ms)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records as they arrive, polling forever (stop by leaving the loop)."""
        while True:
            yield from self.poll()

    def commit(self, offsets: Mapping[tuple[str, int], int], group: str) -> None:
        """See ``Consumer.commit``."""
        self._runner.call(self._consumer.commit, dict(offsets), group)

    def committed(self, group: str, partitions: Iterable[tuple[str, int]]) -> dict:
        """See ``Consumer.committed``."""
        return self._runner.call(self._consumer.committed, group, list(partitions))

    def close(self) -> None:
        """Stop the consumer and close the connections."""
        self._runner.call(self._consumer.close)
        super().close()


class SyncAdmin(_SyncClient):
    """A blocking ``Admin``.

    :param options: ``Admin`` options (``operation_timeout_ms``, ...).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "tmq",
        request_timeout_ms: int = 30_000,
        runner: Runner | None = None,
        connect: Connector | None = None,
        **options: Any,
    ):
        super().__init__(bootstrap, runner, client_id, request_timeout_ms, connect)
        self._admin: Admin = self._runner.call(Admin, self._cluster, **options)

    def create_topics(self, topics: Iterable[NewTopic], *, validate_only: bool = False) -> dict:
        """See ``Admin.create_topics``."""
        return self._runner.call(
            self._admin.create_topics, list(topics), validate_only=validate_only
        )

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = 1,
        configs: Mapping[str, str | None] | None = None,
    ) -> None:
        """See ``Admin.create_topic``; raises the topic's ``BrokerResponseError``."""
        self._runner.call(self._admin.create_topic, name, partitions, replication_factor, configs)

    def delete_topics(self, names: Iterable[str]) -> dict:
        """See ``Admin.delete_topics``."""
        return self._runner.call(self._admin.delete_topics, list(names))

    def delete_topic(self, name: str) -> None:
        """See ``Admin.delete_topic``; raises the topic's ``BrokerResponseError``."""
        self._runner.call(self._admin.delete_topic, name)

    def describe_topics(self, names: Iterable[str] | None = None) -> dict:
        """See ``Admin.describe_topics``."""
        wanted = None if names is None else list(names)
        return self._runner.call(self._admin.describe_topics, wanted)

    def list_topics(self) -> list[str]:
        """See ``Admin.list_topics``."""
        return self._runner.call(self._admin.list_topics)

    def describe_cluster(self) -> ClusterInfo:
        """See ``Admin.describe_cluster``."""
        return self._runner.call(self._admin.describe_cluster)

    def list_groups(self) -> GroupList:
        """See ``Admin.list_groups``."""
        return self._runner.call(self._admin.list_groups)

    def describe_groups(self, group_ids: Iterable[str]) -> dict[str, GroupDescription | KafkaError]:
        """See ``Admin.describe_groups``: each group maps to its description or its error."""
        return self._runner.call(self._admin.describe_groups, list(group_ids))

    def describe_group(self, group_id: str) -> GroupDescription:
        """See ``Admin.describe_group``; raises the group's ``KafkaError``."""
        return self._runner.call(self._admin.describe_group, group_id)

    def group_offsets(
        self, group_id: str, include: Iterable[tuple[str, int]] = ()
    ) -> dict[TopicPartition, GroupOffset]:
        """See ``Admin.group_offsets``."""
        return self._runner.call(self._admin.group_offsets, group_id, list(include))
