"""Cross-implementation vectors: tmq's message declarations against kafka-python 3.x.

kafka-python 3 generates its protocol classes from the JSON message specs Kafka ships (bundled in
``kafka/protocol/schemas/resources``), so it is an encoder and decoder written independently of
tmq from the same source of truth. For every API and version tmq advertises, these tests:

* compare the declaration field by field (name, wire type, nullability, order) with
  kafka-python's schema for that version;
* encode hand-written, realistic values (real RecordBatch and consumer-protocol blobs, nulls where
  nullable) with kafka-python and decode them with tmq, and the reverse, requests and responses,
  asserting exact values and byte-for-byte identical encodings;
* do the same for values generated from tmq's declarations (hypothesis);
* pass whole frames, size prefix and headers included, between kafka-python's connection
  protocol (``KafkaProtocol``) and tmq's ``read_request_header`` / ``encode_response_header``,
  including the ApiVersions rule (response header v0 even for the flexible v3) and the KIP-511
  fallback answer to a version tmq does not know.

Name mapping: kafka-python names fields with the snake_case of Kafka's names, as tmq does. Two
places differ and are mapped in ``_KP_NAMES``: OffsetCommit's ``GenerationIdOrMemberEpoch``
(Kafka's later name for ``GenerationId``, KIP-848) and Metadata's two ``AuthorizedOperations``
fields, which kafka-python renames and decodes as a set of bit numbers (``None`` for INT32 min,
"not requested"); DescribeGroups' ``authorized_operations`` is such a bit set too (``_BITFIELDS``),
under its own name. Tagged fields are not declared in tmq (it carries them as raw ``{tag: bytes}``),
so the declaration comparison leaves kafka-python's tagged fields out; a separate test checks that
tags kafka-python writes survive tmq's decode and re-encode.
"""

from __future__ import annotations

import kafka.protocol.admin as kp_admin
import kafka.protocol.consumer as kp_consumer
import kafka.protocol.metadata as kp_metadata
import kafka.protocol.producer as kp_producer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.protocol.api_header import RequestHeader as KpRequestHeader
from kafka.protocol.api_header import ResponseHeader as KpResponseHeader
from kafka.protocol.consumer import ConsumerProtocolAssignment, ConsumerProtocolSubscription
from kafka.protocol.parser import KafkaProtocol
from kafka.record.default_records import DefaultRecordBatchBuilder
from message_strategies import message_values

from tmq.protocol.apis import API_BY_KEY, API_BY_NAME, ApiKey, api_versions_fallback
from tmq.protocol.errors import ErrorCode
from tmq.protocol.framing import FrameDecoder, encode_frame
from tmq.protocol.headers import (
    RequestHeader,
    RequestHeaderSchema,
    ResponseHeaderSchema,
    encode_request_header,
    encode_response_header,
    read_request_header,
)
from tmq.protocol.messages.api_versions import ApiVersionsResponse
from tmq.protocol.messages.metadata import AUTHORIZED_OPERATIONS_OMITTED
from tmq.protocol.schema import Array, Field, Message, VersionRange

# --------------------------------------------------------------------------------------------
# Bridging tmq values (dicts keyed by tmq's field names) and kafka-python objects
# --------------------------------------------------------------------------------------------

_KP_MODULES = (kp_producer, kp_consumer, kp_metadata, kp_admin)

#: (tmq message name, dotted tmq path of a field) -> kafka-python's name for that field.
_KP_NAMES = {
    ("OffsetCommitRequest", "generation_id"): "generation_id_or_member_epoch",
    ("MetadataResponse", "topics.topic_authorized_operations"): "authorized_operations",
    ("MetadataResponse", "cluster_authorized_operations"): "authorized_operations",
    ("RequestHeader", "api_key"): "request_api_key",
    ("RequestHeader", "api_version"): "request_api_version",
}

#: INT32 bit sets that kafka-python exposes as ``set`` of bit numbers (``None`` = INT32 min).
_BITFIELDS = {
    ("MetadataResponse", "topics.topic_authorized_operations"),
    ("MetadataResponse", "cluster_authorized_operations"),
    ("DescribeGroupsResponse", "groups.authorized_operations"),
}


def _kp_class(message: Message):
    """kafka-python's class for the message tmq calls ``message.name``."""
    for module in _KP_MODULES:
        cls = getattr(module, message.name, None)
        if cls is not None:
            return cls
    raise LookupError(f"kafka-python has no {message.name}")


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _kp_name(message_name: str, path: str, field: Field) -> str:
    return _KP_NAMES.get((message_name, path), field.name)


def _is_struct_array(field: Field) -> bool:
    return isinstance(field.type, Array) and isinstance(field.type.element, tuple)


def _int_to_bits(value: int) -> set[int] | None:
    if value == AUTHORIZED_OPERATIONS_OMITTED:
        return None
    unsigned = value & 0xFFFFFFFF
    return {bit for bit in range(32) if unsigned >> bit & 1}


def _bits_to_int(bits: set[int] | None) -> int:
    if bits is None:
        return AUTHORIZED_OPERATIONS_OMITTED
    unsigned = sum(1 << bit for bit in bits)
    return unsigned - (1 << 32) if unsigned >= 1 << 31 else unsigned


def _to_kp(message: Message, version: int, value: dict):
    """The kafka-python object holding ``value`` (a tmq value) at ``version``."""
    cls = _kp_class(message)
    kwargs = _kp_kwargs(message.name, "", cls._struct, message.fields, version, value)
    return cls(version=version, **kwargs)


def _kp_kwargs(message_name, parent, kp_struct, fields, version, value) -> dict:
    kwargs = {}
    for field in fields:
        if not field.present_in(version):
            continue
        path = _join(parent, field.name)
        kp_name = _kp_name(message_name, path, field)
        kp_field = kp_struct.fields[kp_name]
        item = value[field.name]
        if _is_struct_array(field) and item is not None:
            item = [
                kp_field.data_class(
                    version=version,
                    **_kp_kwargs(message_name, path, kp_field, field.type.element, version, e),
                )
                for e in item
            ]
        elif (message_name, path) in _BITFIELDS:
            item = _int_to_bits(item)
        kwargs[kp_name] = item
    return kwargs


def _from_kp(message: Message, version: int, obj) -> dict:
    """The tmq value of a kafka-python object, in the shape ``Message.parse`` returns: every
    declared field (defaults for those absent from ``version``), ``tagged_fields`` in flexible
    versions holding the tags kafka-python did not recognise."""
    return _tmq_value(message.name, "", message.fields, version, message.is_flexible(version), obj)


