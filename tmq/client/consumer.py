"""The consumer: assigned partitions, long-poll Fetch, offsets reset through ListOffsets.

A ``Consumer`` reads the partitions it is assigned (``assign``; no group membership). Each
partition has a position: set by ``seek``, or found with ListOffsets (the earliest or latest
offset, per ``auto_offset_reset``) when it has none or the broker answers OFFSET_OUT_OF_RANGE.
``poll`` returns buffered records at once, or sends a Fetch to each leader (at most one in flight
per broker; the broker holds it up to ``max_wait_ms`` until ``min_bytes`` are there) and waits
for records up to its timeout.

A Fetch answer holds whole RecordBatches from the batch containing the fetch offset, possibly
followed by a partial batch cut at the size limit: each complete batch is CRC-checked,
decompressed and decoded, records below the fetch offset are skipped, control batches
(transaction markers) are passed over, and the partial tail is fetched again next time. The
consumer reads with isolation level read_uncommitted.

``commit(offsets, group)`` and ``committed(group, partitions)`` store and read a group's offsets
with OffsetCommit (generation -1, empty member id: a "simple" commit, for consumers that assign
partitions themselves) and OffsetFetch, at the coordinator FindCoordinator names.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, NamedTuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode, ProtocolError
from tmq.protocol.records import Header, TimestampType, decode_batch, iter_batches

from .cluster import Cluster
from .errors import (
    STALE_METADATA_ERRORS,
    BrokerResponseError,
    ClientClosedError,
    KafkaError,
    KafkaProtocolError,
    NoOffsetForPartitionError,
)

__all__ = ["Consumer", "ConsumerRecord", "TopicPartition", "records_from_fetch"]

_RESET_TIMESTAMPS = {"earliest": -2, "latest": -1}
_READ_UNCOMMITTED = 0


class TopicPartition(NamedTuple):
    """A partition of a topic."""

    topic: str
    partition: int


class ConsumerRecord(NamedTuple):
    """One record read from a partition.

    :ivar timestamp: milliseconds: the record's CreateTime, or the batch's LogAppendTime when
        the broker stamped it.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]


def records_from_fetch(
    topic: str, partition: int, fetch_offset: int, data: bytes | memoryview
) -> tuple[list[ConsumerRecord], int]:
    """Decode the records of one partition of a Fetch answer.

    :param fetch_offset: the offset that was asked for; earlier records are skipped.
    :param data: the partition's ``records`` bytes: whole batches, perhaps then a partial one.
    :returns: the records at or after ``fetch_offset`` and the offset to fetch next (after the
        last complete batch; ``fetch_offset`` if there was none).
    :raises ProtocolError: a batch header, CRC or records section that does not decode.
    """
    records: list[ConsumerRecord] = []
    next_offset = fetch_offset
    for position, header in iter_batches(data):
        if header.last_offset < next_offset:
            continue
        if header.is_control:
            next_offset = header.last_offset + 1
            continue
        log_append = header.timestamp_type == TimestampType.LOG_APPEND_TIME
        if header.base_offset >= next_offset and not log_append:
            # The common case, every record wanted: decoded straight into ConsumerRecords.
            _, batch_records = decode_batch(
                data,
                position,
                base_offset=header.base_offset,
                base_timestamp=header.base_timestamp,
                prefix=(topic, partition),
                record_type=ConsumerRecord,
            )
            records += batch_records
            next_offset = header.last_offset + 1
            continue
        _, batch_records = decode_batch(data, position)
        for record in batch_records:
            offset = header.base_offset + record.offset_delta
            if offset < next_offset:
                continue
            timestamp = (
                header.max_timestamp
                if log_append
                else header.base_timestamp + record.timestamp_delta
            )
            records.append(
                ConsumerRecord(
                    topic, partition, offset, timestamp, record.key, record.value, record.headers
                )
            )
        next_offset = header.last_offset + 1
    return records, next_offset


