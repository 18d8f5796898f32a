"""``riverbed dlq list|show|replay|purge``: inspect and re-drive the dead letters written by
``riverbed.messaging.deadletter`` (any cluster; confluent-kafka clients only)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from riverbed.messaging.deadletter import (
    H_ATTEMPTS,
    H_EXC_CLASS,
    H_EXC_MESSAGE,
    H_EXC_STACK,
    H_GROUP,
    H_OFFSET,
    H_PARTITION,
    H_TOPIC,
    PREFIX,
    header,
)

from .client_commands import CommandError
from .progress import progress

REPLAYED = "riverbed.dlq.replayed-from"


def add_dlq_parser(sub: Any, client: Any, kv: Any) -> None:
    d = sub.add_parser("dlq", help="list, show, replay or purge dead-letter topics")
    dsub = d.add_subparsers(dest="action", required=True)
    dl = dsub.add_parser("list", help="dead-letter topics and how many records each holds")
    dl.add_argument("--suffix", default=".DLQ", help="dead-letter topic suffix (default .DLQ)")
    ds = dsub.add_parser("show", help="the dead letters of a topic with their error details")
    ds.add_argument("topic", help="the dead-letter topic (orders.DLQ)")
    ds.add_argument("-o", "--offset", type=int, action="append", help="only these offsets")
    ds.add_argument("-n", "--max-messages", type=int)
    ds.add_argument("--stack", action="store_true", help="print the stack traces")
    ds.add_argument("--format", choices=["text", "json"], default="text")
    dr = dsub.add_parser("replay", help="produce dead letters again to their original topic")
    dr.add_argument("topic", help="the dead-letter topic (orders.DLQ)")
    dr.add_argument("-o", "--offset", type=int, action="append", help="only these offsets (default: all)")
    dr.add_argument("--to", help="another destination topic (default: each record's original topic)")
    dr.add_argument("--value", help="replace the value (edited replay; needs exactly one --offset)")
    dr.add_argument("-H", "--header", action="append", type=kv, default=[], metavar="KEY=VALUE", help="set a header")
    dp = dsub.add_parser("purge", help="delete every record now in a dead-letter topic (DeleteRecords)")
    dp.add_argument("topic")
    dp.add_argument("--yes", action="store_true", help="really delete")
    for parser in (dl, ds, dr, dp):
        client(parser)


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    md = consumer.list_topics(topic, timeout=30)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        raise CommandError(f"topic {topic}: {t.error.str() if t is not None and t.error else 'not found'}")
    return sorted(t.partitions)


def _read_all(bootstrap: str, topic: str, offsets: set[int] | None = None, limit: int | None = None) -> list[Any]:
    """Every record of ``topic`` now below the high watermark (or only ``offsets``)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "riverbed-cli-dlq", "enable.auto.commit": False})
    try:
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in _partitions(consumer, topic):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))
        consumer.assign(starts)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise CommandError(err.str())
            p, offset = msg.partition() or 0, msg.offset() or 0
            if p in ends and offset >= ends[p] - 1:
                del ends[p]
            if offsets is None or offset in offsets:
                out.append(msg)
                if limit is not None and len(out) >= limit:
                    break
        return sorted(out, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()


def _describe(msg: Any, stack: bool) -> dict[str, Any]:
    h = msg.headers() or []
    doc: dict[str, Any] = {
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": msg.key().decode("utf-8", "replace") if msg.key() is not None else None,
        "original": f"{header(h, H_TOPIC)}[{header(h, H_PARTITION)}]@{header(h, H_OFFSET)}",
        "group": header(h, H_GROUP),
        "attempts": header(h, H_ATTEMPTS),
        "exception": header(h, H_EXC_CLASS),
        "message": header(h, H_EXC_MESSAGE),
        "value": msg.value().decode("utf-8", "replace") if msg.value() is not None else None,
    }
    if stack:
        doc["stacktrace"] = header(h, H_EXC_STACK)
    return doc


def dlq_command(args: argparse.Namespace) -> int:
    if args.action == "list":
        consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "riverbed-cli-dlq"})
        try:
            md = consumer.list_topics(timeout=30)
            print(f"{'TOPIC':50} {'RECORDS':>8}")
            for name in sorted(t for t in md.topics if t.endswith(args.suffix)):
                count = 0
                for p in md.topics[name].partitions:
                    low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=30)
                    count += max(0, high - low)
                print(f"{name:50} {count:>8}")
        finally:
            consumer.close()
        return 0
    if args.action == "show":
        for msg in _read_all(args.bootstrap, args.topic, set(args.offset) if args.offset else None, args.max_messages):
            doc = _describe(msg, args.stack)
            if args.format == "json":
                print(json.dumps(doc))
                continue
            print(f"{args.topic}[{doc['partition']}]@{doc['offset']} key={doc['key']} from {doc['original']} group={doc['group']} attempts={doc['attempts']}")
            print(f"  {doc['exception']}: {doc['message']}")
            print(f"  value: {doc['value'][:200] if doc['value'] is not None else None}")
            if args.stack and doc.get("stacktrace"):
                print("  " + doc["stacktrace"].rstrip().replace("\n", "\n  "))
        return 0
    if args.action == "replay":
        return _replay(args)
    if args.action == "purge":
        return _purge(args)
    raise CommandError(f"unknown dlq action {args.action}")


