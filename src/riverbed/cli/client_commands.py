"""``riverbed topic|produce|consume``: ordinary Kafka clients (confluent-kafka), so these
commands work against any Kafka-compatible cluster, riverbed or not."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from .progress import progress, wanted


class CommandError(Exception):
    pass


# Kafka's internal topics (Topic.isInternal): hidden by `topic list` unless --internal
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def _wait(futures: dict[Any, Any], what: str) -> None:
    for name, fut in futures.items():
        try:
            fut.result(timeout=30)
        except KafkaException as exc:
            raise CommandError(f"{what} {name}: {exc.args[0].str()}") from exc


def _kafka_uuid(uuid: Any) -> str:
    """A topic id as Kafka's tools print it (Uuid.toString: URL-safe base64 without padding;
    str() of confluent-kafka's Uuid uses the standard alphabet, with '+' and '/')."""
    raw = (uuid.get_most_significant_bits() & (2**64 - 1)).to_bytes(8, "big") + (uuid.get_least_significant_bits() & (2**64 - 1)).to_bytes(8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "topic":
        return topic_command(args)
    if args.command == "produce":
        return produce_command(args)
    if args.command == "consume":
        return consume_command(args)
    if args.command == "group":
        from .group_commands import group_command

        return group_command(args)
    if args.command == "user":
        from .user_commands import user_command

        return user_command(args)
    if args.command == "acl":
        from .acl_commands import acl_command

        return acl_command(args)
    if args.command == "config":
        from .config_commands import config_command

        return config_command(args)
    if args.command == "txn":
        from .txn_commands import txn_command

        return txn_command(args)
    if args.command == "streams":
        from .streams_commands import streams_command

        return streams_command(args)
    if args.command == "dlq":
        from .dlq_commands import dlq_command

        return dlq_command(args)
    raise CommandError(f"unknown command {args.command}")


# ----------------------------------------------------------------------------- topics


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def _print_log_dir(bootstrap: str, topic: str) -> None:
    """The log dir holding ``topic``, its free space and its state (DescribeLogDirs: a full
    disk is KAFKA_STORAGE_ERROR, writes refused until space returns)."""
    from riverbed.protocol.errors import ErrorCode
    from riverbed.protocol.messages.describe_log_dirs import (
        DescribeLogDirsRequest,
        DescribeLogDirsResponse,
    )

    from .wire_client import WireClient

    try:
        with WireClient(bootstrap) as client:
            resp = client.request(DescribeLogDirsRequest(topics=[DescribeLogDirsRequest.DescribableLogDirTopic(topic=topic, partitions=[])]), 4)
    except CommandError:
        return
    assert isinstance(resp, DescribeLogDirsResponse)
    for d in resp.results:
        state = "ok" if d.error_code == 0 else f"{ErrorCode(d.error_code).name} (writes refused)"
        free = f"{_size(d.usable_bytes)} free of {_size(d.total_bytes)}" if d.total_bytes >= 0 else "free space unknown"
        print(f"LogDir: {d.log_dir}	{free}	state: {state}")


def _print_storage(bootstrap: str, topic: str, partitions: list[int]) -> None:
    """Local and remote bytes and segments, dirty ratio and last clean, per partition, from
    riverbed's DescribeLogStats (skipped against a broker that does not answer it)."""
    from riverbed.protocol.extensions import DescribeLogStatsRequest, DescribeLogStatsResponse

    from .wire_client import WireClient

    try:
        with WireClient(bootstrap) as client:
            resp = client.request_extension(DescribeLogStatsRequest([DescribeLogStatsRequest.Topic(topic, partitions)]))
    except CommandError:
        return
    assert isinstance(resp, DescribeLogStatsResponse)
    _print_log_dir(bootstrap, topic)
    print("Storage:")
    for t in resp.topics:
        for s in t.partitions:
            if s.error_code:
                continue
            line = f"\tPartition: {s.partition}\tlocal: {_size(s.local_bytes)} in {s.local_segments} segments from offset {s.local_log_start_offset}"
            if s.remote_segments >= 0:
                line += f"\tremote: {_size(s.remote_bytes)} in {s.remote_segments} segments"
            if s.dirty_ratio == s.dirty_ratio:  # not NaN: a compacted topic
                when = datetime.fromtimestamp(s.last_clean_ms / 1000, UTC).isoformat(timespec="seconds") if s.last_clean_ms > 0 else "never"
                line += f"\tdirty ratio: {s.dirty_ratio:.2f}\tlast clean: {when}"
            print(line)


def topic_command(args: argparse.Namespace) -> int:
    admin = _admin(args.bootstrap)
    if args.action == "create":
        nt = NewTopic(args.name, num_partitions=args.partitions, replication_factor=args.replication, config=dict(args.config))
        _wait(admin.create_topics([nt], request_timeout=30), "create topic")
        print(f"created topic {args.name} with {args.partitions} partition(s)")
    elif args.action == "list":
        md = admin.list_topics(timeout=30)
        for name in sorted(md.topics):
            if name in INTERNAL_TOPICS and not args.internal:
                continue
            print(name)
    elif args.action == "describe":
        md = admin.list_topics(timeout=30)  # every topic: asking for one by name auto-creates it
        t = md.topics.get(args.name)
        if t is None or t.error is not None:
            raise CommandError(f"topic {args.name}: {t.error.str() if t is not None and t.error else 'not found'}")
        described = admin.describe_topics(TopicCollection([args.name]), request_timeout=30)[args.name].result(timeout=30)
        internal = "\tInternal: true" if described.is_internal else ""
        print(f"Topic: {args.name}\tTopicId: {_kafka_uuid(described.topic_id)}\tPartitionCount: {len(t.partitions)}{internal}")
        res = ConfigResource(ConfigResource.Type.TOPIC, args.name)
        configs = admin.describe_configs([res], request_timeout=30)[res].result(timeout=30)
        overrides = {k: v.value for k, v in configs.items() if not v.is_default}
        print("Configs: " + (", ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "(all defaults)"))
        consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "riverbed-cli", "enable.auto.commit": False})
        try:
            for p in sorted(t.partitions):
                lo, hi = consumer.get_watermark_offsets(TopicPartition(args.name, p), timeout=10)
                part = t.partitions[p]
                print(f"\tPartition: {p}\tLeader: {part.leader}\tReplicas: {list(part.replicas)}\tIsr: {list(part.isrs)}\tOffsets: {lo}..{hi}")
        finally:
            consumer.close()
        _print_storage(args.bootstrap, args.name, sorted(t.partitions))
    elif args.action == "delete":
        _wait(admin.delete_topics([args.name], request_timeout=30), "delete topic")
        print(f"deleted topic {args.name}")
    elif args.action == "alter":
        if args.partitions is not None:
            _wait(admin.create_partitions([NewPartitions(args.name, args.partitions)], request_timeout=30), "add partitions to")
            print(f"topic {args.name} now has {args.partitions} partitions")
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in args.config]
        entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in args.delete_config]
        if entries:
            res = ConfigResource(ConfigResource.Type.TOPIC, args.name, incremental_configs=entries)
            _wait(admin.incremental_alter_configs([res]), "alter configs of")
            print(f"altered configs of {args.name}")
    return 0


