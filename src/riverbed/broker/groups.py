"""GroupService: runs the pure group coordinator on the event loop.

* Time: the coordinator reports its next deadline; one loop timer calls ``tick()`` then.
* Durability: every event the coordinators emit (offsets committed or deleted, group
  metadata changed or deleted, KIP-848 groups changed or deleted) becomes records of
  ``__consumer_offsets`` in Kafka's format (``coordinator/offsets_log.py``), appended to the
  group's partition as one batch per event. OffsetCommit answers only once that append is
  durable.
* Recovery: at start-up the internal topic is replayed into the coordinators, so committed
  offsets, classic groups and KIP-848 groups (members, epochs, assignments) survive a
  restart. KIP-848 records are collected per group during the replay and each group is
  loaded once the whole topic has been read.

The internal topic is created on first use, compacted, with 50 partitions (Kafka's
``offsets.topic.num.partitions``). Until the log cleaner exists it is never compacted, so
it grows with every commit and start-up replays it whole.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import TYPE_CHECKING

from riverbed.coordinator.consumer_group import (
    ConsumerGroupConfig,
    ConsumerGroupCoordinator,
    ConsumerGroupEvent,
)
from riverbed.coordinator.group import GroupCoordinator
from riverbed.coordinator.group_types import (
    GroupConfig,
    GroupDeleted,
    GroupEvent,
    GroupMetadataChanged,
    GroupSnapshot,
    MemberSnapshot,
    OffsetAndMetadata,
    OffsetsCommitted,
    OffsetsDeleted,
)
from riverbed.coordinator.offsets_log import (
    OFFSETS_TOPIC,
    ConsumerGroupDecodeError,
    ConsumerGroupRecords,
    GroupRecord,
    KeyValue,
    OffsetRecord,
    consumer_group_records,
    consumer_group_tombstones,
    decode,
    group_key,
    group_value,
    offset_key,
    offset_value,
    partition_for,
)
from riverbed.protocol.errors import DecodeError, ErrorCode, KafkaError
from riverbed.protocol.internal.group_metadata_value import GroupMetadataValue
from riverbed.protocol.records.batch import InvalidBatch
from riverbed.protocol.records.records import build_batch, parse_control_record
from riverbed.storage.api import PartitionLog

from .deadline_timer import DeadlineTimer
from .replay import replay_batches

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("riverbed.groups")

OFFSETS_TOPIC_PARTITIONS = 50
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(100 * 1024 * 1024)}


class GroupService:
    def __init__(self, broker: Broker, config: GroupConfig | None = None, partitions: int = OFFSETS_TOPIC_PARTITIONS) -> None:
        self.broker = broker
        self.partitions = partitions
        self.coordinator = GroupCoordinator(broker.now_ms, config or GroupConfig(), on_change=self._persist)
        # KIP-848 groups (ConsumerGroupHeartbeat). Their state is persisted with Kafka's
        # ConsumerGroup* records (_persist_consumer); their committed offsets go through the
        # classic coordinator's offset store above.
        self.consumer = ConsumerGroupCoordinator(
            broker.now_ms,
            BrokerTopics(broker),
            ConsumerGroupConfig(
                session_timeout_ms=broker.config.consumer_session_timeout_ms,
                heartbeat_interval_ms=broker.config.consumer_heartbeat_interval_ms,
            ),
            on_change=self._persist_consumer,
        )
        self._timer = DeadlineTimer(broker, self._on_timer)
        self._last_appended: dict[int, int] = {}
        # KIP-848 group -> the member ids that have live records in the log (last persisted or
        # replayed), so the next change can tombstone the members that left.
        self._consumer_members: dict[str, set[str]] = {}
        # KIP-848 records collected during the start-up replay, per group.
        self._replay: dict[str, ConsumerGroupRecords] = {}
        # producer id -> groups holding its transactional offsets until its marker
        self._txn_groups: dict[int, set[str]] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        topic = self.broker.topics.get(OFFSETS_TOPIC)
        if topic is not None:
            self.partitions = topic.partitions
            self._load()
        self.reschedule()

    def stop(self) -> None:
        self._timer.cancel()

    def _load(self) -> None:
        loaded = 0
        self._replay = {}
        for p, header, records in replay_batches(self.broker, OFFSETS_TOPIC, self.partitions):
            if header.is_control:  # a transaction marker
                try:
                    if records:
                        commit, _ = parse_control_record(records[0])
                        self.complete_txn(p, int(header.producer_id), commit)
                except InvalidBatch as exc:
                    log.error("%s-%d: skipping an unreadable marker: %s", OFFSETS_TOPIC, p, exc)
                continue
            txn_pid = int(header.producer_id) if header.is_transactional else None
            for rec in records:
                if rec.key is not None:
                    loaded += self._apply(p, rec.offset, rec.key, rec.value, txn_pid)
        log.info("replayed %d records of %s", loaded, OFFSETS_TOPIC)
        self._load_consumer_groups()

    def _apply(self, partition: int, offset: int, key: bytes, value: bytes | None, txn_pid: int | None = None) -> int:
        try:
            parsed = decode(key, value)
        except ConsumerGroupDecodeError as exc:
            # the group's state is unknown until a later record of the same key replaces this
            log.error("%s-%d@%d: unreadable consumer group record: %s", OFFSETS_TOPIC, partition, offset, exc)
            self._replay.setdefault(exc.group, ConsumerGroupRecords()).mark_unreadable(exc.key_version, exc.member_id, str(exc))
            return 0
        except DecodeError as exc:
            log.error("%s-%d@%d: skipping an unreadable record: %s", OFFSETS_TOPIC, partition, offset, exc)
            return 0
        if isinstance(parsed, OffsetRecord):
            v = parsed.value
            om = None if v is None else OffsetAndMetadata(v.offset, v.leader_epoch, v.metadata, v.commit_timestamp, v.expire_timestamp)
            if txn_pid is not None and om is not None:  # TxnOffsetCommit: waits for its marker
                self.coordinator.add_pending_txn_offsets(parsed.group, txn_pid, [(parsed.topic, parsed.partition, om)])
                self._txn_groups.setdefault(txn_pid, set()).add(parsed.group)
            else:
                self.coordinator.load_offset(parsed.group, parsed.topic, parsed.partition, om)
        elif isinstance(parsed, GroupRecord):
            self.coordinator.load_group(parsed.group, None if parsed.value is None else _snapshot(parsed.value))
        elif parsed is not None:  # a KIP-848 record: the group is loaded after the replay
            self._replay.setdefault(parsed.group, ConsumerGroupRecords()).apply(parsed)
        return 1

    def _load_consumer_groups(self) -> None:
        """Load every KIP-848 group collected by the replay; a group whose records are
        incomplete or unreadable is logged and left out (start-up must not fail)."""
        replay, self._replay = self._replay, {}
        loaded = 0
        for group_id, records in replay.items():
            if records.empty():
                continue  # deleted
            # also the members of a group left out, so that a new group of that id
            # tombstones their stale records
            self._consumer_members[group_id] = records.member_ids()
            try:
                self.consumer.load(group_id, records.snapshot())
            except Exception as exc:  # incomplete records, or data the coordinator rejects
                log.error("%s: not loading consumer group %r: %s", OFFSETS_TOPIC, group_id, exc)
                continue
            loaded += 1
        if replay:
            log.info("loaded %d consumer groups (KIP-848) from %s", loaded, OFFSETS_TOPIC)

    # ------------------------------------------------------------------ timers
    def reschedule(self) -> None:
        """Call after every coordinator call: (re)arm the timer for the next deadline."""
        deadlines = [d for d in (self.coordinator.next_deadline(), self.consumer.next_deadline()) if d is not None]
        self._timer.arm(min(deadlines) if deadlines else None)

    def _on_timer(self) -> None:
        for coordinator in (self.coordinator, self.consumer):
            try:
                coordinator.tick()
            except KafkaError:
                pass  # a write refused (disk full): logged by _append; the timers go on
            except Exception:  # pragma: no cover - a bug in a coordinator must not stop the broker
                log.exception("group coordinator tick failed")
        self.reschedule()

    def metadata_changed(self) -> None:
        """Topics were created, deleted or grew: KIP-848 groups may get new targets. A refused
        write is logged by ``_append`` and does not fail the topic operation; the groups keep
        their new state in memory, as after a timer."""
        with contextlib.suppress(KafkaError):
            self.consumer.on_metadata_change()

    # ------------------------------------------------------------------ persistence
    def ensure_topic(self) -> None:
        """Create ``__consumer_offsets`` if it does not exist yet (Kafka creates it on the first
        FindCoordinator for a group, or a Metadata request naming it)."""
        if self.broker.topics.get(OFFSETS_TOPIC) is None:
            self.broker.create_topic(OFFSETS_TOPIC, self.partitions, dict(OFFSETS_TOPIC_CONFIGS))

    def offsets_log(self, group_id: str) -> PartitionLog:
        self.ensure_topic()
        plog = self.broker.partition(OFFSETS_TOPIC, partition_for(group_id, self.partitions))
        assert plog is not None
        return plog

    def _persist(self, event: GroupEvent) -> None:
        records: list[KeyValue] = []
        if isinstance(event, OffsetsCommitted):
            for topic, partition, om in event.offsets:
                records.append((offset_key(event.group_id, topic, partition), offset_value(om.offset, om.leader_epoch, om.metadata, om.commit_timestamp)))
        elif isinstance(event, OffsetsDeleted):
            records += [(offset_key(event.group_id, t, p), None) for t, p in event.partitions]
        elif isinstance(event, GroupMetadataChanged):
            records.append((group_key(event.group_id), group_value(_value(event.snapshot))))
        elif isinstance(event, GroupDeleted):
            records += [(offset_key(event.group_id, t, p), None) for t, p in event.offsets]
            records.append((group_key(event.group_id), None))
        self._append(event.group_id, records, type(event).__name__)

    def _persist_consumer(self, event: ConsumerGroupEvent) -> None:
        """A KIP-848 group changed or was deleted: write Kafka's ConsumerGroup* records.

        Simple rather than minimal: every change rewrites all the records of the group (group
        epoch, subscription metadata, assignment epoch and the three records of every member),
        O(members) per change, where Kafka writes only the records that changed. Compaction
        keeps the latest of each key either way."""
        group_id = event.group_id
        # The topic first: creating it (first use) tells the coordinator about a new topic,
        # which may change and persist this group again before this event is written; so
        # write the group as it stands now (the event's snapshot otherwise).
        self.offsets_log(group_id)
        snapshot = self.consumer.snapshot(group_id)
        before = self._consumer_members.get(group_id, set())
        members: set[str] = set()
        if snapshot is not None:
            members = {m.member_id for m in snapshot.members}
            records = consumer_group_records(group_id, snapshot, sorted(before - members))
        else:
            records = consumer_group_tombstones(group_id, sorted(before))
        # on failure the members that left still have live records: remembered for later
        self._append(group_id, records, "consumer group state")
        if snapshot is not None:
            self._consumer_members[group_id] = members
        else:
            self._consumer_members.pop(group_id, None)

    def _append(self, group_id: str, records: list[KeyValue], what: str) -> None:
        """Append the records as one batch to the group's partition. A refused append (disk
        full: KAFKA_STORAGE_ERROR) is logged and raised as KafkaError to the coordinator,
        which leaves its state as it was and answers the mapped error."""
        if not records:
            return
        now = self.broker.now_ms()
        plog = self.offsets_log(group_id)
        batch = build_batch([(k, v, [], now) for k, v in records])
        try:
            info = plog.append(batch, now_ms=now)
        except KafkaError as exc:
            log.warning("group %r: could not write %s to %s-%d: %s (%s)", group_id, what, OFFSETS_TOPIC, plog.partition, _name(exc.code), exc)
            raise
        self._last_appended[plog.partition] = info.last_offset
        self.broker.notify()

    # ------------------------------------------------------------------ transactions
    def txn_commit(self, group_id: str, producer_id: int, producer_epoch: int, offsets: list[tuple[str, int, OffsetAndMetadata]]) -> None:
        """TxnOffsetCommit, after the coordinator's checks: write the offsets as a
        transactional batch of the producer to the group's partition (the log checks the
        producer epoch: a fenced producer gets INVALID_PRODUCER_EPOCH / PRODUCER_FENCED as a
        KafkaError) and keep them pending until the transaction's marker reaches it."""
        if not offsets:
            return
        now = self.broker.now_ms()
        plog = self.offsets_log(group_id)
        records: list[tuple[bytes, bytes | None, list[tuple[str, bytes | None]], int]] = [
            (offset_key(group_id, t, p), offset_value(om.offset, om.leader_epoch, om.metadata, om.commit_timestamp), [], now) for t, p, om in offsets
        ]
        batch = build_batch(records, producer_id=producer_id, producer_epoch=producer_epoch, transactional=True)
        try:
            info = plog.append(batch, now_ms=now, origin_coordinator=True)
        except KafkaError as exc:
            log.warning("group %r: could not write the transactional offsets of producer %d to %s-%d: %s (%s)", group_id, producer_id, OFFSETS_TOPIC, plog.partition, _name(exc.code), exc)
            raise
        self._last_appended[plog.partition] = info.last_offset
        self.coordinator.add_pending_txn_offsets(group_id, producer_id, offsets)
        self._txn_groups.setdefault(producer_id, set()).add(group_id)
        self.broker.notify()

    def complete_txn(self, partition: int, producer_id: int, commit: bool) -> None:
        """A marker of ``producer_id`` was written to ``__consumer_offsets-<partition>``."""
        groups = self._txn_groups.get(producer_id)
        if not groups:
            return
        for group_id in [g for g in groups if partition_for(g, self.partitions) == partition]:
            self.coordinator.complete_txn(group_id, producer_id, commit)
            groups.discard(group_id)
        if not groups:
            del self._txn_groups[producer_id]

    async def durable(self, group_id: str) -> None:
        """Wait until everything appended for this group's partition is durable."""
        if self.broker.topics.get(OFFSETS_TOPIC) is None:
            return
        plog = self.offsets_log(group_id)
        last = self._last_appended.get(plog.partition, -1)
        if plog.high_watermark > last:
            return
        await self.broker.wait_until(lambda: plog.high_watermark > last)