def _tmq_value(message_name, parent, fields, version, flexible, obj) -> dict:
    value = {}
    for field in fields:
        if not field.present_in(version):
            value[field.name] = field.default_value()
            continue
        path = _join(parent, field.name)
        item = getattr(obj, _kp_name(message_name, path, field))
        if _is_struct_array(field) and item is not None:
            item = [
                _tmq_value(message_name, path, field.type.element, version, flexible, e)
                for e in item
            ]
        elif (message_name, path) in _BITFIELDS:
            item = _bits_to_int(item)
        elif isinstance(item, (bytearray, memoryview)):
            item = bytes(item)
        value[field.name] = item
    if flexible:
        if obj.tags:
            raise AssertionError(f"kafka-python decoded known tagged fields {sorted(obj.tags)}")
        unknown = obj.unknown_tags or {}
        value["tagged_fields"] = {int(name[1:]): bytes(raw) for name, raw in unknown.items()}
    return value


def _complete(message: Message, version: int, value: dict) -> dict:
    """What ``message.parse`` yields for an encoding of ``value``: ``value``'s fields on the wire
    in ``version``, defaults for the others, and (flexible versions) its tagged fields."""
    return _completed(message.fields, version, message.is_flexible(version), value)


def _completed(fields, version, flexible, value) -> dict:
    out = {}
    for field in fields:
        if not field.present_in(version):
            out[field.name] = field.default_value()
            continue
        item = value[field.name]
        if _is_struct_array(field) and item is not None:
            item = [_completed(field.type.element, version, flexible, e) for e in item]
        out[field.name] = item
    if flexible:
        out["tagged_fields"] = dict(value.get("tagged_fields", {}))
    return out


def _without_tags(fields, version, flexible, value) -> dict:
    """``value`` with every tagged-field buffer emptied (kafka-python never re-encodes tags it
    does not know)."""
    out = dict(value)
    for field in fields:
        if _is_struct_array(field) and field.present_in(version) and value[field.name]:
            out[field.name] = [
                _without_tags(field.type.element, version, flexible, e) for e in value[field.name]
            ]
    if flexible:
        out["tagged_fields"] = {}
    return out


def _drop_known_tags(message_name, parent, kp_struct, fields, version, flexible, value) -> dict:
    """``value`` without the tags kafka-python's schema gives a meaning (and so would decode as a
    typed field rather than raw bytes)."""
    out = dict(value)
    for field in fields:
        if _is_struct_array(field) and field.present_in(version) and value[field.name]:
            path = _join(parent, field.name)
            kp_field = kp_struct.fields[_kp_name(message_name, path, field)]
            out[field.name] = [
                _drop_known_tags(
                    message_name, path, kp_field, field.type.element, version, flexible, e
                )
                for e in value[field.name]
            ]
    if flexible:
        known = {f.tag for f in kp_struct.fields.values() if f.tagged_field_q(version)}
        out["tagged_fields"] = {
            tag: raw for tag, raw in value["tagged_fields"].items() if tag not in known
        }
    return out


# --------------------------------------------------------------------------------------------
# Declarations against kafka-python's schemas
# --------------------------------------------------------------------------------------------


def _tmq_layout(message_name, parent, fields, version) -> list[tuple]:
    rows = []
    for field in fields:
        if not field.present_in(version):
            continue
        path = _join(parent, field.name)
        kind = field.type
        if isinstance(kind, Array):
            type_name = "[]struct" if _is_struct_array(field) else f"[]{kind.element.name}"
        else:
            type_name = kind.name
        rows.append((path, type_name, field.nullable_in(version)))
        if _is_struct_array(field):
            rows += _tmq_layout(message_name, path, field.type.element, version)
    return rows


def _kp_layout(message_name, parent, kp_struct, version) -> list[tuple]:
    renamed = {
        (p.rpartition(".")[0], kp): p.rpartition(".")[2]
        for (m, p), kp in _KP_NAMES.items()
        if m == message_name
    }
    rows = []
    for kp_field in kp_struct.fields.values():
        if not kp_field.for_version_q(version) or kp_field.tagged_field_q(version):
            continue
        name = renamed.get((parent, kp_field.name), kp_field.name)
        path = _join(parent, name)
        if kp_field.is_struct_array():
            type_name = "[]struct"
        elif (message_name, path) in _BITFIELDS:
            type_name = "int32"  # Kafka's spec type; kafka-python patches it to a bit set
        else:
            type_name = kp_field.type_str
        rows.append((path, type_name, kp_field.nullable_for_version_q(version)))
        if kp_field.is_struct_array():
            rows += _kp_layout(message_name, path, kp_field, version)
    return rows


ALL_MESSAGES = [
    pytest.param(message, version, id=f"{message.name}-v{version}")
    for api in API_BY_KEY.values()
    for message in (api.request, api.response)
    for version in range(api.min_version, api.max_version + 1)
]


@pytest.mark.parametrize(("message", "version"), ALL_MESSAGES)
def test_declaration_matches_kafka_python_schema(message, version):
    """In every version tmq advertises, each message declares the same fields as Kafka's spec
    (as bundled in kafka-python): same names, order, wire types and nullability."""
    kp_struct = _kp_class(message)._struct
    assert version <= _kp_class(message).max_version
    expected = _kp_layout(message.name, "", kp_struct, version)
    assert _tmq_layout(message.name, "", message.fields, version) == expected


@pytest.mark.parametrize(
    ("schema", "kp_header", "version", "flexible"),
    [
        pytest.param(RequestHeaderSchema, KpRequestHeader, 1, False, id="request-header-v1"),
        pytest.param(RequestHeaderSchema, KpRequestHeader, 2, True, id="request-header-v2"),
        pytest.param(ResponseHeaderSchema, KpResponseHeader, 0, False, id="response-header-v0"),
        pytest.param(ResponseHeaderSchema, KpResponseHeader, 1, True, id="response-header-v1"),
    ],
)
def test_header_declarations_match_kafka_python(schema, kp_header, version, flexible):
    """The request header (v1, v2) and response header (v0, v1) declarations carry the fields of
    Kafka's RequestHeader/ResponseHeader specs, and are flexible exactly in v2 / v1."""
    assert schema.is_flexible(version) is flexible
    assert (version in VersionRange.parse(kp_header._json["flexibleVersions"])) is flexible
    expected = _kp_layout(schema.name, "", kp_header._struct, version)
    assert _tmq_layout(schema.name, "", schema.fields, version) == expected


