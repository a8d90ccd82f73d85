"""``LocalMetadataStore``: the embedded metadata store, in files of one directory.

It serves a single broker, the tests and the quick start with the same contract as the etcd
store (``tmq.cluster.store``). Everything lives in memory and on disk: every write replaces a
file atomically (``write_atomically``: temporary file, fsync, rename, fsync of the directory)
before its Deferred fires, so a write that succeeded survives a crash, and a crash or failure
half way leaves the previous contents. Calls run synchronously on the caller's thread and
return Deferreds that have already fired; watchers are called before that, see ``watch``.

On-disk layout (the directory belongs to the store)::

    <directory>/
        metadata.json       topics, partition states, the revision, the producer-id counter
        groups/
            <group>.json    the committed offsets of one consumer group

Topic metadata and offsets are kept apart so that an offset commit (every few seconds per
group) rewrites only its group's file. Files are UTF-8 JSON (non-ASCII characters escaped),
indented for people and ``jq``. ``metadata.json``::

    {
      "format": 1,
      "revision": 5,                 the last revision handed out (see below)
      "next_producer_id": 2000,      the first producer id not yet handed out
      "topics": {
        "gpu": {
          "created_revision": 3,     the revision that created this incarnation of the topic
          "partitions": 2,
          "replication_factor": 1,
          "assignment": {"0": [1], "1": [1]},
          "configs": {"retention.ms": "86400000"},
          "states": {
            "0": {"leader": 1, "leader_epoch": 0, "isr": [1], "controller_epoch": 0,
                  "version": 3},
            "1": {"leader": 1, "leader_epoch": 1, "isr": [1], "controller_epoch": 0,
                  "version": 5}
          }
        }
      }
    }

Every change of ``metadata.json`` takes the next revision; a partition state written by that
change gets it as its ``version`` (as etcd's ``mod_revision``), so versions only grow, across
topic deletions and restarts.

Membership lives in memory only, as etcd's leases do: a registration (``register_broker``) lasts
until it is closed or the store is, and never expires (its deadline is infinite). Registering
and becoming the controller each take a revision (written to ``metadata.json``, so broker and
controller epochs grow across restarts too) that is the ``broker_epoch`` or the
``controller_epoch``. Campaigners wait in line for the controller role.

``groups/<group>.json``::

    {
      "format": 1,
      "group": "sink",
      "topics": {
        "gpu": {
          "created_revision": 3,     the created_revision of the topic the offsets belong to
          "partitions": {"0": {"offset": 1200, "metadata": null, "leader_epoch": 0,
                               "commit_timestamp": 1764338400000}}
        }
      }
    }

``commit_timestamp`` (ms since the epoch) is when the offset was committed; it may be absent
(offsets committed before commit times were kept), which reads as unknown (-1).

The file name of a group is its name percent-encoded with every byte outside ``A-Z a-z 0-9 _
. - ~`` written as ``%XX`` (UTF-8), plus ``.json``: ``sink`` -> ``sink.json``, ``a/b`` ->
``a%2Fb.json``, the empty name -> ``.json``. An encoded name longer than 200 characters is cut
to 135 and followed by ``+`` and the SHA-256 of the name in hex (``+`` never occurs in an
encoded name), so every file name fits in 255 bytes. The group's real name is the ``group``
field; opening checks that it encodes to the file's name. (Group names differing only in case
share a file on a case-insensitive file system: keep such a store on Linux.)

Deleting a topic is one write of ``metadata.json``; group files are not touched. Their offsets
of the deleted topic are dropped from memory at once and from the file at the group's next
commit; at open, offsets whose ``created_revision`` is not that of a live topic of the same name
are ignored, so a topic created again never sees the offsets of its predecessor.

Opening a directory that does not exist or is empty creates the store (an empty
``metadata.json`` and ``groups/``, durably). A ``metadata.json`` or group file that cannot be
read or does not hold the format above raises ``MetadataStoreError`` naming the file, as does a
directory holding files but no ``metadata.json``: the store never starts empty over lost data.
Leftover ``*.tmp`` files of an interrupted write are ignored (the next write replaces them).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import posixpath
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import quote

from twisted.internet import defer
from twisted.logger import Logger

from tmq.storage.checkpoints import write_atomically
from tmq.storage.files import FileSystem
from tmq.storage.names import TMP_SUFFIX

from .lease import LeaseDeadline
from .store import (
    BrokerIdInUse,
    BrokerInfo,
    BrokerLost,
    BrokerRegistered,
    CommittedOffset,
    ControllerChanged,
    ControllerFence,
    Fence,
    Fenced,
    InvalidTopic,
    LeaderFence,
    MetadataEvent,
    MetadataStoreError,
    PartitionState,
    PartitionStateChanged,
    StaleVersion,
    TopicCreated,
    TopicDeleted,
    TopicExists,
    TopicSpec,
    UnknownTopic,
    check_ttl,
    validate_topic,
)

__all__ = [
    "GROUPS_DIR",
    "METADATA_FILE",
    "LocalMetadataStore",
    "LocalRegistration",
    "group_file_name",
]

METADATA_FILE = "metadata.json"
GROUPS_DIR = "groups"

_FORMAT = 1
_MAX_PRODUCER_ID = 2**63 - 1  # producer ids are INT64 on the wire
_MAX_PLAIN_GROUP_FILE = 200
_PARTITION_KEY = re.compile(r"0|[1-9][0-9]*")

_Offsets = dict[tuple[str, int], CommittedOffset]


def group_file_name(group: str) -> str:
    """The file name of ``group``'s offsets in ``groups/`` (see the module docstring)."""
    encoded = quote(group, safe="", errors="surrogatepass")
    if len(encoded) > _MAX_PLAIN_GROUP_FILE:
        digest = hashlib.sha256(group.encode("utf-8", "surrogatepass")).hexdigest()
        encoded = f"{encoded[: _MAX_PLAIN_GROUP_FILE - len(digest) - 1]}+{digest}"
    return encoded + ".json"