class _Position:
    """What the consumer knows and is doing about one assigned partition."""

    __slots__ = (
        "blocked",
        "buffer",
        "fetch_offset",
        "fetching",
        "generation",
        "highwater",
        "reset",
        "resetting",
        "retry_at",
    )

    def __init__(self, reset: str) -> None:
        self.fetch_offset: int | None = None  # None: to be found with ListOffsets
        self.reset = reset  # the policy used when fetch_offset is None
        self.buffer: collections.deque[ConsumerRecord] = collections.deque()
        self.generation = 0  # bumped by seek: answers to older requests are dropped
        self.fetching = False
        self.resetting = False
        self.blocked = False  # an error was reported; nothing more until seek()
        self.retry_at = 0.0
        self.highwater: int | None = None


class Consumer:
    """Reads assigned partitions (see the module docstring).

    Not thread-safe: use it from the reactor thread (``tmq.client.sync`` wraps it for scripts).

    :param cluster: the shared ``Cluster`` (the consumer does not close it).
    :param auto_offset_reset: where a partition without a valid position starts:
        ``"earliest"``, ``"latest"``, or ``"none"`` (``poll`` fails with
        ``NoOffsetForPartitionError`` until ``seek``).
    :param max_wait_ms: how long the broker may hold a Fetch waiting for ``min_bytes``.
    :param min_bytes: the data a Fetch waits for before the broker answers.
    :param max_bytes: the most data one Fetch answer should carry.
    :param max_partition_bytes: the most data per partition in a Fetch answer (a first batch
        larger than that is still returned whole by brokers since Fetch v3).
    :param max_records: the most records one ``poll`` returns.
    :param prefetch_records: a partition is fetched again (by ``poll``) while fewer than this
        many of its records are buffered, so that the next answer is on its way while the
        buffered ones are consumed.
    :param retry_backoff_ms: the wait before retrying a partition, or a group request, after an
        error.
    :param api_timeout_ms: how long ``commit`` and ``committed`` keep retrying.
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        auto_offset_reset: str = "latest",
        max_wait_ms: int = 500,
        min_bytes: int = 1,
        max_bytes: int = 52_428_800,
        max_partition_bytes: int = 1_048_576,
        max_records: int = 500,
        prefetch_records: int = 10_000,
        retry_backoff_ms: float = 100,
        api_timeout_ms: int = 60_000,
    ):
        if auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError(
                f"auto_offset_reset must be earliest, latest or none, not {auto_offset_reset!r}"
            )
        self._cluster = cluster
        self._clock = cluster.reactor
        self._reset_policy = auto_offset_reset
        self._max_wait_ms = max_wait_ms
        self._min_bytes = min_bytes
        self._max_bytes = max_bytes
        self._max_partition_bytes = max_partition_bytes
        self._max_records = max_records
        self._prefetch_records = prefetch_records
        self._backoff_s = retry_backoff_ms / 1000
        self._api_timeout_s = api_timeout_ms / 1000
        self._positions: dict[TopicPartition, _Position] = {}
        self._order: list[TopicPartition] = []
        self._fetching_nodes: set[int] = set()
        self._waiters: list[Deferred] = []
        self._errors: list[KafkaError] = []
        self._timer: IDelayedCall | None = None
        self._refreshing = False
        self._refresh_after = 0.0
        self._closed = False

    # -- assignment and positions ----------------------------------------------------------

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Read exactly ``partitions`` from now on; partitions kept keep their positions."""
        wanted = [TopicPartition(*tp) for tp in partitions]
        self._positions = {
            tp: self._positions.get(tp) or _Position(self._reset_policy) for tp in wanted
        }
        self._order = list(dict.fromkeys(wanted))
        self._cluster.add_topics({tp.topic for tp in wanted})

    def assignment(self) -> list[TopicPartition]:
        """The assigned partitions, in the order given to ``assign``."""
        return list(self._positions)

    def seek(self, partition: tuple[str, int], offset: int) -> None:
        """Make ``offset`` the next record ``poll`` returns for ``partition``.

        :raises ValueError: the partition is not assigned, or the offset is negative.
        """
        if offset < 0:
            raise ValueError(f"offset {offset} is negative")
        self._restart(partition).fetch_offset = offset

    def seek_to_beginning(self, *partitions: tuple[str, int]) -> None:
        """Start ``partitions`` (all assigned ones by default) at their earliest offset."""
        for tp in partitions or self._order:
            self._restart(tp).reset = "earliest"

    def seek_to_end(self, *partitions: tuple[str, int]) -> None:
        """Start ``partitions`` (all assigned ones by default) at their end: new records only."""
        for tp in partitions or self._order:
            self._restart(tp).reset = "latest"

    def _assigned(self, partition: tuple[str, int]) -> _Position:
        position = self._positions.get(TopicPartition(*partition))
        if position is None:
            raise ValueError(f"{partition} is not assigned")
        return position

    def _restart(self, partition: tuple[str, int]) -> _Position:
        position = self._assigned(partition)
        position.fetch_offset = None
        position.reset = self._reset_policy
        position.buffer.clear()
        position.generation += 1
        position.blocked = False
        position.retry_at = 0.0
        return position

    def position(self, partition: tuple[str, int]) -> int | None:
        """The offset of the next record ``poll`` returns for ``partition`` (``None`` while
        it is still to be found).

        :raises ValueError: the partition is not assigned.
        """
        position = self._assigned(partition)
        return position.buffer[0].offset if position.buffer else position.fetch_offset

    def highwater(self, partition: tuple[str, int]) -> int | None:
        """The partition's high watermark from the last Fetch answer (for lag).

        :raises ValueError: the partition is not assigned.
        """
        return self._assigned(partition).highwater

    # -- polling ---------------------------------------------------------------------------

    def poll(self, timeout_ms: float = 1000) -> Deferred:
        """Records from the assigned partitions.

        :param timeout_ms: how long to wait when none are buffered.
        :returns: a Deferred firing with a list of up to ``max_records`` ``ConsumerRecord``s,
            in offset order per partition (empty after the timeout), or failing with the
            ``KafkaError`` that stopped a partition (e.g. ``NoOffsetForPartitionError``).
        """
        if self._closed:
            return fail(ClientClosedError("the consumer is closed"))
        if self._errors:
            return fail(self._errors.pop(0))
        records = self._take()
        self._fetch()
        if records or timeout_ms <= 0:
            return succeed(records)
        if self._errors:
            return fail(self._errors.pop(0))
        waiter: Deferred = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter.addTimeout(timeout_ms / 1000, self._clock, self._poll_timed_out)

    async def records(self, poll_timeout_ms: float = 1000) -> AsyncIterator[ConsumerRecord]:
        """Iterate over records as they arrive (``async for``), until ``close``.

        Run it in a coroutine driven by Twisted (``Deferred.fromCoroutine``).
        """
        while not self._closed:
            for record in await self.poll(poll_timeout_ms):
                if self._closed:
                    return
                yield record

    def close(self) -> None:
        """Stop fetching; a waiting ``poll`` fires with ``[]``; later calls fail."""
        self._closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback([])

    @staticmethod
    def _poll_timed_out(_result: Any, _timeout: float) -> list:
        return []

    def _take(self) -> list[ConsumerRecord]:
        taken: list[ConsumerRecord] = []
        for tp in self._order:
            buffer = self._positions[tp].buffer
            room = self._max_records - len(taken)
            if len(buffer) <= room:
                taken += buffer
                buffer.clear()
            else:
                taken += [buffer.popleft() for _ in range(room)]
        if self._order:
            self._order.append(self._order.pop(0))  # the next poll starts elsewhere
        return taken

    def _wake(self) -> None:
        while self._waiters and self._errors:
            self._waiters.pop(0).errback(self._errors.pop(0))
        while self._waiters:
            records = self._take()
            if not records:
                break
            self._waiters.pop(0).callback(records)

    # -- fetching --------------------------------------------------------------------------

    def _fetch(self) -> None:
        if self._closed:
            return
        now = self._clock.seconds()
        wake = float("inf")
        to_reset: dict[int, list[TopicPartition]] = collections.defaultdict(list)
        to_fetch: dict[int, list[TopicPartition]] = collections.defaultdict(list)
        leaderless = False
        for tp in self._order:
            position = self._positions[tp]
            if position.blocked or position.fetching or position.resetting:
                continue
            if len(position.buffer) >= self._prefetch_records:
                continue
            if position.retry_at > now:
                wake = min(wake, position.retry_at)
                continue
            if position.fetch_offset is None and position.reset == "none":
                position.blocked = True
                self._errors.append(
                    NoOffsetForPartitionError(f"{tp.topic}-{tp.partition} has no position")
                )
                continue
            leader = self._cluster.leader_for(*tp)
            if leader is None:
                leaderless = True
            elif position.fetch_offset is None:
                to_reset[leader].append(tp)
            elif leader not in self._fetching_nodes:
                to_fetch[leader].append(tp)
        if leaderless:
            if now >= self._refresh_after:
                self._refresh_metadata()
            else:
                wake = min(wake, self._refresh_after)
        for node, tps in to_reset.items():
            self._list_offsets(node, tps)
        for node, tps in to_fetch.items():
            self._send_fetch(node, tps)
        if wake != float("inf") and (self._timer is None or not self._timer.active()):
            self._timer = self._clock.callLater(wake - now, self._fetch)
        self._wake()

    def _send_fetch(self, node: int, tps: list[TopicPartition]) -> None:
        self._fetching_nodes.add(node)
        asked: dict[TopicPartition, tuple[int, int]] = {}
        topics: dict[str, list[dict]] = {}
        for tp in tps:
            position = self._positions[tp]
            position.fetching = True
            asked[tp] = (position.fetch_offset, position.generation)
            topics.setdefault(tp.topic, []).append(
                {
                    "partition": tp.partition,
                    "current_leader_epoch": -1,
                    "fetch_offset": position.fetch_offset,
                    "log_start_offset": -1,
                    "partition_max_bytes": self._max_partition_bytes,
                }
            )
        body = {
            "replica_id": -1,
            "max_wait_ms": self._max_wait_ms,
            "min_bytes": self._min_bytes,
            "max_bytes": self._max_bytes,
            "isolation_level": _READ_UNCOMMITTED,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [{"topic": name, "partitions": parts} for name, parts in topics.items()],
            "forgotten_topics_data": [],
            "rack_id": "",
        }
        timeout_ms = self._cluster.request_timeout_ms + self._max_wait_ms
        fetched = self._cluster.send(node, ApiKey.FETCH, body, timeout_ms=timeout_ms)
        fetched.addCallbacks(self._fetched, self._fetch_failed, (node, asked), None, (node, asked))

    def _fetched(self, response: Any, node: int, asked: dict) -> None:
        self._fetching_nodes.discard(node)
        top_error = response.error_code
        for topic in response.responses:
            for answer in topic.partitions:
                tp = TopicPartition(topic.topic, answer.partition_index)
                if tp not in asked:
                    continue
                offset, generation = asked.pop(tp)
                position = self._settle(tp, generation)
                if position is not None:
                    code = top_error or answer.error_code
                    self._partition_fetched(tp, position, offset, code, answer)
        for tp, (_, generation) in asked.items():
            self._settle(tp, generation)
        self._after_request()

    def _fetch_failed(self, failure: Failure, node: int, asked: dict) -> None:
        self._fetching_nodes.discard(node)
        for tp, (_, generation) in asked.items():
            position = self._settle(tp, generation)
            if position is not None:
                self._partition_failed(tp, position, failure)
        self._after_request()

    def _settle(self, tp: TopicPartition, generation: int) -> _Position | None:
        """Clear the in-flight mark of ``tp``; its position if the answer still applies."""
        position = self._positions.get(tp)
        if position is None:
            return None
        position.fetching = False
        return position if position.generation == generation else None

    def _partition_fetched(
        self, tp: TopicPartition, position: _Position, offset: int, code: int, answer: Any
    ) -> None:
        if code != ErrorCode.NONE:
            self._partition_error(tp, position, code, "Fetch")
            return
        position.highwater = answer.high_watermark
        if not answer.records:
            return
        try:
            records, next_offset = records_from_fetch(
                tp.topic, tp.partition, offset, answer.records
            )
        except ProtocolError as e:
            position.blocked = True
            self._errors.append(
                KafkaProtocolError(f"{tp.topic}-{tp.partition} at offset {offset}: {e}")
            )
            return
        position.buffer.extend(records)
        position.fetch_offset = next_offset

    def _partition_error(
        self, tp: TopicPartition, position: _Position, code: int, what: str
    ) -> None:
        if code == ErrorCode.OFFSET_OUT_OF_RANGE and position.fetch_offset is not None:
            if self._reset_policy == "none":
                position.blocked = True
                self._errors.append(
                    NoOffsetForPartitionError(
                        f"offset {position.fetch_offset} is out of range for "
                        f"{tp.topic}-{tp.partition}"
                    )
                )
            else:
                position.fetch_offset = None
                position.reset = self._reset_policy
            return
        error = BrokerResponseError(code, f"{what} {tp.topic}-{tp.partition}")
        if not error.retriable:
            position.blocked = True
            self._errors.append(error)
            return
        if code in STALE_METADATA_ERRORS:
            self._cluster.request_update()
            self._refresh_metadata()
        position.retry_at = self._clock.seconds() + self._backoff_s

    def _partition_failed(self, tp: TopicPartition, position: _Position, failure: Failure) -> None:
        if not (failure.check(KafkaError) and failure.value.retriable):
            position.blocked = True
            error = failure.value if failure.check(KafkaError) else KafkaError(str(failure.value))
            self._errors.append(error)
            return
        self._cluster.request_update()
        self._refresh_metadata()
        position.retry_at = self._clock.seconds() + self._backoff_s

    def _after_request(self) -> None:
        # Fetching goes on while a poll waits; otherwise the next poll resumes it.
        self._wake()
        if self._waiters:
            self._fetch()

    # -- offset reset ----------------------------------------------------------------------

    def _list_offsets(self, node: int, tps: list[TopicPartition]) -> None:
        asked: dict[TopicPartition, int] = {}
        topics: dict[str, list[dict]] = {}
        for tp in tps:
            position = self._positions[tp]
            position.resetting = True
            asked[tp] = position.generation
            topics.setdefault(tp.topic, []).append(
                {
                    "partition_index": tp.partition,
                    "current_leader_epoch": -1,
                    "timestamp": _RESET_TIMESTAMPS[position.reset],
                }
            )
        body = {
            "replica_id": -1,
            "isolation_level": _READ_UNCOMMITTED,
            "topics": [{"name": name, "partitions": parts} for name, parts in topics.items()],
        }
        listed = self._cluster.send(node, ApiKey.LIST_OFFSETS, body)
        listed.addCallbacks(self._offsets_listed, self._offsets_failed, (asked,), None, (asked,))

    def _offsets_listed(self, response: Any, asked: dict[TopicPartition, int]) -> None:
        for topic in response.topics:
            for answer in topic.partitions:
                tp = TopicPartition(topic.name, answer.partition_index)
                position = self._reset_done(tp, asked.pop(tp, None))
                if position is None:
                    continue
                if answer.error_code == ErrorCode.NONE:
                    position.fetch_offset = answer.offset
                else:
                    self._partition_error(tp, position, answer.error_code, "ListOffsets")
        for tp, generation in asked.items():
            self._reset_done(tp, generation)
        self._fetch()

    def _offsets_failed(self, failure: Failure, asked: dict[TopicPartition, int]) -> None:
        for tp, generation in asked.items():
            position = self._reset_done(tp, generation)
            if position is not None:
                self._partition_failed(tp, position, failure)
        self._fetch()

    def _reset_done(self, tp: TopicPartition, generation: int | None) -> _Position | None:
        position = self._positions.get(tp)
        if position is None or generation is None:
            return None
        position.resetting = False
        return position if position.generation == generation else None

    def _refresh_metadata(self) -> None:
        if self._refreshing:
            return
        self._refreshing = True
        self._cluster.refresh_metadata().addBoth(self._refreshed)

    def _refreshed(self, _result: Any) -> None:
        # Whether it failed or left a leader unknown, the next refresh waits a backoff.
        self._refreshing = False
        self._refresh_after = self._clock.seconds() + self._backoff_s
        self._fetch()

    # -- committed offsets -----------------------------------------------------------------

    def commit(self, offsets: Mapping[tuple[str, int], int], group: str) -> Deferred:
        """Store ``offsets`` (the next offset to read, per partition) for consumer group
        ``group``, as a simple commit (generation -1, no member id).

        :returns: a Deferred firing with ``None`` once the coordinator stored them, retrying
            coordinator moves and connection errors for up to ``api_timeout_ms``.
        """
        topics: dict[str, list[dict]] = {}
        for (topic, partition), offset in offsets.items():
            topics.setdefault(topic, []).append(
                {
                    "partition_index": partition,
                    "committed_offset": offset,
                    "committed_leader_epoch": -1,
                    "committed_metadata": "",
                }
            )
        body = {
            "group_id": group,
            "generation_id": -1,
            "member_id": "",
            "group_instance_id": None,
            "retention_time_ms": -1,
            "topics": [{"name": name, "partitions": parts} for name, parts in topics.items()],
        }
        return self._group_request(group, ApiKey.OFFSET_COMMIT, body, self._commit_answered)

    def committed(self, group: str, partitions: Iterable[tuple[str, int]]) -> Deferred:
        """The offsets group ``group`` committed for ``partitions``.

        :returns: a Deferred firing with ``{TopicPartition: offset or None}`` (``None``: nothing
            committed).
        """
        wanted = [TopicPartition(*tp) for tp in partitions]
        topics: dict[str, list[int]] = {}
        for tp in wanted:
            topics.setdefault(tp.topic, []).append(tp.partition)
        body = {
            "group_id": group,
            "topics": [
                {"name": name, "partition_indexes": indexes} for name, indexes in topics.items()
            ],
        }
        return self._group_request(group, ApiKey.OFFSET_FETCH, body, self._offsets_fetched)

    @staticmethod
    def _commit_answered(response: Any, group: str) -> None:
        for topic in response.topics:
            for answer in topic.partitions:
                if answer.error_code != ErrorCode.NONE:
                    raise BrokerResponseError(
                        answer.error_code,
                        f"OffsetCommit {topic.name}-{answer.partition_index} for group {group!r}",
                    )

    @staticmethod
    def _offsets_fetched(response: Any, group: str) -> dict[TopicPartition, int | None]:
        if response.error_code != ErrorCode.NONE:
            raise BrokerResponseError(response.error_code, f"OffsetFetch for group {group!r}")
        offsets: dict[TopicPartition, int | None] = {}
        for topic in response.topics:
            for answer in topic.partitions:
                tp = TopicPartition(topic.name, answer.partition_index)
                if answer.error_code != ErrorCode.NONE:
                    raise BrokerResponseError(
                        answer.error_code, f"OffsetFetch {tp.topic}-{tp.partition} for {group!r}"
                    )
                offsets[tp] = answer.committed_offset if answer.committed_offset >= 0 else None
        return offsets

    def _group_request(self, group: str, api_key: int, body: dict, interpret) -> Deferred:
        """``Cluster.on_coordinator`` with this consumer's timeout and backoff, given up once
        the consumer is closed; ``interpret(response, group)``."""
        return Deferred.fromCoroutine(
            self._cluster.on_coordinator(
                group,
                api_key,
                body,
                lambda response, _node: interpret(response, group),
                timeout_s=self._api_timeout_s,
                backoff_s=self._backoff_s,
                stopped=lambda: self._closed,
            )
        )
