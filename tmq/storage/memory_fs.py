"""An in-memory ``FileSystem`` that can crash, fill up and fail on demand.

It holds the same contract as ``OsFileSystem`` (the same contract tests run against both) and
adds what a real disk cannot show a test:

* **Crash model.** Each file remembers the bytes it held at its last ``fsync``; each directory
  remembers its entries as of its last ``fsync_dir``. ``crash()`` throws away everything else,
  as a power cut would lose the page cache: unsynced appends vanish, and a file created or
  renamed without an fsync of its directory is gone (or still has its old name). ``keep`` lets
  a test keep any part of the unsynced bytes, the way a kernel may have written some of them.
* **Capacity.** With ``capacity_bytes`` set, an append that would exceed it fails with ENOSPC
  (and, per the ``File`` contract, leaves the file unchanged).
* **Injected errors.** ``fail(op, errno)`` makes the next matching operation raise ``OSError``.

Thread-safe enough for one writer plus an fsync thread: every operation holds one lock.
"""

from __future__ import annotations

import errno as errno_codes
import os
import posixpath
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["MemoryFile", "MemoryFileSystem"]


@dataclass
class _Node:
    """A file's contents: what is in the page cache, and what has reached the disk."""

    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""


@dataclass
class _Failure:
    op: str
    path_contains: str
    errno: int
    remaining: int


class MemoryFile:
    """An open file of a ``MemoryFileSystem``."""

    def __init__(self, fs: MemoryFileSystem, path: str, node: _Node):
        self._fs = fs
        self.path = path
        self._node = node
        self._closed = False

    @property
    def size(self) -> int:
        return len(self._node.data)

    def _check(self, op: str) -> None:
        if self._closed:
            raise ValueError(f"{self.path} is closed")
        self._fs._maybe_fail(op, self.path)

    def append(self, data: bytes | bytearray | memoryview) -> int:
        with self._fs._lock:
            self._check("append")
            start = len(self._node.data)
            self._fs._reserve(len(data), self.path)
            self._node.data += data
            return start

    def read(self, position: int, size: int) -> bytes:
        with self._fs._lock:
            self._check("read")
            return bytes(self._node.data[position : position + size])

    def truncate(self, size: int) -> None:
        with self._fs._lock:
            self._check("truncate")
            data = self._node.data
            if size < len(data):
                del data[size:]
            else:
                data += bytes(size - len(data))

    def fsync(self) -> None:
        with self._fs._lock:
            self._check("fsync")
            self._node.durable = bytes(self._node.data)
            self._fs.fsync_count += 1

    def close(self) -> None:
        self._closed = True


