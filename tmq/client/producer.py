"""The producer: records batched per partition, sent to each partition's leader.

``send()`` returns at once with a Deferred for the record's ``RecordMetadata``. Records wait in a
batch of their partition until it holds ``batch_bytes`` or is ``linger_ms`` old (or ``flush()``
is called), then each leader gets one Produce request carrying at most one batch per partition,
as Produce v3+ requires. A partition has at most ``max_in_flight_per_partition`` batches in
flight.

Delivery: a batch that fails with a retriable error (connection loss, timeout,
NOT_LEADER_OR_FOLLOWER, ...) is sent again after a backoff that doubles up to
``retry_backoff_max_ms``, with a metadata refresh first when the error says the leader moved;
its records fail only once ``delivery_timeout_ms`` has passed since they were sent, or at once on
an error that is not retriable.

Idempotence (acks=-1, the default): the producer gets a producer id (InitProducerId) and stamps
every batch with the next sequence numbers of its partition. A retried batch keeps its sequence
numbers, so a broker that already wrote it answers with the original offset instead of writing
it twice. Batches of a partition go on the wire in sequence order: a retry waits until every
batch before it is answered, and a batch answered OUT_OF_ORDER_SEQUENCE_NUMBER while an earlier
one is still unanswered is simply retried after it. When a batch fails for good, the broker
cannot have written the batches behind it (their sequence numbers would leave a gap), so those
are stamped again from the failed batch's sequence. When the broker no longer accepts the
sequence (OUT_OF_ORDER_SEQUENCE_NUMBER for the next expected batch, UNKNOWN_PRODUCER_ID), or a
batch's outcome is unknown when it fails, the producer asks for a new producer id and each
partition starts again from sequence 0.

acks=0: the broker sends no response; records resolve with offset -1 once written to the
connection.
"""

from __future__ import annotations

import bisect
import collections
import operator
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmq.protocol.apis import ApiKey
from tmq.protocol.compression import Codec
from tmq.protocol.errors import ErrorCode
from tmq.protocol.records import HEADER_SIZE

from ._batching import Batch, Joined, PartitionQueue, PendingRecord
from .cluster import Cluster, TopicInfo
from .errors import (
    STALE_METADATA_ERRORS,
    BrokerResponseError,
    ClientClosedError,
    KafkaError,
    UnsupportedVersionError,
)
from .partitioner import Partitioner

__all__ = ["BufferFullError", "Producer", "RecordMetadata"]

_log = Logger()

_ZSTD_MIN_PRODUCE_VERSION = 7
_MAX_ROUTES = 4096  # keys whose partition is remembered, per topic
_RECORD_OVERHEAD = 21  # Kafka's MAX_RECORD_OVERHEAD: varints and attributes of one record
_HEADER_OVERHEAD = 10  # the two varint lengths of a record header

#: Errors after which the broker will not take this producer id's next sequence.
_PRODUCER_ID_ERRORS = frozenset(
    {
        ErrorCode.UNKNOWN_PRODUCER_ID,
        ErrorCode.INVALID_PRODUCER_EPOCH,
        ErrorCode.INVALID_PRODUCER_ID_MAPPING,
    }
)


class BufferFullError(KafkaError):
    """``send`` refused a record: ``max_buffered_bytes`` are already waiting to be sent.

    Wait for some deliveries (or ``flush()``) and send again.
    """

    retriable = True


