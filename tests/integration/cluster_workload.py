"""The workload side of the cluster harness (``process_cluster``): a producer that records
what it was told, the full read, and the end-of-run check.

* ``AckingProducer``: confluent-kafka, acks=all, unique values (``invariants.make_value``)
  from a background thread; every send's final outcome (``Attempt``) and every ack's offset
  (``Ack``).
* ``read_all``, ``final_check``: the full read from each leader and the invariant check
  (``invariants.check``) with the replicas' logs read from disk.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from invariants import (
    ACKED,
    FAILED,
    INDETERMINATE,
    Ack,
    Attempt,
    Read,
    Violation,
    check,
    make_value,
)
from pipeline_helpers import wait_for
from process_cluster import Cluster

__all__ = ["AckingProducer", "classify_delivery", "final_check", "read_all"]


# -- the producer ------------------------------------------------------------------------------

#: librdkafka errors that say the message is not in any log: it is refused for what it is
#: (size, format, topic), so no earlier try of it can have been appended either.
DEFINITE_ALWAYS = frozenset(
    {
        "_MSG_SIZE_TOO_LARGE", "_UNKNOWN_PARTITION", "_UNKNOWN_TOPIC", "_INVALID_ARG",
        "_PURGE_QUEUE", "_KEY_SERIALIZATION", "_VALUE_SERIALIZATION",
        "MSG_SIZE_TOO_LARGE", "INVALID_MSG", "INVALID_MSG_SIZE", "RECORD_LIST_TOO_LARGE",
        "INVALID_REQUIRED_ACKS", "INVALID_TIMESTAMP", "INVALID_RECORD",
        "TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT", "POLICY_VIOLATION", "UNKNOWN_TOPIC_OR_PART",
    }
)  # fmt: skip

#: Broker answers that refuse a produce before appending anything: definite when that answer
#: was the only try (no client retries), as kafka-notes I6 reads them.
DEFINITE_ONE_TRY = DEFINITE_ALWAYS | frozenset(
    {
        "NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "NOT_ENOUGH_REPLICAS",
        "FENCED_LEADER_EPOCH", "UNKNOWN_LEADER_EPOCH", "INVALID_PRODUCER_EPOCH",
        "OUT_OF_ORDER_SEQUENCE_NUMBER", "UNKNOWN_PRODUCER_ID",
    }
)  # fmt: skip


def classify_delivery(error: Any, retries: bool) -> tuple[str, str | None]:
    """The outcome (``ACKED``, ``FAILED``, ``INDETERMINATE``) and error name of a
    confluent-kafka delivery report.

    With client retries (an idempotent producer retries until ``message.timeout.ms``), the
    final error does not say what earlier tries did: one may have been appended before a
    NOT_ENOUGH_REPLICAS_AFTER_APPEND, a timeout or a lost connection. Only errors about the
    message itself are then definite. Without retries the one answer decides: everything but
    a refusal before the append (``DEFINITE_ONE_TRY``) is indeterminate, as are the
    client-side timeouts, transport errors and fatal errors.
    """
    if error is None:
        return ACKED, None
    name = error.name()
    definite = DEFINITE_ONE_TRY if not retries else DEFINITE_ALWAYS
    return (FAILED if name in definite else INDETERMINATE), name


class AckingProducer:
    """Sends ``make_value(partition, seq, producer)`` values round-robin to ``partitions``
    of ``topic``, acks=all, from a background thread, recording each send's outcome.

    :param bootstrap: ``HOST:PORT,...``, or a ``Cluster`` (its live brokers at ``start``).
    :param rate: sends per second (``None``: as fast as the client queue allows).
    :param max_sends: stop sending after this many (``None``: until ``stop``).
    :param idempotent: True: ``enable.idempotence`` with up to 5 requests in flight, retried
        by the client (order and no duplicates by the broker's dedup; outcomes after retries
        are mostly indeterminate). False: no retries, one request in flight, so each error is
        the answer to the one try (exact outcomes; order by construction; a send that failed
        is not sent again, the next value is).
    :param config: librdkafka settings overriding the defaults.

    A fatal client error (``error_cb`` with ``fatal()``, e.g. an idempotence state the broker
    refused) is recorded in ``fatal_errors`` and the client replaced by a new one.
    """

    def __init__(
        self,
        bootstrap: str | Cluster,
        topic: str,
        partitions: int | Sequence[int] = 1,
        *,
        producer: str = "w",
        rate: float | None = 500.0,
        max_sends: int | None = None,
        idempotent: bool = True,
        config: Mapping[str, Any] | None = None,
    ):
        self._bootstrap = bootstrap
        self.topic = topic
        self.partitions = (
            list(range(partitions)) if isinstance(partitions, int) else list(partitions)
        )
        self.producer_name = producer
        self.rate = rate
        self.max_sends = max_sends
        self.idempotent = idempotent
        settings: dict[str, Any] = {
            "acks": "all",
            "message.timeout.ms": 30_000,
            "request.timeout.ms": 10_000,
            "retry.backoff.ms": 100,
            "retry.backoff.max.ms": 1000,
            "linger.ms": 5,
            "queue.buffering.max.messages": 20_000,
            "topic.metadata.refresh.interval.ms": 5_000,
        }
        if idempotent:
            settings.update({"enable.idempotence": True, "max.in.flight": 5})
        else:
            settings.update({"enable.idempotence": False, "retries": 0, "max.in.flight": 1})
        settings.update(config or {})
        self.config = settings
        #: whether the client retries a failed request (librdkafka's default: it does)
        self.client_retries = int(settings.get("retries", 2**31 - 1)) > 0
        self._order: list[tuple[int, bytes]] = []
        self._outcomes: dict[tuple[int, bytes], tuple[str, str | None]] = {}
        self._acks: list[Ack] = []
        self._seq: dict[int, int] = defaultdict(int)
        self.errors: list[str] = []
        self.fatal_errors: list[str] = []
        self._fatal = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def sent(self) -> int:
        """Sends handed to the client so far."""
        return len(self._order)

    @property
    def acked(self) -> int:
        """Sends acknowledged so far."""
        return len(self._acks)

    def start(self) -> AckingProducer:
        bootstrap = (
            self._bootstrap.bootstrap() if isinstance(self._bootstrap, Cluster) else self._bootstrap
        )
        self.config["bootstrap.servers"] = bootstrap
        self._thread = threading.Thread(
            target=self._run, name=f"acking-producer-{self.topic}", daemon=True
        )
        self._thread.start()
        return self

    def wait_for_acks(self, count: int, timeout: float = 60.0) -> None:
        """Poll until ``count`` sends in all are acknowledged (fails early if the thread died)."""

        def enough() -> bool:
            if self._failure is not None:
                raise AssertionError(f"the producer thread failed: {self._failure!r}")
            return self.acked >= count

        try:
            wait_for(enough, timeout, f"{count} acks")
        except AssertionError as error:
            raise AssertionError(
                f"{error}: {self.acked} acked of {self.sent} sent; last errors {self.errors[-5:]}"
            ) from None

    def stop(self, timeout: float | None = None) -> tuple[list[Attempt], list[Ack]]:
        """Stop sending, wait for every outstanding delivery report (up to
        ``message.timeout.ms`` plus a margin) and return ``(attempts, acks)``, attempts in
        send order. A send with no report by then counts as indeterminate."""
        self._stopping.set()
        if timeout is None:
            timeout = self.config["message.timeout.ms"] / 1000 + 30
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise AssertionError(f"the producer thread did not finish within {timeout}s")
        if self._failure is not None:
            raise AssertionError(
                f"the producer thread failed: {self._failure!r}"
            ) from self._failure
        attempts = []
        for partition, value in self._order:
            outcome, error = self._outcomes.get(
                (partition, value), (INDETERMINATE, "NO_DELIVERY_REPORT")
            )
            attempts.append(Attempt(partition, value, outcome, error))
        return attempts, list(self._acks)

    # -- the thread (every client call and callback happens here) -------------------------------

    def _new_client(self):
        from confluent_kafka import Producer

        return Producer({**self.config, "error_cb": self._on_error})

    def _on_error(self, error) -> None:
        self.errors.append(f"{error.name()}: {error.str()}")
        if error.fatal():
            self.fatal_errors.append(f"{error.name()}: {error.str()}")
            self._fatal = True

    def _on_delivery(self, partition: int, value: bytes, error, message) -> None:
        outcome, name = classify_delivery(error, retries=self.client_retries)
        self._outcomes[partition, value] = (outcome, name)
        if outcome == ACKED:
            assert message.partition() == partition, (message.partition(), partition)
            offset = message.offset()
            self._acks.append(Ack(partition, offset if offset >= 0 else None, value))

    def _replace_client(self, client):
        """After a fatal error: collect the old client's reports, then start a new client."""
        client.flush(self.config["message.timeout.ms"] / 1000 + 5)
        self._fatal = False
        return self._new_client()

    def _run(self) -> None:
        try:
            self._send_loop()
        except BaseException as error:  # reported by stop() and wait_for_acks()
            self._failure = error

    def _send_loop(self) -> None:
        from confluent_kafka import KafkaException

        client = self._new_client()
        interval = 1 / self.rate if self.rate else 0.0
        due = time.monotonic()
        while not self._stopping.is_set() and (
            self.max_sends is None or self.sent < self.max_sends
        ):
            if self._fatal:
                client = self._replace_client(client)
            partition = self.partitions[self.sent % len(self.partitions)]
            value = make_value(partition, self._seq[partition], self.producer_name)
            try:
                client.produce(
                    self.topic,
                    value=value,
                    partition=partition,
                    on_delivery=lambda error, message, p=partition, v=value: self._on_delivery(
                        p, v, error, message
                    ),
                )
            except BufferError:
                client.poll(0.05)  # the local queue is full: serve reports, then try again
                continue
            except KafkaException as error:  # not queued, so not sent: not an attempt
                self.errors.append(f"produce: {error}")
                if error.args and error.args[0].fatal():
                    self._fatal = True
                client.poll(0.05)
                continue
            self._seq[partition] += 1
            self._order.append((partition, value))
            due = max(due + interval, time.monotonic() - 1.0)  # no long burst after a stall
            while (left := due - time.monotonic()) > 0:
                client.poll(left)  # serves delivery reports while pacing
            client.poll(0)
        client.flush(self.config["message.timeout.ms"] / 1000 + 10)


