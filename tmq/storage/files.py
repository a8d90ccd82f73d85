"""The file layer under the log: every byte the storage engine reads or writes goes through it.

``FileSystem`` and ``File`` are the interface; ``OsFileSystem`` is the real one (``os.pread`` /
``os.pwrite`` / ``os.fsync`` on raw file descriptors). ``tmq.storage.memory_fs`` holds the
in-memory twin used to model crashes and inject errors; both pass the same contract tests.

Contract of ``File`` (one writer; reads may come from any thread):

* ``append(data)`` writes all of ``data`` at the end of the file and returns the position it
  starts at. If it raises, the file is as it was before the call: a failed append never leaves
  a partial write behind (the partial bytes are truncated away; if even that fails the file is
  marked broken and every later call raises ``OSError``).
* ``read(position, size)`` returns up to ``size`` bytes (fewer only at the end of the file).
* ``fsync()`` makes everything written so far durable; only then may it be called durable.
* ``size`` is the current length, kept in memory (no ``fstat`` per call).

``FileSystem.open(path)`` opens read-write and creates a missing file; with ``writable=False``
it opens an existing file read-only (inspection tools), and writes raise ``OSError(EBADF)``.
"""

from __future__ import annotations

import errno
import os
import shutil
from typing import Protocol

__all__ = ["File", "FileSystem", "OsFile", "OsFileSystem"]


class File(Protocol):
    """An open data file (see the module docstring for the contract)."""

    path: str

    @property
    def size(self) -> int: ...

    def append(self, data: bytes | bytearray | memoryview) -> int: ...

    def read(self, position: int, size: int) -> bytes: ...

    def truncate(self, size: int) -> None: ...

    def fsync(self) -> None: ...

    def close(self) -> None: ...


class FileSystem(Protocol):
    """Directory operations and file opening.

    ``rename`` replaces the target atomically; directory changes (create, rename, unlink) are
    durable only after ``fsync_dir`` of the parent directory.
    """

    def open(self, path: str, *, writable: bool = True) -> File: ...

    def exists(self, path: str) -> bool: ...

    def listdir(self, path: str) -> list[str]: ...

    def makedirs(self, path: str) -> None: ...

    def rename(self, source: str, target: str) -> None: ...

    def unlink(self, path: str) -> None: ...

    def rmtree(self, path: str) -> None: ...

    def fsync_dir(self, path: str) -> None: ...

    def write_file(self, path: str, data: bytes) -> None: ...

    def read_file(self, path: str) -> bytes: ...


class OsFile:
    """A file on the real file system: read-write (created if missing), or read-only."""

    __slots__ = ("_broken", "_fd", "_size", "path")

    def __init__(self, path: str, *, writable: bool = True):
        self.path = path
        flags = os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY
        self._fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._broken: OSError | None = None

    @property
    def size(self) -> int:
        return self._size

    def _check(self) -> None:
        if self._broken is not None:
            raise OSError(self._broken.errno, f"{self.path} is unusable after a failed write")

    def append(self, data: bytes | bytearray | memoryview) -> int:
        self._check()
        start = self._size
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                count = os.pwrite(self._fd, view[written:], start + written)
                if count == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
                written += count
        except OSError as error:
            self._undo_partial(start, error)
            raise
        self._size = start + written
        return start

    def _undo_partial(self, start: int, error: OSError) -> None:
        try:
            os.ftruncate(self._fd, start)
        except OSError:
            self._broken = error

    def read(self, position: int, size: int) -> bytes:
        self._check()
        return os.pread(self._fd, size, position)

    def truncate(self, size: int) -> None:
        self._check()
        os.ftruncate(self._fd, size)
        self._size = size

    def fsync(self) -> None:
        self._check()
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OsFileSystem:
    """The real file system."""

    def open(self, path: str, *, writable: bool = True) -> OsFile:
        return OsFile(path, writable=writable)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def rename(self, source: str, target: str) -> None:
        os.replace(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def rmtree(self, path: str) -> None:
        shutil.rmtree(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_file(self, path: str, data: bytes) -> None:
        """Create or replace ``path`` with ``data`` and fsync it (not its directory)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()
