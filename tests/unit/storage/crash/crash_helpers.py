"""Shared pieces of the crash-consistency tests: a workload's record of what it appended
and what was acknowledged, and the check of a recovered log against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from riverbed.protocol.records.batch import iter_batches
from riverbed.protocol.records.records import build_batch
from riverbed.storage import LogConfig, LogManager
from riverbed.storage.log import SegmentLog

PID = 4242


def no_fsync(fd: int) -> None:
    """Recovery runs on a throw-away copy: its own fsyncs do not matter."""


def idempotent_batch(seq: int, count: int, timestamp: int, size: int = 24) -> bytearray:
    return build_batch(
        [(f"k{seq + i}".encode(), bytes([0x61 + (seq + i) % 26]) * size, [], timestamp + i) for i in range(count)],
        producer_id=PID,
        producer_epoch=0,
        base_sequence=seq,
        partition_leader_epoch=0,
    )


@dataclass
class Appended:
    """One appended batch: its stored bytes (offsets assigned) and a pristine copy to retry."""

    stored: bytes
    pristine: bytes
    base_offset: int
    last_offset: int
    last_sequence: int
    max_timestamp: int


@dataclass
class History:
    batches: list[Appended] = field(default_factory=list)

    def by_base(self) -> dict[int, Appended]:
        return {b.base_offset: b for b in self.batches}


def read_everything(log: SegmentLog) -> bytes:
    """Every batch below the high watermark, as a consumer reads them. An empty read below
    it can only be a gap before a later segment: a crash may keep the name of a segment
    created by a roll but lose the unsynced (so unacknowledged) tail of the one before."""
    out = bytearray()
    offset = log.log_start_offset
    while offset < log.high_watermark:
        data = bytes(log.read(offset, 1 << 20).records)
        if not data:
            later = [b for b in log.segment_base_offsets() if b > offset]
            assert later, f"no data at {offset} below the high watermark {log.high_watermark}"
            offset = later[0]
            continue
        out += data
        offset = list(iter_batches(data))[-1].next_offset
    return bytes(out)


def check_recovered_log(log: SegmentLog | None, history: History, acked: int, label: str, *, idempotent: bool = True) -> int:
    """Every batch below ``acked`` (the high watermark the workload saw) is there byte for
    byte; the log holds exactly a prefix of the appended batches (nothing torn, nothing
    half there); the offset and time indexes find every batch; the producer state matches
    the recovered log (a retry of the last batch is a duplicate, the next sequence is
    accepted). Returns the number of recovered batches."""
    if log is None:
        assert acked == 0, f"{label}: the log is gone but offsets below {acked} were acknowledged"
        return 0
    assert log.log_start_offset == 0, label
    assert log.high_watermark == log.log_end_offset, label
    data = read_everything(log)
    headers = list(iter_batches(data, check_crc=True))
    assert sum(h.size for h in headers) == len(data), label
    n = len(headers)
    assert n <= len(history.batches), f"{label}: more batches than were appended"
    pos = 0
    for i, h in enumerate(headers):
        want = history.batches[i]
        assert data[pos : pos + h.size] == want.stored, f"{label}: batch {i} differs from what was appended"
        pos += h.size
    end = history.batches[n - 1].last_offset + 1 if n else 0
    assert log.log_end_offset >= end, label  # (see read_everything)
    assert end >= acked, f"{label}: acknowledged up to {acked} but only {end} recovered"
    for b in history.batches[:n]:
        first = next(iter(iter_batches(bytes(log.read(b.last_offset, 1).records))))
        assert first.base_offset == b.base_offset, f"{label}: offset index lookup of {b.last_offset}"
        found = log.offset_for_timestamp(b.max_timestamp)
        # the first record whose timestamp is >= the batch's max timestamp: inside this batch
        assert found is not None and b.base_offset <= found[0] <= b.last_offset, f"{label}: time index lookup of {b.max_timestamp}: {found}"
    if idempotent:
        states = {s.producer_id: s for s in log.producer_states()}
        if n:
            last = history.batches[n - 1]
            assert states[PID].last_sequence == last.last_sequence, f"{label}: producer state {states.get(PID)}"
            leo = log.log_end_offset
            retry = log.append(bytearray(last.pristine), now_ms=10**12)
            assert (retry.base_offset, log.log_end_offset) == (last.base_offset, leo), f"{label}: a retry was not a duplicate"
        nxt = history.batches[n - 1].last_sequence + 1 if n else 0
        info = log.append(idempotent_batch(nxt, 1, 10**6), now_ms=10**12)
        assert info.base_offset >= end, label
    return n


def open_recovered(dest: Path, config: LogConfig, topic: str = "t") -> tuple[LogManager, SegmentLog | None]:
    manager = LogManager(dest / "data", fsync=no_fsync, syncfs=False, default_config=config)
    manager.open()
    return manager, manager.get(topic, 0)
