"""``ThrowawayEtcd`` with the real ``etcd`` and the ``etcd3`` client (cslab-etcd3)."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import etcd3
import pytest

from tmq.tools.etcd import EtcdError, ThrowawayEtcd


def client_of(member: ThrowawayEtcd):
    host, port = member.endpoint.split(":")
    return etcd3.client(host=host, port=int(port), timeout=5)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def etcd_alive(pid: int) -> bool:
    """Whether ``pid`` is (still) an etcd process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"etcd" in cmdline.read()
    except OSError:
        return False


class ThrowawayEtcdTests:
    def test_serves_keys_and_leases_then_leaves_nothing(self):
        """A started member stores keys and grants leases; stopping it ends the process,
        frees the port and removes its temporary directory."""
        member = ThrowawayEtcd().start()
        try:
            pid, port, directory = member.pid, member.client_port, member.directory
            client = client_of(member)
            client.put("/tmq/test/key", "value")
            assert client.get("/tmq/test/key")[0] == b"value"
            lease = client.lease(6)
            client.put("/tmq/test/leased", "x", lease=lease)
            assert 0 < lease.remaining_ttl <= 6
            client.close()
        finally:
            member.stop()
        assert not etcd_alive(pid)
        assert not port_open(port)
        assert not directory.exists()
        member.stop()  # again: nothing to do

    def test_a_given_directory_keeps_the_data_across_restarts(self):
        directory = tempfile.mkdtemp(prefix="tmq-etcd-test-")
        try:
            with ThrowawayEtcd(directory) as member:
                client = client_of(member)
                client.put("/tmq/test/kept", "1")
                client.close()
            with ThrowawayEtcd(directory) as member:
                client = client_of(member)
                assert client.get("/tmq/test/kept")[0] == b"1"
                client.close()
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def test_a_missing_binary_names_the_package_and_creates_nothing(self, tmp_path):
        before = set(Path(tempfile.gettempdir()).glob("tmq-etcd-*"))
        with pytest.raises(EtcdError, match="apt-get install etcd-server"):
            ThrowawayEtcd(path=str(tmp_path))
        assert set(Path(tempfile.gettempdir()).glob("tmq-etcd-*")) == before
