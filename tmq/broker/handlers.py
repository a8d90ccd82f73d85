"""The table of request handlers a broker serves: one entry per advertised API."""

from __future__ import annotations

from functools import partial

from tmq.protocol.apis import ApiKey

from . import admin_apis, data_apis, group_apis
from .broker import Broker
from .dispatch import Dispatcher

__all__ = ["build_dispatcher"]


def build_dispatcher(broker: Broker) -> Dispatcher:
    """A dispatcher serving every API this broker implements (and advertising only those)."""
    dispatcher = Dispatcher({}, with_client_host=frozenset({ApiKey.JOIN_GROUP}))
    dispatcher.handlers.update(
        {
            ApiKey.PRODUCE: partial(data_apis.produce, broker),
            ApiKey.FETCH: partial(data_apis.fetch, broker),
            ApiKey.LIST_OFFSETS: partial(data_apis.list_offsets, broker),
            ApiKey.OFFSET_FOR_LEADER_EPOCH: partial(data_apis.offset_for_leader_epoch, broker),
            ApiKey.METADATA: partial(admin_apis.metadata, broker),
            ApiKey.API_VERSIONS: partial(admin_apis.api_versions, dispatcher),
            ApiKey.CREATE_TOPICS: partial(admin_apis.create_topics, broker),
            ApiKey.DELETE_TOPICS: partial(admin_apis.delete_topics, broker),
            ApiKey.INIT_PRODUCER_ID: partial(admin_apis.init_producer_id, broker),
            ApiKey.FIND_COORDINATOR: partial(admin_apis.find_coordinator, broker),
            ApiKey.OFFSET_COMMIT: partial(admin_apis.offset_commit, broker),
            ApiKey.OFFSET_FETCH: partial(admin_apis.offset_fetch, broker),
            ApiKey.JOIN_GROUP: partial(group_apis.join_group, broker),
            ApiKey.SYNC_GROUP: partial(group_apis.sync_group, broker),
            ApiKey.HEARTBEAT: partial(group_apis.heartbeat, broker),
            ApiKey.LEAVE_GROUP: partial(group_apis.leave_group, broker),
            ApiKey.DESCRIBE_GROUPS: partial(group_apis.describe_groups, broker),
            ApiKey.LIST_GROUPS: partial(group_apis.list_groups, broker),
        }
    )
    return dispatcher
