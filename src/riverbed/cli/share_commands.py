"""``riverbed share-group list|describe|reset-offsets|delete``: share groups (KIP-932) through
the Kafka protocol (ListGroups with the type filter, ShareGroupDescribe,
DescribeShareGroupOffsets v1 for start offsets and lag, AlterShareGroupOffsets,
DeleteGroups), so they also work against Apache Kafka 4.2."""

from __future__ import annotations

import argparse
from typing import Any

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.alter_share_group_offsets import AlterShareGroupOffsetsRequest
from riverbed.protocol.messages.delete_groups import DeleteGroupsRequest
from riverbed.protocol.messages.describe_share_group_offsets import DescribeShareGroupOffsetsRequest
from riverbed.protocol.messages.list_groups import ListGroupsRequest
from riverbed.protocol.messages.metadata import MetadataRequest
from riverbed.protocol.messages.share_group_describe import ShareGroupDescribeRequest
from riverbed.protocol.share_extension import DescribeShareStateRequest

from .client_commands import CommandError
from .wire_client import WireClient


def add_share_parser(sub: Any, client: Any) -> None:
    s = sub.add_parser(
        "share-group",
        help="list, describe, delete share groups (KIP-932) or reset their start offsets",
    )
    ssub = s.add_subparsers(dest="action", required=True)
    sl = ssub.add_parser("list", help="share groups with their state and member count")
    sd = ssub.add_parser("describe", help="members, assignments, start offsets and lag")
    sd.add_argument("group")
    sdel = ssub.add_parser("delete", help="delete an empty share group and its state")
    sdel.add_argument("group")
    sr = ssub.add_parser(
        "reset-offsets", help="move a share group's start offsets (the group must have no members)"
    )
    sr.add_argument("group")
    sr.add_argument("--topic", required=True)
    target = sr.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true")
    target.add_argument("--to-latest", action="store_true")
    target.add_argument("--to-offset", type=int)
    sr.add_argument(
        "--execute", action="store_true", help="apply (the default is a dry run that only prints)"
    )
    for parser in (sl, sd, sdel, sr):
        client(parser)


def _err(code: int, message: str | None = None) -> str:
    name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
    return f"{name}{': ' + message if message else ''}"


def share_command(args: argparse.Namespace) -> int:
    with WireClient(args.bootstrap) as wc:
        if args.action == "list":
            return _list(wc)
        if args.action == "describe":
            return _describe(wc, args.group)
        if args.action == "delete":
            r: Any = wc.request(DeleteGroupsRequest(groups_names=[args.group]), 2)
            res = r.results[0]
            if res.error_code:
                raise CommandError(f"delete {args.group}: {_err(res.error_code)}")
            print(f"deleted share group {args.group}")
            return 0
        return _reset(wc, args)


def _list(wc: WireClient) -> int:
    r: Any = wc.request(ListGroupsRequest(types_filter=["Share"]), 5)
    if r.error_code:
        raise CommandError(f"list groups: {_err(r.error_code)}")
    ids = sorted(g.group_id for g in r.groups)
    members: dict[str, int] = {}
    if ids:
        d: Any = wc.request(ShareGroupDescribeRequest(group_ids=ids), 1)
        members = {g.group_id: len(g.members) for g in d.groups if not g.error_code}
    print(f"{'GROUP':40} {'STATE':8} {'MEMBERS':>7}")
    for g in sorted(r.groups, key=lambda g: g.group_id):
        print(f"{g.group_id:40} {g.group_state:8} {members.get(g.group_id, 0):>7}")
    return 0