@dataclass(frozen=True)
class _Topic:
    """A live topic: its spec, the revision that created it, its partition states."""

    spec: TopicSpec
    created_revision: int
    states: Mapping[int, PartitionState]


@dataclass(frozen=True)
class _Metadata:
    """Everything ``metadata.json`` holds. Replaced as a whole, never changed in place."""

    revision: int
    next_producer_id: int
    topics: Mapping[str, _Topic]


class LocalRegistration:
    """A ``Registration`` of the local store: it lasts until ``close`` (see the module
    docstring)."""

    def __init__(self, store: LocalMetadataStore, info: BrokerInfo, ttl_s: float):
        self.info = info
        self.broker_epoch = info.broker_epoch
        self.deadline = LeaseDeadline(ttl_s, margin=0.0)
        self.deadline.deadline = math.inf
        self.lost: defer.Deferred[str] = defer.Deferred()
        self._store = store

    def valid(self, now: float) -> bool:
        return not self.lost.called and self.deadline.valid(now)

    def close(self) -> defer.Deferred[None]:
        self._store._end_registration(self, "closed")
        return defer.succeed(None)

    def __repr__(self) -> str:
        return f"<LocalRegistration of broker {self.info.broker_id}, epoch {self.broker_epoch}>"


class LocalMetadataStore:
    """The file-backed ``MetadataStore`` (see the module docstring). Use ``open``.

    Not thread-safe: call it from one thread (the reactor's). One store per directory: two
    processes writing the same directory would overwrite each other's changes.
    """

    _log = Logger()

    def __init__(
        self, fs: FileSystem, directory: str, metadata: _Metadata, offsets: dict[str, _Offsets]
    ):
        self.fs = fs
        self.directory = directory
        self._metadata = metadata
        self._offsets = offsets
        self._closed = False
        self._watchers: dict[int, Callable[[MetadataEvent], object]] = {}
        self._watcher_ids = itertools.count()
        self._pending_events: deque[MetadataEvent] = deque()
        self._dispatching = False
        self._registrations: dict[int, LocalRegistration] = {}
        self._controller: tuple[LocalRegistration, int] | None = None
        self._campaigners: list[tuple[LocalRegistration, defer.Deferred[int]]] = []

    @classmethod
    def open(cls, fs: FileSystem, directory: str) -> LocalMetadataStore:
        """Load the store in ``directory``, or create it there if the directory is missing or
        empty.

        :param fs: the file system the store's files are on.
        :param directory: the store's own directory (nothing else may keep files in it).
        :raises MetadataStoreError: a file is unreadable or corrupt (the message names it), or
            the directory holds files but no ``metadata.json``.
        """
        metadata_path = posixpath.join(directory, METADATA_FILE)
        try:
            if fs.exists(metadata_path):
                metadata = _load_metadata(fs, metadata_path)
                offsets = _load_groups(fs, directory, metadata)
            else:
                metadata, offsets = _Metadata(revision=0, next_producer_id=0, topics={}), {}
                _create(fs, directory, metadata)
        except OSError as error:
            raise MetadataStoreError(
                f"cannot open the metadata store in {directory}: {error}"
            ) from error
        return cls(fs, directory, metadata, offsets)

    # -- MetadataStore ----------------------------------------------------------------------

    def create_topic(
        self, spec: TopicSpec, states: Mapping[int, PartitionState], fence: Fence | None = None
    ) -> defer.Deferred[None]:
        return defer.maybeDeferred(self._create_topic, spec, states, fence)

    def delete_topic(self, name: str) -> defer.Deferred[None]:
        return defer.maybeDeferred(self._delete_topic, name)

    def topics(self) -> defer.Deferred[dict[str, TopicSpec]]:
        return defer.maybeDeferred(self._topics)

    def partition_states(self, topic: str) -> defer.Deferred[dict[int, PartitionState]]:
        return defer.maybeDeferred(self._partition_states, topic)

    def update_partition_state(
        self,
        topic: str,
        partition: int,
        state: PartitionState,
        expected_version: int,
        fence: Fence | None = None,
    ) -> defer.Deferred[PartitionState]:
        return defer.maybeDeferred(
            self._update_partition_state, topic, partition, state, expected_version, fence
        )

    def watch(self, callback: Callable[[MetadataEvent], object]) -> Callable[[], None]:
        """Subscribe ``callback`` (the ``MetadataStore`` contract).

        Watchers run synchronously inside the call that made the change, before its Deferred
        fires. A watcher that writes to the store from its callback gets its own Deferred at
        once, but the events of that write are delivered after the current event has reached
        every watcher, so every watcher sees all events in the order of the changes.
        """
        self._check_open()
        watcher_id = next(self._watcher_ids)
        self._watchers[watcher_id] = callback

        def unsubscribe() -> None:
            self._watchers.pop(watcher_id, None)

        return unsubscribe

    def commit_offsets(
        self, group: str, offsets: Mapping[tuple[str, int], CommittedOffset]
    ) -> defer.Deferred[None]:
        return defer.maybeDeferred(self._commit_offsets, group, offsets)

    def delete_offsets(self, group: str) -> defer.Deferred[None]:
        return defer.maybeDeferred(self._delete_offsets, group)

    def expire_offsets(
        self, group: str, committed_before_ms: int
    ) -> defer.Deferred[list[tuple[str, int]]]:
        return defer.maybeDeferred(self._expire_offsets, group, committed_before_ms)

    def offset_groups(self) -> defer.Deferred[list[str]]:
        return defer.maybeDeferred(self._offset_groups)

    def fetch_offsets(
        self, group: str, partitions: list[tuple[str, int]] | None
    ) -> defer.Deferred[dict[tuple[str, int], CommittedOffset]]:
        return defer.maybeDeferred(self._fetch_offsets, group, partitions)

    def allocate_producer_ids(self, count: int) -> defer.Deferred[int]:
        return defer.maybeDeferred(self._allocate_producer_ids, count)

    def register_broker(self, info: BrokerInfo, ttl_s: float) -> defer.Deferred[LocalRegistration]:
        return defer.maybeDeferred(self._register_broker, info, ttl_s)

    def live_brokers(self) -> defer.Deferred[dict[int, BrokerInfo]]:
        return defer.maybeDeferred(self._live_brokers)

    def campaign(self, registration: LocalRegistration) -> defer.Deferred[int]:
        try:
            return self._campaign(registration)
        except Exception:
            return defer.fail()

    def controller(self) -> defer.Deferred[tuple[int, int] | None]:
        return defer.maybeDeferred(self._current_controller)

    def close(self) -> defer.Deferred[None]:
        self._closed = True
        self._watchers.clear()
        for registration in list(self._registrations.values()):
            self._end_registration(registration, "the store was closed")
        return defer.succeed(None)

    # -- the calls, synchronously -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise MetadataStoreError(f"the metadata store in {self.directory} is closed")

    def _topic(self, name: str) -> _Topic:
        topic = self._metadata.topics.get(name)
        if topic is None:
            raise UnknownTopic(f"unknown topic {name!r}")
        return topic

    def _create_topic(
        self, spec: TopicSpec, states: Mapping[int, PartitionState], fence: Fence | None
    ) -> None:
        self._check_open()
        validate_topic(spec, states)
        self._check_fence(fence)
        if spec.name in self._metadata.topics:
            raise TopicExists(f"topic {spec.name} exists")
        revision = self._metadata.revision + 1
        stored = {p: replace(states[p], version=revision) for p in range(spec.partitions)}
        topics = {**self._metadata.topics, spec.name: _Topic(spec, revision, stored)}
        self._write_metadata(replace(self._metadata, revision=revision, topics=topics))
        changed = [PartitionStateChanged(spec.name, p, state) for p, state in stored.items()]
        self._emit([TopicCreated(spec), *changed])

    def _delete_topic(self, name: str) -> None:
        self._check_open()
        self._topic(name)
        topics = {key: topic for key, topic in self._metadata.topics.items() if key != name}
        revision = self._metadata.revision + 1
        self._write_metadata(replace(self._metadata, revision=revision, topics=topics))
        for group, offsets in list(self._offsets.items()):
            kept = {key: value for key, value in offsets.items() if key[0] != name}
            if kept:
                self._offsets[group] = kept
            else:
                del self._offsets[group]
        self._emit([TopicDeleted(name)])

    def _topics(self) -> dict[str, TopicSpec]:
        self._check_open()
        return {name: topic.spec for name, topic in self._metadata.topics.items()}

    def _partition_states(self, topic: str) -> dict[int, PartitionState]:
        self._check_open()
        return dict(self._topic(topic).states)

    def _update_partition_state(
        self,
        topic: str,
        partition: int,
        state: PartitionState,
        expected_version: int,
        fence: Fence | None,
    ) -> PartitionState:
        self._check_open()
        self._check_fence(fence)
        record = self._topic(topic)
        current = record.states.get(partition)
        if current is None:
            raise UnknownTopic(f"topic {topic} has no partition {partition!r}")
        if current.version != expected_version:
            raise StaleVersion(
                f"{topic}-{partition} is at version {current.version}, not {expected_version}"
            )
        revision = self._metadata.revision + 1
        stored = replace(state, version=revision)
        states = {**record.states, partition: stored}
        topics = {**self._metadata.topics, topic: replace(record, states=states)}
        self._write_metadata(replace(self._metadata, revision=revision, topics=topics))
        self._emit([PartitionStateChanged(topic, partition, stored)])
        return stored

    def _commit_offsets(
        self, group: str, offsets: Mapping[tuple[str, int], CommittedOffset]
    ) -> None:
        self._check_open()
        for topic, partition in offsets:
            if partition not in self._topic(topic).states:
                raise UnknownTopic(f"topic {topic} has no partition {partition!r}")
        if not offsets:
            return
        merged = {**self._offsets.get(group, {}), **offsets}
        path = posixpath.join(self.directory, GROUPS_DIR, group_file_name(group))
        self._write(path, self._group_document(group, merged))
        self._offsets[group] = merged

    def _delete_offsets(self, group: str) -> None:
        self._check_open()
        if group not in self._offsets:
            return
        directory = posixpath.join(self.directory, GROUPS_DIR)
        try:
            self.fs.unlink(posixpath.join(directory, group_file_name(group)))
            self.fs.fsync_dir(directory)
        except OSError as error:
            raise MetadataStoreError(f"cannot delete the offsets of {group!r}: {error}") from error
        del self._offsets[group]

    def _expire_offsets(self, group: str, committed_before_ms: int) -> list[tuple[str, int]]:
        self._check_open()
        offsets = self._offsets.get(group, {})
        expired = sorted(
            key
            for key, committed in offsets.items()
            if 0 <= committed.commit_timestamp_ms < committed_before_ms
        )
        if len(expired) == len(offsets):
            self._delete_offsets(group)
        elif expired:
            kept = {key: committed for key, committed in offsets.items() if key not in expired}
            path = posixpath.join(self.directory, GROUPS_DIR, group_file_name(group))
            self._write(path, self._group_document(group, kept))
            self._offsets[group] = kept
        return expired

    def _offset_groups(self) -> list[str]:
        self._check_open()
        return sorted(self._offsets)

    def _fetch_offsets(
        self, group: str, partitions: list[tuple[str, int]] | None
    ) -> dict[tuple[str, int], CommittedOffset]:
        self._check_open()
        committed = self._offsets.get(group, {})
        if partitions is None:
            return dict(committed)
        return {key: committed[key] for key in partitions if key in committed}

    def _allocate_producer_ids(self, count: int) -> int:
        self._check_open()
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be at least 1, not {count!r}")
        first = self._metadata.next_producer_id
        if first + count - 1 > _MAX_PRODUCER_ID:
            raise MetadataStoreError(f"producer ids are exhausted: {first} is the next one")
        self._write_metadata(
            replace(
                self._metadata,
                revision=self._metadata.revision + 1,
                next_producer_id=first + count,
            )
        )
        return first

    # -- membership -------------------------------------------------------------------------

    def _register_broker(self, info: BrokerInfo, ttl_s: float) -> LocalRegistration:
        self._check_open()
        check_ttl(ttl_s)
        if info.broker_id in self._registrations:
            raise BrokerIdInUse(f"broker {info.broker_id} is registered already")
        revision = self._next_revision()
        registration = LocalRegistration(self, replace(info, broker_epoch=revision), ttl_s)
        self._registrations[info.broker_id] = registration
        self._emit([BrokerRegistered(registration.info)])
        return registration

    def _live_brokers(self) -> dict[int, BrokerInfo]:
        self._check_open()
        return {broker: self._registrations[broker].info for broker in sorted(self._registrations)}

    def _current_controller(self) -> tuple[int, int] | None:
        self._check_open()
        if self._controller is None:
            return None
        holder, epoch = self._controller
        return holder.info.broker_id, epoch

    def _live(self, registration: LocalRegistration) -> bool:
        return self._registrations.get(registration.info.broker_id) is registration

    def _campaign(self, registration: LocalRegistration) -> defer.Deferred[int]:
        self._check_open()
        if not self._live(registration):
            raise Fenced(f"{registration!r} is not live: it cannot campaign")
        if self._controller is not None and self._controller[0] is registration:
            return defer.succeed(self._controller[1])
        waiting: defer.Deferred[int] = defer.Deferred()
        self._campaigners.append((registration, waiting))
        self._elect()
        return waiting

    def _elect(self) -> None:
        """Hand a vacant controller role to the first campaigner in line."""
        while self._controller is None and self._campaigners:
            registration, waiting = self._campaigners.pop(0)
            try:
                epoch = self._next_revision()
            except MetadataStoreError:
                waiting.errback()
                continue
            self._controller = (registration, epoch)
            self._emit([ControllerChanged(registration.info.broker_id, epoch)])
            waiting.callback(epoch)

    def _end_registration(self, registration: LocalRegistration, reason: str) -> None:
        if not self._live(registration):
            return
        del self._registrations[registration.info.broker_id]
        registration.deadline.deadline = -math.inf
        events: list[MetadataEvent] = [
            BrokerLost(registration.info.broker_id, registration.broker_epoch)
        ]
        if self._controller is not None and self._controller[0] is registration:
            events.append(ControllerChanged(None, self._controller[1]))
            self._controller = None
        waiting = [entry for entry in self._campaigners if entry[0] is registration]
        self._campaigners = [entry for entry in self._campaigners if entry[0] is not registration]
        self._emit(events)
        for _, campaign in waiting:
            campaign.errback(Fenced(f"{registration!r} ended ({reason}) while campaigning"))
        registration.lost.callback(reason)
        if not self._closed:
            self._elect()

    def _check_fence(self, fence: Fence | None) -> None:
        if fence is None:
            return
        if isinstance(fence, ControllerFence):
            epoch = None if self._controller is None else self._controller[1]
            if epoch != fence.controller_epoch:
                raise Fenced(f"controller epoch {fence.controller_epoch} is over (now {epoch})")
        elif isinstance(fence, LeaderFence):
            registration = self._registrations.get(fence.broker_id)
            epoch = None if registration is None else registration.broker_epoch
            if epoch != fence.broker_epoch:
                raise Fenced(
                    f"broker {fence.broker_id} epoch {fence.broker_epoch} is over (now {epoch})"
                )
        else:
            raise ValueError(f"not a fence: {fence!r}")

    def _next_revision(self) -> int:
        """Take the next revision, durably."""
        revision = self._metadata.revision + 1
        self._write_metadata(replace(self._metadata, revision=revision))
        return revision

    # -- writing ------------------------------------------------------------------------------

    def _write_metadata(self, metadata: _Metadata) -> None:
        """Make ``metadata`` durable, then current; on failure the current state stays."""
        self._write(posixpath.join(self.directory, METADATA_FILE), _metadata_document(metadata))
        self._metadata = metadata

    def _write(self, path: str, document: dict) -> None:
        try:
            write_atomically(self.fs, path, _encode(document))
        except OSError as error:
            raise MetadataStoreError(f"cannot write {path}: {error}") from error

    def _group_document(self, group: str, offsets: _Offsets) -> dict:
        topics: dict[str, dict] = {}
        for (topic, partition), committed in sorted(offsets.items()):
            entry = topics.setdefault(
                topic,
                {
                    "created_revision": self._metadata.topics[topic].created_revision,
                    "partitions": {},
                },
            )
            entry["partitions"][str(partition)] = {
                "offset": committed.offset,
                "metadata": committed.metadata,
                "leader_epoch": committed.leader_epoch,
                "commit_timestamp": committed.commit_timestamp_ms,
            }
        return {"format": _FORMAT, "group": group, "topics": topics}

    def _emit(self, events: list[MetadataEvent]) -> None:
        """Deliver ``events`` to every watcher, after the events queued before them."""
        self._pending_events.extend(events)
        if self._dispatching:
            return  # a watcher's own write: the loop below delivers it next
        self._dispatching = True
        try:
            while self._pending_events:
                event = self._pending_events.popleft()
                for watcher_id, callback in list(self._watchers.items()):
                    if watcher_id not in self._watchers:
                        continue  # unsubscribed by an earlier callback of this event
                    try:
                        callback(event)
                    except Exception:
                        self._log.failure(
                            "metadata watcher {callback!r} failed on {event!r}",
                            callback=callback,
                            event=event,
                        )
        finally:
            self._dispatching = False


