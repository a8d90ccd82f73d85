"""Cluster: bootstrap parsing, metadata, leader lookup, refreshes, one connection per broker."""

from __future__ import annotations

import pytest
from fake_kafka import FakeKafka, FakeNetwork, bootstrap_of
from twisted.trial.unittest import SynchronousTestCase

from tmq.client.cluster import Cluster, parse_bootstrap
from tmq.client.errors import BrokerResponseError, ClientClosedError, ConnectionFailedError
from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode


class ParseBootstrapTests:
    """``--bootstrap HOST:PORT[,HOST:PORT...]``."""

    def test_several_servers(self):
        """Comma-separated entries become (host, port) pairs, spaces ignored."""
        assert parse_bootstrap("a:9092, b.example:19092") == [("a", 9092), ("b.example", 19092)]

    def test_ipv6_in_brackets(self):
        """An IPv6 host is written in brackets."""
        assert parse_bootstrap("[::1]:9092") == [("::1", 9092)]

    @pytest.mark.parametrize("text", ["", "a", "a:", ":9092", "a:x", "a:70000", "[::1]", ","])
    def test_bad_entries_are_refused(self, text):
        """An entry without a host or a valid port is an error naming it."""
        with pytest.raises(ValueError):
            parse_bootstrap(text)


class ClusterTests(SynchronousTestCase):
    """Metadata and connections against a fake cluster."""

    def setUp(self):
        self.kafka = FakeKafka(broker_ids=(1, 2))
        self.network = FakeNetwork(self.kafka)
        self.kafka.create_topic("gpu", partitions=2)

    def cluster(self, bootstrap=None, **kwargs) -> Cluster:
        return Cluster(
            self.kafka.clock,
            bootstrap or "broker-1:9092",
            connect=self.network.connect,
            **kwargs,
        )

    def resolve(self, d):
        self.network.flush()
        return self.successResultOf(d)

    def test_topic_metadata_names_leaders(self):
        """Asking about a topic bootstraps, sends Metadata for it and learns each leader."""
        cluster = self.cluster()
        info = self.resolve(cluster.topic("gpu"))
        self.assertEqual(info.partition_count, 2)
        self.assertEqual(cluster.leader_for("gpu", 0), 1)
        self.assertEqual(cluster.leader_for("gpu", 1), 2)
        self.assertEqual(sorted(cluster.metadata.brokers), [1, 2])
        self.assertEqual(cluster.metadata.controller_id, 1)
        (body,) = self.kafka.brokers[1].requests_of(ApiKey.METADATA)
        self.assertEqual([t.name for t in body.topics], ["gpu"])
        self.assertFalse(body.allow_auto_topic_creation)

    def test_broker_without_api_versions_v3(self):
        """A broker that parses ApiVersions up to v2 answers v3 with the KIP-511 v0 error body;
        the client retries with v0 and goes on."""
        self.kafka.brokers[1].api_versions_max = 2
        cluster = self.cluster()
        self.assertEqual(self.resolve(cluster.topic("gpu")).partition_count, 2)
        connection = self.resolve(cluster.connection(1))
        self.assertEqual(connection.api_versions_version, 0)
        self.assertEqual(self.network.connects, [("broker-1", 9092)])

    def test_unknown_topic_is_a_retriable_error(self):
        """A topic the cluster does not have fails with UNKNOWN_TOPIC_OR_PARTITION."""
        cluster = self.cluster()
        looked_up = cluster.topic("nope")
        self.network.flush()
        failure = self.failureResultOf(looked_up, BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        self.assertTrue(failure.value.retriable)

    def test_known_topic_is_answered_from_the_cache(self):
        """Fresh metadata is reused: no second Metadata request."""
        cluster = self.cluster()
        self.resolve(cluster.topic("gpu"))
        self.resolve(cluster.topic("gpu"))
        self.assertEqual(len(self.kafka.brokers[1].requests_of(ApiKey.METADATA)), 1)

    def test_one_connection_per_broker(self):
        """The bootstrap connection is reused for the broker it turns out to be."""
        cluster = self.cluster()
        self.resolve(cluster.topic("gpu"))
        first = self.resolve(cluster.connection(1))
        again = self.resolve(cluster.connection(1))
        self.resolve(cluster.connection(2))
        self.assertIs(first, again)
        self.assertEqual(self.network.connects, [("broker-1", 9092), ("broker-2", 9092)])

    def test_concurrent_connects_share_one_attempt(self):
        """Two users asking for the same broker at once get the same connection."""
        cluster = self.cluster()
        self.resolve(cluster.topic("gpu"))
        first, second = cluster.connection(2), cluster.connection(2)
        self.assertIs(self.resolve(first), self.resolve(second))
        self.assertEqual(self.network.connects.count(("broker-2", 9092)), 1)

    def test_bootstrap_moves_on_past_a_dead_server(self):
        """A refused bootstrap address is skipped for the next one."""
        self.kafka.brokers[1].up = False
        cluster = self.cluster(bootstrap_of(self.kafka))
        info = self.resolve(cluster.topic("gpu"))
        self.assertEqual(info.partition_count, 2)
        self.assertEqual(self.network.connects[:2], [("broker-1", 9092), ("broker-2", 9092)])

    def test_no_reachable_broker_fails(self):
        """With every address refusing, the request fails with ConnectionFailedError."""
        for broker in self.kafka.brokers.values():
            broker.up = False
        cluster = self.cluster(bootstrap_of(self.kafka))
        self.failureResultOf(cluster.topic("gpu"), ConnectionFailedError)

    def test_concurrent_refreshes_share_one_request(self):
        """Refreshes asked for while one is running get its answer."""
        cluster = self.cluster()
        cluster.add_topics(["gpu"])
        first, second = cluster.refresh_metadata(), cluster.refresh_metadata()
        self.assertIs(self.resolve(first), self.resolve(second))
        self.assertEqual(len(self.kafka.brokers[1].requests_of(ApiKey.METADATA)), 1)

    def test_request_update_refreshes_on_next_use(self):
        """After ``request_update`` (e.g. NOT_LEADER_OR_FOLLOWER) the next lookup refreshes and
        sees the new leader."""
        cluster = self.cluster()
        self.resolve(cluster.topic("gpu"))
        self.kafka.move_leader("gpu", 0, 2)
        self.resolve(cluster.topic("gpu"))
        self.assertEqual(cluster.leader_for("gpu", 0), 1)
        cluster.request_update()
        self.resolve(cluster.topic("gpu"))
        self.assertEqual(cluster.leader_for("gpu", 0), 2)
        self.assertEqual(cluster.metadata.topics["gpu"].partitions[0].leader_epoch, 1)

    def test_connection_loss_makes_metadata_stale(self):
        """A lost broker connection triggers a refresh on the next lookup."""
        cluster = self.cluster()
        self.resolve(cluster.topic("gpu"))
        self.kafka.brokers[1].drop_connections()
        self.network.flush()
        self.resolve(cluster.topic("gpu"))
        asked = [len(b.requests_of(ApiKey.METADATA)) for b in self.kafka.brokers.values()]
        self.assertEqual(sum(asked), 2)

    def test_old_metadata_is_refreshed(self):
        """Metadata older than ``metadata_max_age_ms`` is fetched again before use."""
        cluster = self.cluster(metadata_max_age_ms=1000)
        self.resolve(cluster.topic("gpu"))
        self.network.advance(2)
        self.resolve(cluster.topic("gpu"))
        self.assertEqual(len(self.kafka.brokers[1].requests_of(ApiKey.METADATA)), 2)

    def test_describe_all_topics(self):
        """``describe()`` asks for every topic (null topics)."""
        self.kafka.create_topic("other")
        cluster = self.cluster()
        metadata = self.resolve(cluster.describe())
        self.assertEqual(sorted(metadata.topics), ["gpu", "other"])
        (body,) = self.kafka.brokers[1].requests_of(ApiKey.METADATA)
        self.assertIsNone(body.topics)

    def test_describe_all_topics_with_metadata_v0(self):
        """Against a broker speaking only Metadata v0, all topics is an empty list."""
        self.kafka.brokers[1].api_versions[ApiKey.METADATA] = (0, 0)
        cluster = self.cluster()
        metadata = self.resolve(cluster.describe())
        self.assertEqual(sorted(metadata.topics), ["gpu"])
        (body,) = self.kafka.brokers[1].requests_of(ApiKey.METADATA)
        self.assertEqual(body.topics, [])

    def test_coordinator_is_found_once(self):
        """FindCoordinator is asked once per group; ``forget_coordinator`` asks again."""
        self.kafka.coordinator_id = 2
        cluster = self.cluster()
        self.assertEqual(self.resolve(cluster.coordinator("sink")), 2)
        self.assertEqual(self.resolve(cluster.coordinator("sink")), 2)
        cluster.forget_coordinator("sink")
        self.resolve(cluster.coordinator("sink"))
        self.assertEqual(len(self.kafka.brokers[1].requests_of(ApiKey.FIND_COORDINATOR)), 2)

    def test_coordinator_error_is_reported(self):
        """A FindCoordinator error code fails the lookup with that code."""
        self.kafka.brokers[1].fail_next(
            ApiKey.FIND_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE
        )
        cluster = self.cluster()
        found = cluster.coordinator("sink")
        self.network.flush()
        failure = self.failureResultOf(found, BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.COORDINATOR_NOT_AVAILABLE)

    def test_close_fails_later_requests(self):
        """After ``close`` every request fails with ClientClosedError."""
        cluster = self.cluster()
        self.resolve(cluster.topic("gpu"))
        cluster.close()
        self.failureResultOf(cluster.send(1, ApiKey.METADATA, {"topics": []}), ClientClosedError)
        self.failureResultOf(cluster.topic("gpu"), ClientClosedError)
