"""``twistd tmq-broker`` and ``tmq broker``: the broker's options and its service.

Both commands take the same options (DESIGN §10); each also reads ``TMQ_<NAME>`` from the
environment (``--data-dir`` <- ``TMQ_DATA_DIR``, ...), the command line winning.
"""

from __future__ import annotations

import os
import re
import socket
import sys

from twisted.application.service import MultiService, Service
from twisted.logger import ILogObserver
from twisted.python import usage

from tmq.broker.config import BrokerConfig
from tmq.ops.http import parse_address
from tmq.ops.logs import LOG_FORMATS, log_observer
from tmq.process import tune_gc
from tmq.service import BrokerService

__all__ = ["Options", "config_from_options", "makeService"]


def _host_port(text: str, option: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as error:
        raise usage.UsageError(f"--{option} {error}") from None


class Options(usage.Options):
    """Options of a broker."""

    synopsis = "--data-dir DIR [--id N|auto] [--listen HOST:PORT] [options]"
    longdesc = (
        "Run a tmq broker: a Kafka-compatible log broker. Every option can also be set with a "
        "TMQ_* environment variable (TMQ_DATA_DIR, TMQ_LISTEN, TMQ_SET='k=v,k=v', ...)."
    )
    optParameters = [
        [
            "id",
            None,
            "0",
            "broker id: a number, or 'auto' for the ordinal at the end of the "
            "hostname (StatefulSet pods: broker-2 -> 2)",
        ],
        ["listen", None, "127.0.0.1:9092", "HOST:PORT to listen on (port 0: any free port)"],
        ["data-dir", None, None, "directory for the logs; repeat for several (required)"],
        [
            "metadata",
            None,
            "local",
            "where cluster metadata lives: 'local' (files in the first data directory; one "
            "broker) or etcd://HOST:PORT[,HOST:PORT...] (a cluster)",
        ],
        [
            "advertise",
            None,
            None,
            "HOST:PORT clients are told (default: the listen address; "
            "localhost if it listens on all interfaces)",
        ],
        ["rack", None, None, "rack of this broker (replica placement)"],
        ["cluster-id", None, "tmq", "cluster id reported to clients"],
        [
            "metrics-listen",
            None,
            None,
            "HOST:PORT serving /metrics (Prometheus), /healthz and /readyz over HTTP "
            "(default: none)",
        ],
        [
            "log-format",
            None,
            LOG_FORMATS[0],
            "log lines: text, or json (one object per line with time, level, namespace, "
            "message; under twistd -n on standard output)",
        ],
    ]

    def __init__(self):
        super().__init__()
        self["data-dirs"] = []
        self["set"] = {}
        for name, _short, _default, _doc in self.optParameters:
            value = os.environ.get("TMQ_" + name.upper().replace("-", "_"))
            if value is not None:
                self[name] = value
        if "TMQ_SET" in os.environ:
            for pair in filter(None, os.environ["TMQ_SET"].split(",")):
                self.opt_set(pair)

    def opt_data_dir(self, value: str) -> None:
        """directory for the logs; repeat for several (required)"""
        self["data-dirs"].append(value)

    def opt_set(self, pair: str) -> None:
        """KEY=VALUE broker or topic-default config (Kafka names: segment.bytes,
        retention.ms, flush.policy, min.insync.replicas, auto.create.topics.enable,
        replica.lag.time.max.ms, broker.session.timeout.ms, group.initial.rebalance.delay.ms,
        offsets.retention.minutes, ...); repeat for several"""
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise usage.UsageError(f"--set takes KEY=VALUE, not {pair!r}")
        self["set"][key.strip()] = value.strip()

    def postOptions(self) -> None:
        if not self["data-dirs"] and self["data-dir"]:
            self["data-dirs"] = [self["data-dir"]]
        if not self["data-dirs"]:
            raise usage.UsageError("--data-dir is required")
        if self["log-format"] not in LOG_FORMATS:
            raise usage.UsageError(
                f"--log-format takes {' or '.join(LOG_FORMATS)}, not {self['log-format']!r}"
            )
        self["config"] = config_from_options(self)


def _etcd_endpoints(text: str) -> tuple[tuple[str, int], ...]:
    """``local`` -> (); ``etcd://h:p[,h:p...]`` -> the endpoints."""
    if text == "local":
        return ()
    scheme, sep, rest = text.partition("://")
    if scheme != "etcd" or not sep or not rest:
        raise usage.UsageError(
            f"--metadata takes 'local' or etcd://HOST:PORT[,HOST:PORT...], not {text!r}"
        )
    endpoints = []
    for item in rest.split(","):
        host, port = _host_port(item, "metadata")
        endpoints.append((host, port))
    return tuple(endpoints)


def _broker_id(text: str) -> int:
    if text == "auto":
        match = re.search(r"(\d+)$", socket.gethostname().split(".")[0])
        if match is None:
            raise usage.UsageError(
                f"--id auto: the hostname {socket.gethostname()!r} does not end in a number"
            )
        return int(match.group(1))
    if not text.isdigit():
        raise usage.UsageError(f"--id takes a number or 'auto', not {text!r}")
    return int(text)


def config_from_options(options: Options) -> BrokerConfig:
    """The ``BrokerConfig`` the options describe.

    :raises usage.UsageError: a bad value, with what is allowed.
    """
    host, port = _host_port(options["listen"], "listen")
    if options["metrics-listen"] is not None:
        _host_port(options["metrics-listen"], "metrics-listen")
    if options["advertise"]:
        advertised_host, advertised_port = _host_port(options["advertise"], "advertise")
    else:
        advertised_host = "localhost" if host in ("0.0.0.0", "::", "") else host
        advertised_port = port
    config = BrokerConfig(
        broker_id=_broker_id(options["id"]),
        listen_host=host,
        listen_port=port,
        advertised_host=advertised_host,
        advertised_port=advertised_port,
        data_dirs=tuple(options["data-dirs"]),
        cluster_id=options["cluster-id"],
        rack=options["rack"],
        etcd_endpoints=_etcd_endpoints(options["metadata"]),
        metrics_listen=options["metrics-listen"],
    )
    try:
        return config.with_properties(options["set"])
    except ValueError as error:
        raise usage.UsageError(f"--set: {error}") from None


def makeService(options: Options) -> Service:
    """The broker service for twistd (which provides the reactor); with ``--log-format
    json`` wrapped in a ``_LoggingTo``, which makes twistd log JSON lines to standard
    output."""
    from twisted.internet import reactor

    tune_gc()
    service = BrokerService(options["config"], reactor)
    if options["log-format"] == "text":
        return service
    return _LoggingTo(service, log_observer(options["log-format"], sys.stdout))


class _LoggingTo(MultiService):
    """Holds ``service`` and chooses twistd's log observer: twistd begins logging to the
    ``ILogObserver`` component of its application, which it reads after adding this service
    to the application."""

    def __init__(self, service: Service, observer: ILogObserver):
        super().__init__()
        service.setServiceParent(self)
        self._observer = observer

    def setServiceParent(self, parent) -> None:
        parent.setComponent(ILogObserver, self._observer)
        super().setServiceParent(parent)
