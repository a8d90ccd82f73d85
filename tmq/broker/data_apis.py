"""Handlers of the data APIs: Produce, Fetch, ListOffsets, OffsetForLeaderEpoch.

Each takes the ``Broker``, the request header and the decoded request, and returns the
response as a dict (or a Deferred of one; ``None`` for acks=0). Per-partition problems are
answered with Kafka error codes, never raised.
"""

from __future__ import annotations

from twisted.internet import defer

from tmq.protocol.errors import ErrorCode
from tmq.protocol.headers import RequestHeader
from tmq.storage.config import FlushPolicy
from tmq.storage.errors import LogError

from .broker import Broker
from .dispatch import RequestRefused
from .partition import AppendOutcome, Partition

__all__ = ["fetch", "list_offsets", "offset_for_leader_epoch", "produce"]

_LATEST = -1
_EARLIEST = -2
_DEBUGGING_REPLICA_ID = -2  # ListOffsets from a tool: any replica answers, with its LEO


def _deferred_from_future(clock, future) -> defer.Deferred:
    """A Deferred fired on the reactor thread when a ``concurrent.futures.Future`` is done."""
    result = defer.Deferred()

    def fire(done):
        error = done.exception()
        if error is None:
            result.callback(done.result())
        else:
            result.errback(error)

    if future.done():
        fire(future)
    else:
        future.add_done_callback(lambda done: clock.callFromThread(fire, done))
    return result


# -- Produce ------------------------------------------------------------------------------------


def produce(broker: Broker, header: RequestHeader, request: dict):
    """Append each partition's batch; answer after the durability the acks ask for.

    acks=0: no response, and a failed append closes the connection (the producer then
    refreshes its metadata). acks=1: after the leader's append, fsynced first under
    ``flush.policy=always``. acks=-1 (all): refused with NOT_ENOUGH_REPLICAS while the ISR is
    below ``min.insync.replicas`` (nothing is written); otherwise answered once the high
    watermark passes the batch (and the leader's copy is durable): NONE, or
    NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below min.insync meanwhile,
    NOT_LEADER_OR_FOLLOWER when this broker stopped leading, REQUEST_TIMED_OUT after
    ``timeout_ms`` (written, not known to be committed).
    """
    version = header.api_version
    acks = request["acks"]
    if acks not in (0, 1, -1):
        return _produce_response(request, lambda *_: ErrorCode.INVALID_REQUIRED_ACKS)
    if version < 3:
        return _produce_response(request, lambda *_: ErrorCode.UNSUPPORTED_VERSION)
    if request["transactional_id"] is not None:
        refused = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        return _produce_response(request, lambda *_: refused)
    outcomes: dict[tuple[str, int], AppendOutcome] = {}
    waits = []
    replicated = []
    for topic in request["topic_data"]:
        name = topic["name"]
        for data in topic["partition_data"]:
            key = (name, data["index"])
            partition = broker.partitions.get(key)
            if partition is None:
                if name not in broker.topics:
                    broker.maybe_auto_create(name)
                outcomes[key] = AppendOutcome(broker.not_led_error(*key))
                continue
            if data["records"] is None:
                outcomes[key] = AppendOutcome(ErrorCode.INVALID_RECORD, message="null records")
                continue
            if acks == -1 and not partition.replication.enough_replicas:
                outcomes[key] = AppendOutcome(
                    ErrorCode.NOT_ENOUGH_REPLICAS,
                    message=f"in-sync replicas {list(partition.isr)}, "
                    f"min.insync.replicas {partition.replication.min_insync}",
                )
                continue
            outcome = partition.append(data["records"])
            outcomes[key] = outcome
            if outcome.error != ErrorCode.NONE:
                continue
            if not outcome.duplicate:
                count = outcome.last_offset - outcome.base_offset + 1
                broker.metrics.appended(name, len(data["records"]), count)
            if acks == 0:
                continue
            if _waits_for_fsync(partition):
                waits.append((key, partition.log.durable(outcome.last_offset)))
            if acks == -1:
                replicated.append((key, partition, outcome))
    if acks == 0:
        if any(o.error != ErrorCode.NONE for o in outcomes.values()):
            raise RequestRefused("acks=0 produce failed: closing so the producer refreshes")
        return None

    def respond(_=None):
        return _produce_response(
            request,
            lambda name, index: outcomes[name, index].error,
            outcomes,
            broker,
        )

    if not waits and not replicated:
        return respond()
    durable = [_deferred_from_future(broker.clock, future) for _, future in waits]

    def storage_failed(failure, key):
        outcomes[key] = AppendOutcome(ErrorCode.KAFKA_STORAGE_ERROR, message=str(failure.value))

    for (key, _), wait in zip(waits, durable, strict=True):
        wait.addErrback(storage_failed, key)
    timeout_s = max(request["timeout_ms"], 0) / 1000
    for key, partition, outcome in replicated:
        durable.append(_committed(broker, key, partition, outcome, timeout_s, outcomes))
    return defer.gatherResults(durable).addCallback(respond)


