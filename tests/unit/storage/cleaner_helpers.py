"""Helpers for the log cleaner tests: keyed batches, and reading a log back as records."""

from __future__ import annotations

from riverbed.protocol.records.batch import iter_batches
from riverbed.protocol.records.records import build_batch, decode_records
from riverbed.storage import LogConfig, SegmentLog

DAY = 86_400_000


def compact_config(**kwargs: object) -> LogConfig:
    base: dict[str, object] = {
        "segment_bytes": 400,
        "cleanup_compact": True,
        "cleanup_delete": False,
        "index_interval_bytes": 0,
    }
    base.update(kwargs)
    return LogConfig(**base)  # type: ignore[arg-type]


def kv(key: str | None, value: str | None, ts: int = 1_000, **kwargs: object) -> bytearray:
    return build_batch(
        [(None if key is None else key.encode(), None if value is None else value.encode(), [], ts)],
        partition_leader_epoch=0,
        **kwargs,  # type: ignore[arg-type]
    )


def records(log: SegmentLog, start: int | None = None, upper: int | None = None) -> list[tuple[int, str | None, str | None]]:
    """(offset, key, value) of every record from ``start`` (default: log start) below the
    high watermark (or ``upper``), read as a consumer would: fetch, skip records before
    the fetch offset, continue after the last batch."""
    offset = log.log_start_offset if start is None else start
    out: list[tuple[int, str | None, str | None]] = []
    while offset < log.high_watermark:
        data = log.read(offset, 1 << 20, isolation_upper=upper).records
        if not data:
            break
        for h in iter_batches(data, check_crc=True):
            for r in decode_records(data, h.position):
                if r.offset >= offset:
                    out.append(
                        (
                            r.offset,
                            None if r.key is None else r.key.decode(),
                            None if r.value is None else r.value.decode(),
                        )
                    )
            offset = h.next_offset
    return out


def batch_headers(log: SegmentLog) -> list[tuple[int, int, int, int]]:
    """(base offset, last offset, records count, attributes) of every stored batch."""
    out = []
    offset = log.log_start_offset
    while offset < log.high_watermark:
        data = log.read(offset, 1 << 20).records
        if not data:
            break
        for h in iter_batches(data, check_crc=True):
            out.append((int(h.base_offset), h.last_offset, int(h.records_count), int(h.attributes)))
            offset = h.next_offset
    return out