# --------------------------------------------------------------------------------------------
# Hand-written vectors
# --------------------------------------------------------------------------------------------


def _record_batch() -> bytes:
    """A RecordBatch v2 of two records, built by kafka-python's own batch builder."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=4001,
        producer_epoch=0,
        base_sequence=17,
        batch_size=1 << 20,
    )
    builder.append(
        0,
        timestamp=1_700_000_000_000,
        key=b"gpu-0",
        value=b'{"util": 0.93, "temp_c": 71}',
        headers=[("host", b"node-a")],
    )
    builder.append(1, timestamp=1_700_000_000_250, key=None, value=b'{"util": 0.41}', headers=[])
    return bytes(builder.build())


RECORD_BATCH = _record_batch()
SUBSCRIPTION = bytes(
    ConsumerProtocolSubscription(version=0, topics=["gpu-telemetry"], user_data=None).encode()
)
ASSIGNMENT = bytes(
    ConsumerProtocolAssignment(
        version=0,
        assigned_partitions=[
            ConsumerProtocolAssignment.TopicPartition(
                version=0, topic="gpu-telemetry", partitions=[0, 1]
            )
        ],
        user_data=None,
    ).encode()
)

ALL_API_VERSIONS = [
    {"api_key": api.key, "min_version": api.min_version, "max_version": api.max_version}
    for api in API_BY_KEY.values()
]

# (api name, "request" | "response", versions, label, value). A value names every field of the
# message in any version it is used with; fields absent from a version are ignored by both sides.
VECTORS = [
    (
        "Produce",
        "request",
        range(0, 9),
        "idempotent",
        {
            "transactional_id": None,
            "acks": -1,
            "timeout_ms": 30000,
            "topic_data": [
                {
                    "name": "gpu-telemetry",
                    "partition_data": [
                        {"index": 0, "records": RECORD_BATCH},
                        {"index": 3, "records": None},
                    ],
                },
                {"name": "orders", "partition_data": []},
            ],
        },
    ),
    (
        "Produce",
        "request",
        range(3, 9),
        "transactional",
        {
            "transactional_id": "billing-tx-7",
            "acks": 1,
            "timeout_ms": 1500,
            "topic_data": [
                {"name": "orders", "partition_data": [{"index": 2, "records": RECORD_BATCH}]}
            ],
        },
    ),
    (
        "Produce",
        "response",
        range(0, 9),
        "mixed",
        {
            "responses": [
                {
                    "name": "gpu-telemetry",
                    "partition_responses": [
                        {
                            "index": 0,
                            "error_code": ErrorCode.NONE,
                            "base_offset": 1042,
                            "log_append_time_ms": -1,
                            "log_start_offset": 0,
                            "record_errors": [],
                            "error_message": None,
                        },
                        {
                            "index": 3,
                            "error_code": ErrorCode.INVALID_RECORD,
                            "base_offset": -1,
                            "log_append_time_ms": 1_700_000_000_123,
                            "log_start_offset": 17,
                            "record_errors": [
                                {
                                    "batch_index": 1,
                                    "batch_index_error_message": "Compacted topic needs a key",
                                },
                                {"batch_index": 4, "batch_index_error_message": None},
                            ],
                            "error_message": "One or more records have been rejected",
                        },
                    ],
                }
            ],
            "throttle_time_ms": 25,
        },
    ),
    (
        "Fetch",
        "request",
        range(4, 12),
        "consumer",
        {
            "replica_id": -1,
            "max_wait_ms": 500,
            "min_bytes": 1,
            "max_bytes": 52_428_800,
            "isolation_level": 1,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [
                {
                    "topic": "gpu-telemetry",
                    "partitions": [
                        {
                            "partition": 0,
                            "current_leader_epoch": 4,
                            "fetch_offset": 1042,
                            "log_start_offset": -1,
                            "partition_max_bytes": 1_048_576,
                        },
                        {
                            "partition": 1,
                            "current_leader_epoch": -1,
                            "fetch_offset": 0,
                            "log_start_offset": -1,
                            "partition_max_bytes": 65536,
                        },
                    ],
                }
            ],
            "forgotten_topics_data": [{"topic": "orders", "partitions": [2, 5]}],
            "rack_id": "eu-west-1a",
        },
    ),
    (
        "Fetch",
        "response",
        range(4, 12),
        "data-error-empty",
        {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.NONE,
            "session_id": 0,
            "responses": [
                {
                    "topic": "gpu-telemetry",
                    "partitions": [
                        {
                            "partition_index": 0,
                            "error_code": ErrorCode.NONE,
                            "high_watermark": 1044,
                            "last_stable_offset": 1044,
                            "log_start_offset": 0,
                            "aborted_transactions": [{"producer_id": 4001, "first_offset": 1000}],
                            "preferred_read_replica": -1,
                            "records": RECORD_BATCH,
                        },
                        {
                            "partition_index": 1,
                            "error_code": ErrorCode.OFFSET_OUT_OF_RANGE,
                            "high_watermark": -1,
                            "last_stable_offset": -1,
                            "log_start_offset": -1,
                            "aborted_transactions": None,
                            "preferred_read_replica": -1,
                            "records": None,
                        },
                        {
                            "partition_index": 2,
                            "error_code": ErrorCode.NONE,
                            "high_watermark": 88,
                            "last_stable_offset": 88,
                            "log_start_offset": 12,
                            "aborted_transactions": [],
                            "preferred_read_replica": 2,
                            "records": b"",
                        },
                    ],
                }
            ],
        },
    ),
    (
        "ListOffsets",
        "request",
        range(1, 6),
        "latest-earliest-timestamp",
        {
            "replica_id": -1,
            "isolation_level": 1,
            "topics": [
                {
                    "name": "gpu-telemetry",
                    "partitions": [
                        {"partition_index": 0, "current_leader_epoch": 4, "timestamp": -1},
                        {"partition_index": 1, "current_leader_epoch": -1, "timestamp": -2},
                        {
                            "partition_index": 2,
                            "current_leader_epoch": 3,
                            "timestamp": 1_700_000_000_000,
                        },
                    ],
                }
            ],
        },
    ),
    (
        "ListOffsets",
        "response",
        range(1, 6),
        "mixed",
        {
            "throttle_time_ms": 0,
            "topics": [
                {
                    "name": "gpu-telemetry",
                    "partitions": [
                        {
                            "partition_index": 0,
                            "error_code": ErrorCode.NONE,
                            "timestamp": -1,
                            "offset": 1044,
                            "leader_epoch": 4,
                        },
                        {
                            "partition_index": 2,
                            "error_code": ErrorCode.NONE,
                            "timestamp": 1_700_000_000_250,
                            "offset": 1043,
                            "leader_epoch": 3,
                        },
                        {
                            "partition_index": 7,
                            "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                            "timestamp": -1,
                            "offset": -1,
                            "leader_epoch": -1,
                        },
                    ],
                }
            ],
        },
    ),
    (
        "Metadata",
        "request",
        range(0, 9),
        "named-topics",
        {
            "topics": [{"name": "gpu-telemetry"}, {"name": "orders"}],
            "allow_auto_topic_creation": False,
            "include_cluster_authorized_operations": True,
            "include_topic_authorized_operations": False,
        },
    ),
    (
        "Metadata",
        "request",
        range(0, 9),
        "empty-topics",
        {
            "topics": [],
            "allow_auto_topic_creation": True,
            "include_cluster_authorized_operations": False,
            "include_topic_authorized_operations": True,
        },
    ),
    (
        "Metadata",
        "request",
        range(1, 9),
        "all-topics-null",
        {
            "topics": None,
            "allow_auto_topic_creation": True,
            "include_cluster_authorized_operations": False,
            "include_topic_authorized_operations": False,
        },
    ),
    (
        "Metadata",
        "response",
        range(0, 9),
        "cluster",
        {
            "throttle_time_ms": 0,
            "brokers": [
                {"node_id": 1, "host": "broker-1.tmq.internal", "port": 9092, "rack": "eu-1a"},
                {"node_id": 2, "host": "broker-2.tmq.internal", "port": 9093, "rack": None},
            ],
            "cluster_id": "tmq-cluster-7f3a",
            "controller_id": 1,
            "topics": [
                {
                    "error_code": ErrorCode.NONE,
                    "name": "gpu-telemetry",
                    "is_internal": False,
                    "partitions": [
                        {
                            "error_code": ErrorCode.NONE,
                            "partition_index": 0,
                            "leader_id": 1,
                            "leader_epoch": 4,
                            "replica_nodes": [1, 2],
                            "isr_nodes": [1, 2],
                            "offline_replicas": [],
                        },
                        {
                            "error_code": ErrorCode.REPLICA_NOT_AVAILABLE,
                            "partition_index": 1,
                            "leader_id": 2,
                            "leader_epoch": 3,
                            "replica_nodes": [2, 1],
                            "isr_nodes": [2],
                            "offline_replicas": [1],
                        },
                    ],
                    "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
                },
                {
                    "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    "name": "missing-topic",
                    "is_internal": True,
                    "partitions": [],
                    "topic_authorized_operations": 0b1101_1111_1000,
                },
            ],
            "cluster_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
        },
    ),
    (
        "Metadata",
        "response",
        range(2, 9),
        "null-cluster-id",
        {
            "throttle_time_ms": 100,
            "brokers": [],
            "cluster_id": None,
            "controller_id": -1,
            "topics": [],
            "cluster_authorized_operations": 0b1_0000_0100,
        },
    ),
    (
        "ApiVersions",
        "request",
        range(0, 4),
        "software",
        {
            "client_software_name": "kafka-python",
            "client_software_version": "3.0.12",
        },
    ),
    (
        "ApiVersions",
        "request",
        range(3, 4),
        "empty-software",
        {
            "client_software_name": "",
            "client_software_version": "",
        },
    ),
    (
        "ApiVersions",
        "response",
        range(0, 4),
        "tmq-table",
        {
            "error_code": ErrorCode.NONE,
            "api_keys": ALL_API_VERSIONS,
            "throttle_time_ms": 0,
        },
    ),
    ("ApiVersions", "response", range(0, 1), "kip-511-fallback", api_versions_fallback()),
    (
        "CreateTopics",
        "request",
        range(0, 5),
        "counts-and-assignments",
        {
            "topics": [
                {
                    "name": "gpu-telemetry",
                    "num_partitions": 6,
                    "replication_factor": 3,
                    "assignments": [],
                    "configs": [
                        {"name": "cleanup.policy", "value": "compact"},
                        {"name": "retention.ms", "value": None},
                    ],
                },
                {
                    "name": "orders",
                    "num_partitions": -1,
                    "replication_factor": -1,
                    "assignments": [
                        {"partition_index": 0, "broker_ids": [1, 2]},
                        {"partition_index": 1, "broker_ids": [2, 3]},
                    ],
                    "configs": [],
                },
            ],
            "timeout_ms": 60000,
            "validate_only": True,
        },
    ),
    (
        "CreateTopics",
        "response",
        range(0, 5),
        "created-and-exists",
        {
            "throttle_time_ms": 0,
            "topics": [
                {"name": "gpu-telemetry", "error_code": ErrorCode.NONE, "error_message": None},
                {
                    "name": "orders",
                    "error_code": ErrorCode.TOPIC_ALREADY_EXISTS,
                    "error_message": "Topic 'orders' already exists.",
                },
            ],
        },
    ),
    (
        "DeleteTopics",
        "request",
        range(0, 4),
        "two",
        {
            "topic_names": ["gpu-telemetry", "orders"],
            "timeout_ms": 30000,
        },
    ),
    (
        "DeleteTopics",
        "response",
        range(0, 4),
        "deleted-and-missing",
        {
            "throttle_time_ms": 10,
            "responses": [
                {"name": "gpu-telemetry", "error_code": ErrorCode.NONE},
                {"name": "missing-topic", "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION},
            ],
        },
    ),
    (
        "InitProducerId",
        "request",
        range(0, 2),
        "idempotent",
        {
            "transactional_id": None,
            "transaction_timeout_ms": 60000,
        },
    ),
    (
        "InitProducerId",
        "request",
        range(0, 2),
        "transactional",
        {
            "transactional_id": "billing-tx-7",
            "transaction_timeout_ms": 900_000,
        },
    ),
    (
        "InitProducerId",
        "response",
        range(0, 2),
        "allocated",
        {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.NONE,
            "producer_id": 4001,
            "producer_epoch": 0,
        },
    ),
    (
        "InitProducerId",
        "response",
        range(0, 2),
        "error",
        {
            "throttle_time_ms": 5,
            "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
            "producer_id": -1,
            "producer_epoch": -1,
        },
    ),
    (
        "OffsetCommit",
        "request",
        range(2, 8),
        "member",
        {
            "group_id": "telemetry-sink",
            "generation_id": 12,
            "member_id": "sink-1-3f2a",
            "group_instance_id": "sink-host-a",
            "retention_time_ms": -1,
            "topics": [
                {
                    "name": "gpu-telemetry",
                    "partitions": [
                        {
                            "partition_index": 0,
                            "committed_offset": 1044,
                            "committed_leader_epoch": 4,
                            "committed_metadata": "host=a",
                        },
                        {
                            "partition_index": 1,
                            "committed_offset": 88,
                            "committed_leader_epoch": -1,
                            "committed_metadata": None,
                        },
                    ],
                }
            ],
        },
    ),
    (
        "OffsetCommit",
        "request",
        range(2, 8),
        "simple",
        {
            "group_id": "audit-job",
            "generation_id": -1,
            "member_id": "",
            "group_instance_id": None,
            "retention_time_ms": 86_400_000,
            "topics": [],
        },
    ),
    (
        "OffsetCommit",
        "response",
        range(2, 8),
        "mixed",
        {
            "throttle_time_ms": 0,
            "topics": [
                {
                    "name": "gpu-telemetry",
                    "partitions": [
                        {"partition_index": 0, "error_code": ErrorCode.NONE},
                        {"partition_index": 1, "error_code": ErrorCode.ILLEGAL_GENERATION},
                    ],
                }
            ],
        },
    ),
    (
        "OffsetFetch",
        "request",
        range(1, 6),
        "named",
        {
            "group_id": "telemetry-sink",
            "topics": [{"name": "gpu-telemetry", "partition_indexes": [0, 1, 2]}],
        },
    ),
    (
        "OffsetFetch",
        "request",
        range(2, 6),
        "all-null",
        {
            "group_id": "telemetry-sink",
            "topics": None,
        },
    ),
    (
        "OffsetFetch",
        "response",
        range(1, 6),
        "committed-and-not",
        {
            "throttle_time_ms": 0,
            "topics": [
                {
                    "name": "gpu-telemetry",
                    "partitions": [
                        {
                            "partition_index": 0,
                            "committed_offset": 1044,
                            "committed_leader_epoch": 4,
                            "metadata": "host=a",
                            "error_code": ErrorCode.NONE,
                        },
                        {
                            "partition_index": 2,
                            "committed_offset": -1,
                            "committed_leader_epoch": -1,
                            "metadata": None,
                            "error_code": ErrorCode.NONE,
                        },
                    ],
                }
            ],
            "error_code": ErrorCode.NONE,
        },
    ),
    (
        "OffsetFetch",
        "response",
        range(2, 6),
        "group-error",
        {
            "throttle_time_ms": 0,
            "topics": [],
            "error_code": ErrorCode.NOT_COORDINATOR,
        },
    ),
    (
        "FindCoordinator",
        "request",
        range(0, 3),
        "group",
        {
            "key": "telemetry-sink",
            "key_type": 0,
        },
    ),
    (
        "FindCoordinator",
        "request",
        range(1, 3),
        "transaction",
        {
            "key": "billing-tx-7",
            "key_type": 1,
        },
    ),
    (
        "FindCoordinator",
        "response",
        range(0, 3),
        "found",
        {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.NONE,
            "error_message": None,
            "node_id": 2,
            "host": "broker-2.tmq.internal",
            "port": 9093,
        },
    ),
    (
        "FindCoordinator",
        "response",
        range(1, 3),
        "not-available",
        {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
            "error_message": "The coordinator is not available.",
            "node_id": -1,
            "host": "",
            "port": -1,
        },
    ),
    (
        "JoinGroup",
        "request",
        range(0, 6),
        "new-member",
        {
            "group_id": "telemetry-sink",
            "session_timeout_ms": 10000,
            "rebalance_timeout_ms": 300_000,
            "member_id": "",
            "group_instance_id": None,
            "protocol_type": "consumer",
            "protocols": [
                {"name": "range", "metadata": SUBSCRIPTION},
                {"name": "roundrobin", "metadata": SUBSCRIPTION},
            ],
        },
    ),
    (
        "JoinGroup",
        "request",
        range(5, 6),
        "static-member",
        {
            "group_id": "telemetry-sink",
            "session_timeout_ms": 45000,
            "rebalance_timeout_ms": 300_000,
            "member_id": "sink-1-3f2a",
            "group_instance_id": "sink-host-a",
            "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": b""}],
        },
    ),
    (
        "JoinGroup",
        "response",
        range(0, 6),
        "leader",
        {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.NONE,
            "generation_id": 12,
            "protocol_name": "range",
            "leader": "sink-1-3f2a",
            "member_id": "sink-1-3f2a",
            "members": [
                {
                    "member_id": "sink-1-3f2a",
                    "group_instance_id": "sink-host-a",
                    "metadata": SUBSCRIPTION,
                },
                {"member_id": "sink-2-9b1c", "group_instance_id": None, "metadata": SUBSCRIPTION},
            ],
        },
    ),
    (
        "JoinGroup",
        "response",
        range(4, 6),
        "member-id-required",
        {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.MEMBER_ID_REQUIRED,
            "generation_id": -1,
            "protocol_name": "",
            "leader": "",
            "member_id": "sink-1-3f2a",
            "members": [],
        },
    ),
    (
        "SyncGroup",
        "request",
        range(0, 4),
        "leader",
        {
            "group_id": "telemetry-sink",
            "generation_id": 12,
            "member_id": "sink-1-3f2a",
            "group_instance_id": "sink-host-a",
            "assignments": [
                {"member_id": "sink-1-3f2a", "assignment": ASSIGNMENT},
                {"member_id": "sink-2-9b1c", "assignment": b""},
            ],
        },
    ),
    (
        "SyncGroup",
        "request",
        range(0, 4),
        "follower",
        {
            "group_id": "telemetry-sink",
            "generation_id": 12,
            "member_id": "sink-2-9b1c",
            "group_instance_id": None,
            "assignments": [],
        },
    ),
    (
        "SyncGroup",
        "response",
        range(0, 4),
        "assigned",
        {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.NONE,
            "assignment": ASSIGNMENT,
        },
    ),
    (
        "SyncGroup",
        "response",
        range(0, 4),
        "rebalancing",
        {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.REBALANCE_IN_PROGRESS,
            "assignment": b"",
        },
    ),
    (
        "Heartbeat",
        "request",
        range(0, 4),
        "dynamic",
        {
            "group_id": "telemetry-sink",
            "generation_id": 12,
            "member_id": "sink-1-3f2a",
            "group_instance_id": None,
        },
    ),
    (
        "Heartbeat",
        "request",
        range(3, 4),
        "static",
        {
            "group_id": "telemetry-sink",
            "generation_id": 12,
            "member_id": "sink-1-3f2a",
            "group_instance_id": "sink-host-a",
        },
    ),
    (
        "Heartbeat",
        "response",
        range(0, 4),
        "rebalancing",
        {
            "throttle_time_ms": 3,
            "error_code": ErrorCode.REBALANCE_IN_PROGRESS,
        },
    ),
    (
        "LeaveGroup",
        "request",
        range(0, 4),
        "members",
        {
            "group_id": "telemetry-sink",
            "member_id": "sink-1-3f2a",
            "members": [
                {"member_id": "sink-1-3f2a", "group_instance_id": None},
                {"member_id": "", "group_instance_id": "sink-host-b"},
            ],
        },
    ),
    (
        "LeaveGroup",
        "response",
        range(0, 4),
        "members",
        {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.NONE,
            "members": [
                {
                    "member_id": "sink-1-3f2a",
                    "group_instance_id": None,
                    "error_code": ErrorCode.NONE,
                },
                {
                    "member_id": "",
                    "group_instance_id": "sink-host-b",
                    "error_code": ErrorCode.UNKNOWN_MEMBER_ID,
                },
            ],
        },
    ),
    (
        "DescribeGroups",
        "request",
        range(0, 5),
        "two-groups",
        {"groups": ["telemetry-sink", "billing"], "include_authorized_operations": True},
    ),
    (
        "DescribeGroups",
        "request",
        range(0, 5),
        "none",
        {"groups": [], "include_authorized_operations": False},
    ),
    (
        "DescribeGroups",
        "response",
        range(0, 5),
        "stable-and-dead",
        {
            "throttle_time_ms": 0,
            "groups": [
                {
                    "error_code": ErrorCode.NONE,
                    "group_id": "telemetry-sink",
                    "group_state": "Stable",
                    "protocol_type": "consumer",
                    "protocol_data": "range",
                    "members": [
                        {
                            "member_id": "sink-1-3f2a",
                            "group_instance_id": "sink-host-a",
                            "client_id": "consumer-telemetry-sink-1",
                            "client_host": "/10.0.3.7",
                            "member_metadata": SUBSCRIPTION,
                            "member_assignment": ASSIGNMENT,
                        },
                        {
                            "member_id": "sink-2-9b1c",
                            "group_instance_id": None,
                            "client_id": "consumer-telemetry-sink-2",
                            "client_host": "/10.0.3.8",
                            "member_metadata": SUBSCRIPTION,
                            "member_assignment": b"",
                        },
                    ],
                    # READ (3), DESCRIBE (8) and DELETE (6) of Kafka's AclOperation bits
                    "authorized_operations": (1 << 3) | (1 << 6) | (1 << 8),
                },
                {
                    "error_code": ErrorCode.NONE,
                    "group_id": "billing",
                    "group_state": "Dead",
                    "protocol_type": "",
                    "protocol_data": "",
                    "members": [],
                    "authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
                },
            ],
        },
    ),
    (
        "DescribeGroups",
        "response",
        range(0, 5),
        "loading",
        {
            "throttle_time_ms": 10,
            "groups": [
                {
                    "error_code": ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
                    "group_id": "telemetry-sink",
                    "group_state": "",
                    "protocol_type": "",
                    "protocol_data": "",
                    "members": [],
                    "authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
                }
            ],
        },
    ),
    ("ListGroups", "request", range(0, 3), "all", {}),
    (
        "ListGroups",
        "response",
        range(0, 3),
        "two-groups",
        {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.NONE,
            "groups": [
                {"group_id": "telemetry-sink", "protocol_type": "consumer"},
                {"group_id": "connect-cluster", "protocol_type": "connect"},
            ],
        },
    ),
    (
        "ListGroups",
        "response",
        range(0, 3),
        "loading",
        {"throttle_time_ms": 5, "error_code": ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, "groups": []},
    ),
    (
        "OffsetForLeaderEpoch",
        "request",
        range(0, 4),
        "consumer",
        {
            "replica_id": -1,
            "topics": [
                {
                    "topic": "gpu-telemetry",
                    "partitions": [
                        {"partition": 0, "current_leader_epoch": 4, "leader_epoch": 3},
                        {"partition": 1, "current_leader_epoch": -1, "leader_epoch": 0},
                    ],
                }
            ],
        },
    ),
    (
        "OffsetForLeaderEpoch",
        "response",
        range(0, 4),
        "end-and-fenced",
        {
            "throttle_time_ms": 0,
            "topics": [
                {
                    "topic": "gpu-telemetry",
                    "partitions": [
                        {
                            "error_code": ErrorCode.NONE,
                            "partition": 0,
                            "leader_epoch": 3,
                            "end_offset": 1020,
                        },
                        {
                            "error_code": ErrorCode.FENCED_LEADER_EPOCH,
                            "partition": 1,
                            "leader_epoch": -1,
                            "end_offset": -1,
                        },
                    ],
                }
            ],
        },
    ),
]


def _message(api_name: str, direction: str) -> Message:
    api = API_BY_NAME[api_name]
    return api.request if direction == "request" else api.response


VECTOR_CASES = [
    pytest.param(
        _message(api_name, direction),
        version,
        value,
        id=f"{_message(api_name, direction).name}-v{version}-{label}",
    )
    for api_name, direction, versions, label, value in VECTORS
    for version in versions
]


def test_vectors_cover_every_advertised_version():
    """The vector table has a request and a response for every (api, version) tmq advertises,
    so the cross-implementation tests below reach all of them."""
    covered = {(case.values[0].name, case.values[1]) for case in VECTOR_CASES}
    missing = [
        (message.name, version)
        for api in API_BY_KEY.values()
        for message in (api.request, api.response)
        for version in range(api.min_version, api.max_version + 1)
        if (message.name, version) not in covered
    ]
    assert missing == []


@pytest.mark.parametrize(("message", "version", "value"), VECTOR_CASES)
def test_kafka_python_encoding_decodes_in_tmq(message, version, value):
    """tmq decodes the bytes kafka-python encodes to exactly the values encoded (fields the
    version does not carry read as their defaults)."""
    wire = _to_kp(message, version, value).encode(version=version)
    assert message.parse(wire, version) == _complete(message, version, value)


@pytest.mark.parametrize(("message", "version", "value"), VECTOR_CASES)
def test_tmq_encoding_decodes_in_kafka_python(message, version, value):
    """kafka-python decodes the bytes tmq encodes to exactly the values encoded."""
    wire = message.build(value, version)
    decoded = _kp_class(message).decode(wire, version=version)
    assert _from_kp(message, version, decoded) == _complete(message, version, value)


@pytest.mark.parametrize(("message", "version", "value"), VECTOR_CASES)
def test_both_implementations_encode_the_same_bytes(message, version, value):
    """For the same values, tmq and kafka-python produce byte-for-byte identical encodings."""
    assert message.build(value, version) == _to_kp(message, version, value).encode(version=version)


def test_tagged_fields_written_by_kafka_python_survive_tmq():
    """ApiVersions v3 tagged fields that kafka-python encodes (SupportedFeatures, the finalized
    features epoch) are kept by tmq as raw tags, re-encoded unchanged, and read back by
    kafka-python as the same typed values."""
    kp_class = _kp_class(ApiVersionsResponse)
    original = kp_class(
        version=3,
        error_code=0,
        api_keys=[
            kp_class.ApiVersion(version=3, api_key=ApiKey.FETCH, min_version=4, max_version=11)
        ],
        throttle_time_ms=0,
        supported_features=[
            kp_class.SupportedFeatureKey(
                version=3, name="metadata.version", min_version=1, max_version=20
            )
        ],
        finalized_features_epoch=42,
    )
    wire = original.encode(version=3)
    parsed = ApiVersionsResponse.parse(wire, 3)
    assert sorted(parsed.tagged_fields) == [0, 1]
    assert parsed.tagged_fields[1] == (42).to_bytes(8, "big")
    assert parsed.api_keys == [
        {"api_key": ApiKey.FETCH, "min_version": 4, "max_version": 11, "tagged_fields": {}}
    ]
    rebuilt = ApiVersionsResponse.build(parsed, 3)
    assert rebuilt == wire
    again = kp_class.decode(rebuilt, version=3)
    assert again.finalized_features_epoch == 42
    assert [(f.name, f.min_version, f.max_version) for f in again.supported_features] == [
        ("metadata.version", 1, 20)
    ]


def test_unknown_tags_written_by_tmq_reach_kafka_python():
    """Tags kafka-python does not know, written by tmq in a flexible message and in its nested
    structs, arrive in kafka-python as the same raw bytes."""
    value = {
        "error_code": 0,
        "api_keys": [
            {"api_key": 0, "min_version": 0, "max_version": 8, "tagged_fields": {7: b"\x01"}}
        ],
        "throttle_time_ms": 0,
        "tagged_fields": {9: b"opaque", 300: b""},
    }
    decoded = _kp_class(ApiVersionsResponse).decode(ApiVersionsResponse.build(value, 3), version=3)
    assert _from_kp(ApiVersionsResponse, 3, decoded) == value


# --------------------------------------------------------------------------------------------
# Generated values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "version"), ALL_MESSAGES)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_generated_values_agree_with_kafka_python(message, version, data):
    """For values generated from tmq's declaration: kafka-python decodes tmq's bytes to the same
    values (unknown tags included), kafka-python's encoding of them is byte-for-byte tmq's, and
    tmq decodes it back to them."""
    kp_class = _kp_class(message)
    flexible = message.is_flexible(version)
    value = data.draw(message_values(message, version))
    value = _drop_known_tags(
        message.name, "", kp_class._struct, message.fields, version, flexible, value
    )
    if message is ApiVersionsResponse and version > 0:
        # kafka-python reads any ApiVersions body with a non-zero error code as v0 (its reading
        # of KIP-511), so an error in a v1+ body is not a value both sides agree on.
        value["error_code"] = 0

    decoded = kp_class.decode(message.build(value, version), version=version)
    assert _from_kp(message, version, decoded) == value

    plain = _without_tags(message.fields, version, flexible, value)
    kp_wire = _to_kp(message, version, plain).encode(version=version)
    assert kp_wire == message.build(plain, version)
    assert message.parse(kp_wire, version) == plain


# --------------------------------------------------------------------------------------------
# Whole frames: size prefix, headers, bodies
# --------------------------------------------------------------------------------------------


def _vector(api_name: str, direction: str, version: int, label: str) -> dict:
    for name, side, versions, vector_label, value in VECTORS:
        if (name, side, vector_label) == (api_name, direction, label) and version in versions:
            return value
    raise LookupError(f"no {api_name} {direction} v{version} vector {label!r}")


FRAME_CASES = [
    pytest.param("Produce", 3, "transactional", "billing-producer-1", id="Produce-v3"),
    pytest.param("Produce", 8, "idempotent", "idempotent-producer-1", id="Produce-v8"),
    pytest.param("Fetch", 11, "consumer", "consumer-telemetry-sink-1", id="Fetch-v11"),
    pytest.param("Metadata", 0, "empty-topics", "admin", id="Metadata-v0"),
    pytest.param("Metadata", 8, "all-topics-null", None, id="Metadata-v8-null-client-id"),
    pytest.param("ApiVersions", 0, "software", "kafka-python-3.0.12", id="ApiVersions-v0"),
    pytest.param("ApiVersions", 3, "software", "kafka-python-3.0.12", id="ApiVersions-v3"),
    pytest.param("ApiVersions", 3, "empty-software", None, id="ApiVersions-v3-null-client-id"),
    pytest.param("JoinGroup", 5, "new-member", "consumer-telemetry-sink-1", id="JoinGroup-v5"),
    pytest.param("InitProducerId", 1, "idempotent", "ünïcode-client", id="InitProducerId-v1"),
    pytest.param("DescribeGroups", 4, "two-groups", "tmq-admin", id="DescribeGroups-v4"),
    pytest.param("ListGroups", 2, "all", "tmq-admin", id="ListGroups-v2-empty-body"),
]

RESPONSE_FRAME_CASES = [
    pytest.param("Produce", 8, "idempotent", "mixed", id="Produce-v8"),
    pytest.param("Fetch", 11, "consumer", "data-error-empty", id="Fetch-v11"),
    pytest.param("Metadata", 8, "named-topics", "cluster", id="Metadata-v8"),
    pytest.param("ApiVersions", 0, "software", "tmq-table", id="ApiVersions-v0"),
    pytest.param("ApiVersions", 3, "software", "tmq-table", id="ApiVersions-v3"),
    pytest.param("FindCoordinator", 2, "group", "found", id="FindCoordinator-v2"),
    pytest.param("SyncGroup", 3, "leader", "assigned", id="SyncGroup-v3"),
    pytest.param("DescribeGroups", 4, "two-groups", "stable-and-dead", id="DescribeGroups-v4"),
    pytest.param("ListGroups", 2, "all", "two-groups", id="ListGroups-v2"),
]

#: Near INT32 max, so a correlation id read or written with the wrong width or sign shows.
CORRELATION_ID = 2_147_480_001


@pytest.mark.parametrize(("api_name", "version", "label", "client_id"), FRAME_CASES)
def test_kafka_python_request_frame_decodes_in_tmq(api_name, version, label, client_id):
    """A request as kafka-python's connection protocol puts it on the wire (size prefix, request
    header v1, or v2 for flexible versions, then the body) splits into one frame, whose header
    tmq's read_request_header decodes and whose body tmq decodes to the values sent; tmq encodes
    the same header and body to the same bytes."""
    api = API_BY_NAME[api_name]
    value = _vector(api_name, "request", version, label)
    correlation_id = CORRELATION_ID
    connection = KafkaProtocol(client_id=client_id)
    connection.send_request(_to_kp(api.request, version, value), correlation_id=correlation_id)
    wire = connection.send_bytes()

    (frame,) = FrameDecoder().feed(wire)
    header, offset = read_request_header(frame)
    assert header == RequestHeader(api.key, version, correlation_id, client_id, {})
    assert api.request.parse(frame[offset:], version) == _complete(api.request, version, value)

    tmq_header = encode_request_header(api.key, version, correlation_id, client_id)
    assert tmq_header == frame[:offset]
    assert b"".join(encode_frame(tmq_header, api.request.build(value, version))) == wire


@pytest.mark.parametrize(("api_name", "version", "label", "client_id"), FRAME_CASES)
def test_tmq_request_frame_decodes_in_kafka_python(api_name, version, label, client_id):
    """A request frame tmq encodes (encode_request_header, then the body) is read by
    kafka-python's request class with the same header fields and body values."""
    api = API_BY_NAME[api_name]
    value = _vector(api_name, "request", version, label)
    correlation_id = CORRELATION_ID
    wire = b"".join(
        encode_frame(
            encode_request_header(api.key, version, correlation_id, client_id),
            api.request.build(value, version),
        )
    )
    decoded = _kp_class(api.request).decode(wire, version=version, header=True, framed=True)
    assert (
        decoded.header.request_api_key,
        decoded.header.request_api_version,
        decoded.header.correlation_id,
        decoded.header.client_id,
    ) == (api.key, version, correlation_id, client_id)
    assert _from_kp(api.request, version, decoded) == _complete(api.request, version, value)