class RecordMetadata(NamedTuple):
    """Where a record was written (a named tuple: one is made per record).

    :ivar offset: the record's offset, -1 with acks=0 (no answer) or when the broker did not
        say (a duplicate reported as DUPLICATE_SEQUENCE_NUMBER).
    :ivar timestamp: the broker's LogAppendTime if the topic uses it, else the record's
        CreateTime, in milliseconds.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int


class Producer:
    """Sends records to Kafka topics (see the module docstring for delivery semantics).

    Not thread-safe: use it from the reactor thread (``tmq.client.sync`` wraps it for scripts).

    :param cluster: the shared ``Cluster`` (the producer does not close it).
    :param acks: 0 (no answer), 1 (the leader wrote it) or -1 (every in-sync replica has it).
    :param idempotent: stamp batches with producer id and sequence numbers; defaults to
        ``acks == -1`` and requires it.
    :param compression: the codec of every batch (ZSTD needs a broker with Produce v7+).
    :param linger_ms: how long a batch waits for more records before it is sent.
    :param batch_bytes: a batch this large (uncompressed estimate) is sent without lingering.
    :param max_request_bytes: a single record larger than this is refused.
    :param max_buffered_bytes: records not yet delivered may hold at most this much; ``send``
        fails with ``BufferFullError`` beyond it.
    :param ack_timeout_ms: the Produce request's ``timeout_ms``: how long the broker may wait
        for replicas (acks=-1) before answering REQUEST_TIMED_OUT.
    :param delivery_timeout_ms: how long after ``send`` a record may still be retried.
    :param retry_backoff_ms: first wait before a retry; doubles each time.
    :param retry_backoff_max_ms: the longest wait between retries.
    :param max_in_flight_per_partition: unanswered batches per partition (at most 5 with
        idempotence, as brokers keep the last 5 batches for deduplication).
    :param partitioner: picks partitions for records sent without one.
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        acks: int = -1,
        idempotent: bool | None = None,
        compression: Codec = Codec.NONE,
        linger_ms: float = 5,
        batch_bytes: int = 16_384,
        max_request_bytes: int = 1_048_576,
        max_buffered_bytes: int = 33_554_432,
        ack_timeout_ms: int = 30_000,
        delivery_timeout_ms: int = 120_000,
        retry_backoff_ms: float = 100,
        retry_backoff_max_ms: float = 1_000,
        max_in_flight_per_partition: int = 5,
        partitioner: Partitioner | None = None,
    ):
        if acks not in (-1, 0, 1):
            raise ValueError(f"acks must be -1, 0 or 1, not {acks!r}")
        if idempotent is None:
            idempotent = acks == -1
        if idempotent and acks != -1:
            raise ValueError("an idempotent producer needs acks=-1")
        if idempotent and not 1 <= max_in_flight_per_partition <= 5:
            raise ValueError("an idempotent producer allows 1 to 5 batches in flight")
        self._cluster = cluster
        self._clock = cluster.reactor
        self.acks = acks
        self.idempotent = idempotent
        self._codec = Codec(compression)
        self._linger_s = linger_ms / 1000
        self._batch_bytes = batch_bytes
        self._max_request_bytes = max_request_bytes
        self._max_buffered_bytes = max_buffered_bytes
        self._ack_timeout_ms = ack_timeout_ms
        self._delivery_timeout_s = delivery_timeout_ms / 1000
        self._backoff_s = retry_backoff_ms / 1000
        self._backoff_max_s = retry_backoff_max_ms / 1000
        self._max_in_flight = max_in_flight_per_partition
        self._partitioner = partitioner if partitioner is not None else Partitioner()

        self._partitions: dict[tuple[str, int], PartitionQueue] = {}
        self._routes: dict[str, tuple[TopicInfo, dict[bytes, PartitionQueue]]] = {}
        self._awaiting_topic: dict[str, list[PendingRecord]] = {}
        self._topic_attempts: collections.Counter[str] = collections.Counter()
        self._timers: dict[Any, IDelayedCall] = {}
        self._refreshing = False
        self._refresh_after = 0.0
        self._producer_id = -1
        self._producer_epoch = -1
        self._producer_id_attempts = 0
        self._asking_producer_id = False
        self._fatal: KafkaError | None = None
        self._closed = False
        self._buffered_bytes = 0
        self._next_index = 0
        self._unfinished = 0
        self._flushes: list[list] = []  # [target index, records left, Deferred]
        #: Records written so far (acks=0: sent), and records that failed for good.
        self.delivered_count = 0
        self.failed_count = 0
        #: The error of the last record that failed, ``None`` while none did.
        self.last_error: KafkaError | None = None
        self._space_waiters: list[tuple[int, Deferred]] = []  # (byte limit, Deferred)

    # -- public API ------------------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        """Estimated bytes of the records sent but not yet resolved."""
        return self._buffered_bytes

    @property
    def producer_id(self) -> int:
        """The current producer id (-1 before InitProducerId, or without idempotence)."""
        return self._producer_id

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Iterable[tuple[str, bytes | None]] = (),
        timestamp_ms: int | None = None,
    ) -> Deferred:
        """Queue a record for ``topic``.

        :param value: the record value (``None`` is a tombstone).
        :param key: the record key; it picks the partition when ``partition`` is ``None``.
        :param partition: the partition, or ``None`` to let the partitioner choose.
        :param headers: ``(key, value)`` pairs, the keys UTF-8 strings.
        :param timestamp_ms: the record's CreateTime; now by default.
        :returns: a Deferred firing with the record's ``RecordMetadata``, or failing with a
            ``KafkaError`` (``ClientClosedError`` after ``close``, ``BufferFullError``, the
            broker's error, or the last retriable error once the delivery timeout passed).
        """
        waiter = Deferred()
        try:
            self.produce(topic, value, key, partition, headers, timestamp_ms, waiter)
        except (KafkaError, TypeError) as e:
            return fail(e)
        return waiter

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Iterable[tuple[str, bytes | None]] = (),
        timestamp_ms: int | None = None,
        on_delivery: Callable[[KafkaError | None, RecordMetadata | None], object] | None = None,
    ) -> None:
        """Queue a record like ``send``, without a Deferred: the cheaper call for streams of
        records whose outcomes are counted rather than awaited.

        :param on_delivery: called once with ``(None, metadata)`` when the record is written,
            or ``(error, None)`` when it failed for good; ``None`` to ignore the outcome
            (``flush`` still waits for it).
        :raises ClientClosedError: the producer is closed.
        :raises BufferFullError: ``max_buffered_bytes`` are waiting; flush and retry.
        :raises BrokerResponseError: MESSAGE_TOO_LARGE for a record above
            ``max_request_bytes``, or the producer's fatal error.
        :raises TypeError: a key, value or header that is not bytes-like.
        """
        # ``send`` passes its Deferred as ``on_delivery``; ``_settle`` tells the two apart.
        if self._closed:
            raise ClientClosedError("the producer is closed")
        if self._fatal is not None:
            raise self._fatal
        # size: the record's estimated encoded size, for batch sizes and the buffer bound
        # (Kafka's estimate: the payload plus the most its varints and attributes can take).
        size = _RECORD_OVERHEAD
        if key is not None:
            if type(key) is not bytes:
                key = bytes(key)
            size += len(key)
        if value is not None:
            if type(value) is not bytes:
                value = bytes(value)
            size += len(value)
        if headers:
            headers = tuple((str(k), None if v is None else bytes(v)) for k, v in headers)
            size += sum(len(k) + len(v or b"") + _HEADER_OVERHEAD for k, v in headers)
        else:
            headers = ()
        now = self._clock.seconds()
        if timestamp_ms is None:
            timestamp_ms = int(now * 1000)
        if size + HEADER_SIZE > self._max_request_bytes:
            raise BrokerResponseError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"record of {size} bytes for {topic} (max_request_bytes {self._max_request_bytes})",
            )
        if self._buffered_bytes + size > self._max_buffered_bytes:
            raise BufferFullError(f"{self._buffered_bytes} bytes are waiting to be sent")
        index = self._next_index
        self._next_index = index + 1
        self._unfinished += 1
        self._buffered_bytes += size
        info = self._cluster.metadata.topics.get(topic)
        if topic in self._awaiting_topic or info is None or not info.partitions:
            record = PendingRecord(
                topic, partition, key, value, headers, timestamp_ms, index, now, on_delivery, size
            )
            self._await_topic(record)
            return
        if partition is None:
            routes = self._routes.get(topic)
            queue = routes[1].get(key) if routes is not None and routes[0] is info else None
            if queue is None:
                queue = self._route(topic, info, key)
        elif not 0 <= partition < info.partition_count:
            self._out_of_range(
                topic, partition, info.partition_count, timestamp_ms, index, on_delivery, size
            )
            return
        else:
            queue = self._partitions.get((topic, partition)) or self._queue(topic, partition)
        joined = queue.append(key, value, headers, timestamp_ms, index, now, now, on_delivery, size)
        if joined:  # Joined.OPEN: the drain scheduled when that batch was started still stands
            self._schedule_drain(now if joined == Joined.FULL else now + self._linger_s)

    def buffered_below(self, limit: int) -> Deferred:
        """Back-pressure for loops that produce faster than the brokers take: a Deferred that
        fires with ``None`` once at most ``limit`` bytes are buffered (at once if that is so
        already), and fails with ``ClientClosedError`` if the producer closes first."""
        if self._buffered_bytes <= limit:
            return succeed(None)
        waiter: Deferred = Deferred()
        self._space_waiters.append((limit, waiter))
        return waiter

    def flush(self) -> Deferred:
        """Send every queued record now, lingering no longer.

        :returns: a Deferred firing with ``None`` once every record sent before this call is
            resolved (delivered or failed: each ``send`` Deferred tells which).
        """
        if self._unfinished == 0:
            return succeed(None)
        waiter = [self._next_index, self._unfinished, Deferred()]
        self._flushes.append(waiter)
        self._schedule_drain(self._clock.seconds())
        return waiter[2]

    def close(self, timeout_ms: float | None = None) -> Deferred:
        """Stop taking records, deliver those queued, then stop.

        :param timeout_ms: after this long, records still undelivered fail with
            ``ClientClosedError``; by default close waits for every record (each bounded by the
            delivery timeout).
        :returns: a Deferred firing with ``None`` when nothing is left to do.
        """
        self._closed = True
        if self._space_waiters:
            self._wake_space_waiters()
        flushed = self.flush()
        if timeout_ms is not None and not flushed.called:
            self._set_timer("close", timeout_ms / 1000, self._abandon)
        flushed.addBoth(self._stopped)
        return flushed

    # -- accepting records -----------------------------------------------------------------

    def _await_topic(self, record: PendingRecord) -> None:
        waiting = self._awaiting_topic.setdefault(record.topic, [])
        waiting.append(record)
        if len(waiting) == 1:
            self._look_up_topic(record.topic)

    def _look_up_topic(self, topic: str) -> None:
        looked_up = self._cluster.topic(topic)
        looked_up.addCallbacks(self._topic_known, self._topic_unknown, errbackArgs=(topic,))

    def _topic_known(self, info) -> None:
        self._topic_attempts.pop(info.name, None)
        now = self._clock.seconds()
        for record in self._awaiting_topic.pop(info.name, []):
            self._add(record, info, now)

    def _topic_unknown(self, failure: Failure, topic: str) -> None:
        waiting = self._awaiting_topic.get(topic, [])
        now = self._clock.seconds()
        retriable = failure.check(KafkaError) and failure.value.retriable
        keep: list[PendingRecord] = []
        lost: list[PendingRecord] = []
        for record in waiting:
            alive = retriable and now < record.sent_at + self._delivery_timeout_s
            (keep if alive else lost).append(record)
        if lost:
            self._settle_failed(*_gather(lost, []), failure)
        if not keep:
            self._awaiting_topic.pop(topic, None)
            self._topic_attempts.pop(topic, None)
            return
        self._awaiting_topic[topic] = keep
        self._topic_attempts[topic] += 1
        self._cluster.request_update()
        delay = min(
            self._backoff(self._topic_attempts[topic]),
            keep[0].sent_at + self._delivery_timeout_s - now,
        )
        self._set_timer(("topic", topic), delay, self._look_up_topic, topic)

    def _add(self, record: PendingRecord, info: TopicInfo, now: float) -> None:
        """Queue a record that waited for its topic's metadata."""
        partition = record.partition
        if partition is None:
            queue = self._route(record.topic, info, record.key)
        elif not 0 <= partition < info.partition_count:
            self._out_of_range(
                record.topic,
                partition,
                info.partition_count,
                record.timestamp,
                record.index,
                record.waiter,
                record.size,
            )
            return
        else:
            queue = self._queue(record.topic, partition)
        joined = queue.append(
            record.key,
            record.value,
            record.headers,
            record.timestamp,
            record.index,
            now,
            record.sent_at,
            record.waiter,
            record.size,
        )
        if joined:
            self._schedule_drain(now if joined == Joined.FULL else now + self._linger_s)

    def _route(self, topic: str, info: TopicInfo, key: bytes | None) -> PartitionQueue:
        """The queue of the partition the partitioner picks for ``key`` in ``topic``.

        A key's partition depends only on the key and the partition count, so it is remembered
        in ``_routes``, where ``produce`` looks it up: per topic, the metadata it was computed
        with and up to ``_MAX_ROUTES`` keys (forgotten all at once past that, and when the
        metadata changes).
        """
        routes = self._routes.get(topic)
        if routes is None or routes[0] is not info or len(routes[1]) >= _MAX_ROUTES:
            routes = self._routes[topic] = (info, {})
        queue = self._queue(topic, self._partitioner.partition(key, info.partition_count))
        if key is not None:
            routes[1][key] = queue
        return queue

    def _out_of_range(self, topic, partition, partition_count, timestamp, index, waiter, size):
        error = BrokerResponseError(
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            f"partition {partition} of {topic} (it has {partition_count})",
        )
        failure = Failure(error)
        waiters = [(index, 0, timestamp, waiter)] if waiter is not None else []
        self._settle_failed(1, size, [index], waiters, failure)

    def _queue(self, topic: str, partition: int) -> PartitionQueue:
        queue = self._partitions.get((topic, partition))
        if queue is None:
            queue = self._partitions[(topic, partition)] = PartitionQueue(
                topic,
                partition,
                batch_bytes=self._batch_bytes,
                delivery_timeout_s=self._delivery_timeout_s,
            )
        return queue

    # -- draining batches into requests ----------------------------------------------------

    def _schedule_drain(self, when: float) -> None:
        if self._unfinished == 0 or self._fatal is not None:
            return
        timer = self._timers.get("drain")
        if timer is not None and timer.getTime() <= when:
            return
        self._set_timer("drain", when - self._clock.seconds(), self._drain)

    def _drain(self) -> None:
        if self.idempotent and self._producer_id < 0 and "producer_id" not in self._timers:
            self._ask_producer_id()
        now = self._clock.seconds()
        lingering = not self._flushes
        wake = float("inf")
        requests: dict[int, list[list[Batch]]] = collections.defaultdict(list)
        leaderless = False
        for queue in list(self._partitions.values()):
            sent = 0
            while queue.queue:
                batch = queue.queue[0]
                if now >= batch.deadline:
                    queue.queue.pop(0)
                    self._expire(queue, batch)
                    continue
                if batch.attempts:
                    ready_at = batch.retry_at
                elif batch.closed or not lingering or self._closed:
                    ready_at = now
                else:
                    ready_at = batch.created + self._linger_s
                if ready_at > now:
                    wake = min(wake, ready_at, batch.deadline)
                    break
                leader = self._cluster.leader_for(batch.topic, batch.partition)
                if leader is None:
                    leaderless = True
                    wake = min(wake, batch.deadline)
                    break
                if not queue.may_send(
                    batch,
                    max_in_flight=self._max_in_flight,
                    idempotent=self.idempotent,
                    producer_id=self._producer_id,
                    epoch=self._producer_epoch,
                ):
                    wake = min(wake, batch.deadline)
                    break
                queue.start(idempotent=self.idempotent, codec=self._codec)
                per_node = requests[leader]
                if len(per_node) <= sent:
                    per_node.append([])
                per_node[sent].append(batch)
                sent += 1
        if leaderless:
            if now >= self._refresh_after:
                self._refresh_metadata()
            else:
                wake = min(wake, self._refresh_after)
        if wake != float("inf"):
            self._schedule_drain(wake)
        for node, batch_lists in requests.items():
            for batches in batch_lists:
                self._send_request(node, batches)

    def _send_request(self, node: int, batches: list[Batch]) -> None:
        def body(version: int) -> dict:
            if self._codec == Codec.ZSTD and version < _ZSTD_MIN_PRODUCE_VERSION:
                raise UnsupportedVersionError(
                    f"zstd needs Produce v{_ZSTD_MIN_PRODUCE_VERSION}, broker {node} offers "
                    f"v{version}"
                )
            topics: dict[str, list[dict]] = {}
            for batch in batches:
                topics.setdefault(batch.topic, []).append(
                    {"index": batch.partition, "records": batch.encoded}
                )
            return {
                "transactional_id": None,
                "acks": self.acks,
                "timeout_ms": self._ack_timeout_ms,
                "topic_data": [
                    {"name": name, "partition_data": data} for name, data in topics.items()
                ],
            }

        sent = self._cluster.send(
            node,
            ApiKey.PRODUCE,
            body,
            expect_response=self.acks != 0,
            timeout_ms=self._ack_timeout_ms + self._cluster.request_timeout_ms,
        )
        sent.addCallbacks(self._answered, self._request_failed, (batches,), None, (batches,))

    # -- outcomes --------------------------------------------------------------------------

    def _answered(self, response: Any, batches: list[Batch]) -> None:
        if response is None:  # acks=0
            for batch in batches:
                self._delivered(batch, -1, -1)
            self._schedule_drain(self._clock.seconds())
            return
        answers = {
            (topic.name, p.index): p
            for topic in response.responses
            for p in topic.partition_responses
        }
        for batch in batches:
            answer = answers.get((batch.topic, batch.partition))
            if answer is None:
                error: KafkaError = BrokerResponseError(
                    ErrorCode.UNKNOWN_SERVER_ERROR,
                    f"Produce to {batch.topic}-{batch.partition}: no answer for the partition",
                )
                self._failed(batch, error)
            elif answer.error_code in (ErrorCode.NONE, ErrorCode.DUPLICATE_SEQUENCE_NUMBER):
                self._delivered(batch, answer.base_offset, answer.log_append_time_ms)
            else:
                error = BrokerResponseError(
                    answer.error_code,
                    f"Produce to {batch.topic}-{batch.partition}",
                    answer.error_message,
                )
                self._failed(batch, error)
        self._schedule_drain(self._clock.seconds())

    def _request_failed(self, failure: Failure, batches: list[Batch]) -> None:
        error = failure.value if failure.check(KafkaError) else KafkaError(str(failure.value))
        if error.retriable:
            self._cluster.request_update()
            self._refresh_metadata()
        for batch in batches:
            self._failed(batch, error)
        self._schedule_drain(self._clock.seconds())

    def _delivered(self, batch: Batch, base_offset: int, log_append_time: int) -> None:
        queue = self._partitions[(batch.topic, batch.partition)]
        if not queue.finish(batch):
            return  # abandoned by close(timeout_ms)
        if batch.rewound:
            # Written although a batch before it was not: the broker's sequence is not ours.
            self._new_producer_id()
        else:
            queue.acknowledge(batch)
        topic, partition = batch.topic, batch.partition

        def metadata(position: int, timestamp: int) -> RecordMetadata:
            offset = base_offset + position if base_offset >= 0 else -1
            if log_append_time >= 0:
                timestamp = log_append_time
            return RecordMetadata(topic, partition, offset, timestamp)

        self.delivered_count += batch.count
        self._settle(batch.count, batch.record_bytes, batch.indices, batch.waiters, metadata)

    def _failed(self, batch: Batch, error: KafkaError) -> None:
        queue = self._partitions[(batch.topic, batch.partition)]
        if not queue.finish(batch):
            return  # abandoned by close(timeout_ms)
        now = self._clock.seconds()
        code = getattr(error, "error_code", None)
        if code in STALE_METADATA_ERRORS:
            self._cluster.request_update()
            self._refresh_metadata()
        if batch.rewound:
            queue.requeue(batch, now)
        elif code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER and batch.stamp is not None:
            if queue.earlier_unanswered(batch):
                queue.requeue(batch, now)  # it follows the earlier batch when that is retried
            else:
                self._give_up(queue, batch, error, producer_id_lost=True)
        elif code in _PRODUCER_ID_ERRORS:
            self._give_up(queue, batch, error, producer_id_lost=True)
        elif error.retriable and now < batch.deadline:
            batch.retry_at = now + self._backoff(batch.attempts)
            queue.requeue(batch, now)
        else:
            # Refused for good: the broker holds none of it. Retries spent: outcome unknown.
            self._give_up(queue, batch, error, producer_id_lost=error.retriable)

    def _give_up(
        self, queue: PartitionQueue, batch: Batch, error: KafkaError, *, producer_id_lost: bool
    ) -> None:
        _log.info(
            "giving up on {count} records for {topic}-{partition}: {error}",
            count=batch.count,
            topic=batch.topic,
            partition=batch.partition,
            error=error,
        )
        if batch.stamp is not None:
            queue.rewind(batch)
            if producer_id_lost:
                self._new_producer_id()
        failure = Failure(error)
        self._settle_failed(*_gather([], [batch]), failure)

    def _expire(self, queue: PartitionQueue, batch: Batch) -> None:
        error = BrokerResponseError(
            ErrorCode.REQUEST_TIMED_OUT,
            f"{batch.count} records for {batch.topic}-{batch.partition} not delivered "
            f"within the delivery timeout",
        )
        # A batch sent before may have been written: its sequence stream is in doubt.
        self._give_up(queue, batch, error, producer_id_lost=batch.stamp is not None)

    # -- producer id and metadata ----------------------------------------------------------

    def _new_producer_id(self) -> None:
        self._producer_id = -1
        self._producer_epoch = -1

    def _ask_producer_id(self) -> None:
        if self._asking_producer_id or self._fatal is not None:
            return
        self._asking_producer_id = True
        self._timers.pop("producer_id", None)
        asked = self._cluster.send_any(
            ApiKey.INIT_PRODUCER_ID, {"transactional_id": None, "transaction_timeout_ms": 60_000}
        )
        asked.addCallbacks(self._producer_id_answered, self._producer_id_failed)

    def _producer_id_answered(self, response: Any) -> None:
        if response.error_code != ErrorCode.NONE:
            self._producer_id_failed(
                Failure(BrokerResponseError(response.error_code, "InitProducerId"))
            )
            return
        self._asking_producer_id = False
        self._producer_id_attempts = 0
        self._producer_id = response.producer_id
        self._producer_epoch = response.producer_epoch
        self._schedule_drain(self._clock.seconds())

    def _producer_id_failed(self, failure: Failure) -> None:
        self._asking_producer_id = False
        if not (failure.check(KafkaError) and failure.value.retriable):
            error = failure.value if failure.check(KafkaError) else KafkaError(str(failure.value))
            self._fatal = KafkaError(f"idempotent producer cannot get a producer id: {error}")
            _log.error("{error}", error=self._fatal)
            self._fail_everything(self._fatal)
            return
        self._producer_id_attempts += 1
        self._set_timer(
            "producer_id", self._backoff(self._producer_id_attempts), self._retry_producer_id
        )

    def _retry_producer_id(self) -> None:
        self._schedule_drain(self._clock.seconds())

    def _refresh_metadata(self) -> None:
        if self._refreshing:
            return
        self._refreshing = True
        refreshed = self._cluster.refresh_metadata()
        refreshed.addBoth(self._refreshed)

    def _refreshed(self, _result: Any) -> None:
        # Whether it failed or left a leader unknown, the next refresh waits a backoff.
        self._refreshing = False
        self._refresh_after = self._clock.seconds() + self._backoff_s
        self._schedule_drain(self._clock.seconds())

    # -- bookkeeping -----------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return min(self._backoff_s * 2 ** max(attempt - 1, 0), self._backoff_max_s)

    def _set_timer(self, name: Any, delay: float, function, *args) -> None:
        def fire() -> None:
            self._timers.pop(name, None)
            function(*args)

        previous = self._timers.pop(name, None)
        if previous is not None:
            previous.cancel()
        self._timers[name] = self._clock.callLater(max(delay, 0), fire)

    def _settle_failed(self, count, size, indices, waiters, failure: Failure) -> None:
        self.failed_count += count
        self.last_error = failure.value
        self._settle(count, size, indices, waiters, lambda *_: failure)

    def _settle(
        self,
        count: int,
        size: int,
        indices: list[int],
        waiters: list[tuple[int, int, int, Any]],
        outcome: Callable[[int, int], RecordMetadata | Failure],
    ) -> None:
        """Resolve ``count`` records holding ``size`` buffered bytes, sent with ``indices``
        (ascending): tell each of ``waiters`` (``(index, position, timestamp, waiter)``, in
        send order) ``outcome(position, timestamp)``, then fire the flushes that were waiting
        for these records."""
        self._unfinished -= count
        self._buffered_bytes -= size
        done = []
        for flush in self._flushes:
            flush[1] -= bisect.bisect_left(indices, flush[0])
            if flush[1] == 0:
                done.append(flush)
        for flush in done:
            self._flushes.remove(flush)
        for _index, position, timestamp, waiter in waiters:
            result = outcome(position, timestamp)
            if type(waiter) is Deferred or isinstance(waiter, Deferred):
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)
            elif isinstance(result, Failure):
                waiter(result.value, None)
            else:
                waiter(None, result)
        for flush in done:
            flush[2].callback(None)
        if self._space_waiters:
            self._wake_space_waiters()

    def _wake_space_waiters(self) -> None:
        waiting, self._space_waiters = self._space_waiters, []
        for limit, waiter in waiting:
            if self._buffered_bytes <= limit:
                waiter.callback(None)
            elif self._closed:
                waiter.errback(ClientClosedError("the producer closed"))
            else:
                self._space_waiters.append((limit, waiter))

    def _fail_everything(self, error: KafkaError) -> None:
        failure = Failure(error)
        records = [record for waiting in self._awaiting_topic.values() for record in waiting]
        self._awaiting_topic.clear()
        batches = [batch for queue in self._partitions.values() for batch in queue.drop_all()]
        self._settle_failed(*_gather(records, batches), failure)

    def _abandon(self) -> None:
        self._fail_everything(ClientClosedError("the producer closed before delivering these"))

    def _stopped(self, result: Any) -> Any:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        return result


def _gather(records: list[PendingRecord], batches: list[Batch]) -> tuple:
    """The ``_settle`` arguments (but the outcome) for ``records`` and ``batches`` together."""
    indices = [record.index for record in records]
    waiters = [(r.index, 0, r.timestamp, r.waiter) for r in records if r.waiter is not None]
    size = sum(record.size for record in records)
    count = len(records)
    for batch in batches:
        indices.extend(batch.indices)
        waiters.extend(batch.waiters)
        size += batch.record_bytes
        count += batch.count
    indices.sort()
    waiters.sort(key=operator.itemgetter(0))
    return count, size, indices, waiters