def _describe(wc: WireClient, group: str) -> int:
    d: Any = wc.request(ShareGroupDescribeRequest(group_ids=[group]), 1)
    g = d.groups[0]
    if g.error_code:
        raise CommandError(f"describe {group}: {_err(g.error_code, g.error_message)}")
    print(
        f"Group: {group}\tState: {g.group_state}\tEpoch: {g.group_epoch}\tAssignor: {g.assignor_name}\tMembers: {len(g.members)}"
    )
    for m in g.members:
        parts = ", ".join(
            f"{tp.topic_name}-{p}" for tp in m.assignment.topic_partitions for p in tp.partitions
        )
        print(
            f"  member {m.member_id}\tclient {m.client_id}\thost {m.client_host}\tepoch {m.member_epoch}\tpartitions: {parts or '-'}"
        )
    o: Any = wc.request(
        DescribeShareGroupOffsetsRequest(
            groups=[
                DescribeShareGroupOffsetsRequest.DescribeShareGroupOffsetsRequestGroup(
                    group_id=group, topics=None
                )
            ]
        ),
        1,
    )
    og = o.groups[0]
    if og.error_code:
        raise CommandError(f"offsets of {group}: {_err(og.error_code, og.error_message)}")
    inflight: dict[tuple[str, int], Any] = {}
    try:  # riverbed's extension (Kafka has no API for the in-flight records)
        st: Any = wc.request_extension(DescribeShareStateRequest(group_id=group))
        inflight = {(p.topic, p.partition): p for p in st.partitions} if not st.error_code else {}
    except (CommandError, OSError):
        pass  # not riverbed: start offsets and lag only
    print(f"{'TOPIC':30} {'PARTITION':>9} {'START-OFFSET':>12} {'LAG':>8} {'ACQUIRED':>8} {'AVAILABLE':>9} {'DONE':>6}")
    total = 0
    for t in og.topics:
        for p in t.partitions:
            lag = "-" if p.lag < 0 else str(p.lag)
            total += max(p.lag, 0)
            s = inflight.get((t.topic_name, p.partition_index))
            acquired, available, done = ("-", "-", "-") if s is None else (s.acquired, s.available, s.acknowledged + s.archived)
            print(f"{t.topic_name:30} {p.partition_index:>9} {p.start_offset:>12} {lag:>8} {acquired:>8} {available:>9} {done:>6}")
    print(f"Total lag: {total}")
    print("(in flight after the start offset: ACQUIRED by a member now, AVAILABLE again, DONE = acknowledged or archived)")
    return 0


def _reset(wc: WireClient, args: argparse.Namespace) -> int:
    md: Any = wc.request(
        MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=args.topic)]), 12
    )
    topic = next((t for t in md.topics if t.name == args.topic), None)
    if topic is None or topic.error_code:
        raise CommandError(
            f"topic {args.topic}: {_err(topic.error_code) if topic is not None else 'not found'}"
        )
    offset = -2 if args.to_earliest else -1 if args.to_latest else int(args.to_offset)
    label = "earliest" if offset == -2 else "latest" if offset == -1 else str(offset)
    parts = sorted(p.partition_index for p in topic.partitions)
    if not args.execute:
        print(
            f"dry run: would move {args.group} on {args.topic} partitions {parts} to {label} (add --execute)"
        )
        return 0
    R = AlterShareGroupOffsetsRequest
    req = R(
        group_id=args.group,
        topics=[
            R.AlterShareGroupOffsetsRequestTopic(
                topic_name=args.topic,
                partitions=[R.AlterShareGroupOffsetsRequestPartition(p, offset) for p in parts],
            )
        ],
    )
    r: Any = wc.request(req, 0)
    if r.error_code:
        raise CommandError(f"reset {args.group}: {_err(r.error_code, r.error_message)}")
    failed = [
        (p.partition_index, _err(p.error_code, p.error_message))
        for t in r.responses
        for p in t.partitions
        if p.error_code
    ]
    if failed:
        raise CommandError(
            f"reset {args.group}: " + "; ".join(f"partition {i}: {e}" for i, e in failed)
        )
    print(f"moved {args.group} on {args.topic} partitions {parts} to {label}")
    return 0
