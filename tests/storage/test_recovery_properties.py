"""Recovery of a partition log as properties: a crash at any byte, random logs cut anywhere,
bit rot anywhere in the segment files, and damaged indexes on a clean open.

Every test builds a log in a ``MemoryFileSystem``, damages its files (through the crash model
or ``corrupt``) and loads it again. The log must then hold a prefix of what was appended, byte
for byte (so offsets and leader epochs too, which lie outside the CRC), its indexes must be
what the sparse-index rule gives, its leader-epoch cache must list the epochs of the surviving
batches, and a new append must continue at the recovered log end offset
(``storage_helpers.check_log`` and ``check_append_continues``).
"""

from __future__ import annotations

import functools
import posixpath

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import (
    LOG_DIR,
    T0,
    BatchSpec,
    Snapshot,
    append_spec,
    batch_specs,
    build_log,
    check_append_continues,
    check_log,
    client_batch,
    create_log,
    fixed_specs,
    index_entries,
    is_prefix,
    load_log,
    new_fs,
    state_of,
    surviving,
)

from tmq.protocol.compression import Codec
from tmq.protocol.records import read_batch_header
from tmq.storage.config import LogConfig
from tmq.storage.errors import CorruptRecord, KafkaStorageError
from tmq.storage.memory_fs import MemoryFileSystem
from tmq.storage.names import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, segment_file

FIXED_CONFIG = LogConfig(segment_bytes=2048, index_interval_bytes=256)
#: Byte range of partitionLeaderEpoch in a batch (outside the CRC, like baseOffset at 0..8).
EPOCH_FIELD = range(12, 16)
SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,
)


@functools.cache
def fixed_log() -> tuple[Snapshot, tuple]:
    """The fixed log of at most 8 KiB (several segments, epochs and codecs), as files."""
    fs, appended = build_log(FIXED_CONFIG, fixed_specs(8192))
    return Snapshot.of(fs), tuple(appended)


def config_for(specs: list[BatchSpec], segment_bytes: int, interval: int) -> LogConfig:
    """A config whose segments can hold the largest batch of ``specs``."""
    largest = max(len(client_batch(spec, salt)[0]) for salt, spec in enumerate(specs))
    return LogConfig(segment_bytes=max(segment_bytes, largest), index_interval_bytes=interval)


def batch_starts(snapshot: Snapshot) -> dict[str, list[int]]:
    """The position of every batch in each ``.log`` file of ``snapshot``."""
    starts = {}
    for name in snapshot.log_starts:
        data, position, found = snapshot.files[name], 0, []
        while position < len(data):
            found.append(position)
            position += read_batch_header(data, position).size
        starts[name] = found
    return starts


def top_epoch(appended) -> int:
    return max(batch.epoch for batch in appended)