@pytest.mark.parametrize(
    ("api_name", "version", "request_label", "response_label"), RESPONSE_FRAME_CASES
)
def test_tmq_response_frame_decodes_in_kafka_python(
    api_name, version, request_label, response_label
):
    """A response frame tmq encodes (size prefix, encode_response_header, body) answers a
    request kafka-python sent: kafka-python's connection protocol matches the correlation id,
    picks the header version itself (v0 for ApiVersions even in v3) and decodes the values
    tmq encoded; kafka-python's own encoding of that response frame is the same bytes."""
    api = API_BY_NAME[api_name]
    request = _vector(api_name, "request", version, request_label)
    response = _vector(api_name, "response", version, response_label)
    correlation_id = CORRELATION_ID
    connection = KafkaProtocol(client_id="kafka-python-3.0.12")
    connection.send_request(_to_kp(api.request, version, request), correlation_id=correlation_id)
    connection.send_bytes()

    header = encode_response_header(api.key, version, correlation_id)
    wire = b"".join(encode_frame(header, api.response.build(response, version)))
    ((received_id, decoded),) = connection.receive_bytes(wire)
    assert received_id == correlation_id
    assert _from_kp(api.response, version, decoded) == _complete(api.response, version, response)

    kp_response = _to_kp(api.response, version, response)
    kp_response.with_header(correlation_id=correlation_id)
    assert kp_response.encode(header=True, framed=True) == wire