def _committed(broker: Broker, key, partition: Partition, outcome: AppendOutcome,
               timeout_s: float, outcomes: dict) -> defer.Deferred:  # fmt: skip
    """Wait until the high watermark passes ``outcome`` (acks=all), then set its result."""

    def check() -> bool:
        return broker.partitions.get(key) is not partition or (
            partition.high_watermark > outcome.last_offset
        )

    def complete() -> None:
        if broker.partitions.get(key) is not partition or not partition.lease_valid():
            error = ErrorCode.NOT_LEADER_OR_FOLLOWER
        elif partition.high_watermark <= outcome.last_offset:
            error = ErrorCode.REQUEST_TIMED_OUT
        elif len(partition.isr) < partition.replication.min_insync:
            error = ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        else:
            return
        if outcomes[key].error == ErrorCode.NONE:
            outcomes[key] = AppendOutcome(error, message="written, not known to be committed")

    if check():
        complete()
        return defer.succeed(None)
    return broker.purgatory.delay([key], check, complete, timeout_s)


def _waits_for_fsync(partition: Partition) -> bool:
    return partition.log.config.flush_policy is FlushPolicy.ALWAYS


def _produce_response(request: dict, error_of, outcomes=None, broker=None) -> dict:
    responses = []
    for topic in request["topic_data"]:
        name = topic["name"]
        partitions = []
        for data in topic["partition_data"]:
            index = data["index"]
            error = error_of(name, index)
            outcome = outcomes.get((name, index)) if outcomes else None
            partition = broker.partitions.get((name, index)) if broker else None
            partitions.append(
                {
                    "index": index,
                    "error_code": error,
                    "base_offset": outcome.base_offset if outcome and not error else -1,
                    "log_start_offset": partition.log_start_offset if partition else -1,
                    "error_message": outcome.message if outcome and error else None,
                }
            )
        responses.append({"name": name, "partition_responses": partitions})
    return {"responses": responses}


# -- Fetch --------------------------------------------------------------------------------------


def fetch(broker: Broker, header: RequestHeader, request: dict):
    """Read up to the high watermark; wait (``max_wait_ms``) for ``min_bytes`` if needed.

    Consumers only (replica_id -1). No fetch sessions: session id 0, full responses. The
    first batch of the first partition with data is returned even above ``max_bytes``.
    """
    if request["replica_id"] >= 0:
        return _fetch_error(request, ErrorCode.NOT_LEADER_OR_FOLLOWER)
    response, size = _fetch_now(broker, request)
    if size >= request["min_bytes"] or request["max_wait_ms"] <= 0 or _has_errors(response):
        return _served(broker, response)
    keys = [
        (topic["topic"], partition["partition"])
        for topic in request["topics"]
        for partition in topic["partitions"]
    ]
    enough = request["min_bytes"]
    return broker.purgatory.delay(
        keys,
        check=lambda: _available_bytes(broker, request, enough) >= enough,
        complete=lambda: _served(broker, _fetch_now(broker, request)[0]),
        timeout_s=request["max_wait_ms"] / 1000,
    )