# -- encoding -----------------------------------------------------------------------------------


def _encode(document: dict) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode("ascii")


def _state_document(state: PartitionState) -> dict:
    return {
        "leader": state.leader,
        "leader_epoch": state.leader_epoch,
        "isr": list(state.isr),
        "controller_epoch": state.controller_epoch,
        "version": state.version,
    }


def _metadata_document(metadata: _Metadata) -> dict:
    topics = {}
    for name, topic in sorted(metadata.topics.items()):
        spec = topic.spec
        topics[name] = {
            "created_revision": topic.created_revision,
            "partitions": spec.partitions,
            "replication_factor": spec.replication_factor,
            "assignment": {str(p): list(ids) for p, ids in sorted(spec.assignment.items())},
            "configs": dict(sorted(spec.configs.items())),
            "states": {str(p): _state_document(s) for p, s in sorted(topic.states.items())},
        }
    return {
        "format": _FORMAT,
        "revision": metadata.revision,
        "next_producer_id": metadata.next_producer_id,
        "topics": topics,
    }


def _create(fs: FileSystem, directory: str, metadata: _Metadata) -> None:
    """Create an empty store in ``directory``, unless it holds anything but leftovers."""
    groups_dir = posixpath.join(directory, GROUPS_DIR)
    if fs.exists(directory):
        found = [name for name in fs.listdir(directory) if name != METADATA_FILE + TMP_SUFFIX]
        if any(name != GROUPS_DIR for name in found) or (found and fs.listdir(groups_dir)):
            raise MetadataStoreError(
                f"{directory} holds {', '.join(found)} but no {METADATA_FILE}: refusing to start "
                "an empty metadata store over it"
            )
    _make_dirs_durably(fs, groups_dir)
    document = _metadata_document(metadata)
    write_atomically(fs, posixpath.join(directory, METADATA_FILE), _encode(document))


