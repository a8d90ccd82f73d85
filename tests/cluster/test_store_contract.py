"""The ``MetadataStore`` contract of ``tmq.cluster.store``, and what only the local store shows.

``MetadataStoreContract`` states the contract once: topics, compare-and-swap of partition
states, watch events, committed offsets, producer ids, closing, and durability across a reopen;
``MembershipContract`` (``test_membership_contract.py``) adds broker registrations, the
controller election and fenced writes.
``LocalMetadataStoreOnMemoryTests`` and ``LocalMetadataStoreOnDiskTests`` run it against
``LocalMetadataStore`` on ``MemoryFileSystem`` and on the real file system; the etcd store adds
its own class. ``LocalMetadataStoreTests`` then checks the local store's files: their format,
crashes after and during writes (``MemoryFileSystem.crash`` and injected errors), and corrupt
files at open.
"""

from __future__ import annotations

import errno
import json
import posixpath
from collections.abc import Callable
from dataclasses import replace

import pytest
from cluster_helpers import failure_of, result_of, topic
from test_membership_contract import MembershipContract
from twisted.logger import globalLogPublisher

from tmq.cluster.local_store import GROUPS_DIR, METADATA_FILE, LocalMetadataStore, group_file_name
from tmq.cluster.store import (
    CommittedOffset,
    InvalidTopic,
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
)
from tmq.protocol.errors import ErrorCode
from tmq.storage.files import OsFileSystem
from tmq.storage.memory_fs import MemoryFileSystem

#: Group names that are hard to store: empty, path-like, non-ASCII, very long.
ODD_GROUPS = ["", ".", "..", "a/b", "../x", "grüße", "%41", "x" * 1000, "x" * 1000 + "y"]


def without_version(states: dict[int, PartitionState]) -> dict[int, PartitionState]:
    return {p: replace(state, version=0) for p, state in states.items()}


