"""PartitionLog, LogSegment and the indexes: lookups, reads, roll, retention, truncation."""

from __future__ import annotations

import pytest

from tmq.protocol.records import Record, build_batch, decode_batch, read_batch_header
from tmq.storage.config import FlushPolicy, LogConfig
from tmq.storage.errors import (
    CorruptRecord,
    InvalidRecord,
    MessageTooLarge,
    OffsetOutOfRange,
)
from tmq.storage.log import PartitionLog
from tmq.storage.memory_fs import MemoryFileSystem

T0 = 1_700_000_000_000
DIR = "/data/gpu-0"


class Clock:
    """Milliseconds, moved by hand."""

    def __init__(self, now: int = T0):
        self.now = now

    def __call__(self) -> int:
        return self.now


def batch(count: int, *, timestamp: int = T0, value_bytes: int = 20, **options) -> bytes:
    records = [Record(i, i, b"key-%d" % i, b"v" * value_bytes) for i in range(count)]
    return build_batch(records, base_timestamp=timestamp, **options)


def new_log(config: LogConfig | None = None, clock: Clock | None = None):
    fs = MemoryFileSystem()
    fs.makedirs("/data")
    fs.fsync_dir("/")
    log = PartitionLog.create(fs, DIR, "gpu", 0, config or LogConfig(), clock or Clock())
    return fs, log


def offsets_of(log: PartitionLog, offset: int, max_bytes: int = 1 << 20) -> list[int]:
    """The record offsets a read at ``offset`` returns, decoded."""
    read = log.read(offset, max_bytes)
    if read is None:
        return []
    data = read.read()
    result, position = [], 0
    while position < len(data):
        header, records = decode_batch(data, position)
        result.extend(header.base_offset + r.offset_delta for r in records)
        position += header.size
    return result


class AppendTests:
    """Appends assign offsets and stamp epochs without breaking the CRC."""

    def test_offsets_are_assigned_and_crc_stays_valid(self):
        """Each batch gets the next offsets and the leader epoch; the stored batch decodes."""
        _, log = new_log()
        first = log.append(batch(3, base_offset=999), leader_epoch=4)
        second = log.append(batch(2), leader_epoch=4)
        assert (first.base_offset, first.last_offset) == (0, 2)
        assert (second.base_offset, second.last_offset) == (3, 4)
        assert log.log_end_offset == 5
        stored = log.read(3, 1 << 20).read()
        header, records = decode_batch(stored)
        assert (header.base_offset, header.partition_leader_epoch) == (3, 4)
        assert [r.key for r in records] == [b"key-0", b"key-1"]

    def test_corrupt_batch_is_refused(self):
        """A CRC mismatch is CorruptRecord and nothing is appended."""
        _, log = new_log()
        data = bytearray(batch(2))
        data[-1] ^= 1
        with pytest.raises(CorruptRecord):
            log.append(bytes(data), leader_epoch=0)
        assert log.log_end_offset == 0

    def test_two_batches_in_one_append_are_refused(self):
        """Exactly one batch per append (Produce v3+ rule)."""
        _, log = new_log()
        with pytest.raises(InvalidRecord):
            log.append(batch(1) + batch(1), leader_epoch=0)

    def test_producer_id_without_sequence_is_refused(self):
        """An idempotent batch needs a base sequence."""
        _, log = new_log()
        with pytest.raises(InvalidRecord):
            log.append(batch(1, producer_id=7, producer_epoch=0), leader_epoch=0)

    def test_oversized_batch_is_refused(self):
        """A batch above max.message.bytes is MessageTooLarge."""
        _, log = new_log(LogConfig(max_message_bytes=500))
        with pytest.raises(MessageTooLarge):
            log.append(batch(10, value_bytes=100), leader_epoch=0)

    def test_new_epoch_is_recorded_once(self):
        """The leader-epoch cache gets an entry when an epoch first appends."""
        _, log = new_log()
        log.append(batch(2), leader_epoch=0)
        log.append(batch(2), leader_epoch=0)
        log.append(batch(2), leader_epoch=3)
        assert log.epochs.entries == [(0, 0), (3, 4)]


