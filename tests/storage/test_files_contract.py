"""The ``File``/``FileSystem`` contract of ``tmq.storage.files``, held by both implementations.

``FileSystemContract`` states the contract once; ``OsFileSystemTests`` runs it on the real file
system under ``tmp_path`` and ``MemoryFileSystemTests`` on the in-memory twin. Each class then
checks what only its implementation can show: a real append that fails half way (ENOSPC on a
small tmpfs, or a monkeypatched ``os.pwrite``), and the crash model, capacity and injected
errors of ``MemoryFileSystem``.
"""

from __future__ import annotations

import errno
import os
import posixpath
import subprocess

import pytest

from tmq.storage.files import FileSystem, OsFileSystem
from tmq.storage.memory_fs import MemoryFileSystem


class FileSystemContract:
    """The contract tests; a subclass supplies ``make_fs`` and ``root``."""

    def make_fs(self, tmp_path) -> FileSystem:
        """A new, empty file system for one test."""
        raise NotImplementedError

    def root(self, tmp_path) -> str:
        """The directory a test works in (created by the ``base`` fixture)."""
        raise NotImplementedError

    @pytest.fixture
    def fs(self, tmp_path) -> FileSystem:
        return self.make_fs(tmp_path)

    @pytest.fixture
    def base(self, fs, tmp_path) -> str:
        root = self.root(tmp_path)
        fs.makedirs(root)
        return root

    def test_open_creates_an_empty_file(self, fs, base):
        """Opening a missing path creates it: it exists, is listed and has size 0."""
        path = posixpath.join(base, "00000000000000000000.log")
        file = fs.open(path)
        try:
            assert file.size == 0
            assert file.path == path
            assert fs.exists(path)
            assert fs.listdir(base) == ["00000000000000000000.log"]
        finally:
            file.close()

    def test_read_only_open_reads_but_refuses_writes(self, fs, base):
        """open(writable=False) reads an existing file, refuses append and truncate with
        EBADF, and does not create a missing file."""
        path = f"{base}/ro.log"
        fs.open(path).append(b"kept")
        file = fs.open(path, writable=False)
        assert file.read(0, 10) == b"kept"
        for write in (lambda: file.append(b"x"), lambda: file.truncate(0)):
            with pytest.raises(OSError) as raised:
                write()
            assert raised.value.errno == errno.EBADF
        file.close()
        with pytest.raises(FileNotFoundError):
            fs.open(f"{base}/missing.log", writable=False)
        assert not fs.exists(f"{base}/missing.log")

    def test_open_in_a_missing_directory_fails(self, fs, base):
        """Opening a file whose directory does not exist raises FileNotFoundError."""
        with pytest.raises(FileNotFoundError):
            fs.open(posixpath.join(base, "missing", "a.log"))

    def test_append_returns_its_start_position_and_grows_the_size(self, fs, base):
        """Each append returns where its bytes start, which is the size before it."""
        file = fs.open(posixpath.join(base, "a.log"))
        try:
            assert file.append(b"hello") == 0
            assert file.size == 5
            assert file.append(b", world") == 5
            assert file.size == 12
            assert file.append(b"") == 12
            assert file.size == 12
            assert file.read(0, 12) == b"hello, world"
        finally:
            file.close()

    def test_append_takes_any_bytes_like_object(self, fs, base):
        """bytes, bytearray and memoryview (a slice, too) append the same way."""
        file = fs.open(posixpath.join(base, "a.log"))
        try:
            file.append(b"ab")
            file.append(bytearray(b"cd"))
            file.append(memoryview(b"xxefxx")[2:4])
            assert file.read(0, 100) == b"abcdef"
        finally:
            file.close()

    def test_read_returns_size_bytes_fewer_only_at_the_end(self, fs, base):
        """A read inside the file returns exactly ``size`` bytes; one that crosses the end is
        short; one at or past the end returns nothing."""
        file = fs.open(posixpath.join(base, "a.log"))
        try:
            file.append(bytes(range(100)))
            assert file.read(0, 10) == bytes(range(10))
            assert file.read(40, 20) == bytes(range(40, 60))
            assert file.read(90, 50) == bytes(range(90, 100))
            assert file.read(100, 10) == b""
            assert file.read(1000, 10) == b""
            assert file.read(5, 0) == b""
        finally:
            file.close()

    def test_truncate_shrinks_and_later_appends_continue_there(self, fs, base):
        """After truncate(n) the size is n, the bytes past n are gone and the next append
        starts at n."""
        file = fs.open(posixpath.join(base, "a.log"))
        try:
            file.append(b"0123456789")
            file.truncate(4)
            assert file.size == 4
            assert file.read(0, 100) == b"0123"
            assert file.append(b"abc") == 4
            assert file.read(0, 100) == b"0123abc"
        finally:
            file.close()

    def test_fsync_keeps_the_contents(self, fs, base):
        """fsync neither changes the size nor the bytes, and appends go on after it."""
        file = fs.open(posixpath.join(base, "a.log"))
        try:
            file.append(b"durable")
            file.fsync()
            assert (file.size, file.read(0, 100)) == (7, b"durable")
            assert file.append(b"!") == 7
            file.fsync()
        finally:
            file.close()

    def test_reopen_sees_the_data(self, fs, base):
        """A file closed and opened again has the same size and bytes, and appends after
        them."""
        path = posixpath.join(base, "a.log")
        file = fs.open(path)
        file.append(b"first")
        file.close()
        again = fs.open(path)
        try:
            assert again.size == 5
            assert again.read(0, 100) == b"first"
            assert again.append(b"+") == 5
        finally:
            again.close()
        assert fs.read_file(path) == b"first+"

    def test_listdir_is_sorted_and_holds_files_and_directories(self, fs, base):
        """listdir returns the names (not paths) of files and subdirectories, sorted, and not
        the entries of deeper levels."""
        for name in ("00000000000000000010.log", "00000000000000000002.log", "b", "a"):
            fs.write_file(posixpath.join(base, name), b"")
        fs.makedirs(posixpath.join(base, "topic-1", "deeper"))
        fs.makedirs(posixpath.join(base, "topic-0"))
        assert fs.listdir(base) == [
            "00000000000000000002.log",
            "00000000000000000010.log",
            "a",
            "b",
            "topic-0",
            "topic-1",
        ]

    def test_listdir_of_a_missing_directory_fails(self, fs, base):
        """listdir of a directory that does not exist raises FileNotFoundError."""
        with pytest.raises(FileNotFoundError):
            fs.listdir(posixpath.join(base, "missing"))

    def test_makedirs_creates_parents_and_is_idempotent(self, fs, base):
        """makedirs creates every missing level; calling it again (on it or a parent) changes
        nothing and keeps the files inside."""
        deep = posixpath.join(base, "a", "b", "c")
        fs.makedirs(deep)
        fs.write_file(posixpath.join(deep, "f"), b"kept")
        fs.makedirs(deep)
        fs.makedirs(posixpath.join(base, "a"))
        assert fs.exists(posixpath.join(base, "a", "b"))
        assert fs.listdir(deep) == ["f"]
        assert fs.read_file(posixpath.join(deep, "f")) == b"kept"

    def test_rename_replaces_the_target(self, fs, base):
        """rename over an existing file leaves the source's bytes under the target name and
        no source; the directory lists the target once."""
        target = posixpath.join(base, "checkpoint")
        temporary = posixpath.join(base, "checkpoint.tmp")
        fs.write_file(target, b"old contents, longer")
        fs.write_file(temporary, b"new")
        fs.rename(temporary, target)
        fs.fsync_dir(base)
        assert fs.read_file(target) == b"new"
        assert not fs.exists(temporary)
        assert fs.listdir(base) == ["checkpoint"]

    def test_an_open_file_follows_its_rename(self, fs, base):
        """A handle opened before a rename writes to the file under its new name."""
        source = posixpath.join(base, "00000000000000000000.log")
        target = source + ".deleted"
        file = fs.open(source)
        try:
            file.append(b"before")
            fs.rename(source, target)
            file.append(b"+after")
        finally:
            file.close()
        assert fs.read_file(target) == b"before+after"
        assert not fs.exists(source)

    def test_rename_of_a_missing_file_fails(self, fs, base):
        """Renaming a path that does not exist raises FileNotFoundError."""
        with pytest.raises(FileNotFoundError):
            fs.rename(posixpath.join(base, "missing"), posixpath.join(base, "target"))

    def test_unlink_removes_the_file(self, fs, base):
        """After unlink the file no longer exists nor is listed; unlinking it again raises
        FileNotFoundError."""
        path = posixpath.join(base, "a.log")
        fs.write_file(path, b"x")
        fs.unlink(path)
        assert not fs.exists(path)
        assert fs.listdir(base) == []
        with pytest.raises(FileNotFoundError):
            fs.unlink(path)

    def test_rmtree_removes_a_whole_tree(self, fs, base):
        """rmtree removes a directory with its files and subdirectories, and nothing else."""
        partition = posixpath.join(base, "gpu-0")
        fs.makedirs(posixpath.join(partition, "sub"))
        fs.write_file(posixpath.join(partition, "00000000000000000000.log"), b"x")
        fs.write_file(posixpath.join(partition, "sub", "f"), b"y")
        fs.write_file(posixpath.join(base, "gpu-00"), b"z")
        fs.rmtree(partition)
        assert not fs.exists(partition)
        assert not fs.exists(posixpath.join(partition, "sub", "f"))
        assert fs.listdir(base) == ["gpu-00"]

    def test_write_file_and_read_file_round_trip_and_replace(self, fs, base):
        """write_file creates a file read_file returns byte for byte; writing it again
        replaces the whole contents, also with shorter data."""
        path = posixpath.join(base, "replication-offset-checkpoint")
        fs.write_file(path, b"0\n2\ngpu 0 17\ngpu 1 4\n")
        assert fs.read_file(path) == b"0\n2\ngpu 0 17\ngpu 1 4\n"
        fs.write_file(path, b"0\n0\n")
        assert fs.read_file(path) == b"0\n0\n"
        fs.write_file(path, b"")
        assert fs.read_file(path) == b""

    def test_read_file_of_a_missing_file_fails(self, fs, base):
        """read_file of a path that does not exist raises FileNotFoundError."""
        with pytest.raises(FileNotFoundError):
            fs.read_file(posixpath.join(base, "missing"))

    def test_exists_for_files_directories_and_missing_paths(self, fs, base):
        """exists is true for a file and for a directory, false for a missing path."""
        fs.makedirs(posixpath.join(base, "dir"))
        fs.write_file(posixpath.join(base, "file"), b"")
        assert fs.exists(posixpath.join(base, "dir"))
        assert fs.exists(posixpath.join(base, "file"))
        assert not fs.exists(posixpath.join(base, "nothing"))


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs mounted under ``tmp_path``, unmounted afterwards; the test is skipped
    where mounting is not permitted (not root, no CAP_SYS_ADMIN, no ``mount``)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield str(mount_point)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