class BrokerTopics:
    """The KIP-848 coordinator's view of the topics (names, ids, partition counts)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def topic_id(self, name: str) -> uuid.UUID | None:
        t = self.broker.topics.get(name)
        return None if t is None else t.topic_id

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        t = self.broker.topics.by_id(topic_id)
        return None if t is None else t.name

    def partitions(self, name: str) -> int | None:
        t = self.broker.topics.get(name)
        return None if t is None else t.partitions

    def topic_names(self) -> list[str]:
        return [t.name for t in self.broker.topics if not t.internal]


def _name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def _value(s: GroupSnapshot) -> GroupMetadataValue:
    return GroupMetadataValue(
        protocol_type=s.protocol_type,
        generation=s.generation,
        protocol=s.protocol,
        leader=s.leader,
        current_state_timestamp=s.state_timestamp,
        members=[
            GroupMetadataValue.MemberMetadata(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                rebalance_timeout=m.rebalance_timeout,
                session_timeout=m.session_timeout,
                subscription=m.subscription,
                assignment=m.assignment,
            )
            for m in s.members
        ],
    )


def _snapshot(v: GroupMetadataValue) -> GroupSnapshot:
    return GroupSnapshot(
        protocol_type=v.protocol_type,
        generation=v.generation,
        protocol=v.protocol,
        leader=v.leader,
        state_timestamp=v.current_state_timestamp,
        members=[
            MemberSnapshot(m.member_id, m.group_instance_id, m.client_id, m.client_host, m.rebalance_timeout, m.session_timeout, m.subscription, m.assignment)
            for m in v.members
        ],
    )
