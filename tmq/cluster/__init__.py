"""tmq.cluster: cluster metadata (DESIGN §5).

``MetadataStore`` (``store``) is the interface every broker service talks to: topics, partition
states with compare-and-swap, committed offsets, producer-id blocks, broker registrations, the
controller election, fenced writes, and watch events.
``LocalMetadataStore`` (``local_store``) implements it in files of one directory, for a single
broker, tests and the quick start.
"""

from .local_store import LocalMetadataStore
from .store import (
    BrokerIdInUse,
    BrokerInfo,
    BrokerLost,
    BrokerRegistered,
    CommittedOffset,
    ControllerChanged,
    ControllerFence,
    Fence,
    Fenced,
    InvalidTopic,
    LeaderFence,
    MetadataEvent,
    MetadataStore,
    MetadataStoreError,
    PartitionState,
    PartitionStateChanged,
    Registration,
    StaleVersion,
    TopicCreated,
    TopicDeleted,
    TopicExists,
    TopicSpec,
    UnknownTopic,
    validate_topic,
    validate_topic_name,
)

__all__ = [
    "BrokerIdInUse",
    "BrokerInfo",
    "BrokerLost",
    "BrokerRegistered",
    "CommittedOffset",
    "ControllerChanged",
    "ControllerFence",
    "Fence",
    "Fenced",
    "InvalidTopic",
    "LeaderFence",
    "LocalMetadataStore",
    "MetadataEvent",
    "MetadataStore",
    "MetadataStoreError",
    "PartitionState",
    "PartitionStateChanged",
    "Registration",
    "StaleVersion",
    "TopicCreated",
    "TopicDeleted",
    "TopicExists",
    "TopicSpec",
    "UnknownTopic",
    "validate_topic",
    "validate_topic_name",
]