class MetadataStoreContract:
    """The contract tests. A subclass supplies ``make_store`` and ``open_store``, and overrides
    ``wait``, ``wait_failure`` and ``settle`` if its Deferreds fire later (a remote store)."""

    def make_store(self, tmp_path) -> MetadataStore:
        """A store over new, empty storage (for one test)."""
        raise NotImplementedError

    def open_store(self) -> MetadataStore:
        """Another store over the storage of the last ``make_store`` (a broker restart)."""
        raise NotImplementedError

    def wait(self, deferred):
        """The result of ``deferred``."""
        return result_of(deferred)

    def wait_failure(self, deferred, *types):
        """The exception ``deferred`` fails with, one of ``types``."""
        return failure_of(deferred, *types)

    def settle(self) -> None:
        """Return once the watch events of every finished write were delivered (the local
        store delivers them before the write's Deferred fires)."""

    @pytest.fixture
    def store(self, tmp_path):
        self._stores = [self.make_store(tmp_path)]
        yield self._stores[0]
        for store in self._stores:
            self.wait(store.close())

    def reopen(self, store: MetadataStore) -> MetadataStore:
        """Close ``store`` and open the same data again."""
        self.wait(store.close())
        self._stores.append(self.open_store())
        return self._stores[-1]

    def create(self, store: MetadataStore, name: str = "gpu", **kwargs) -> TopicSpec:
        spec, states = topic(name, **kwargs)
        self.wait(store.create_topic(spec, states))
        return spec

    def snapshot(self, store: MetadataStore, groups: list[str]) -> tuple:
        """Everything readable: topics, their states, the offsets of ``groups``."""
        topics = self.wait(store.topics())
        states = {name: self.wait(store.partition_states(name)) for name in topics}
        offsets = {group: self.wait(store.fetch_offsets(group, None)) for group in groups}
        return topics, states, offsets

    # -- topics -------------------------------------------------------------------------------

    def test_a_new_store_is_empty(self, store):
        """A new store has no topics and no committed offsets."""
        assert self.wait(store.topics()) == {}
        assert self.wait(store.fetch_offsets("sink", None)) == {}

    def test_a_created_topic_is_listed_with_its_states(self, store):
        """create_topic fires with None; topics() returns the spec, partition_states the
        initial states, each with a version assigned by the store."""
        spec, states = topic(partitions=3, configs={"retention.ms": "1000", "flush.policy": "x"})
        assert self.wait(store.create_topic(spec, states)) is None
        assert self.wait(store.topics()) == {"gpu": spec}
        stored = self.wait(store.partition_states("gpu"))
        assert without_version(stored) == states
        assert all(state.version > 0 for state in stored.values())

    def test_creating_a_taken_name_fails_and_changes_nothing(self, store):
        """A second create_topic of a name fails with TopicExists (error code 36) and leaves
        the first topic as it was."""
        spec = self.create(store, partitions=2)
        before = self.wait(store.partition_states("gpu"))
        error = self.wait_failure(store.create_topic(*topic(partitions=5)), TopicExists)
        assert error.error_code == ErrorCode.TOPIC_ALREADY_EXISTS
        assert self.wait(store.topics()) == {"gpu": spec}
        assert self.wait(store.partition_states("gpu")) == before

    @pytest.mark.parametrize(
        "name", ["", ".", "..", "a" * 250, "gpu/0", "gpu 0", "gpü", "gpu\n", "*"]
    )
    def test_illegal_topic_names_are_refused(self, store, name):
        """Names outside Kafka's rules (1-249 of a-z A-Z 0-9 . _ -, not . or ..) fail with
        InvalidTopic (a ValueError, code INVALID_TOPIC_EXCEPTION); nothing is created."""
        spec, states = topic()
        error = self.wait_failure(store.create_topic(replace(spec, name=name), states), ValueError)
        assert isinstance(error, InvalidTopic)
        assert error.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
        assert "topic name" in str(error)
        assert self.wait(store.topics()) == {}

    def test_every_legal_topic_name_is_accepted(self, store):
        """The longest name (249 characters) and names of only punctuation are legal."""
        names = ["a" * 249, "-", "_", "...", "Gpu.Telemetry-2_x"]
        for name in names:
            self.create(store, name)
        assert sorted(self.wait(store.topics())) == sorted(names)

    @pytest.mark.parametrize(
        "change, code",
        [
            (lambda s, st: (replace(s, partitions=0, assignment={}), {}), "INVALID_PARTITIONS"),
            (
                lambda s, st: (replace(s, replication_factor=0, assignment={0: (), 1: ()}), st),
                "INVALID_REPLICATION_FACTOR",
            ),
            (lambda s, st: (replace(s, assignment={0: (1, 2)}), st), "INVALID_REPLICA_ASSIGNMENT"),
            (
                lambda s, st: (replace(s, assignment={**s.assignment, 2: (1, 2)}), st),
                "INVALID_REPLICA_ASSIGNMENT",
            ),
            (
                lambda s, st: (replace(s, assignment={0: (1,), 1: (2, 3)}), st),
                "INVALID_REPLICA_ASSIGNMENT",
            ),
            (
                lambda s, st: (replace(s, assignment={0: (1, 1), 1: (2, 3)}), st),
                "INVALID_REPLICA_ASSIGNMENT",
            ),
            (
                lambda s, st: (replace(s, assignment={0: (-1, 2), 1: (2, 3)}), st),
                "INVALID_REPLICA_ASSIGNMENT",
            ),
            (lambda s, st: (replace(s, configs={"retention.ms": 1000}), st), "INVALID_CONFIG"),
            (lambda s, st: (s, {0: st[0]}), "INVALID_REQUEST"),
        ],
        ids=[
            "no-partitions",
            "no-replicas",
            "partition-unassigned",
            "extra-partition",
            "too-few-replicas",
            "duplicate-replica",
            "negative-broker",
            "non-string-config",
            "state-missing",
        ],
    )
    def test_invalid_topics_are_refused(self, store, change, code):
        """A topic with no partitions, a replication factor below 1, an assignment that does
        not give every partition (and nothing else) replication-factor distinct broker ids,
        non-string configs, or initial states not covering every partition fails with
        InvalidTopic naming the Kafka error; nothing is created."""
        spec, states = change(*topic())
        error = self.wait_failure(store.create_topic(spec, states), InvalidTopic)
        assert error.error_code == ErrorCode[code]
        assert self.wait(store.topics()) == {}

    def test_deleting_a_topic_removes_it_and_its_states(self, store):
        """After delete_topic the topic is not listed and its states are unknown; other
        topics stay."""
        self.create(store, "gone")
        kept = self.create(store, "kept")
        assert self.wait(store.delete_topic("gone")) is None
        assert self.wait(store.topics()) == {"kept": kept}
        self.wait_failure(store.partition_states("gone"), UnknownTopic)

    def test_unknown_topics_and_partitions_are_reported(self, store):
        """delete_topic, partition_states and update_partition_state of a topic (or
        partition) that does not exist fail with UnknownTopic (UNKNOWN_TOPIC_OR_PARTITION)."""
        self.create(store, partitions=2)
        state = PartitionState(1, 1, (1,), 1)
        for deferred in [
            store.delete_topic("nope"),
            store.partition_states("nope"),
            store.update_partition_state("nope", 0, state, 1),
            store.update_partition_state("gpu", 2, state, 1),
        ]:
            error = self.wait_failure(deferred, UnknownTopic)
            assert error.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

    # -- compare-and-swap -----------------------------------------------------------------------

    def test_an_update_at_the_current_version_is_stored_with_a_new_version(self, store):
        """update_partition_state with the current version fires with the state as stored,
        whose version is greater than any before; only that partition changes."""
        self.create(store, partitions=2)
        before = self.wait(store.partition_states("gpu"))
        wanted = PartitionState(leader=2, leader_epoch=1, isr=(2,), controller_epoch=1)
        stored = self.wait(store.update_partition_state("gpu", 0, wanted, before[0].version))
        assert replace(stored, version=0) == wanted
        assert stored.version > max(state.version for state in before.values())
        assert self.wait(store.partition_states("gpu")) == {0: stored, 1: before[1]}
        again = self.wait(
            store.update_partition_state("gpu", 0, replace(wanted, isr=(2, 1)), stored.version)
        )
        assert again.version > stored.version

    def test_an_update_at_a_stale_version_fails_and_changes_nothing(self, store):
        """Once a state was written, an update expecting its previous version fails with
        StaleVersion and the stored state stays."""
        self.create(store)
        old = self.wait(store.partition_states("gpu"))[0]
        current = self.wait(
            store.update_partition_state("gpu", 0, replace(old, isr=(old.leader,)), old.version)
        )
        self.wait_failure(
            store.update_partition_state("gpu", 0, replace(old, leader_epoch=7), old.version),
            StaleVersion,
        )
        assert self.wait(store.partition_states("gpu"))[0] == current

    def test_the_version_of_the_given_state_is_ignored(self, store):
        """The store assigns versions: a version inside the given state does not matter."""
        self.create(store)
        current = self.wait(store.partition_states("gpu"))[0]
        forged = replace(current, leader_epoch=1, version=current.version + 1000)
        stored = self.wait(store.update_partition_state("gpu", 0, forged, current.version))
        assert stored.leader_epoch == 1
        assert stored == self.wait(store.partition_states("gpu"))[0]
        self.wait_failure(
            store.update_partition_state("gpu", 0, current, current.version + 1000),
            StaleVersion,
        )

    def test_a_version_of_a_deleted_topic_does_not_match_its_successor(self, store):
        """Versions are never reused: after a topic is deleted and created again, an update
        with a version read from the old topic fails."""
        self.create(store)
        old = self.wait(store.partition_states("gpu"))[0]
        self.wait(store.delete_topic("gpu"))
        self.create(store)
        new = self.wait(store.partition_states("gpu"))[0]
        assert new.version > old.version
        self.wait_failure(store.update_partition_state("gpu", 0, old, old.version), StaleVersion)

    # -- watch ----------------------------------------------------------------------------------

    def test_watchers_see_every_change_in_order(self, store):
        """Topic creation sends TopicCreated then one PartitionStateChanged per partition
        (with the stored versions); an update and a deletion send theirs, in order."""
        events = []
        store.watch(events.append)
        spec = self.create(store, partitions=2)
        states = self.wait(store.partition_states("gpu"))
        stored = self.wait(
            store.update_partition_state(
                "gpu", 1, replace(states[1], leader_epoch=1), states[1].version
            )
        )
        self.wait(store.delete_topic("gpu"))
        self.settle()
        assert events == [
            TopicCreated(spec),
            PartitionStateChanged("gpu", 0, states[0]),
            PartitionStateChanged("gpu", 1, states[1]),
            PartitionStateChanged("gpu", 1, stored),
            TopicDeleted("gpu"),
        ]

    def test_an_unsubscribed_watcher_hears_nothing_more(self, store):
        """After its unsubscribe function is called (twice does no harm) a watcher gets no
        events; the other watchers still do."""
        gone, kept = [], []
        unsubscribe = store.watch(gone.append)
        store.watch(kept.append)
        self.create(store, "first", partitions=1)
        self.settle()
        unsubscribe()
        unsubscribe()
        self.create(store, "second", partitions=1)
        self.settle()
        assert [type(event) for event in gone] == [TopicCreated, PartitionStateChanged]
        assert [event.spec.name for event in kept if isinstance(event, TopicCreated)] == [
            "first",
            "second",
        ]

    def test_failed_calls_offsets_and_producer_ids_send_no_events(self, store):
        """Calls that fail send no event, and neither do offset commits and producer ids."""
        self.create(store)
        current = self.wait(store.partition_states("gpu"))[0]
        events = []
        store.watch(events.append)
        self.wait_failure(store.create_topic(*topic()), TopicExists)
        self.wait_failure(store.create_topic(*topic("bad/name")), InvalidTopic)
        self.wait_failure(store.delete_topic("nope"), UnknownTopic)
        self.wait_failure(
            store.update_partition_state("gpu", 0, current, current.version - 1), StaleVersion
        )
        self.wait(store.commit_offsets("sink", {("gpu", 0): CommittedOffset(3)}))
        self.wait(store.allocate_producer_ids(10))
        self.settle()
        assert events == []

    def test_a_watcher_writing_from_its_callback_keeps_the_order(self, store):
        """A watcher that updates a state in reaction to an event does not reorder what the
        other watchers see: they get every event in the order of the changes."""

        def bump_leader_epoch(event):
            if isinstance(event, PartitionStateChanged) and event.state.leader_epoch == 0:
                state = replace(event.state, leader_epoch=1)
                store.update_partition_state(event.topic, event.partition, state, state.version)

        store.watch(bump_leader_epoch)
        events = []
        store.watch(events.append)
        self.create(store, partitions=2)
        self.settle()
        epochs = [
            (event.partition, event.state.leader_epoch)
            for event in events
            if isinstance(event, PartitionStateChanged)
        ]
        assert isinstance(events[0], TopicCreated)
        assert epochs == [(0, 0), (1, 0), (0, 1), (1, 1)]
        final = self.wait(store.partition_states("gpu"))
        assert [final[p] for p in (0, 1)] == [event.state for event in events[-2:]]

    def test_a_failing_watcher_fails_neither_the_write_nor_other_watchers(self, store):
        """An exception raised by a watcher is logged; the write succeeds and the watchers
        after it still get the event."""

        def broken(event):
            raise RuntimeError("watcher bug")

        logged = []
        store.watch(broken)
        events = []
        store.watch(events.append)
        globalLogPublisher.addObserver(logged.append)
        try:
            spec = self.create(store, partitions=1)
            self.settle()
        finally:
            globalLogPublisher.removeObserver(logged.append)
        assert events[0] == TopicCreated(spec)
        assert self.wait(store.topics()) == {"gpu": spec}
        failures = [event["log_failure"] for event in logged if "log_failure" in event]
        assert failures and all(f.check(RuntimeError) for f in failures)

    # -- committed offsets ------------------------------------------------------------------

    def test_committed_offsets_are_fetched_back(self, store):
        """Every field of a committed offset (metadata null or any string, leader epoch,
        commit time known or not) comes back; fetch with None returns every partition the
        group committed."""
        self.create(store, partitions=3)
        offsets = {
            ("gpu", 0): CommittedOffset(1200, None, 0, 1_764_338_400_000),
            ("gpu", 1): CommittedOffset(0, "", -1),
            ("gpu", 2): CommittedOffset(7, 'host=a "ü" \n', 4, 0),
        }
        assert self.wait(store.commit_offsets("sink", offsets)) is None
        assert self.wait(store.fetch_offsets("sink", None)) == offsets

    def test_a_fetch_of_named_partitions_omits_those_never_committed(self, store):
        """Named partitions the group never committed (even of unknown topics) are absent."""
        self.create(store, partitions=2)
        self.wait(store.commit_offsets("sink", {("gpu", 1): CommittedOffset(5)}))
        wanted = [("gpu", 0), ("gpu", 1), ("nope", 0)]
        assert self.wait(store.fetch_offsets("sink", wanted)) == {("gpu", 1): CommittedOffset(5)}
        assert self.wait(store.fetch_offsets("sink", [])) == {}
        assert self.wait(store.fetch_offsets("other", wanted)) == {}

    def test_a_commit_replaces_only_the_partitions_it_names(self, store):
        """A later commit overwrites the partitions it names and keeps the others."""
        self.create(store, partitions=2)
        first = {("gpu", 0): CommittedOffset(1), ("gpu", 1): CommittedOffset(1)}
        self.wait(store.commit_offsets("sink", first))
        self.wait(store.commit_offsets("sink", {("gpu", 1): CommittedOffset(9, "m", 2)}))
        self.wait(store.commit_offsets("sink", {}))
        assert self.wait(store.fetch_offsets("sink", None)) == {
            ("gpu", 0): CommittedOffset(1),
            ("gpu", 1): CommittedOffset(9, "m", 2),
        }

    def test_deleting_a_groups_offsets_keeps_the_other_groups(self, store):
        """delete_offsets forgets every offset of one group (of odd names too), keeps the
        other groups', and is no error for a group with none."""
        self.create(store, partitions=2)
        both = {("gpu", 0): CommittedOffset(1), ("gpu", 1): CommittedOffset(2)}
        for group in ("sink", "a/b", "other"):
            self.wait(store.commit_offsets(group, both))
        assert self.wait(store.delete_offsets("sink")) is None
        assert self.wait(store.delete_offsets("a/b")) is None
        self.wait(store.delete_offsets("never"))
        assert self.wait(store.fetch_offsets("sink", None)) == {}
        assert self.wait(store.fetch_offsets("a/b", None)) == {}
        assert self.wait(store.fetch_offsets("other", None)) == both
        self.wait(store.commit_offsets("sink", {("gpu", 0): CommittedOffset(5)}))
        assert self.wait(store.fetch_offsets("sink", None)) == {("gpu", 0): CommittedOffset(5)}
        store = self.reopen(store)
        assert self.wait(store.fetch_offsets("a/b", None)) == {}
        assert self.wait(store.fetch_offsets("sink", None)) == {("gpu", 0): CommittedOffset(5)}

    def test_offsets_expire_by_their_commit_time(self, store):
        """expire_offsets forgets the group's offsets committed before the given time and
        names them; later ones, those of unknown commit time and other groups' stay, also
        after a reopen; once all are gone the group is gone."""
        self.create(store, partitions=3)
        offsets = {
            ("gpu", 0): CommittedOffset(1, None, 0, 1_000),
            ("gpu", 1): CommittedOffset(2, None, 0, 5_000),
            ("gpu", 2): CommittedOffset(3),
        }
        self.wait(store.commit_offsets("a/b", offsets))
        self.wait(store.commit_offsets("other", {("gpu", 0): CommittedOffset(4, None, 0, 1_000)}))
        assert self.wait(store.expire_offsets("a/b", 5_000)) == [("gpu", 0)]
        assert self.wait(store.expire_offsets("a/b", 5_000)) == []
        assert self.wait(store.expire_offsets("never", 5_000)) == []
        store = self.reopen(store)
        assert self.wait(store.fetch_offsets("a/b", None)) == {
            key: offsets[key] for key in [("gpu", 1), ("gpu", 2)]
        }
        assert self.wait(store.fetch_offsets("other", None)) == {
            ("gpu", 0): CommittedOffset(4, None, 0, 1_000)
        }
        assert self.wait(store.expire_offsets("a/b", 2**62)) == [("gpu", 1)]
        assert self.wait(store.fetch_offsets("a/b", None)) == {("gpu", 2): CommittedOffset(3)}
        assert self.wait(store.expire_offsets("other", 1_001)) == [("gpu", 0)]
        assert self.wait(store.offset_groups()) == ["a/b"]

    def test_offset_groups_lists_every_group_holding_offsets(self, store):
        """offset_groups names every group with committed offsets (odd names included),
        sorted, and no longer one whose offsets were deleted, also after a reopen."""
        assert self.wait(store.offset_groups()) == []
        self.create(store, partitions=1)
        for group in ODD_GROUPS:
            self.wait(store.commit_offsets(group, {("gpu", 0): CommittedOffset(1)}))
        assert self.wait(store.offset_groups()) == sorted(ODD_GROUPS)
        self.wait(store.delete_offsets("a/b"))
        store = self.reopen(store)
        assert self.wait(store.offset_groups()) == sorted(set(ODD_GROUPS) - {"a/b"})

    def test_groups_of_any_name_are_kept_apart(self, store):
        """Each group, whatever its name (empty, path-like, non-ASCII, 1000 characters), has
        its own offsets."""
        self.create(store, partitions=1)
        for i, group in enumerate(ODD_GROUPS):
            self.wait(store.commit_offsets(group, {("gpu", 0): CommittedOffset(i)}))
        for i, group in enumerate(ODD_GROUPS):
            assert self.wait(store.fetch_offsets(group, None)) == {("gpu", 0): CommittedOffset(i)}

    def test_a_commit_naming_an_unknown_partition_commits_nothing(self, store):
        """A commit naming a partition or topic that does not exist fails with UnknownTopic,
        and none of its offsets are stored."""
        self.create(store, partitions=2)
        self.wait(store.commit_offsets("sink", {("gpu", 0): CommittedOffset(1)}))
        for bad in [("gpu", 2), ("nope", 0)]:
            offsets = {("gpu", 0): CommittedOffset(50), ("gpu", 1): CommittedOffset(50)}
            offsets[bad] = CommittedOffset(50)
            self.wait_failure(store.commit_offsets("sink", offsets), UnknownTopic)
        assert self.wait(store.fetch_offsets("sink", None)) == {("gpu", 0): CommittedOffset(1)}

    def test_deleting_a_topic_deletes_its_offsets_in_every_group(self, store):
        """delete_topic drops the topic's committed offsets in every group (other topics'
        stay), and a topic created again under the name starts with none."""
        self.create(store, "gone", partitions=2)
        self.create(store, "kept", partitions=1)
        for group in ("a", "b"):
            offsets = {
                ("gone", 0): CommittedOffset(1),
                ("gone", 1): CommittedOffset(2),
                ("kept", 0): CommittedOffset(3),
            }
            self.wait(store.commit_offsets(group, offsets))
        self.wait(store.commit_offsets("only-gone", {("gone", 0): CommittedOffset(4)}))
        self.wait(store.delete_topic("gone"))
        for group in ("a", "b"):
            assert self.wait(store.fetch_offsets(group, None)) == {("kept", 0): CommittedOffset(3)}
        assert self.wait(store.fetch_offsets("only-gone", None)) == {}
        self.create(store, "gone", partitions=2)
        assert self.wait(store.fetch_offsets("a", [("gone", 0), ("gone", 1)])) == {}

    # -- producer ids ---------------------------------------------------------------------------

    def test_producer_id_blocks_never_overlap(self, store):
        """Blocks of any size are disjoint and every id is non-negative."""
        blocks = []
        for count in (1, 1000, 1, 7, 1000):
            first = self.wait(store.allocate_producer_ids(count))
            blocks.append(range(first, first + count))
        ids = [i for block in blocks for i in block]
        assert len(set(ids)) == len(ids) and min(ids) >= 0

    @pytest.mark.parametrize("count", [0, -1])
    def test_a_producer_id_block_holds_at_least_one_id(self, store, count):
        """allocate_producer_ids of fewer than one id fails with ValueError."""
        self.wait_failure(store.allocate_producer_ids(count), ValueError)

    # -- values and lifecycle ---------------------------------------------------------------------

    def test_values_are_immutable(self, store):
        """Specs and states handed out cannot be changed, and changing the dicts a spec was
        built from does not change the stored topic."""
        assignment = {0: [1, 2]}
        configs = {"retention.ms": "1"}
        spec = TopicSpec("gpu", 1, 2, assignment, configs)
        self.wait(store.create_topic(spec, {0: PartitionState(1, 0, [1, 2], 0)}))
        assignment[0].append(3)
        configs["retention.ms"] = "2"
        stored = self.wait(store.topics())["gpu"]
        assert stored.assignment == {0: (1, 2)} and stored.configs == {"retention.ms": "1"}
        with pytest.raises(TypeError):
            stored.assignment[1] = (3,)
        with pytest.raises(TypeError):
            stored.configs["x"] = "y"
        assert self.wait(store.partition_states("gpu"))[0].isr == (1, 2)

    def test_a_closed_store_refuses_calls(self, store):
        """After close every call fails with MetadataStoreError; closing again is harmless."""
        self.create(store)
        assert self.wait(store.close()) is None
        assert self.wait(store.close()) is None
        state = PartitionState(1, 0, (1,), 0)
        for deferred in [
            store.create_topic(*topic("other")),
            store.delete_topic("gpu"),
            store.topics(),
            store.partition_states("gpu"),
            store.update_partition_state("gpu", 0, state, 1),
            store.commit_offsets("g", {("gpu", 0): CommittedOffset(1)}),
            store.fetch_offsets("g", None),
            store.allocate_producer_ids(1),
        ]:
            self.wait_failure(deferred, MetadataStoreError)
        with pytest.raises(MetadataStoreError):
            store.watch(lambda event: None)

    # -- durability -----------------------------------------------------------------------------

    def test_a_reopened_store_sees_everything(self, store):
        """Topics, states (with their versions), offsets of every group and the producer-id
        counter survive a close and reopen; a version read before still works for CAS."""
        self.create(store, "gpu", partitions=3, configs={"retention.ms": "60000"})
        self.create(store, "gone", partitions=1)
        self.create(store, "kept", partitions=1)
        states = self.wait(store.partition_states("gpu"))
        updated = self.wait(
            store.update_partition_state(
                "gpu", 2, replace(states[2], leader_epoch=3), states[2].version
            )
        )
        for i, group in enumerate(ODD_GROUPS):
            offsets = {
                ("gpu", i % 3): CommittedOffset(i, f"m{i}", i),
                ("kept", 0): CommittedOffset(i),
            }
            self.wait(store.commit_offsets(group, offsets))
        self.wait(store.commit_offsets("", {("gone", 0): CommittedOffset(1)}))
        self.wait(store.delete_topic("gone"))
        first = self.wait(store.allocate_producer_ids(100))
        before = self.snapshot(store, ODD_GROUPS)

        store = self.reopen(store)
        assert self.snapshot(store, ODD_GROUPS) == before
        assert self.wait(store.allocate_producer_ids(1)) >= first + 100
        stored = self.wait(
            store.update_partition_state("gpu", 2, replace(updated, isr=(1,)), updated.version)
        )
        assert stored.version > updated.version

    def test_offsets_of_a_deleted_topic_stay_deleted_after_reopen(self, store):
        """A topic deleted and created again has no committed offsets, also after a reopen."""
        self.create(store, partitions=1)
        self.wait(store.commit_offsets("sink", {("gpu", 0): CommittedOffset(10)}))
        self.wait(store.delete_topic("gpu"))
        self.create(store, partitions=1)
        store = self.reopen(store)
        assert self.wait(store.fetch_offsets("sink", None)) == {}
        self.wait(store.delete_topic("gpu"))
        self.create(store, partitions=1)
        store = self.reopen(store)
        assert self.wait(store.fetch_offsets("sink", None)) == {}


