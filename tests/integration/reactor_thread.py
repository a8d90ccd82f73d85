"""The global Twisted reactor, running in a daemon thread for the integration tests that
drive reactor-based code (txpostgres, etcd stores) from pytest's thread.

``call(function, *args)`` runs ``function`` on the reactor thread and waits for the result
of the Deferred it returns (``blockingCallFromThread``). The reactor starts on first use and
runs until the test process ends; it installs no signal handlers.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_thread: threading.Thread | None = None


def running_reactor() -> Any:
    """The global reactor, started in a daemon thread if it is not running yet."""
    global _thread
    from twisted.internet import reactor

    with _lock:
        if _thread is None:
            started = threading.Event()
            reactor.callWhenRunning(started.set)
            _thread = threading.Thread(
                target=reactor.run,
                kwargs={"installSignalHandlers": False},
                name="twisted-reactor",
                daemon=True,
            )
            _thread.start()
            if not started.wait(30):
                raise RuntimeError("the reactor did not start within 30 s")
    return reactor


def call(function, *args, **kwargs) -> Any:
    """``function(*args, **kwargs)`` on the reactor thread; its (Deferred's) result."""
    from twisted.internet.threads import blockingCallFromThread

    return blockingCallFromThread(running_reactor(), function, *args, **kwargs)