class CrashAtEveryByteTests:
    """One fixed log of at most 8 KiB, crashed at each byte of its segment files in turn."""

    def test_fixed_log_has_what_the_properties_need(self):
        """The fixed log spans several segments, leader epochs and every codec, and its
        segments carry index entries (else the crash tests below would prove little)."""
        snapshot, appended = fixed_log()
        assert snapshot.total_log_bytes <= 8192
        assert len(snapshot.log_starts) >= 4
        assert len({batch.epoch for batch in appended}) == 4
        assert {batch.header.compression for batch in appended} == set(Codec)
        for name in snapshot.log_starts:
            if len(snapshot.files[name]) > 2 * FIXED_CONFIG.index_interval_bytes:
                index = snapshot.files[name.replace(LOG_SUFFIX, INDEX_SUFFIX)]
                assert len(index) >= 8

    def test_every_crash_position_recovers_the_batches_before_it(self):
        """For every p from 0 to the log's size, a crash that keeps exactly the first p bytes
        of the concatenated segment files (and the whole, none or part of each now stale
        index) recovers exactly the batches lying wholly below p: same bytes, offsets, epochs
        and records, rebuilt indexes, the epochs of those batches; the report counts the cut
        bytes and the dropped segments; a new append continues at the recovered end.

        Each distinct outcome is checked in full once (every offset read back); every other
        crash that must come out the same is compared with it file by file."""
        snapshot, appended = fixed_log()
        total = snapshot.total_log_bytes
        index_modes = (
            None,  # the whole stale index survives
            lambda size, position: 0,  # none of it
            lambda size, position: size * position // total,  # a part, maybe half an entry
        )
        verified: dict[int, tuple] = {}
        for position in range(total + 1):
            fs = snapshot.crash_at(position, index_modes[position % 3])
            log, report = load_log(fs, FIXED_CONFIG, recovery_point=0)
            expected = surviving(appended, position)
            try:
                state = state_of(fs, log)
                if len(expected) in verified:
                    assert state == verified[len(expected)]
                else:
                    check_log(fs, log, expected)
                    verified[len(expected)] = state
                assert report.truncated_bytes == position - sum(len(b.data) for b in expected)
                assert report.deleted_segments == len(snapshot.log_starts) - len(log.segments)
                check_append_continues(log, top_epoch(appended))
            except AssertionError as error:
                raise AssertionError(f"crash at byte {position}: {error}") from error
        assert len(verified) == len(appended) + 1

    def test_recovered_log_reopens_cleanly(self):
        """A log recovered from a crash inside a batch header, inside a batch body or at a
        batch boundary, then flushed and closed, opens cleanly (indexes trusted) to the same
        batches with sound indexes."""
        snapshot, appended = fixed_log()
        ends = [sum(len(b.data) for b in appended[: i + 1]) for i in range(len(appended))]
        for end in ends[::3]:
            for position in (end - 1, end, end + 7, end + 70):
                fs = snapshot.crash_at(position)
                log, _ = load_log(fs, FIXED_CONFIG, recovery_point=0)
                log.flush()
                log.close()
                again, report = load_log(fs, FIXED_CONFIG, recovery_point=None)
                assert report.truncated_bytes == 0, position
                check_log(fs, again, surviving(appended, position), every_offset=False)


class StaleIndexTests:
    """An index file that outlived a crash must not survive the rebuild."""

    def test_recovery_rewrites_a_stale_index_file(self):
        """After a crash that cut the ``.log`` but left the whole ``.index`` and ``.timeindex``
        on disk, recovery leaves exactly the rebuilt entries in both files (not the stale
        entries with the rebuilt ones appended after them)."""
        snapshot, appended = fixed_log()
        position = snapshot.log_starts[segment_file(0, LOG_SUFFIX)] + 1500
        fs = snapshot.crash_at(position)  # stale indexes kept whole
        log, _ = load_log(fs, FIXED_CONFIG, recovery_point=0)
        check_log(fs, log, surviving(appended, position), every_offset=False)

    def test_stale_index_entry_is_never_used_after_a_clean_reopen(self):
        """A crash empties the log but keeps the first (now stale) index entry; new batches of
        other sizes are appended, the log is shut down cleanly and opened again: every offset
        must still read its own batch (a stale entry pointing into the middle of a new batch
        must not be trusted)."""
        config = LogConfig(index_interval_bytes=256)
        old = [BatchSpec(1, 4, 100, Codec.NONE, 0, T0 + i) for i in range(8)]
        fs, _ = build_log(config, old)
        snapshot = Snapshot.of(fs)
        stale_offset, stale_position = index_entries(fs, LOG_DIR, 0)[0][0]
        fs = snapshot.crash_at(0, lambda size, position: 8)  # keep one stale index entry
        log, _ = load_log(fs, config, recovery_point=0)
        assert log.log_end_offset == 0
        new = [append_spec(log, BatchSpec(3, 4, 70, Codec.NONE, 0, T0 + i), i) for i in range(6)]
        size = len(new[0].data)
        # the construction: the stale entry names an offset of the first new batch and a
        # position inside the second, and the first new entry comes after it in both columns
        assert new[0].base_offset <= stale_offset <= new[0].last_offset
        assert size < stale_position < 2 * size
        log.flush()
        log.close()
        again, _ = load_log(fs, config, recovery_point=None)
        for batch in new:
            for offset in range(batch.base_offset, batch.last_offset + 1):
                read = again.read(offset, 1)
                assert read is not None and read.read() == batch.data, offset


