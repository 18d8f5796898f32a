"""In-memory engine: the PartitionLog contract over a Python list, for tests and for an
embedded broker that should start in milliseconds. Nothing is durable, so the high
watermark is always the log end offset and retention is not enforced.

Truncation restores the producer state exactly: every batch stored by a producer keeps a
copy of that producer's entry from before it (an undo record), which truncation puts back
from the newest batch down."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.batch import BatchHeader, set_base_offset, set_log_append_time
from riverbed.protocol.records.records import build_control_batch

from .api import (
    AppendInfo,
    LogConfig,
    OffsetOutOfRange,
    PartitionLog,
    ProducerStateView,
    ReadResult,
)
from .files import is_legal_topic
from .producer_state import (
    ProducerEntry,
    ProducerStateTable,
    check_client_batch,
    check_marker_producer,
)
from .timestamps import first_record_at_or_after, offset_of_timestamp
from .txn_index import AbortedTxn

_Undo = tuple[int, ProducerEntry | None] | None


class MemoryLog:
    """Implements :class:`riverbed.storage.api.PartitionLog`; not thread-safe (one thread)."""

    def __init__(self, topic: str, partition: int, config: LogConfig | None = None) -> None:
        self._topic = topic
        self._partition = partition
        self._config = config or LogConfig()
        self._batches: list[bytes] = []
        self._bases: list[int] = []
        self._lasts: list[int] = []
        self._max_ts: list[int] = []
        self._undo: list[_Undo] = []
        self._aborted: list[AbortedTxn] = []  # in marker order
        self._log_start = 0
        self._leo = 0
        self._size = 0
        self.producers = ProducerStateTable()

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def partition(self) -> int:
        return self._partition

    @property
    def config(self) -> LogConfig:
        return self._config

    @property
    def log_start_offset(self) -> int:
        return self._log_start

    @property
    def local_log_start_offset(self) -> int:
        return self.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._leo

    @property
    def high_watermark(self) -> int:
        return self._leo

    @property
    def failed(self) -> str | None:
        return None

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def segment_count(self) -> int:
        return 1

    @property
    def last_stable_offset(self) -> int:
        hw = self._leo
        first = self.producers.first_unstable_offset(hw)
        lso = hw if first is None else min(hw, first)
        return max(lso, self._log_start)

    def append(
        self,
        batch: bytearray,
        *,
        now_ms: int,
        log_append_time: bool = False,
        origin_coordinator: bool = False,
        flush: bool = True,
    ) -> AppendInfo:
        header = BatchHeader(batch)
        if header.size != len(batch):
            raise KafkaError(ErrorCode.CORRUPT_MESSAGE, "expected exactly one record batch")
        check_client_batch(header)
        duplicate = self.producers.check_header(header, origin_coordinator=origin_coordinator)
        if duplicate is not None:
            return AppendInfo(duplicate.first_offset, duplicate.last_offset, -1, self._log_start)
        max_timestamp = int(header.max_timestamp)
        append_time = -1
        if log_append_time:
            set_log_append_time(batch, now_ms)
            append_time = max_timestamp = now_ms
        base = self._leo
        last = base + int(header.last_offset_delta)
        pid = int(header.producer_id)
        undo = (pid, self.producers.entry_copy(pid)) if pid >= 0 else None
        self._store(batch, base, last, max_timestamp, undo)
        self.producers.record_header(header, base, last)
        return AppendInfo(base, last, append_time, self._log_start)

    def append_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        *,
        now_ms: int,
    ) -> AppendInfo:
        check_marker_producer(producer_id, producer_epoch)
        producers = self.producers
        producers.check_marker(producer_id, producer_epoch, coordinator_epoch)
        base = self._leo
        batch = build_control_batch(
            producer_id, producer_epoch, commit, coordinator_epoch, base, now_ms
        )
        self._store(batch, base, base, now_ms, (producer_id, producers.entry_copy(producer_id)))
        done = producers.record_marker(
            producer_id, producer_epoch, commit, coordinator_epoch, base, now_ms
        )
        if done is not None and done.aborted:
            lso = producers.last_stable_after(done)
            self._aborted.append(AbortedTxn(producer_id, done.first_offset, base, lso))
        return AppendInfo(base, base, -1, self._log_start)

    def _store(
        self, batch: bytearray, base: int, last: int, max_timestamp: int, undo: _Undo
    ) -> None:
        set_base_offset(batch, base)
        self._batches.append(bytes(batch))
        self._bases.append(base)
        self._lasts.append(last)
        self._max_ts.append(max_timestamp)
        self._undo.append(undo)
        self._leo = last + 1
        self._size += len(batch)

    def aborted_transactions(self, start_offset: int, upper_offset: int, *, remote_ok: bool = True) -> list[tuple[int, int]]:
        found = [
            (e.first_offset, e.producer_id)
            for e in self._aborted
            if e.last_offset >= start_offset and e.first_offset < upper_offset
        ]
        return [(pid, first) for first, pid in sorted(found)]

    def producer_states(self) -> list[ProducerStateView]:
        return self.producers.views()

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        min_one_batch: bool = True,
        isolation_upper: int | None = None,
        remote_ok: bool = True,
    ) -> ReadResult:
        if offset < self._log_start or offset > self._leo:
            raise OffsetOutOfRange(f"offset {offset} outside [{self._log_start}, {self._leo}]")
        hw = self._leo
        upper = hw if isolation_upper is None else min(hw, isolation_upper)
        chunks: list[bytes] = []
        total = 0
        i = bisect_left(self._lasts, offset)
        while offset < upper and i < len(self._batches) and self._lasts[i] < upper:
            batch = self._batches[i]
            if total + len(batch) > max_bytes and (chunks or not min_one_batch):
                break
            chunks.append(batch)
            total += len(batch)
            i += 1
        return ReadResult(b"".join(chunks), hw, self._log_start, self.last_stable_offset)

    def _visible(self) -> Iterator[int]:
        """Indexes of the batches that reach the log start offset."""
        return iter(range(bisect_left(self._lasts, self._log_start), len(self._batches)))

    def offset_for_timestamp(self, ts: int, *, remote_ok: bool = True) -> tuple[int, int] | None:
        for i in self._visible():
            if self._max_ts[i] >= ts:
                found = first_record_at_or_after(self._batches[i], ts, self._log_start)
                if found is not None:
                    return found
        return None

    def max_timestamp(self, *, remote_ok: bool = True) -> tuple[int, int]:
        best_ts, best = -1, -1
        for i in self._visible():
            if self._max_ts[i] > best_ts:
                best_ts, best = self._max_ts[i], i
        if best_ts < 0:
            return -1, -1
        offset = offset_of_timestamp(self._batches[best], self._bases[best], best_ts, self._log_start)
        return offset, best_ts

    def delete_records(self, before_offset: int) -> int:
        target = self._leo if before_offset == -1 else before_offset
        if target < 0 or target > self._leo:
            raise OffsetOutOfRange(f"cannot delete records before {before_offset}")
        if target > self._log_start:
            self._log_start = target
            self._drop_from_front(bisect_left(self._lasts, target))
            self._aborted = [e for e in self._aborted if e.last_offset >= target]
        return self._log_start

    def truncate_to(self, offset: int) -> None:
        if offset >= self._leo:
            return
        if offset < 0:
            raise OffsetOutOfRange(f"cannot truncate to {offset}")
        if offset < self._log_start:
            self._clear(offset)
            return
        i = bisect_left(self._lasts, offset)
        self._leo = self._bases[i] if i < len(self._bases) else offset
        self._size -= sum(len(b) for b in self._batches[i:])
        for undo in reversed(self._undo[i:]):
            if undo is not None:
                self.producers.restore(*undo)
        for column in self._columns():
            del column[i:]
        self.producers.forget_completed_from(self._leo)
        self._aborted = [e for e in self._aborted if e.last_offset < self._leo]
        if self._leo < self._log_start:
            self._clear(self._log_start)

    def _clear(self, offset: int) -> None:
        """Restart empty at ``offset`` (Kafka's truncateFullyAndStartAt: no producer state)."""
        self._drop_from_front(len(self._batches))
        self._log_start = self._leo = offset
        self.producers = ProducerStateTable()
        self._aborted = []

    def _columns(self) -> tuple[list[bytes], list[int], list[int], list[int], list[_Undo]]:
        return self._batches, self._bases, self._lasts, self._max_ts, self._undo

    def _drop_from_front(self, n: int) -> None:
        self._size -= sum(len(b) for b in self._batches[:n])
        for column in self._columns():
            del column[:n]

    def expire_producers(self, now_ms: int, expiration_ms: int) -> int:
        return self.producers.expire(now_ms, expiration_ms)

    def update_config(self, config: LogConfig) -> None:
        self._config = config

    def flush(self) -> bool:
        return False


class MemoryLogStore:
    """The :class:`riverbed.storage.api.LogStore` of :class:`MemoryLog` s."""

    def log_dir_error(self) -> str | None:
        return None

    def __init__(self) -> None:
        self._logs: dict[tuple[str, int], MemoryLog] = {}

    def open(self) -> None:
        pass

    def create(self, topic: str, partition: int, config: LogConfig) -> MemoryLog:
        if not is_legal_topic(topic):
            raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"illegal topic name {topic!r}")
        log = self._logs.get((topic, partition))
        if log is None:
            log = self._logs[(topic, partition)] = MemoryLog(topic, partition, config)
        else:
            log.update_config(config)
        return log

    def get(self, topic: str, partition: int) -> MemoryLog | None:
        return self._logs.get((topic, partition))

    get_loaded = get

    def configure(self, topic: str, partition: int, config: LogConfig) -> bool:
        log = self._logs.get((topic, partition))
        if log is None:
            return False
        log.update_config(config)
        return True

    def partitions(self) -> list[MemoryLog]:
        return list(self._logs.values())

    def delete_partition(self, topic: str, partition: int) -> bool:
        return self._logs.pop((topic, partition), None) is not None

    def delete_topic(self, topic: str) -> int:
        return sum(self.delete_partition(t, p) for t, p in list(self._logs) if t == topic)

    def request_flush(self, log: PartitionLog) -> None:
        pass

    def gather_flushes(self) -> AbstractContextManager[None]:
        return nullcontext()

    def run_retention(self, now_ms: int) -> None:
        pass

    def start_cleaner(self) -> None:
        pass  # memory logs are never compacted

    def stop_cleaner(self) -> None:
        pass

    def flush_all(self) -> None:
        pass

    def close(self) -> None:
        pass
