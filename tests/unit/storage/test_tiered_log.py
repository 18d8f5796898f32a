"""SegmentLog's tiered-storage hooks (remote.api.TieredLog), its reads below the local log
start, recovery of a log whose local segments start above its log start, and the
LogManager wiring (registration, wake-up, topic deletion)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from storage_helpers import make_batch, producer_batch, read_all

from riverbed.metadata.configs import check_tiering
from riverbed.protocol.errors import KafkaError
from riverbed.protocol.records.records import build_batch
from riverbed.storage import LogConfig, LogManager, OffsetOutOfRange, SegmentLog
from riverbed.storage.api import NeedsRemote
from riverbed.storage.remote import (
    LocalDirStore,
    RemoteLogManager,
    RemoteLogManagerConfig,
    RemoteLogReader,
    TieringConfig,
)

CONFIG = LogConfig(segment_bytes=600, index_interval_bytes=150, retention_ms=-1)


def fill(log: SegmentLog, batches: int, start: int = 0) -> None:
    for i in range(start, start + batches):
        log.append(make_batch(3, timestamp=1000 + 10 * i, value_size=20), now_ms=1000 + 10 * i)
    log.flush()


def tier(log: SegmentLog, store_dir: Path, **tiering: int) -> RemoteLogManager:
    store = LocalDirStore(store_dir)
    rlm = RemoteLogManager(store, RemoteLogManagerConfig(max_copies_per_pass=100))
    metadata = rlm.register(log, TieringConfig(True, **tiering))
    log.attach_remote(metadata, RemoteLogReader(store, block_size=256))
    return rlm


@pytest.fixture
def log(make_segment_log: Callable[..., SegmentLog]) -> SegmentLog:
    return make_segment_log(CONFIG)


def test_sealed_segments_are_finalized_below_the_high_watermark(log: SegmentLog) -> None:
    for i in range(20):
        log.append(make_batch(3, timestamp=1000 + i, value_size=20), now_ms=1000)
    assert log.sealed_segments() == []  # rolled but not finalized (no flush yet)
    log.flush()
    sealed = log.sealed_segments()
    bases = log.segment_base_offsets()
    assert [s.base_offset for s in sealed] == bases[:-1]  # never the active segment
    assert all(s.last_offset < log.high_watermark for s in sealed)
    assert [s.last_offset + 1 for s in sealed] == bases[1:]


def test_sealed_segments_of_a_compacted_log_stop_at_the_first_dirty_offset(
    make_segment_log: Callable[..., SegmentLog],
) -> None:
    log = make_segment_log(LogConfig(segment_bytes=600, cleanup_compact=True, cleanup_delete=False))
    fill(log, 20)
    assert log.sealed_segments() == []  # never cleaned: nothing is offered
    bases = log.segment_base_offsets()
    log.cleaner_state.first_dirty_offset = bases[2]
    assert [s.base_offset for s in log.sealed_segments()] == bases[:2]


def test_max_timestamp_in_a_remote_segment_is_the_record_holding_it(log: SegmentLog, tmp_path: Path) -> None:
    log.append(build_batch([(b"k", b"v", [], ts) for ts in (10, 9_000, 9_000, 20)]), now_ms=1000)
    fill(log, 30)
    rlm = tier(log, tmp_path / "store", local_retention_bytes=0)
    assert rlm.run_once() == 0
    assert log.local_log_start_offset > 4  # the batch holding the maximum is remote only
    with pytest.raises(NeedsRemote):
        log.max_timestamp(remote_ok=False)
    assert log.max_timestamp() == (1, 9_000)  # the first record holding it, not offset 0


def test_stage_segment_links_a_consistent_copy(log: SegmentLog, tmp_path: Path) -> None:
    fill(log, 20)
    first = log.sealed_segments()[0]
    staging = tmp_path / "staging"
    staging.mkdir()
    staged = log.stage_segment(first.base_offset, staging)
    assert staged is not None and staged.segment == first
    assert set(staged.files) >= {".log", ".index", ".timeindex"}
    assert staged.files[".log"].stat().st_size == first.size
    assert staged.files[".log"].stat().st_ino == (log.directory / staged.files[".log"].name).stat().st_ino
    assert staged.producer_snapshot is not None
    assert log.stage_segment(first.base_offset + 1, staging) is None


def test_drop_local_below_keeps_the_log_start_and_reads_go_remote(log: SegmentLog, tmp_path: Path) -> None:
    fill(log, 30)
    original = read_all(log)
    rlm = tier(log, tmp_path / "store", local_retention_bytes=0)
    assert rlm.run_once() == 0
    assert log.log_start_offset == 0
    local_start = log.local_log_start_offset
    assert local_start == log.segment_base_offsets()[0] > 0
    assert len(log.segment_base_offsets()) == 1  # only the active segment is left
    assert read_all(log, 0, max_bytes=100) == original  # remote, then local
    assert log.offset_for_timestamp(1000 + 10 * 3) == (9, 1000 + 10 * 3)
    assert log.offset_for_timestamp(1000 + 10 * 3 + 1) == (10, 1000 + 10 * 3 + 1)  # a record
    assert log.max_timestamp()[1] == 1000 + 10 * 29 + 2
    assert log.aborted_transactions(0, 10) == []
    status = rlm.status("t", 0)
    assert status is not None and status.deleted_local > 0


def test_drop_local_below_never_passes_what_is_remote(log: SegmentLog, tmp_path: Path) -> None:
    fill(log, 30)
    tier(log, tmp_path / "store")  # registered, nothing copied yet
    assert log.drop_local_below(10**9) == 0
    log.detach_remote()
    sealed = len(log.segment_base_offsets()) - 1
    assert log.drop_local_below(10**9) == sealed > 0
    assert len(log.segment_base_offsets()) == 1  # never the active one


def test_advance_log_start_is_persisted_and_survives_recovery(log: SegmentLog, tmp_path: Path) -> None:
    fill(log, 30)
    rlm = tier(log, tmp_path / "store", local_retention_bytes=0)
    rlm.run_once()
    local_start = log.local_log_start_offset
    log.advance_log_start(6)
    assert log.log_start_offset == 6
    with pytest.raises(OffsetOutOfRange):
        log.read(3, 1000)
    log.close()
    again = SegmentLog.load(log.directory, "t", 0, CONFIG, clean=True)
    try:
        # the local segments start above the log start: valid, the remote metadata covers it
        assert again.local_log_start_offset == local_start
        assert again.log_start_offset == local_start  # nothing readable below without the tier
        metadata = rlm.metadata("t", 0)
        assert metadata is not None
        again.attach_remote(metadata, RemoteLogReader(rlm.store))
        assert again.log_start_offset == 6
        assert again.read(6, 1000).records
    finally:
        again.close(clean=False)


def test_total_retention_deletes_remote_and_moves_the_log_start(log: SegmentLog, tmp_path: Path) -> None:
    fill(log, 30)
    rlm = tier(log, tmp_path / "store", local_retention_bytes=0)
    rlm.run_once()
    log.update_config(LogConfig(segment_bytes=600, index_interval_bytes=150, retention_bytes=1500))
    rlm.run_once()
    assert log.log_start_offset > 0
    with pytest.raises(OffsetOutOfRange):
        log.read(0, 1000)
    assert read_all(log)  # from the new log start on


def test_retention_of_a_tiered_log_only_rolls(log: SegmentLog, tmp_path: Path) -> None:
    fill(log, 30)
    tier(log, tmp_path / "store")
    log.update_config(LogConfig(segment_bytes=600, retention_ms=1))
    before = log.segment_base_offsets()
    assert log.enforce_retention(10**13) == 0  # not remote yet: nothing deleted locally
    assert log.segment_base_offsets()[: len(before)] == before


def test_log_manager_tiers_registered_topics_and_deletes_their_objects(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path / "store")
    manager = LogManager(
        tmp_path / "data",
        remote_store=store,
        remote_config=RemoteLogManagerConfig(interval_s=0.05),
        syncfs=False,
    )
    manager.open()
    try:
        config = LogConfig(
            segment_bytes=600, retention_ms=-1, remote_storage_enable=True, local_retention_bytes=1
        )
        log = manager.create("tiered", 0, config)
        plain = manager.create("plain", 0, LogConfig(segment_bytes=600))
        assert plain.remote_metadata is None
        fill(log, 30)
        deadline = time.monotonic() + 10
        while log.local_log_start_offset == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.local_log_start_offset > 0 and log.log_start_offset == 0
        assert store.list("")
        manager.delete_partition("tiered", 0)
        deadline = time.monotonic() + 10
        while store.list("") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.list("") == []
    finally:
        manager.close()


def test_tiering_config_checks() -> None:
    check_tiering({"remote.storage.enable": "false"}, None, False)
    with pytest.raises(KafkaError, match="remote storage is not configured"):
        check_tiering({"remote.storage.enable": "true"}, None, False)
    with pytest.raises(KafkaError, match="Disabling"):
        check_tiering({"remote.storage.enable": "false"}, {"remote.storage.enable": "true"}, True)
    with pytest.raises(KafkaError, match=r"more than retention\.ms"):
        check_tiering({"remote.storage.enable": "true", "retention.ms": "1000", "local.retention.ms": "2000"}, None, True)
    with pytest.raises(KafkaError, match="must not be -1"):
        check_tiering({"remote.storage.enable": "true", "retention.bytes": "1000", "local.retention.bytes": "-1"}, None, True)
    check_tiering({"remote.storage.enable": "true", "retention.bytes": "-1", "local.retention.bytes": "5"}, None, True)


def test_aborted_transactions_over_remote_and_local_are_listed_once(log: SegmentLog, tmp_path: Path) -> None:
    """Segments that are in the store and still on the local disk are walked by both the
    remote and the local lookup: each aborted transaction must still be listed once."""
    pid, seq, aborted = 11, 0, []
    for i in range(40):  # many small aborted transactions across many segments
        first = log.append(producer_batch(pid, seq, 3, timestamp=1000 + i), now_ms=1000 + i).base_offset
        seq += 3
        log.append_marker(pid, 0, False, 0, now_ms=1000 + i)
        aborted.append((pid, first))
    log.flush()
    # keep the newest copied segments locally too
    tier(log, tmp_path / "store", local_retention_bytes=4 * 600).run_once()
    bases = log.segment_base_offsets()
    assert 0 < log.local_log_start_offset == bases[0] and len(bases) > 2
    metadata = log.remote_metadata
    assert metadata is not None and max(s.last_offset for s in metadata.finished()) >= bases[1]
    got = log.aborted_transactions(0, log.log_end_offset)
    assert got == aborted
