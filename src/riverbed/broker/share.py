"""ShareService: runs the share-group coordinator (coordinator/share_group.py) on the event
loop: its timer (member sessions, acquisition locks), the group configs, reading records
for ShareFetch, durable share state and dead-letter records. See docs/share-groups.md.

Durability. The state of each share-partition (start offset, and the in-flight records
that are not plain Available: Acknowledged, Archived, or with a delivery count) is written
as Kafka's ShareSnapshot record (key: group, topic id, partition) to the internal compacted
topic ``__share_group_state`` (one partition), after every change other than an acquisition
(acknowledgements, releases, lock expiry, archiving, offset resets), and the
acknowledging request is answered once that append is durable. A record that was Acquired
is written as Available: after a crash it is delivered again. At start-up the topic is
replayed and the last snapshot of each key wins; the log cleaner compacts it, so it stays
as large as the share state itself. Group configs live in ``share-group-configs.json`` in the
data dir (written atomically with fsync).

Dead letters (KIP-1191). When a group has ``errors.deadletterqueue.topic.name``, a record
that is rejected or reaches the delivery count limit is copied to that topic (key, value,
original headers plus ``__dlq.errors.*`` headers) before the snapshot that archives it is
written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from riverbed.coordinator.share_group import PartitionKey, ShareGroupCoordinator, ShareGroupSettings
from riverbed.coordinator.share_partition import DeadRecord, RecordState, SharePartition, StateBatch
from riverbed.metadata.configs import ConfigDef, ConfigType, between, one_of
from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.internal.share_snapshot_key import ShareSnapshotKey
from riverbed.protocol.internal.share_snapshot_value import ShareSnapshotValue
from riverbed.protocol.primitives import Buffer, Reader, Writer
from riverbed.protocol.records.batch import InvalidBatch, iter_batches
from riverbed.protocol.records.records import Record, build_batch, decode_records
from riverbed.storage.api import PartitionLog
from riverbed.storage.files import atomic_write

from .deadline_timer import DeadlineTimer
from .groups import BrokerTopics
from .replay import replay_batches

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("riverbed.share")

SHARE_STATE_TOPIC = "__share_group_state"
SHARE_STATE_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(16 * 1024 * 1024)}
CONFIG_FILE = "share-group-configs.json"
DLQ_PREFIX = "dlq."  # Kafka's errors.deadletterqueue.topic.name.prefix default (KIP-1191)
DLQ_ENABLE = "errors.deadletterqueue.group.enable"
DLQ_TOPIC = "errors.deadletterqueue.topic.name"
DLQ_HEADERS = (
    "__dlq.errors.group.id",
    "__dlq.errors.topic",
    "__dlq.errors.partition",
    "__dlq.errors.offset",
    "__dlq.errors.delivery.count",
    "__dlq.errors.reason",
)
GROUP_CONFIG_SOURCE = 8  # DescribeConfigs' GROUP_CONFIG source (Kafka's ConfigSource)
_SNAPSHOT_TYPE = 0  # ShareSnapshotKey's record type

T = ConfigType
#: the GROUP resource's configs riverbed keeps (Kafka's GroupConfig share.* names, KIP-1191)
GROUP_CONFIGS: dict[str, ConfigDef] = {
    d.name: d
    for d in [
        ConfigDef("share.auto.offset.reset", T.STRING, "latest", one_of("latest", "earliest")),
        ConfigDef("share.record.lock.duration.ms", T.INT, "30000", between(1000, 3_600_000)),
        ConfigDef("share.delivery.count.limit", T.INT, "5", between(2, 10)),
        ConfigDef(
            "share.isolation.level",
            T.STRING,
            "read_uncommitted",
            one_of("read_uncommitted", "read_committed"),
        ),
        ConfigDef("share.heartbeat.interval.ms", T.INT, "5000", between(500, 60_000)),
        ConfigDef("share.session.timeout.ms", T.INT, "45000", between(1000, 3_600_000)),
        ConfigDef("share.partition.max.record.locks", T.INT, "2000", between(100, 10_000)),
        ConfigDef(DLQ_TOPIC, T.STRING, ""),
    ]
}


@dataclass(frozen=True, slots=True)
class Acquired:
    records: bytes
    ranges: list[StateBatch]


class ShareService:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.configs: dict[str, dict[str, str]] = {}
        self.coordinator = ShareGroupCoordinator(broker.now_ms, BrokerTopics(broker), self.settings)
        self._timer = DeadlineTimer(broker, self._on_timer)
        self._last_appended = -1

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        path = self.broker.config.data_dir / CONFIG_FILE
        if path.exists():
            try:
                raw = json.loads(path.read_text())
                self.configs = {
                    str(g): {str(k): str(v) for k, v in c.items()} for g, c in raw.items()
                }
            except (ValueError, AttributeError) as exc:
                log.error(
                    "%s is unreadable (%s): share groups start with default configs", path, exc
                )
        if self.broker.topics.get(SHARE_STATE_TOPIC) is not None:
            self._load()
        self.reschedule()

    def stop(self) -> None:
        self._timer.cancel()

    def _load(self) -> None:
        latest: dict[tuple[str, uuid.UUID, int], ShareSnapshotValue | None] = {}
        for _p, header, records in replay_batches(self.broker, SHARE_STATE_TOPIC, 1):
            if header.is_control:
                continue
            for rec in records:
                if rec.key is None:
                    continue
                try:
                    if Reader(rec.key).int16() != _SNAPSHOT_TYPE:
                        continue
                    key = ShareSnapshotKey.read(Reader(rec.key, 2), 0)
                    value = (
                        None
                        if rec.value is None
                        else ShareSnapshotValue.read(Reader(rec.value, 2), 0)
                    )
                except Exception as exc:  # one bad record must not stop the broker
                    log.error(
                        "%s@%d: unreadable share state record: %s",
                        SHARE_STATE_TOPIC,
                        rec.offset,
                        exc,
                    )
                    continue
                latest[(key.group_id, key.topic_id, key.partition)] = value
        n = 0
        for (group, tid, part), value in latest.items():
            if value is None:
                continue
            cfg = self.settings(group)
            batches = [
                StateBatch(
                    b.first_offset, b.last_offset, _state(b.delivery_state), b.delivery_count
                )
                for b in value.state_batches
            ]
            self.coordinator.partitions[(group, tid, part)] = SharePartition.restore(
                value.start_offset,
                batches,
                cfg.delivery_count_limit,
                cfg.record_lock_duration_ms,
                cfg.max_record_locks,
            )
            n += 1
        log.info("replayed the state of %d share-partitions from %s", n, SHARE_STATE_TOPIC)

    # ------------------------------------------------------------------ configs
    def settings(self, group_id: str) -> ShareGroupSettings:
        c = self.configs.get(group_id, {})

        def v(name: str) -> str:
            return c.get(name, GROUP_CONFIGS[name].default)

        return ShareGroupSettings(
            session_timeout_ms=int(v("share.session.timeout.ms")),
            heartbeat_interval_ms=int(v("share.heartbeat.interval.ms")),
            record_lock_duration_ms=int(v("share.record.lock.duration.ms")),
            delivery_count_limit=int(v("share.delivery.count.limit")),
            auto_offset_reset=v("share.auto.offset.reset"),
            isolation_level=v("share.isolation.level"),
            max_record_locks=int(v("share.partition.max.record.locks")),
            deadletter_topic=v(DLQ_TOPIC) or None,
        )

    def group_configs(self, group_id: str) -> list[tuple[str, str, bool]]:
        """(name, value, is default) of every group config."""
        c = self.configs.get(group_id, {})
        return [(n, c.get(n, d.default), n not in c) for n, d in sorted(GROUP_CONFIGS.items())]

    def alter_configs(self, group_id: str, new: dict[str, str], validate_only: bool) -> None:
        """Replace the group's settings (already merged by the caller); INVALID_CONFIG on an
        unknown name or a bad value."""
        if not group_id:
            raise KafkaError(ErrorCode.INVALID_REQUEST, "Group id must not be empty.")
        for name, value in new.items():
            d = GROUP_CONFIGS.get(name)
            if d is None:
                raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown group config name: {name}")
            d.parse(value)
        hb = int(
            new.get(
                "share.heartbeat.interval.ms", GROUP_CONFIGS["share.heartbeat.interval.ms"].default
            )
        )
        st = int(
            new.get("share.session.timeout.ms", GROUP_CONFIGS["share.session.timeout.ms"].default)
        )
        if hb >= st:
            raise KafkaError(
                ErrorCode.INVALID_CONFIG,
                "share.heartbeat.interval.ms must be less than share.session.timeout.ms",
            )
        dlq = new.get(DLQ_TOPIC, "")
        if dlq and not dlq.startswith(DLQ_PREFIX):
            raise KafkaError(
                ErrorCode.INVALID_CONFIG, f"{DLQ_TOPIC} must start with the prefix {DLQ_PREFIX!r}"
            )
        if validate_only:
            return
        if new:
            self.configs[group_id] = dict(new)
        else:
            self.configs.pop(group_id, None)
        data = json.dumps(self.configs, sort_keys=True, indent=1).encode()
        atomic_write(self.broker.config.data_dir / CONFIG_FILE, data, os.fsync)
        self.coordinator.apply_settings(group_id)

    def topic_deleted(self, topic_id: uuid.UUID) -> None:
        """A topic was deleted: the state of its share-partitions is tombstoned (a refused
        write is logged; the state is gone from memory either way)."""
        keys = [k for k in self.coordinator.partitions if k[1] == topic_id]
        for k in keys:
            del self.coordinator.partitions[k]
        if keys:
            with contextlib.suppress(KafkaError):
                self.persist(keys)

    # ------------------------------------------------------------------ time
    def reschedule(self) -> None:
        self._timer.arm(self.coordinator.next_deadline())

    def _on_timer(self) -> None:
        try:
            gone, changed = self.coordinator.tick()
            for gid, mid in gone:
                log.info("share group %r: member %s left (session timeout)", gid, mid)
            if changed:
                self.persist(changed)
                self.broker.notify()  # released records wake waiting ShareFetches
        except KafkaError:
            pass  # a refused write is logged by persist; the timers go on
        except Exception:  # pragma: no cover - a bug must not stop the broker
            log.exception("share group tick failed")
        self.reschedule()

    # ------------------------------------------------------------------ reading
    def share_partition(self, key: PartitionKey, plog: PartitionLog) -> SharePartition:
        cfg = self.settings(key[0])
        earliest = cfg.auto_offset_reset == "earliest"
        sp = self.coordinator.partition(
            key, lambda: plog.log_start_offset if earliest else plog.high_watermark
        )
        sp.truncate_below(plog.log_start_offset)
        return sp

    def upper(self, group_id: str, plog: PartitionLog) -> int:
        read_committed = self.settings(group_id).isolation_level == "read_committed"
        return plog.last_stable_offset if read_committed else plog.high_watermark

    def acquire(
        self, key: PartitionKey, plog: PartitionLog, member: str, max_records: int, max_bytes: int
    ) -> Acquired:
        """Acquire up to ``max_records`` records of the share-partition for ``member``: the
        whole batches that hold them and the acquired offset ranges."""
        sp = self.share_partition(key, plog)
        upper = self.upper(key[0], plog)
        read_committed = self.settings(key[0]).isolation_level == "read_committed"
        now = self.broker.now_ms()
        out = bytearray()
        ranges: list[StateBatch] = []
        taken = 0
        budget = max(max_bytes, 1)
        scanned = 0
        start = sp.first_wanted()
        # Reads go forward from the first offset the group may acquire; records released
        # behind the read position meanwhile are taken by the next fetch.
        while (
            start is not None
            and start < upper
            and taken < max_records
            and scanned < 4 * budget + (1 << 20)
        ):
            try:
                data = plog.read(
                    start,
                    budget - len(out),
                    min_one_batch=not out,
                    isolation_upper=upper if read_committed else None,
                ).records
            except KafkaError:
                break
            if not data:
                break
            scanned += len(data)
            aborted = _aborted_firsts(plog, start, data) if read_committed else []
            open_aborted: set[int] = set()
            next_start = start
            for h in iter_batches(data):
                next_start = h.next_offset
                pid, base = int(h.producer_id), int(h.base_offset)
                while aborted and aborted[0][0] <= base:
                    open_aborted.add(aborted.pop(0)[1])
                if h.is_control:
                    open_aborted.discard(pid)  # the marker ends the producer's transaction
                    sp.skip(base, h.last_offset)
                    continue
                if h.last_offset < start:
                    continue
                if h.is_transactional and pid in open_aborted:
                    sp.skip(base, h.last_offset)
                    continue
                if taken >= max_records:
                    break
                got = sp.acquire(member, base, h.last_offset, max_records - taken, now)
                if got:
                    ranges += got
                    taken += sum(r.last_offset - r.first_offset + 1 for r in got)
                    out += bytes(data[h.position : h.position + h.size])
                if sp.end_offset <= h.last_offset:
                    break  # the in-flight window is full (or MaxRecords reached) within this batch

            if next_start <= start or len(out) >= budget or sp.end_offset < next_start:
                break
            start = next_start
        return Acquired(bytes(out), ranges)

    # ------------------------------------------------------------------ persistence
    def ensure_topic(self) -> PartitionLog:
        if self.broker.topics.get(SHARE_STATE_TOPIC) is None:
            self.broker.create_topic(SHARE_STATE_TOPIC, 1, dict(SHARE_STATE_CONFIGS))
        plog = self.broker.partition(SHARE_STATE_TOPIC, 0)
        assert plog is not None
        return plog

    def persist(self, keys: Iterable[PartitionKey]) -> None:
        """Write dead letters, then one ShareSnapshot per share-partition (a tombstone for one
        that is gone), as one batch. Raises KafkaError when the append is refused."""
        now = self.broker.now_ms()
        records: list[tuple[bytes, bytes | None, list[tuple[str, bytes | None]], int]] = []
        for key in sorted(set(keys), key=str):
            sp = self.coordinator.partitions.get(key)
            if sp is not None:
                dead = sp.drain_dead()
                if dead:
                    try:
                        self._dead_letters(key, dead)
                    except KafkaError as exc:  # the DLQ refused the write: archived without a copy
                        log.warning("share group %r: %d dead letters not written: %s", key[0], len(dead), exc)
                    except Exception:  # a bug must not fail the acknowledgement
                        log.exception("share group %r: %d dead letters not written", key[0], len(dead))
            records.append((_key(key), None if sp is None else _value(sp, now), [], now))
        if not records:
            return
        plog = self.ensure_topic()
        try:
            info = plog.append(build_batch(records), now_ms=now)
        except KafkaError as exc:
            log.warning("could not write share state to %s: %s", SHARE_STATE_TOPIC, exc)
            raise
        self._last_appended = info.last_offset
        self.broker.notify()

    async def durable(self) -> None:
        plog = self.broker.partition(SHARE_STATE_TOPIC, 0)
        if plog is None:
            return
        last = self._last_appended
        if plog.high_watermark > last:
            return
        await self.broker.wait_until(lambda: plog.high_watermark > last)

    def _dead_letters(self, key: PartitionKey, dead: list[DeadRecord]) -> None:
        group, tid, part = key
        cfg = self.settings(group)
        topic = self.broker.topics.by_id(tid)
        if cfg.deadletter_topic is None or topic is None:
            return
        dlq = self.broker.topics.get(cfg.deadletter_topic)
        if dlq is None:
            dlq = self.broker.create_topic(cfg.deadletter_topic, 1, {DLQ_ENABLE: "true"})
            log.info("share group %r: created dead-letter topic %s", group, dlq.name)
        if dlq.configs.get(DLQ_ENABLE, "false").lower() != "true":
            log.warning(
                "share group %r: %s is not a dead-letter topic (%s is not true): %d records archived without a copy",
                group,
                dlq.name,
                DLQ_ENABLE,
                len(dead),
            )
            return
        src = self.broker.partition(topic.name, part)
        out = self.broker.partition(dlq.name, part % dlq.partitions)
        if src is None or out is None:
            return
        by_offset = {d.offset: d for d in dead}
        found = _records_at(src, sorted(by_offset))
        rows: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]] = []
        now = self.broker.now_ms()
        for rec in found:
            d = by_offset[rec.offset]
            meta = (group, topic.name, str(part), str(rec.offset), str(d.delivery_count), d.reason)
            headers = [(k, v) for k, v in rec.headers] + [
                (h, v.encode()) for h, v in zip(DLQ_HEADERS, meta, strict=True)
            ]
            rows.append((rec.key, rec.value, headers, now))
        if rows:
            out.append(build_batch(rows), now_ms=now)
            log.info(
                "share group %r: %d records of %s-%d to dead-letter topic %s",
                group,
                len(rows),
                topic.name,
                part,
                dlq.name,
            )


def _records_at(plog: PartitionLog, offsets: list[int]) -> list[Record]:
    """The records at ``offsets`` (ascending) that are still in the log."""
    wanted = set(offsets)
    found: list[Record] = []
    pos = offsets[0] if offsets else 0
    while wanted and pos <= offsets[-1]:
        data = plog.read(pos, 1 << 20).records
        if not data:
            break
        nxt = pos
        for h in iter_batches(data):
            nxt = h.next_offset
            if not wanted:
                break
            if h.last_offset < min(wanted) or h.is_control:
                continue
            try:
                recs = decode_records(data, h.position)
            except InvalidBatch:
                continue
            for r in recs:
                if r.offset in wanted:
                    found.append(r)
                    wanted.discard(r.offset)
        if nxt <= pos:
            break
        pos = nxt
    return found


def _aborted_firsts(plog: PartitionLog, start: int, data: Buffer) -> list[tuple[int, int]]:
    """(first offset, producer id) of the aborted transactions that touch ``data``, in order:
    as a read_committed consumer filters, a producer's batches from its aborted
    transaction's first offset up to its marker are dropped."""
    end = start
    for h in iter_batches(data):
        end = h.next_offset
    return sorted((first, pid) for pid, first in plog.aborted_transactions(start, end))


def _state(v: int) -> RecordState:
    return RecordState(v) if v in (0, 2, 4) else RecordState.AVAILABLE


def _key(key: PartitionKey) -> bytes:
    w = Writer()
    w.int16(_SNAPSHOT_TYPE)
    ShareSnapshotKey(group_id=key[0], topic_id=key[1], partition=key[2]).write(w, 0)
    return w.getvalue()


def _value(sp: SharePartition, now: int) -> bytes:
    w = Writer()
    w.int16(0)
    ShareSnapshotValue(
        snapshot_epoch=0,
        state_epoch=0,
        leader_epoch=0,
        start_offset=sp.start_offset,
        create_timestamp=now,
        write_timestamp=now,
        state_batches=[
            ShareSnapshotValue.StateBatch(
                b.first_offset, b.last_offset, int(b.state), b.delivery_count
            )
            for b in sp.state_batches()
        ],
    ).write(w, 0)
    return w.getvalue()
