"""The log cleaner: the offset map, the throttle, and what a clean keeps (latest value per
key, offsets, tombstones and delete.retention.ms, min.compaction.lag.ms, the active
segment, compressed batches, transactions), checkpoints and the background choice. Every
test runs twice: with the rewrite on the calling thread, and in a worker process
(:mod:`riverbed.storage.cleaner_worker`, what the broker's background cleaner uses)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cleaner_helpers import DAY, batch_headers, compact_config, kv, records

from riverbed.metadata.configs import cleanup_policy, validate_topic_configs
from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.batch import DELETE_HORIZON_MASK
from riverbed.protocol.records.compression import Compression
from riverbed.protocol.records.records import build_batch
from riverbed.storage import CleanerConfig, LogConfig, LogManager, SegmentLog
from riverbed.storage import log as log_mod
from riverbed.storage.cleaner import OffsetMap, Throttler, clean_log
from riverbed.storage.cleaner_manager import LogCleaner
from riverbed.storage.cleaner_worker import ProcessRunner
from riverbed.storage.files import CLEANER_CHECKPOINT

MakeLog = Callable[..., SegmentLog]
NOW = 10_000_000
RUNNER = ProcessRunner()


@pytest.fixture(autouse=True, scope="module")
def _close_runner() -> Iterator[None]:
    yield
    RUNNER.close()


@pytest.fixture(autouse=True, params=["thread", "process"])
def runner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``SegmentLog.clean`` and the manager's cleans run their rewrite on the calling thread,
    or in a worker process."""
    if request.param == "process":
        monkeypatch.setattr(log_mod, "clean_log", functools.partial(clean_log, runner=RUNNER))
        real_init = LogCleaner.__init__

        def init(self: LogCleaner, *args: object, **kwargs: object) -> None:
            real_init(self, *args, **kwargs)  # type: ignore[arg-type]
            self.runner = RUNNER

        monkeypatch.setattr(LogCleaner, "__init__", init)
    else:
        monkeypatch.setattr(CleanerConfig, "__init__", functools.partialmethod(CleanerConfig.__init__, worker_process=False))
    crashes = RUNNER.crashes
    yield request.param
    assert RUNNER.crashes == crashes


def fill(log: SegmentLog, pairs: list[tuple[str | None, str | None]], ts: int = 1_000) -> None:
    for key, value in pairs:
        log.append(kv(key, value, ts), now_ms=ts)
    log.flush()


def latest(pairs: list[tuple[str | None, str | None]], below: int) -> dict[str, tuple[int, str | None]]:
    out: dict[str, tuple[int, str | None]] = {}
    for offset, (key, value) in enumerate(pairs[:below]):
        assert key is not None
        out[key] = (offset, value)
    return out


# -- the offset map and the throttle -------------------------------------------------------


def test_offset_map_keeps_latest_and_respects_capacity() -> None:
    m = OffsetMap(OffsetMap.BYTES_PER_ENTRY * 3)
    assert m.capacity == 3
    assert m.get(b"a") == -1 and m.latest_offset == -1
    assert m.put(b"a", 1) and m.put(b"b", 2) and m.put(b"a", 5)
    assert (m.get(b"a"), m.get(b"b"), len(m), m.latest_offset) == (5, 2, 2, 5)
    assert m.put(b"c", 7) and m.full
    assert not m.put(b"d", 8)  # a new key does not fit
    assert m.put(b"b", 9)  # a known key still updates
    assert (m.get(b"d"), m.get(b"b"), m.latest_offset) == (-1, 9, 9)
    m.clear()
    assert len(m) == 0 and m.get(b"a") == -1
    assert OffsetMap(1).capacity == 1  # never zero


def test_throttler_sleeps_to_hold_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    t = Throttler(1000, clock=lambda: now[0], sleep=sleep)
    t.note(500)  # 0.5 s worth at t=0
    assert slept == [pytest.approx(0.5)]
    unlimited = Throttler(clock=lambda: 0.0, sleep=sleep)
    unlimited.note(10**9)
    assert len(slept) == 1
    with pytest.raises(ValueError):
        Throttler(0)


