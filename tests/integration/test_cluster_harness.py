"""The cluster harness (``process_cluster``): its etcd, its broker processes and their faults,
its producer and its end-of-run check, on one broker with local metadata and on a cluster of
three brokers sharing an etcd."""

from __future__ import annotations

import signal
import socket
import urllib.request

import etcd3
import pytest
from cluster_workload import AckingProducer, final_check
from integration_helpers import RawClient
from invariants import ACKED, format_violations
from pipeline_helpers import wait_for
from process_cluster import BrokerNode

from tmq.protocol.apis import ApiKey

CLUSTER_SETTINGS = ("min.insync.replicas=2", "replica.lag.time.max.ms=2000")


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def etcd_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
            return b'"health":"true"' in answer.read()
    except OSError:
        return False


def assert_clean(violations) -> None:
    assert not violations, format_violations(violations)


# -- what works with any broker ------------------------------------------------------------------


def test_broker_node_command_line(tmp_path):
    """A node runs ``tmq broker`` with its id, address, dirs, metadata, rack and settings."""
    node = BrokerNode(
        2, tmp_path / "b2", "etcd://127.0.0.1:2379", "min.insync.replicas=2", rack="r1", port=9999
    )
    command = node.command()
    assert command[1:4] == ["-m", "tmq.tools.cli", "broker"]
    joined = " ".join(command)
    assert f"--data-dir {tmp_path / 'b2' / 'data'}" in joined
    assert "--listen 127.0.0.1:9999" in joined
    assert "--id 2 --metadata etcd://127.0.0.1:2379 --cluster-id tmq-test" in joined
    assert "--rack r1" in joined and "--set min.insync.replicas=2" in joined
    assert node.log_path == tmp_path / "b2" / "broker.log"
    assert node.pid is None and not node.live


def test_etcd_restarts_on_its_port_with_its_data(cluster_factory):
    """etcd killed and restarted keeps its port and keys; paused, it answers only once resumed."""
    cluster = cluster_factory(0)
    port = cluster.etcd_port
    client = etcd3.client(host="127.0.0.1", port=port, timeout=5)
    client.put("/tmq/test/kept", "1")
    client.close()
    first_pid = cluster.etcd.pid
    cluster.kill_etcd()
    assert not port_open(port)
    cluster.restart_etcd()
    assert cluster.etcd.pid != first_pid
    assert cluster.metadata_url == f"etcd://127.0.0.1:{port}"
    client = etcd3.client(host="127.0.0.1", port=port, timeout=5)
    assert client.get("/tmq/test/kept")[0] == b"1"
    client.close()
    cluster.pause_etcd()
    assert not etcd_healthy(port)
    cluster.resume_etcd()
    wait_for(lambda: etcd_healthy(port), 10, "etcd to answer after SIGCONT")


def test_broker_node_faults_on_one_local_broker(cluster_factory):
    """A broker pauses, resumes, dies on SIGKILL, restarts with its data and stops cleanly."""
    cluster = cluster_factory(1, metadata="local")
    node = cluster.broker(1)
    cluster.create_topic("faults", partitions=2, replication_factor=1)
    states = cluster.metadata("faults")
    assert sorted(states) == [0, 1]
    for state in states.values():
        assert (state.leader, state.replicas, state.isr) == (1, (1,), (1,))
        assert state.leader_epoch >= 0
    port, pid = node.port, node.pid

    node.pause()
    assert node.paused and not node.live and node.running
    with pytest.raises(AssertionError, match="none live"):
        cluster.metadata("faults")
    with RawClient(port, timeout=1) as client, pytest.raises(TimeoutError):
        client.request(ApiKey.METADATA, 7, {"topics": None, "allow_auto_topic_creation": False})
    node.resume()
    assert cluster.leader_of("faults", 0) == 1

    assert node.kill() == -signal.SIGKILL
    assert node.pid is None and not port_open(port)
    node.restart()
    assert node.port == port and node.pid != pid
    assert cluster.wait_for_leader("faults", 1) == 1
    assert "===== harness: start #2 of broker 1 =====" in node.log()
    assert node.stop() == 0


def test_acking_producers_and_the_final_check_on_one_broker(cluster_factory):
    """Both producer modes record every send acked at its offset and the final check passes."""
    cluster = cluster_factory(1, metadata="local")
    cluster.create_topic("acked", partitions=2, replication_factor=1)
    retrying = AckingProducer(cluster, "acked", 2, producer="r", rate=1000).start()
    one_try = AckingProducer(cluster, "acked", 2, producer="o", rate=1000, idempotent=False)
    one_try.start()
    retrying.wait_for_acks(300)
    one_try.wait_for_acks(300)
    attempts, acks = retrying.stop()
    more_attempts, more_acks = one_try.stop()
    assert not retrying.fatal_errors and not one_try.fatal_errors
    for sent, acked in ((attempts, acks), (more_attempts, more_acks)):
        assert len(sent) >= 300
        assert {attempt.outcome for attempt in sent} == {ACKED}
        assert len(acked) == len(sent)
        assert all(ack.offset is not None for ack in acked)
    hws = cluster.high_watermarks("acked")
    assert sum(hws.values()) == len(attempts) + len(more_attempts)
    violations = final_check(cluster, "acked", attempts + more_attempts, acks + more_acks)
    assert_clean(violations)
    assert not cluster.broker(1).running  # final_check stopped it to read its logs
    logs = cluster.replica_logs("acked", [0, 1])
    assert [log.partition for log in logs] == [0, 1]
    assert sum(len(log.records) for log in logs) == sum(hws.values())


# -- what needs clustered brokers (etcd metadata, replication, controller) ------------------------


def test_three_brokers_register_and_one_is_controller(cluster_factory):
    """Three brokers on one etcd all list each other and agree on one controller."""
    cluster = cluster_factory(3, *CLUSTER_SETTINGS, racks={1: "a", 2: "b", 3: "c"})
    controllers = set()
    for broker_id in cluster.brokers:
        view = cluster.view(via=broker_id)
        assert view.brokers == {
            i: ("127.0.0.1", n.port, n.rack) for i, n in cluster.brokers.items()
        }, f"as broker {broker_id} sees it"
        controllers.add(view.controller_id)
    assert len(controllers) == 1 and controllers <= {1, 2, 3}


def test_replicated_topic_has_three_replicas_in_sync(cluster_factory):
    """An RF=3 topic has 3 replicas, all in the ISR, and a leader every broker names."""
    cluster = cluster_factory(3, *CLUSTER_SETTINGS)
    cluster.create_topic("rf3", partitions=3, replication_factor=3)
    for partition in range(3):
        state = cluster.wait_for_isr("rf3", partition)
        assert sorted(state.replicas) == [1, 2, 3]
        assert sorted(state.isr) == [1, 2, 3]
        assert state.leader in state.replicas and state.leader_epoch >= 0
        wait_for(
            lambda p=partition, s=state: all(
                cluster.leader_of("rf3", p, via=b) == s.leader for b in cluster.brokers
            ),
            30,
            f"every broker to name {state.leader} the leader of rf3-{partition}",
            *cluster.brokers.values(),
        )