# -- the end of a run --------------------------------------------------------------------------


def read_all(
    cluster: Cluster,
    topic: str,
    *,
    high_watermarks: Mapping[int, int] | None = None,
    source: str = "leader",
    timeout: float = 60.0,
) -> list[Read]:
    """Every record of every partition from offset 0 to its high watermark (as given, or
    asked of the leaders now), read by a confluent-kafka consumer (no group: ``assign``) from
    the leaders. Records at or past the high watermark are not kept. On ``timeout`` it returns
    what it read (the check then reports what is missing)."""
    from confluent_kafka import Consumer, TopicPartition

    hws = dict(high_watermarks) if high_watermarks is not None else cluster.high_watermarks(topic)
    pending = {partition for partition, hw in hws.items() if hw > 0}
    reads: list[Read] = []
    if not pending:
        return reads
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap(),
            "group.id": f"tmq-read-all-{uuid.uuid4().hex}",  # required; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",  # offset 0 out of range must not be skipped over
            "check.crcs": True,
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, 0) for partition in sorted(pending)])
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=5000, timeout=0.5):
                if message.error() is not None:
                    raise AssertionError(f"read_all {topic}: {message.error()}")
                partition, offset = message.partition(), message.offset()
                if partition not in pending or offset >= hws[partition]:
                    continue
                reads.append(Read(partition, offset, message.value(), source))
                if offset >= hws[partition] - 1:
                    pending.discard(partition)
                    consumer.pause([TopicPartition(topic, partition)])
    finally:
        consumer.close()
    return reads