class ReadTests:
    """Reads return whole batches from the one that holds the offset."""

    def setup_method(self):
        self.fs, self.log = new_log(LogConfig(index_interval_bytes=200, segment_bytes=3000))
        for _ in range(40):
            self.log.append(batch(5), leader_epoch=0)  # 5 offsets per batch

    def test_every_offset_reads_its_batch(self):
        """For first, last, middle and in-batch offsets the first batch returned holds the
        offset, across segment boundaries."""
        assert len(self.log.segments) > 2
        for offset in range(self.log.log_end_offset):
            read = self.log.read(offset, 1)
            assert read.first_offset == offset - offset % 5
            assert offset in offsets_of(self.log, offset, 1)

    def test_index_entries_point_at_batch_starts(self):
        """Each sparse index entry names a batch's base offset and its position."""
        assert all(len(s.offset_index) > 0 for s in self.log.segments[:-1])
        for segment in self.log.segments:
            for offset in range(segment.base_offset, segment.next_offset):
                indexed, position = segment.offset_index.lookup(offset)
                assert indexed <= offset
                assert segment.batch_at(position).base_offset == indexed

    def test_max_bytes_bounds_whole_batches_but_returns_at_least_one(self):
        """A small max_bytes still returns one batch; a larger one only whole batches."""
        one = self.log.read(0, 1)
        header = read_batch_header(one.read())
        assert one.size == header.size
        three = self.log.read(0, 3 * header.size + header.size // 2)
        assert three.size == 3 * header.size

    def test_max_offset_hides_batches_at_or_past_it(self):
        """Nothing at or after max_offset (the high watermark) is returned."""
        assert offsets_of_read(self.log.read(0, 1 << 20, max_offset=10)) == list(range(10))
        assert self.log.read(10, 1 << 20, max_offset=10) is None

    def test_read_at_end_is_empty_and_past_end_is_out_of_range(self):
        """Reading at the LEO yields nothing; beyond it or below the start is an error."""
        assert self.log.read(self.log.log_end_offset, 100) is None
        with pytest.raises(OffsetOutOfRange):
            self.log.read(self.log.log_end_offset + 1, 100)
        with pytest.raises(OffsetOutOfRange):
            self.log.read(-1, 100)

    def test_offset_for_timestamp(self):
        """The first record at or after a timestamp is found, inside batches too."""
        _, log = new_log(LogConfig(index_interval_bytes=100))
        for i in range(20):
            log.append(batch(3, timestamp=T0 + 10 * i), leader_epoch=0)  # ts T0+10i+0..2
        assert log.offset_for_timestamp(T0 + 52) == (17, T0 + 52)
        assert log.offset_for_timestamp(T0 + 55) == (18, T0 + 60)
        assert log.offset_for_timestamp(T0) == (0, T0)
        assert log.offset_for_timestamp(T0 + 1000) is None


def offsets_of_read(read) -> list[int]:
    data, result, position = read.read(), [], 0
    while position < len(data):
        header, records = decode_batch(data, position)
        result.extend(header.base_offset + r.offset_delta for r in records)
        position += header.size
    return result


class RollTests:
    """Segments roll on size, age and index capacity."""

    def test_roll_on_segment_bytes(self):
        """A batch that would push the segment past segment.bytes starts a new segment, whose
        base offset is the LEO at that moment."""
        one = len(batch(5))
        _, log = new_log(LogConfig(segment_bytes=3 * one))
        for _ in range(7):
            log.append(batch(5), leader_epoch=0)
        assert [s.base_offset for s in log.segments] == [0, 15, 30]
        assert all(s.size <= 3 * one for s in log.segments)

    def test_roll_on_segment_ms_of_record_times(self):
        """A batch whose max timestamp is more than segment.ms past the first batch's rolls
        the segment, whatever the clock says."""
        _, log = new_log(LogConfig(segment_ms=1000))
        log.append(batch(1, timestamp=T0), leader_epoch=0)
        log.append(batch(1, timestamp=T0 + 1000), leader_epoch=0)
        assert len(log.segments) == 1
        log.append(batch(1, timestamp=T0 + 1001), leader_epoch=0)
        assert [s.base_offset for s in log.segments] == [0, 2]

    def test_old_record_times_do_not_roll_a_segment_per_batch(self):
        """Data stamped long ago (a replay), appended when the clock is far ahead, stays in
        one segment: the clock is not compared with record times."""
        clock = Clock(T0 + 30 * 86_400_000)
        _, log = new_log(LogConfig(segment_ms=1000), clock)
        for i in range(5):
            log.append(batch(1, timestamp=T0 + i), leader_epoch=0)
            clock.now += 5000
        assert len(log.segments) == 1

    def test_segment_without_record_times_ages_by_the_clock(self):
        """When the first batch has no timestamp (-1), the segment rolls once it has been
        the active segment for more than segment.ms."""
        clock = Clock()
        _, log = new_log(LogConfig(segment_ms=1000), clock)
        log.append(batch(1, timestamp=-1), leader_epoch=0)
        clock.now += 1000
        log.append(batch(1, timestamp=-1), leader_epoch=0)
        assert len(log.segments) == 1
        clock.now += 1
        log.append(batch(1, timestamp=-1), leader_epoch=0)
        assert [s.base_offset for s in log.segments] == [0, 2]

    def test_roll_on_full_index(self):
        """A segment whose offset index is full rolls."""
        _, log = new_log(LogConfig(index_interval_bytes=0, segment_index_bytes=16))
        for _ in range(5):
            log.append(batch(1), leader_epoch=0)
        assert all(len(s.offset_index) <= 2 for s in log.segments)
        assert len(log.segments) >= 2


class TruncateTests:
    """truncate_to removes whole batches from the end."""

    def test_truncate_inside_a_batch_removes_the_batch(self):
        """Truncating to an offset inside a batch removes that whole batch."""
        _, log = new_log(LogConfig(segment_bytes=600))
        for epoch in range(6):
            log.append(batch(4), leader_epoch=epoch)
        log.truncate_to(10)
        assert log.log_end_offset == 8
        assert offsets_of(log, 0) == list(range(8))
        assert log.epochs.entries == [(0, 0), (1, 4)]
        info = log.append(batch(2), leader_epoch=9)
        assert info.base_offset == 8
        assert offsets_of(log, 8) == [8, 9]

    def test_truncate_across_segments_deletes_later_segments(self):
        """Segments wholly past the truncation point are deleted with their files."""
        fs, log = new_log(LogConfig(segment_bytes=len(batch(4)) + 10))
        for _ in range(5):
            log.append(batch(4), leader_epoch=0)
        assert len(log.segments) == 5
        log.truncate_to(8)
        assert [s.base_offset for s in log.segments] == [0, 4]
        assert log.log_end_offset == 8
        assert sorted(n for n in fs.listdir(DIR) if n.endswith(".log")) == [
            "00000000000000000000.log",
            "00000000000000000004.log",
        ]


class RetentionTests:
    """Whole segments go by age or by total size."""

    def test_retention_by_time(self):
        """Segments whose newest record is older than retention.ms are deleted; the log start
        moves to the first kept segment."""
        clock = Clock()
        _, log = new_log(LogConfig(segment_bytes=len(batch(2)) + 1, retention_ms=1000), clock)
        for i in range(4):
            log.append(batch(2, timestamp=T0 + 400 * i), leader_epoch=0)
        clock.now = T0 + 400 * 2 + 1 + 1001  # batch 2's newest record (T0+801) just expired
        assert log.apply_retention() == 3
        assert log.log_start_offset == 6
        assert offsets_of(log, 6) == [6, 7]

    def test_retention_deletes_an_expired_active_segment(self):
        """When everything is expired the active segment goes too; the log is empty and keeps
        its end offset."""
        clock = Clock()
        _, log = new_log(LogConfig(retention_ms=10), clock)
        log.append(batch(3), leader_epoch=2)  # newest record at T0 + 2
        clock.now += 13
        assert log.apply_retention() == 1
        assert (log.log_start_offset, log.log_end_offset) == (3, 3)
        assert log.append(batch(1), leader_epoch=2).base_offset == 3

    def test_retention_by_bytes(self):
        """The oldest segments are deleted while the log exceeds retention.bytes."""
        one = len(batch(2))
        _, log = new_log(LogConfig(segment_bytes=one, retention_bytes=2 * one))
        for _ in range(5):
            log.append(batch(2), leader_epoch=0)
        assert log.apply_retention() == 3
        assert log.size <= 2 * one
        assert log.log_start_offset == 6


class ReopenTests:
    """Opening after a clean shutdown trusts the indexes."""

    def test_clean_reopen_reads_only_the_tail(self):
        """A clean open reads the batches after the last index entry, not the whole log, and
        everything stays readable."""
        fs, log = new_log(LogConfig(index_interval_bytes=100, segment_bytes=2000))
        for _ in range(60):
            log.append(batch(3), leader_epoch=1)
        log.flush()
        log.close()
        total = sum(s.size for s in log.segments)
        counting = CountingReads(fs)
        reopened, report = PartitionLog.load(
            counting, DIR, "gpu", 0, log.config, Clock(), recovery_point=None
        )
        assert report.recovered == 0
        assert counting.log_bytes_read < total / 4
        assert reopened.log_end_offset == 180
        assert offsets_of(reopened, 100, 1) == [99, 100, 101]
        assert reopened.epochs.entries == [(1, 0)]

    def test_unclean_reopen_rescans_from_the_recovery_point(self):
        """With a recovery point, the segments from the one holding it are re-validated."""
        fs, log = new_log(LogConfig(segment_bytes=2000))
        for _ in range(60):
            log.append(batch(3), leader_epoch=1)
        log.flush()
        reopened, report = PartitionLog.load(
            fs, DIR, "gpu", 0, log.config, Clock(), recovery_point=150
        )
        assert report.recovered == 1
        assert reopened.log_end_offset == 180
        assert reopened.durable_offset == 150


class CountingReads:
    """A FileSystem wrapper that counts the bytes read from ``.log`` files."""

    def __init__(self, fs):
        self._fs = fs
        self.log_bytes_read = 0

    def __getattr__(self, name):
        return getattr(self._fs, name)

    def open(self, path):
        file = self._fs.open(path)
        if not path.endswith(".log"):
            return file
        wrapper = self

        class Counted:
            def __getattr__(self, name):
                return getattr(file, name)

            @property
            def size(self):
                return file.size

            def read(self, position, size):
                data = file.read(position, size)
                wrapper.log_bytes_read += len(data)
                return data

        return Counted()


class DurabilityTests:
    """durable() and flush(): the group-commit contract, driven by hand."""

    def test_durable_resolves_after_the_flush_that_covers_it(self):
        """A durability future resolves on the first flush after its append, and one flush
        resolves every waiter it covers."""
        fs, log = new_log()
        requests = []
        log.flush_requested = requests.append
        futures = [log.durable(log.append(batch(1), leader_epoch=0).last_offset) for _ in range(3)]
        assert requests == [log, log, log]
        assert not any(f.done() for f in futures)
        before = fs.fsync_count
        log.flush()
        assert [f.result(timeout=0) for f in futures] == [3, 3, 3]
        assert fs.fsync_count - before == 1  # one round: the active segment's .log
        assert log.durable(2).result(timeout=0) == 3

    def test_fsync_failure_fails_waiters_and_takes_the_log_offline(self):
        """An fsync error fails the pending futures and later appends."""
        from tmq.storage.errors import KafkaStorageError

        fs, log = new_log()
        future = log.durable(log.append(batch(1), leader_epoch=0).last_offset)
        fs.fail("fsync")
        log.flush()
        with pytest.raises(KafkaStorageError):
            future.result(timeout=0)
        with pytest.raises(KafkaStorageError):
            log.append(batch(1), leader_epoch=0)


class ConfigTests:
    """Kafka-named configuration keys."""

    def test_properties_apply(self):
        """Known keys are parsed into the config."""
        config = LogConfig.from_properties({"segment.bytes": "1024", "flush.policy": "never"})
        assert (config.segment_bytes, config.flush_policy) == (1024, FlushPolicy.NEVER)

    @pytest.mark.parametrize(
        ("key", "value", "message"),
        [
            ("segment.bytes", "big", "must be an integer"),
            ("segment.bytes", "1", "at least 14"),
            ("flush.policy", "sometimes", "one of always, interval, never"),
            ("no.such.key", "1", "unknown log config"),
        ],
    )
    def test_bad_properties_name_the_key(self, key, value, message):
        """A bad key or value is a ValueError naming what is allowed."""
        with pytest.raises(ValueError, match=message):
            LogConfig.from_properties({key: value})
