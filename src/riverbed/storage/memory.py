"""In-memory engine: the PartitionLog contract over a Python list, for tests and for an
embedded broker that should start in milliseconds. Nothing is durable, so the high
watermark is always the log end offset and retention is not enforced."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.batch import BatchHeader, set_base_offset, set_log_append_time

from .api import AppendInfo, LogConfig, OffsetOutOfRange, PartitionLog, ReadResult
from .files import is_legal_topic
from .producer_state import ProducerStateTable


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
    def log_end_offset(self) -> int:
        return self._leo

    @property
    def high_watermark(self) -> int:
        return self._leo

    @property
    def size_bytes(self) -> int:
        return self._size

    def append(self, batch: bytearray, *, now_ms: int, log_append_time: bool = False) -> AppendInfo:
        header = BatchHeader(batch)
        if header.size != len(batch):
            raise KafkaError(ErrorCode.CORRUPT_MESSAGE, "expected exactly one record batch")
        duplicate = self.producers.check_header(header)
        if duplicate is not None:
            return AppendInfo(duplicate.first_offset, duplicate.last_offset, -1, self._log_start)
        max_timestamp = int(header.max_timestamp)
        append_time = -1
        if log_append_time:
            set_log_append_time(batch, now_ms)
            append_time = max_timestamp = now_ms
        base = self._leo
        last = base + int(header.last_offset_delta)
        set_base_offset(batch, base)
        self._batches.append(bytes(batch))
        self._bases.append(base)
        self._lasts.append(last)
        self._max_ts.append(max_timestamp)
        self._leo = last + 1
        self._size += len(batch)
        self.producers.record_header(header, base, last)
        return AppendInfo(base, last, append_time, self._log_start)

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        min_one_batch: bool = True,
        isolation_upper: int | None = None,
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
        return ReadResult(b"".join(chunks), hw, self._log_start, hw)

    def _visible(self) -> Iterator[int]:
        """Indexes of the batches that reach the log start offset."""
        return iter(range(bisect_left(self._lasts, self._log_start), len(self._batches)))

    def offset_for_timestamp(self, ts: int) -> tuple[int, int] | None:
        for i in self._visible():
            if self._max_ts[i] >= ts:
                return max(self._bases[i], self._log_start), self._max_ts[i]
        return None

    def max_timestamp(self) -> tuple[int, int]:
        best_ts, best_offset = -1, -1
        for i in self._visible():
            if self._max_ts[i] > best_ts:
                best_ts, best_offset = self._max_ts[i], max(self._bases[i], self._log_start)
        return (best_offset, best_ts) if best_ts >= 0 else (-1, -1)

    def delete_records(self, before_offset: int) -> int:
        target = self._leo if before_offset == -1 else before_offset
        if target < 0 or target > self._leo:
            raise OffsetOutOfRange(f"cannot delete records before {before_offset}")
        if target > self._log_start:
            self._log_start = target
            self._drop_from_front(bisect_left(self._lasts, target))
        return self._log_start

    def truncate_to(self, offset: int) -> None:
        if offset >= self._leo:
            return
        if offset < 0:
            raise OffsetOutOfRange(f"cannot truncate to {offset}")
        self.producers.truncate(offset)
        if offset < self._log_start:
            self._clear(offset)
            return
        i = bisect_left(self._lasts, offset)
        self._leo = self._bases[i] if i < len(self._bases) else offset
        self._size -= sum(len(b) for b in self._batches[i:])
        for column in (self._batches, self._bases, self._lasts, self._max_ts):
            del column[i:]
        if self._leo < self._log_start:
            self._clear(self._log_start)

    def _clear(self, offset: int) -> None:
        self._drop_from_front(len(self._batches))
        self._log_start = self._leo = offset

    def _drop_from_front(self, n: int) -> None:
        self._size -= sum(len(b) for b in self._batches[:n])
        for column in (self._batches, self._bases, self._lasts, self._max_ts):
            del column[:n]

    def expire_producers(self, now_ms: int, expiration_ms: int) -> int:
        return self.producers.expire(now_ms, expiration_ms)

    def update_config(self, config: LogConfig) -> None:
        self._config = config

    def flush(self) -> bool:
        return False


class MemoryLogStore:
    """The :class:`riverbed.storage.api.LogStore` of :class:`MemoryLog` s."""

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

    def partitions(self) -> list[MemoryLog]:
        return list(self._logs.values())

    def delete_partition(self, topic: str, partition: int) -> bool:
        return self._logs.pop((topic, partition), None) is not None

    def delete_topic(self, topic: str) -> int:
        return sum(self.delete_partition(t, p) for t, p in list(self._logs) if t == topic)

    def request_flush(self, log: PartitionLog) -> None:
        pass

    def run_retention(self, now_ms: int) -> None:
        pass

    def flush_all(self) -> None:
        pass

    def close(self) -> None:
        pass