# ----------------------------------------------------------------------------- produce


def _lines(args: argparse.Namespace) -> Iterable[tuple[str | None, str]]:
    if args.value is not None:
        yield args.key, args.value
        return
    for line in sys.stdin:
        line = line.rstrip("\n")
        if args.key_separator and args.key_separator in line:
            key, _, value = line.partition(args.key_separator)
            yield key, value
        else:
            yield args.key, line


def produce_command(args: argparse.Namespace) -> int:
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "acks": args.acks,
            "compression.type": args.compression,
            "linger.ms": 5,
        }
    )
    errors: list[str] = []
    sent = 0

    def report(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            errors.append(err.str())

    headers = [(k, v.encode()) for k, v in args.header]
    for key, value in _lines(args):
        kwargs: dict[str, Any] = {"value": value.encode(), "headers": headers or None, "on_delivery": report}
        if key is not None:
            kwargs["key"] = key.encode()
        if args.partition is not None:
            kwargs["partition"] = args.partition
        while True:
            try:
                producer.produce(args.topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    remaining = producer.flush(30)
    if errors or remaining:
        raise CommandError(f"{len(errors) + remaining} of {sent} records failed: {errors[:3]}")
    print(f"produced {sent} record(s) to {args.topic}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- consume


def _text(data: bytes | None) -> str:
    if data is None:
        return "null"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def _format(msg: Any, fmt: str) -> str:
    _ts_type, ts = msg.timestamp()
    headers = msg.headers() or []
    if fmt == "json":
        return json.dumps(
            {
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "timestamp": ts,
                "key": None if msg.key() is None else _text(msg.key()),
                "value": None if msg.value() is None else _text(msg.value()),
                "headers": [[k, None if v is None else _text(v)] for k, v in headers],
            }
        )
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts / 1000)) + f".{ts % 1000:03d}Z" if ts > 0 else "-"
    hdr = (" " + " ".join(f"{k}={_text(v)}" for k, v in headers)) if headers else ""
    return f"p{msg.partition()}@{msg.offset()} {when} key={_text(msg.key())}{hdr} value={_text(msg.value())}"


def consume_command(args: argparse.Namespace) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "riverbed-cli",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        md = consumer.list_topics(args.topic, timeout=30)
        t = md.topics.get(args.topic)
        if t is None or t.error is not None:
            raise CommandError(f"topic {args.topic}: {t.error.str() if t is not None and t.error else 'not found'}")
        parts = args.partition or sorted(t.partitions)
        if args.offset is not None:
            start = args.offset
        else:
            start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
        consumer.assign([TopicPartition(args.topic, p, start) for p in parts])
        seen = 0
        at_eof: set[int] = set()
        idle_since = time.monotonic()
        with progress(f"consume {args.topic}", _records_ahead(consumer, args, parts, start), data_on_stdout=True) as advance:
            while True:
                msg = consumer.poll(0.2)
                if msg is None:
                    if not args.follow and (len(at_eof) == len(parts) or time.monotonic() - idle_since > args.timeout):
                        break
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(msg.partition() or 0)
                        continue
                    raise CommandError(err.str())
                at_eof.discard(msg.partition() or 0)
                idle_since = time.monotonic()
                print(_format(msg, args.format), flush=True)
                advance(1)
                seen += 1
                if args.max_messages is not None and seen >= args.max_messages:
                    break
    finally:
        consumer.close()
    return 0


def _records_ahead(consumer: Consumer, args: argparse.Namespace, parts: list[int], start: int) -> int | None:
    """How many records a bounded consume will print (the progress bar's total), or None."""
    if args.follow or start == OFFSET_END or not wanted(data_on_stdout=True):
        return None
    total = 0
    for p in parts:
        low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
        total += max(0, high - (low if start == OFFSET_BEGINNING else max(low, start)))
    return total if args.max_messages is None else min(total, args.max_messages)


__all__ = ["OFFSET_BEGINNING", "CommandError", "dispatch"]