# -- what a clean keeps -----------------------------------------------------------------------


def test_latest_value_per_key_offsets_kept_active_untouched(make_segment_log: MakeLog) -> None:
    log = make_segment_log(compact_config())
    pairs: list[tuple[str | None, str | None]] = [(f"k{i % 4}", f"v{i}") for i in range(30)]
    fill(log, pairs)
    before = records(log)
    active_base = log.segment_base_offsets()[-1]
    assert active_base > 0
    stats = log.clean(NOW)
    assert stats is not None and not stats.aborted
    assert stats.end_offset == active_base and stats.first_dirty_offset == 0
    assert stats.records_removed > 0 and stats.log_bytes_after < stats.log_bytes_before
    assert log.segment_base_offsets()[-1] == active_base
    after = records(log)
    below = [r for r in after if r[0] < active_base]
    want = latest(pairs, active_base)
    assert below == sorted((o, k, v) for k, (o, v) in want.items())
    assert [r for r in after if r[0] >= active_base] == [r for r in before if r[0] >= active_base]
    assert log.log_start_offset == 0 and log.log_end_offset == 30
    # a consumer positioned on a removed offset continues with the next record
    removed = next(o for o in range(active_base) if o not in {r[0] for r in below})
    assert records(log, removed)[0][0] > removed
    # nothing new: a second clean changes nothing
    again = log.clean(NOW)
    assert again is not None and again.records_removed == 0 and records(log) == after
    assert log.cleaner_state.first_dirty_offset == active_base


def test_appends_continue_and_reload_reads_the_same(make_segment_log: MakeLog, tmp_path: Path) -> None:
    log = make_segment_log(compact_config())
    fill(log, [(f"k{i % 3}", f"v{i}") for i in range(25)])
    log.clean(NOW)
    fill(log, [("k1", "new"), ("k9", "x")])
    after = records(log)
    assert after[-2:] == [(25, "k1", "new"), (26, "k9", "x")]
    for clean in (True, False):
        point = log.recovery_point
        log.close(clean=clean)
        log = SegmentLog.load(
            log.directory, "t", 0, log.config, clean=clean, recovery_point=None if clean else point
        )
        assert records(log) == after
        assert log.log_start_offset == 0
    log.close()


def test_tombstones_stay_for_delete_retention_then_go(make_segment_log: MakeLog) -> None:
    log = make_segment_log(compact_config(delete_retention_ms=DAY))
    pairs: list[tuple[str | None, str | None]] = [("a", "1"), ("b", "1"), ("a", None), ("c", "1")]
    pairs += [(f"x{i}", "y") for i in range(12)]
    fill(log, pairs)
    stats = log.clean(NOW)
    assert stats is not None and stats.tombstones_removed == 0
    got = records(log)
    assert (2, "a", None) in got and all(r[1] != "a" or r[0] == 2 for r in got)
    flagged = [h for h in batch_headers(log) if h[0] == 2]
    assert flagged and flagged[0][3] & DELETE_HORIZON_MASK  # KIP-534 delete horizon
    info = log.cleaner_info(NOW + DAY - 1)
    assert not info.needs_compaction_now
    log.clean(NOW + DAY - 1)  # not yet
    assert (2, "a", None) in records(log)
    assert log.cleaner_info(NOW + DAY).needs_compaction_now  # the horizon has passed
    stats = log.clean(NOW + DAY)
    assert stats is not None and stats.tombstones_removed == 1
    assert all(r[1] != "a" for r in records(log))
    assert (3, "c", "1") in records(log)


