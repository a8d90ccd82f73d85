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


@dataclass(eq=False)
class _Node:
    """A file's contents: what is in the page cache, and what has reached the disk."""

    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""


@dataclass(eq=False)
class _Dir:
    """A directory: its entries now, and as of its last ``fsync_dir``.

    Entries point at nodes, so a renamed directory keeps its files and a directory made again
    under an old name starts empty, as on a real file system.
    """

    entries: dict[str, _Node | _Dir] = field(default_factory=dict)
    durable_entries: dict[str, _Node | _Dir] = field(default_factory=dict)


@dataclass
class _Failure:
    op: str
    path_contains: str
    errno: int
    remaining: int


class MemoryFile:
    """An open file of a ``MemoryFileSystem``."""

    def __init__(self, fs: MemoryFileSystem, path: str, node: _Node, *, writable: bool = True):
        self._fs = fs
        self.path = path
        self._node = node
        self._writable = writable
        self._closed = False

    @property
    def size(self) -> int:
        return len(self._node.data)

    def _check(self, op: str) -> None:
        if self._closed:
            raise ValueError(f"{self.path} is closed")
        if not self._writable and op in ("append", "truncate"):
            raise OSError(errno_codes.EBADF, "opened read-only", self.path)
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

    Paths are absolute POSIX paths.

    :param capacity_bytes: total bytes all files may hold; ``None`` for no limit.
    """

    def __init__(self, capacity_bytes: int | None = None):
        self.capacity_bytes = capacity_bytes
        self._lock = threading.RLock()
        self._root = _Dir()
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
        used = sum(len(node.data) for node in _files_under(self._root))
        if used + size > self.capacity_bytes:
            raise OSError(errno_codes.ENOSPC, os.strerror(errno_codes.ENOSPC), path)

    def crash(self, keep: Callable[[str, int, int], int] | None = None) -> None:
        """Lose everything not made durable, as a power cut would.

        :param keep: called as ``keep(path, durable_size, current_size)`` for every file whose
            contents changed since its last fsync, returning how many bytes of its current
            contents survive; by default exactly the durable ones. Only a prefix survives.
        """
        with self._lock:
            self._root = _survivor(self._root, "", keep)
            self._failures.clear()

    def corrupt(self, path: str, position: int, value: int) -> None:
        """Overwrite one byte of a file, in the cache and on "disk" (a bit rot model)."""
        with self._lock:
            node = self._file(path)
            node.data[position] = value
            durable = bytearray(node.durable)
            if position < len(durable):
                durable[position] = value
                node.durable = bytes(durable)

    # -- path resolution -------------------------------------------------------------------

    def _lookup(self, path: str) -> _Node | _Dir | None:
        node: _Node | _Dir | None = self._root
        for part in _parts(path):
            if not isinstance(node, _Dir):
                return None
            node = node.entries.get(part)
        return node

    def _dir(self, path: str) -> _Dir:
        node = self._lookup(path)
        if not isinstance(node, _Dir):
            raise FileNotFoundError(errno_codes.ENOENT, "no such directory", path)
        return node

    def _file(self, path: str) -> _Node:
        node = self._lookup(path)
        if not isinstance(node, _Node):
            raise FileNotFoundError(errno_codes.ENOENT, "no such file", path)
        return node

    def _parent(self, path: str) -> tuple[_Dir, str]:
        return self._dir(posixpath.dirname(path)), posixpath.basename(path)

    # -- FileSystem --------------------------------------------------------------------------

    def open(self, path: str, *, writable: bool = True) -> MemoryFile:
        with self._lock:
            self._maybe_fail("open", path)
            if not writable:
                return MemoryFile(self, path, self._file(path), writable=False)
            parent, name = self._parent(path)
            node = parent.entries.setdefault(name, _Node())
            if not isinstance(node, _Node):
                raise IsADirectoryError(errno_codes.EISDIR, "is a directory", path)
            return MemoryFile(self, path, node)

    def exists(self, path: str) -> bool:
        with self._lock:
            return self._lookup(path) is not None

    def listdir(self, path: str) -> list[str]:
        with self._lock:
            return sorted(self._dir(path).entries)

    def makedirs(self, path: str) -> None:
        with self._lock:
            self._maybe_fail("makedirs", path)
            node = self._root
            for part in _parts(path):
                child = node.entries.setdefault(part, _Dir())
                if not isinstance(child, _Dir):
                    raise FileExistsError(errno_codes.EEXIST, "a file is in the way", path)
                node = child

    def rename(self, source: str, target: str) -> None:
        with self._lock:
            self._maybe_fail("rename", source)
            old_parent, old_name = self._parent(source)
            new_parent, new_name = self._parent(target)
            node = old_parent.entries.get(old_name)
            if node is None:
                raise FileNotFoundError(errno_codes.ENOENT, "no such file", source)
            existing = new_parent.entries.get(new_name)
            if isinstance(node, _Dir) and existing is not None:
                raise FileExistsError(errno_codes.EEXIST, "target exists", target)
            del old_parent.entries[old_name]
            new_parent.entries[new_name] = node

    def unlink(self, path: str) -> None:
        with self._lock:
            self._maybe_fail("unlink", path)
            parent, name = self._parent(path)
            if not isinstance(parent.entries.get(name), _Node):
                raise FileNotFoundError(errno_codes.ENOENT, "no such file", path)
            del parent.entries[name]

    def rmtree(self, path: str) -> None:
        with self._lock:
            parent, name = self._parent(path)
            if not isinstance(parent.entries.get(name), _Dir):
                raise FileNotFoundError(errno_codes.ENOENT, "no such directory", path)
            del parent.entries[name]

    def fsync_dir(self, path: str) -> None:
        """Make the entries of directory ``path`` (not their contents) durable."""
        with self._lock:
            self._maybe_fail("fsync_dir", path)
            directory = self._dir(path)
            directory.durable_entries = dict(directory.entries)

    def write_file(self, path: str, data: bytes) -> None:
        with self._lock:
            self._maybe_fail("write_file", path)
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if isinstance(node, _Dir):
                raise IsADirectoryError(errno_codes.EISDIR, "is a directory", path)
            old_size = len(node.data) if node is not None else 0
            self._reserve(len(data) - old_size, path)
            node = parent.entries.setdefault(name, _Node())
            node.data = bytearray(data)
            node.durable = bytes(data)

    def read_file(self, path: str) -> bytes:
        with self._lock:
            self._maybe_fail("read", path)
            return bytes(self._file(path).data)


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _files_under(directory: _Dir):
    for node in directory.entries.values():
        if isinstance(node, _Dir):
            yield from _files_under(node)
        else:
            yield node


def _survivor(directory: _Dir, path: str, keep) -> _Dir:
    """The durable state of ``directory`` after a crash, built afresh."""
    survived = _Dir()
    for name, node in directory.durable_entries.items():
        child_path = f"{path}/{name}"
        if isinstance(node, _Dir):
            survived.entries[name] = _survivor(node, child_path, keep)
            continue
        contents = node.durable
        if keep is not None and bytes(node.data) != node.durable:
            contents = bytes(node.data[: keep(child_path, len(node.durable), len(node.data))])
        survived.entries[name] = _Node(bytearray(contents), contents)
    survived.durable_entries = dict(survived.entries)
    return survived