def test_api_versions_v3_response_header_has_no_tag_buffer():
    """ApiVersions v3 is flexible, yet its response header is v0: the correlation id alone, the
    same bytes kafka-python writes for it; other flexible responses would carry a tag buffer."""
    kp_class = _kp_class(ApiVersionsResponse)
    response = kp_class(version=3, error_code=0, api_keys=[], throttle_time_ms=0)
    response.with_header(correlation_id=99)
    body = ApiVersionsResponse.build({"error_code": 0, "api_keys": [], "throttle_time_ms": 0}, 3)
    header = encode_response_header(ApiKey.API_VERSIONS, 3, 99)
    assert header == (99).to_bytes(4, "big")
    assert response.encode(header=True) == header + body


def test_api_versions_fallback_answers_a_newer_kafka_python():
    """kafka-python sends ApiVersions v4, above tmq's highest version: tmq reads the header
    (request header v2), answers with the v0 fallback body (UNSUPPORTED_VERSION and tmq's
    ApiVersions range) under response header v0, and kafka-python decodes that as intended by
    KIP-511: error 35 and the versions it should retry with."""
    kp_class = _kp_class(API_BY_NAME["ApiVersions"].request)
    connection = KafkaProtocol(client_id="kafka-python-3.0.12")
    request = kp_class(
        version=4, client_software_name="kafka-python", client_software_version="3.0.12"
    )
    connection.send_request(request, correlation_id=41)
    (frame,) = FrameDecoder().feed(connection.send_bytes())
    header, _offset = read_request_header(frame)
    assert header == RequestHeader(ApiKey.API_VERSIONS, 4, 41, "kafka-python-3.0.12", {})

    body = ApiVersionsResponse.build(api_versions_fallback(), 0)
    wire = b"".join(encode_frame(encode_response_header(header.api_key, 4, 41), body))
    ((received_id, decoded),) = connection.receive_bytes(wire)
    assert received_id == 41
    assert decoded.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert [(k.api_key, k.min_version, k.max_version) for k in decoded.api_keys] == [
        (ApiKey.API_VERSIONS, 0, 3)
    ]
