"""tmq.cluster: cluster metadata (DESIGN §5).

``MetadataStore`` (``store``) is the interface every broker service talks to: topics, partition
states with compare-and-swap, committed offsets, producer-id blocks, and watch events.
``LocalMetadataStore`` (``local_store``) implements it in files of one directory, for a single
broker, tests and the quick start.
"""

from .local_store import LocalMetadataStore
from .store import (
    CommittedOffset,
    InvalidTopic,
    MetadataEvent,
    MetadataStore,
    MetadataStoreError,
    PartitionState,
    PartitionStateChanged,
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
    "CommittedOffset",
    "InvalidTopic",
    "LocalMetadataStore",
    "MetadataEvent",
    "MetadataStore",
    "MetadataStoreError",
    "PartitionState",
    "PartitionStateChanged",
    "StaleVersion",
    "TopicCreated",
    "TopicDeleted",
    "TopicExists",
    "TopicSpec",
    "UnknownTopic",
    "validate_topic",
    "validate_topic_name",
]
