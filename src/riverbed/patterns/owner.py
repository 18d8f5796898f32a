"""The single writer of an aggregate type's partitions, and the command bus that reaches it.

``AggregateOwner`` joins a consumer group on the command topic; the partitions it is assigned
are the aggregates it owns. For each owned partition it keeps a transactional producer whose
``transactional.id`` is ``<app>.<events topic>.<partition>``: ``init_transactions`` fences any
earlier owner of that partition (a zombie's next commit fails) and aborts its open
transaction. It then replays the partition's committed events into memory, and from then on
checks each command against the in-memory version and appends the events, the command's
result and the command's consumed offset in ONE Kafka transaction. The argument and its
failure cases: docs/adr/0010-event-sourcing-on-kafka.md.

Not thread-safe: call ``poll`` and ``execute`` from one thread (``run`` does it for you).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from riverbed import client

from .aggregate import A, TypeRegistry
from .envelope import Envelope, utc_now
from .errors import CommandRejected, Fenced, InvalidEnvelope, NotOwner, UnknownEventType
from .repository import apply_envelope, from_snapshot
from .snapshots import EveryNEvents, SnapshotStore, make_snapshot
from .store import EventStore, PartitionReader
from .txn import TransactionStuck, bounded

log = logging.getLogger("riverbed.patterns.owner")


@dataclass(frozen=True)
class CommandResult:
    command_id: str
    aggregate_id: str
    accepted: bool
    version: int  # the aggregate's version after the command (or its current one if rejected)
    reason: str = ""
    events: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"commandId": self.command_id, "aggregateId": self.aggregate_id, "status": "accepted" if self.accepted else "rejected",
                "version": self.version, "reason": self.reason, "events": self.events}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> CommandResult:
        return cls(str(obj["commandId"]), str(obj["aggregateId"]), obj["status"] == "accepted", int(obj["version"]), str(obj.get("reason", "")), int(obj.get("events", 0)))

    def raise_for_status(self) -> CommandResult:
        if not self.accepted:
            raise CommandRejected(f"command {self.command_id} on {self.aggregate_id}: {self.reason}")
        return self


@dataclass
class _Command:
    command_id: str
    aggregate_id: str
    command: Any  # the typed command, or an error string when it could not be decoded
    expected_version: int | None


@dataclass
class _Owned(Generic[A]):
    partition: int
    producer: Producer
    aggregates: dict[str, A] = field(default_factory=dict)
    last: dict[str, tuple[int, Any]] = field(default_factory=dict)  # id -> (offset, time) of its latest event
    snapshotted: dict[str, int] = field(default_factory=dict)  # id -> version of its last snapshot by this owner


def _checkpoint_id(partition: int) -> str:
    return f"__partition__/{partition}"


def encode_command(types: TypeRegistry, command_id: str, aggregate_id: str, command: Any, expected_version: int | None) -> bytes:
    return json.dumps({"commandId": command_id, "commandType": types.command_name(command), "aggregateId": aggregate_id,
                       "expectedVersion": expected_version, "data": types.event_data(command)}, separators=(",", ":")).encode()


def decode_command(types: TypeRegistry, msg: Any) -> _Command:
    fallback_id = f"{msg.topic()}-{msg.partition()}-{msg.offset()}"
    key = (msg.key() or b"").decode(errors="replace")
    try:
        obj = json.loads(msg.value() or b"")
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        cid = str(obj.get("commandId") or fallback_id)
        agg_id = str(obj.get("aggregateId") or key)
        expected = obj.get("expectedVersion")
        data = obj.get("data") or {}
        if not isinstance(data, dict):
            raise ValueError("'data' is not a JSON object")
        try:
            cmd: Any = types.to_command(str(obj.get("commandType")), data)
        except (UnknownEventType, InvalidEnvelope) as exc:
            cmd = str(exc)
        return _Command(cid, agg_id, cmd, None if expected is None else int(expected))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        return _Command(fallback_id, key, f"malformed command record: {exc}", None)


class AggregateOwner(Generic[A]):
    """Owns the partitions the consumer group assigns it and appends their events."""

    def __init__(self, store: EventStore, cls: type[A], types: TypeRegistry, app_id: str, *, source: str = "riverbed",
                 snapshots: SnapshotStore | None = None, snapshot_policy: EveryNEvents | None = None, batch: int = 500,
                 consumer_config: dict[str, Any] | None = None) -> None:
        self.store, self.cls, self.types, self.app_id, self.source = store, cls, types, app_id, source
        self.snapshots, self.policy, self.batch = snapshots, snapshot_policy, batch
        self.owned: dict[int, _Owned[A]] = {}
        self.restored: dict[int, tuple[int, int]] = {}  # partition -> (replay start offset, events replayed) at its last take-over
        self.txn_timeout = 30.0  # seconds a transactional call may take before the producer is replaced
        self.on_results: Callable[[list[CommandResult]], None] | None = None
        self._reader = PartitionReader(store)
        # consumer_config: e.g. session.timeout.ms (how soon a dead owner's partitions move)
        self._consumer = client.consumer(store.settings, f"{app_id}.owners", **{"auto.offset.reset": "earliest", "isolation.level": "read_committed", "fetch.wait.max.ms": 20, **(consumer_config or {})})
        self._consumer.subscribe([store.commands_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        self._stop = threading.Event()
        self._untaken: set[int] = set()

    # --- ownership -------------------------------------------------------------------------
    def transactional_id(self, partition: int) -> str:
        return f"{self.app_id}.{self.store.events_topic}.{partition}"

    def _on_assign(self, consumer: Any, parts: list[TopicPartition]) -> None:
        for tp in parts:
            try:
                self._take(tp.partition)
            except Exception:
                log.exception("could not take partition %d of %s (will retry)", tp.partition, self.store.events_topic)
                self._untaken.add(tp.partition)

    def _on_revoke(self, consumer: Any, parts: list[TopicPartition]) -> None:
        for tp in parts:
            self._untaken.discard(tp.partition)
            self._drop(tp.partition, "revoked")

    def _retry_untaken(self) -> None:
        """Assigned partitions whose take-over failed (broker unavailable, say): try again and
        read their commands from the committed offset."""
        for p in sorted(self._untaken):
            try:
                self._take(p)
            except Exception as exc:
                log.warning("partition %d of %s still not taken: %s", p, self.store.events_topic, exc)
                continue
            self._untaken.discard(p)
            self._rewind(p, 0)

    def _take(self, p: int) -> None:
        producer = client.producer(self.store.settings, **{"transactional.id": self.transactional_id(p), "linger.ms": 1, "transaction.timeout.ms": 60000})
        producer.init_transactions(60)  # fences the previous owner and aborts its open transaction
        owned: _Owned[A] = _Owned(p, producer)
        start = self._restore_snapshots(owned) if self.snapshots is not None else 0
        replayed = 0
        for env in self._reader.read(p, start, timeout=300):
            agg = owned.aggregates.get(env.aggregate_id)
            if agg is None:
                agg = owned.aggregates[env.aggregate_id] = self._initial(env.aggregate_id)
            if env.aggregate_version <= agg.version:
                continue
            apply_envelope(agg, env, self.types)
            owned.last[env.aggregate_id] = (env.offset, env.time)
            replayed += 1
        self.owned[p] = owned
        self.restored[p] = (start, replayed)
        log.info("%s owns partition %d of %s (%d aggregates; replayed %d events from offset %d)", self.app_id, p, self.store.events_topic, len(owned.aggregates), replayed, start)

    def _restore_snapshots(self, owned: _Owned[A]) -> int:
        """Aggregates from the partition's snapshots when a partition checkpoint (written by
        ``take_snapshots()``) says every aggregate up to its offset has one; returns the offset
        the replay starts at (0 when the snapshots cannot be trusted to be complete)."""
        assert self.snapshots is not None
        p = owned.partition
        try:
            snaps = self.snapshots.for_partition(self.cls.aggregate_type, p)
        except Exception as exc:
            log.warning("snapshots of partition %d unreadable (%s); replaying it all", p, exc)
            return 0
        marker = next((s for s in snaps if s.aggregate_id == _checkpoint_id(p)), None)
        if marker is None:
            return 0
        try:
            covered = set(json.loads(marker.state)["aggregates"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("partition %d checkpoint is corrupt (%s); replaying it all", p, exc)
            return 0
        restored: dict[str, A] = {}
        last: dict[str, tuple[int, Any]] = {}
        for snap in snaps:  # snapshots newer than the checkpoint are fine: older events are skipped by version
            if snap.aggregate_id == _checkpoint_id(p):
                continue
            agg = from_snapshot(self.cls, snap, self.types)
            if agg is not None:
                restored[snap.aggregate_id] = agg
                last[snap.aggregate_id] = (snap.offset, snap.event_time)
        missing = covered - set(restored)
        if missing:  # deleted, corrupt or of an old shape: the checkpoint is incomplete
            log.warning("partition %d checkpoint: %d of its %d aggregates have no usable snapshot; replaying it all", p, len(missing), len(covered))
            return 0
        owned.aggregates.update(restored)
        owned.last.update(last)
        owned.snapshotted.update({k: a.version for k, a in restored.items()})
        return marker.offset + 1

    def _initial(self, aggregate_id: str) -> A:
        return self.cls.create(aggregate_id)

    def _drop(self, p: int, why: str) -> None:
        owned = self.owned.pop(p, None)
        if owned is not None:
            if why in ("revoked", "closing"):
                _close_producer(owned.producer)
            log.info("%s gives up partition %d of %s (%s)", self.app_id, p, self.store.events_topic, why)

    def _retake(self, p: int) -> None:
        """A new producer for partition ``p`` (fencing the old one and aborting its transaction
        if it was not committed), and the partition's state replayed from the log."""
        self._drop(p, "new producer")
        try:
            self._take(p)
        except Exception:
            log.exception("could not take partition %d of %s again (will retry)", p, self.store.events_topic)
            self._untaken.add(p)

    def _rewind(self, p: int, fallback: int) -> None:
        try:
            committed = self._consumer.committed([TopicPartition(self.store.commands_topic, p)], timeout=10)[0].offset
        except KafkaException as exc:
            log.warning("committed offset of %s[%d] unknown (%s)", self.store.commands_topic, p, exc)
            committed = -1
        self._consumer.seek(TopicPartition(self.store.commands_topic, p, committed if committed >= 0 else fallback))

    def _pause(self, p: int) -> None:
        try:
            self._consumer.pause([TopicPartition(self.store.commands_topic, p)])
        except KafkaException as exc:
            log.debug("pausing %s[%d]: %s", self.store.commands_topic, p, exc)

    def wait_owned(self, partitions: int | None = None, timeout: float = 30.0) -> set[int]:
        """Polls until this owner holds ``partitions`` partitions (default: all of them)."""
        want = self.store.partitions if partitions is None else partitions
        deadline = time.monotonic() + timeout
        while len(self.owned) < want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.app_id} owns {sorted(self.owned)} after {timeout} s, wanted {want} partitions")
            self.poll(0.2)
        return set(self.owned)

    # --- commands --------------------------------------------------------------------------
    def poll(self, timeout: float = 1.0) -> list[CommandResult]:
        """Handles one batch of commands from the command topic (one transaction per partition)."""
        if self._untaken:
            self._retry_untaken()
        msgs: list[Any] = self._consumer.consume(self.batch, timeout)
        by_part: dict[int, list[Any]] = {}
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("command consumer: %s", err)
                continue
            by_part.setdefault(m.partition(), []).append(m)
        results: list[CommandResult] = []
        for p, batch in by_part.items():
            owned = self.owned.get(p)
            if owned is None:
                continue  # revoked meanwhile: the next owner reads them (offsets not committed)
            commands = [decode_command(self.types, m) for m in batch]
            offsets = [TopicPartition(self.store.commands_topic, p, batch[-1].offset() + 1)]
            try:
                done = self._transact(owned, commands, offsets)
            except Fenced:
                continue
            if done is None:  # aborted (or unknown): read again from the committed offset
                self._rewind(p, batch[0].offset())
                continue
            results.extend(done)
        if results and self.on_results is not None:
            self.on_results(results)
        return results

    def execute(self, aggregate_id: str, command: Any, expected_version: int | None = None, command_id: str | None = None) -> CommandResult:
        """Handles a command directly (this process must own the aggregate's partition)."""
        p = self.store.partition_for(aggregate_id)
        owned = self.owned.get(p)
        if owned is None:
            raise NotOwner(aggregate_id, p)
        done = self._transact(owned, [_Command(command_id or str(uuid.uuid4()), aggregate_id, command, expected_version)], None)
        if done is None:
            raise CommandRejected(f"command on {aggregate_id} not confirmed: its transaction was aborted or did not finish (re-read the aggregate, then retry)")
        return done[0]

    def aggregate(self, aggregate_id: str) -> A:
        """A copy of the owner's current state of an aggregate it owns."""
        p = self.store.partition_for(aggregate_id)
        owned = self.owned.get(p)
        if owned is None:
            raise NotOwner(aggregate_id, p)
        agg = owned.aggregates.get(aggregate_id)
        return self._initial(aggregate_id) if agg is None else agg.copy()

    def take_snapshots(self, aggregate_ids: list[str] | None = None) -> int:
        """Snapshots now (the scheduled, "nightly" policy): the given aggregates, or every
        aggregate this owner holds that changed since its last snapshot. Returns how many."""
        if self.snapshots is None:
            raise ValueError("this owner has no snapshot store")
        n = 0
        for owned in self.owned.values():
            for agg_id, agg in owned.aggregates.items():
                if aggregate_ids is not None and agg_id not in aggregate_ids:
                    continue
                last = owned.last.get(agg_id)
                if last is None or owned.snapshotted.get(agg_id) == agg.version:
                    continue
                self.snapshots.put(make_snapshot(self.cls.aggregate_type, agg_id, agg.version, owned.partition, last[0], self.cls.snapshot_version, agg.state(), last[1]))
                owned.snapshotted[agg_id] = agg.version
                n += 1
            if aggregate_ids is None and owned.last:  # every aggregate has one: a partition checkpoint
                offset, at = max(owned.last.values(), key=lambda x: x[0])
                covered = {"aggregates": sorted(owned.aggregates)}
                self.snapshots.put(make_snapshot(self.cls.aggregate_type, _checkpoint_id(owned.partition), len(owned.aggregates), owned.partition, offset, 0, covered, at))
        return n

    def _transact(self, owned: _Owned[A], commands: list[_Command], offsets: list[TopicPartition] | None) -> list[CommandResult] | None:
        p, producer = owned.partition, owned.producer
        working: dict[str, A] = {}
        before: dict[str, int] = {}
        results: list[CommandResult] = []
        written: dict[str, tuple[int, Any]] = {}
        delivered: list[tuple[str, int, Any]] = []

        def on_delivery(err: Any, msg: Any, agg_id: str = "", at: Any = None) -> None:
            if err is None:
                delivered.append((agg_id, msg.offset(), at))

        try:
            producer.begin_transaction()
            for c in commands:
                agg = working.get(c.aggregate_id)
                if agg is None:
                    cur = owned.aggregates.get(c.aggregate_id)
                    agg = self._initial(c.aggregate_id) if cur is None else cur
                    before.setdefault(c.aggregate_id, agg.version)
                result, after, envs = self._decide(agg, c)
                if after is not None:
                    working[c.aggregate_id] = after
                    for env in envs:
                        cb: Any = lambda err, msg, a=env.aggregate_id, t=env.time: on_delivery(err, msg, a, t)  # noqa: E731
                        headers: Any = env.headers()
                        producer.produce(self.store.events_topic, key=env.aggregate_id.encode(), value=env.encode(), partition=p, headers=headers, on_delivery=cb)
                if offsets is not None:
                    producer.produce(self.store.results_topic, key=c.command_id.encode(), value=json.dumps(result.to_json()).encode(), partition=p)
                results.append(result)
            if offsets is not None:
                meta = self._consumer.consumer_group_metadata()
                bounded(lambda: producer.send_offsets_to_transaction(offsets, meta, self.txn_timeout), self.txn_timeout + 2, "send_offsets_to_transaction")
            bounded(lambda: producer.commit_transaction(self.txn_timeout), self.txn_timeout + 2, "commit_transaction")
        except TransactionStuck as exc:
            log.warning("partition %d of %s: %s; taking the partition again with a new producer", p, self.store.events_topic, exc)
            self._retake(p)
            return None
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH):
                log.warning("%s was fenced on partition %d of %s (%s): a newer owner took over", self.app_id, p, self.store.events_topic, err)
                self._drop(p, "fenced")
                self._pause(p)
                raise Fenced(f"partition {p} of {self.store.events_topic}: {err}") from exc
            log.warning("transaction on partition %d of %s aborted: %s", p, self.store.events_topic, err)
            try:
                if err.fatal():
                    raise exc
                bounded(lambda: producer.abort_transaction(self.txn_timeout), self.txn_timeout + 2, "abort_transaction")
            except (KafkaException, TransactionStuck) as exc2:
                log.warning("abort failed (%s); taking partition %d again with a new producer", exc2, p)
                self._retake(p)
            return None
        for agg_id, offset, at in delivered:
            if offset > written.get(agg_id, (-1, None))[0]:
                written[agg_id] = (offset, at)
        owned.aggregates.update(working)
        owned.last.update(written)
        if self.snapshots is not None and self.policy is not None:
            for agg_id, agg in working.items():
                if self.policy.due(before.get(agg_id, 0), agg.version) and agg_id in written:
                    offset, at = written[agg_id]
                    try:
                        self.snapshots.put(make_snapshot(self.cls.aggregate_type, agg_id, agg.version, p, offset, self.cls.snapshot_version, agg.state(), at))
                        owned.snapshotted[agg_id] = agg.version
                    except Exception as exc:  # a snapshot is an optimisation: never fail a command for it
                        log.warning("snapshot of %s %s failed: %s", self.cls.aggregate_type, agg_id, exc)
        return results

    def _decide(self, agg: A, c: _Command) -> tuple[CommandResult, A | None, list[Envelope]]:
        """(result, the aggregate after the command or None if rejected, the new events)."""
        if isinstance(c.command, str):
            return CommandResult(c.command_id, c.aggregate_id, False, agg.version, c.command), None, []
        if c.expected_version is not None and c.expected_version != agg.version:
            return CommandResult(c.command_id, c.aggregate_id, False, agg.version, f"wrong expected version: expected {c.expected_version}, current {agg.version}"), None, []
        try:
            events = list(agg.decide(c.command))
            trial = agg.copy()
            envs = []
            for ev in events:
                name, version = self.types.event_name(ev)
                trial.apply(ev)
                trial.version += 1
                envs.append(Envelope(name, version, self.cls.aggregate_type, c.aggregate_id, trial.version, self.types.event_data(ev), source=self.source, time=utc_now(), command_id=c.command_id))
        except CommandRejected as exc:
            return CommandResult(c.command_id, c.aggregate_id, False, agg.version, str(exc)), None, []
        except Exception as exc:
            log.exception("command %s on %s %s failed", c.command_id, self.cls.aggregate_type, c.aggregate_id)
            return CommandResult(c.command_id, c.aggregate_id, False, agg.version, f"error: {type(exc).__name__}: {exc}"), None, []
        return CommandResult(c.command_id, c.aggregate_id, True, trial.version, "", len(envs)), trial, envs

    # --- running ---------------------------------------------------------------------------
    def run(self, poll_timeout: float = 0.5) -> None:
        """Polls until ``stop()``."""
        while not self._stop.is_set():
            self.poll(poll_timeout)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        for p in list(self.owned):
            self._drop(p, "closing")
        self._consumer.close()
        self._reader.close()