def final_check(
    cluster: Cluster,
    topic: str,
    attempts: Sequence[Attempt],
    acks: Sequence[Ack],
    *,
    partitions: Iterable[int] | None = None,
    converge: bool = True,
    timeout: float = 60.0,
) -> list[Violation]:
    """The end of a run: (with ``converge``) wait until every partition's ISR is all its
    replicas, take the high watermarks and log starts from the leaders, read everything,
    note the ISR, stop the brokers, read their logs from disk, and ``check`` it all.

    :returns: the violations (``[]``: every invariant held); pass them to
        ``invariants.format_violations`` for a report.
    """
    wanted = sorted(cluster.metadata(topic)) if partitions is None else sorted(partitions)
    isr: dict[int, tuple[int, ...]] = {}
    for partition in wanted:
        if converge:
            isr[partition] = cluster.wait_for_isr(topic, partition, timeout=timeout).isr
        else:
            leader = cluster.wait_for_leader(topic, partition, timeout=timeout)
            isr[partition] = cluster.metadata(topic, via=leader)[partition].isr
    hws = cluster.high_watermarks(topic, wanted)
    starts = cluster.log_start_offsets(topic, wanted)
    reads = read_all(cluster, topic, high_watermarks=hws, timeout=timeout)
    cluster.stop_brokers()
    logs = cluster.replica_logs(topic, wanted)
    return check(
        acks,
        attempts,
        reads,
        logs,
        hws,
        log_start_offsets=starts,
        isr=isr if converge else None,
    )