def _make_dirs_durably(fs: FileSystem, path: str) -> None:
    """Create ``path`` and its missing parents, and fsync the parent of each one created."""
    missing = []
    while path and not fs.exists(path):
        missing.append(path)
        path = posixpath.dirname(path)
    for directory in reversed(missing):
        fs.makedirs(directory)
        fs.fsync_dir(posixpath.dirname(directory) or ".")


# -- decoding -----------------------------------------------------------------------------------


class _Corrupt(Exception):
    """A document that does not have the documented format."""


def _read_json(fs: FileSystem, path: str) -> object:
    try:
        data = fs.read_file(path)
    except OSError as error:
        raise MetadataStoreError(f"{path}: cannot read: {error}") from error
    try:
        return json.loads(data)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise MetadataStoreError(f"{path}: not JSON: {error}") from None


def _get(document: object, name: str, *kinds: type) -> object:
    """``document[name]``, which must be one of ``kinds`` (never a ``bool``, which Python
    counts as an ``int``)."""
    if not isinstance(document, dict):
        raise _Corrupt(f"expected an object holding {name!r}, found {document!r}")
    if name not in document:
        raise _Corrupt(f"missing {name!r}")
    value = document[name]
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise _Corrupt(f"{name!r} is {value!r}, not {' or '.join(k.__name__ for k in kinds)}")
    return value


