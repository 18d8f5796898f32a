"""Restore a task's stores from their changelog partitions, and keep standby stores warm.

:class:`ChangelogReader` reads the changelogs of restoring and standby tasks a chunk at a time
from the runtime's poll loop, so the group consumer keeps polling through a long restore.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from .records import StreamsError
from .stores import Engine

log = logging.getLogger("riverbed.streams")


ProgressFn = Callable[[str, str, int, int], None]


ON_CHANGELOG_LOST = ("fail", "reset")


# -- restores and standbys inside the poll loop ------------------------------------------------


class ChangelogPartition:
    """One store's changelog partition read by a :class:`ChangelogReader`: for a restoring active
    task (until the end it had when the restore started) or for a standby task (for ever)."""

    def __init__(self, store: str, task_id: str, engine: Engine, topic: str, partition: int, standby: bool) -> None:
        self.store = store
        self.task_id = task_id
        self.engine = engine
        self.topic = topic
        self.partition = partition
        self.standby = standby
        self.start = 0
        self.position = 0  # next changelog offset to apply; the store's checkpoint once committed
        self.end = 0  # restore target: the partition's end offset when the restore started
        self.applied = 0  # records written to the store
        self.chunks = 0  # poll-loop turns that applied records to it
        self.done = False
        self.started = False  # set once the reader has checked the checkpoint and chosen the start
        self._checkpointed = -1

    @property
    def total(self) -> int:
        return max(self.end - self.start, 0)

    def checkpoint(self) -> None:
        """Commit the store's writes with the position reached (a prefix of the changelog).
        Nothing before the reader started it: a refused start (a changelog lost underneath the
        store) leaves the store and its checkpoint as they were."""
        if self.started and self.position != self._checkpointed:
            self.engine.commit(self.position)
            self._checkpointed = self.position


class ChangelogReader:
    """One assign-mode consumer that restores stores and keeps standby stores warm, a chunk at a
    time from the runtime's poll loop (never inside a rebalance callback, so a long restore does
    not stop the group consumer from polling)."""

    def __init__(self, consumer_config: dict[str, Any], batch_size: int = 500,
                 progress: ProgressFn | None = None, on_changelog_lost: str = "fail") -> None:
        """``on_changelog_lost``: what to do with a store whose checkpoint lies *beyond* its
        changelog's end (the changelog was deleted, and re-created empty, underneath the store: its
        state exists nowhere else): ``"fail"`` (default) raises :class:`StreamsError`; ``"reset"``
        logs an ERROR line, wipes the store and restores what the changelog holds (the state is
        lost). A checkpoint *before* the changelog's start (retention) wipes and restores, as Kafka
        Streams' task corruption handling does."""
        # an offset that fell below the log start (retention of a window store's changelog) goes
        # on from the oldest record kept, never from the end
        self.consumer = Consumer({**consumer_config, "enable.auto.commit": False, "enable.partition.eof": True,
                                  "auto.offset.reset": "earliest"})
        self.batch_size = batch_size
        self.progress = progress
        self.on_changelog_lost = on_changelog_lost
        self.parts: dict[tuple[str, int], ChangelogPartition] = {}
        self._last_log = time.monotonic()

    @property
    def restoring(self) -> bool:
        return any(not cp.standby for cp in self.parts.values())

    def add(self, cp: ChangelogPartition, timeout: float = 30.0) -> bool:
        """Start reading ``cp`` from its store's checkpoint (or from the start, after wiping the
        store, when there is none or it lies outside the changelog). Returns True when a restore
        has nothing to read (it is done already)."""
        low, high = self.consumer.get_watermark_offsets(TopicPartition(cp.topic, cp.partition), timeout=timeout)
        ck = cp.engine.checkpoint()
        if ck is not None and ck > high:
            what = (f"store {cp.store} task {cp.task_id}: its checkpoint (changelog offset {ck}) lies beyond the end "
                    f"of changelog {cp.topic}-{cp.partition} [{low}, {high}]: the changelog was deleted or "
                    f"truncated underneath the store")
            if self.on_changelog_lost != "reset":
                raise StreamsError(f"{what}; the local state exists nowhere else. Re-create the changelog from a "
                                   f"backup, or run with on_changelog_lost='reset' to wipe the store and start "
                                   f"from what the changelog holds (the state is lost)")
            log.error("%s; on_changelog_lost='reset': wiping the store and restoring what the changelog holds "
                      "(the state is lost)", what)
            cp.engine.wipe()
            start = low
        elif ck is None or ck < low:
            if ck is not None:
                log.warning("store %s task %s: checkpoint %d outside changelog [%d, %d]; wiping and restoring",
                            cp.store, cp.task_id, ck, low, high)
            cp.engine.wipe()
            start = low
        else:
            start = ck
        cp.start = cp.position = start
        cp.end = high
        cp.started = True
        if not cp.standby:
            self._report(cp)
            if start >= high:
                return self._finish(cp)
        self.consumer.incremental_assign([TopicPartition(cp.topic, cp.partition, start)])
        self.parts[(cp.topic, cp.partition)] = cp
        return False

    def remove(self, cp: ChangelogPartition) -> None:
        if self.parts.get((cp.topic, cp.partition)) is cp:
            del self.parts[(cp.topic, cp.partition)]
            self.consumer.incremental_unassign([TopicPartition(cp.topic, cp.partition)])

    def poll(self, budget: float, wait: float = 0.0, max_batches: int = 20) -> list[ChangelogPartition]:
        """Apply what arrives within about ``budget`` seconds and at most ``max_batches`` consumes
        of ``batch_size`` records (waiting up to ``wait`` for the first records); returns the
        restores that reached their end (removed from the reader)."""
        finished: list[ChangelogPartition] = []
        if not self.parts:
            return finished
        deadline = time.monotonic() + budget
        timeout = wait
        touched: set[ChangelogPartition] = set()
        for _ in range(max_batches):
            if not self.parts:
                break
            msgs: list[Any] = self.consumer.consume(self.batch_size, timeout)
            timeout = 0.0
            if not msgs:
                break
            writes: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
            ended: set[tuple[str, int]] = set()
            for m in msgs:
                tp = (m.topic(), m.partition())
                cp = self.parts.get(tp)
                if cp is None:
                    continue  # removed since it was fetched
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        ended.add(tp)  # (read_committed: the last stable offset)
                        cp.position = max(cp.position, m.offset())
                        continue
                    raise StreamsError(f"reading changelog {tp[0]}-{tp[1]}: {err}")
                if m.offset() < cp.position:
                    continue
                if m.key() is not None:
                    writes.setdefault(tp, []).append((m.key(), m.value()))
                cp.position = m.offset() + 1
            for tp, items in writes.items():
                cp = self.parts[tp]
                cp.engine.put_many(items)
                cp.applied += len(items)
                touched.add(cp)
            for tp in {*writes, *ended}:
                cp = self.parts[tp]
                if cp.standby:
                    continue
                if tp in ended or cp.position >= cp.end:
                    self.remove(cp)
                    self._finish(cp)
                    finished.append(cp)
                else:
                    self._report(cp)
            if time.monotonic() - self._last_log >= 5:
                self._last_log = time.monotonic()
                for cp in self.parts.values():
                    if not cp.standby:
                        log.info("store %s task %s: restoring, %d records so far (offsets %d..%d, at %d)", cp.store,
                                 cp.task_id, cp.applied, cp.start, cp.end, cp.position)
            if time.monotonic() >= deadline:
                break
        for cp in touched:
            cp.chunks += 1
        return finished

    def _report(self, cp: ChangelogPartition) -> None:
        if self.progress is not None:
            self.progress(cp.store, cp.task_id, min(max(cp.position - cp.start, 0), cp.total), cp.total)

    def _finish(self, cp: ChangelogPartition) -> bool:
        cp.checkpoint()
        cp.done = True
        if self.progress is not None:
            self.progress(cp.store, cp.task_id, cp.total, cp.total)
        log.info("store %s task %s: restored %d records from %s-%d [%d, %d)", cp.store, cp.task_id, cp.applied,
                 cp.topic, cp.partition, cp.start, cp.position)
        return True

    def close(self) -> None:
        self.consumer.close()
