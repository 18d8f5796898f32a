"""Crash consistency of a partition log: segments (.log), offset and time indexes, the
recovery checkpoint and producer snapshots, on a file system that loses what was not
fsynced (see simfs.py). A crash image is taken after every file-system operation of the
workload; each is recovered under several choices of what reached the disk."""

from __future__ import annotations

from pathlib import Path

from crash_helpers import Appended, History, check_recovered_log, idempotent_batch, open_recovered
from simfs import Image, SimFS, choices_for

from riverbed.storage import LogConfig, LogManager

CONFIG = LogConfig(segment_bytes=900, index_interval_bytes=150, segment_ms=10**12, retention_ms=-1)


def run_workload(sim: SimFS, root: Path, history: History, batches: int, *, restart_at: int | None = None) -> None:
    """Idempotent appends; after each, wait (flush) for the high watermark and note it as
    acknowledged. ``restart_at``: close cleanly after that many batches and reopen."""
    manager = LogManager(root / "data", fsync=sim.fsync, syncfs=False, default_config=CONFIG)
    manager.open()
    log = manager.create("t", 0, CONFIG)
    seq = 0
    try:
        for i in range(batches):
            if i == restart_at:
                manager.close()
                manager = LogManager(root / "data", fsync=sim.fsync, syncfs=False, default_config=CONFIG)
                manager.open()
                found = manager.get("t", 0)
                assert found is not None
                log = found
            count = 1 + i % 3
            batch = idempotent_batch(seq, count, 1_000 + 10 * i)
            pristine = bytes(batch)
            info = log.append(batch, now_ms=1_000 + 10 * i)
            seq += count
            history.batches.append(
                Appended(bytes(batch), pristine, info.base_offset, info.last_offset, seq - 1, 1_000 + 10 * i + count - 1)
            )
            if i % 2 == 0:
                manager.flush_all()
            else:
                log.flush()
            assert log.high_watermark == info.last_offset + 1
            sim.note(log.high_watermark)
    finally:
        manager.close()


def recover_all(images: list[Image], history: History, tmp_path: Path, seeds: int = 2) -> int:
    checked = 0
    n = 0
    for image in images:
        acked = max(image.notes, default=0)
        for choice in choices_for(image, seeds):
            n += 1
            dest = tmp_path / f"crash-{n}"
            image.materialize(dest, choice)
            manager, log = open_recovered(dest, CONFIG)
            try:
                check_recovered_log(log, history, acked, f"crash at {image.label}, {choice}")
            finally:
                manager.close()
            checked += 1
    return checked


def test_every_acknowledged_batch_survives_a_crash_at_any_point(tmp_path: Path) -> None:
    root = tmp_path / "live"
    root.mkdir()
    sim = SimFS(root, capture_every_op=True)
    history = History()
    with sim.install():
        run_workload(sim, root, history, 24)
    assert len({b.base_offset // 1 for b in history.batches}) == 24
    assert sim.images, "the workload did no file-system operation"
    checked = recover_all(sim.images, history, tmp_path / "crashes")
    assert checked > len(sim.images)


def test_crash_after_a_clean_restart(tmp_path: Path) -> None:
    """The second life starts from trusted indexes (clean-shutdown marker); a crash then
    must not take back anything either."""
    root = tmp_path / "live"
    root.mkdir()
    sim = SimFS(root, capture_every_op=True)
    history = History()
    with sim.install():
        run_workload(sim, root, history, 18, restart_at=9)
    recover_all(sim.images[len(sim.images) // 3 :], history, tmp_path / "crashes", seeds=2)
