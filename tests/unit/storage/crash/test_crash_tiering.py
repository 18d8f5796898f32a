"""Crash consistency of tiering (``remote-log-metadata.json`` and the deletion of local
segments once they are remote) on a file system that loses what was not fsynced. The
object store is a separate system (its writes are durable when ``put`` returns), so it
lives outside the simulated directory (recovery only reads it).

After a crash at any point of a tiering pass (staging links, COPY_STARTED, uploads,
COPY_FINISHED, local deletions, the log start moves), the partition's metadata and local
segments together still hold every acknowledged record, byte for byte."""

from __future__ import annotations

from pathlib import Path

from crash_helpers import no_fsync
from simfs import SimFS, choices_for
from storage_helpers import make_batch, read_all

from riverbed.storage import LogConfig, SegmentLog
from riverbed.storage.remote import (
    LocalDirStore,
    RemoteLogManager,
    RemoteLogManagerConfig,
    RemoteLogReader,
    TieringConfig,
)

CONFIG = LogConfig(segment_bytes=600, index_interval_bytes=150, retention_ms=-1, remote_storage_enable=True)
TIERING = TieringConfig(True, local_retention_bytes=0)


def test_every_acknowledged_record_survives_a_crash_during_tiering(tmp_path: Path) -> None:
    root = tmp_path / "live"
    root.mkdir()
    store_dir = tmp_path / "store"
    sim = SimFS(root)
    with sim.install():
        log = SegmentLog.create(root / "t-0", "t", 0, CONFIG, fsync=sim.fsync)
        for i in range(24):
            log.append(make_batch(3, timestamp=1000 + 10 * i, value_size=20), now_ms=1000 + 10 * i)
        log.flush()
        acked = read_all(log)
        store = LocalDirStore(store_dir)
        rlm = RemoteLogManager(store, RemoteLogManagerConfig(max_copies_per_pass=100), fsync=sim.fsync)
        metadata = rlm.register(log, TIERING)
        log.attach_remote(metadata, RemoteLogReader(store, block_size=256))
        sim.capture_every_op = True
        rlm.run_once()
        sim.capture_every_op = False
        assert len(log.segment_base_offsets()) == 1, "the pass did not tier and drop the sealed segments"
        log.close()
    assert len(sim.images) > 20
    n = 0
    for image in sim.images:
        for choice in choices_for(image, seeds=1):
            n += 1
            dest = tmp_path / f"crash-{n}"
            image.materialize(dest, choice)
            label = f"crash at {image.label}, {choice}"
            again = SegmentLog.load(dest / "t-0", "t", 0, CONFIG, fsync=no_fsync)
            try:
                rlm2 = RemoteLogManager(store, RemoteLogManagerConfig(), fsync=no_fsync)
                again.attach_remote(rlm2.register(again, TIERING), RemoteLogReader(store, block_size=256))
                assert again.log_start_offset == 0, label
                assert read_all(again, 0, max_bytes=500) == acked, label
            finally:
                again.close(clean=False)
