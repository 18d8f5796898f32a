"""The pure tiering decisions."""

from __future__ import annotations

from riverbed.storage import LogConfig
from riverbed.storage.remote import RemoteSegment, SealedSegment, SegmentState, TieringConfig
from riverbed.storage.remote.policy import copy_candidates, local_delete_below, remote_deletions

SEALED = [SealedSegment(i * 10, i * 10 + 9, 1000 + i * 100, 100) for i in range(5)]


def _remote(base: int, last: int, ts: int, size: int = 100) -> RemoteSegment:
    return RemoteSegment("s" + str(base), base, last, ts, size, SegmentState.COPY_FINISHED)


def test_copy_candidates() -> None:
    assert copy_candidates(SEALED, -1, 0) == SEALED
    assert copy_candidates(SEALED, 29, 0) == SEALED[3:]
    assert copy_candidates(SEALED, -1, 25) == SEALED[2:]
    merged = [SealedSegment(0, 29, 1200, 250), *SEALED[3:]]
    assert copy_candidates(merged, 19, 0) == merged  # straddles: copied whole


def test_local_deletion_needs_copy_finished_and_local_retention() -> None:
    config = LogConfig(retention_ms=10_000, retention_bytes=-1)
    by_time = TieringConfig(True, local_retention_ms=500)
    # everything is expired locally, but only what is remote may go
    assert local_delete_below(SEALED, 600, -1, by_time, config, 10_000) == -1
    assert local_delete_below(SEALED, 600, 19, by_time, config, 10_000) == 20
    assert local_delete_below(SEALED, 600, 49, by_time, config, 1_650) == 20  # 1000, 1100 expired
    by_size = TieringConfig(True, local_retention_ms=-1, local_retention_bytes=300)
    assert local_delete_below(SEALED, 600, 49, by_size, config, 0) == 30  # 600 -> 300
    keep_all = TieringConfig(True, local_retention_ms=-1, local_retention_bytes=-1)
    forever = LogConfig(retention_ms=-1)
    assert local_delete_below(SEALED, 600, 49, keep_all, forever, 10**9) == -1
    # -1 (forever) is capped by the total retention.ms
    assert local_delete_below(SEALED, 600, 49, keep_all, config, 11_150) == 20
    # compact-only topics are tiered too: local retention applies regardless of cleanup policy
    compact = LogConfig(cleanup_delete=False, cleanup_compact=True, retention_ms=-1)
    assert local_delete_below(SEALED, 600, 49, by_time, compact, 10_000) == 50


def test_remote_deletions() -> None:
    remote = [_remote(0, 9, 1000), _remote(10, 19, 2000), _remote(20, 29, 3000)]
    config = LogConfig(retention_ms=1000, retention_bytes=-1)
    assert remote_deletions(remote, 0, 0, config, 2500) == remote[:1]
    assert remote_deletions(remote, 0, 0, config, 1500) == []
    assert remote_deletions(remote, 15, 0, config, 0) == remote[:1]  # below log start
    by_size = LogConfig(retention_ms=-1, retention_bytes=250)
    # 300 remote + 100 local-only = 400; as Kafka, a segment goes only while what remains
    # after it is still >= retention.bytes (400 - 100 = 300 yes, 300 - 100 = 200 no)
    assert remote_deletions(remote, 0, 100, by_size, 0) == remote[:1]
    assert remote_deletions(remote, 0, 200, by_size, 0) == remote[:2]
    compact = LogConfig(cleanup_delete=False, cleanup_compact=True, retention_ms=1)
    assert remote_deletions(remote, 0, 0, compact, 10**9) == []
    assert remote_deletions(remote, 20, 0, compact, 10**9) == remote[:2]
