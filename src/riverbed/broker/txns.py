"""TxnService: runs the pure transaction coordinator on the event loop.

* Calls: every request handler goes through :meth:`TxnService.call`, which runs one
  coordinator method and then carries out what it asked for, in order:
  ``TxnLogWrite`` -> one record of ``__transaction_state`` (Kafka's TransactionLog format,
  ``coordinator/txn_log.py``) appended to the transactional id's partition (if that append
  fails, the id's previous state is restored and the client is told Kafka's mapped error:
  NOT_COORDINATOR for a refused write such as a full disk, see ``write_errors``); ``WriteMarkers`` -> a task that waits until the Prepare
  record is durable, appends a COMMIT or ABORT control batch to every partition of the
  transaction, waits until those are durable, settles the group offsets of the
  ``__consumer_offsets`` partitions among them, and calls ``markers_written``, which writes
  the Complete state. Kafka orders these steps the same way, so a power cut can never leave
  a marker without its Prepare record, or a Complete record without its markers.
* Durability: the answer waits until every record appended during the call is durable, and
  EndTxn also for its markers (:meth:`settle`), so a client told "committed" reads its
  records with read_committed at once.
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
from dataclasses import dataclass
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
from riverbed.coordinator.txn_types import (
    PREPARING,
    TxnConfig,
    TxnEvent,
    TxnLogWrite,
    TxnState,
    WriteMarkers,
)
from riverbed.coordinator.write_errors import txn_write_error
from riverbed.protocol.errors import DecodeError, ErrorCode, KafkaError
from riverbed.protocol.records.records import build_single_record_batch
from riverbed.storage.api import PartitionLog

from .deadline_timer import DeadlineTimer
from .replay import replay_batches

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("riverbed.txn")

TXN_TOPIC_PARTITIONS = 50  # transaction.state.log.num.partitions
TXN_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(100 * 1024 * 1024)}

_R = TypeVar("_R")

#: how soon a state record that no answer waits for (a Complete record; the Ongoing record
#: of AddPartitionsToTxn, whose transaction's produce asks for its flush) is made durable at
#: the latest when nothing else asks for a flush of its log first
DEFERRED_FLUSH_S = 0.1

#: (log, last offset appended) pairs an answer must wait for
Pending = list[tuple[PartitionLog, int]]

#: marker failures that no retry can fix
_HOPELESS = {ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.PRODUCER_FENCED, ErrorCode.TRANSACTION_COORDINATOR_FENCED}


@dataclass(slots=True)
class Outcome:
    pending: Pending
    tasks: list[asyncio.Future[None]]
    error: int  # NONE, or what the client is told because a state record was not written


class TxnService:
    def __init__(self, broker: Broker, config: TxnConfig | None = None, partitions: int = TXN_TOPIC_PARTITIONS) -> None:
        self.broker = broker
        self.partitions = partitions
        self._events: deque[TxnEvent] = deque()
        self.coordinator = TransactionCoordinator(broker.now_ms, config or TxnConfig(), broker.topics.allocate_producer_id, self._events.append)
        self._timer = DeadlineTimer(broker, self._on_timer)
        self._pending: Pending = []
        self._new_tasks: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Future[None]] = set()
        self._failed: dict[str, int] = {}  # transactional id -> the mapped error of its failed write
        #: transactional id -> its last state record written without the answer waiting for it
        #: (AddPartitionsToTxn), and whether its flush was asked for; a transactional
        #: produce waits for it
        self._unsynced: dict[str, tuple[PartitionLog, int, bool]] = {}
        self._stopped = False
        self._defer_flush = False  # state records appended now need no fsync of their own
        #: logs holding such records, and the last one: flushed by a timer unless sooner
        self._deferred: dict[PartitionLog, int] = {}
        self._deferred_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        topic = self.broker.topics.get(TRANSACTION_STATE_TOPIC)
        if topic is not None:
            self.partitions = topic.partitions
            self._load()
        self.coordinator.finish_load()
        self._drain()
        self._pending, self._new_tasks = [], []
        self._abort_orphans()
        self.reschedule()

    def _abort_orphans(self) -> None:
        """Abort the transactions that partitions hold open but the coordinator does not know
        (a hanging transaction: a power cut kept a transaction's records but lost the state
        record that added the partition, which the produce's answer waited for, so the client
        was never told they were stored). Without a marker they would hold back the last
        stable offset, and every read_committed consumer with it, for ever."""
        open_in: dict[int, set[tuple[str, int]]] = {}
        for tid in self.coordinator.transactional_ids():
            cur = self.coordinator.snapshot(tid)
            if cur is not None and (cur.state == TxnState.ONGOING or cur.state in PREPARING):
                open_in.setdefault(cur.producer_id, set()).update(cur.partitions)
        for topic in list(self.broker.topics):
            for p in range(topic.partitions):
                # only the loaded partitions: after a clean shutdown, the partitions that held
                # an open transaction are loaded by the log manager's open(), the others at
                # their first use (docs/storage-format.md, "Start-up"); after a crash all are
                plog = self.broker.logs.get_loaded(topic.name, p)
                if plog is None:
                    continue
                for view in plog.producer_states():
                    if view.current_txn_start_offset < 0 or (topic.name, p) in open_in.get(view.producer_id, ()):
                        continue
                    log.warning(
                        "%s-%d: transaction of producer %d (epoch %d) open since offset %d is unknown to the coordinator: aborting it",
                        topic.name, p, view.producer_id, view.producer_epoch, view.current_txn_start_offset,
                    )
                    try:
                        plog.append_marker(view.producer_id, view.producer_epoch, False, self.coordinator.coordinator_epoch, now_ms=self.broker.now_ms())
                    except KafkaError as exc:
                        log.error("%s-%d: could not abort the transaction of producer %d: %s", topic.name, p, view.producer_id, exc)
                        continue
                    if topic.name == OFFSETS_TOPIC:
                        self.broker.groups.complete_txn(p, view.producer_id, False)

    def stop(self) -> None:
        self._stopped = True
        self._timer.cancel()
        if self._deferred_timer is not None:
            self._deferred_timer.cancel()
            self._deferred_timer = None
        for task in list(self._tasks):
            task.cancel()

    def _load(self) -> None:
        loaded = 0
        for p, header, records in replay_batches(self.broker, TRANSACTION_STATE_TOPIC, self.partitions):
            if header.is_control:
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
    def call(self, transactional_id: str, fn: Callable[[], _R], *, defer_flush: bool = False) -> tuple[_R, Outcome]:
        """Run one coordinator call for ``transactional_id`` and carry out its events.

        Returns the call's result and an :class:`Outcome`: what the answer must wait for,
        and the error to answer if a state record could not be written (then the id's
        previous state is restored; the error is Kafka's mapping of the log's error,
        ``txn_write_error``: NOT_COORDINATOR for a full disk). ``defer_flush``: the state
        records ask for no fsync of their own (a timer asks within ``DEFERRED_FLUSH_S``); a caller that
        waits for them must ask for the flush (:meth:`flush_now`)."""
        before = self.coordinator.snapshot(transactional_id)
        result = fn()
        self._defer_flush = defer_flush
        try:
            self._drain()
        finally:
            self._defer_flush = False
        pending, self._pending = self._pending, []
        tasks, self._new_tasks = self._new_tasks, []
        error = self._failed.pop(transactional_id, ErrorCode.NONE)
        self._failed.clear()
        if error:
            self.coordinator.load(transactional_id, before)
        self.reschedule()
        return result, Outcome(pending, tasks, error)

    def _drain(self) -> None:
        while self._events:
            event = self._events.popleft()
            if event.transactional_id in self._failed:
                continue  # its state record was not written: nothing after it may happen
            if isinstance(event, TxnLogWrite):
                try:
                    self._write_state(event)
                except KafkaError as exc:  # refused by the log (disk full)
                    log.warning("transactional id %r: could not write its state to %s: %s (%s)", event.transactional_id, TRANSACTION_STATE_TOPIC, ErrorCode(exc.code).name, exc)
                    self._failed[event.transactional_id] = txn_write_error(exc.code)
                except Exception:  # the log is closed or failed (I/O error)
                    log.exception("could not write the state of transactional id %r", event.transactional_id)
                    self._failed[event.transactional_id] = ErrorCode.COORDINATOR_NOT_AVAILABLE
            elif isinstance(event, WriteMarkers):
                # Markers only once the Prepare record is durable (Kafka sends them from the
                # append's callback); then Complete only once every marker is durable.
                task = asyncio.ensure_future(self._complete(event, list(self._pending)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self._new_tasks.append(task)
        self.broker.notify()

    def ensure_topic(self) -> None:
        """Create ``__transaction_state`` if it does not exist yet (Kafka creates it on the
        first FindCoordinator for a transactional id, or a Metadata request naming it)."""
        if self.broker.topics.get(TRANSACTION_STATE_TOPIC) is None:
            self.broker.create_topic(TRANSACTION_STATE_TOPIC, self.partitions, dict(TXN_TOPIC_CONFIGS))

    def _state_log(self, transactional_id: str) -> PartitionLog:
        self.ensure_topic()
        plog = self.broker.partition(TRANSACTION_STATE_TOPIC, partition_for(transactional_id, self.partitions))
        assert plog is not None
        return plog

    def _write_state(self, event: TxnLogWrite) -> None:
        now = self.broker.now_ms()
        plog = self._state_log(event.transactional_id)
        value = None if event.snapshot is None else txn_value(event.snapshot)
        batch = build_single_record_batch(txn_key(event.transactional_id), value, now)
        info = plog.append(batch, now_ms=now, flush=not self._defer_flush)
        if self._defer_flush:
            self._defer(plog, info.last_offset)
        self._pending.append((plog, info.last_offset))

    def _defer(self, plog: PartitionLog, last: int) -> None:
        """``last`` was appended without asking for a flush: ask within DEFERRED_FLUSH_S
        unless another flush of the log covers it first (one loop timer at a time)."""
        self._deferred[plog] = last
        if self._deferred_timer is None and self.broker.loop is not None:
            self._deferred_timer = self.broker.loop.call_later(DEFERRED_FLUSH_S, self._flush_deferred)

    def _flush_deferred(self) -> None:
        self._deferred_timer = None
        deferred, self._deferred = self._deferred, {}
        for plog, last in deferred.items():
            if plog.high_watermark <= last:
                self.broker.logs.request_flush(plog)

    async def _complete(self, event: WriteMarkers, prepare: Pending) -> None:
        """Write the transaction's markers once its Prepare record is durable, then tell the
        coordinator once they are durable. A partition whose log refuses the marker for a
        reason that cannot go away (a newer producer epoch there) is logged and skipped;
        other failures (storage) are retried with backoff."""
        await self.durable(prepare)
        kind = "COMMIT" if event.commit else "ABORT"
        remaining = list(event.partitions)
        written: list[tuple[PartitionLog, int, str, int]] = []
        backoff = 0.05
        while remaining and not self._stopped:
            retry: list[tuple[str, int]] = []
            now = self.broker.now_ms()
            with self.broker.logs.gather_flushes():  # every marker in one flush cycle
                for topic, partition in remaining:
                    plog = self.broker.partition(topic, partition)
                    if plog is None:  # the topic was deleted meanwhile
                        continue
                    try:
                        info = plog.append_marker(event.producer_id, event.producer_epoch, event.commit, self.coordinator.coordinator_epoch, now_ms=now)
                    except KafkaError as exc:
                        if exc.code in _HOPELESS:
                            log.error("%s-%d: no %s marker for producer %d: %s", topic, partition, kind, event.producer_id, exc)
                        else:
                            log.warning("%s-%d: %s marker for producer %d failed, will retry: %s", topic, partition, kind, event.producer_id, exc)
                            retry.append((topic, partition))
                        continue
                    written.append((plog, info.last_offset, topic, partition))
            self.broker.notify()
            remaining = retry
            if remaining:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        await self.durable([(plog, last) for plog, last, _, _ in written])
        if self._stopped:
            return
        for _, _, topic, partition in written:
            if topic == OFFSETS_TOPIC:
                self.broker.groups.complete_txn(partition, event.producer_id, event.commit)
        self.coordinator.markers_written(event.transactional_id, event.producer_id, event.producer_epoch)
        # nobody waits for the Complete record: it is not fsynced on its own, but with the
        # next state record of its partition (the producer's next transaction) or within
        # DEFERRED_FLUSH_S: one flush cycle per transaction fewer
        self._defer_flush = True
        try:
            self._drain()
        finally:
            self._defer_flush = False
        # the Complete record is not waited for: the answer to EndTxn needs the markers only.
        # A Complete lost in a power cut leaves the Prepare record, and the restart writes the
        # markers again (idempotent); any later state record of the id lands after it in the
        # same log, so nothing durable can ever come after a lost Complete.
        self._pending = []
        self._failed.clear()
        self.reschedule()

    def flush_now(self, pending: Pending) -> None:
        """Ask for the flush of records appended with ``defer_flush``: an answer waits."""
        for plog in {plog for plog, _ in pending}:
            self.broker.logs.request_flush(plog)

    def state_written(self, transactional_id: str, record: tuple[PartitionLog, int]) -> None:
        """``record`` (the id's newest state record) was answered before it is durable, and
        appended without asking for a flush: the transaction's first produce asks for it,
        so one flush cycle makes the record and the produce's batches durable together."""
        self._unsynced[transactional_id] = (record[0], record[1], False)
        if len(self._unsynced) > 1024:  # forget the durable ones now and then
            self._unsynced = {tid: r for tid, r in self._unsynced.items() if r[0].high_watermark <= r[1]}

    def unsynced_state(self, transactional_id: str) -> tuple[PartitionLog, int] | None:
        """The id's state record that a transactional produce must also wait for, if it is
        not durable yet; the first call asks for its flush."""
        record = self._unsynced.get(transactional_id)
        if record is None:
            return None
        plog, last, asked = record
        if plog.high_watermark > last:
            del self._unsynced[transactional_id]
            return None
        if not asked:
            self.broker.logs.request_flush(plog)
            self._unsynced[transactional_id] = (plog, last, True)
        return plog, last

    async def durable(self, pending: Pending) -> None:
        """Wait until every (log, offset) in ``pending`` is below its high watermark."""
        if all(plog.high_watermark > last for plog, last in pending):
            return
        await self.broker.wait_until(lambda: all(plog.high_watermark > last for plog, last in pending))

    async def settle(self, outcome: Outcome, markers_timeout_s: float = 30.0) -> None:
        """What an answer waits for: the records written by the call, and (up to
        ``markers_timeout_s``) the markers it started; the outcome is decided once the
        Prepare record is durable, so a slow marker does not turn the answer into an error."""
        await self.durable(outcome.pending)
        if outcome.tasks:
            # asyncio.wait neither cancels the tasks at the timeout nor raises
            await asyncio.wait(outcome.tasks, timeout=markers_timeout_s)

    # ------------------------------------------------------------------ timers
    def reschedule(self) -> None:
        self._timer.arm(self.coordinator.next_deadline())

    def _on_timer(self) -> None:
        try:
            self.coordinator.tick()
        except Exception:  # pragma: no cover - a bug in the coordinator must not stop the broker
            log.exception("transaction coordinator tick failed")
        self._drain()
        self._pending, self._new_tasks = [], []
        self._failed.clear()  # a timed-out abort whose record failed is retried by the next sweep
        self.reschedule()
