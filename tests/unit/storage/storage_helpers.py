"""Test helpers for the storage layer: uncompressed RecordBatch v2 batches, an
fsync hook that counts, a manual clock, and a consumer-style reader."""

from __future__ import annotations

import os
import struct
import threading

from riverbed.protocol.records.batch import BatchHeader, compute_crc, iter_batches
from riverbed.protocol.records.records import build_batch
from riverbed.storage import LogConfig, MemoryLog, PartitionLog


def make_batch(
    count: int = 1,
    *,
    timestamp: int = 1_000,
    value_size: int = 10,
    max_timestamp: int | None = None,
    fill: int = 0x61,
    base_offset: int = 0,
) -> bytearray:
    """An uncompressed v2 batch of ``count`` records with a correct CRC-32C. Record i has
    timestamp ``timestamp + i`` unless ``max_timestamp`` forces the header's maximum."""
    batch = build_batch(
        [(f"k{i}".encode(), bytes([fill]) * value_size, [], timestamp + i) for i in range(count)],
        base_offset=base_offset,
        partition_leader_epoch=0,
    )
    if max_timestamp is not None:
        struct.pack_into(">q", batch, 35, max_timestamp)
        struct.pack_into(">I", batch, 17, compute_crc(batch))
    return batch


def headers(data: bytes | bytearray | memoryview) -> list[BatchHeader]:
    """Headers of the whole batches in ``data``; every CRC is checked."""
    found = list(iter_batches(data, check_crc=True))
    assert sum(h.size for h in found) == len(data), "data must be whole batches only"
    return found


def read_all(log: PartitionLog, start: int | None = None, max_bytes: int = 1 << 20) -> bytes:
    """Everything from ``start`` (default: the log start) up to the high watermark, read
    the way a consumer would (a read may stop at a segment boundary)."""
    offset = log.log_start_offset if start is None else start
    out = bytearray()
    while offset < log.high_watermark:
        data = log.read(offset, max_bytes).records
        assert len(data) > 0
        out += data
        offset = headers(data)[-1].next_offset
    return bytes(out)


class CountingFsync:
    """An fsync hook: counts calls and can hold them at a gate."""

    def __init__(self, real: bool = True) -> None:
        self.real = real
        self.calls = 0
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, fd: int) -> None:
        self.entered.set()
        self.gate.wait(10)
        with self.lock:
            self.calls += 1
        if self.real:
            os.fsync(fd)


class ManualClock:
    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000


def make_memory_log(config: LogConfig | None = None) -> MemoryLog:
    return MemoryLog("t", 0, config)


def producer_batch(
    pid: int,
    seq: int,
    count: int = 1,
    *,
    epoch: int = 0,
    transactional: bool = True,
    timestamp: int = 1_000,
) -> bytearray:
    """A batch of ``count`` records from producer ``pid`` (transactional by default)."""
    return build_batch(
        [(None, b"v" * 8, [], timestamp + i) for i in range(count)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        transactional=transactional,
        partition_leader_epoch=0,
    )
