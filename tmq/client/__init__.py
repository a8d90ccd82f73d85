"""tmq.client: a Twisted-native Kafka client (issue #4).

It speaks the Kafka wire protocol through ``tmq.protocol`` and nothing else, so it works with
any Kafka-compatible broker. Everything runs on an injected reactor:

* ``Cluster``: bootstrap, metadata and one connection per broker, shared by the rest;
* ``Producer``: batching, compression, acks, idempotence, retries;
* ``Consumer``: assigned partitions, offset reset, long-poll fetches, simple commits;
* ``Admin``: create, delete and describe topics; list and describe groups, their offsets and lag;
* ``tmq.client.sync``: blocking wrappers for scripts (``SyncProducer``, ``SyncConsumer``,
  ``SyncAdmin``).
"""

from .admin import (
    Admin,
    ClusterInfo,
    GroupDescription,
    GroupList,
    GroupListing,
    GroupMember,
    GroupOffset,
    NewTopic,
)
from .cluster import BrokerInfo, Cluster, ClusterMetadata, PartitionInfo, TopicInfo
from .connection import KafkaConnection, tcp_connector
from .consumer import Consumer, ConsumerRecord, TopicPartition
from .errors import (
    BrokerResponseError,
    ClientClosedError,
    ConnectionFailedError,
    ConnectionLostError,
    KafkaError,
    KafkaProtocolError,
    NoOffsetForPartitionError,
    RequestTimedOutError,
    UnsupportedVersionError,
)
from .partitioner import Partitioner, murmur2
from .producer import BufferFullError, Producer, RecordMetadata

__all__ = [
    "Admin",
    "BrokerInfo",
    "BrokerResponseError",
    "BufferFullError",
    "ClientClosedError",
    "Cluster",
    "ClusterInfo",
    "ClusterMetadata",
    "ConnectionFailedError",
    "ConnectionLostError",
    "Consumer",
    "ConsumerRecord",
    "GroupDescription",
    "GroupList",
    "GroupListing",
    "GroupMember",
    "GroupOffset",
    "KafkaConnection",
    "KafkaError",
    "KafkaProtocolError",
    "NewTopic",
    "NoOffsetForPartitionError",
    "PartitionInfo",
    "Partitioner",
    "Producer",
    "RecordMetadata",
    "RequestTimedOutError",
    "TopicInfo",
    "TopicPartition",
    "UnsupportedVersionError",
    "murmur2",
    "tcp_connector",
]
