"""The blocking wrappers, run in the test's thread against the fake cluster; ReactorThread."""

from __future__ import annotations

import itertools
from concurrent.futures import Future

from fake_kafka import FakeKafka, FakeNetwork
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python import threadable
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tmq.client.admin import NewTopic
from tmq.client.consumer import TopicPartition
from tmq.client.errors import BrokerResponseError, ClientClosedError
from tmq.client.producer import RecordMetadata
from tmq.client.sync import ReactorThread, SyncAdmin, SyncConsumer, SyncProducer
from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode

GPU0 = TopicPartition("gpu", 0)


class InlineRunner:
    """A ``Runner`` for tests: runs each call in the test's thread and pumps the fake network
    until a Deferred result is there."""

    def __init__(self, network: FakeNetwork):
        self.network = network
        self.reactor = network.clock

    def call(self, function, *args, **kwargs):
        result = function(*args, **kwargs)
        if not isinstance(result, Deferred):
            return result
        outcome: list = []
        result.addBoth(outcome.append)
        for _ in range(10_000):
            if outcome:
                break
            self.network.advance(0.01)
        (value,) = outcome
        if isinstance(value, Failure):
            value.raiseException()
        return value

    def submit(self, function, *args, **kwargs) -> Future:
        future: Future = Future()
        result = function(*args, **kwargs)
        result.addCallbacks(future.set_result, lambda f: future.set_exception(f.value))
        return future


class SyncClientTests(SynchronousTestCase):
    """Producer, consumer and admin through their blocking wrappers."""

    def setUp(self):
        self.kafka = FakeKafka(broker_ids=(1,))
        self.kafka.create_topic("gpu")
        self.network = FakeNetwork(self.kafka)
        self.options = {"runner": InlineRunner(self.network), "connect": self.network.connect}

    def test_produce_then_consume(self):
        """Records sent with SyncProducer come back from SyncConsumer, in order."""
        with SyncProducer("broker-1:9092", linger_ms=1000, **self.options) as producer:
            futures = [producer.send("gpu", f"v{i}".encode(), partition=0) for i in range(3)]
            self.assertFalse(futures[0].done())
            producer.flush()
            self.assertEqual([f.result().offset for f in futures], [0, 1, 2])
            metadata = producer.send_and_wait("gpu", b"v3", partition=0)
            self.assertEqual(metadata.offset, 3)
            self.assertIsInstance(metadata, RecordMetadata)
        with SyncConsumer("broker-1:9092", auto_offset_reset="earliest", **self.options) as c:
            c.assign([GPU0])
            values = [r.value for r in itertools.islice(c, 4)]
            self.assertEqual(values, [b"v0", b"v1", b"v2", b"v3"])
            self.assertEqual(c.position(GPU0), 4)
            c.seek(GPU0, 1)
            self.assertEqual([r.offset for r in c.poll()], [1, 2, 3])
            c.commit({GPU0: 4}, "script")
            self.assertEqual(c.committed("script", [GPU0]), {GPU0: 4})

    def test_closed_producer_raises(self):
        """After ``close``, a send's future fails with ClientClosedError."""
        producer = SyncProducer("broker-1:9092", **self.options)
        producer.close()
        with self.assertRaises(ClientClosedError):
            producer.send("gpu", b"x").result(timeout=0)

    def test_admin(self):
        """Topics are created, listed, described and deleted; refusals raise."""
        with SyncAdmin("broker-1:9092", **self.options) as admin:
            admin.create_topic("new", partitions=2)
            self.assertEqual(admin.create_topics([NewTopic("other")]), {"other": None})
            self.assertEqual(admin.list_topics(), ["gpu", "new", "other"])
            self.assertEqual(admin.describe_topics(["new"])["new"].partition_count, 2)
            self.assertEqual(admin.describe_cluster().controller_id, 1)
            with self.assertRaises(BrokerResponseError) as raised:
                admin.create_topic("new")
            self.assertEqual(raised.exception.error_code, ErrorCode.TOPIC_ALREADY_EXISTS)
            admin.delete_topic("new")
            self.assertEqual(admin.delete_topics(["other"]), {"other": None})
            self.assertEqual(admin.list_topics(), ["gpu"])

    def test_admin_groups(self):
        """Groups are listed and described, their offsets read with end offsets; a group's
        error is raised by describe_group and returned by describe_groups."""
        self.kafka.add_group("sink", protocol_type="", state="Empty")
        self.kafka.committed[("sink", "gpu", 0)] = 2
        self.kafka.partitions["gpu", 0].log_end_offset = 5
        with SyncAdmin("broker-1:9092", **self.options) as admin:
            listed = admin.list_groups()
            self.assertEqual([(g.group_id, g.state) for g in listed.groups], [("sink", "Empty")])
            self.assertEqual(admin.describe_group("sink").state, "Empty")
            self.assertEqual(list(admin.describe_groups(["sink", "none"])), ["sink", "none"])
            offsets = admin.group_offsets("sink", include=[("gpu", 0)])
            self.assertEqual(offsets[GPU0].lag, 3)
            self.kafka.brokers[1].fail_next(
                ApiKey.DESCRIBE_GROUPS, ErrorCode.GROUP_AUTHORIZATION_FAILED
            )
            with self.assertRaises(BrokerResponseError) as raised:
                admin.describe_group("sink")
            self.assertEqual(raised.exception.error_code, ErrorCode.GROUP_AUTHORIZATION_FAILED)


class ImmediateReactor:
    """Runs what is handed to it from another thread at once, in the caller's thread."""

    def callFromThread(self, function, *args, **kwargs):
        function(*args, **kwargs)


class ReactorThreadTests(SynchronousTestCase):
    """Calls handed to the reactor thread and their results."""

    def test_call_returns_results_and_raises_errors(self):
        """``call`` returns a value or a fired Deferred's result, and raises its failure."""
        runner = ReactorThread(ImmediateReactor())
        self.assertEqual(runner.call(lambda x: x + 1, 1), 2)
        self.assertEqual(runner.call(succeed, "done"), "done")
        with self.assertRaises(ValueError):
            runner.call(fail, ValueError("bad"))

    def test_submit_returns_a_future(self):
        """``submit`` gives a Future of the result, or of the error."""
        runner = ReactorThread(ImmediateReactor())
        self.assertEqual(runner.submit(succeed, 3).result(timeout=0), 3)
        with self.assertRaises(KeyError):
            runner.submit(fail, KeyError("k")).result(timeout=0)

        def broken():
            raise OSError("no")

        with self.assertRaises(OSError):
            runner.submit(broken).result(timeout=0)

    def test_refuses_to_block_the_reactor_thread(self):
        """Called from the reactor thread, ``call`` raises instead of deadlocking."""
        self.patch(threadable, "ioThread", threadable.getThreadID())
        with self.assertRaises(RuntimeError):
            ReactorThread(ImmediateReactor()).call(lambda: None)