def _served(broker: Broker, response: dict) -> dict:
    """Count the record bytes of each topic in ``response`` (``bytes_out``); return it."""
    for topic in response["responses"]:
        size = sum(len(p.get("records") or b"") for p in topic["partitions"])
        if size:
            broker.metrics.fetched(topic["topic"], size)
    return response


def _has_errors(response: dict) -> bool:
    return any(
        p["error_code"] != ErrorCode.NONE for t in response["responses"] for p in t["partitions"]
    )


def _fetch_error(request: dict, error: ErrorCode) -> dict:
    return {
        "responses": [
            {
                "topic": topic["topic"],
                "partitions": [
                    {"partition_index": p["partition"], "error_code": error, "high_watermark": -1}
                    for p in topic["partitions"]
                ],
            }
            for topic in request["topics"]
        ]
    }


def _available_bytes(broker: Broker, request: dict, enough: int) -> int:
    """Bytes a fetch could return now, counted up to ``enough``."""
    total = 0
    for topic in request["topics"]:
        for wanted in topic["partitions"]:
            partition = broker.partitions.get((topic["topic"], wanted["partition"]))
            if partition is None or wanted["fetch_offset"] >= partition.high_watermark:
                continue
            try:
                read = partition.log.read(
                    wanted["fetch_offset"], enough - total, partition.high_watermark
                )
            except LogError:
                return enough  # answer now: the error is part of the response
            total += read.size if read is not None else 0
            if total >= enough:
                break
    return total


def _fetch_now(broker: Broker, request: dict) -> tuple[dict, int]:
    budget = request["max_bytes"]
    total = 0
    responses = []
    for topic in request["topics"]:
        name = topic["topic"]
        partitions = []
        for wanted in topic["partitions"]:
            entry, records = _fetch_partition(broker, name, wanted, budget, total == 0)
            if records is not None:
                total += len(records)
                budget -= len(records)
            partitions.append(entry)
        responses.append({"topic": name, "partitions": partitions})
    return {"responses": responses}, total


def _fetch_partition(broker: Broker, name: str, wanted: dict, budget: int, first: bool):
    index = wanted["partition"]
    entry = {"partition_index": index, "error_code": ErrorCode.NONE, "high_watermark": -1}
    partition = broker.partitions.get((name, index))
    if partition is None:
        entry["error_code"] = broker.not_led_error(name, index)
        return entry, None
    error = partition.check_epoch(wanted["current_leader_epoch"])
    high_watermark = partition.high_watermark
    entry.update(
        high_watermark=high_watermark,
        last_stable_offset=high_watermark,
        log_start_offset=partition.log_start_offset,
    )
    if error != ErrorCode.NONE:
        entry["error_code"] = error
        return entry, None
    offset = wanted["fetch_offset"]
    limit = wanted["partition_max_bytes"]
    if not first:
        limit = min(limit, budget)
    if limit <= 0 and not first:
        return entry, None
    try:
        if offset > high_watermark and offset <= partition.log.log_end_offset:
            return entry, None  # past what consumers may see: nothing yet, not an error
        read = partition.log.read(offset, max(limit, 1), high_watermark)
    except LogError as error:
        entry["error_code"] = error.error_code
        return entry, None
    if read is None:
        entry["records"] = b""
        return entry, None
    records = read.read()
    entry["records"] = records
    return entry, records


# -- ListOffsets --------------------------------------------------------------------------------


def list_offsets(broker: Broker, header: RequestHeader, request: dict) -> dict:
    """Earliest (-2), latest (-1) or the first offset at a timestamp, per partition.

    ``replica_id`` -1 (consumers): asked of the leader only, KIP-320 fenced by
    ``current_leader_epoch``; latest is the high watermark and a timestamp finds only offsets
    below it. ``replica_id`` -2 (Kafka's DEBUGGING_REPLICA_ID, used by ``tmq topics
    describe``): any replica answers, leader or follower, without the epoch check or the
    lease check; latest is that replica's log end offset and a timestamp finds offsets below
    it. A partition this broker does not hold in the asked role is answered
    NOT_LEADER_OR_FOLLOWER (UNKNOWN_TOPIC_OR_PARTITION when it does not exist).
    """
    replica_read = request["replica_id"] == _DEBUGGING_REPLICA_ID
    topics = []
    for topic in request["topics"]:
        name = topic["name"]
        partitions = []
        for wanted in topic["partitions"]:
            if replica_read:
                partitions.append(_list_replica_offset(broker, name, wanted))
            else:
                partitions.append(_list_offset(broker, name, wanted))
        topics.append({"name": name, "partitions": partitions})
    return {"topics": topics}


