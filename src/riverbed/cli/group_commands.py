"""``riverbed group list|describe|delete|reset-offsets`` through confluent-kafka's admin API
(so they also work against Apache Kafka). Lag = log end offset - committed offset."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin import OffsetSpec as _OffsetSpec  # type: ignore[attr-defined]

from .client_commands import CommandError
from .progress import progress

OffsetSpec: Any = _OffsetSpec  # it has no type hints


def _result(fut: Any, what: str) -> Any:
    try:
        return fut.result(timeout=30)
    except KafkaException as exc:
        raise CommandError(f"{what}: {exc.args[0].str()}") from exc


def _log_end_offsets(admin: AdminClient, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
    if not partitions:
        return {}
    futs = admin.list_offsets({TopicPartition(tp.topic, tp.partition): OffsetSpec.latest() for tp in partitions})
    return {(tp.topic, tp.partition): _result(f, "list offsets").offset for tp, f in futs.items()}


def _committed(admin: AdminClient, group: str) -> list[TopicPartition]:
    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    return sorted(_result(fut, f"offsets of {group}").topic_partitions or [], key=lambda tp: (tp.topic, tp.partition))


def group_command(args: argparse.Namespace) -> int:
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    if args.action == "list":
        res = _result(admin.list_consumer_groups(request_timeout=30), "list groups")
        wanted = {s.lower() for s in args.state or []}
        for g in sorted(res.valid, key=lambda g: g.group_id):
            state = str(g.state).split(".")[-1].lower().replace("_", "")
            if wanted and state not in {w.replace("_", "") for w in wanted}:
                continue
            print(f"{g.group_id}\t{str(g.state).split('.')[-1]}")
    elif args.action == "describe":
        desc = _result(admin.describe_consumer_groups([args.group], request_timeout=30)[args.group], f"describe {args.group}")
        print(f"Group: {args.group}\tState: {str(desc.state).split('.')[-1]}\tAssignor: {desc.partition_assignor or '-'}\tMembers: {len(desc.members)}")
        owner: dict[tuple[str, int], str] = {}
        for m in desc.members:
            parts = m.assignment.topic_partitions if m.assignment else []
            for tp in parts:
                owner[(tp.topic, tp.partition)] = m.member_id
            shown = ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(parts, key=lambda t: (t.topic, t.partition)))
            print(f"  member {m.member_id}\tclient {m.client_id}\thost {m.host}\tpartitions: {shown or '-'}")
        committed = _committed(admin, args.group)
        ends = _log_end_offsets(admin, committed)
        total = 0
        print(f"{'TOPIC':30} {'PARTITION':>9} {'CURRENT-OFFSET':>14} {'LOG-END-OFFSET':>14} {'LAG':>8}  CONSUMER")
        for tp in committed:
            end = ends.get((tp.topic, tp.partition), -1)
            lag = max(end - tp.offset, 0) if tp.offset >= 0 and end >= 0 else 0
            total += lag
            print(f"{tp.topic:30} {tp.partition:>9} {tp.offset:>14} {end:>14} {lag:>8}  {owner.get((tp.topic, tp.partition), '-')}")
        print(f"TOTAL LAG: {total}")
    elif args.action == "delete":
        _result(admin.delete_consumer_groups([args.group], request_timeout=30)[args.group], f"delete {args.group}")
        print(f"deleted group {args.group}")
    elif args.action == "reset-offsets":
        return reset_offsets(admin, args)
    return 0


def reset_offsets(admin: AdminClient, args: argparse.Namespace) -> int:
    md = admin.list_topics(timeout=30)  # every topic: asking for one by name auto-creates it
    topic = md.topics.get(args.topic)
    if topic is None or topic.error is not None:
        raise CommandError(f"topic {args.topic} not found")
    tps = [TopicPartition(args.topic, p) for p in sorted(topic.partitions)]
    if args.to_offset is not None:
        targets = {(tp.topic, tp.partition): args.to_offset for tp in tps}
    else:
        if args.to_earliest:
            spec = OffsetSpec.earliest()
        elif args.to_latest:
            spec = OffsetSpec.latest()
        else:
            try:
                when = datetime.fromisoformat(args.to_datetime)
            except ValueError as exc:
                raise CommandError(f"bad --to-datetime: {exc}") from exc
            spec = OffsetSpec.for_timestamp(int(when.timestamp() * 1000))
        futs = admin.list_offsets({tp: spec for tp in tps})
        targets = {}
        with progress(f"offsets of {args.topic}", len(futs)) as advance:
            for tp, f in futs.items():
                off = _result(f, "list offsets").offset
                if off < 0:  # no record at or after that time: the end of the partition
                    off = _log_end_offsets(admin, [tp])[(tp.topic, tp.partition)]
                targets[(tp.topic, tp.partition)] = off
                advance(1)
    print(f"{'TOPIC':30} {'PARTITION':>9} {'NEW-OFFSET':>10}")
    for (t, p), off in sorted(targets.items()):
        print(f"{t:30} {p:>9} {off:>10}")
    if not args.execute:
        print("(dry run: add --execute to apply)")
        return 0
    desc = _result(admin.describe_consumer_groups([args.group], request_timeout=30)[args.group], f"describe {args.group}")
    if desc.members:
        raise CommandError(f"group {args.group} has {len(desc.members)} active member(s); stop them before resetting offsets")
    req = ConsumerGroupTopicPartitions(args.group, [TopicPartition(t, p, off) for (t, p), off in sorted(targets.items())])
    _result(admin.alter_consumer_group_offsets([req])[args.group], f"reset offsets of {args.group}")
    print(f"reset offsets of group {args.group}")
    return 0
