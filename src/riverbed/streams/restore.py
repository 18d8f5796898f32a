"""Restore a task's stores from their changelog partitions (on start and on assignment)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from .records import StreamsError
from .task import Task

log = logging.getLogger("riverbed.streams")


ProgressFn = Callable[[str, str, int, int], None]


ON_CHANGELOG_LOST = ("fail", "reset")


def restore_task(task: Task, changelog_topic: Any, consumer_config: dict[str, Any], batch_size: int = 500,
                 timeout: float = 30.0, progress: ProgressFn | None = None,
                 on_changelog_lost: str = "fail") -> dict[str, int]:
    """Bring each store of ``task`` up to the end of its changelog partition.

    Replays from the store's checkpoint; with none, or one before the changelog's start
    (truncated by retention), wipes the store and replays from the start (Kafka Streams' task
    corruption handling). A checkpoint *beyond* the changelog's end means the changelog was
    deleted (and re-created empty) underneath the store: its state exists nowhere else, so
    ``on_changelog_lost="fail"`` (default) raises :class:`StreamsError`; ``"reset"`` logs an
    ERROR line, wipes the store and restores what the changelog holds (the state is lost).
    Returns the number of records applied per store. ``progress(store, task_id, offsets done,
    offsets to do)`` is called at the start, after each batch and at the end; an INFO line is
    logged every 5 seconds of a long restore.
    """
    rc = Consumer({**consumer_config, "enable.auto.commit": False, "enable.partition.eof": True})
    restored: dict[str, int] = {}
    try:
        for name, engine in task.engines.items():
            topic = changelog_topic(name)
            low, high = rc.get_watermark_offsets(TopicPartition(topic, task.partition), timeout=timeout)
            cp = engine.checkpoint()
            if cp is not None and cp > high:
                what = (f"store {name} task {task.task_id}: its checkpoint (changelog offset {cp}) lies beyond the end "
                        f"of changelog {topic}-{task.partition} [{low}, {high}]: the changelog was deleted or "
                        f"truncated underneath the store")
                if on_changelog_lost != "reset":
                    raise StreamsError(f"{what}; the local state exists nowhere else. Re-create the changelog from a "
                                       f"backup, or run with on_changelog_lost='reset' to wipe the store and start "
                                       f"from what the changelog holds (the state is lost)")
                log.error("%s; on_changelog_lost='reset': wiping the store and restoring what the changelog holds "
                          "(the state is lost)", what)
                engine.wipe()
                start = low
            elif cp is None or cp < low:
                if cp is not None:
                    log.warning("store %s task %s: checkpoint %d before the start of changelog [%d, %d]; wiping and restoring",
                                name, task.task_id, cp, low, high)
                engine.wipe()
                start = low
            else:
                start = cp
            n = 0
            total = max(high - start, 0)
            if progress is not None:
                progress(name, task.task_id, 0, total)
            last_log = time.monotonic()
            if start < high:
                rc.assign([TopicPartition(topic, task.partition, start)])
                done = False
                while not done:
                    batch: list[Any] = rc.consume(batch_size, 1.0)
                    writes: list[tuple[bytes, bytes | None]] = []
                    for m in batch:
                        err = m.error()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                done = True  # (read_committed: the last stable offset)
                                break
                            raise StreamsError(f"restoring {topic}-{task.partition}: {err}")
                        if m.key() is not None:
                            writes.append((m.key(), m.value()))
                        if m.offset() >= high - 1:
                            done = True
                    engine.put_many(writes)
                    n += len(writes)
                    if batch and progress is not None:
                        progress(name, task.task_id, min(batch[-1].offset() + 1 - start, total), total)
                    if time.monotonic() - last_log >= 5:
                        last_log = time.monotonic()
                        log.info("store %s task %s: restoring, %d records so far (offsets %d..%d)", name, task.task_id,
                                 n, start, high)
                rc.unassign()
            engine.commit(high)
            restored[name] = n
            if progress is not None:
                progress(name, task.task_id, total, total)
            log.info("store %s task %s: restored %d records from %s-%d [%d, %d)", name, task.task_id, n, topic,
                     task.partition, start, high)
    finally:
        rc.close()
    return restored
