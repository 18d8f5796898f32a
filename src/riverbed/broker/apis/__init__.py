"""One module per API (or per small family of APIs). ``API_HANDLERS`` maps api key to handler.

A handler's module is imported the first time a request of its API arrives: a broker that
starts pays only for the APIs it is asked for (the modules behind every API, and the message
classes they import, were about a third of start-up's CPU time).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..broker import ApiHandler

_ROUTES: dict[int, tuple[str, str]] = {
    0: ("produce", "handle_produce"),
    1: ("fetch", "handle_fetch"),
    2: ("list_offsets", "handle_list_offsets"),
    3: ("metadata", "handle_metadata"),
    8: ("groups", "handle_offset_commit"),
    9: ("groups", "handle_offset_fetch"),
    10: ("groups", "handle_find_coordinator"),
    11: ("groups", "handle_join_group"),
    12: ("groups", "handle_heartbeat"),
    13: ("groups", "handle_leave_group"),
    14: ("groups", "handle_sync_group"),
    15: ("groups", "handle_describe_groups"),
    16: ("groups", "handle_list_groups"),
    17: ("sasl", "handle_sasl_handshake"),
    18: ("api_versions", "handle_api_versions"),
    19: ("topics", "handle_create_topics"),
    20: ("topics", "handle_delete_topics"),
    21: ("topics", "handle_delete_records"),
    22: ("producer_ids", "handle_init_producer_id"),
    24: ("txns", "handle_add_partitions_to_txn"),
    25: ("txns", "handle_add_offsets_to_txn"),
    26: ("txns", "handle_end_txn"),
    28: ("txns", "handle_txn_offset_commit"),
    29: ("acls", "handle_describe_acls"),
    30: ("acls", "handle_create_acls"),
    31: ("acls", "handle_delete_acls"),
    32: ("configs", "handle_describe_configs"),
    33: ("configs", "handle_alter_configs"),
    34: ("replication", "handle_alter_replica_log_dirs"),
    35: ("log_dirs", "handle_describe_log_dirs"),
    36: ("sasl", "handle_sasl_authenticate"),
    37: ("topics", "handle_create_partitions"),
    42: ("groups", "handle_delete_groups"),
    43: ("replication", "handle_elect_leaders"),
    44: ("configs", "handle_incremental_alter_configs"),
    45: ("replication", "handle_alter_partition_reassignments"),
    46: ("replication", "handle_list_partition_reassignments"),
    47: ("groups", "handle_offset_delete"),
    50: ("scram_users", "handle_describe_user_scram_credentials"),
    51: ("scram_users", "handle_alter_user_scram_credentials"),
    55: ("replication", "handle_describe_quorum"),
    60: ("metadata", "handle_describe_cluster"),
    61: ("txns", "handle_describe_producers"),
    65: ("txns", "handle_describe_transactions"),
    66: ("txns", "handle_list_transactions"),
    68: ("consumer_groups", "handle_consumer_group_heartbeat"),
    69: ("consumer_groups", "handle_consumer_group_describe"),
    75: ("describe_topic_partitions", "handle_describe_topic_partitions"),
    # share groups (KIP-932): share_groups.py
    76: ("share_groups", "handle_share_group_heartbeat"),
    77: ("share_groups", "handle_share_group_describe"),
    78: ("share_groups", "handle_share_fetch"),
    79: ("share_groups", "handle_share_acknowledge"),
    90: ("share_groups", "handle_describe_share_group_offsets"),
    91: ("share_groups", "handle_alter_share_group_offsets"),
    92: ("share_groups", "handle_delete_share_group_offsets"),
    30001: ("log_stats", "handle_describe_log_stats"),  # riverbed extension, not in ApiVersions
    30002: ("share_groups", "handle_describe_share_state"),  # riverbed extension (share groups' in-flight state)
}


def _gates() -> dict[int, tuple[list[Any], Callable[..., Any]]]:
    """The APIs whose whole request needs one permission (see ``authz.py``): checks, and the
    answer to a denied request."""
    from riverbed.protocol.messages.add_offsets_to_txn import AddOffsetsToTxnResponse
    from riverbed.protocol.messages.consumer_group_heartbeat import ConsumerGroupHeartbeatResponse
    from riverbed.protocol.messages.end_txn import EndTxnResponse
    from riverbed.protocol.messages.heartbeat import HeartbeatResponse
    from riverbed.protocol.messages.join_group import JoinGroupResponse
    from riverbed.protocol.messages.leave_group import LeaveGroupResponse
    from riverbed.protocol.messages.sync_group import SyncGroupResponse
    from riverbed.security.acl import AclOperation as Op
    from riverbed.security.acl import ResourceType as Rt

    group = (Op.READ, Rt.GROUP, lambda r: r.group_id)
    txn = (Op.WRITE, Rt.TRANSACTIONAL_ID, lambda r: r.transactional_id)
    gates = {
        11: ([group], lambda v, r, e: JoinGroupResponse(error_code=e, generation_id=-1, member_id=r.member_id)),
        12: ([group], lambda v, r, e: HeartbeatResponse(error_code=e)),
        13: ([group], lambda v, r, e: LeaveGroupResponse(error_code=e)),
        14: ([group], lambda v, r, e: SyncGroupResponse(error_code=e)),
        25: ([txn, group], lambda v, r, e: AddOffsetsToTxnResponse(error_code=e)),
        26: ([txn], lambda v, r, e: EndTxnResponse(error_code=e)),
        68: ([group], lambda v, r, e: ConsumerGroupHeartbeatResponse(error_code=e, error_message=None, member_id=r.member_id or None, member_epoch=-1)),
    }
    return gates


def _resolve(key: int) -> ApiHandler:
    """Import the handler of ``key``'s API (gated when its whole request needs a permission)
    and put it in ``API_HANDLERS`` in place of its stub."""
    module, name = _ROUTES[key]
    handler: ApiHandler = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    gate = _gates().get(key)
    if gate is not None:
        from .authz import gated

        handler = gated(handler, *gate)
    API_HANDLERS[key] = handler
    return handler


def _stub(key: int) -> ApiHandler:
    def first_request(*args: Any) -> Any:
        handler = API_HANDLERS[key]
        if handler is first_request:  # not resolved by a request before this one
            handler = _resolve(key)
        return handler(*args)

    return first_request


API_HANDLERS: dict[int, ApiHandler] = {key: _stub(key) for key in _ROUTES}