class LocalMetadataStoreOnMemoryTests(MetadataStoreContract, MembershipContract):
    """The contract, held by ``LocalMetadataStore`` on a ``MemoryFileSystem``."""

    def make_store(self, tmp_path) -> LocalMetadataStore:
        self.fs = MemoryFileSystem()
        return LocalMetadataStore.open(self.fs, "/meta")

    def open_store(self) -> LocalMetadataStore:
        return LocalMetadataStore.open(self.fs, "/meta")


class LocalMetadataStoreOnDiskTests(MetadataStoreContract, MembershipContract):
    """The contract, held by ``LocalMetadataStore`` on the real file system."""

    def make_store(self, tmp_path) -> LocalMetadataStore:
        self.directory = str(tmp_path / "meta")
        return LocalMetadataStore.open(OsFileSystem(), self.directory)

    def open_store(self) -> LocalMetadataStore:
        return LocalMetadataStore.open(OsFileSystem(), self.directory)

    def test_a_truncated_file_raises_at_open(self, store):
        """A metadata.json cut short on a real disk raises MetadataStoreError naming it."""
        self.create(store)
        path = posixpath.join(self.directory, METADATA_FILE)
        with open(path, "r+b") as handle:
            handle.truncate(20)
        with pytest.raises(MetadataStoreError, match=path):
            self.open_store()


