"""RemoteLogReader returns exactly what the local segment returns."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from remote_helpers import FakeTieredLog, FaultyStore
from storage_helpers import make_batch

from riverbed.storage import LogConfig, SegmentLog
from riverbed.storage.remote import (
    LocalDirStore,
    ObjectStoreError,
    RangeCache,
    RemoteLogManager,
    RemoteLogManagerConfig,
    RemoteLogReader,
    TieringConfig,
)

batch_specs = st.lists(
    st.tuples(st.integers(1, 5), st.integers(0, 120), st.integers(-5, 50)), min_size=4, max_size=40
)


def _tiered_log(
    root: Path, specs: list[tuple[int, int, int]], interval: int
) -> tuple[SegmentLog, RemoteLogManager]:
    config = LogConfig(segment_bytes=700, index_interval_bytes=interval, retention_ms=-1)
    log = SegmentLog.create(root / "t-0", "t", 0, config)
    ts = 10_000
    for count, value_size, step in specs:
        ts += step
        log.append(make_batch(count, timestamp=ts, value_size=value_size), now_ms=ts)
    log.roll()
    log.flush()
    rlm = RemoteLogManager(
        LocalDirStore(root / "objects"), RemoteLogManagerConfig(max_copies_per_pass=1000)
    )
    rlm.register(FakeTieredLog(log), TieringConfig(True, local_retention_ms=-1))
    assert rlm.run_once() == 0
    return log, rlm


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=batch_specs,
    interval=st.sampled_from([0, 100, 400]),
    block=st.sampled_from([61, 200, 4096]),
    probes=st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 2000), st.booleans()), min_size=5, max_size=20
    ),
)
def test_reads_match_local(
    specs: list[tuple[int, int, int]],
    interval: int,
    block: int,
    probes: list[tuple[int, int, bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log, rlm = _tiered_log(Path(tmp), specs, interval)
        try:
            meta = rlm.metadata("t", 0)
            assert meta is not None
            assert meta.highest_copied_offset() == log.log_end_offset - 1
            reader = RemoteLogReader(rlm.store, cache_bytes=3 * block, block_size=block)
            end = log.log_end_offset
            for raw_offset, max_bytes, min_one in probes:
                offset = raw_offset % end
                local = bytes(log.read(offset, max_bytes, min_one_batch=min_one).records)
                remote = reader.read(meta, offset, max_bytes, min_one_batch=min_one)
                assert remote == local, (offset, max_bytes)
                upper = min(end, offset + raw_offset % 7 + 1)
                local = bytes(log.read(offset, max_bytes, isolation_upper=upper).records)
                assert reader.read(meta, offset, max_bytes, upper=upper) == local
                ts = 10_000 + raw_offset * 3
                assert reader.offset_for_timestamp(meta, ts, 0) == log.offset_for_timestamp(ts)
            assert reader.cache.size <= 3 * block
            assert reader.read(meta, end, 100) is None  # beyond the remote tier: read locally
        finally:
            log.close(clean=False)


def test_cache_serves_repeated_reads(tmp_path: Path) -> None:
    log, rlm = _tiered_log(tmp_path, [(3, 50, 1)] * 30, 100)
    try:
        meta = rlm.metadata("t", 0)
        assert meta is not None
        counting = FaultyStore(rlm.store)
        reader = RemoteLogReader(counting, cache_bytes=1 << 20, block_size=256)
        first = reader.read(meta, 5, 500)
        calls = counting.calls
        assert reader.read(meta, 5, 500) == first
        assert counting.calls == calls  # indexes and blocks came from the cache
        counting.down = True  # the store fails: cached data is still served, the rest fails
        assert reader.read(meta, 5, 500) == first
        try:
            reader.read(meta, log.log_end_offset - 1, 500)
        except ObjectStoreError as exc:
            assert exc.retriable
        else:  # pragma: no cover
            raise AssertionError("expected a failure")
    finally:
        log.close(clean=False)


def test_range_cache_is_bounded() -> None:
    cache = RangeCache(100)
    rng = random.Random(0)
    for i in range(200):
        cache.put((f"k{i % 17}", i % 5), bytes(rng.randint(0, 60)))
        assert cache.size <= 100
    cache.put(("big", 0), bytes(101))
    assert cache.get(("big", 0)) is None
    cache.put(("a", 1), b"xyz")
    assert cache.get(("a", 1)) == b"xyz"
    cache.forget("a")
    assert cache.get(("a", 1)) is None