def test_min_compaction_lag_keeps_young_segments(make_segment_log: MakeLog) -> None:
    log = make_segment_log(compact_config(min_compaction_lag_ms=5_000))
    fill(log, [(f"k{i % 2}", f"old{i}") for i in range(10)], ts=1_000)
    fill(log, [(f"k{i % 2}", f"new{i}") for i in range(10)], ts=100_000)
    bases = log.segment_base_offsets()
    young = next(b for b in bases if b >= 10)
    stats = log.clean(50_000)  # segments holding ts 100000 are younger than the lag
    assert stats is not None and stats.end_offset <= young
    got = records(log)
    assert [r for r in got if r[0] >= young] == [(o, f"k{o % 2}", f"new{o - 10}") for o in range(young, 20)]
    assert log.cleaner_info(50_000).first_uncleanable_offset <= young
    stats = log.clean(200_000)
    assert stats is not None and stats.end_offset == bases[-1]


def test_compressed_batches_are_recompressed_with_their_codec(make_segment_log: MakeLog) -> None:
    log = make_segment_log(compact_config(segment_bytes=1 << 20))
    codecs = [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD]
    offset = 0
    for codec in codecs:
        batch = build_batch(
            [(f"k{i % 3}".encode(), f"{codec.name}{i}".encode(), [("h", b"1")], 1_000 + i) for i in range(6)],
            compression=codec,
            partition_leader_epoch=0,
        )
        log.append(batch, now_ms=1_000)
        offset += 6
    log.roll(now_ms=2_000)
    fill(log, [("z", "z")])
    stats = log.clean(NOW)
    assert stats is not None and stats.batches_rewritten == 1  # three batches went whole
    got = records(log)
    # only the last batch (ZSTD) holds the latest of k0, k1, k2
    assert got[:3] == [(21, "k0", "ZSTD3"), (22, "k1", "ZSTD4"), (23, "k2", "ZSTD5")]
    heads = batch_headers(log)
    # earlier batches are empty of records and go; the zstd one keeps its codec and offsets
    assert heads[0][:3] == (18, 23, 3) and heads[0][3] & 7 == Compression.ZSTD


def test_keyless_records_are_dropped(make_segment_log: MakeLog) -> None:
    log = make_segment_log(compact_config())
    fill(log, [(None, "nokey"), ("a", "1")] + [(f"x{i}", "y") for i in range(12)])
    stats = log.clean(NOW)
    assert stats is not None and stats.invalid_records_removed == 1
    assert records(log)[0] == (1, "a", "1")


def test_map_full_cleans_a_prefix_then_the_rest(make_segment_log: MakeLog) -> None:
    log = make_segment_log(compact_config())
    pairs: list[tuple[str | None, str | None]] = [(f"k{i % 10}", f"v{i}") for i in range(40)]
    fill(log, pairs)
    active = log.segment_base_offsets()[-1]
    stats = log.clean(NOW, dedupe_buffer_bytes=OffsetMap.BYTES_PER_ENTRY * 4)
    assert stats is not None and stats.map_full and stats.map_entries == 4
    assert stats.end_offset == 4  # k0..k3 fit, k4 at offset 4 did not
    assert [r for r in records(log) if r[0] >= 4] == [(o, f"k{o % 10}", f"v{o}") for o in range(4, 40)]
    while log.cleaner_state.first_dirty_offset < active:
        log.clean(NOW, dedupe_buffer_bytes=OffsetMap.BYTES_PER_ENTRY * 4)
    want = latest(pairs, active)
    assert [r for r in records(log) if r[0] < active] == sorted((o, k, v) for k, (o, v) in want.items())


def test_not_compacted_or_nothing_sealed(make_segment_log: MakeLog) -> None:
    plain = make_segment_log(LogConfig(segment_bytes=400), name="p-0")
    fill(plain, [("a", "1")] * 20)
    assert plain.clean(NOW) is None
    log = make_segment_log(compact_config(segment_bytes=1 << 20))
    fill(log, [("a", "1")] * 20)
    assert log.clean(NOW) is None  # only the active segment
    info = log.cleaner_info(NOW)
    assert (info.cleanable_bytes, info.dirty_ratio, info.should_clean) == (0, 0.0, False)