def _partition(key: str) -> int:
    if not _PARTITION_KEY.fullmatch(key):
        raise _Corrupt(f"{key!r} is not a partition number")
    return int(key)


def _int_list(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        raise _Corrupt(f"{what} is {value!r}, not a list of integers")
    return tuple(value)


def _check_format(document: object) -> None:
    found = _get(document, "format", int)
    if found != _FORMAT:
        raise _Corrupt(f"format {found} is not supported (only {_FORMAT})")


def _decode_topic(name: str, document: object, revision: int) -> _Topic:
    assignment = {
        _partition(key): _int_list(ids, f"the replicas of partition {key}")
        for key, ids in _get(document, "assignment", dict).items()
    }
    states = {}
    for key, state in _get(document, "states", dict).items():
        states[_partition(key)] = PartitionState(
            leader=_get(state, "leader", int),
            leader_epoch=_get(state, "leader_epoch", int),
            isr=_int_list(_get(state, "isr", list), f"the ISR of partition {key}"),
            controller_epoch=_get(state, "controller_epoch", int),
            version=_get(state, "version", int),
        )
    spec = TopicSpec(
        name=name,
        partitions=_get(document, "partitions", int),
        replication_factor=_get(document, "replication_factor", int),
        assignment=assignment,
        configs=_get(document, "configs", dict),
    )
    try:
        validate_topic(spec, states)
    except InvalidTopic as error:
        raise _Corrupt(str(error)) from None
    created = _get(document, "created_revision", int)
    newest = max([created, *(state.version for state in states.values())])
    if newest > revision:
        raise _Corrupt(f"topic {name} holds revision {newest}, above the store's {revision}")
    return _Topic(spec, created, states)


def _load_metadata(fs: FileSystem, path: str) -> _Metadata:
    document = _read_json(fs, path)
    try:
        _check_format(document)
        revision = _get(document, "revision", int)
        next_producer_id = _get(document, "next_producer_id", int)
        if next_producer_id < 0:
            raise _Corrupt(f"next_producer_id {next_producer_id} is negative")
        topics = {
            name: _decode_topic(name, topic, revision)
            for name, topic in _get(document, "topics", dict).items()
        }
    except _Corrupt as error:
        raise MetadataStoreError(f"{path}: corrupt: {error}") from None
    return _Metadata(revision, next_producer_id, topics)


def _decode_group(document: object, topics: Mapping[str, _Topic]) -> tuple[str, _Offsets]:
    """The group's name and its offsets of live topics (see the module docstring)."""
    _check_format(document)
    group = _get(document, "group", str)
    offsets: _Offsets = {}
    for topic, entry in _get(document, "topics", dict).items():
        created = _get(entry, "created_revision", int)
        decoded = {
            (topic, _partition(key)): CommittedOffset(
                offset=_get(value, "offset", int),
                metadata=_get(value, "metadata", str, type(None)),
                leader_epoch=_get(value, "leader_epoch", int),
                commit_timestamp_ms=(
                    _get(value, "commit_timestamp", int) if "commit_timestamp" in value else -1
                ),
            )
            for key, value in _get(entry, "partitions", dict).items()
        }
        live = topics.get(topic)
        if live is None or live.created_revision != created:
            continue  # offsets of a deleted topic
        for key in decoded:
            if key[1] not in live.states:
                raise _Corrupt(f"topic {topic} has no partition {key[1]}")
        offsets.update(decoded)
    return group, offsets


def _load_groups(fs: FileSystem, directory: str, metadata: _Metadata) -> dict[str, _Offsets]:
    groups_dir = posixpath.join(directory, GROUPS_DIR)
    if not fs.exists(groups_dir):
        raise MetadataStoreError(f"{groups_dir}: missing (it holds the committed offsets)")
    result = {}
    for name in fs.listdir(groups_dir):
        if name.endswith(TMP_SUFFIX):
            continue
        path = posixpath.join(groups_dir, name)
        document = _read_json(fs, path)
        try:
            group, offsets = _decode_group(document, metadata.topics)
        except _Corrupt as error:
            raise MetadataStoreError(f"{path}: corrupt: {error}") from None
        if group_file_name(group) != name:
            raise MetadataStoreError(
                f"{path}: corrupt: holds group {group!r}, whose file is {group_file_name(group)}"
            )
        if offsets:
            result[group] = offsets
    return result
