"""The controller role of a broker (DESIGN §5): campaign, then keep leadership in step with
the live brokers, and create topics.

Every broker campaigns through its registration; the one holding the ``controller`` key acts:

* on winning, and whenever a broker registers or is lost, it *reconciles*
  (``controller.reconcile``): epoch + 1 for leaders that registered again since their
  leadership was written, leaders for partitions whose leader is gone, dead members out of
  the ISR;
* CreateTopics: replicas assigned over the live brokers (rack-aware), the first replica
  leads, the ISR is every replica, epoch 0.

Every write carries ``ControllerFence(controller_epoch)``, so a deposed controller's writes
fail (``Fenced``), and compares the version it decided from (a lost race, ``StaleVersion``,
makes it reconcile again once the watch has delivered the newer state). Reconciliations run
one at a time; one asked for while another runs runs right after it.

The controller decides from the ``view`` (the broker's picture of the store, kept current by
the store's watch): ``view.topics``, ``view.states`` ((topic, partition) -> state) and
``view.live`` (broker id -> ``BrokerInfo``). The store fires a write's Deferred only after its
watchers got the change, so the view is current when the next reconciliation reads it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from .controller import assign_replicas, reconcile
from .store import (
    ControllerFence,
    Fenced,
    MetadataStore,
    MetadataStoreError,
    PartitionState,
    Registration,
    StaleVersion,
    TopicSpec,
    UnknownTopic,
)

__all__ = ["ControllerService", "NotController"]

_log = Logger()

#: How long a reconciliation that failed to reach the store waits before trying again.
_RETRY_S = 1.0


class NotController(Exception):
    """This broker is not the controller (CreateTopics answers NOT_CONTROLLER)."""


class ControllerService:
    """One broker's controller role.

    :param view: the broker's view of the store (see the module).
    :param clock: the reactor (``callLater``).
    """

    def __init__(self, store: MetadataStore, view: Any, clock: Any):
        self.store = store
        self.view = view
        self.clock = clock
        #: The controller epoch while this broker is the controller, else None.
        self.epoch: int | None = None
        self._registration: Registration | None = None
        self._running = False
        self._again = False
        self._retry = None

    @property
    def active(self) -> bool:
        return self.epoch is not None

    def start(self, registration: Registration) -> None:
        """Campaign with ``registration`` (the role ends with it)."""
        self._registration = registration
        self.store.campaign(registration).addCallbacks(
            self._elected, self._campaign_failed, errbackArgs=(registration,)
        )

    def _elected(self, epoch: int) -> None:
        if self._registration is None:
            return
        _log.info("this broker is the controller (epoch {epoch})", epoch=epoch)
        self.epoch = epoch
        self.reconcile()

    def _campaign_failed(self, failure, registration) -> None:
        if registration is self._registration:
            self._registration = None
        if not failure.check(Fenced, MetadataStoreError):
            _log.failure("the controller campaign failed", failure)

    def stop(self) -> None:
        """Stop acting (the registration ended or the broker stops)."""
        self._registration = None
        self.epoch = None
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    # -- reconciliation -----------------------------------------------------------------------

    def reconcile(self) -> None:
        """Bring leaders and ISRs in step with the live brokers (see the module)."""
        if not self.active:
            return
        if self._running:
            self._again = True
            return
        self._running = True
        self._reconcile().addBoth(self._reconciled)

    def _reconciled(self, _) -> None:
        self._running = False
        if self._again:
            self._again = False
            self.reconcile()

    def _decisions(self) -> list[tuple[str, int, PartitionState, PartitionState]]:
        broker_epochs = {id_: info.broker_epoch for id_, info in self.view.live.items()}
        decisions = []
        for name, spec in sorted(self.view.topics.items()):
            states = {}
            for index in range(spec.partitions):
                state = self.view.states.get((name, index))
                if state is not None:
                    states[index] = state
            changes = reconcile(spec, states, broker_epochs, self.epoch)
            for index, new in sorted(changes.items()):
                decisions.append((name, index, states[index], new))
        return decisions

    @defer.inlineCallbacks
    def _reconcile(self):
        for name, index, old, new in self._decisions():
            if not self.active:
                return
            try:
                yield self.store.update_partition_state(
                    name, index, new, old.version, ControllerFence(self.epoch)
                )
            except StaleVersion:
                self._again = True  # decide again from the newer state
            except UnknownTopic:
                continue  # deleted meanwhile
            except Fenced:
                _log.warn("this broker is no longer the controller")
                self.stop()
                return
            except MetadataStoreError as error:
                _log.warn("the controller cannot reach the store ({error}); retrying", error=error)
                self._schedule_retry()
                return
            else:
                _log.info(
                    "{topic}-{index}: leader {leader} epoch {epoch} isr {isr}",
                    topic=name,
                    index=index,
                    leader=new.leader,
                    epoch=new.leader_epoch,
                    isr=list(new.isr),
                )

    def _schedule_retry(self) -> None:
        if self._retry is None or not self._retry.active():
            self._retry = self.clock.callLater(_RETRY_S, self.reconcile)

    # -- topics -------------------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> defer.Deferred:
        """Assign replicas over the live brokers and write the topic, fenced.

        :raises NotController: not the controller (raised at once).
        :raises tmq.cluster.controller.InvalidAssignment: more replicas than live brokers.
        """
        if not self.active:
            raise NotController("this broker is not the controller")
        racks = {broker_id: info.rack for broker_id, info in self.view.live.items()}
        assignment = assign_replicas(
            partitions, replication_factor, racks, start=len(self.view.topics)
        )
        spec = TopicSpec(
            name=name,
            partitions=partitions,
            replication_factor=replication_factor,
            assignment=assignment,
            configs=dict(configs),
        )
        states = {
            p: PartitionState(
                leader=replicas[0], leader_epoch=0, isr=replicas, controller_epoch=self.epoch
            )
            for p, replicas in assignment.items()
        }
        return self.store.create_topic(spec, states, ControllerFence(self.epoch))