def test_unflushed_segments_are_not_cleaned(make_segment_log: MakeLog) -> None:
    log = make_segment_log(compact_config())
    for i in range(20):
        log.append(kv(f"k{i % 2}", "v"), now_ms=1_000)
    assert log.high_watermark == 0  # nothing durable yet: nothing cleanable
    assert log.clean(NOW) is None
    log.flush()
    assert log.clean(NOW) is not None


# -- transactions ---------------------------------------------------------------------------


def txn_batch(key: str, value: str | None, pid: int, seq: int) -> bytearray:
    return kv(key, value, producer_id=pid, producer_epoch=0, base_sequence=seq, transactional=True)


def test_transactions_aborted_go_committed_stay_open_untouched(make_segment_log: MakeLog) -> None:
    log = make_segment_log(compact_config(segment_bytes=300, delete_retention_ms=DAY))
    log.append(txn_batch("a", "aborted", 1, 0), now_ms=1_000)  # 0
    log.append(txn_batch("b", "committed", 2, 0), now_ms=1_000)  # 1
    log.append_marker(1, 0, False, 0, now_ms=1_000)  # 2 abort
    log.append_marker(2, 0, True, 0, now_ms=1_000)  # 3 commit
    log.append(kv("a", "plain"), now_ms=1_000)  # 4
    log.append(txn_batch("c", "open", 3, 0), now_ms=1_000)  # 5: stays open
    for i in range(6):
        log.append(kv(f"x{i}", "y"), now_ms=1_000)  # 6..11
    log.flush()
    assert log.last_stable_offset == 5
    assert log.aborted_transactions(0, 12) == [(1, 0)]
    stats = log.clean(NOW)
    assert stats is not None and stats.end_offset <= 5
    got = records(log)
    assert (0, "a", "aborted") not in got and (1, "b", "committed") in got
    assert (4, "a", "plain") in got and (5, "c", "open") in got
    heads = {h[0]: h for h in batch_headers(log)}
    # markers stay for now: the abort marker's data went in this pass, the commit's data stays
    assert 2 in heads and 3 in heads
    assert heads[0][2] == 0  # producer 1's last batch stays, emptied (its sequence survives)
    assert log.last_stable_offset == 5
    # the open transaction's batch is above the LSO: never cleaned
    log.append(kv("c", "after"), now_ms=1_000)
    log.flush()
    log.clean(NOW)
    assert (5, "c", "open") in records(log)
    log.append_marker(3, 0, True, 0, now_ms=1_000)
    log.flush()
    log.roll(now_ms=2_000)
    log.flush()
    log.clean(NOW)
    assert (5, "c", "open") not in records(log)  # committed, then superseded by "after"


def test_markers_go_only_after_their_horizon(make_segment_log: MakeLog) -> None:
    log = make_segment_log(compact_config(segment_bytes=300, delete_retention_ms=DAY))
    log.append(txn_batch("a", "aborted", 1, 0), now_ms=1_000)  # 0
    log.append_marker(1, 0, False, 0, now_ms=1_000)  # 1
    log.append(kv("a", "v2", producer_id=7, producer_epoch=0, base_sequence=0), now_ms=1_000)  # 2
    for i in range(8):
        log.append(kv(f"x{i}", "y"), now_ms=1_000)
    log.flush()
    log.clean(NOW)  # the aborted data goes; the marker stays (its transaction was seen)
    heads = batch_headers(log)
    assert [h[:3] for h in heads[:2]] == [(0, 0, 0), (1, 1, 1)]  # producer 1's last batch, emptied
    assert log.aborted_transactions(0, log.log_end_offset) == [(1, 0)]
    log.clean(NOW + 1)
    assert [h[0] for h in batch_headers(log)][:2] == [0, 1]  # as Kafka: kept while producer 1 lives
    assert log.expire_producers(NOW, 1) == 2
    log.clean(NOW + 2)  # the empty batch goes; the marker saw it in this pass, so it stays
    assert [h[0] for h in batch_headers(log)][:1] == [1]
    log.clean(NOW + 3)  # nothing of its transaction is left: it gets a delete horizon
    marker = [h for h in batch_headers(log) if h[0] == 1]
    assert marker and marker[0][3] & DELETE_HORIZON_MASK
    assert log.cleaner_info(NOW + 3 + DAY).needs_compaction_now
    log.clean(NOW + 3 + DAY)
    assert 1 not in [h[0] for h in batch_headers(log)]
    assert log.aborted_transactions(0, log.log_end_offset) == []
    assert records(log)[0] == (2, "a", "v2")


