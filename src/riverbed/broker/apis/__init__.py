"""One module per API (or per small family of APIs). ``API_HANDLERS`` maps api key to handler."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import (
    api_versions,
    configs,
    consumer_groups,
    fetch,
    groups,
    list_offsets,
    log_dirs,
    log_stats,
    metadata,
    produce,
    producer_ids,
    topics,
    txns,
)

if TYPE_CHECKING:
    from ..broker import ApiHandler

API_HANDLERS: dict[int, ApiHandler] = {
    0: produce.handle_produce,
    1: fetch.handle_fetch,
    2: list_offsets.handle_list_offsets,
    3: metadata.handle_metadata,
    8: groups.handle_offset_commit,
    9: groups.handle_offset_fetch,
    10: groups.handle_find_coordinator,
    11: groups.handle_join_group,
    12: groups.handle_heartbeat,
    13: groups.handle_leave_group,
    14: groups.handle_sync_group,
    15: groups.handle_describe_groups,
    16: groups.handle_list_groups,
    18: api_versions.handle_api_versions,
    19: topics.handle_create_topics,
    20: topics.handle_delete_topics,
    21: topics.handle_delete_records,
    22: producer_ids.handle_init_producer_id,
    24: txns.handle_add_partitions_to_txn,
    25: txns.handle_add_offsets_to_txn,
    26: txns.handle_end_txn,
    28: txns.handle_txn_offset_commit,
    32: configs.handle_describe_configs,
    33: configs.handle_alter_configs,
    35: log_dirs.handle_describe_log_dirs,
    37: topics.handle_create_partitions,
    42: groups.handle_delete_groups,
    44: configs.handle_incremental_alter_configs,
    47: groups.handle_offset_delete,
    60: metadata.handle_describe_cluster,
    61: txns.handle_describe_producers,
    65: txns.handle_describe_transactions,
    66: txns.handle_list_transactions,
    68: consumer_groups.handle_consumer_group_heartbeat,
    69: consumer_groups.handle_consumer_group_describe,
    30001: log_stats.handle_describe_log_stats,  # riverbed extension, not in ApiVersions
}