def _replay(args: argparse.Namespace) -> int:
    if args.value is not None and (not args.offset or len(args.offset) != 1):
        raise CommandError("--value edits one record: give exactly one --offset")
    records = _read_all(args.bootstrap, args.topic, set(args.offset) if args.offset else None)
    if args.offset and len(records) != len(set(args.offset)):
        found = {m.offset() for m in records}
        raise CommandError(f"no record at offset(s) {sorted(set(args.offset) - found)} of {args.topic}")
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True})
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(f"{msg.topic()}: {err}")

    with progress(f"replay {args.topic}", len(records)) as advance:
        for msg in records:
            h = msg.headers() or []
            target = args.to or header(h, H_TOPIC)
            if not target:
                raise CommandError(f"{args.topic}@{msg.offset()} has no {H_TOPIC} header: give --to")
            kept = [(k, v) for k, v in h if not k.startswith(PREFIX) and not k.startswith("riverbed.retry.") and k != REPLAYED]
            for k, v in args.header:
                kept = [(hk, hv) for hk, hv in kept if hk != k] + [(k, v.encode())]
            kept.append((REPLAYED, f"{args.topic}:{msg.partition()}:{msg.offset()}".encode()))
            value = args.value.encode() if args.value is not None else msg.value()
            producer.produce(target, key=msg.key(), value=value, headers=kept, on_delivery=delivered)
            producer.poll(0)
            advance(1)
        if producer.flush(60) != 0:
            raise CommandError("some records were not acknowledged in time")
    if errors:
        raise CommandError("; ".join(errors))
    print(f"replayed {len(records)} record(s) from {args.topic}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "riverbed-cli-dlq"})
    try:
        marks = []
        for p in _partitions(consumer, args.topic):
            _, high = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=30)
            marks.append(TopicPartition(args.topic, p, high))
    finally:
        consumer.close()
    if not args.yes:
        print(f"would delete every record of {args.topic} below offsets {[(tp.partition, tp.offset) for tp in marks]} (add --yes)")
        return 0
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    futures = admin.delete_records(marks, request_timeout=30)
    for tp, fut in futures.items():
        try:
            fut.result(30)
        except KafkaException as exc:
            raise CommandError(f"{tp.topic}[{tp.partition}]: {exc}") from exc
    print(f"purged {args.topic}: {sum(tp.offset for tp in marks)} offset(s) below the high watermarks")
    return 0