class OsFileSystemTests(FileSystemContract):
    """The contract on the real file system, and a real append failing half way."""

    def make_fs(self, tmp_path) -> FileSystem:
        return OsFileSystem()

    def root(self, tmp_path) -> str:
        return str(tmp_path / "data")

    def test_append_that_fills_the_disk_leaves_the_file_unchanged(self, small_tmpfs, monkeypatch):
        """On a full tmpfs the kernel writes part of an append, then refuses with ENOSPC;
        the append raises, the partial bytes are gone (on disk too) and a later append that
        fits starts where the file ended."""
        real_pwrite = os.pwrite
        written = []

        def recording_pwrite(fd, data, offset):
            count = real_pwrite(fd, data, offset)
            written.append(count)
            return count

        monkeypatch.setattr(os, "pwrite", recording_pwrite)
        path = os.path.join(small_tmpfs, "00000000000000000000.log")
        file = OsFileSystem().open(path)
        try:
            file.append(b"a" * 16384)
            chunk = b"b" * (256 * 1024)
            with pytest.raises(OSError) as failure:
                file.append(chunk)
            assert failure.value.errno == errno.ENOSPC
            assert 0 < written[-1] < len(chunk)  # part of it did reach the file
            assert file.size == 16384
            assert os.stat(path).st_size == 16384
            assert file.read(0, 1 << 20) == b"a" * 16384
            assert file.append(b"c" * 100) == 16384
            assert os.stat(path).st_size == 16484
        finally:
            file.close()

    def test_append_failing_after_a_partial_write_leaves_the_file_unchanged(
        self, fs, base, monkeypatch
    ):
        """An os.pwrite that writes part of the data and then raises ENOSPC (what a full disk
        does) makes append raise and truncates the partial bytes away."""
        real_pwrite = os.pwrite
        calls = []

        def partial_then_full(fd, data, offset):
            calls.append(len(data))
            if len(calls) == 1:
                return real_pwrite(fd, bytes(data[:3]), offset)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        path = posixpath.join(base, "a.log")
        file = fs.open(path)
        try:
            file.append(b"kept")
            monkeypatch.setattr(os, "pwrite", partial_then_full)
            with pytest.raises(OSError) as failure:
                file.append(b"lost bytes")
            monkeypatch.undo()
            assert failure.value.errno == errno.ENOSPC
            assert calls == [10, 7]
            assert file.size == 4
            assert os.stat(path).st_size == 4
            assert file.append(b"!") == 4
            assert fs.read_file(path) == b"kept!"
        finally:
            file.close()

    def test_append_that_writes_nothing_raises_enospc(self, fs, base, monkeypatch):
        """An os.pwrite that returns 0 (no progress) makes append raise ENOSPC instead of
        looping, with the file unchanged."""
        path = posixpath.join(base, "a.log")
        file = fs.open(path)
        try:
            file.append(b"kept")
            monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: 0)
            with pytest.raises(OSError) as failure:
                file.append(b"more")
            monkeypatch.undo()
            assert failure.value.errno == errno.ENOSPC
            assert (file.size, os.stat(path).st_size) == (4, 4)
        finally:
            file.close()

    def test_file_is_unusable_when_the_undo_fails_too(self, fs, base, monkeypatch):
        """If the partial bytes cannot be truncated away, the file is marked broken: every
        later append, read, truncate and fsync raises OSError with the first error's errno."""
        real_pwrite = os.pwrite

        def partial_then_eio(fd, data, offset):
            if offset == 0:
                return real_pwrite(fd, bytes(data[:2]), offset)
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        def failing_ftruncate(fd, length):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        file = fs.open(posixpath.join(base, "a.log"))
        try:
            monkeypatch.setattr(os, "pwrite", partial_then_eio)
            monkeypatch.setattr(os, "ftruncate", failing_ftruncate)
            with pytest.raises(OSError):
                file.append(b"doomed")
            monkeypatch.undo()
            for call in (
                lambda: file.append(b"x"),
                lambda: file.read(0, 1),
                lambda: file.truncate(0),
                file.fsync,
            ):
                with pytest.raises(OSError) as failure:
                    call()
                assert failure.value.errno == errno.EIO
        finally:
            file.close()


