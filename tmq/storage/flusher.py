"""Group-commit fsync: one thread per data directory.

``Flusher.request(log)`` (called from ``PartitionLog.durable`` and on roll) queues the log; the
thread fsyncs each queued log once and resolves every waiter the fsync covers. Appends that
arrive while an fsync runs queue the log again and share the next fsync, so N concurrent
appenders cost about one fsync per round, not one each. Logs with ``flush.policy=interval``
are also flushed every ``flush.ms``.

Back-to-back rounds alone cannot do better than one fsync per N/2 appends (the appends of a
round are those that arrived during the previous one). So, like PostgreSQL's ``commit_delay``,
when a log's last round covered more than one waiter — there is concurrency — the thread waits
``commit_delay`` seconds before the next round to gather more. A lone appender never waits.

The thread never touches the reactor: futures are resolved on it, and the broker's glue hands
results back to the reactor thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .config import FlushPolicy
from .log import PartitionLog

__all__ = ["Flusher"]


class Flusher:
    """The fsync thread of one data directory.

    :param commit_delay: seconds to gather more appends before a round, when the last round of
        one of its logs covered more than one waiter (0 to turn it off).
    :param monotonic: seconds on a monotonic clock (for ``flush.ms``).
    :param sleep: how the thread waits out ``commit_delay``.
    :param on_flush: called on the flusher thread with the seconds each log's flush took
        (measured on ``monotonic``), e.g. to feed a histogram.
    """

    def __init__(
        self,
        name: str,
        *,
        commit_delay: float = 0.0002,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_flush: Callable[[float], None] | None = None,
    ):
        self.name = name
        self.commit_delay = commit_delay
        self._monotonic = monotonic
        self._sleep = sleep
        self._on_flush = on_flush
        self._concurrent: set[PartitionLog] = set()
        self._condition = threading.Condition()
        self._queue: dict[PartitionLog, None] = {}
        self._periodic: dict[PartitionLog, float] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        #: fsync rounds run so far (one round may cover many appends).
        self.flushes = 0

    def register(self, log: PartitionLog) -> None:
        """Serve ``log``: route its flush requests here, and flush it every ``flush.ms`` if
        its policy is ``interval``."""
        log.flush_requested = self.request
        with self._condition:
            if log.config.flush_policy is FlushPolicy.INTERVAL:
                self._periodic[log] = self._monotonic() + log.config.flush_ms / 1000
            self._condition.notify()

    def unregister(self, log: PartitionLog) -> None:
        with self._condition:
            self._periodic.pop(log, None)
            self._queue.pop(log, None)
            self._concurrent.discard(log)

    def request(self, log: PartitionLog) -> None:
        """Queue ``log`` for the next fsync round."""
        with self._condition:
            self._queue[log] = None
            self._condition.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"fsync-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._queue and not self._stopping and not self._due():
                    self._condition.wait(self._timeout())
                if self._stopping and not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
                now = self._monotonic()
                for log, deadline in self._periodic.items():
                    if deadline <= now:
                        batch.append(log)
                        self._periodic[log] = now + log.config.flush_ms / 1000
            self.run_round(batch)

    def run_round(self, logs: list[PartitionLog]) -> None:
        """One fsync round over ``logs`` (the thread's loop body; tests call it directly)."""
        logs = list(dict.fromkeys(logs))
        if self.commit_delay and any(log in self._concurrent for log in logs):
            self._sleep(self.commit_delay)
        for log in logs:
            started = self._monotonic()
            resolved = log.flush()
            if self._on_flush is not None:
                self._on_flush(self._monotonic() - started)
            if resolved > 1:
                self._concurrent.add(log)
            else:
                self._concurrent.discard(log)
            self.flushes += 1

    def _due(self) -> bool:
        now = self._monotonic()
        return any(deadline <= now for deadline in self._periodic.values())

    def _timeout(self) -> float | None:
        if not self._periodic:
            return None
        return max(0.0, min(self._periodic.values()) - self._monotonic())
