"""The JSON values of ``EtcdMetadataStore`` (their formats are in ``tmq.cluster.etcd_store``
and ``tmq.cluster.etcd_membership``): documents built from the store's value types, and values
read back checked field by field, so a value that is not as documented is a
``MetadataStoreError`` naming its key, never a crash. Also a few helpers building requests and
reading responses."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

from etcd3.utils import prefix_range_end

from .store import (
    BrokerInfo,
    CommittedOffset,
    MetadataStoreError,
    PartitionState,
    TopicSpec,
    validate_topic,
)

__all__ = [
    "CorruptValue",
    "broker_document",
    "controller_document",
    "decode_broker",
    "decode_controller",
    "decode_counter",
    "decode_offset",
    "decode_state",
    "decode_topic",
    "delete_prefix",
    "encode",
    "group_names",
    "groups_of",
    "offset_document",
    "reading",
    "revision_of",
    "state_document",
    "topic_document",
]

_PARTITION_KEY = re.compile(r"0|[1-9][0-9]*")


class CorruptValue(Exception):
    """A value that does not have the documented format."""


def encode(document: dict) -> bytes:
    return json.dumps(document).encode("ascii")


def topic_document(spec: TopicSpec) -> dict:
    return {
        "partitions": spec.partitions,
        "replication_factor": spec.replication_factor,
        "assignment": {str(p): list(ids) for p, ids in sorted(spec.assignment.items())},
        "configs": dict(sorted(spec.configs.items())),
    }


def state_document(state: PartitionState) -> dict:
    return {
        "leader": state.leader,
        "leader_epoch": state.leader_epoch,
        "isr": list(state.isr),
        "controller_epoch": state.controller_epoch,
    }


def offset_document(committed: CommittedOffset, topic_created_revision: int) -> dict:
    return {
        "offset": committed.offset,
        "metadata": committed.metadata,
        "leader_epoch": committed.leader_epoch,
        "commit_timestamp": committed.commit_timestamp_ms,
        "topic_created_revision": topic_created_revision,
    }


@contextmanager
def reading(key: bytes | str) -> Iterator[None]:
    """Turn a value that is not as documented into ``MetadataStoreError`` naming the key."""
    try:
        yield
    except (ValueError, CorruptValue) as error:  # JSONDecodeError, UnicodeDecodeError, InvalidTopic
        key = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        raise MetadataStoreError(f"etcd key {key}: corrupt: {error}") from None


def _get(document: Any, name: str, *kinds: type) -> Any:
    if not isinstance(document, dict):
        raise CorruptValue(f"expected an object holding {name!r}, found {document!r}")
    value = document.get(name)
    if name not in document or not isinstance(value, kinds) or isinstance(value, bool):
        raise CorruptValue(f"{name!r} is {value!r}, not {' or '.join(k.__name__ for k in kinds)}")
    return value


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        raise CorruptValue(f"{what} is {value!r}, not a list of integers")
    return tuple(value)


def decode_topic(key: bytes | str, name: str, value: bytes) -> TopicSpec:
    with reading(key):
        document = json.loads(value)
        assignment = {}
        for partition, ids in _get(document, "assignment", dict).items():
            if not _PARTITION_KEY.fullmatch(partition):
                raise CorruptValue(f"{partition!r} is not a partition number")
            assignment[int(partition)] = _ints(ids, f"the replicas of partition {partition}")
        partitions = _get(document, "partitions", int)
        factor = _get(document, "replication_factor", int)
        configs = _get(document, "configs", dict)
        spec = TopicSpec(name, partitions, factor, assignment, configs)
        validate_topic(spec, dict.fromkeys(spec.assignment))
        return spec


def decode_state(key: bytes | str, value: bytes, version: int) -> PartitionState:
    with reading(key):
        document = json.loads(value)
        leader, epoch = _get(document, "leader", int), _get(document, "leader_epoch", int)
        isr = _ints(_get(document, "isr", list), "the ISR")
        return PartitionState(leader, epoch, isr, _get(document, "controller_epoch", int), version)


def decode_offset(key: bytes | str, value: bytes) -> tuple[CommittedOffset, int]:
    with reading(key):
        document = json.loads(value)
        offset, epoch = _get(document, "offset", int), _get(document, "leader_epoch", int)
        metadata = _get(document, "metadata", str, type(None))
        committed_at = -1  # unknown: offsets committed before commit times were kept
        if "commit_timestamp" in document:
            committed_at = _get(document, "commit_timestamp", int)
        committed = CommittedOffset(offset, metadata, epoch, committed_at)
        return committed, _get(document, "topic_created_revision", int)


def decode_counter(key: str, value: bytes) -> int:
    with reading(key):
        next_id = _get(json.loads(value), "next_producer_id", int)
        if next_id < 0:
            raise CorruptValue(f"next_producer_id {next_id} is negative")
        return next_id


def broker_document(info: BrokerInfo, broker_epoch: int) -> dict:
    return {
        "host": info.host,
        "port": info.port,
        "rack": info.rack,
        "broker_epoch": broker_epoch,
    }


def decode_broker(key: bytes | str, broker_id: int, value: bytes, create_revision: int):
    """The ``BrokerInfo`` of a ``brokers/<id>`` key: its ``broker_epoch`` is the key's
    ``create_revision`` (the value's copy is written just after the key is created)."""
    with reading(key):
        document = json.loads(value)
        host, port = _get(document, "host", str), _get(document, "port", int)
        return BrokerInfo(
            broker_id, host, port, _get(document, "rack", str, type(None)), create_revision
        )


def controller_document(broker_id: int, controller_epoch: int) -> dict:
    return {"broker_id": broker_id, "controller_epoch": controller_epoch}


def decode_controller(key: bytes | str, value: bytes, create_revision: int) -> tuple[int, int]:
    """``(broker_id, controller_epoch)`` of the ``controller`` key: the epoch is the key's
    ``create_revision``."""
    with reading(key):
        return _get(json.loads(value), "broker_id", int), create_revision


# -- requests and responses -------------------------------------------------------------------


def delete_prefix(ops: Any, prefix: str) -> Any:
    return ops.delete(prefix, prefix_range_end(prefix.encode()))


def revision_of(responses: list[Any]) -> int:
    """The revision of a transaction that wrote: the header of its first put or delete."""
    first = responses[0]
    return getattr(first, first.WhichOneof("response")).header.revision


def group_names(listed: Any, groups_prefix: str) -> list[str]:
    """The (decoded) names of the groups among the ``groups/`` keys ``listed``, sorted."""
    found = set()
    for kv in listed.kvs:
        encoded = kv.key.decode("utf-8", "replace")[len(groups_prefix) :].partition("/")[0]
        found.add(unquote(encoded, errors="surrogatepass"))
    return sorted(found)


def groups_of(listed: Any, topic: str) -> list[str]:
    """The (encoded) groups with offsets of ``topic`` among the ``groups/`` keys ``listed``."""
    found = set()
    for kv in listed.kvs:
        parts = kv.key.decode("utf-8", "replace").split("/")  # /tmq/<id>/groups/<group>/...
        if len(parts) == 8 and parts[5] == "offsets" and parts[6] == topic:
            found.add(parts[4])
    return sorted(found)