def _list_offset(broker: Broker, name: str, wanted: dict) -> dict:
    """A consumer's ListOffsets entry: the leader's view, bounded by the high watermark."""
    index = wanted["partition_index"]
    entry = {"partition_index": index, "error_code": ErrorCode.NONE}
    partition = broker.partitions.get((name, index))
    if partition is None:
        entry["error_code"] = broker.not_led_error(name, index)
        return entry
    error = partition.check_epoch(wanted["current_leader_epoch"])
    if error != ErrorCode.NONE:
        entry["error_code"] = error
        return entry
    if wanted["timestamp"] == _LATEST:
        entry.update(offset=partition.high_watermark, leader_epoch=partition.leader_epoch)
        return entry
    return _offset_in_log(entry, partition.log, wanted["timestamp"], partition.high_watermark)


def _list_replica_offset(broker: Broker, name: str, wanted: dict) -> dict:
    """A debugging ListOffsets entry (replica_id -2): this replica's own log, whether it leads
    or follows, bounded by its log end offset."""
    index = wanted["partition_index"]
    entry = {"partition_index": index, "error_code": ErrorCode.NONE}
    replica = broker.partitions.get((name, index))
    if replica is None:
        replica = broker.followers.get((name, index))
    if replica is None:
        entry["error_code"] = broker.not_led_error(name, index)
        return entry
    end = replica.log.log_end_offset
    if wanted["timestamp"] == _LATEST:
        entry.update(offset=end, leader_epoch=replica.leader_epoch)
        return entry
    return _offset_in_log(entry, replica.log, wanted["timestamp"], end)


def _offset_in_log(entry: dict, log, timestamp: int, limit: int) -> dict:
    """Complete ``entry`` with the log start (EARLIEST) or the first offset stamped at or
    after ``timestamp`` that is below ``limit`` (none found: the response's default -1)."""
    if timestamp == _EARLIEST:
        offset = log.log_start_offset
        entry.update(offset=offset, leader_epoch=log.epochs.epoch_at(offset))
        return entry
    try:
        found = log.offset_for_timestamp(timestamp)
    except LogError as error:
        entry["error_code"] = error.error_code
        return entry
    if found is not None and found[0] < limit:
        offset, stamp = found
        entry.update(offset=offset, timestamp=stamp, leader_epoch=log.epochs.epoch_at(offset))
    return entry


# -- OffsetForLeaderEpoch -----------------------------------------------------------------------


def offset_for_leader_epoch(broker: Broker, header: RequestHeader, request: dict) -> dict:
    """The end offset of a leader epoch on this replica (KIP-101/279), with KIP-320 fencing."""
    topics = []
    for topic in request["topics"]:
        name = topic["topic"]
        partitions = []
        for wanted in topic["partitions"]:
            index = wanted["partition"]
            entry = {"partition": index, "error_code": ErrorCode.NONE}
            partition = broker.partitions.get((name, index))
            if partition is None:
                entry["error_code"] = broker.not_led_error(name, index)
            elif (error := partition.check_epoch(wanted["current_leader_epoch"])) != 0:
                entry["error_code"] = error
            else:
                epoch, end = partition.log.epochs.end_offset_for(
                    wanted["leader_epoch"], partition.log.log_end_offset
                )
                entry.update(leader_epoch=epoch, end_offset=end)
            partitions.append(entry)
        topics.append({"topic": name, "partitions": partitions})
    return {"topics": topics}