class MemoryFileSystem:
    """A file system in memory with a crash model (see the module docstring).

    :param capacity_bytes: total bytes all files may hold; ``None`` for no limit.
    """

    def __init__(self, capacity_bytes: int | None = None):
        self.capacity_bytes = capacity_bytes
        self._lock = threading.RLock()
        self._dirs: set[str] = {"/"}
        self._durable_dirs: set[str] = {"/"}
        self._files: dict[str, _Node] = {}
        self._durable_files: dict[str, _Node] = {}
        self._failures: list[_Failure] = []
        #: fsync calls on files so far (a test reads it to count group commits).
        self.fsync_count = 0

    # -- fault injection -------------------------------------------------------------------

    def fail(
        self, op: str, error: int = errno_codes.EIO, *, path_contains: str = "", times: int = 1
    ) -> None:
        """Make the next ``times`` calls of ``op`` on a matching path raise ``OSError(error)``.

        ``op`` is a method name: ``append``, ``read``, ``truncate``, ``fsync``, ``open``,
        ``rename``, ``unlink``, ``fsync_dir``, ``write_file``, ``makedirs``.
        """
        with self._lock:
            self._failures.append(_Failure(op, path_contains, error, times))

    def _maybe_fail(self, op: str, path: str) -> None:
        for failure in self._failures:
            if failure.op == op and failure.path_contains in path and failure.remaining > 0:
                failure.remaining -= 1
                raise OSError(failure.errno, os.strerror(failure.errno), path)

    def _reserve(self, size: int, path: str) -> None:
        if self.capacity_bytes is None:
            return
        used = sum(len(node.data) for node in self._files.values())
        if used + size > self.capacity_bytes:
            raise OSError(errno_codes.ENOSPC, os.strerror(errno_codes.ENOSPC), path)

    def crash(self, keep: Callable[[str, int, int], int] | None = None) -> None:
        """Lose everything not made durable, as a power cut would.

        :param keep: called as ``keep(path, durable_size, current_size)`` for every file whose
            contents changed since its last fsync, returning how many bytes of its current
            contents survive; by default exactly the durable ones. Only a prefix survives.
        """
        with self._lock:
            files = {}
            for path, node in self._durable_files.items():
                if not self._durable_parents(path):
                    continue
                contents = node.durable
                if keep is not None and bytes(node.data) != node.durable:
                    size = keep(path, len(node.durable), len(node.data))
                    contents = bytes(node.data[:size])
                files[path] = _Node(bytearray(contents), contents)
            self._files = files
            self._durable_files = dict(files)
            self._dirs = {d for d in self._durable_dirs if self._durable_parents(d)}
            self._durable_dirs = set(self._dirs)
            self._failures.clear()

    def _durable_parents(self, path: str) -> bool:
        parent = posixpath.dirname(path)
        while parent != "/":
            if parent not in self._durable_dirs:
                return False
            parent = posixpath.dirname(parent)
        return True

    def corrupt(self, path: str, position: int, value: int) -> None:
        """Overwrite one byte of a file, in the cache and on "disk" (a bit rot model)."""
        with self._lock:
            node = self._files[path]
            node.data[position] = value
            durable = bytearray(node.durable)
            if position < len(durable):
                durable[position] = value
                node.durable = bytes(durable)

    # -- FileSystem --------------------------------------------------------------------------

    def open(self, path: str) -> MemoryFile:
        with self._lock:
            self._maybe_fail("open", path)
            self._require_dir(posixpath.dirname(path))
            node = self._files.setdefault(path, _Node())
            return MemoryFile(self, path, node)

    def exists(self, path: str) -> bool:
        with self._lock:
            return path in self._files or path in self._dirs

    def listdir(self, path: str) -> list[str]:
        with self._lock:
            self._require_dir(path)
            prefix = path.rstrip("/") + "/"
            names = {
                p[len(prefix) :]
                for p in (*self._files, *self._dirs)
                if p.startswith(prefix) and "/" not in p[len(prefix) :] and p != prefix
            }
            return sorted(names)

    def makedirs(self, path: str) -> None:
        with self._lock:
            self._maybe_fail("makedirs", path)
            path = path.rstrip("/") or "/"
            while path not in self._dirs:
                if path in self._files:
                    raise FileExistsError(errno_codes.EEXIST, "a file is in the way", path)
                self._dirs.add(path)
                path = posixpath.dirname(path)

    def rename(self, source: str, target: str) -> None:
        with self._lock:
            self._maybe_fail("rename", source)
            if source in self._dirs:
                self._rename_dir(source, target)
                return
            if source not in self._files:
                raise FileNotFoundError(errno_codes.ENOENT, "no such file", source)
            self._require_dir(posixpath.dirname(target))
            self._files[target] = self._files.pop(source)

    def _rename_dir(self, source: str, target: str) -> None:
        if target in self._dirs or target in self._files:
            raise FileExistsError(errno_codes.EEXIST, "target exists", target)
        prefix = source + "/"
        for old in [p for p in self._files if p.startswith(prefix)]:
            self._files[target + old[len(source) :]] = self._files.pop(old)
        for old in [d for d in self._dirs if d == source or d.startswith(prefix)]:
            self._dirs.remove(old)
            self._dirs.add(target + old[len(source) :])

    def unlink(self, path: str) -> None:
        with self._lock:
            self._maybe_fail("unlink", path)
            if self._files.pop(path, None) is None:
                raise FileNotFoundError(errno_codes.ENOENT, "no such file", path)

    def rmtree(self, path: str) -> None:
        with self._lock:
            self._require_dir(path)
            prefix = path + "/"
            for p in [p for p in self._files if p.startswith(prefix)]:
                del self._files[p]
            self._dirs = {d for d in self._dirs if d != path and not d.startswith(prefix)}

    def fsync_dir(self, path: str) -> None:
        """Make the entries of directory ``path`` (not their contents) durable."""
        with self._lock:
            self._maybe_fail("fsync_dir", path)
            self._require_dir(path)
            prefix = path.rstrip("/") + "/"

            def child(p: str) -> bool:
                return p.startswith(prefix) and "/" not in p[len(prefix) :]

            self._durable_files = {p: n for p, n in self._durable_files.items() if not child(p)}
            self._durable_files.update({p: n for p, n in self._files.items() if child(p)})
            self._durable_dirs = {d for d in self._durable_dirs if not child(d)}
            self._durable_dirs.update(d for d in self._dirs if child(d))

    def write_file(self, path: str, data: bytes) -> None:
        with self._lock:
            self._maybe_fail("write_file", path)
            self._require_dir(posixpath.dirname(path))
            node = self._files.setdefault(path, _Node())
            self._reserve(len(data) - len(node.data), path)
            node.data = bytearray(data)
            node.durable = bytes(data)

    def read_file(self, path: str) -> bytes:
        with self._lock:
            self._maybe_fail("read", path)
            node = self._files.get(path)
            if node is None:
                raise FileNotFoundError(errno_codes.ENOENT, "no such file", path)
            return bytes(node.data)

    def _require_dir(self, path: str) -> None:
        if path not in self._dirs:
            raise FileNotFoundError(errno_codes.ENOENT, "no such directory", path)
