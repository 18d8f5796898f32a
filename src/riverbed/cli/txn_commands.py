"""``riverbed txn list|describe|producers``: the transaction coordinator's view
(ListTransactions, DescribeTransactions) and the producers active on a partition
(DescribeProducers), like Kafka's ``kafka-transactions.sh``. confluent-kafka's AdminClient has
no such calls, so these go through :class:`WireClient`."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.describe_producers import (
    DescribeProducersRequest,
    DescribeProducersResponse,
)
from riverbed.protocol.messages.describe_transactions import (
    DescribeTransactionsRequest,
    DescribeTransactionsResponse,
)
from riverbed.protocol.messages.list_transactions import (
    ListTransactionsRequest,
    ListTransactionsResponse,
)

from .client_commands import CommandError
from .wire_client import WireClient


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def txn_command(args: argparse.Namespace) -> int:
    with WireClient(args.bootstrap) as client:
        if args.action == "list":
            lreq = ListTransactionsRequest(state_filters=list(args.state or []), producer_id_filters=list(args.producer_id or []), duration_filter=args.duration_ms if args.duration_ms is not None else -1)
            lresp = client.request(lreq, 1)
            assert isinstance(lresp, ListTransactionsResponse)
            if lresp.error_code:
                raise CommandError(f"list transactions: {_error_name(lresp.error_code)}")
            if lresp.unknown_state_filters:
                raise CommandError(f"unknown states: {', '.join(lresp.unknown_state_filters)}")
            print(f"{'TRANSACTIONAL-ID':40} {'PRODUCER-ID':>12}  STATE")
            for lt in sorted(lresp.transaction_states, key=lambda t: t.transactional_id):
                print(f"{lt.transactional_id:40} {lt.producer_id:>12}  {lt.transaction_state}")
        elif args.action == "describe":
            resp = client.request(DescribeTransactionsRequest(transactional_ids=[args.transactional_id]), 0)
            assert isinstance(resp, DescribeTransactionsResponse)
            (t,) = resp.transaction_states
            if t.error_code:
                raise CommandError(f"describe {args.transactional_id}: {_error_name(t.error_code)}")
            print(f"Transactional id: {t.transactional_id}")
            print(f"State:            {t.transaction_state}")
            print(f"Producer id:      {t.producer_id}\tepoch: {t.producer_epoch}")
            print(f"Timeout:          {t.transaction_timeout_ms} ms")
            if t.transaction_start_time_ms >= 0:
                start = datetime.fromtimestamp(t.transaction_start_time_ms / 1000, UTC).isoformat(timespec="milliseconds")
                running = int(time.time() * 1000) - t.transaction_start_time_ms
                print(f"Started:          {start} ({running} ms ago)")
            parts = [f"{d.topic}-{p}" for d in t.topics for p in d.partitions]
            print(f"Partitions:       {', '.join(parts) if parts else '-'}")
        elif args.action == "producers":
            partitions = args.partition or [0]
            preq = DescribeProducersRequest(topics=[DescribeProducersRequest.TopicRequest(name=args.topic, partition_indexes=partitions)])
            presp = client.request(preq, 0)
            assert isinstance(presp, DescribeProducersResponse)
            print(f"{'PARTITION':>9} {'PRODUCER-ID':>12} {'EPOCH':>6} {'LAST-SEQUENCE':>13} {'LAST-TIMESTAMP':>14} {'TXN-START-OFFSET':>16}")
            for topic in presp.topics:
                for part in topic.partitions:
                    if part.error_code:
                        raise CommandError(f"{topic.name}-{part.partition_index}: {_error_name(part.error_code)}")
                    for s in part.active_producers:
                        print(f"{part.partition_index:>9} {s.producer_id:>12} {s.producer_epoch:>6} {s.last_sequence:>13} {s.last_timestamp:>14} {s.current_txn_start_offset:>16}")
    return 0
