"""Broker configuration, with the key names Kafka operators know.

``BrokerConfig.from_properties`` applies ``--set KEY=VALUE`` pairs: broker keys
(``auto.create.topics.enable``, ``num.partitions``, ``default.replication.factor``,
``min.insync.replicas``, ``socket.request.max.bytes``, ``broker.session.timeout.ms`` (the
registration lease), ``replica.lag.time.max.ms``, ``replica.window.bytes`` (tmq's stream
window), ...) and the log keys of
``tmq.storage.config.LogConfig`` (``segment.bytes``, ``retention.ms``, ``flush.policy``, ...),
which become the defaults of every topic (a topic's own configs override them).
"""

from __future__ import annotations

import dataclasses

from tmq.protocol.framing import MAX_FRAME_BYTES
from tmq.storage.config import LogConfig

__all__ = ["BrokerConfig"]

_TRUE = {"true": True, "false": False}


@dataclasses.dataclass(frozen=True)
class BrokerConfig:
    """Everything a broker process is configured with.

    :param advertised_host: the host clients are told to connect to (Metadata).
    :param advertised_port: the port clients are told; 0 means "the port actually bound".
    """

    broker_id: int = 0
    listen_host: str = "127.0.0.1"
    listen_port: int = 9092
    advertised_host: str = "localhost"
    advertised_port: int = 0
    data_dirs: tuple[str, ...] = ()
    cluster_id: str = "tmq"
    rack: str | None = None
    #: etcd endpoints of the cluster metadata; empty: the local store in the first data dir.
    etcd_endpoints: tuple[tuple[str, int], ...] = ()
    #: HOST:PORT serving /metrics, /healthz and /readyz over HTTP; ``None``: no such server.
    metrics_listen: str | None = None
    log: LogConfig = dataclasses.field(default_factory=LogConfig)
    auto_create_topics: bool = True
    num_partitions: int = 1
    default_replication_factor: int = 1
    min_insync_replicas: int = 1
    max_frame_bytes: int = MAX_FRAME_BYTES
    #: Requests a connection may have in flight before the broker stops reading from it.
    max_in_flight_requests: int = 100
    retention_check_interval_ms: int = 300_000
    checkpoint_interval_ms: int = 60_000
    offset_metadata_max_bytes: int = 4096
    #: The TTL of the broker's registration lease (kept alive every third of it).
    session_timeout_ms: int = 6000
    #: A follower not caught up for this long leaves the ISR.
    replica_lag_time_max_ms: int = 10_000
    #: Bytes of pushed batches a follower accepts unacknowledged (its stream window).
    replica_window_bytes: int = 8 * 1024 * 1024
    #: How long a new group's first join phase waits for more members.
    group_initial_rebalance_delay_ms: int = 3000
    #: The session timeouts a JoinGroup may ask for.
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1_800_000
    #: A group that stays empty this long loses its committed offsets (Kafka: 7 days).
    offsets_retention_minutes: int = 7 * 24 * 60
    offsets_retention_check_interval_ms: int = 600_000

    #: Kafka key -> (field, parser, smallest value).
    BROKER_KEYS = {
        "auto.create.topics.enable": ("auto_create_topics", "bool", None),
        "num.partitions": ("num_partitions", "int", 1),
        "default.replication.factor": ("default_replication_factor", "int", 1),
        "min.insync.replicas": ("min_insync_replicas", "int", 1),
        "socket.request.max.bytes": ("max_frame_bytes", "int", 1024),
        "max.in.flight.requests": ("max_in_flight_requests", "int", 1),
        "log.retention.check.interval.ms": ("retention_check_interval_ms", "int", 1),
        "log.flush.offset.checkpoint.interval.ms": ("checkpoint_interval_ms", "int", 1),
        "offset.metadata.max.bytes": ("offset_metadata_max_bytes", "int", 0),
        "broker.session.timeout.ms": ("session_timeout_ms", "int", 2000),
        "replica.lag.time.max.ms": ("replica_lag_time_max_ms", "int", 1),
        "replica.window.bytes": ("replica_window_bytes", "int", 1),
        "group.initial.rebalance.delay.ms": ("group_initial_rebalance_delay_ms", "int", 0),
        "group.min.session.timeout.ms": ("group_min_session_timeout_ms", "int", 0),
        "group.max.session.timeout.ms": ("group_max_session_timeout_ms", "int", 0),
        "offsets.retention.minutes": ("offsets_retention_minutes", "int", 1),
        "offsets.retention.check.interval.ms": ("offsets_retention_check_interval_ms", "int", 1),
    }

    def with_properties(self, properties: dict[str, str]) -> BrokerConfig:
        """A copy with Kafka-named ``properties`` applied (broker keys and log keys).

        :raises ValueError: an unknown key or a bad value, naming the key and what it takes.
        """
        changes: dict = {}
        log_properties = {}
        for key, text in properties.items():
            if key in LogConfig.KEYS:
                log_properties[key] = text
                continue
            if key not in self.BROKER_KEYS:
                known = sorted([*self.BROKER_KEYS, *LogConfig.KEYS])
                raise ValueError(f"unknown config {key!r}; known: {', '.join(known)}")
            name, kind, minimum = self.BROKER_KEYS[key]
            if kind == "bool":
                if text.lower() not in _TRUE:
                    raise ValueError(f"{key} must be true or false, not {text!r}")
                changes[name] = _TRUE[text.lower()]
                continue
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"{key} must be an integer, not {text!r}") from None
            if value < minimum:
                raise ValueError(f"{key} must be at least {minimum}, not {value}")
            changes[name] = value
        if log_properties:
            changes["log"] = self.log.with_properties(log_properties)
        return dataclasses.replace(self, **changes)
