"""Crash consistency of a partition log holding transactions: the ``.txnindex`` files, the
producer snapshots and the markers. After a crash at any file-system operation, whatever
unsynced data reached the disk, the recovered log is a prefix of what was written (every
acknowledged batch and marker included), lists exactly the aborted transactions whose
ABORT marker it holds, and its last stable offset stops at a transaction left open."""

from __future__ import annotations

from pathlib import Path

from crash_helpers import open_recovered, read_everything
from simfs import SimFS, choices_for
from storage_helpers import producer_batch

from riverbed.protocol.records.batch import iter_batches
from riverbed.storage import LogConfig, LogManager

CONFIG = LogConfig(segment_bytes=800, index_interval_bytes=100, segment_ms=10**12, retention_ms=-1)
TXN_PID = 77
OTHER_PID = 88


def test_aborted_transactions_and_open_ones_survive_a_crash_at_any_point(tmp_path: Path) -> None:
    root = tmp_path / "live"
    root.mkdir()
    sim = SimFS(root, capture_every_op=True)
    # (first offset, marker offset, committed) of each transaction, as acknowledged
    txns: list[tuple[int, int, bool]] = []
    with sim.install():
        manager = LogManager(root / "data", fsync=sim.fsync, syncfs=False, default_config=CONFIG)
        manager.open()
        log = manager.create("t", 0, CONFIG)
        seq = other_seq = 0
        try:
            for j in range(11):  # the last one aborted: its .txnindex is written at close
                first = log.append(producer_batch(TXN_PID, seq, 2, timestamp=1_000 + j), now_ms=1_000).base_offset
                seq += 2
                # another producer's plain batch inside the transaction's span
                log.append(producer_batch(OTHER_PID, other_seq, 1, transactional=False, timestamp=1_000 + j), now_ms=1_000)
                other_seq += 1
                log.append(producer_batch(TXN_PID, seq, 1, timestamp=1_000 + j), now_ms=1_000)
                seq += 1
                commit = j % 3 != 1
                marker = log.append_marker(TXN_PID, 0, commit, 0, now_ms=1_000 + j).base_offset
                log.flush()
                assert log.high_watermark == marker + 1
                txns.append((first, marker, commit))
                sim.note(marker + 1)
            final = read_everything(log)
        finally:
            manager.close()
    assert sum(1 for _, _, c in txns if not c) >= 3
    n = 0
    for image in sim.images:
        acked = max(image.notes, default=0)
        for choice in choices_for(image, seeds=2):
            n += 1
            dest = tmp_path / f"crash-{n}"
            image.materialize(dest, choice)
            label = f"crash at {image.label}, {choice}"
            recovered, log2 = open_recovered(dest, CONFIG)
            try:
                if log2 is None:
                    assert acked == 0, label
                    continue
                data = read_everything(log2)
                assert final.startswith(data), f"{label}: not a prefix of what was written"
                batches = list(iter_batches(data))
                end = batches[-1].next_offset if batches else 0
                assert end >= acked, f"{label}: acknowledged up to {acked}, recovered {end}"
                assert log2.log_end_offset >= end, label
                want = [(TXN_PID, first) for first, marker, commit in txns if not commit and marker < end]
                assert log2.aborted_transactions(0, end) == want, label
                open_txn = [first for first, marker, _ in txns if first < end <= marker]
                assert log2.last_stable_offset == (open_txn[0] if open_txn else log2.log_end_offset), label
            finally:
                recovered.close()