def test_marker_of_expired_producer_goes(make_segment_log: MakeLog) -> None:
    log = make_segment_log(compact_config(segment_bytes=300, delete_retention_ms=0))
    log.append(txn_batch("a", "v", 1, 0), now_ms=1_000)
    log.append_marker(1, 0, True, 0, now_ms=1_000)
    log.append(kv("a", "w"), now_ms=1_000)
    for i in range(8):
        log.append(kv(f"x{i}", "y"), now_ms=1_000)
    log.flush()
    assert log.expire_producers(NOW, 1) == 1
    for _ in range(3):
        log.clean(NOW)
    assert log.cleaner_state.last_stats is not None
    heads = [h[0] for h in batch_headers(log)]
    assert 0 not in heads and 1 not in heads  # data superseded, marker gone


def test_producer_state_survives_clean_and_full_replay(make_segment_log: MakeLog, tmp_path: Path) -> None:
    log = make_segment_log(compact_config())
    for seq in range(5):
        log.append(kv("k", f"v{seq}", producer_id=9, producer_epoch=0, base_sequence=seq), now_ms=1_000)
    for i in range(10):
        log.append(kv(f"x{i}", "y"), now_ms=1_000)
    log.flush()
    log.clean(NOW)
    views = {v.producer_id: v for v in log.producer_states()}
    log.close()
    from riverbed.storage.log import PRODUCER_SNAPSHOT

    (log.directory / PRODUCER_SNAPSHOT).unlink()  # force a replay from the log start
    again = SegmentLog.load(log.directory, "t", 0, log.config, recovery_point=None)
    try:
        replayed = {v.producer_id: v for v in again.producer_states()}
        assert replayed[9].last_sequence == views[9].last_sequence == 4
        assert records(again)[0] == (4, "k", "v4")
    finally:
        again.close()


# -- retention and configs ---------------------------------------------------------------


def test_retention_deletes_only_with_the_delete_policy(make_segment_log: MakeLog) -> None:
    compact = make_segment_log(compact_config(retention_ms=10), name="c-0")
    both = make_segment_log(compact_config(retention_ms=10, cleanup_delete=True), name="b-0")
    for log in (compact, both):
        fill(log, [(f"k{i}", "v") for i in range(20)])
        deleted = log.enforce_retention(NOW)
        assert (deleted > 0) == (log is both)
    assert compact.log_start_offset == 0 and both.log_start_offset > 0


def test_roll_ms_is_capped_by_max_compaction_lag() -> None:
    assert compact_config(segment_ms=1_000, max_compaction_lag_ms=10).roll_ms == 10
    assert LogConfig(segment_ms=1_000, max_compaction_lag_ms=10).roll_ms == 1_000