# -- the local store's files ----------------------------------------------------------------------

DIRECTORY = "/data/meta"
METADATA_PATH = f"{DIRECTORY}/{METADATA_FILE}"
GROUPS_PATH = f"{DIRECTORY}/{GROUPS_DIR}"


def populated() -> tuple[MemoryFileSystem, LocalMetadataStore]:
    """A store holding topic ``gpu`` (2 partitions; partition 1 updated once), the offsets of
    group ``sink`` and one block of 10 producer ids."""
    fs = MemoryFileSystem()
    store = LocalMetadataStore.open(fs, DIRECTORY)
    spec, states = topic(partitions=2, configs={"retention.ms": "60000"})
    result_of(store.create_topic(spec, states))
    current = result_of(store.partition_states("gpu"))[1]
    result_of(store.update_partition_state("gpu", 1, replace(current, isr=(2,)), current.version))
    result_of(
        store.commit_offsets("sink", {("gpu", 0): CommittedOffset(42, "m", 0, 1_764_338_400_000)})
    )
    result_of(store.allocate_producer_ids(10))
    return fs, store


def state_of(store: LocalMetadataStore) -> tuple:
    """What ``populated`` stores, as far as it can be read."""
    topics = result_of(store.topics())
    states = {name: result_of(store.partition_states(name)) for name in topics}
    groups = ["sink", "other"]
    return topics, states, {g: result_of(store.fetch_offsets(g, None)) for g in groups}


