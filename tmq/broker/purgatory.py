"""Delayed operations: requests that wait for a condition or a timeout.

A delayed Fetch waits until enough bytes can be returned (``min_bytes``) or ``max_wait_ms``
passes. ``Purgatory.delay`` registers an operation under watch keys (topic-partitions); a
``touch(key)`` (an append) re-checks the operations watching that key; the timer (on the
injected clock) completes the rest. Each operation completes exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

__all__ = ["Purgatory"]


class _Operation:
    __slots__ = ("check", "complete", "deferred", "keys", "timer")

    def __init__(self, keys, check, complete):
        self.keys = keys
        self.check = check
        self.complete = complete
        self.deferred = defer.Deferred(lambda _: None)
        self.timer = None


class Purgatory:
    """Waiting operations keyed by what can wake them.

    :param clock: the reactor's clock (``callLater``).
    """

    def __init__(self, clock: IReactorTime):
        self.clock = clock
        self._watchers: dict[Hashable, set[_Operation]] = {}

    def delay(
        self,
        keys: list[Hashable],
        check: Callable[[], bool],
        complete: Callable[[], object],
        timeout_s: float,
    ) -> defer.Deferred:
        """A Deferred firing with ``complete()`` once ``check()`` is true after a ``touch`` of
        one of ``keys``, or once ``timeout_s`` passes."""
        operation = _Operation(list(keys), check, complete)
        for key in operation.keys:
            self._watchers.setdefault(key, set()).add(operation)
        operation.timer = self.clock.callLater(timeout_s, self._finish, operation)
        operation.deferred.addErrback(self._cancelled, operation)
        return operation.deferred

    def touch(self, key: Hashable) -> None:
        """Re-check the operations watching ``key``."""
        for operation in list(self._watchers.get(key, ())):
            if operation.check():
                self._finish(operation)

    def _forget(self, operation: _Operation) -> None:
        for key in operation.keys:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(operation)
                if not watchers:
                    del self._watchers[key]
        if operation.timer is not None and operation.timer.active():
            operation.timer.cancel()

    def _finish(self, operation: _Operation) -> None:
        self._forget(operation)
        if not operation.deferred.called:
            try:
                result = operation.complete()
            except Exception:
                operation.deferred.errback()
            else:
                operation.deferred.callback(result)

    def _cancelled(self, failure, operation: _Operation):
        self._forget(operation)
        return failure

    def complete_all(self) -> None:
        """Complete every waiting operation now (graceful shutdown)."""
        for operation in {op for ops in self._watchers.values() for op in ops}:
            self._finish(operation)

    @property
    def waiting(self) -> int:
        """Operations still waiting."""
        return len({op for ops in self._watchers.values() for op in ops})