def test_log_config_and_topic_config_validation() -> None:
    for bad in (
        {"min_compaction_lag_ms": -1},
        {"max_compaction_lag_ms": 0},
        {"delete_retention_ms": -1},
        {"min_cleanable_dirty_ratio": 1.5},
    ):
        with pytest.raises(ValueError):
            LogConfig(**bad)  # type: ignore[arg-type]
    for bad_topic in (
        {"cleanup.policy": "compact,shrink"},
        {"cleanup.policy": "nope"},
        {"min.compaction.lag.ms": "-5"},
        {"max.compaction.lag.ms": "-1"},
        {"delete.retention.ms": "-1"},
        {"min.cleanable.dirty.ratio": "2"},
        {"min.compaction.lag.ms": "100", "max.compaction.lag.ms": "50"},
    ):
        with pytest.raises(KafkaError) as exc:
            validate_topic_configs(bad_topic)  # type: ignore[arg-type]
        assert exc.value.code == ErrorCode.INVALID_CONFIG
    assert cleanup_policy("compact") == (False, True)
    assert cleanup_policy("compact,delete") == (True, True)
    assert cleanup_policy("delete") == (True, False)


# -- the manager: checkpoint, choice, thread --------------------------------------------


def test_manager_clean_now_checkpoint_and_pick(manager_factory: Callable[..., LogManager]) -> None:
    manager = manager_factory(cleaner=CleanerConfig(backoff_ms=0))
    dirty = manager.create("d", 0, compact_config())
    plain = manager.create("p", 0, LogConfig(segment_bytes=400))
    for log in (dirty, plain):
        for i in range(30):
            log.append(kv(f"k{i % 3}", f"v{i}"), now_ms=1_000)
        log.flush_cycle()
    info = manager.cleaner_info("d", 0, NOW)
    assert info is not None and info.dirty_ratio == 1.0 and info.should_clean
    assert manager.cleaner.pick(NOW) is dirty
    stats = manager.cleaner.run_once(NOW)
    assert stats is not None and stats.records_removed > 0
    assert manager.cleaner.pick(NOW) is None  # clean now: ratio 0
    text = (manager.data_dir / CLEANER_CHECKPOINT).read_text()
    assert f"d 0 {stats.end_offset}" in text and "p 0" not in text
    info = manager.cleaner_info("d", 0, NOW)
    assert info is not None and info.last_clean_ms == NOW and info.last_stats is stats
    manager.close()
    again = LogManager(manager.data_dir)
    again.open()
    try:
        log = again.get("d", 0)
        assert log is not None and log.cleaner_state.first_dirty_offset == stats.end_offset
        log.update_config(compact_config())
        assert again.cleaner_info("d", 0, NOW).dirty_ratio == 0.0  # type: ignore[union-attr]
    finally:
        again.close()


def test_manager_thread_starts_and_stops(manager_factory: Callable[..., LogManager], tmp_path: Path) -> None:
    manager = manager_factory(cleaner=CleanerConfig(backoff_ms=60_000))
    log = manager.create("d", 0, compact_config())
    fill(log, [(f"k{i % 3}", "v") for i in range(30)])
    manager.start_cleaner()
    manager.start_cleaner()  # idempotent
    deadline = time.monotonic() + 10
    while log.cleaner_state.cleans == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    manager.stop_cleaner()  # interrupts the 60 s backoff at once
    manager.stop_cleaner()
    assert log.cleaner_state.cleans == 1 and manager.cleaner.rounds >= 1
    disabled = LogManager(tmp_path / "other", cleaner=CleanerConfig(enabled=False))
    disabled.open()
    disabled.start_cleaner()
    disabled.close()
    assert disabled.cleaner.rounds == 0


def test_tiered_logs_keep_tombstones_for_ever(make_segment_log: MakeLog) -> None:
    """Remote segments are never compacted again: an older value of a key may be in the
    object store, so the tombstone that deletes it must stay (else the key comes back for a
    reader from offset 0)."""
    log = make_segment_log(compact_config(delete_retention_ms=0, remote_storage_enable=True))
    pairs: list[tuple[str | None, str | None]] = [("a", "1"), ("b", "1"), ("a", None), ("c", "1")]
    pairs += [(f"x{i}", "y") for i in range(12)]
    fill(log, pairs)
    log.clean(NOW)
    log.clean(NOW + 10 * DAY)
    stats = log.clean(NOW + 1000 * DAY)
    assert stats is None or stats.tombstones_removed == 0
    assert (2, "a", None) in records(log)
