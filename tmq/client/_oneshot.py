"""``OneShot``: one outcome, any number of waiters."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

__all__ = ["OneShot"]


class OneShot:
    """An outcome that happens once (a connection becoming ready, a metadata refresh) and that
    several callers wait for, each with a Deferred of its own.

    Waiters added after the outcome get it at once. A failure is delivered to every waiter.
    """

    __slots__ = ("_fired", "_result", "_waiters")

    def __init__(self) -> None:
        self._waiters: list[Deferred] = []
        self._fired = False
        self._result: Any = None

    @property
    def fired(self) -> bool:
        """Whether the outcome is known."""
        return self._fired

    def wait(self) -> Deferred:
        """Return a new Deferred that fires with the outcome."""
        if self._fired:
            if isinstance(self._result, Failure):
                return fail(self._result)
            return succeed(self._result)
        waiter: Deferred = Deferred()
        self._waiters.append(waiter)
        return waiter

    def fire(self, result: Any) -> None:
        """Deliver ``result`` (a value or a ``Failure``) to every waiter; later calls do nothing."""
        if self._fired:
            return
        self._fired = True
        self._result = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