def _durable_root(fs: MemoryFileSystem) -> str:
    """Create /data and make its entry in / durable, so that crashes test what is inside."""
    fs.makedirs("/data")
    fs.fsync_dir("/")
    return "/data"


class MemoryFileSystemTests(FileSystemContract):
    """The contract on the in-memory twin, then its crash model, capacity and fault
    injection."""

    def make_fs(self, tmp_path) -> FileSystem:
        return MemoryFileSystem()

    def root(self, tmp_path) -> str:
        return "/data"

    def test_crash_loses_unsynced_appends_and_keeps_fsynced_bytes(self):
        """After a crash a file holds exactly what it held at its last fsync."""
        fs = MemoryFileSystem()
        base = _durable_root(fs)
        file = fs.open(f"{base}/a.log")
        fs.fsync_dir(base)
        file.append(b"synced")
        file.fsync()
        file.append(b" lost")
        fs.crash()
        again = fs.open(f"{base}/a.log")
        assert again.size == 6
        assert again.read(0, 100) == b"synced"

    def test_crash_drops_a_file_whose_directory_was_not_fsynced(self):
        """A file created (and even fsynced) without fsync_dir of its directory is gone after
        a crash; one whose directory was fsynced survives."""
        fs = MemoryFileSystem()
        base = _durable_root(fs)
        kept = fs.open(f"{base}/kept.log")
        fs.fsync_dir(base)
        lost = fs.open(f"{base}/lost.log")
        for file in (kept, lost):
            file.append(b"data")
            file.fsync()
        fs.crash()
        assert fs.listdir(base) == ["kept.log"]
        assert fs.read_file(f"{base}/kept.log") == b"data"

    def test_crash_drops_a_directory_whose_parent_was_not_fsynced(self):
        """A directory made without fsync_dir of its parent vanishes in a crash, along with
        the files inside it even if their own directory was fsynced."""
        fs = MemoryFileSystem()
        base = _durable_root(fs)
        fs.makedirs(f"{base}/gpu-0")
        fs.write_file(f"{base}/gpu-0/leader-epoch-checkpoint", b"0\n0\n")
        fs.fsync_dir(f"{base}/gpu-0")
        fs.crash()
        assert not fs.exists(f"{base}/gpu-0")
        assert fs.listdir(base) == []

    def test_crash_brings_back_a_file_unlinked_without_fsync_dir(self):
        """An unlink is a directory change too: without fsync_dir the file is back after a
        crash, with it the file stays gone."""
        fs = MemoryFileSystem()
        base = _durable_root(fs)
        for name in ("back", "gone"):
            fs.write_file(f"{base}/{name}", name.encode())
        fs.fsync_dir(base)
        fs.unlink(f"{base}/back")
        fs.crash()
        assert fs.read_file(f"{base}/back") == b"back"
        fs.unlink(f"{base}/gone")
        fs.fsync_dir(base)
        fs.crash()
        assert fs.listdir(base) == ["back"]

    @pytest.mark.parametrize(("sync_dir", "survivor"), [(False, b"old"), (True, b"new")])
    def test_checkpoint_replace_survives_a_crash_only_after_fsync_dir(self, sync_dir, survivor):
        """write_file(tmp) + rename(tmp, target): without fsync_dir the crash leaves the old
        contents under the target name, with it the new; the temporary name is gone either
        way."""
        fs = MemoryFileSystem()
        base = _durable_root(fs)
        fs.write_file(f"{base}/checkpoint", b"old")
        fs.fsync_dir(base)
        fs.write_file(f"{base}/checkpoint.tmp", b"new")
        fs.rename(f"{base}/checkpoint.tmp", f"{base}/checkpoint")
        if sync_dir:
            fs.fsync_dir(base)
        fs.crash()
        assert fs.read_file(f"{base}/checkpoint") == survivor
        assert fs.listdir(base) == ["checkpoint"]

    def test_crash_keep_keeps_a_prefix_of_the_unsynced_bytes(self):
        """``keep`` is asked, for each file with unsynced changes only, how many bytes survive
        (given the durable and current sizes), and that prefix of the current bytes is what
        the file holds after the crash."""
        fs = MemoryFileSystem()
        base = _durable_root(fs)
        changed = fs.open(f"{base}/changed.log")
        clean = fs.open(f"{base}/clean.log")
        fs.fsync_dir(base)
        changed.append(b"0123456789")
        changed.fsync()
        changed.append(b"abcdefghij")
        clean.append(b"synced")
        clean.fsync()
        asked = []

        def keep(path, durable_size, current_size):
            asked.append((path, durable_size, current_size))
            return durable_size + 3

        fs.crash(keep=keep)
        assert asked == [(f"{base}/changed.log", 10, 20)]
        assert fs.read_file(f"{base}/changed.log") == b"0123456789abc"
        assert fs.read_file(f"{base}/clean.log") == b"synced"

    def test_append_past_capacity_fails_with_enospc_and_changes_nothing(self):
        """With capacity_bytes set, an append that would take all files past it raises
        OSError(ENOSPC) and leaves the file as it was; an append that fits still works."""
        fs = MemoryFileSystem(capacity_bytes=100)
        fs.makedirs("/data")
        fs.write_file("/data/other", b"o" * 40)
        file = fs.open("/data/a.log")
        file.append(b"a" * 50)
        with pytest.raises(OSError) as failure:
            file.append(b"b" * 11)
        assert failure.value.errno == errno.ENOSPC
        assert file.size == 50
        assert file.read(0, 100) == b"a" * 50
        assert file.append(b"c" * 10) == 50
        assert file.size == 60

    def test_injected_fsync_failure_raises_once_then_fsync_works(self):
        """fail("fsync", EIO) makes the next fsync raise OSError(EIO) without counting it or
        making anything durable; the fsync after it works."""
        fs = MemoryFileSystem()
        base = _durable_root(fs)
        file = fs.open(f"{base}/a.log")
        fs.fsync_dir(base)
        file.append(b"data")
        fs.fail("fsync", errno.EIO)
        with pytest.raises(OSError) as failure:
            file.fsync()
        assert failure.value.errno == errno.EIO
        assert fs.fsync_count == 0
        file.fsync()
        assert fs.fsync_count == 1
        fs.crash()
        assert fs.read_file(f"{base}/a.log") == b"data"

    def test_injected_failure_only_hits_matching_paths(self):
        """fail(..., path_contains=...) leaves other paths alone and fires on the first
        matching one, ``times`` times."""
        fs = MemoryFileSystem()
        fs.makedirs("/data")
        fs.fail("append", errno.EIO, path_contains=".index", times=2)
        log = fs.open("/data/00000000000000000000.log")
        index = fs.open("/data/00000000000000000000.index")
        assert log.append(b"batch") == 0
        for _ in range(2):
            with pytest.raises(OSError):
                index.append(b"entry")
        assert index.size == 0
        assert index.append(b"entry") == 0

    def test_fsync_count_counts_file_fsyncs(self):
        """fsync_count goes up by one per File.fsync, on any file; fsync_dir and write_file do
        not count."""
        fs = MemoryFileSystem()
        fs.makedirs("/data")
        first = fs.open("/data/a")
        second = fs.open("/data/b")
        first.fsync()
        second.fsync()
        first.fsync()
        fs.fsync_dir("/data")
        fs.write_file("/data/c", b"")
        assert fs.fsync_count == 3

    def test_crash_keeps_the_contents_of_a_renamed_directory(self):
        """Renaming a directory and fsyncing its parent makes the new name durable with the
        files inside (their entries live in the moved directory itself), as on a real disk
        when a partition directory is renamed for deletion."""
        fs = MemoryFileSystem()
        base = _durable_root(fs)
        fs.makedirs(f"{base}/gpu-0")
        fs.fsync_dir(base)
        fs.write_file(f"{base}/gpu-0/00000000000000000000.log", b"batches")
        fs.fsync_dir(f"{base}/gpu-0")
        fs.rename(f"{base}/gpu-0", f"{base}/gpu-0.delete")
        fs.fsync_dir(base)
        fs.crash()
        assert fs.read_file(f"{base}/gpu-0.delete/00000000000000000000.log") == b"batches"

    def test_crash_does_not_bring_back_files_of_a_removed_directory(self):
        """A directory removed with rmtree and made again under the same name (a topic
        deleted and created again) is empty after a crash: the old files do not return."""
        fs = MemoryFileSystem()
        base = _durable_root(fs)
        fs.makedirs(f"{base}/gpu-0")
        fs.fsync_dir(base)
        fs.write_file(f"{base}/gpu-0/00000000000000000000.log", b"old topic")
        fs.fsync_dir(f"{base}/gpu-0")
        fs.rmtree(f"{base}/gpu-0")
        fs.fsync_dir(base)
        fs.makedirs(f"{base}/gpu-0")
        fs.fsync_dir(base)
        fs.crash()
        assert fs.listdir(f"{base}/gpu-0") == []
