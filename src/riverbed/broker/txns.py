"""TxnService: runs the pure transaction coordinator on the event loop.

* Calls: every request handler goes through :meth:`TxnService.call`, which runs one
  coordinator method and then carries out what it asked for, in order:
  ``TxnLogWrite`` -> one record of ``__transaction_state`` (Kafka's TransactionLog format,
  ``coordinator/txn_log.py``) appended to the transactional id's partition;
  ``WriteMarkers`` -> a COMMIT or ABORT control batch appended to every partition of the
  transaction (``__consumer_offsets`` partitions included, which also settles the group's
  pending transactional offsets), then ``markers_written`` tells the coordinator, which
  writes the Complete state. On one broker the markers are written at once, so a
  transaction is complete by the time EndTxn is answered.
* Durability: the answer waits until every record appended during the call is durable
  (:meth:`durable`), like OffsetCommit.
* Time: the coordinator reports its next deadline (transaction timeouts, id expiry); one loop
  timer calls ``tick()`` then.
* Recovery: at start-up ``__transaction_state`` is replayed into the coordinator
  (``load``), after ``__consumer_offsets`` (groups hold pending transactional offsets), then
  ``finish_load`` writes the markers of transactions caught between prepare and complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from riverbed.coordinator.offsets_log import OFFSETS_TOPIC
from riverbed.coordinator.txn import TransactionCoordinator
from riverbed.coordinator.txn_log import (
    TRANSACTION_STATE_TOPIC,
    decode,
    partition_for,
    txn_key,
    txn_value,
)
from riverbed.coordinator.txn_types import TxnConfig, TxnEvent, TxnLogWrite, WriteMarkers
from riverbed.protocol.errors import DecodeError, KafkaError
from riverbed.protocol.records.batch import InvalidBatch, iter_batches
from riverbed.protocol.records.records import build_batch, decode_records
from riverbed.storage.api import PartitionLog

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("riverbed.txn")

TXN_TOPIC_PARTITIONS = 50  # transaction.state.log.num.partitions
TXN_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(100 * 1024 * 1024)}

_R = TypeVar("_R")

#: (log, last offset appended) pairs an answer must wait for
Pending = list[tuple[PartitionLog, int]]


class TxnService:
    def __init__(self, broker: Broker, config: TxnConfig | None = None, partitions: int = TXN_TOPIC_PARTITIONS) -> None:
        self.broker = broker
        self.partitions = partitions
        self._events: deque[TxnEvent] = deque()
        self.coordinator = TransactionCoordinator(broker.now_ms, config or TxnConfig(), broker.topics.allocate_producer_id, self._events.append)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._pending: Pending = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        topic = self.broker.topics.get(TRANSACTION_STATE_TOPIC)
        if topic is not None:
            self.partitions = topic.partitions
            self._load()
        self.coordinator.finish_load()
        self._drain()
        self.reschedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _load(self) -> None:
        loaded = 0
        for p in range(self.partitions):
            plog = self.broker.partition(TRANSACTION_STATE_TOPIC, p)
            if plog is None:
                continue
            offset = plog.log_start_offset
            while offset < plog.high_watermark:
                data = plog.read(offset, 1 << 20).records
                if not data:
                    break
                for header in iter_batches(data):
                    offset = header.next_offset
                    if header.is_control:
                        continue
                    try:
                        records = decode_records(data, header.position)
                    except InvalidBatch as exc:
                        log.error("%s-%d: skipping an unreadable batch: %s", TRANSACTION_STATE_TOPIC, p, exc)
                        continue
                    for rec in records:
                        if rec.key is None:
                            continue
                        try:
                            txn_id, snapshot = decode(rec.key, rec.value)
                        except DecodeError as exc:
                            log.error("%s-%d@%d: skipping an unreadable record: %s", TRANSACTION_STATE_TOPIC, p, rec.offset, exc)
                            continue
                        self.coordinator.load(txn_id, snapshot)
                        loaded += 1
        log.info("replayed %d records of %s", loaded, TRANSACTION_STATE_TOPIC)

    # ------------------------------------------------------------------ calls
    def call(self, fn: Callable[[], _R]) -> tuple[_R, Pending]:
        """Run one coordinator call and carry out its events; returns its result and what
        the answer must wait for."""
        result = fn()
        self._drain()
        pending, self._pending = self._pending, []
        self.reschedule()
        return result, pending

    def _drain(self) -> None:
        while self._events:
            event = self._events.popleft()
            try:
                if isinstance(event, TxnLogWrite):
                    self._write_state(event)
                elif isinstance(event, WriteMarkers):
                    self._write_markers(event)
            except Exception:  # pragma: no cover - a storage failure must not stop the broker
                log.exception("could not carry out %r", event)
        self.broker.notify()

    def _state_log(self, transactional_id: str) -> PartitionLog:
        if self.broker.topics.get(TRANSACTION_STATE_TOPIC) is None:
            self.broker.create_topic(TRANSACTION_STATE_TOPIC, self.partitions, dict(TXN_TOPIC_CONFIGS))
        plog = self.broker.partition(TRANSACTION_STATE_TOPIC, partition_for(transactional_id, self.partitions))
        assert plog is not None
        return plog

    def _write_state(self, event: TxnLogWrite) -> None:
        now = self.broker.now_ms()
        plog = self._state_log(event.transactional_id)
        value = None if event.snapshot is None else txn_value(event.snapshot)
        batch = build_batch([(txn_key(event.transactional_id), value, [], now)])
        info = plog.append(batch, now_ms=now)
        self._pending.append((plog, info.last_offset))

    def _write_markers(self, event: WriteMarkers) -> None:
        now = self.broker.now_ms()
        epoch = self.coordinator.coordinator_epoch
        for topic, partition in event.partitions:
            plog = self.broker.partition(topic, partition)
            if plog is None:  # the topic was deleted meanwhile
                continue
            try:
                info = plog.append_marker(event.producer_id, event.producer_epoch, event.commit, epoch, now_ms=now)
            except KafkaError as exc:
                log.warning("%s-%d: no %s marker for producer %d: %s", topic, partition, "COMMIT" if event.commit else "ABORT", event.producer_id, exc)
                continue
            self._pending.append((plog, info.last_offset))
            if topic == OFFSETS_TOPIC:
                self.broker.groups.complete_txn(partition, event.producer_id, event.commit)
        self.coordinator.markers_written(event.transactional_id, event.producer_id, event.producer_epoch)

    async def durable(self, pending: Pending) -> None:
        """Wait until every (log, offset) in ``pending`` is below its high watermark."""
        if all(plog.high_watermark > last for plog, last in pending):
            return
        await self.broker.wait_until(lambda: all(plog.high_watermark > last for plog, last in pending))

    # ------------------------------------------------------------------ timers
    def reschedule(self) -> None:
        deadline = self.coordinator.next_deadline()
        if deadline == self._timer_at and (deadline is None or self._timer is not None):
            return
        loop = self.broker.loop
        if loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, (deadline - self.broker.now_ms()) / 1000)
            self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.coordinator.tick()
        except Exception:  # pragma: no cover - a bug in the coordinator must not stop the broker
            log.exception("transaction coordinator tick failed")
        self._drain()
        self._pending = []
        self.reschedule()