class RandomLogCrashTests:
    """Random logs (record counts, key and value sizes, codecs, rising epochs, segment and
    index sizes), crashed at random places."""

    @PROPERTY
    @given(
        specs=batch_specs(),
        segment_bytes=st.integers(200, 4096),
        interval=st.integers(0, 1024),
        data=st.data(),
    )
    def test_crash_at_a_random_position_recovers_the_batches_before_it(
        self, specs, segment_bytes, interval, data
    ):
        """A crash that keeps the first p bytes of the concatenated segment files, with the
        stale indexes kept whole, cut or dropped, recovers exactly the batches below p."""
        config = config_for(specs, segment_bytes, interval)
        fs, appended = build_log(config, specs)
        snapshot = Snapshot.of(fs)
        position = data.draw(st.integers(0, snapshot.total_log_bytes), label="position")
        index_keep = data.draw(
            st.sampled_from([None, lambda size, p: 0, lambda size, p: size // 2 + 3])
        )
        fs = snapshot.crash_at(position, index_keep)
        log, _ = load_log(fs, config, recovery_point=0)
        check_log(fs, log, surviving(appended, position))
        check_append_continues(log, top_epoch(appended))

    @PROPERTY
    @given(
        specs=batch_specs(),
        segment_bytes=st.integers(200, 2048),
        interval=st.integers(0, 512),
        data=st.data(),
    )
    def test_files_cut_independently_recover_a_prefix(self, specs, segment_bytes, interval, data):
        """A crash in which each segment file independently keeps any prefix of itself (the
        kernel wrote back a later segment but not an earlier one) recovers the batches up to
        the first cut: a later segment never survives a cut in an earlier one."""
        config = config_for(specs, segment_bytes, interval)
        fs, appended = build_log(config, specs)
        snapshot = Snapshot.of(fs)
        keeps = {
            name: data.draw(st.integers(0, len(content)), label=name)
            for name, content in sorted(snapshot.files.items())
            if name.endswith(SEGMENT_SUFFIXES)
        }
        fs = snapshot.restore()
        fs.crash(keep=lambda path, durable, current: keeps[posixpath.basename(path)])
        reach = 0
        for name, start in sorted(snapshot.log_starts.items()):
            reach = start + keeps[name]
            if keeps[name] < len(snapshot.files[name]):
                break
        log, _ = load_log(fs, config, recovery_point=0)
        check_log(fs, log, surviving(appended, reach))
        check_append_continues(log, top_epoch(appended))


def flip_strategy(snapshot: Snapshot, positions, suffixes=SEGMENT_SUFFIXES) -> st.SearchStrategy:
    """One flip: ``(file name, position, xor mask)`` at one of ``positions(name, size)`` of
    a non-empty file whose name ends with one of ``suffixes``."""
    names = sorted(n for n, data in snapshot.files.items() if data and n.endswith(suffixes))
    return st.sampled_from(names).flatmap(
        lambda name: st.tuples(
            st.just(name),
            st.sampled_from(positions(name, len(snapshot.files[name]))),
            st.integers(1, 255),
        )
    )


def apply_flips(snapshot: Snapshot, flips) -> MemoryFileSystem:
    """The snapshot restored, with each ``(name, position, xor mask)`` flip applied."""
    fs = snapshot.restore()
    for name, position, mask in flips:
        path = posixpath.join(LOG_DIR, name)
        value = fs.read_file(path)[position]
        fs.corrupt(path, position, value ^ mask)
    return fs


def first_damaged_batch(snapshot: Snapshot, appended, flips) -> int:
    """The index (in append order) of the first batch holding a flipped ``.log`` byte."""
    damaged = [
        snapshot.log_starts[name] + position
        for name, position, _ in flips
        if name.endswith(LOG_SUFFIX)
    ]
    if not damaged:
        return len(appended)
    return len(surviving(appended, min(damaged)))


class ByteFlipTests:
    """Bit rot in the segment files: recovery serves a prefix and never a damaged batch."""

    @PROPERTY
    @given(
        specs=batch_specs(max_batches=25),
        segment_bytes=st.integers(300, 2048),
        interval=st.integers(0, 512),
        data=st.data(),
    )
    def test_flips_outside_the_epoch_field_cut_the_log_at_the_first_damaged_batch(
        self, specs, segment_bytes, interval, data
    ):
        """One to three flipped bytes anywhere in the ``.log`` files (baseOffset, length,
        magic, CRC, attributes, records; not the leader epoch, see below) and in the index
        files: recovery keeps exactly the batches before the first damaged one; the load and
        every read raise nothing; a new append continues."""
        config = config_for(specs, segment_bytes, interval)
        fs, appended = build_log(config, specs)
        snapshot = Snapshot.of(fs)
        starts = batch_starts(snapshot)

        def positions(name: str, size: int) -> list[int]:
            if not name.endswith(LOG_SUFFIX):
                return list(range(size))
            epoch_bytes = {start + i for start in starts[name] for i in EPOCH_FIELD}
            return [p for p in range(size) if p not in epoch_bytes]

        flips = data.draw(
            st.lists(
                flip_strategy(snapshot, positions),
                min_size=1,
                max_size=3,
                unique_by=lambda flip: flip[:2],
            )
        )
        fs = apply_flips(snapshot, flips)
        log, _ = load_log(fs, config, recovery_point=0)
        check_log(fs, log, appended[: first_damaged_batch(snapshot, appended, flips)])
        check_append_continues(log, top_epoch(appended))

    @PROPERTY
    @given(
        specs=batch_specs(max_batches=25),
        segment_bytes=st.integers(300, 2048),
        data=st.data(),
    )
    def test_flips_in_the_epoch_field_never_serve_a_wrong_epoch(self, specs, segment_bytes, data):
        """A flipped byte in a batch's partitionLeaderEpoch (outside the CRC): recovery still
        serves only a prefix of what was appended, byte for byte (never a batch with a
        leader epoch it was not written with), the epoch cache lists the epochs of what is
        served, and an append under the latest epoch continues."""
        config = config_for(specs, segment_bytes, 128)
        fs, appended = build_log(config, specs)
        snapshot = Snapshot.of(fs)
        starts = batch_starts(snapshot)

        def positions(name: str, size: int) -> list[int]:
            return [start + i for start in starts.get(name, []) for i in EPOCH_FIELD]

        flip = data.draw(flip_strategy(snapshot, positions, (LOG_SUFFIX,)))
        fs = apply_flips(snapshot, [flip])
        log, _ = load_log(fs, config, recovery_point=0)
        served = []
        offset = log.log_start_offset
        while (read := log.read(offset, 1)) is not None:
            served.append(read.read())
            offset = read_batch_header(served[-1]).last_offset + 1
        assert is_prefix_bytes(served, appended)
        check_log(fs, log, appended[: len(served)], every_offset=False)
        check_append_continues(log, top_epoch(appended))

    def test_raised_epoch_in_the_last_batch_does_not_break_later_appends(self):
        """The high byte of the last batch's partitionLeaderEpoch rots (epoch 7 reads as
        16777223): recovery must not adopt that epoch, so an append under the real latest
        epoch (7) still works and the log stays a prefix of what was appended."""
        snapshot, appended = fixed_log()
        last_name = max(snapshot.log_starts)
        last_position = batch_starts(snapshot)[last_name][-1]
        fs = apply_flips(snapshot, [(last_name, last_position + EPOCH_FIELD[0], 0x01)])
        log, _ = load_log(fs, FIXED_CONFIG, recovery_point=0)
        assert max(epoch for epoch, _ in log.epochs.entries) <= 7, log.epochs.entries
        check_append_continues(log, top_epoch(appended))

    def test_raised_epoch_at_the_end_of_a_segment_does_not_make_the_load_raise(self):
        """The last batch of the first segment rots to a huge leader epoch; the next segment's
        batches carry lower epochs. Loading must not raise (today the walk of each segment
        starts from epoch -1, so the rotted epoch is taken in and then clashes with the
        later epochs in the cache), and the log stays a prefix of what was appended."""
        snapshot, appended = fixed_log()
        first = min(snapshot.log_starts)
        last_position = batch_starts(snapshot)[first][-1]
        fs = apply_flips(snapshot, [(first, last_position + EPOCH_FIELD[0], 0x01)])
        log, _ = load_log(fs, FIXED_CONFIG, recovery_point=0)
        served = len(surviving(appended, len(snapshot.files[first]))) - 1
        check_log(fs, log, appended[:served], every_offset=False)
        check_append_continues(log, top_epoch(appended))

    def test_lowered_epoch_in_the_first_batch_of_a_segment_is_not_served(self):
        """The first batch of a later segment rots from epoch 3 to epoch 0, below the epoch
        the previous segment ended with: recovery must cut the log there (each segment's walk
        must start from the previous segment's last epoch), not serve the batch."""
        snapshot, appended = fixed_log()
        name = next(
            n
            for n in sorted(snapshot.log_starts)[1:]
            if read_batch_header(snapshot.files[n]).partition_leader_epoch == 3
        )
        fs = apply_flips(snapshot, [(name, EPOCH_FIELD[-1], 0x03)])
        log, _ = load_log(fs, FIXED_CONFIG, recovery_point=0)
        check_log(fs, log, surviving(appended, snapshot.log_starts[name]), every_offset=False)


def is_prefix_bytes(served: list[bytes], appended) -> bool:
    """Whether the served batch bytes are the first appended batches, byte for byte."""
    return len(served) <= len(appended) and all(
        data == batch.data for data, batch in zip(served, appended, strict=False)
    )


class CleanOpenIndexTests:
    """A log shut down cleanly opens with its indexes trusted after a sanity check; an index
    that is missing, cut or damaged must be rebuilt, and lookups must stay right."""

    def damaged(self, suffix: str, damage) -> tuple:
        """The fixed log with ``damage(fs, path)`` done to the first segment's ``suffix``
        file, opened cleanly: ``(fs, log, appended)``."""
        snapshot, appended = fixed_log()
        fs = snapshot.restore()
        damage(fs, posixpath.join(LOG_DIR, segment_file(0, suffix)))
        log, _ = load_log(fs, FIXED_CONFIG, recovery_point=None)
        return fs, log, appended

    def test_clean_open_trusts_sound_indexes(self):
        """With nothing damaged no segment is recovered and everything reads back."""
        snapshot, appended = fixed_log()
        fs = snapshot.restore()
        log, report = load_log(fs, FIXED_CONFIG, recovery_point=None)
        assert report.recovered == 0
        check_log(fs, log, list(appended))
        check_append_continues(log, top_epoch(appended))

    def test_deleted_offset_index_is_rebuilt(self):
        """A deleted ``.index`` is rebuilt on a clean open (not left empty)."""
        fs, log, appended = self.damaged(INDEX_SUFFIX, lambda fs, path: fs.unlink(path))
        check_log(fs, log, list(appended))

    def test_deleted_time_index_is_rebuilt(self):
        """A deleted ``.timeindex`` is rebuilt on a clean open (not left empty)."""
        fs, log, appended = self.damaged(TIME_INDEX_SUFFIX, lambda fs, path: fs.unlink(path))
        check_log(fs, log, list(appended))

    def test_deleted_time_index_keeps_timestamp_lookups_right(self):
        """With the ``.timeindex`` of a segment gone, whose newest record is an early one, a
        clean open still finds that record by timestamp (the segment's largest timestamp
        must not be taken from the batches after the last offset-index entry only)."""
        config = LogConfig(index_interval_bytes=100)
        stamps = [T0 + 10_000] + [T0 + i for i in range(1, 8)]
        specs = [BatchSpec(1, 4, 80, Codec.NONE, 0, stamp) for stamp in stamps]
        fs, _ = build_log(config, specs)
        fs.unlink(posixpath.join(LOG_DIR, segment_file(0, TIME_INDEX_SUFFIX)))
        log, _ = load_log(fs, config, recovery_point=None)
        assert log.offset_for_timestamp(T0 + 5_000) == (0, T0 + 10_000)

    def test_index_cut_inside_an_entry_is_rebuilt(self):
        """An ``.index`` cut in the middle of an entry is rebuilt."""

        def cut(fs, path):
            file = fs.open(path)
            file.truncate(file.size - 3)
            file.close()

        fs, log, appended = self.damaged(INDEX_SUFFIX, cut)
        check_log(fs, log, list(appended))

    def test_index_cut_at_an_entry_boundary_is_rebuilt(self):
        """An ``.index`` that lost its last entries (cut at an entry boundary) is rebuilt:
        the batches after its last entry hold more than one index interval."""

        def cut(fs, path):
            file = fs.open(path)
            file.truncate(8)
            file.close()

        fs, log, appended = self.damaged(INDEX_SUFFIX, cut)
        check_log(fs, log, list(appended))

    def test_index_entries_out_of_order_are_rebuilt(self):
        """An ``.index`` whose positions no longer increase is rebuilt."""
        fs, log, appended = self.damaged(
            INDEX_SUFFIX, lambda fs, path: fs.corrupt(path, 8 + 6, 0x7F)
        )
        check_log(fs, log, list(appended))

    def test_index_entry_pointing_inside_a_batch_does_not_break_lookups(self):
        """A middle ``.index`` entry whose position rotted by one byte (still in order, now
        inside a batch; the last entry is sound) is not trusted: every offset still reads
        its own batch (whether the index is rebuilt at open or checked when used)."""

        def nudge(fs, path):
            raw = fs.read_file(path)
            fs.corrupt(path, 8 + 7, raw[8 + 7] + 1)

        _, log, appended = self.damaged(INDEX_SUFFIX, nudge)
        for batch in appended:
            for offset in range(batch.base_offset, batch.last_offset + 1):
                read = log.read(offset, 1)
                assert read is not None and read.read() == batch.data, offset
        check_append_continues(log, top_epoch(appended))

    def test_time_index_cut_inside_an_entry_is_rebuilt(self):
        """A ``.timeindex`` cut in the middle of an entry is rebuilt."""

        def cut(fs, path):
            file = fs.open(path)
            file.truncate(file.size - 5)
            file.close()

        fs, log, appended = self.damaged(TIME_INDEX_SUFFIX, cut)
        check_log(fs, log, list(appended))

    def test_damaged_index_entry_found_at_lookup_never_cuts_the_middle_of_the_log(self):
        """Two faults in the first of several segments of a cleanly shut down log: a middle
        ``.index`` entry points inside a batch, and an earlier batch rotted (a clean open does
        not read batches). A lookup that trips over the entry may rebuild the index, but must
        not cut the segment's ``.log`` there and then: the segments still chain, and a read
        at any offset either returns the batch holding it or fails with a storage error —
        never a batch of later offsets."""
        snapshot, appended = fixed_log()
        fs = snapshot.restore()
        index = posixpath.join(LOG_DIR, segment_file(0, INDEX_SUFFIX))
        fs.corrupt(index, 8 + 7, fs.read_file(index)[8 + 7] + 1)
        first = segment_file(0, LOG_SUFFIX)
        rotten = posixpath.join(LOG_DIR, first)
        position = batch_starts(snapshot)[first][3] + 70
        fs.corrupt(rotten, position, fs.read_file(rotten)[position] ^ 0x01)
        log, _ = load_log(fs, FIXED_CONFIG, recovery_point=None)
        for batch in appended:
            for offset in range(batch.base_offset, batch.last_offset + 1):
                try:
                    read = log.read(offset, 1)
                except (KafkaStorageError, CorruptRecord):
                    continue
                assert read is not None, offset
                header = read_batch_header(read.read())
                assert header.base_offset <= offset <= header.last_offset, offset
        for before, after in zip(log.segments, log.segments[1:], strict=False):
            assert before.next_offset == after.base_offset
        assert log.log_end_offset == appended[-1].last_offset + 1

    def test_time_index_entry_with_a_rotted_timestamp_is_not_trusted(self):
        """A ``.timeindex`` entry whose timestamp rotted (now far below the truth, still in
        order) must not make a timestamp lookup skip records: the lookup for the first
        record's timestamp still answers the first record."""
        snapshot, appended = fixed_log()
        fs = snapshot.restore()
        path = posixpath.join(LOG_DIR, segment_file(0, TIME_INDEX_SUFFIX))
        fs.corrupt(path, 2, fs.read_file(path)[2] ^ 0x01)  # timestamp - 2**40 ms
        log, _ = load_log(fs, FIXED_CONFIG, recovery_point=None)
        first = appended[0]
        stamp = first.header.base_timestamp + first.records[0].timestamp_delta
        assert log.offset_for_timestamp(stamp) == (0, stamp)

    @PROPERTY
    @given(specs=batch_specs(), interval=st.integers(0, 512), data=st.data())
    def test_damaged_indexes_keep_lookups_right_on_a_clean_open(self, specs, interval, data):
        """Random damage to the index files of a cleanly shut down log (flipped bytes, a cut
        anywhere, a deleted file): a clean open raises nothing, every offset reads its own
        batch, timestamp lookups find the first record at or after the timestamp, and a new
        append continues."""
        config = config_for(specs, 1 << 20, interval)
        fs, appended = build_log(config, specs)
        snapshot = Snapshot.of(fs)
        fs = snapshot.restore()
        names = sorted(n for n in snapshot.files if n.endswith((INDEX_SUFFIX, TIME_INDEX_SUFFIX)))
        for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)):
            path = posixpath.join(LOG_DIR, name)
            if not fs.exists(path):
                continue
            size = len(fs.read_file(path))
            how = data.draw(st.sampled_from(["flip", "cut", "delete"]))
            if how == "delete":
                fs.unlink(path)
            elif how == "cut":
                file = fs.open(path)
                file.truncate(data.draw(st.integers(0, size)))
                file.close()
            elif size:
                position = data.draw(st.integers(0, size - 1))
                value = fs.read_file(path)[position] ^ data.draw(st.integers(1, 255))
                fs.corrupt(path, position, value)
        log, _ = load_log(fs, config, recovery_point=None)
        for batch in appended:
            for offset in range(batch.base_offset, batch.last_offset + 1):
                read = log.read(offset, 1)
                assert read is not None and read.read() == batch.data, offset
        stamps = [
            (batch.base_offset + r.offset_delta, batch.header.base_timestamp + r.timestamp_delta)
            for batch in appended
            for r in batch.records
        ]
        targets = sorted({ts for _, ts in stamps})
        for target in [targets[0] - 1, *targets[::3]]:
            expected = next((o, ts) for o, ts in stamps if ts >= target)
            assert log.offset_for_timestamp(target) == expected, target
        check_append_continues(log, top_epoch(appended))


class FixedLogSanityTests:
    """The helpers the properties rest on agree with a log built by appending."""

    def test_check_log_accepts_the_log_as_appended(self):
        """A freshly appended log passes every check of ``check_log``."""
        fs = new_fs()
        log = create_log(fs, FIXED_CONFIG)
        appended = [append_spec(log, spec, salt) for salt, spec in enumerate(fixed_specs(4096))]
        check_log(fs, log, appended)
        assert is_prefix(appended[:3], appended)
