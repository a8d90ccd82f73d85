"""The replication stream between brokers (DESIGN §4): internal APIs, keys 1000-1002.

They travel on the Kafka framing with request header v1, on connections a follower broker
opens to a leader broker; client connections refuse them. Version 0 only.

* **ReplicaSubscribe** (1000), follower -> leader, answered: the follower names itself (its
  id and the ``broker_epoch`` of its registration), the bytes of pushed batches it accepts
  unacknowledged (``window_bytes``), and per partition where it stands: the leader epoch it
  believes current, its fetch offset (its log end offset) and the epoch of its last batch.
  The answer says per partition whether the leader accepts it (an error code such as
  NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH otherwise) and whether the follower's log
  ``diverging`` from the leader's; if so, OffsetForLeaderEpoch-style (KIP-279), the leader's
  largest epoch at or below ``last_fetched_epoch`` and that epoch's end offset in the
  leader's log (-1 and -1 when the leader knows no such epoch): the follower truncates by
  them (``tmq.replication.follower.plan_truncation``) and subscribes the partition again.
  Once a partition's answer has no divergence, the leader pushes from ``fetch_offset``.
* **ReplicaPush** (1001), leader -> follower, no answer: whole batches of one partition
  starting at the follower's log end offset, as the leader stored them (offsets and epochs
  stamped), or none (a high watermark update); with the leader's epoch, high watermark and log
  start offset.
* **ReplicaAck** (1002), follower -> leader, no answer: per partition, the follower's log
  end offset once it has appended (and flushed, per its policy) what was pushed; it frees that
  much of the window and is the follower's report for the high watermark and the ISR.
"""

from __future__ import annotations

from ..schema import BOOL, INT16, INT32, INT64, RECORDS, STRING, Array, Field, Message

__all__ = [
    "ReplicaAck",
    "ReplicaPush",
    "ReplicaSubscribeRequest",
    "ReplicaSubscribeResponse",
]

ReplicaSubscribeRequest = Message(
    "ReplicaSubscribeRequest",
    versions="0",
    fields=(
        Field("broker_id", INT32),
        Field("broker_epoch", INT64),
        Field("window_bytes", INT32),
        Field(
            "partitions",
            Array(
                Field("topic", STRING),
                Field("partition", INT32),
                Field("current_leader_epoch", INT32),
                Field("fetch_offset", INT64),
                Field("last_fetched_epoch", INT32),
            ),
        ),
    ),
)

ReplicaSubscribeResponse = Message(
    "ReplicaSubscribeResponse",
    versions="0",
    fields=(
        Field(
            "partitions",
            Array(
                Field("topic", STRING),
                Field("partition", INT32),
                Field("error_code", INT16),
                Field("leader_epoch", INT32),
                Field("diverging", BOOL),
                Field("diverging_epoch", INT32, default=-1),
                Field("diverging_end_offset", INT64, default=-1),
                Field("high_watermark", INT64),
                Field("log_start_offset", INT64),
            ),
        ),
    ),
)

ReplicaPush = Message(
    "ReplicaPush",
    versions="0",
    fields=(
        Field("topic", STRING),
        Field("partition", INT32),
        Field("leader_epoch", INT32),
        Field("high_watermark", INT64),
        Field("log_start_offset", INT64),
        Field("records", RECORDS),
    ),
)

ReplicaAck = Message(
    "ReplicaAck",
    versions="0",
    fields=(
        Field(
            "partitions",
            Array(
                Field("topic", STRING),
                Field("partition", INT32),
                Field("leader_epoch", INT32),
                Field("log_end_offset", INT64),
            ),
        ),
    ),
)
