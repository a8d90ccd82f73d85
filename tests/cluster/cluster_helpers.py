"""Shared helpers of the ``tmq.cluster`` tests: reading Deferreds that already fired, and
building topics and brokers.

Unit tests never run a reactor: the local store returns Deferreds that have fired, and these
helpers take their result or failure out (as trial's ``successResultOf`` / ``failureResultOf``
do), failing the test if the Deferred has not fired yet.
"""

from __future__ import annotations

from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from tmq.cluster.store import BrokerInfo, PartitionState, TopicSpec

T = TypeVar("T")


def _outcome(deferred: Deferred) -> object:
    outcome: list[object] = []
    deferred.addBoth(outcome.append)  # also consumes a failure: no "unhandled error" later
    assert outcome, f"{deferred!r} has not fired"
    return outcome[0]


def result_of(deferred: Deferred[T]) -> T:
    """The result of a Deferred that has fired with success; a failure is raised."""
    outcome = _outcome(deferred)
    if isinstance(outcome, Failure):
        outcome.raiseException()
    return outcome


def failure_of(deferred: Deferred, *types: type[BaseException]) -> BaseException:
    """The exception a Deferred has failed with, which must be an instance of ``types``."""
    outcome = _outcome(deferred)
    assert isinstance(outcome, Failure), f"expected a failure, the Deferred fired {outcome!r}"
    assert outcome.check(*types), f"expected one of {types}, got {outcome.getTraceback()}"
    return outcome.value


def topic(
    name: str = "gpu",
    partitions: int = 2,
    brokers: tuple[int, ...] = (1, 2, 3),
    replication_factor: int = 2,
    configs: dict[str, str] | None = None,
) -> tuple[TopicSpec, dict[int, PartitionState]]:
    """A topic whose replicas are assigned round-robin over ``brokers``, and its initial
    states: the first replica leads at epoch 0 and every replica is in sync."""
    assignment = {
        p: tuple(brokers[(p + i) % len(brokers)] for i in range(replication_factor))
        for p in range(partitions)
    }
    spec = TopicSpec(name, partitions, replication_factor, assignment, configs or {})
    states = {
        p: PartitionState(leader=replicas[0], leader_epoch=0, isr=replicas, controller_epoch=1)
        for p, replicas in assignment.items()
    }
    return spec, states


def broker(broker_id: int, rack: str | None = None) -> BrokerInfo:
    """The ``BrokerInfo`` of broker ``broker_id`` as it registers (no epoch yet)."""
    return BrokerInfo(broker_id, f"broker-{broker_id}.example", 9090 + broker_id, rack)