def rewrite_json(fs: MemoryFileSystem, path: str, change: Callable[[dict], object]) -> None:
    document = json.loads(fs.read_file(path))
    change(document)
    fs.write_file(path, json.dumps(document).encode())


def set_at(keys: tuple, value: object) -> Callable[[dict], None]:
    """A change of a JSON document: set ``value`` at the path ``keys``."""

    def change(document: dict) -> None:
        for key in keys[:-1]:
            document = document[key]
        document[keys[-1]] = value

    return change


def delete_at(keys: tuple) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        for key in keys[:-1]:
            document = document[key]
        del document[keys[-1]]

    return change


GPU = ("topics", "gpu")


class LocalMetadataStoreTests:
    """``LocalMetadataStore``'s files: format, crash safety, corruption."""

    def test_metadata_file_is_the_documented_json(self):
        """metadata.json holds the format, revision, producer-id counter and every topic with
        its assignment, configs and states, readable as documented."""
        fs = populated()[0]
        assert json.loads(fs.read_file(METADATA_PATH)) == {
            "format": 1,
            "revision": 3,
            "next_producer_id": 10,
            "topics": {
                "gpu": {
                    "created_revision": 1,
                    "partitions": 2,
                    "replication_factor": 2,
                    "assignment": {"0": [1, 2], "1": [2, 3]},
                    "configs": {"retention.ms": "60000"},
                    "states": {
                        "0": {
                            "leader": 1,
                            "leader_epoch": 0,
                            "isr": [1, 2],
                            "controller_epoch": 1,
                            "version": 1,
                        },
                        "1": {
                            "leader": 2,
                            "leader_epoch": 0,
                            "isr": [2],
                            "controller_epoch": 1,
                            "version": 2,
                        },
                    },
                }
            },
        }

    def test_group_files_are_json_under_encoded_names(self):
        """Each group's offsets are in groups/<percent-encoded name>.json; names too long for
        a file end in a hash; every file name is unique, safe and at most 255 bytes."""
        fs, store = populated()
        assert json.loads(fs.read_file(f"{GROUPS_PATH}/sink.json")) == {
            "format": 1,
            "group": "sink",
            "topics": {
                "gpu": {
                    "created_revision": 1,
                    "partitions": {
                        "0": {
                            "offset": 42,
                            "metadata": "m",
                            "leader_epoch": 0,
                            "commit_timestamp": 1_764_338_400_000,
                        }
                    },
                }
            },
        }
        for group in ODD_GROUPS:
            result_of(store.commit_offsets(group, {("gpu", 1): CommittedOffset(1)}))
        names = fs.listdir(GROUPS_PATH)
        assert sorted(names) == sorted({group_file_name(g) for g in [*ODD_GROUPS, "sink"]})
        assert group_file_name("a/b") == "a%2Fb.json"
        assert group_file_name("") == ".json"
        assert group_file_name("grüße") == "gr%C3%BC%C3%9Fe.json"
        assert group_file_name("x" * 1000) != group_file_name("x" * 1000 + "y")
        for name in names:
            assert len(name.encode()) <= 255
            assert set(name) <= set(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789%._~+-"
            )

    def test_a_group_file_without_commit_times_reads_them_as_unknown(self):
        """Offsets written before commit times were kept (no ``commit_timestamp``) open with
        an unknown commit time (-1), so time-based expiry keeps them."""
        fs = populated()[0]
        path = f"{GROUPS_PATH}/sink.json"
        document = json.loads(fs.read_file(path))
        del document["topics"]["gpu"]["partitions"]["0"]["commit_timestamp"]
        fs.write_file(path, json.dumps(document).encode())
        reopened = LocalMetadataStore.open(fs, DIRECTORY)
        assert result_of(reopened.fetch_offsets("sink", None)) == {
            ("gpu", 0): CommittedOffset(42, "m", 0, -1)
        }
        assert result_of(reopened.expire_offsets("sink", 2**62)) == []

    def test_offset_commits_do_not_write_the_metadata_file(self):
        """A commit writes only its group's file: it succeeds while metadata.json cannot be
        written."""
        fs, store = populated()
        fs.fail("write_file", path_contains=METADATA_FILE, times=100)
        result_of(store.commit_offsets("sink", {("gpu", 1): CommittedOffset(7)}))
        result_of(store.commit_offsets("new", {("gpu", 1): CommittedOffset(8)}))
        assert result_of(LocalMetadataStore.open(fs, DIRECTORY).fetch_offsets("new", None)) == {
            ("gpu", 1): CommittedOffset(8)
        }

    def test_watchers_run_before_the_deferred_fires(self):
        """The local store calls watchers synchronously, before the write's Deferred fires."""
        store = populated()[1]
        seen = []
        store.watch(seen.append)
        deferred = store.delete_topic("gpu")
        assert seen == [TopicDeleted("gpu")]
        result_of(deferred)

    def test_nothing_is_lost_in_a_crash_after_a_call_returned(self):
        """After every kind of write, a crash (losing everything not fsynced) and a reopen
        give back exactly the state the store had; producer ids are not handed out again."""
        fs = MemoryFileSystem()
        store = LocalMetadataStore.open(fs, DIRECTORY)

        def update(store):
            current = result_of(store.partition_states("gpu"))[0]
            new = replace(current, leader_epoch=current.leader_epoch + 1)
            return store.update_partition_state("gpu", 0, new, current.version)

        writes = [
            lambda s: s.create_topic(*topic("gpu")),
            lambda s: s.create_topic(*topic("other", partitions=1)),
            update,
            lambda s: s.commit_offsets("sink", {("gpu", 0): CommittedOffset(1)}),
            lambda s: s.commit_offsets("other", {("other", 0): CommittedOffset(2)}),
            lambda s: s.commit_offsets("sink", {("gpu", 1): CommittedOffset(3, "x", 1)}),
            update,
            lambda s: s.delete_topic("other"),
        ]
        for write in writes:
            result_of(write(store))
            before = state_of(store)
            fs.crash()
            store = LocalMetadataStore.open(fs, DIRECTORY)
            assert state_of(store) == before
        first = result_of(store.allocate_producer_ids(10))
        fs.crash()
        store = LocalMetadataStore.open(fs, DIRECTORY)
        assert result_of(store.allocate_producer_ids(1)) >= first + 10

    def test_a_store_created_just_before_a_crash_opens_again(self):
        """Creating the store is durable: after a crash it opens, empty, without error."""
        fs = MemoryFileSystem()
        LocalMetadataStore.open(fs, DIRECTORY)
        fs.crash()
        assert sorted(fs.listdir(DIRECTORY)) == [GROUPS_DIR, METADATA_FILE]
        assert result_of(LocalMetadataStore.open(fs, DIRECTORY).topics()) == {}

    @pytest.mark.parametrize("op", ["write_file", "rename", "fsync_dir"])
    @pytest.mark.parametrize(
        "write, file",
        [
            (lambda s: s.create_topic(*topic("new")), METADATA_FILE),
            (lambda s: s.delete_topic("gpu"), METADATA_FILE),
            (
                lambda s: s.update_partition_state("gpu", 0, PartitionState(2, 1, (2,), 1), 1),
                METADATA_FILE,
            ),
            (lambda s: s.allocate_producer_ids(5), METADATA_FILE),
            (lambda s: s.commit_offsets("sink", {("gpu", 0): CommittedOffset(99)}), GROUPS_DIR),
            (lambda s: s.commit_offsets("new", {("gpu", 0): CommittedOffset(99)}), GROUPS_DIR),
        ],
        ids=["create", "delete", "update", "producer-ids", "commit", "commit-new-group"],
    )
    def test_a_write_failing_half_way_leaves_the_old_state(self, op, write, file):
        """A write whose temporary file, rename or directory fsync fails fails with
        MetadataStoreError (caused by the OSError) and sends no event; the store keeps the
        old state, and so does the disk after a crash."""
        fs, store = populated()
        before = state_of(store)
        events = []
        store.watch(events.append)
        # the directory fsync is of DIRECTORY or of GROUPS_PATH, which contains it
        fs.fail(op, path_contains=DIRECTORY if op == "fsync_dir" else file)
        error = failure_of(write(store), MetadataStoreError)
        assert type(error) is MetadataStoreError
        assert isinstance(error.__cause__, OSError)
        assert events == []
        assert state_of(store) == before
        fs.crash()
        reopened = LocalMetadataStore.open(fs, DIRECTORY)
        assert state_of(reopened) == before
        assert result_of(reopened.allocate_producer_ids(1)) >= 10

    def test_a_write_after_a_failed_one_succeeds(self):
        """After a write failed at the directory fsync (its file already renamed into place),
        the store still holds the old state; a retry with the old version succeeds and
        survives a crash."""
        fs, store = populated()
        current = result_of(store.partition_states("gpu"))[0]
        wanted = replace(current, leader_epoch=5)
        fs.fail("fsync_dir", path_contains=DIRECTORY)
        failure_of(
            store.update_partition_state("gpu", 0, wanted, current.version), MetadataStoreError
        )
        assert result_of(store.partition_states("gpu"))[0] == current
        stored = result_of(store.update_partition_state("gpu", 0, wanted, current.version))
        fs.crash()
        reopened = LocalMetadataStore.open(fs, DIRECTORY)
        assert result_of(reopened.partition_states("gpu"))[0] == stored

    @pytest.mark.parametrize(
        "change",
        [
            lambda fs: fs.write_file(METADATA_PATH, b""),
            lambda fs: fs.write_file(METADATA_PATH, b'{"format": 1, "revision": '),
            lambda fs: fs.write_file(METADATA_PATH, b"\xff\xfe\x00garbage"),
            lambda fs: fs.write_file(METADATA_PATH, b"[]"),
            lambda fs: rewrite_json(fs, METADATA_PATH, set_at(("format",), 2)),
            lambda fs: rewrite_json(fs, METADATA_PATH, delete_at(("topics",))),
            lambda fs: rewrite_json(fs, METADATA_PATH, set_at(("revision",), "3")),
            lambda fs: rewrite_json(fs, METADATA_PATH, set_at(("next_producer_id",), True)),
            lambda fs: rewrite_json(fs, METADATA_PATH, set_at(("next_producer_id",), -1)),
            lambda fs: rewrite_json(fs, METADATA_PATH, set_at(("revision",), 1)),
            lambda fs: rewrite_json(fs, METADATA_PATH, set_at(("topics", "a/b"), {})),
            lambda fs: rewrite_json(fs, METADATA_PATH, set_at((*GPU, "partitions"), 3)),
            lambda fs: rewrite_json(fs, METADATA_PATH, set_at((*GPU, "states"), [])),
            lambda fs: rewrite_json(fs, METADATA_PATH, set_at((*GPU, "assignment", "0"), [1])),
            lambda fs: rewrite_json(fs, METADATA_PATH, set_at((*GPU, "assignment", "0"), 1)),
            lambda fs: rewrite_json(
                fs, METADATA_PATH, set_at((*GPU, "states", "01"), {"leader": 1})
            ),
            lambda fs: rewrite_json(
                fs, METADATA_PATH, delete_at((*GPU, "states", "1", "controller_epoch"))
            ),
            lambda fs: rewrite_json(fs, METADATA_PATH, set_at((*GPU, "configs", "x"), 1)),
        ],
        ids=[
            "empty",
            "truncated",
            "not-utf8",
            "not-an-object",
            "unknown-format",
            "no-topics",
            "string-revision",
            "bool-producer-id",
            "negative-producer-id",
            "revision-below-a-version",
            "illegal-topic-name",
            "partition-count-mismatch",
            "states-not-an-object",
            "assignment-too-short",
            "assignment-not-a-list",
            "partition-key-01",
            "state-field-missing",
            "config-not-a-string",
        ],
    )
    def test_a_corrupt_metadata_file_raises_at_open(self, change):
        """A metadata.json that is not the documented JSON raises MetadataStoreError naming
        the file, never opens an empty store."""
        fs = populated()[0]
        change(fs)
        with pytest.raises(MetadataStoreError, match=METADATA_PATH):
            LocalMetadataStore.open(fs, DIRECTORY)

    @pytest.mark.parametrize(
        "change",
        [
            lambda fs, path: fs.write_file(path, b"{"),
            lambda fs, path: rewrite_json(fs, path, set_at(("group",), "other")),
            lambda fs, path: rewrite_json(fs, path, set_at(("group",), None)),
            lambda fs, path: rewrite_json(
                fs, path, set_at((*GPU, "partitions", "7"), {"offset": 1})
            ),
            lambda fs, path: rewrite_json(
                fs, path, set_at((*GPU, "partitions", "0", "offset"), "42")
            ),
            lambda fs, path: rewrite_json(
                fs, path, set_at((*GPU, "partitions", "0", "metadata"), 5)
            ),
            lambda fs, path: rewrite_json(fs, path, delete_at((*GPU, "created_revision"))),
        ],
        ids=[
            "not-json",
            "name-of-another-file",
            "name-not-a-string",
            "unknown-partition",
            "string-offset",
            "metadata-not-a-string",
            "no-created-revision",
        ],
    )
    def test_a_corrupt_group_file_raises_at_open(self, change):
        """A group file that is not the documented JSON, or holds another group than its name
        says, raises MetadataStoreError naming the file."""
        fs = populated()[0]
        path = f"{GROUPS_PATH}/sink.json"
        change(fs, path)
        with pytest.raises(MetadataStoreError, match=path):
            LocalMetadataStore.open(fs, DIRECTORY)

    @pytest.mark.parametrize("path", [METADATA_PATH, f"{GROUPS_PATH}/sink.json"])
    def test_an_unreadable_file_raises_at_open(self, path):
        """A file whose read fails (EIO) raises MetadataStoreError naming it."""
        fs = populated()[0]
        fs.fail("read", errno.EIO, path_contains=path)
        with pytest.raises(MetadataStoreError, match=path) as raised:
            LocalMetadataStore.open(fs, DIRECTORY)
        assert isinstance(raised.value.__cause__, OSError)

    @pytest.mark.parametrize(
        "make",
        [
            lambda fs: fs.write_file(f"{DIRECTORY}/stray", b""),
            lambda fs: fs.write_file(f"{GROUPS_PATH}/sink.json", b"{}"),
        ],
        ids=["a-stray-file", "group-files"],
    )
    def test_a_directory_without_a_metadata_file_is_refused(self, make):
        """A directory that holds files (other than leftovers of an interrupted creation) but
        no metadata.json raises MetadataStoreError instead of starting empty."""
        fs = MemoryFileSystem()
        fs.makedirs(GROUPS_PATH)
        make(fs)
        with pytest.raises(MetadataStoreError, match=r"no metadata\.json"):
            LocalMetadataStore.open(fs, DIRECTORY)

    def test_a_store_with_its_groups_directory_missing_is_refused(self):
        """A metadata.json without the groups/ directory (offsets lost) raises
        MetadataStoreError."""
        fs = populated()[0]
        fs.rmtree(GROUPS_PATH)
        with pytest.raises(MetadataStoreError, match=GROUPS_PATH):
            LocalMetadataStore.open(fs, DIRECTORY)

    def test_leftovers_of_interrupted_writes_are_ignored(self):
        """An empty directory with an empty groups/ or a half-written metadata.json.tmp
        becomes a new store; *.tmp files next to a store's files are ignored."""
        fs = MemoryFileSystem()
        fs.makedirs(GROUPS_PATH)
        fs.write_file(f"{METADATA_PATH}.tmp", b"{")
        assert result_of(LocalMetadataStore.open(fs, DIRECTORY).topics()) == {}
        fs, store = populated()
        before = state_of(store)
        fs.write_file(f"{METADATA_PATH}.tmp", b"{")
        fs.write_file(f"{GROUPS_PATH}/sink.json.tmp", b"{")
        assert state_of(LocalMetadataStore.open(fs, DIRECTORY)) == before

    def test_producer_ids_end_at_the_int64_limit(self):
        """The last producer id is 2**63 - 1; a block reaching beyond it fails with
        MetadataStoreError and the counter stays."""
        fs, store = populated()
        rewrite_json(fs, METADATA_PATH, set_at(("next_producer_id",), 2**63 - 3))
        store = LocalMetadataStore.open(fs, DIRECTORY)
        failure_of(store.allocate_producer_ids(4), MetadataStoreError)
        assert result_of(store.allocate_producer_ids(3)) == 2**63 - 3
        failure_of(store.allocate_producer_ids(1), MetadataStoreError)