def _close_producer(producer: Producer) -> None:
    """Flush and close; a fenced or failed producer (its close would try to abort) is left to
    the garbage collector."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            producer.flush(5)
            producer.close()
    except Exception as exc:  # closing is best effort: the partition is given up either way
        log.debug("closing a producer: %s", exc)


class CommandBus:
    """Sends commands to whichever process owns the aggregate (through the command topic) and
    waits for their results."""

    def __init__(self, store: EventStore, types: TypeRegistry) -> None:
        self.store, self.types = store, types
        self._producer = client.producer(store.settings, **{"linger.ms": 2})
        self._results = client.consumer(store.settings, f"riverbed-patterns-bus-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed", "fetch.wait.max.ms": 20})
        parts = []
        for p in range(store.partitions):
            _, high = self._results.get_watermark_offsets(TopicPartition(store.results_topic, p), timeout=30)
            parts.append(TopicPartition(store.results_topic, p, high))
        self._results.assign(parts)
        self.seen: dict[str, CommandResult] = {}
        self.duplicates = 0  # results seen twice for one command id (must stay 0)

    def send(self, aggregate_id: str, command: Any, expected_version: int | None = None, command_id: str | None = None) -> str:
        cid = command_id or str(uuid.uuid4())
        value = encode_command(self.types, cid, aggregate_id, command, expected_version)
        self._producer.produce(self.store.commands_topic, key=aggregate_id.encode(), value=value, partition=self.store.partition_for(aggregate_id))
        self._producer.poll(0)
        return cid

    def flush(self, timeout: float = 30.0) -> None:
        if self._producer.flush(timeout):
            raise TimeoutError("commands not delivered in time")

    def collect(self, timeout: float = 0.2) -> None:
        msgs: list[Any] = self._results.consume(1000, timeout)
        for m in msgs:
            if m.error() is not None:
                continue
            r = CommandResult.from_json(json.loads(m.value()))
            if r.command_id in self.seen:
                self.duplicates += 1
            self.seen[r.command_id] = r

    def wait(self, command_ids: list[str], timeout: float = 30.0) -> dict[str, CommandResult]:
        """The results of ``command_ids`` (TimeoutError if some do not arrive in time)."""
        self.flush(timeout)
        deadline = time.monotonic() + timeout
        while any(c not in self.seen for c in command_ids):
            if time.monotonic() > deadline:
                missing = [c for c in command_ids if c not in self.seen]
                raise TimeoutError(f"{len(missing)} command results did not arrive in {timeout} s")
            self.collect()
        return {c: self.seen[c] for c in command_ids}

    def close(self) -> None:
        self.flush()
        _close_producer(self._producer)
        self._results.close()
