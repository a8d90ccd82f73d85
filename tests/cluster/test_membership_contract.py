"""The membership part of the ``MetadataStore`` contract: broker registrations, the controller
election, fenced writes and their watch events.

``MembershipContract`` is a mixin of the contract classes of ``test_store_contract.py``
(``MetadataStoreContract`` supplies the ``store`` fixture, ``wait``, ``wait_failure``,
``settle`` and ``create``), so the local store and the etcd store both run it. A registration
of the local store never expires, so registrations end here by ``close``; lease expiry is
checked against etcd (``tests/integration/test_etcd_membership.py``). ``LocalMembershipTests``
checks what only the local store shows.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace

import pytest
from cluster_helpers import broker, result_of, topic

from tmq.cluster.local_store import METADATA_FILE, LocalMetadataStore
from tmq.cluster.store import (
    BrokerIdInUse,
    BrokerLost,
    BrokerRegistered,
    ControllerChanged,
    ControllerFence,
    Fenced,
    LeaderFence,
    MetadataStoreError,
    PartitionStateChanged,
    TopicCreated,
)
from tmq.storage.memory_fs import MemoryFileSystem

TTL_S = 6


class MembershipContract:
    """Membership tests of the contract (a mixin, see the module docstring)."""

    def register(self, store, broker_id: int, rack: str | None = None):
        return self.wait(store.register_broker(broker(broker_id, rack), TTL_S))

    def pending(self, deferred) -> bool:
        """Whether ``deferred`` has not fired once every call in flight has finished."""
        self.settle()
        return not deferred.called

    # -- registrations --------------------------------------------------------------------

    def test_a_registered_broker_is_live_with_its_epoch(self, store):
        """register_broker fires with a valid registration whose broker_epoch is positive and
        set in its info; live_brokers lists it; a later registration has a larger epoch."""
        first = self.register(store, 1, rack="r1")
        assert first.broker_epoch > 0
        assert first.info == replace(broker(1, "r1"), broker_epoch=first.broker_epoch)
        assert first.valid(time.monotonic())
        assert not first.lost.called
        second = self.register(store, 2)
        assert second.broker_epoch > first.broker_epoch
        assert self.wait(store.live_brokers()) == {1: first.info, 2: second.info}

    def test_epochs_and_versions_share_one_counter(self, store):
        """A partition state written before a registration has a smaller version than its
        broker_epoch, one written after a larger one (brokers and the controller rely on it
        to tell a leadership of this registration from one of an earlier life)."""
        before = self.create(store, "before")
        registration = self.register(store, 1)
        after = self.create(store, "after")
        old = self.wait(store.partition_states(before.name))[0]
        new = self.wait(store.partition_states(after.name))[0]
        assert old.version < registration.broker_epoch < new.version

    def test_a_second_live_registration_of_an_id_is_refused(self, store):
        """A broker id with a live registration cannot register again (BrokerIdInUse, a
        MetadataStoreError); once that registration is closed it can, with a larger epoch."""
        first = self.register(store, 1)
        error = self.wait_failure(store.register_broker(broker(1), TTL_S), BrokerIdInUse)
        assert isinstance(error, MetadataStoreError)
        assert self.wait(store.live_brokers()) == {1: first.info}
        self.wait(first.close())
        again = self.register(store, 1)
        assert again.broker_epoch > first.broker_epoch
        assert self.wait(store.live_brokers()) == {1: again.info}

    def test_closing_a_registration_ends_it(self, store):
        """close ends a registration: lost fires with "closed", valid turns false, the broker
        leaves live_brokers; closing again does nothing."""
        registration = self.register(store, 1)
        other = self.register(store, 2)
        assert self.wait(registration.close()) is None
        assert self.wait(registration.lost) == "closed"
        assert not registration.valid(time.monotonic())
        assert self.wait(registration.close()) is None
        assert self.wait(store.live_brokers()) == {2: other.info}

    @pytest.mark.parametrize("ttl", [0, 1, 1.9, -6, "6", None])
    def test_a_lease_ttl_below_two_seconds_is_refused(self, store, ttl):
        """register_broker with a TTL that is not a number of at least 2 s fails with
        ValueError and registers nothing."""
        self.wait_failure(store.register_broker(broker(1), ttl), ValueError)
        assert self.wait(store.live_brokers()) == {}

    def test_watchers_see_brokers_come_and_go(self, store):
        """Registering sends BrokerRegistered with the epoch, closing BrokerLost; a refused
        registration sends nothing."""
        events = []
        store.watch(events.append)
        first = self.register(store, 1)
        self.wait_failure(store.register_broker(broker(1), TTL_S), BrokerIdInUse)
        self.wait(first.close())
        self.settle()
        assert events == [BrokerRegistered(first.info), BrokerLost(1, first.broker_epoch)]

    def test_closing_the_store_ends_its_registrations(self, store):
        """A store's close ends the registrations made through it (lost fires), and then
        the membership calls fail with MetadataStoreError."""
        registration = self.register(store, 1)
        self.wait(store.close())
        assert isinstance(self.wait(registration.lost), str)
        assert not registration.valid(time.monotonic())
        for deferred in [
            store.register_broker(broker(2), TTL_S),
            store.live_brokers(),
            store.controller(),
            store.campaign(registration),
        ]:
            self.wait_failure(deferred, MetadataStoreError)

    # -- the controller -------------------------------------------------------------------

    def test_the_first_campaigner_becomes_the_controller(self, store):
        """With no controller, campaign fires with a controller epoch above the broker's
        epoch; controller() reports it, a second campaign of the same registration fires with
        the same epoch, and watchers see ControllerChanged."""
        assert self.wait(store.controller()) is None
        events = []
        store.watch(events.append)
        registration = self.register(store, 1)
        epoch = self.wait(store.campaign(registration))
        assert epoch > registration.broker_epoch
        assert self.wait(store.controller()) == (1, epoch)
        assert self.wait(store.campaign(registration)) == epoch
        self.settle()
        assert events == [BrokerRegistered(registration.info), ControllerChanged(1, epoch)]

    def test_a_campaigner_waits_and_takes_over_with_a_larger_epoch(self, store):
        """While a broker is controller another's campaign waits; when the controller's
        registration ends, the waiting campaigner becomes controller with a larger epoch, and
        watchers see the loss, the vacancy and the new controller in that order."""
        first, second = self.register(store, 1), self.register(store, 2)
        first_epoch = self.wait(store.campaign(first))
        events = []
        store.watch(events.append)
        waiting = store.campaign(second)
        assert self.pending(waiting)
        assert self.wait(store.controller()) == (1, first_epoch)
        self.wait(first.close())
        second_epoch = self.wait(waiting)
        assert second_epoch > first_epoch
        assert self.wait(store.controller()) == (2, second_epoch)
        self.settle()
        assert events == [
            BrokerLost(1, first.broker_epoch),
            ControllerChanged(None, first_epoch),
            ControllerChanged(2, second_epoch),
        ]

    def test_the_controller_role_ends_with_its_registration(self, store):
        """When the controller's registration ends and nobody campaigns, there is no
        controller; a later campaign gets a larger epoch."""
        first = self.register(store, 1)
        first_epoch = self.wait(store.campaign(first))
        self.wait(first.close())
        assert self.wait(store.controller()) is None
        second = self.register(store, 2)
        assert self.wait(store.campaign(second)) > first_epoch

    def test_a_registration_that_ended_cannot_campaign(self, store):
        """campaign with a closed registration fails with Fenced; a waiting campaign fails
        with Fenced when its registration is closed, and the controller stays."""
        holder, waiter = self.register(store, 1), self.register(store, 2)
        epoch = self.wait(store.campaign(holder))
        waiting = store.campaign(waiter)
        assert self.pending(waiting)
        self.wait(waiter.close())
        self.wait_failure(waiting, Fenced)
        self.wait_failure(store.campaign(waiter), Fenced)
        assert self.wait(store.controller()) == (1, epoch)

    def test_epochs_keep_growing_across_a_reopen(self, store):
        """Broker and controller epochs handed out after the store is closed and opened again
        are larger than every epoch before; registrations do not survive the close."""
        registration = self.register(store, 1)
        controller_epoch = self.wait(store.campaign(registration))
        store = self.reopen(store)
        assert self.wait(store.live_brokers()) == {}
        assert self.wait(store.controller()) is None
        again = self.register(store, 1)
        assert again.broker_epoch > controller_epoch
        assert self.wait(store.campaign(again)) > again.broker_epoch

    # -- fences ---------------------------------------------------------------------------

    def test_a_deposed_controllers_writes_are_fenced(self, store):
        """Writes fenced with the live controller epoch succeed; once another broker is
        controller, create_topic and update_partition_state fenced with the old epoch fail
        with Fenced (before TopicExists or StaleVersion), write nothing and send no event."""
        first, second = self.register(store, 1), self.register(store, 2)
        old = self.wait(store.campaign(first))
        spec, states = topic("gpu", partitions=1)
        self.wait(store.create_topic(spec, states, fence=ControllerFence(old)))
        state = self.wait(store.partition_states("gpu"))[0]
        state = self.wait(
            store.update_partition_state(
                "gpu", 0, replace(state, leader_epoch=1), state.version, fence=ControllerFence(old)
            )
        )
        waiting = store.campaign(second)
        self.wait(first.close())
        new = self.wait(waiting)
        self.settle()
        events = []
        store.watch(events.append)
        fenced = ControllerFence(old)
        self.wait_failure(store.create_topic(*topic("other"), fence=fenced), Fenced)
        self.wait_failure(store.create_topic(spec, states, fence=fenced), Fenced)
        update = replace(state, leader_epoch=2)
        for version in (state.version, state.version - 1):
            self.wait_failure(
                store.update_partition_state("gpu", 0, update, version, fence=fenced), Fenced
            )
        self.settle()
        assert events == []
        assert list(self.wait(store.topics())) == ["gpu"]
        assert self.wait(store.partition_states("gpu")) == {0: state}
        stored = self.wait(
            store.update_partition_state("gpu", 0, update, state.version, ControllerFence(new))
        )
        assert stored.leader_epoch == 2
        self.wait(store.create_topic(*topic("other"), fence=ControllerFence(new)))
        self.settle()
        assert [type(event) for event in events] == [
            PartitionStateChanged,
            TopicCreated,
            PartitionStateChanged,
            PartitionStateChanged,
        ]

    def test_a_controller_fence_fails_without_a_controller(self, store):
        """With no controller, a ControllerFence never holds (not even epoch 0)."""
        for epoch in (0, 1, 10**6):
            self.wait_failure(store.create_topic(*topic(), fence=ControllerFence(epoch)), Fenced)
        assert self.wait(store.topics()) == {}

    def test_a_re_registered_leaders_old_fence_fails(self, store):
        """An ISR write fenced with the leader's live broker epoch succeeds; after the leader
        registers again (a new epoch), a write fenced with the old epoch fails with Fenced and
        changes nothing, one with the new epoch succeeds; an unregistered broker's fence
        fails."""
        self.create(store, partitions=1, brokers=(1, 2), replication_factor=2)
        state = self.wait(store.partition_states("gpu"))[0]
        leader = self.register(store, 1)
        shrunk = self.wait(
            store.update_partition_state(
                "gpu",
                0,
                replace(state, isr=(1,)),
                state.version,
                fence=LeaderFence(1, leader.broker_epoch),
            )
        )
        self.wait(leader.close())
        again = self.register(store, 1)
        expanded = replace(shrunk, isr=(1, 2))
        for fence in (LeaderFence(1, leader.broker_epoch), LeaderFence(2, again.broker_epoch)):
            self.wait_failure(
                store.update_partition_state("gpu", 0, expanded, shrunk.version, fence=fence),
                Fenced,
            )
        assert self.wait(store.partition_states("gpu")) == {0: shrunk}
        stored = self.wait(
            store.update_partition_state(
                "gpu", 0, expanded, shrunk.version, fence=LeaderFence(1, again.broker_epoch)
            )
        )
        assert stored.isr == (1, 2)


class LocalMembershipTests:
    """What only the local store's membership shows."""

    def test_a_local_registration_never_expires_and_its_epoch_is_durable(self):
        """A local registration stays valid at any time until closed (its deadline is
        infinite); its epoch is a revision written to metadata.json, so a reopened store
        hands out larger epochs."""
        fs = MemoryFileSystem()
        store = LocalMetadataStore.open(fs, "/meta")
        registration = result_of(store.register_broker(broker(1), TTL_S))
        assert registration.deadline.deadline == math.inf
        assert registration.valid(time.monotonic() + 10**9)
        epoch = result_of(store.campaign(registration))
        document = json.loads(fs.read_file("/meta/" + METADATA_FILE))
        assert document["revision"] == epoch
        result_of(store.close())
        assert not registration.valid(time.monotonic())
        reopened = LocalMetadataStore.open(fs, "/meta")
        assert result_of(reopened.register_broker(broker(1), TTL_S)).broker_epoch > epoch
